//! Login hygiene: the same bytes for an unknown user and a wrong password, progressive
//! per-address delays that other addresses do not feel, AUTH refused in plaintext off
//! loopback, a per-session failure limit, protocol errors for malformed SASL input, and
//! stalled or garbage TLS handshakes closed at the handshake timeout.

use std::net::SocketAddr;
use std::path::Path;

use popgate_tests::{
    Client, Server, Setup, TestCa, base64, host, is_event, log_field, python, reply, sasl_plain,
};

const ALICE: &str = "alice@example.test";
const PW: &str = "alice-hygiene-secret-5";
const NOBODY: &str = "nobody@example.test";
const REMOTE: &str = "someone@remote.test";

/// Millisecond delays so the suite stays fast; the doubling is the same.
const AUTH_TOML: &str = "[auth]\nfailure_delay = \"20ms\"\nfailure_delay_max = \"320ms\"\n";

fn setup(ca: &TestCa) -> Setup {
    Setup::default()
        .listeners(&["smtp", "submission", "smtps", "pop3", "pop3s"])
        .user(ALICE, PW)
        .tls_pair(&ca.issue("server"))
}

fn server(ca: &TestCa) -> Server {
    setup(ca).toml(AUTH_TOML).start()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// `peer=` of a log line is this address (`peer=127.0.0.2`, or a `/32` key).
fn peer_is(line: &str, ip: &str) -> bool {
    log_field(line, "peer").is_some_and(|p| p == ip || p.strip_prefix(ip) == Some("/32"))
}

/// EHLO'd session on `addr` from 127.0.0.`source`.
fn smtp(addr: SocketAddr, source: u8) -> Client {
    Client::smtp_from(addr, host(source))
}

// ---------------------------------------------------------------------------------
// Same reply for an unknown user and a wrong password

/// The raw bytes of every server line of an AUTH PLAIN and an AUTH LOGIN attempt on a
/// fresh submission session from 127.0.0.1 (plaintext AUTH is allowed there).
fn smtp_attempts(server: &Server, user: &str, password: &str) -> Vec<Vec<u8>> {
    let mut c = smtp(server.addr("submission"), 1);
    let mut seen = Vec::new();
    c.send_line(&format!("AUTH PLAIN {}", sasl_plain("", user, password)));
    seen.push(c.read_line_bytes());
    c.send_line("AUTH LOGIN");
    seen.push(c.read_line_bytes());
    c.send_line(&base64(user.as_bytes()));
    seen.push(c.read_line_bytes());
    c.send_line(&base64(password.as_bytes()));
    seen.push(c.read_line_bytes());
    let r = c.smtp("QUIT");
    assert!(r.starts_with("221 "), "QUIT: {r:?}");
    seen
}

#[test]
fn smtp_unknown_user_and_wrong_password_get_identical_bytes() {
    let ca = TestCa::new("popgate test CA");
    let server = server(&ca);
    let unknown = smtp_attempts(&server, NOBODY, PW);
    let wrong = smtp_attempts(&server, ALICE, "not-the-password");
    let show = |v: &[Vec<u8>]| -> Vec<String> {
        v.iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    };
    assert_eq!(
        unknown,
        wrong,
        "unknown user {:?} vs wrong password {:?}",
        show(&unknown),
        show(&wrong)
    );
    let final_plain = String::from_utf8_lossy(&unknown[0]).into_owned();
    assert!(
        final_plain.starts_with(reply::BAD_CREDENTIALS),
        "AUTH PLAIN failure: expected {:?}..., got {final_plain:?}",
        reply::BAD_CREDENTIALS
    );
    assert_eq!(unknown[0], unknown[3], "PLAIN and LOGIN failures differ");
    // Neither secret is logged.
    let log = server.stderr_log();
    assert!(
        !log.contains("not-the-password") && !log.contains(PW),
        "a password in the log:\n{log}"
    );
}

/// USER then PASS on a fresh plaintext POP3 session from 127.0.0.1.
fn pop3_attempt(server: &Server, user: &str, password: &str) -> (Vec<u8>, Vec<u8>) {
    let mut c = Client::connect(server.pop3());
    let greeting = c.read_line();
    assert!(greeting.starts_with("+OK"), "greeting: {greeting:?}");
    c.send_line(&format!("USER {user}"));
    let user_reply = c.read_line_bytes();
    c.send_line(&format!("PASS {password}"));
    let pass_reply = c.read_line_bytes();
    let r = c.pop("QUIT");
    assert!(r.starts_with("+OK"), "QUIT: {r:?}");
    (user_reply, pass_reply)
}

const POP3_AUTH_PLAIN: &str = r#"
host, port, cafile, user, password = sys.argv[1:]
c = Raw(host, port)
c.tls(tls_context(cafile), host)
out("GREETING", c.line())
hexout("AUTH", c.pop("AUTH PLAIN " + b64("\0" + user + "\0" + password)).encode())
out("QUIT", c.pop("QUIT"))
"#;

#[test]
fn pop3_unknown_user_and_wrong_password_get_identical_bytes() {
    let ca = TestCa::new("popgate test CA");
    let server = server(&ca);
    let (user_unknown, pass_unknown) = pop3_attempt(&server, NOBODY, PW);
    let (user_known, pass_wrong) = pop3_attempt(&server, ALICE, "not-the-password");
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        s(&user_unknown).starts_with("+OK") && s(&user_known).starts_with("+OK"),
        "USER must not tell who exists: {:?} vs {:?}",
        s(&user_unknown),
        s(&user_known)
    );
    assert_eq!(
        s(&pass_unknown),
        s(&pass_wrong),
        "PASS: unknown user vs wrong password"
    );
    assert_eq!(pass_unknown, pass_wrong, "PASS replies differ in bytes");
    assert!(
        s(&pass_unknown).starts_with(reply::POP3_AUTH),
        "{:?}",
        s(&pass_unknown)
    );

    // AUTH PLAIN (RFC 5034) over POP3S: the same.
    let pop3s = server.addr("pop3s").port().to_string();
    let auth = |user: &str, password: &str| {
        python(
            POP3_AUTH_PLAIN,
            &["127.0.0.1", &pop3s, path(&ca.cert), user, password],
        )
        .bytes("AUTH")
    };
    let (a, b) = (auth(NOBODY, PW), auth(ALICE, "not-the-password"));
    assert_eq!(a, b, "AUTH PLAIN: {:?} vs {:?}", s(&a), s(&b));
    assert!(
        s(&a).starts_with(reply::POP3_AUTH),
        "AUTH PLAIN failure: {:?}",
        s(&a)
    );
}

// ---------------------------------------------------------------------------------
// Progressive delays per address

#[test]
fn parallel_failures_from_one_address_grow_delays_and_spare_other_addresses() {
    let ca = TestCa::new("popgate test CA");
    let server = server(&ca);
    let pop3 = server.pop3();
    let replies: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..10)
            .map(|_| {
                scope.spawn(move || {
                    let mut c = Client::connect_from(pop3, host(2));
                    let greeting = c.read_line();
                    assert!(greeting.starts_with("+OK"), "greeting: {greeting:?}");
                    let r = c.pop(&format!("USER {ALICE}"));
                    assert!(r.starts_with("+OK"), "USER: {r:?}");
                    c.pop("PASS wrong-guess")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a login thread"))
            .collect()
    });
    for r in &replies {
        assert!(
            r.starts_with(reply::POP3_AUTH),
            "failed login from 127.0.0.2: {r:?}"
        );
    }

    let delayed = server.wait_logs("event=login_delayed peer=127.0.0.2", 10, |l| {
        is_event(l, "login_delayed") && peer_is(l, "127.0.0.2")
    });
    let mut pairs: Vec<(u64, u64)> = delayed
        .iter()
        .map(|l| {
            let num = |key| {
                log_field(l, key)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("no numeric {key}= in {l:?}"))
            };
            (num("failures"), num("delay_ms"))
        })
        .collect();
    pairs.sort();
    let failures: Vec<u64> = pairs.iter().map(|p| p.0).collect();
    assert_eq!(
        failures,
        (1..=10).collect::<Vec<u64>>(),
        "one delay per failure, counted across the parallel connections: {delayed:#?}"
    );
    let delays: Vec<u64> = pairs.iter().map(|p| p.1).collect();
    // 20 ms doubling per failure up to 320 ms.
    assert_eq!(
        delays,
        [20, 40, 80, 160, 320, 320, 320, 320, 320, 320],
        "delay_ms by failure count: {delayed:#?}"
    );
    server.wait_log(
        "event=address_blocked for 127.0.0.2 after 10 failures",
        |l| is_event(l, "address_blocked") && peer_is(l, "127.0.0.2"),
    );

    // Another address logs in at once.
    let mut c = Client::pop3_login(pop3, host(3), ALICE, PW);
    let r = c.pop("QUIT");
    assert!(r.starts_with("+OK"), "QUIT: {r:?}");
    let (ok_at, _) = server.wait_log_after(0, "auth_ok from 127.0.0.3", |l| {
        is_event(l, "auth_ok") && peer_is(l, "127.0.0.3")
    });
    let lines = server.log_lines();
    let slowed: Vec<&String> = lines[..ok_at]
        .iter()
        .filter(|l| is_event(l, "login_delayed") && peer_is(l, "127.0.0.3"))
        .collect();
    assert!(slowed.is_empty(), "127.0.0.3 was delayed: {slowed:?}");
}

// ---------------------------------------------------------------------------------
// AUTH without TLS

fn ehlo_lines(c: &mut Client) -> Vec<String> {
    c.send_line("EHLO client.test");
    c.smtp_reply()
}

#[test]
fn plaintext_auth_is_refused_off_loopback_and_allowed_from_127_0_0_1() {
    let ca = TestCa::new("popgate test CA");
    let server = server(&ca);
    for listener in ["submission", "smtp"] {
        let addr = server.addr(listener);
        let mut c = smtp(addr, 2);
        let ehlo = ehlo_lines(&mut c);
        assert!(
            !ehlo.iter().any(|l| l[4..].starts_with("AUTH")),
            "{listener} from 127.0.0.2 without TLS must not offer AUTH: {ehlo:?}"
        );
        assert!(
            ehlo.iter().any(|l| l.ends_with("STARTTLS")),
            "{listener}: STARTTLS offered: {ehlo:?}"
        );
        let r = c.smtp(&format!("AUTH PLAIN {}", sasl_plain("", ALICE, PW)));
        assert!(
            r.starts_with(reply::ENCRYPTION_REQUIRED),
            "{listener}: AUTH PLAIN in plaintext from 127.0.0.2: expected {:?}..., got {r:?}",
            reply::ENCRYPTION_REQUIRED
        );
        let r = c.smtp("AUTH LOGIN");
        assert!(
            r.starts_with(reply::ENCRYPTION_REQUIRED),
            "{listener}: AUTH LOGIN: {r:?}"
        );

        let mut c = smtp(addr, 1);
        let ehlo = ehlo_lines(&mut c);
        assert!(
            ehlo.iter()
                .any(|l| l[4..].starts_with("AUTH ") && l.contains("PLAIN")),
            "{listener} from 127.0.0.1 offers AUTH PLAIN: {ehlo:?}"
        );
        let r = c.smtp(&format!("AUTH PLAIN {}", sasl_plain("", ALICE, PW)));
        assert!(
            r.starts_with(reply::AUTH_OK),
            "{listener}: AUTH from 127.0.0.1: {r:?}"
        );
        let r = c.smtp(&format!("MAIL FROM:<{ALICE}>"));
        assert!(r.starts_with("250 "), "{listener}: MAIL: {r:?}");
        let r = c.smtp(&format!("RCPT TO:<{REMOTE}>"));
        assert!(
            r.starts_with("250 "),
            "{listener}: an authenticated session relays: {r:?}"
        );
    }
}

#[test]
fn plaintext_localhost_false_refuses_auth_from_127_0_0_1_too() {
    let ca = TestCa::new("popgate test CA");
    let server = setup(&ca)
        .toml("[auth]\nplaintext_localhost = false\nfailure_delay = \"20ms\"\nfailure_delay_max = \"320ms\"\n")
        .start();
    let mut c = smtp(server.addr("submission"), 1);
    let r = c.smtp(&format!("AUTH PLAIN {}", sasl_plain("", ALICE, PW)));
    assert!(
        r.starts_with(reply::ENCRYPTION_REQUIRED),
        "AUTH in plaintext from 127.0.0.1 with plaintext_localhost = false: {r:?}"
    );
}

// ---------------------------------------------------------------------------------
// Per-session failure limit

#[test]
fn smtp_session_is_closed_after_max_failures() {
    let ca = TestCa::new("popgate test CA");
    let server = server(&ca);
    let mut c = smtp(server.addr("submission"), 1);
    for n in 1..=3 {
        let r = c.smtp(&format!("AUTH PLAIN {}", sasl_plain("", ALICE, "wrong")));
        assert!(r.starts_with(reply::BAD_CREDENTIALS), "failure {n}: {r:?}");
    }
    let r = c.smtp_last();
    assert!(
        r.starts_with(reply::TOO_MANY_AUTH_FAILURES),
        "after 3 failures (max_failures = 3): expected {:?}..., got {r:?}",
        reply::TOO_MANY_AUTH_FAILURES
    );
    let rest = c.wait_closed();
    assert!(
        rest.is_empty(),
        "bytes after the 421: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[test]
fn pop3_session_is_closed_after_max_failures() {
    let ca = TestCa::new("popgate test CA");
    let server = setup(&ca)
        .toml("[auth]\nmax_failures = 2\nfailure_delay = \"20ms\"\nfailure_delay_max = \"320ms\"\n")
        .start();
    let mut c = Client::connect(server.pop3());
    let greeting = c.read_line();
    assert!(greeting.starts_with("+OK"), "greeting: {greeting:?}");
    for n in 1..=2 {
        let r = c.pop(&format!("USER {ALICE}"));
        assert!(r.starts_with("+OK"), "USER {n}: {r:?}");
        let r = c.pop("PASS wrong");
        assert!(r.starts_with("-ERR"), "PASS failure {n}: {r:?}");
    }
    let rest = c.wait_closed();
    assert!(
        rest.is_empty(),
        "after max_failures = 2 the connection closes; got {:?}",
        String::from_utf8_lossy(&rest)
    );
}

// ---------------------------------------------------------------------------------
// Malformed SASL input

#[test]
fn malformed_smtp_auth_gets_protocol_errors_and_the_session_goes_on() {
    let ca = TestCa::new("popgate test CA");
    let server = setup(&ca)
        .toml(
            "[auth]\nmax_failures = 10\nfailure_delay = \"20ms\"\nfailure_delay_max = \"320ms\"\n",
        )
        .start();
    let mut c = smtp(server.addr("submission"), 1);
    let oversized = format!("AUTH PLAIN {}", "QUFB".repeat(5000));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "bad base64 initial response",
            "AUTH PLAIN !!!not-base64!!!".into(),
            "501 5.5.2 ",
        ),
        (
            "an unknown mechanism",
            "AUTH X-UNKNOWN".into(),
            reply::UNKNOWN_MECHANISM,
        ),
        ("an oversized AUTH line", oversized, reply::LINE_TOO_LONG),
        (
            "PLAIN without NULs",
            format!("AUTH PLAIN {}", base64(b"just-one-field")),
            "501 5.5.2 ",
        ),
        (
            "an authzid that is not the authcid",
            format!("AUTH PLAIN {}", sasl_plain("bob@example.test", ALICE, PW)),
            reply::BAD_CREDENTIALS,
        ),
    ];
    for (what, line, expected) in &cases {
        let r = c.smtp(line);
        assert!(
            r.starts_with(expected),
            "{what}: expected {expected:?}..., got {r:?}"
        );
        let r = c.smtp("NOOP");
        assert!(r.starts_with("250 "), "NOOP after {what}: {r:?}");
    }
    // Inside an exchange: bad base64, `*`, and an oversized response.
    for (what, response, expected) in [
        ("a bad base64 response", "@@@".to_string(), "501 5.5.2 "),
        ("a `*` cancel", "*".to_string(), "501 "),
        (
            "an oversized response",
            "QUFB".repeat(5000),
            reply::LINE_TOO_LONG,
        ),
    ] {
        let r = c.smtp("AUTH LOGIN");
        assert!(r.starts_with("334 "), "AUTH LOGIN: {r:?}");
        let r = c.smtp(&response);
        assert!(
            r.starts_with(expected),
            "{what}: expected {expected:?}..., got {r:?}"
        );
        let r = c.smtp("NOOP");
        assert!(r.starts_with("250 "), "NOOP after {what}: {r:?}");
    }
    // The session still authenticates.
    let r = c.smtp(&format!("AUTH PLAIN {}", sasl_plain(ALICE, ALICE, PW)));
    assert!(
        r.starts_with(reply::AUTH_OK),
        "authzid = authcid is fine: {r:?}"
    );
}

const POP3_MALFORMED: &str = r#"
host, port, cafile, user, password = sys.argv[1:]
c = Raw(host, port)
c.tls(tls_context(cafile), host)
out("GREETING", c.line())
out("BAD_B64", c.pop("AUTH PLAIN !!!not-base64!!!"))
out("NOOP1", c.pop("NOOP"))
out("AUTHZID", c.pop("AUTH PLAIN " + b64("bob@example.test\0" + user + "\0" + password)))
out("OVERSIZED", c.pop("AUTH PLAIN " + "QUFB" * 5000))
out("CANCEL_GO", c.pop("AUTH LOGIN"))
out("CANCEL", c.pop("*"))
out("UNKNOWN", c.pop("AUTH X-UNKNOWN"))
out("GOOD", c.pop("AUTH PLAIN " + b64("\0" + user + "\0" + password)))
out("QUIT", c.pop("QUIT"))
"#;

#[test]
fn malformed_pop3_auth_gets_errors_and_the_session_goes_on() {
    let ca = TestCa::new("popgate test CA");
    let server = setup(&ca)
        .toml(
            "[auth]\nmax_failures = 10\nfailure_delay = \"20ms\"\nfailure_delay_max = \"320ms\"\n",
        )
        .start();
    let out = python(
        POP3_MALFORMED,
        &[
            "127.0.0.1",
            &server.addr("pop3s").port().to_string(),
            path(&ca.cert),
            ALICE,
            PW,
        ],
    );
    for key in ["BAD_B64", "AUTHZID", "OVERSIZED", "CANCEL", "UNKNOWN"] {
        assert!(out.get(key).starts_with("-ERR"), "{key}: {out:?}");
    }
    assert!(
        out.get("AUTHZID").starts_with(reply::POP3_AUTH),
        "authzid != authcid: {out:?}"
    );
    assert!(
        out.get("NOOP1").starts_with("-ERR"),
        "NOOP before login is out of sequence: {out:?}"
    );
    assert!(
        out.get("CANCEL_GO").starts_with("+ "),
        "AUTH LOGIN challenge: {out:?}"
    );
    assert!(
        out.get("GOOD").starts_with("+OK"),
        "AUTH PLAIN after the errors: {out:?}"
    );
    assert!(out.get("QUIT").starts_with("+OK"), "{out:?}");
}

// ---------------------------------------------------------------------------------
// Stalled and garbage handshakes

const LOGIN_OVER_TLS: &str = r#"
host, port, cafile, user, password = sys.argv[1:]
s = poplib.POP3_SSL(host, int(port), context=tls_context(cafile), timeout=30)
out("PASS", s.user(user), s.pass_(password))
out("QUIT", s.quit())
"#;

#[test]
fn stalled_and_garbage_tls_handshakes_are_closed_and_the_server_serves_on() {
    let ca = TestCa::new("popgate test CA");
    let server = setup(&ca)
        .toml(AUTH_TOML)
        .toml("[limits]\ntls_handshake_timeout = \"300ms\"\n")
        .start();
    for listener in ["pop3s", "smtps"] {
        // Connect and send nothing: closed at the handshake timeout. (The read guard
        // of 30 s would fail the test if the server never closed.)
        let mut c = Client::connect(server.addr(listener));
        let rest = c.wait_closed();
        assert!(
            rest.is_empty(),
            "{listener}: bytes for a silent client: {rest:?}"
        );

        // Garbage instead of a ClientHello: an alert at most, then the close.
        let mut c = Client::connect(server.addr(listener));
        c.send(b"EHLO this is not TLS\r\n");
        let rest = c.wait_closed();
        assert!(
            rest.is_empty() || rest[0] == 0x15,
            "{listener}: expected nothing or a TLS alert for garbage, got {:?}",
            String::from_utf8_lossy(&rest)
        );

        // Half a handshake (a record header announcing more than is sent), then silence.
        let mut c = Client::connect(server.addr(listener));
        c.send(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
        let _ = c.wait_closed();
    }
    // STARTTLS / STLS accepted, then no handshake.
    let mut c = smtp(server.addr("submission"), 1);
    let r = c.smtp("STARTTLS");
    assert!(r.starts_with(reply::START_TLS), "STARTTLS: {r:?}");
    let _ = c.wait_closed();
    let mut c = Client::connect(server.pop3());
    let greeting = c.read_line();
    assert!(greeting.starts_with("+OK"), "greeting: {greeting:?}");
    assert_eq!(c.pop("STLS"), reply::STLS);
    let _ = c.wait_closed();

    // Still serving, over TLS.
    let out = python(
        LOGIN_OVER_TLS,
        &[
            "127.0.0.1",
            &server.addr("pop3s").port().to_string(),
            path(&ca.cert),
            ALICE,
            PW,
        ],
    );
    assert!(
        out.get("PASS").contains("+OK"),
        "login after the bad handshakes: {out:?}"
    );
}
