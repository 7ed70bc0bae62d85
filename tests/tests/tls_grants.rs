//! POP before SMTP next to SMTP AUTH: a POP3 login over STLS or POP3S grants relay;
//! with `[grant] require_tls = true` a plaintext login does not; submission wants AUTH
//! before MAIL whatever grant the address has; an authenticated sender may only use its
//! own address (553 5.7.1) unless the policy allows it.

use std::path::Path;

use popgate_tests::{
    Client, PyOut, Server, Setup, TestCa, host, is_event, log_field, python, relay_rcpt, reply,
    sasl_plain,
};

const ALICE: &str = "alice@example.test";
const PW: &str = "alice-grant-secret-6";
const REMOTE: &str = "someone@remote.test";

fn setup(ca: &TestCa) -> Setup {
    Setup::default()
        .listeners(&["smtp", "submission", "smtps", "pop3", "pop3s"])
        .user(ALICE, PW)
        .tls_pair(&ca.issue("server"))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// POP3 login from `source`: `mode` is `stls`, `plain` or `pop3s`.
const POP3_LOGIN: &str = r#"
host, port, sport, cafile, source, mode, user, password = sys.argv[1:]
if mode == "pop3s":
    class POP3SFrom(poplib.POP3_SSL):
        def _create_socket(self, timeout):
            sock = socket.create_connection((self.host, self.port), timeout, source_address=(source, 0))
            return self.context.wrap_socket(sock, server_hostname=self.host)
    p = POP3SFrom(host, int(sport), context=tls_context(cafile), timeout=30)
else:
    p = POP3From(host, int(port), source)
    if mode == "stls":
        out("STLS", p.stls(context=tls_context(cafile)))
out("USER", p.user(user))
out("PASS", p.pass_(password))
out("QUIT", p.quit())
"#;

fn pop3_login(server: &Server, ca: &TestCa, source: u8, mode: &str) -> PyOut {
    let out = python(
        POP3_LOGIN,
        &[
            "127.0.0.1",
            &server.pop3().port().to_string(),
            &server.addr("pop3s").port().to_string(),
            path(&ca.cert),
            &format!("127.0.0.{source}"),
            mode,
            ALICE,
            PW,
        ],
    );
    assert!(out.get("PASS").starts_with("+OK"), "{mode} login: {out:?}");
    if mode == "stls" {
        assert_eq!(out.get("STLS"), reply::STLS, "{out:?}");
    }
    out
}

/// A relay attempt on the SMTP listener from 127.0.0.`source`, with DATA when the
/// recipient is accepted: the RCPT reply and the end-of-data reply.
fn relay(server: &Server, source: u8) -> (String, Option<String>) {
    let mut c = Client::smtp_from(server.smtp(), host(source));
    let rcpt = relay_rcpt(&mut c, REMOTE);
    let data = rcpt
        .starts_with("250 ")
        .then(|| c.smtp_data(b"From: sender@elsewhere.test\r\nSubject: relayed\r\n\r\nbody\r\n"));
    c.smtp("QUIT");
    (rcpt, data)
}

fn queued_for(server: &Server, rcpt: &str) -> usize {
    server
        .queue_list()
        .lines()
        .filter(|l| l.contains(rcpt))
        .count()
}

#[test]
fn pop3_login_over_stls_grants_relay() {
    let ca = TestCa::new("popgate test CA");
    let server = setup(&ca).start();
    assert_eq!(relay(&server, 2).0, reply::RELAY_DENIED, "before any login");
    pop3_login(&server, &ca, 2, "stls");
    let (rcpt, data) = relay(&server, 2);
    assert!(
        rcpt.starts_with("250 "),
        "relay after the STLS login: {rcpt:?}"
    );
    let data = data.unwrap_or_default();
    assert!(data.starts_with(reply::QUEUED), "end of data: {data:?}");
    assert_eq!(queued_for(&server, REMOTE), 1);
    server.wait_log("event=relay decision=grant", |l| {
        is_event(l, "relay") && l.contains("decision=grant") && l.contains(&format!("user={ALICE}"))
    });
    assert_eq!(relay(&server, 3).0, reply::RELAY_DENIED, "another address");
}

#[test]
fn with_require_tls_only_logins_over_tls_grant() {
    let ca = TestCa::new("popgate test CA");
    let server = setup(&ca).grant_setting("require_tls = true").start();

    // Plaintext USER/PASS still logs in (legacy clients read their mail) but grants
    // nothing.
    pop3_login(&server, &ca, 2, "plain");
    assert_eq!(
        relay(&server, 2).0,
        reply::RELAY_DENIED,
        "relay after a plaintext login with require_tls = true"
    );
    // Whatever the login logged came before the relay decision that followed it.
    let (denied_at, _) = server.wait_log_after(0, "relay denied for 127.0.0.2", |l| {
        is_event(l, "relay") && log_field(l, "peer") == Some("127.0.0.2")
    });
    let lines = server.log_lines();
    assert!(
        lines[..denied_at].iter().any(|l| is_event(l, "auth_ok")),
        "the plaintext login itself succeeded: {lines:#?}"
    );
    let granted: Vec<&String> = lines[..denied_at]
        .iter()
        .filter(|l| is_event(l, "grant"))
        .collect();
    assert!(
        granted.is_empty(),
        "a grant from a plaintext login: {granted:?}"
    );

    // The same address over STLS: granted.
    pop3_login(&server, &ca, 2, "stls");
    let (rcpt, data) = relay(&server, 2);
    assert!(
        rcpt.starts_with("250 "),
        "relay after the STLS login: {rcpt:?}"
    );
    assert!(data.unwrap_or_default().starts_with(reply::QUEUED));

    // Implicit TLS grants too.
    assert_eq!(
        relay(&server, 3).0,
        reply::RELAY_DENIED,
        "127.0.0.3 before login"
    );
    pop3_login(&server, &ca, 3, "pop3s");
    assert!(
        relay(&server, 3).0.starts_with("250 "),
        "relay after a POP3S login"
    );
    assert_eq!(queued_for(&server, REMOTE), 2);
}

#[test]
fn submission_wants_auth_before_mail_even_with_a_grant() {
    let ca = TestCa::new("popgate test CA");
    let server = setup(&ca).start();
    let mut c = Client::smtp_from(server.addr("submission"), host(2));
    let r = c.smtp(&format!("MAIL FROM:<{ALICE}>"));
    assert!(
        r.starts_with(reply::AUTH_REQUIRED),
        "MAIL without AUTH on submission: expected {:?}..., got {r:?}",
        reply::AUTH_REQUIRED
    );
    // A POP grant for the address is not an AUTH.
    pop3_login(&server, &ca, 2, "stls");
    let mut c = Client::smtp_from(server.addr("submission"), host(2));
    let r = c.smtp(&format!("MAIL FROM:<{ALICE}>"));
    assert!(
        r.starts_with(reply::AUTH_REQUIRED),
        "MAIL with only a grant: {r:?}"
    );
    // While the plain SMTP listener takes the grant.
    assert!(
        relay(&server, 2).0.starts_with("250 "),
        "smtp listener with the grant"
    );
}

/// AUTH over STARTTLS on submission, then MAIL FROM a foreign and the own address.
const SENDER_POLICY: &str = r#"
host, port, cafile, user, password, rcpt = sys.argv[1:]
s = smtplib.SMTP(host, int(port), timeout=30)
s.ehlo("client.test")
s.starttls(context=tls_context(cafile))
s.ehlo("client.test")
out("AUTH", *s.login(user, password))
out("FOREIGN", *s.mail("someone-else@elsewhere.test"))
s.rset()
out("OWN", *s.mail(user))
out("RCPT", *s.rcpt(rcpt))
out("DATA", *s.data(("From: " + user + "\r\nSubject: own\r\n\r\nmine\r\n").encode()))
out("QUIT", *s.quit())
"#;

fn sender_policy(server: &Server, ca: &TestCa) -> PyOut {
    python(
        SENDER_POLICY,
        &[
            "127.0.0.1",
            &server.addr("submission").port().to_string(),
            path(&ca.cert),
            ALICE,
            PW,
            REMOTE,
        ],
    )
}

#[test]
fn sender_policy_rejects_a_foreign_mail_from_with_553() {
    let ca = TestCa::new("popgate test CA");
    let server = setup(&ca).start();
    let out = sender_policy(&server, &ca);
    assert!(out.get("AUTH").starts_with(reply::AUTH_OK), "{out:?}");
    assert!(
        out.get("FOREIGN").starts_with(reply::SENDER_NOT_OWNED),
        "MAIL FROM another address: expected {:?}..., got {out:?}",
        reply::SENDER_NOT_OWNED
    );
    assert!(
        out.get("OWN").starts_with("250 "),
        "MAIL FROM the own address: {out:?}"
    );
    assert!(out.get("RCPT").starts_with("250 "), "{out:?}");
    assert!(out.get("DATA").starts_with(reply::QUEUED), "{out:?}");
    assert_eq!(queued_for(&server, REMOTE), 1);
    server.wait_log(&format!("event=relay decision=auth user={ALICE}"), |l| {
        is_event(l, "relay") && l.contains(&format!("decision=auth user={ALICE}"))
    });
}

#[test]
fn sender_policy_allow_accepts_a_foreign_mail_from() {
    let ca = TestCa::new("popgate test CA");
    let server = setup(&ca)
        .toml("[auth]\nsender_policy = \"allow\"\n")
        .start();
    let out = sender_policy(&server, &ca);
    assert!(
        out.get("FOREIGN").starts_with("250 "),
        "MAIL FROM another address with sender_policy = \"allow\": {out:?}"
    );
    assert!(out.get("DATA").starts_with(reply::QUEUED), "{out:?}");
}

/// AUTH in plaintext from 127.0.0.1 is allowed, and the authenticated session relays
/// on the SMTP listener without any grant.
#[test]
fn authenticated_session_relays_on_the_smtp_listener_without_a_grant() {
    let ca = TestCa::new("popgate test CA");
    let server = setup(&ca).start();
    let mut c = Client::smtp_from(server.smtp(), host(1));
    let r = c.smtp(&format!("AUTH PLAIN {}", sasl_plain("", ALICE, PW)));
    assert!(r.starts_with(reply::AUTH_OK), "AUTH: {r:?}");
    let r = c.smtp(&format!("MAIL FROM:<{ALICE}>"));
    assert!(r.starts_with("250 "), "MAIL: {r:?}");
    let r = c.smtp(&format!("RCPT TO:<{REMOTE}>"));
    assert!(r.starts_with("250 "), "RCPT: {r:?}");
    let end = c.smtp_data(b"Subject: auth relay\r\n\r\nbody\r\n");
    assert!(end.starts_with(reply::QUEUED), "end of data: {end:?}");
    assert_eq!(queued_for(&server, REMOTE), 1);
}
