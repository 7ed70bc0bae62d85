//! DKIM signing of relayed mail (RFC 6376): a message of the configured domain,
//! relayed through the transport map to the sink, carries a signature that an
//! independent verifier (python's dkimpy) accepts, and that fails once one body
//! byte changes. Mail of another domain goes unsigned.

mod delivery_support;

use delivery_support::{ALICE, Sink, relay, relay_session, setup};
use popgate_tests::run_ok;
use std::path::Path;
use std::process::Command;

/// A fresh 2048-bit RSA key (PKCS#8 PEM) in `dir`; returns its path and the public
/// key's DER in base64, the `p=` of its DNS record.
fn rsa_key(dir: &Path) -> (std::path::PathBuf, String) {
    let key = dir.join("dkim.pem");
    run_ok(
        Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
            .args(["rsa_keygen_bits:2048", "-out"])
            .arg(&key),
    );
    let der = run_ok(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&key),
    )
    .stdout;
    (key, popgate_tests::base64(&der))
}

/// dkimpy, installed for the test when missing.
fn ensure_dkimpy() {
    let have = Command::new("python3")
        .args(["-c", "import dkim"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        run_ok(Command::new("python3").args(["-m", "pip", "install", "--quiet", "dkimpy"]));
    }
}

/// Whether dkimpy verifies `message` with the public key `p`.
fn dkimpy_verifies(message: &[u8], p: &str) -> bool {
    let dir = tempfile::tempdir().expect("a folder for the message");
    let file = dir.path().join("message.eml");
    std::fs::write(&file, message).expect("write the message");
    let script = "import sys, dkim\n\
                  record = ('v=DKIM1; k=rsa; p=' + sys.argv[2]).encode()\n\
                  message = open(sys.argv[1], 'rb').read()\n\
                  ok = dkim.verify(message, dnsfunc=lambda name, timeout=5: record)\n\
                  print('VERIFIED' if ok else 'FAILED')\n";
    let out = run_ok(
        Command::new("python3")
            .args(["-c", script])
            .arg(&file)
            .arg(p),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim() {
        "VERIFIED" => true,
        "FAILED" => false,
        other => panic!("dkimpy said {other:?}"),
    }
}

fn dkim_setup(sink: &Sink, key: &Path) -> popgate_tests::Setup {
    setup(&format!(
        "[relay.transport]\n\"remote.test\" = \"{}\"\n\n[relay.dkim]\ndomain = \"example.test\"\n\
         selector = \"popgate\"\nkey = \"{}\"\n",
        sink.addr,
        key.display()
    ))
}

#[test]
fn relayed_mail_of_the_domain_is_signed_and_verifies() {
    ensure_dkimpy();
    let keys = tempfile::tempdir().expect("a folder for the key");
    let (key, p) = rsa_key(keys.path());
    let sink = Sink::start();
    let server = dkim_setup(&sink, &key).start();
    let (_pop, mut smtp) = relay_session(&server);
    // Folded and spaced header fields, trailing white space and trailing empty lines:
    // relaxed canonicalisation must agree with the verifier's on all of them.
    let message = b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\n\
                    Subject: signed  and\r\n\tfolded \r\nDate: Sat, 28 Nov 2026 12:00:00 +0000\r\n\
                    Message-ID: <dkim-1@example.test>\r\n\r\nhello   world \r\n..dot\r\n\r\n\r\n";
    relay(&mut smtp, ALICE, &["bob@remote.test"], message);
    smtp.smtp("QUIT");

    let got = sink.wait("the signed message", |m| !m.is_empty());
    let data = &got[0].data;
    assert!(
        data.starts_with(
            b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.test; s=popgate;"
        ),
        "{}",
        String::from_utf8_lossy(data)
    );
    assert!(
        dkimpy_verifies(data, &p),
        "dkimpy rejects:\n{}",
        String::from_utf8_lossy(data)
    );

    // One body byte changed: the body hash no longer matches.
    let at = data
        .windows(5)
        .position(|w| w == b"hello")
        .expect("the body is there");
    let mut altered = data.clone();
    altered[at] = b'j';
    assert!(!dkimpy_verifies(&altered, &p), "an altered body must fail");
}

#[test]
fn mail_of_another_domain_is_not_signed() {
    let keys = tempfile::tempdir().expect("a folder for the key");
    let (key, _) = rsa_key(keys.path());
    let sink = Sink::start();
    let server = dkim_setup(&sink, &key).start();
    let (_pop, mut smtp) = relay_session(&server);
    relay(
        &mut smtp,
        "someone@elsewhere.test",
        &["bob@remote.test"],
        b"From: someone@elsewhere.test\r\nSubject: not ours\r\n\r\nbody\r\n",
    );
    let got = sink.wait("the unsigned message", |m| !m.is_empty());
    assert!(
        !String::from_utf8_lossy(&got[0].data).contains("DKIM-Signature"),
        "{}",
        String::from_utf8_lossy(&got[0].data)
    );
}
