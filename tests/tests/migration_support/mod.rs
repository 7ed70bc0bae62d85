//! What the migration suites share: a user who relays on a POP-before-SMTP grant
//! (python3's poplib, then smtplib, from one address) and a user who relays with SMTP
//! AUTH over STARTTLS (swaks), against a server whose certificate a test CA issued.
#![allow(dead_code)]

use popgate_tests::{PyOut, Server, Setup, TestCa, python, run, swaks};
use std::net::SocketAddr;
use std::process::Output;

pub const ALICE: &str = "alice@example.test";
pub const ALICE_PW: &str = "alice-migration-1";
/// Alice's mail client runs on this host.
pub const ALICE_HOST: &str = "127.0.0.2";
pub const BOB: &str = "bob@example.test";
pub const BOB_PW: &str = "bob-migration-2";
pub const BOB_HOST: &str = "127.0.0.3";
pub const REMOTE: &str = "friend@remote.test";

/// C: USER, PASS, QUIT over poplib from `source`; then MAIL, RCPT to a remote
/// address and (when RCPT is accepted) DATA over smtplib from the same address.
const POP_THEN_RELAY: &str = r#"
pop_host, pop_port, smtp_host, smtp_port, source, user, password, rcpt, subject = sys.argv[1:]
p = POP3From(pop_host, int(pop_port), source)
out("USER", p.user(user))
out("PASS", p.pass_(password))
out("QUIT", p.quit())
s = smtp_from(smtp_host, smtp_port, source)
out("MAIL", *s.mail(user))
code, reply = s.rcpt(rcpt)
out("RCPT", code, reply)
if code == 250:
    msg = ("From: " + user + "\r\nTo: " + rcpt + "\r\nSubject: " + subject + "\r\n\r\nvia the grant\r\n").encode()
    out("DATA", *s.data(msg))
s.quit()
"#;

/// A server with a certificate from `ca`, Alice and Bob, and `listeners`.
pub fn setup(ca: &TestCa, listeners: &[&'static str]) -> Setup {
    Setup::default()
        .listeners(listeners)
        .user(ALICE, ALICE_PW)
        .user(BOB, BOB_PW)
        .tls_pair(&ca.issue("server"))
}

/// Alice logs in over POP3 from her host, then relays one message from it.
pub fn alice_pop_then_relay(server: &Server, subject: &str) -> PyOut {
    let (pop, smtp) = (server.pop3(), server.smtp());
    python(
        POP_THEN_RELAY,
        &[
            &pop.ip().to_string(),
            &pop.port().to_string(),
            &smtp.ip().to_string(),
            &smtp.port().to_string(),
            ALICE_HOST,
            ALICE,
            ALICE_PW,
            REMOTE,
            subject,
        ],
    )
}

/// Bob relays one message with swaks: STARTTLS (verifying the server against `ca`),
/// then AUTH PLAIN, from his host, on `addr` (submission or port 25).
pub fn bob_swaks_auth(addr: SocketAddr, ca: &TestCa) -> Output {
    let out = run(swaks()
        .args(["--server", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()])
        .args(["--local-interface", BOB_HOST])
        .args(["-tls", "--tls-verify", "--tls-ca-path"])
        .arg(&ca.cert)
        .args([
            "--auth",
            "PLAIN",
            "--auth-user",
            BOB,
            "--auth-password",
            BOB_PW,
        ])
        .args(["--ehlo", "client.test", "--timeout", "30"])
        .args(["--from", BOB, "--to", REMOTE])
        .args([
            "--header",
            "Subject: swaks with AUTH",
            "--body",
            "sent with AUTH",
        ]));
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && log.contains("<~  235 ") && log.contains("queued as"),
        "swaks AUTH over STARTTLS for {BOB} failed ({}):\n{log}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `popgate report migration --json`, parsed.
pub fn report_json(server: &Server) -> serde_json::Value {
    let text = server.cli(&["report", "migration", "--json"]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("report is not JSON ({e}):\n{text}"))
}

/// One user's row of a report.
pub fn row<'a>(report: &'a serde_json::Value, user: &str) -> &'a serde_json::Value {
    report["users"]
        .as_array()
        .and_then(|users| users.iter().find(|u| u["stats"]["user"] == user))
        .unwrap_or_else(|| panic!("{user} is not in the report:\n{report:#}"))
}

/// The users of one group, in report order.
pub fn group(report: &serde_json::Value, id: &str) -> Vec<String> {
    report["groups"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["group"] == id))
        .and_then(|g| g["users"].as_array())
        .map(|us| {
            us.iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
