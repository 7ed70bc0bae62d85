//! The server's certificate: the self-signed pair generated on first start (its
//! announced fingerprint is what `openssl` and a client see), reload on SIGHUP (new
//! connections get the new certificate, open sessions go on, a broken pair is refused
//! and the old one kept), and the TLS event with the negotiated version and cipher.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use popgate_tests::{
    HOSTNAME, PY_PRELUDE, Server, Setup, TestCa, is_event, log_field, openssl_fingerprint, python,
};

const ALICE: &str = "alice@example.test";
const PW: &str = "alice-cert-secret-2";

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// `AA:BB:..` as lowercase hex without colons (what hashlib prints).
fn plain_hex(fingerprint: &str) -> String {
    fingerprint.replace(':', "").to_ascii_lowercase()
}

/// POP3S from python trusting `cafile`: the SHA-256 of the certificate the server
/// presented, and the login's reply.
const PEER_CERT: &str = r#"
host, port, cafile, user, password = sys.argv[1:]
s = poplib.POP3_SSL(host, int(port), context=tls_context(cafile), timeout=30)
out("PEER_SHA256", peer_sha256(s.sock))
out("VERSION", s.sock.version())
out("USER", s.user(user))
out("PASS", s.pass_(password))
out("QUIT", s.quit())
"#;

fn peer_sha256(server: &Server, cafile: &Path) -> String {
    let pop3s = server.addr("pop3s");
    let out = python(
        PEER_CERT,
        &[
            "127.0.0.1",
            &pop3s.port().to_string(),
            path(cafile),
            ALICE,
            PW,
        ],
    );
    assert!(
        out.get("PASS").starts_with("+OK"),
        "login over POP3S: {out:?}"
    );
    out.get("PEER_SHA256")
}

#[test]
fn generated_pair_is_announced_with_the_fingerprint_clients_see() {
    let server = Setup::default()
        .listeners(&["smtp", "pop3", "pop3s"])
        .user(ALICE, PW)
        .start();
    let cert = server.data_dir().join("cert.pem");
    let key = server.data_dir().join("key.pem");
    assert!(
        cert.is_file() && key.is_file(),
        "no generated cert.pem/key.pem in data_dir"
    );

    let lines = server.stdout_lines();
    let prefix = format!("popgate: generated a self-signed certificate for {HOSTNAME} in ");
    let at = lines
        .iter()
        .position(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}...` line on stdout: {lines:?}"));
    let first_listening = lines
        .iter()
        .position(|l| l.starts_with("popgate: listening "))
        .expect("a listening line");
    assert!(
        at < first_listening,
        "the certificate line must come before the listening lines: {lines:?}"
    );
    let rest = &lines[at][prefix.len()..];
    let (announced_path, fingerprint) = rest
        .strip_suffix(')')
        .and_then(|r| r.split_once(" (SHA-256 fingerprint "))
        .unwrap_or_else(|| panic!("malformed certificate line {:?}", lines[at]));
    assert_eq!(
        std::fs::canonicalize(announced_path).ok(),
        std::fs::canonicalize(&cert).ok(),
        "announced path {announced_path:?} is not data_dir/cert.pem"
    );
    assert_eq!(
        fingerprint,
        openssl_fingerprint(&cert),
        "announced fingerprint vs `openssl x509 -fingerprint -sha256` of {}",
        cert.display()
    );

    // The generated certificate is its own trust anchor: python verifies the chain and
    // the address 127.0.0.1 (a SAN) against it, and sees the announced certificate.
    assert_eq!(
        peer_sha256(&server, &cert),
        plain_hex(fingerprint),
        "the certificate a client sees is not the announced one"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key)
            .expect("key.pem")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "generated key.pem mode {mode:o}");
    }
}

#[test]
fn configured_pair_is_used_and_no_pair_is_generated() {
    let ca = TestCa::new("popgate test CA");
    let pair = ca.issue("server");
    let server = Setup::default()
        .listeners(&["smtp", "pop3", "pop3s"])
        .user(ALICE, PW)
        .tls_pair(&pair)
        .start();
    assert!(
        !server
            .stdout_lines()
            .iter()
            .any(|l| l.contains("generated a self-signed")),
        "a configured pair must not be replaced: {:?}",
        server.stdout_lines()
    );
    assert!(
        !server.data_dir().join("cert.pem").exists(),
        "cert.pem generated anyway"
    );
    assert_eq!(
        peer_sha256(&server, &ca.cert),
        plain_hex(&openssl_fingerprint(&pair.cert))
    );
}

/// A python process that opens a POP3S session, says OPEN, waits for a line on
/// stdin, then uses the old session and opens a new one.
const ACROSS_RELOAD: &str = r#"
host, port, cafile, user, password = sys.argv[1:]
ctx = tls_context(cafile)
old = poplib.POP3_SSL(host, int(port), context=ctx, timeout=30)
out("OLD_SHA256", peer_sha256(old.sock))
out("OPEN", "yes")
sys.stdin.readline()
out("OLD_USER", old.user(user))
out("OLD_PASS", old.pass_(password))
out("OLD_NOOP", old.noop())
out("OLD_QUIT", old.quit())
new = poplib.POP3_SSL(host, int(port), context=ctx, timeout=30)
out("NEW_SHA256", peer_sha256(new.sock))
out("NEW_QUIT", new.quit())
"#;

#[test]
fn sighup_reloads_the_certificate_for_new_connections() {
    let ca = TestCa::new("popgate test CA");
    let first = ca.issue("first");
    let second = ca.issue("second");
    // The server reads the paths of `live`; the test replaces their contents.
    let live = ca.issue("live");
    std::fs::copy(&first.cert, &live.cert).expect("install the first certificate");
    std::fs::copy(&first.key, &live.key).expect("install the first key");
    let server = Setup::default()
        .listeners(&["smtp", "pop3", "pop3s"])
        .user(ALICE, PW)
        .tls_pair(&live)
        .start();
    let (fp1, fp2) = (
        plain_hex(&openssl_fingerprint(&first.cert)),
        plain_hex(&openssl_fingerprint(&second.cert)),
    );

    let pop3s = server.addr("pop3s");
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(format!("{PY_PRELUDE}{ACROSS_RELOAD}"))
        .args([
            "127.0.0.1",
            &pop3s.port().to_string(),
            path(&ca.cert),
            ALICE,
            PW,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).expect("read python's output");
        assert!(n > 0, "python exited before opening its session: {lines:?}");
        let done = line.starts_with("OPEN ");
        lines.push(line.trim_end().to_string());
        if done {
            break;
        }
    }
    assert_eq!(lines[0], format!("OLD_SHA256 {fp1}"), "before the reload");

    std::fs::copy(&second.cert, &live.cert).expect("install the second certificate");
    std::fs::copy(&second.key, &live.key).expect("install the second key");
    let mark = server.log_len();
    server.signal("HUP");
    server.wait_log_after(mark, "`TLS certificate reloaded` after SIGHUP", |l| {
        l.contains("TLS certificate reloaded")
    });

    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(b"go\n")
        .expect("tell python to go on");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("python's output");
    let mut errors = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut stderr, &mut errors);
    }
    let status = child.wait().expect("wait for python");
    assert!(
        status.success(),
        "python failed ({status}); output: {lines:?} {rest}\nstderr:\n{errors}"
    );
    let out = popgate_tests::PyOut(rest);
    for key in ["OLD_NOOP", "OLD_USER", "OLD_PASS", "OLD_QUIT", "NEW_QUIT"] {
        assert!(
            out.get(key).starts_with("+OK"),
            "{key}: the session opened before the reload must go on: {out:?}"
        );
    }
    assert_eq!(out.get("NEW_SHA256"), fp2, "a new connection after SIGHUP");

    // A broken pair is refused and the working one kept.
    std::fs::write(&live.cert, "not a certificate\n").expect("break the certificate");
    let mark = server.log_len();
    server.signal("HUP");
    server.wait_log_after(mark, "a failed TLS reload", |l| {
        l.contains("TLS reload failed")
    });
    assert_eq!(
        peer_sha256(&server, &ca.cert),
        fp2,
        "after a failed reload the previous certificate stays in use"
    );
}

const VERSIONS: &str = r#"
host, port, cafile = sys.argv[1:]
ctx = tls_context(cafile)
s = poplib.POP3_SSL(host, int(port), context=ctx, timeout=30)
out("DEFAULT", s.sock.version(), s.sock.cipher()[0])
s.quit()
ctx12 = tls_context(cafile)
ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
s = poplib.POP3_SSL(host, int(port), context=ctx12, timeout=30)
out("TLS12", s.sock.version(), s.sock.cipher()[0])
s.quit()
"#;

#[test]
fn tls_event_names_version_and_cipher_and_tls_1_2_still_works() {
    let ca = TestCa::new("popgate test CA");
    let server = Setup::default()
        .listeners(&["smtp", "pop3", "pop3s"])
        .tls_pair(&ca.issue("server"))
        .start();
    let out = python(
        VERSIONS,
        &[
            "127.0.0.1",
            &server.addr("pop3s").port().to_string(),
            path(&ca.cert),
        ],
    );
    assert!(out.get("DEFAULT").starts_with("TLSv1.3 "), "{out:?}");
    assert!(out.get("TLS12").starts_with("TLSv1.2 "), "{out:?}");
    for version in ["TLSv1.3", "TLSv1.2"] {
        let line = server.wait_log(&format!("event=tls version={version}"), |l| {
            is_event(l, "tls") && log_field(l, "version") == Some(version)
        });
        assert_eq!(log_field(&line, "peer"), Some("127.0.0.1"), "{line}");
        let cipher = log_field(&line, "cipher").unwrap_or_default();
        assert!(
            !cipher.is_empty() && cipher != "unknown",
            "no negotiated cipher in {line:?}"
        );
    }
}
