//! The SASL decoders (RFC 4616 PLAIN, LOGIN, RFC 2195 CRAM-MD5) on any responses: no
//! panic, and whatever they accept is well formed (a non-empty user and password
//! without NUL, an authzid only when it equals the user, a 32-digit lowercase hex
//! digest). Every line after the exchange ended is refused.
//!
//! Input: one byte choosing the mechanism and whether the first line is an initial
//! response, then client lines separated by LF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use popgate_core::sasl::{Credentials, Mechanism, SaslError, SaslExchange, Step, is_md5_hex};

fn check(credentials: &Credentials) {
    match credentials {
        Credentials::Password {
            authzid,
            user,
            password,
            ..
        } => {
            assert!(!user.is_empty() && !user.contains('\0'));
            assert!(!password.expose().is_empty() && !password.expose().contains('\0'));
            assert!(authzid.as_ref().is_none_or(|a| a == user));
        }
        Credentials::CramMd5 { user, digest, .. } => {
            assert!(!user.is_empty() && !user.contains('\0'));
            assert!(is_md5_hex(digest) && digest.bytes().all(|b| !b.is_ascii_uppercase()));
        }
        Credentials::Apop { .. } => panic!("SASL never yields APOP"),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&settings, rest)) = input.split_first() else {
        return;
    };
    let mechanism = Mechanism::ALL[usize::from(settings) % Mechanism::ALL.len()];
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let initial = if settings & 0x80 != 0 {
        lines.next()
    } else {
        None
    };
    let (mut exchange, mut step) = SaslExchange::start(mechanism, initial, "<1.2@host>");
    loop {
        match &step {
            Step::Done(credentials) => {
                check(credentials);
                break;
            }
            Step::Failed(_) => break,
            Step::Challenge(_) => match lines.next() {
                Some(line) => step = exchange.step(line),
                None => return,
            },
        }
    }
    for line in lines {
        assert_eq!(exchange.step(line), Step::Failed(SaslError::Malformed));
    }
});
