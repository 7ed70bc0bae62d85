//! `[limits]`: message size (RFC 1870), recipients per transaction, idle timeouts.

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
fn recipients_over_max_recipients_get_452_4_5_3() {
    let server = server("max_recipients = 2");
    let mut c = Client::smtp_from(server.smtp(), host(2));
    let r = c.smtp("MAIL FROM:<sender@elsewhere.test>");
    assert!(r.starts_with("250 "), "MAIL: {r:?}");
    for rcpt in [BOB, "postmaster@example.test"] {
        let r = c.smtp(&format!("RCPT TO:<{rcpt}>"));
        assert!(
            r.starts_with("250 "),
            "RCPT TO:<{rcpt}> (1 or 2 of 2): {r:?}"
        );
    }
    let r = c.smtp(&format!("RCPT TO:<{CAROL}>"));
    assert!(
        r.starts_with("452 4.5.3 "),
        "a third distinct RCPT of 2: {r:?}"
    );
    // A recipient already accepted is not a new one.
    let r = c.smtp(&format!("RCPT TO:<{BOB}>"));
    assert!(r.starts_with("250 "), "RCPT TO:<{BOB}> again: {r:?}");
    let r = c.smtp_data(&message("two recipients"));
    assert!(r.starts_with(reply::QUEUED), "end of data: {r:?}");
    assert_eq!(
        server.maildir_files(BOB, "new").len(),
        1,
        "bob gets the message once"
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
