//! SASL exchanges decoded without IO (RFC 4422), shared by SMTP AUTH (RFC 4954) and
//! POP3 AUTH (RFC 5034).
//!
//! A session that receives `AUTH <mechanism> [initial-response]` calls
//! [`SaslExchange::start`], sends every [`Step::Challenge`] after its protocol's
//! continuation prefix (`334 ` in SMTP, `+ ` in POP3), feeds each client line back
//! through [`SaslExchange::step`], and stops at [`Step::Done`] (credentials to verify)
//! or [`Step::Failed`]. Verifying the credentials is the driver's job; its answer comes
//! back as an [`AuthResult`].
//!
//! Mechanisms: PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login) and CRAM-MD5
//! (RFC 2195). Passwords are held as [`Secret`]s, so printing credentials never shows
//! them.

use std::time::Duration;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::Secret;

/// The longest client response accepted, in base64 characters. RFC 4616 §2 asks a
/// server to accept at least 255 octets for each of authzid, authcid and password;
/// this leaves room for more while still bounding what one exchange holds.
pub const MAX_RESPONSE: usize = 4096;

/// Standard base64 (RFC 4648 §4). Decoding accepts a response with or without its
/// `=` padding: some clients strip it, and the padding carries no information.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The LOGIN mechanism's two prompts, base64 of `Username:` and `Password:`
/// (draft-murchison-sasl-login §2.1).
const LOGIN_USERNAME: &str = "VXNlcm5hbWU6";
const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";

/// A SASL mechanism popgate implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    Login,
    CramMd5,
}

impl Mechanism {
    /// Every mechanism, in the order servers advertise them.
    pub const ALL: [Mechanism; 3] = [Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5];

    /// The mechanism named `name`; RFC 4422 §3.1: mechanism names are matched
    /// case-insensitively.
    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The registered name, as advertised (`PLAIN`, `LOGIN`, `CRAM-MD5`).
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
        }
    }

    /// Whether the password crosses the wire recoverably (PLAIN, LOGIN), so the
    /// mechanism falls under the "no cleartext authentication without TLS" policy.
    pub fn is_plaintext(&self) -> bool {
        matches!(self, Mechanism::Plain | Mechanism::Login)
    }
}

/// What a client proved it knows, for the driver to verify against the user store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// A cleartext password: SASL PLAIN or LOGIN, or POP3 USER/PASS. `mechanism` says
    /// which (`"PLAIN"`, `"LOGIN"` or `"USER"`), for the AuthSucceeded/AuthFailed
    /// events; build one with [`Credentials::password`].
    Password {
        mechanism: &'static str,
        /// RFC 4616 §2: the authorization identity, when the client sent one. It is
        /// only ever equal to `user`: proxy authorization is not supported.
        authzid: Option<String>,
        user: String,
        password: Secret,
    },
    /// RFC 2195: the HMAC-MD5 of `challenge` keyed with the user's secret.
    CramMd5 {
        user: String,
        /// The challenge exactly as sent (before base64), e.g. `<1896.697170952@host>`.
        challenge: String,
        /// 32 lowercase hex digits.
        digest: String,
    },
    /// RFC 1939 §7: the MD5 of `timestamp` followed by the user's secret.
    Apop {
        user: String,
        /// The greeting's timestamp including its angle brackets.
        timestamp: String,
        /// 32 lowercase hex digits.
        digest: String,
    },
}

impl Credentials {
    /// Cleartext credentials; `mechanism` is `"PLAIN"`, `"LOGIN"` or `"USER"`.
    pub fn password(
        mechanism: &'static str,
        authzid: Option<String>,
        user: impl Into<String>,
        password: Secret,
    ) -> Credentials {
        Credentials::Password {
            mechanism,
            authzid,
            user: user.into(),
            password,
        }
    }

    /// The authentication identity the client claimed.
    pub fn user(&self) -> &str {
        match self {
            Credentials::Password { user, .. }
            | Credentials::CramMd5 { user, .. }
            | Credentials::Apop { user, .. } => user,
        }
    }

    /// The mechanism name for events: `PLAIN`, `LOGIN`, `CRAM-MD5`, `APOP` or `USER`.
    pub fn mechanism(&self) -> &'static str {
        match self {
            Credentials::Password { mechanism, .. } => mechanism,
            Credentials::CramMd5 { .. } => Mechanism::CramMd5.name(),
            Credentials::Apop { .. } => "APOP",
        }
    }
}

/// Why an exchange failed. The session maps each to its protocol's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslError {
    /// A response that is not base64 (RFC 4954 §4: 501; RFC 5034 §4: -ERR).
    BadBase64,
    /// Decoded, but not what the mechanism expects (missing NULs, empty fields, not
    /// UTF-8, a bad digest, an initial response CRAM-MD5 does not allow).
    Malformed,
    /// RFC 4616 §2: an authzid that differs from the authcid asks to act as someone
    /// else; proxy authorization is not supported.
    AuthzidMismatch,
    /// The client answered a challenge with `*` (RFC 4954 §4, RFC 5034 §4).
    Cancelled,
    /// A response longer than [`MAX_RESPONSE`].
    TooLong,
}

/// What the session does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this base64 challenge after `334 ` / `+ ` and wait for a line (it may be
    /// empty: PLAIN without an initial response gets an empty challenge).
    Challenge(String),
    /// The exchange is complete: verify these.
    Done(Credentials),
    /// The exchange is over and failed.
    Failed(SaslError),
}

/// The result of verifying credentials, shared by both protocols' Authenticate
/// effects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthResult {
    /// Verified; `user` is the canonical address (a bare login mapped to its domain).
    Ok { user: String },
    /// Wrong user or password (indistinguishably); apply `delay`, the server's
    /// progressive per-address delay, before replying.
    Failed { delay: Duration },
    /// The user store could not answer; the client may retry later.
    TempFail,
}

/// Where an exchange is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// PLAIN: waiting for the response to the empty challenge.
    PlainResponse,
    /// LOGIN: waiting for the user name.
    LoginUser,
    /// LOGIN: waiting for the password of this user.
    LoginPassword(String),
    /// CRAM-MD5: waiting for `user digest` answering this challenge.
    CramResponse(String),
    /// Done or failed: every further line is a protocol error.
    Finished,
}

/// One SASL exchange in progress.
#[derive(Debug)]
pub struct SaslExchange {
    state: State,
}

impl SaslExchange {
    /// Begins an exchange.
    ///
    /// `initial`: the initial response if the client sent one (`=` means a present but
    /// empty response, RFC 4954 §4 / RFC 5034 §4). `challenge_id`: a unique string the
    /// caller builds (RFC 1939 §7 style `<session.millis@hostname>`), used as the
    /// CRAM-MD5 challenge.
    pub fn start(
        mechanism: Mechanism,
        initial: Option<&str>,
        challenge_id: &str,
    ) -> (SaslExchange, Step) {
        let mut exchange = SaslExchange {
            state: State::Finished,
        };
        let step = match (mechanism, initial) {
            (Mechanism::Plain, None) => {
                // RFC 4616 §2: the server-first challenge is empty.
                exchange.state = State::PlainResponse;
                Step::Challenge(String::new())
            }
            (Mechanism::Plain, Some(line)) => {
                exchange.state = State::PlainResponse;
                exchange.step(line)
            }
            (Mechanism::Login, None) => {
                exchange.state = State::LoginUser;
                Step::Challenge(LOGIN_USERNAME.to_owned())
            }
            // Clients such as Outlook send the user name as an initial response.
            (Mechanism::Login, Some(line)) => {
                exchange.state = State::LoginUser;
                exchange.step(line)
            }
            (Mechanism::CramMd5, None) => {
                exchange.state = State::CramResponse(challenge_id.to_owned());
                Step::Challenge(BASE64.encode(challenge_id))
            }
            // RFC 2195 §2: the server speaks first; a client-first response is a
            // protocol error (RFC 4422 §3.3).
            (Mechanism::CramMd5, Some("*")) => Step::Failed(SaslError::Cancelled),
            (Mechanism::CramMd5, Some(_)) => Step::Failed(SaslError::Malformed),
        };
        (exchange, step)
    }

    /// Feeds one client continuation line (base64, or `*` to cancel), without its
    /// line ending. After [`Step::Done`] or [`Step::Failed`] every line fails with
    /// [`SaslError::Malformed`].
    pub fn step(&mut self, line: &str) -> Step {
        let state = std::mem::replace(&mut self.state, State::Finished);
        if matches!(state, State::Finished) {
            return Step::Failed(SaslError::Malformed);
        }
        let line = line.trim_end_matches([' ', '\t']);
        // RFC 4954 §4, RFC 5034 §4: "*" cancels the exchange.
        if line == "*" {
            return Step::Failed(SaslError::Cancelled);
        }
        let decoded = match decode(line) {
            Ok(decoded) => decoded,
            Err(e) => return Step::Failed(e),
        };
        let step = match state {
            State::PlainResponse => plain(&decoded),
            State::LoginUser => match utf8(decoded) {
                Ok(user) if !user.is_empty() && !user.contains('\0') => {
                    self.state = State::LoginPassword(user);
                    return Step::Challenge(LOGIN_PASSWORD.to_owned());
                }
                Ok(_) => Err(SaslError::Malformed),
                Err(e) => Err(e),
            },
            State::LoginPassword(user) => match utf8(decoded) {
                Ok(password) if !password.is_empty() && !password.contains('\0') => Ok(
                    Credentials::password("LOGIN", None, user, Secret::new(password)),
                ),
                Ok(_) => Err(SaslError::Malformed),
                Err(e) => Err(e),
            },
            State::CramResponse(challenge) => cram_md5(decoded, challenge),
            State::Finished => Err(SaslError::Malformed),
        };
        match step {
            Ok(credentials) => Step::Done(credentials),
            Err(e) => Step::Failed(e),
        }
    }
}

/// Decodes a response; `=` alone is the empty response (RFC 4954 §4).
fn decode(line: &str) -> Result<Vec<u8>, SaslError> {
    if line.len() > MAX_RESPONSE {
        return Err(SaslError::TooLong);
    }
    if line == "=" {
        return Ok(Vec::new());
    }
    BASE64.decode(line).map_err(|_| SaslError::BadBase64)
}

fn utf8(bytes: Vec<u8>) -> Result<String, SaslError> {
    String::from_utf8(bytes).map_err(|_| SaslError::Malformed)
}

/// RFC 4616 §2: `message = [authzid] UTF8NUL authcid UTF8NUL passwd`, where authcid
/// and passwd are non-empty and none of the three contains NUL.
fn plain(decoded: &[u8]) -> Result<Credentials, SaslError> {
    let text = std::str::from_utf8(decoded).map_err(|_| SaslError::Malformed)?;
    let mut fields = text.split('\0');
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SaslError::Malformed);
    };
    if authcid.is_empty() || passwd.is_empty() {
        return Err(SaslError::Malformed);
    }
    // RFC 4616 §2: an authzid that is not the authcid asks to act as another user.
    if !authzid.is_empty() && authzid != authcid {
        return Err(SaslError::AuthzidMismatch);
    }
    let authzid = (!authzid.is_empty()).then(|| authzid.to_owned());
    Ok(Credentials::password(
        "PLAIN",
        authzid,
        authcid,
        Secret::new(passwd),
    ))
}

/// RFC 2195 §2: the response is `user SP digest`, the digest 16 octets as 32 hex
/// digits (lowercase on the wire; uppercase is accepted and lowered).
fn cram_md5(decoded: Vec<u8>, challenge: String) -> Result<Credentials, SaslError> {
    let text = utf8(decoded)?;
    let (user, digest) = text.rsplit_once(' ').ok_or(SaslError::Malformed)?;
    if user.is_empty() || user.contains('\0') || !is_md5_hex(digest) {
        return Err(SaslError::Malformed);
    }
    Ok(Credentials::CramMd5 {
        user: user.to_owned(),
        challenge,
        digest: digest.to_ascii_lowercase(),
    })
}

/// Whether `digest` is an MD5 digest written as 32 hex digits (RFC 2195 §2,
/// RFC 1939 §7).
pub fn is_md5_hex(digest: &str) -> bool {
    digest.len() == 32 && digest.bytes().all(|b| b.is_ascii_hexdigit())
}

/// True for a line that is not one of the protocol's commands (`verbs`) but could be a
/// SASL response: nothing but base64 characters. A client whose AUTH was refused (538,
/// 504) may send its credentials anyway; such a line must not reach an event or a log
/// in clear, even though the session answers it as an unknown command.
pub fn may_be_credentials(line: &[u8], verbs: &[&str]) -> bool {
    let line = line.trim_ascii();
    let first = line
        .split(|b| b.is_ascii_whitespace())
        .next()
        .unwrap_or_default();
    let is_verb = verbs
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(first));
    !is_verb
        && line.len() >= 4
        && line
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// Base64 of `bytes`, for a challenge a session builds itself.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    BASE64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    #[test]
    fn spots_stray_credentials_but_not_commands() {
        let verbs = ["NOOP", "QUIT", "RSET"];
        assert!(may_be_credentials(b"AHRhcm8Ac2VjcmV0", &verbs));
        assert!(may_be_credentials(b"dGFybw==", &verbs));
        assert!(!may_be_credentials(b"NOOP", &verbs));
        assert!(!may_be_credentials(b"quit", &verbs));
        assert!(!may_be_credentials(b"MAIL FROM:<a@b>", &verbs));
        assert!(!may_be_credentials(b"abc", &verbs));
    }

    const RFC2195_CHALLENGE: &str = "<1896.697170952@postoffice.reston.mci.net>";

    fn pw(mechanism: &'static str, authzid: Option<&str>, user: &str, pass: &str) -> Step {
        Step::Done(Credentials::password(
            mechanism,
            authzid.map(str::to_owned),
            user,
            Secret::new(pass),
        ))
    }

    #[test]
    fn mechanism_names_are_case_insensitive() {
        for (name, want) in [
            ("PLAIN", Some(Mechanism::Plain)),
            ("plain", Some(Mechanism::Plain)),
            ("Login", Some(Mechanism::Login)),
            ("cram-md5", Some(Mechanism::CramMd5)),
            ("CRAM-MD5", Some(Mechanism::CramMd5)),
            ("DIGEST-MD5", None),
            ("", None),
        ] {
            assert_eq!(Mechanism::parse(name), want, "{name}");
        }
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::parse(m.name()), Some(m));
        }
    }

    /// PLAIN with an initial response: the RFC 4616 §4 examples and the errors.
    #[test]
    fn plain_initial_response() {
        let cases: &[(&str, Step)] = &[
            // RFC 4616 §4: "\0tim\0tanstaaftanstaaf"
            (
                "AHRpbQB0YW5zdGFhZnRhbnN0YWFm",
                pw("PLAIN", None, "tim", "tanstaaftanstaaf"),
            ),
            // RFC 4616 §4: "Ursel\0Kurt\0xipj3plmq" asks to act as another user
            (
                "VXJzZWwAS3VydAB4aXBqM3BsbXE=",
                Step::Failed(SaslError::AuthzidMismatch),
            ),
            // "tim\0tim\0secret": an authzid equal to the authcid is fine
            (
                &encode("tim\0tim\0secret"),
                pw("PLAIN", Some("tim"), "tim", "secret"),
            ),
            // padding stripped
            (
                "AHRpbQB0YW5zdGFhZnRhbnN0YWFm",
                pw("PLAIN", None, "tim", "tanstaaftanstaaf"),
            ),
            (
                &encode("\0a\0b").replace('=', ""),
                pw("PLAIN", None, "a", "b"),
            ),
            // trailing space tolerated
            (
                &format!("{} ", encode("\0a\0b")),
                pw("PLAIN", None, "a", "b"),
            ),
            ("=", Step::Failed(SaslError::Malformed)),
            ("*", Step::Failed(SaslError::Cancelled)),
            ("not base64!", Step::Failed(SaslError::BadBase64)),
            ("AHRpbQ=B0", Step::Failed(SaslError::BadBase64)),
            (&encode("tim\0secret"), Step::Failed(SaslError::Malformed)),
            (&encode("\0\0secret"), Step::Failed(SaslError::Malformed)),
            (&encode("\0tim\0"), Step::Failed(SaslError::Malformed)),
            (&encode("\0tim\0a\0b"), Step::Failed(SaslError::Malformed)),
            (&encode(b"\0tim\0\xff"), Step::Failed(SaslError::Malformed)),
            (
                &"A".repeat(MAX_RESPONSE + 4),
                Step::Failed(SaslError::TooLong),
            ),
        ];
        for (initial, want) in cases {
            let (_, step) = SaslExchange::start(Mechanism::Plain, Some(initial), "<x>");
            assert_eq!(&step, want, "initial response {initial:?}");
        }
    }

    #[test]
    fn plain_with_a_continuation() {
        let (mut ex, step) = SaslExchange::start(Mechanism::Plain, None, "<x>");
        assert_eq!(step, Step::Challenge(String::new()));
        assert_eq!(
            ex.step("AHRpbQB0YW5zdGFhZnRhbnN0YWFm"),
            pw("PLAIN", None, "tim", "tanstaaftanstaaf")
        );
        // The exchange is over: further lines are errors.
        assert_eq!(
            ex.step("AHRpbQB0YW5zdGFhZnRhbnN0YWFm"),
            Step::Failed(SaslError::Malformed)
        );

        let (mut ex, _) = SaslExchange::start(Mechanism::Plain, None, "<x>");
        assert_eq!(ex.step("*"), Step::Failed(SaslError::Cancelled));
        let (mut ex, _) = SaslExchange::start(Mechanism::Plain, None, "<x>");
        assert_eq!(ex.step("%%%"), Step::Failed(SaslError::BadBase64));
    }

    #[test]
    fn login_prompts_for_user_then_password() {
        let (mut ex, step) = SaslExchange::start(Mechanism::Login, None, "<x>");
        assert_eq!(step, Step::Challenge(encode("Username:")));
        assert_eq!(
            ex.step(&encode("tim")),
            Step::Challenge(encode("Password:"))
        );
        assert_eq!(
            ex.step(&encode("tanstaaf")),
            pw("LOGIN", None, "tim", "tanstaaf")
        );

        // The user name as an initial response skips the first prompt.
        let (mut ex, step) = SaslExchange::start(Mechanism::Login, Some(&encode("tim")), "<x>");
        assert_eq!(step, Step::Challenge(encode("Password:")));
        assert_eq!(ex.step(&encode("pw")), pw("LOGIN", None, "tim", "pw"));

        // Cancel at either prompt, bad base64, empty fields.
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, None, "<x>");
        assert_eq!(ex.step("*"), Step::Failed(SaslError::Cancelled));
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, None, "<x>");
        assert_eq!(
            ex.step(&encode("tim")),
            Step::Challenge(encode("Password:"))
        );
        assert_eq!(ex.step("*"), Step::Failed(SaslError::Cancelled));
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, None, "<x>");
        assert_eq!(ex.step("dGlt!"), Step::Failed(SaslError::BadBase64));
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, None, "<x>");
        assert_eq!(ex.step("="), Step::Failed(SaslError::Malformed));
        let (mut ex, _) = SaslExchange::start(Mechanism::Login, None, "<x>");
        assert_eq!(
            ex.step(&encode("tim")),
            Step::Challenge(encode("Password:"))
        );
        assert_eq!(ex.step("="), Step::Failed(SaslError::Malformed));
    }

    /// RFC 2195 §2 example.
    #[test]
    fn cram_md5_rfc2195_example() {
        let (mut ex, step) = SaslExchange::start(Mechanism::CramMd5, None, RFC2195_CHALLENGE);
        assert_eq!(
            step,
            Step::Challenge("PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+".into())
        );
        assert_eq!(
            ex.step("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"),
            Step::Done(Credentials::CramMd5 {
                user: "tim".into(),
                challenge: RFC2195_CHALLENGE.into(),
                digest: "b913a602c7eda7a495b4e6e7334d3890".into(),
            })
        );
    }

    #[test]
    fn cram_md5_errors() {
        let cases: &[(String, Step)] = &[
            (
                encode("tim B913A602C7EDA7A495B4E6E7334D3890"),
                Step::Done(Credentials::CramMd5 {
                    user: "tim".into(),
                    challenge: "<x>".into(),
                    digest: "b913a602c7eda7a495b4e6e7334d3890".into(),
                }),
            ),
            (encode("tim"), Step::Failed(SaslError::Malformed)),
            (encode("tim b913"), Step::Failed(SaslError::Malformed)),
            (
                encode(" b913a602c7eda7a495b4e6e7334d3890"),
                Step::Failed(SaslError::Malformed),
            ),
            (
                encode("tim g913a602c7eda7a495b4e6e7334d3890"),
                Step::Failed(SaslError::Malformed),
            ),
            ("=".into(), Step::Failed(SaslError::Malformed)),
            ("*".into(), Step::Failed(SaslError::Cancelled)),
            ("@@".into(), Step::Failed(SaslError::BadBase64)),
        ];
        for (line, want) in cases {
            let (mut ex, _) = SaslExchange::start(Mechanism::CramMd5, None, "<x>");
            assert_eq!(&ex.step(line), want, "response {line:?}");
        }
        // CRAM-MD5 is server-first: no initial response.
        let (_, step) = SaslExchange::start(Mechanism::CramMd5, Some("dGlt"), "<x>");
        assert_eq!(step, Step::Failed(SaslError::Malformed));
    }

    #[test]
    fn credentials_name_their_mechanism_and_hide_the_password() {
        let c = Credentials::password("USER", None, "alice", Secret::new("hunter2"));
        assert_eq!((c.user(), c.mechanism()), ("alice", "USER"));
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = Credentials::Apop {
            user: "bob".into(),
            timestamp: "<1.2@h>".into(),
            digest: "c4c9334bac560ecc979e58001b3e22fb".into(),
        };
        assert_eq!((c.user(), c.mechanism()), ("bob", "APOP"));
        let Step::Done(c) = SaslExchange::start(Mechanism::Plain, Some(&encode("\0t\0p")), "").1
        else {
            panic!("PLAIN should finish on its initial response");
        };
        assert_eq!(c.mechanism(), "PLAIN");
    }
}
