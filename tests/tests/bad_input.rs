//! Hostile and broken input over a raw socket: each bad line gets its error reply and
//! the session goes on; only CRLF.CRLF ends DATA (no SMTP smuggling).

use popgate_tests::stored::crlf_octets;
use popgate_tests::{Client, Server, Setup, contains, host, read, reply, send_local};

const BOB: &str = "bob@example.test";
const PW: &str = "bob-secret-8";

fn server() -> Server {
    Setup::default().user(BOB, PW).start()
}

/// Far beyond RFC 5321 §4.5.3.1.4's 512 octets and RFC 2449 §4's 255.
fn overlong(verb: &str) -> Vec<u8> {
    let mut line = format!("{verb} ").into_bytes();
    line.extend(std::iter::repeat_n(b'x', 20_000));
    line.extend_from_slice(b"\r\n");
    line
}

fn smtp_noop_works(c: &mut Client, after: &str) {
    let r = c.smtp("NOOP");
    assert!(r.starts_with("250 "), "NOOP after {after}: {r:?}");
}

#[test]
fn smtp_overlong_line_gets_500_5_5_6_and_the_session_goes_on() {
    let server = server();
    let mut c = Client::smtp_from(server.smtp(), host(2));
    c.send(&overlong("NOOP"));
    let r = c.smtp_last();
    assert!(
        r.starts_with(reply::LINE_TOO_LONG),
        "overlong command: expected {:?}..., got {r:?}",
        reply::LINE_TOO_LONG
    );
    smtp_noop_works(&mut c, "an overlong line");
    // The same inside a transaction: the transaction survives.
    let r = c.smtp("MAIL FROM:<sender@elsewhere.test>");
    assert!(r.starts_with("250 "), "MAIL: {r:?}");
    c.send(&overlong("RCPT TO:<bob@example.test>"));
    let r = c.smtp_last();
    assert!(r.starts_with(reply::LINE_TOO_LONG), "overlong RCPT: {r:?}");
    let r = c.smtp(&format!("RCPT TO:<{BOB}>"));
    assert!(r.starts_with("250 "), "RCPT after an overlong line: {r:?}");
}

#[test]
fn smtp_nul_and_invalid_utf8_get_500_and_the_session_goes_on() {
    let server = server();
    let mut c = Client::smtp_from(server.smtp(), host(2));
    for (what, line) in [
        ("a NUL in the verb", &b"NO\0OP\r\n"[..]),
        ("invalid UTF-8", &b"\xff\xfe\xfd\r\n"[..]),
        ("a NUL alone", &b"\0\r\n"[..]),
    ] {
        c.send(line);
        let r = c.smtp_last();
        assert!(
            r.starts_with("500 5.5.2 "),
            "{what}: expected 500 5.5.2, got {r:?}"
        );
        smtp_noop_works(&mut c, what);
    }
}

#[test]
fn smtp_commands_out_of_sequence_get_503_5_5_1() {
    let server = server();
    let mut c = Client::smtp_from(server.smtp(), host(2));
    for command in ["DATA", &format!("RCPT TO:<{BOB}>")] {
        let r = c.smtp(command);
        assert!(
            r.starts_with(reply::BAD_SEQUENCE),
            "{command} before MAIL: expected {:?}..., got {r:?}",
            reply::BAD_SEQUENCE
        );
    }
    let r = c.smtp("MAIL FROM:<sender@elsewhere.test>");
    assert!(r.starts_with("250 "), "MAIL: {r:?}");
    let r = c.smtp("MAIL FROM:<sender@elsewhere.test>");
    assert!(r.starts_with(reply::BAD_SEQUENCE), "a second MAIL: {r:?}");
    let r = c.smtp("DATA");
    assert!(
        r.starts_with("503 ") || r.starts_with("554 5.5.1 "),
        "DATA without a recipient: expected 503 or 554 5.5.1, got {r:?}"
    );
    let r = c.smtp(&format!("RCPT TO:<{BOB}>"));
    assert!(
        r.starts_with("250 "),
        "RCPT: the transaction went on: {r:?}"
    );
}

fn pop_greeted(server: &Server) -> Client {
    let mut c = Client::connect_from(server.pop3(), host(2));
    let r = c.read_line();
    assert!(r.starts_with("+OK"), "greeting: {r:?}");
    c
}

/// USER and PASS, asserting +OK: the session is usable after what came before.
fn pop_login(c: &mut Client, after: &str) {
    let r = c.pop(&format!("USER {BOB}"));
    assert!(r.starts_with("+OK"), "USER after {after}: {r:?}");
    let r = c.pop(&format!("PASS {PW}"));
    assert!(r.starts_with("+OK"), "PASS after {after}: {r:?}");
}

#[test]
fn pop3_bad_lines_get_err_and_the_session_goes_on() {
    let server = server();
    let mut c = pop_greeted(&server);
    c.send(&overlong("USER"));
    let r = c.read_line();
    assert!(r.starts_with("-ERR"), "overlong POP3 line: {r:?}");
    for (what, line) in [
        ("a NUL in the command", &b"US\0ER bob\r\n"[..]),
        ("invalid UTF-8", &b"\xff\xfe\xfd\r\n"[..]),
    ] {
        c.send(line);
        let r = c.read_line();
        assert!(r.starts_with("-ERR"), "{what}: {r:?}");
    }
    pop_login(&mut c, "bad lines");
    // In TRANSACTION state too.
    c.send(&overlong("LIST"));
    let r = c.read_line();
    assert!(r.starts_with("-ERR"), "overlong line after login: {r:?}");
    let r = c.pop("STAT");
    assert_eq!(r, "+OK 0 0", "STAT after an overlong line");
}

#[test]
fn pop3_commands_out_of_state_get_err_and_the_session_goes_on() {
    let server = server();
    let mut c = pop_greeted(&server);
    for command in ["STAT", "LIST", "RETR 1", "DELE 1", &format!("PASS {PW}")] {
        let r = c.pop(command);
        assert!(r.starts_with("-ERR"), "{command} before login: {r:?}");
    }
    pop_login(&mut c, "commands out of state");
    for command in [
        format!("USER {BOB}"),
        format!("PASS {PW}"),
        "RETR 1".to_string(),
        "BOGUS".to_string(),
    ] {
        let r = c.pop(&command);
        assert!(
            r.starts_with("-ERR"),
            "{command} in TRANSACTION state: {r:?}"
        );
    }
    let r = c.pop("STAT");
    assert_eq!(r, "+OK 0 0", "STAT after the errors");
    let r = c.pop("QUIT");
    assert!(r.starts_with("+OK"), "QUIT: {r:?}");
}

/// Bare-LF and bare-CR "ends of data" that must not end the message: smuggled
/// commands follow each, and only the final CRLF.CRLF ends it. Here with
/// `bare_newline = "normalize"`, so the one message is stored and can be looked at;
/// the default refusal is in `adversarial_protocol.rs`.
const SMUGGLES: [(&str, &[u8]); 4] = [
    ("LF.LF", b"\n.\n"),
    ("LF.CRLF", b"\n.\r\n"),
    ("CRLF.LF", b"\r\n.\n"),
    ("CR.CRLF", b"\r.\r\n"),
];

#[test]
fn only_crlf_dot_crlf_ends_data() {
    let server = Setup::default()
        .user(BOB, PW)
        .toml("[limits]\nbare_newline = \"normalize\"")
        .start();
    for (name, end) in SMUGGLES {
        let mut c = Client::smtp_from(server.smtp(), host(2));
        let r = c.smtp("MAIL FROM:<sender@elsewhere.test>");
        assert!(r.starts_with("250 "), "MAIL: {r:?}");
        let r = c.smtp(&format!("RCPT TO:<{BOB}>"));
        assert!(r.starts_with("250 "), "RCPT: {r:?}");
        let mut body = format!("Subject: smuggle {name}\r\n\r\nbefore").into_bytes();
        body.extend_from_slice(end);
        body.extend_from_slice(
            format!(
                "MAIL FROM:<evil@elsewhere.test>\r\nRCPT TO:<{BOB}>\r\nDATA\r\nSubject: smuggled {name}\r\n\r\nevil\r\n"
            )
            .as_bytes(),
        );
        let r = c.smtp_data(&body);
        assert!(r.starts_with(reply::QUEUED), "{name}: end of data: {r:?}");
        // A server that ended the message early would now answer the smuggled MAIL,
        // RCPT, DATA and end of data before this QUIT.
        let r = c.smtp("QUIT");
        assert!(
            r.starts_with("221 "),
            "{name}: the reply after end of data is not QUIT's: {r:?}"
        );
        assert_eq!(c.read_to_eof(), b"", "{name}: bytes after 221");
    }

    let files = server.maildir_files(BOB, "new");
    assert_eq!(
        files.len(),
        SMUGGLES.len(),
        "one message per session, nothing smuggled: {files:?}"
    );
    for (name, _) in SMUGGLES {
        let subject = format!("Subject: smuggle {name}\r\n");
        let file = files
            .iter()
            .map(|f| read(f))
            .find(|bytes| contains(bytes, subject.as_bytes()))
            .unwrap_or_else(|| panic!("no stored message with {subject:?}"));
        assert!(
            contains(&file, b"MAIL FROM:<evil@elsewhere.test>\r\n")
                && contains(&file, format!("Subject: smuggled {name}\r\n").as_bytes()),
            "{name}: the smuggled part is not in the stored message:\n{}",
            String::from_utf8_lossy(&file)
        );
    }
    // The bare-LF dot line is stored in CRLF form, still inside the message.
    let lf = files
        .iter()
        .map(|f| read(f))
        .find(|bytes| contains(bytes, b"Subject: smuggle LF.LF\r\n"))
        .expect("the LF.LF message");
    assert!(
        contains(&lf, b"before\r\n.\r\nMAIL FROM:<evil@elsewhere.test>\r\n"),
        "LF.LF: the stored message does not contain `\\n.\\n` as CRLF:\n{:?}",
        String::from_utf8_lossy(&lf)
    );
}

/// A message with a bare-LF `.` line, as another program may leave it in the Maildir
/// (SMTP no longer stores one), is served over POP3 in CRLF form, with that line
/// byte-stuffed (RFC 1939 §3), and its size counted in CRLF octets: otherwise the `.`
/// would end RETR early.
#[test]
fn pop3_serves_a_bare_lf_message_in_crlf_form_and_stuffed() {
    let server = server();
    // A delivery makes the Maildir; then the other program's file lands beside it.
    send_local(server.smtp(), BOB, b"Subject: first\r\n\r\nx\r\n");
    let new = server.maildir(BOB).join("new");
    std::fs::write(
        new.join("1700000000.M1P1.other"),
        b"Subject: bare lf\n\nbefore\n.\nafter\nlast\n",
    )
    .expect("write a message into new/");
    for file in server.maildir_files(BOB, "new") {
        if !read(&file).starts_with(b"Subject: bare lf") {
            std::fs::remove_file(&file).expect("remove the first message");
        }
    }

    let files = server.maildir_files(BOB, "new");
    assert_eq!(files.len(), 1, "{files:?}");
    let file = read(&files[0]);
    let crlf: Vec<u8> = String::from_utf8_lossy(&file)
        .replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes();

    let mut p = Client::pop3_login(server.pop3(), host(2), BOB, PW);
    let r = p.pop("LIST 1");
    assert_eq!(
        r,
        format!("+OK 1 {}", crlf_octets(&file)),
        "LIST 1 counts CRLF octets"
    );
    let r = p.pop("RETR 1");
    assert!(r.starts_with("+OK"), "RETR 1: {r:?}");
    let mut got: Vec<u8> = Vec::new();
    for line in p.pop_multiline() {
        got.extend_from_slice(&line);
        got.extend_from_slice(b"\r\n");
    }
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&crlf),
        "RETR 1 is not the stored message in CRLF form"
    );
    let r = p.pop("QUIT");
    assert!(r.starts_with("+OK"), "QUIT: {r:?}");
}
