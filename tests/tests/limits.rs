//! `[limits]`: message size (RFC 1870), recipients per transaction (RFC 5321 §4.5.3.1.8,
//! at least 100), idle timeouts.

use popgate_tests::{Client, Server, Setup, host, message, reply};

const BOB: &str = "bob@example.test";
const PW: &str = "bob-secret-9";
const CAROL: &str = "carol@example.test";

fn server(limits: &str) -> Server {
    let mut setup = Setup::default().user(BOB, PW).user(CAROL, "carol-secret-9");
    setup.extra_toml = format!("\n[limits]\n{limits}\n");
    setup.start()
}

#[test]
fn message_over_max_message_size_gets_552_5_3_4() {
    let server = server("max_message_size = 1000");
    let mut c = Client::connect_from(server.smtp(), host(2));
    let greeting = c.smtp_last();
    assert!(greeting.starts_with("220 "), "greeting: {greeting:?}");
    c.send_line("EHLO client.test");
    let ehlo = c.smtp_reply();
    // RFC 1870 §4: the limit is advertised.
    assert!(
        ehlo.iter().any(|l| &l[4..] == "SIZE 1000"),
        "EHLO does not advertise SIZE 1000: {ehlo:?}"
    );

    // Declared too big: refused at MAIL.
    let r = c.smtp("MAIL FROM:<sender@elsewhere.test> SIZE=5000");
    assert!(r.starts_with("552 5.3.4 "), "MAIL with SIZE=5000: {r:?}");

    // Undeclared and too big: refused at end of data, and the session goes on.
    let r = c.smtp("MAIL FROM:<sender@elsewhere.test>");
    assert!(r.starts_with("250 "), "MAIL: {r:?}");
    let r = c.smtp(&format!("RCPT TO:<{BOB}>"));
    assert!(r.starts_with("250 "), "RCPT: {r:?}");
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..100 {
        big.extend_from_slice(b"0123456789012345678901234567890123456789012345678\r\n");
    }
    let r = c.smtp_data(&big);
    assert!(
        r.starts_with("552 5.3.4 "),
        "end of data of a 5 kB message: {r:?}"
    );
    let r = c.smtp("NOOP");
    assert!(r.starts_with("250 "), "NOOP after 552: {r:?}");
    assert_eq!(
        server.maildir_files(BOB, "new").len(),
        0,
        "the oversized message was stored"
    );

    // A message under the limit still goes through.
    let r = c.smtp("MAIL FROM:<sender@elsewhere.test>");
    assert!(r.starts_with("250 "), "MAIL: {r:?}");
    let r = c.smtp(&format!("RCPT TO:<{BOB}>"));
    assert!(r.starts_with("250 "), "RCPT: {r:?}");
    let r = c.smtp_data(&message("small"));
    assert!(
        r.starts_with(reply::QUEUED),
        "end of data of a small message: {r:?}"
    );
    assert_eq!(server.maildir_files(BOB, "new").len(), 1);
}

#[test]
fn the_1001st_recipient_gets_452_4_5_3() {
    // The default limit (Postfix's smtpd_recipient_limit, 1000), on relayed
    // recipients: a POP3 login grants 127.0.0.2, and the relay queue captures.
    let server = server("");
    let _pop = Client::pop3_login(server.pop3(), host(2), BOB, PW);
    let mut c = Client::smtp_from(server.smtp(), host(2));
    let r = c.smtp(&format!("MAIL FROM:<{BOB}>"));
    assert!(r.starts_with("250 "), "MAIL: {r:?}");
    for n in 1..=1000 {
        let r = c.smtp(&format!("RCPT TO:<r{n}@remote.test>"));
        assert!(r.starts_with("250 "), "RCPT {n} of 1000: {r:?}");
    }
    // RFC 5321 §4.5.3.1.10: too many recipients is 452, and the client sends the rest
    // in another transaction.
    let r = c.smtp("RCPT TO:<r1001@remote.test>");
    assert!(r.starts_with("452 4.5.3 "), "the 1001st RCPT: {r:?}");
    // A recipient already accepted is not a new one.
    let r = c.smtp("RCPT TO:<r7@remote.test>");
    assert!(r.starts_with("250 "), "RCPT r7 again: {r:?}");
    let r = c.smtp_data(&message("a thousand recipients"));
    let id = r
        .strip_prefix(reply::QUEUED)
        .unwrap_or_else(|| panic!("end of data: {r:?}"))
        .trim()
        .to_owned();
    let queued = server.cli(&["queue", "show", &id]);
    assert!(
        queued.contains("r1000@remote.test") && !queued.contains("r1001@remote.test"),
        "the queued message's recipients: {queued}"
    );
}

#[test]
fn idle_smtp_session_times_out_with_421_4_4_2() {
    let server = server("smtp_idle_timeout = \"1s\"");
    let mut c = Client::smtp_from(server.smtp(), host(2));
    // Waiting for the server's own timer: the read timeout is only the guard.
    let r = c.smtp_last();
    assert!(r.starts_with("421 4.4.2 "), "idle SMTP session: {r:?}");
    assert_eq!(c.read_to_eof(), b"", "bytes after 421 4.4.2");
}

#[test]
fn idle_pop3_session_times_out_with_err_and_close() {
    let server = server("pop3_idle_timeout = \"1s\"");
    let mut c = Client::pop3_login(server.pop3(), host(2), BOB, PW);
    let r = c.read_line();
    assert!(r.starts_with("-ERR"), "idle POP3 session: {r:?}");
    assert_eq!(c.read_to_eof(), b"", "bytes after the -ERR");
}
