//! TLS and SMTP AUTH with real clients that verify the server: swaks, curl, python's
//! smtplib and poplib, each trusting only a CA this test made with `openssl` (never
//! with verification turned off). Every listener: STARTTLS on submission, implicit TLS
//! on SMTPS (RFC 8314), STLS on POP3, implicit TLS on POP3S.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use popgate_tests::{
    CertPair, PyOut, Server, Setup, TestCa, is_event, log_field, python, reply, run, send_local,
    swaks,
};

const ALICE: &str = "alice@example.test";
const PW: &str = "alice-tls-secret-1";
const REMOTE: &str = "someone@remote.test";

const LISTENERS: &[&str] = &["smtp", "submission", "smtps", "pop3", "pop3s"];

/// A server on every mail listener with a certificate from `ca`.
fn server(ca: &TestCa) -> Server {
    server_with(&ca.issue("server"), Setup::default())
}

fn server_with(pair: &CertPair, setup: Setup) -> Server {
    setup
        .listeners(LISTENERS)
        .user(ALICE, PW)
        .tls_pair(pair)
        .start()
}

/// How many `popgate queue list` lines name `rcpt`.
fn queued_for(server: &Server, rcpt: &str) -> usize {
    server
        .queue_list()
        .lines()
        .filter(|l| l.contains(rcpt))
        .count()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------------
// swaks

/// swaks authenticating with `mechanism` and relaying to a remote recipient;
/// `tls` is `-tls` (STARTTLS, required) or `--tls-on-connect`.
fn swaks_auth(addr: SocketAddr, tls: &str, cafile: &Path, mechanism: &str) -> Output {
    run(swaks()
        .args(["--server", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()])
        .args([tls, "--tls-verify", "--tls-ca-path", path(cafile)])
        .args([
            "--auth",
            mechanism,
            "--auth-user",
            ALICE,
            "--auth-password",
            PW,
        ])
        .args(["--ehlo", "client.test", "--timeout", "30"])
        .args(["--from", ALICE, "--to", REMOTE])
        .args(["--header", &format!("Subject: swaks {mechanism} {tls}")])
        .args(["--body", "sent by swaks over TLS"]))
}

/// A successful swaks transcript: TLS went up, AUTH with `mechanism` got 235, the
/// message got `250 ... queued as`. swaks writes lines read over TLS as `<~ `.
fn assert_swaks_relayed(out: &Output, mechanism: &str, what: &str) {
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what}: swaks failed ({}):\n{}",
        out.status,
        text(out)
    );
    assert!(
        log.contains("=== TLS started with cipher"),
        "{what}: no TLS in:\n{log}"
    );
    assert!(
        log.contains(&format!("~> AUTH {mechanism}")),
        "{what}: swaks did not use AUTH {mechanism}:\n{log}"
    );
    assert!(
        log.contains(&format!("<~  {}", reply::AUTH_OK)),
        "{what}: expected `<~  {}...` in:\n{log}",
        reply::AUTH_OK
    );
    assert!(
        log.contains(&format!("<~  {}", reply::QUEUED)),
        "{what}: expected `<~  {}<id>` in:\n{log}",
        reply::QUEUED
    );
}

#[test]
fn swaks_auth_plain_and_login_over_starttls_on_submission() {
    let ca = TestCa::new("popgate test CA");
    let server = server(&ca);
    for (n, mechanism) in ["PLAIN", "LOGIN"].into_iter().enumerate() {
        let out = swaks_auth(server.addr("submission"), "-tls", &ca.cert, mechanism);
        let what = format!("swaks STARTTLS AUTH {mechanism} to submission");
        assert_swaks_relayed(&out, mechanism, &what);
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(
            log.contains(&format!("<-  {}", reply::START_TLS)),
            "{what}: expected the STARTTLS go-ahead `<-  {}...` in:\n{log}",
            reply::START_TLS
        );
        assert_eq!(queued_for(&server, REMOTE), n + 1, "{what}: queue entries");
        server.wait_log(&format!("auth_ok for {ALICE} with {mechanism}"), |l| {
            is_event(l, "auth_ok")
                && log_field(l, "user") == Some(ALICE)
                && log_field(l, "mechanism") == Some(mechanism)
        });
    }
    server.wait_log(&format!("relay decision=auth user={ALICE}"), |l| {
        is_event(l, "relay") && l.contains(&format!("decision=auth user={ALICE}"))
    });
}

#[test]
fn swaks_auth_plain_and_login_over_implicit_tls_on_smtps() {
    let ca = TestCa::new("popgate test CA");
    let server = server(&ca);
    for (n, mechanism) in ["PLAIN", "LOGIN"].into_iter().enumerate() {
        let out = swaks_auth(
            server.addr("smtps"),
            "--tls-on-connect",
            &ca.cert,
            mechanism,
        );
        let what = format!("swaks implicit TLS AUTH {mechanism} to smtps");
        assert_swaks_relayed(&out, mechanism, &what);
        assert_eq!(queued_for(&server, REMOTE), n + 1, "{what}: queue entries");
    }
}

/// The clients above really verify: a server certificate from another CA is refused
/// by swaks before anything is sent, and nothing is queued.
#[test]
fn swaks_refuses_a_certificate_from_another_ca() {
    let ca = TestCa::new("popgate test CA");
    let other = TestCa::new("some other CA");
    let server = server(&ca);
    let out = swaks_auth(server.addr("submission"), "-tls", &other.cert, "PLAIN");
    let log = text(&out);
    assert!(
        !out.status.success(),
        "swaks trusted a certificate from another CA:\n{log}"
    );
    assert!(
        !log.contains(reply::AUTH_OK),
        "swaks authenticated over an unverified TLS session:\n{log}"
    );
    assert_eq!(
        queued_for(&server, REMOTE),
        0,
        "queue after a refused handshake"
    );
}

// ---------------------------------------------------------------------------------
// curl

/// curl with the test CA as the only trust anchor, `localhost` pinned to 127.0.0.1 so
/// the name in the URL is the one verified.
fn curl(cafile: &Path, addr: SocketAddr) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-v", "--max-time", "60", "--cacert", path(cafile)])
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", addr.port())]);
    cmd
}

fn deliver_one(server: &Server, subject: &str) {
    let message = format!(
        "From: sender@elsewhere.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n"
    );
    send_local(server.smtp(), ALICE, message.as_bytes());
}

#[test]
fn curl_pop3s_and_pop3_with_ssl_reqd_read_the_maildrop() {
    let ca = TestCa::new("popgate test CA");
    let server = server(&ca);
    deliver_one(&server, "for curl over TLS");

    let pop3s = server.addr("pop3s");
    let out = run(curl(&ca.cert, pop3s)
        .args(["--user", &format!("{ALICE}:{PW}")])
        .arg(format!("pop3s://localhost:{}/", pop3s.port())));
    assert!(
        out.status.success(),
        "curl pop3s:// LIST failed:\n{}",
        text(&out)
    );
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.starts_with("1 ") && list.lines().count() == 1,
        "curl pop3s:// LIST: expected one message, got {list:?}"
    );

    let out = run(curl(&ca.cert, pop3s)
        .args(["--user", &format!("{ALICE}:{PW}")])
        .arg(format!("pop3s://localhost:{}/1", pop3s.port())));
    assert!(
        out.status.success(),
        "curl pop3s:// RETR failed:\n{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Subject: for curl over TLS"),
        "curl pop3s:// RETR 1:\n{}",
        text(&out)
    );

    let pop3 = server.pop3();
    let out = run(curl(&ca.cert, pop3)
        .arg("--ssl-reqd")
        .args(["--user", &format!("{ALICE}:{PW}")])
        .arg(format!("pop3://localhost:{}/1", pop3.port())));
    let log = text(&out);
    assert!(
        out.status.success(),
        "curl pop3:// --ssl-reqd RETR failed:\n{log}"
    );
    assert!(
        log.contains("> STLS") && log.contains(&format!("< {}", reply::STLS)),
        "curl pop3:// --ssl-reqd: expected `> STLS` and `< {}`:\n{log}",
        reply::STLS
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Subject: for curl over TLS"),
        "curl pop3:// --ssl-reqd RETR 1:\n{log}"
    );

    // Verification is on: another CA is refused (curl exit 60, "SSL certificate
    // problem") and no login happens.
    let other = TestCa::new("some other CA");
    let out = run(curl(&other.cert, pop3s)
        .args(["--user", &format!("{ALICE}:{PW}")])
        .arg(format!("pop3s://localhost:{}/", pop3s.port())));
    assert_eq!(
        out.status.code(),
        Some(60),
        "curl pop3s:// trusting another CA: expected exit 60:\n{}",
        text(&out)
    );
}

/// curl sending `file` as alice with `AUTH=<mechanism>`; `scheme` is `smtp` (to
/// submission, with `--ssl-reqd`: STARTTLS or fail) or `smtps` (implicit TLS).
fn curl_smtp(server: &Server, ca: &TestCa, scheme: &str, mechanism: &str, file: &Path) -> Output {
    let addr = if scheme == "smtps" {
        server.addr("smtps")
    } else {
        server.addr("submission")
    };
    let mut cmd = curl(&ca.cert, addr);
    if scheme == "smtp" {
        cmd.arg("--ssl-reqd");
    }
    run(cmd
        .args(["--user", &format!("{ALICE}:{PW}")])
        .args(["--login-options", &format!("AUTH={mechanism}")])
        .args([
            "--mail-from",
            ALICE,
            "--mail-rcpt",
            REMOTE,
            "-T",
            path(file),
        ])
        .arg(format!("{scheme}://localhost:{}/client.test", addr.port())))
}

#[test]
fn curl_smtp_with_ssl_reqd_and_smtps_authenticate_and_relay() {
    let ca = TestCa::new("popgate test CA");
    let server = server(&ca);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("message.eml");
    std::fs::write(
        &file,
        format!("From: {ALICE}\r\nTo: {REMOTE}\r\nSubject: curl AUTH\r\n\r\nvia curl\r\n"),
    )
    .expect("write the message");

    let cases = [("smtp", "PLAIN"), ("smtp", "LOGIN"), ("smtps", "PLAIN")];
    for (n, (scheme, mechanism)) in cases.into_iter().enumerate() {
        let out = curl_smtp(&server, &ca, scheme, mechanism, &file);
        let log = text(&out);
        let what = format!("curl {scheme}:// AUTH={mechanism}");
        assert!(
            out.status.success(),
            "{what} failed ({}):\n{log}",
            out.status
        );
        if scheme == "smtp" {
            assert!(
                log.contains("> STARTTLS") && log.contains(&format!("< {}", reply::START_TLS)),
                "{what}: expected `> STARTTLS` and `< {}...`:\n{log}",
                reply::START_TLS
            );
        }
        assert!(
            log.contains(&format!("> AUTH {mechanism}")),
            "{what}: curl did not use AUTH {mechanism}:\n{log}"
        );
        assert!(
            log.contains(&format!("< {}", reply::AUTH_OK)),
            "{what}: expected `< {}...`:\n{log}",
            reply::AUTH_OK
        );
        assert!(
            log.contains(&format!("< {}", reply::QUEUED)),
            "{what}: expected `< {}<id>`:\n{log}",
            reply::QUEUED
        );
        assert_eq!(queued_for(&server, REMOTE), n + 1, "{what}: queue entries");
    }
}

// ---------------------------------------------------------------------------------
// python smtplib and poplib

const SMTPLIB: &str = r#"
host, subport, smtpsport, cafile, user, password, rcpt = sys.argv[1:]
ctx = tls_context(cafile)
msg = ("From: " + user + "\r\nTo: " + rcpt + "\r\nSubject: smtplib\r\n\r\nvia smtplib\r\n").encode()
s = smtplib.SMTP(host, int(subport), timeout=30)
s.ehlo("client.test")
out("OFFERS_STARTTLS", s.has_extn("starttls"))
out("STARTTLS", *s.starttls(context=ctx))
s.ehlo("client.test")
out("OFFERS_STARTTLS_AGAIN", s.has_extn("starttls"))
out("AUTH_MECHANISMS", s.esmtp_features.get("auth", "").strip())
out("LOGIN", *s.login(user, password))
out("MAIL", *s.mail(user))
out("RCPT", *s.rcpt(rcpt))
out("DATA", *s.data(msg))
out("QUIT", *s.quit())
s = smtplib.SMTP_SSL(host, int(smtpsport), context=ctx, timeout=30)
s.ehlo("client.test")
s.user, s.password = user, password
out("SSL_LOGIN", *s.auth("LOGIN", s.auth_login))
out("SSL_MAIL", *s.mail(user))
out("SSL_RCPT", *s.rcpt(rcpt))
out("SSL_DATA", *s.data(msg))
out("SSL_QUIT", *s.quit())
"#;

#[test]
fn python_smtplib_starttls_login_and_smtp_ssl() {
    let ca = TestCa::new("popgate test CA");
    let server = server(&ca);
    let (sub, smtps) = (server.addr("submission"), server.addr("smtps"));
    let out = python(
        SMTPLIB,
        &[
            "127.0.0.1",
            &sub.port().to_string(),
            &smtps.port().to_string(),
            path(&ca.cert),
            ALICE,
            PW,
            REMOTE,
        ],
    );
    assert_eq!(out.get("OFFERS_STARTTLS"), "True", "{out:?}");
    assert!(
        out.get("STARTTLS").starts_with(reply::START_TLS),
        "STARTTLS: {out:?}"
    );
    assert_eq!(
        out.get("OFFERS_STARTTLS_AGAIN"),
        "False",
        "RFC 3207 §4.2: EHLO after TLS must not offer STARTTLS: {out:?}"
    );
    let mechanisms: Vec<String> = out
        .get("AUTH_MECHANISMS")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert!(
        mechanisms.contains(&"PLAIN".to_string()) && mechanisms.contains(&"LOGIN".to_string()),
        "AUTH after STARTTLS: {mechanisms:?}"
    );
    assert!(
        !mechanisms.contains(&"CRAM-MD5".to_string()),
        "CRAM-MD5 is off by default ([auth] cram_md5 = false): {mechanisms:?}"
    );
    for key in ["LOGIN", "SSL_LOGIN"] {
        assert!(out.get(key).starts_with(reply::AUTH_OK), "{key}: {out:?}");
    }
    for key in ["MAIL", "RCPT", "SSL_MAIL", "SSL_RCPT"] {
        assert!(out.get(key).starts_with("250 "), "{key}: {out:?}");
    }
    for key in ["DATA", "SSL_DATA"] {
        assert!(out.get(key).starts_with(reply::QUEUED), "{key}: {out:?}");
    }
    assert_eq!(
        queued_for(&server, REMOTE),
        2,
        "two relayed messages queued"
    );
}

const POPLIB: &str = r#"
host, port, sport, cafile, user, password = sys.argv[1:]
ctx = tls_context(cafile)
p = poplib.POP3(host, int(port), timeout=30)
out("CAPA_PLAIN", " ".join(sorted(p.capa())))
out("STLS", p.stls(context=ctx))
caps = p.capa()
out("CAPA_TLS", " ".join(sorted(caps)))
out("SASL_TLS", " ".join(caps.get("SASL", [])))
out("USER", p.user(user))
out("PASS", p.pass_(password))
out("STAT", *p.stat())
out("QUIT", p.quit())
s = poplib.POP3_SSL(host, int(sport), context=ctx, timeout=30)
out("SSL_CAPA", " ".join(sorted(s.capa())))
out("SSL_USER", s.user(user))
out("SSL_PASS", s.pass_(password))
out("SSL_STAT", *s.stat())
out("SSL_QUIT", s.quit())
"#;

fn capa(out: &PyOut, key: &str) -> Vec<String> {
    out.get(key)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn python_poplib_stls_and_pop3_ssl() {
    let ca = TestCa::new("popgate test CA");
    let server = server(&ca);
    deliver_one(&server, "for poplib");
    let out = python(
        POPLIB,
        &[
            "127.0.0.1",
            &server.pop3().port().to_string(),
            &server.addr("pop3s").port().to_string(),
            path(&ca.cert),
            ALICE,
            PW,
        ],
    );
    assert!(
        capa(&out, "CAPA_PLAIN").contains(&"STLS".to_string()),
        "CAPA before TLS must offer STLS: {out:?}"
    );
    assert_eq!(out.get("STLS"), reply::STLS, "{out:?}");
    for key in ["CAPA_TLS", "SSL_CAPA"] {
        let caps = capa(&out, key);
        assert!(
            !caps.contains(&"STLS".to_string()),
            "{key}: STLS offered on a TLS session: {caps:?}"
        );
        for wanted in [
            "SASL",
            "USER",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "UIDL",
            "TOP",
            "IMPLEMENTATION",
        ] {
            assert!(
                caps.iter().any(|c| c == wanted),
                "{key}: no {wanted} in {caps:?}"
            );
        }
    }
    let sasl = out.get("SASL_TLS");
    assert!(
        sasl.split_whitespace().any(|m| m == "PLAIN")
            && sasl.split_whitespace().any(|m| m == "LOGIN"),
        "SASL over TLS: {sasl:?}"
    );
    for key in ["USER", "PASS", "QUIT", "SSL_USER", "SSL_PASS", "SSL_QUIT"] {
        assert!(out.get(key).starts_with("+OK"), "{key}: {out:?}");
    }
    for key in ["STAT", "SSL_STAT"] {
        assert!(
            out.get(key).starts_with("1 "),
            "{key}: one message: {out:?}"
        );
    }
}

const CAROL: &str = "carol@example.test";
const CAROL_PW: &str = "carol-apop-secret";

const APOP: &str = r#"
import re
host, port, cafile, user, password = sys.argv[1:]
ctx = tls_context(cafile)
p = poplib.POP3(host, int(port), timeout=30)
out("GREETING", p.getwelcome())
out("HAS_TIMESTAMP", re.search(rb"<[^<>@]+@[^<>]+>", p.getwelcome()) is not None)
out("STLS", p.stls(context=ctx))
try:
    out("BAD_APOP", p.apop(user, "not-" + password))
except poplib.error_proto as e:
    out("BAD_APOP", e.args[0])
out("APOP", p.apop(user, password))
out("STAT", *p.stat())
out("QUIT", p.quit())
"#;

#[test]
fn python_poplib_apop_when_enabled_for_a_plain_stored_user() {
    let ca = TestCa::new("popgate test CA");
    let server = server_with(
        &ca.issue("server"),
        Setup::default()
            .toml("[pop3]\napop = true\n")
            .toml("[auth]\nfailure_delay = \"20ms\"\nfailure_delay_max = \"320ms\"\n")
            .user_line(&format!("{CAROL}:{{PLAIN}}{CAROL_PW}")),
    );
    let out = python(
        APOP,
        &[
            "127.0.0.1",
            &server.pop3().port().to_string(),
            path(&ca.cert),
            CAROL,
            CAROL_PW,
        ],
    );
    assert_eq!(
        out.get("HAS_TIMESTAMP"),
        "True",
        "RFC 1939 §7: the greeting carries a <timestamp> when APOP is on: {out:?}"
    );
    assert_eq!(out.get("STLS"), reply::STLS, "{out:?}");
    assert!(
        out.get("BAD_APOP").starts_with(reply::POP3_AUTH),
        "APOP with a wrong secret: {out:?}"
    );
    assert!(out.get("APOP").starts_with("+OK"), "APOP: {out:?}");
    assert!(out.get("STAT").starts_with("0 "), "STAT: {out:?}");
    server.wait_log(&format!("auth_ok for {CAROL} with APOP"), |l| {
        is_event(l, "auth_ok")
            && log_field(l, "user") == Some(CAROL)
            && log_field(l, "mechanism") == Some("APOP")
    });
}

const NO_APOP: &str = r#"
import re
host, port, user, password = sys.argv[1:]
p = poplib.POP3(host, int(port), timeout=30)
out("HAS_TIMESTAMP", re.search(rb"<[^<>@]+@[^<>]+>", p.getwelcome()) is not None)
try:
    out("APOP", p.apop(user, password))
except poplib.error_proto as e:
    out("APOP", e.args[0])
out("QUIT", p.quit())
"#;

#[test]
fn apop_is_off_by_default() {
    let ca = TestCa::new("popgate test CA");
    let server = server_with(
        &ca.issue("server"),
        Setup::default().user_line(&format!("{CAROL}:{{PLAIN}}{CAROL_PW}")),
    );
    let out = python(
        NO_APOP,
        &[
            "127.0.0.1",
            &server.pop3().port().to_string(),
            CAROL,
            CAROL_PW,
        ],
    );
    assert_eq!(out.get("HAS_TIMESTAMP"), "False", "greeting: {out:?}");
    assert!(
        out.get("APOP").starts_with("-ERR"),
        "APOP while disabled: {out:?}"
    );
}

/// `[auth] cram_md5 = true`: swaks CRAM-MD5 (RFC 2195) over STARTTLS works for a user
/// stored with `{PLAIN}` and fails, with the usual 535, for a hashed one.
#[test]
fn swaks_cram_md5_when_enabled_for_a_plain_stored_user() {
    let ca = TestCa::new("popgate test CA");
    let server = server_with(
        &ca.issue("server"),
        Setup::default()
            .toml("[auth]\ncram_md5 = true\nfailure_delay = \"20ms\"\nfailure_delay_max = \"320ms\"\n")
            .user_line(&format!("{CAROL}:{{PLAIN}}{CAROL_PW}")),
    );
    let sub = server.addr("submission");
    let cram = |user: &str, password: &str| {
        run(swaks()
            .args(["--server", &sub.ip().to_string()])
            .args(["--port", &sub.port().to_string()])
            .args(["-tls", "--tls-verify", "--tls-ca-path", path(&ca.cert)])
            .args([
                "--auth",
                "CRAM-MD5",
                "--auth-user",
                user,
                "--auth-password",
                password,
            ])
            .args(["--ehlo", "client.test", "--timeout", "30"])
            .args(["--from", user, "--to", REMOTE])
            .args(["--header", "Subject: swaks CRAM-MD5", "--body", "cram"]))
    };
    let out = cram(CAROL, CAROL_PW);
    assert_swaks_relayed(&out, "CRAM-MD5", "swaks CRAM-MD5 for a {PLAIN} user");
    assert_eq!(queued_for(&server, REMOTE), 1);

    let out = cram(ALICE, PW);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "CRAM-MD5 for a hashed secret succeeded:\n{log}"
    );
    assert!(
        log.contains(&format!("<~* {}", reply::BAD_CREDENTIALS)),
        "CRAM-MD5 for a hashed secret: expected `<~* {}...`:\n{log}",
        reply::BAD_CREDENTIALS
    );
    assert_eq!(queued_for(&server, REMOTE), 1);
}
