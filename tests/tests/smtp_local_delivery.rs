//! Local delivery end to end: python's smtplib sends from 127.0.0.2 to a local user,
//! the Maildir file is checked byte for byte, then curl and python's poplib read it
//! back over POP3 and poplib deletes it.

use std::process::Command;

use popgate_tests::stored::{crlf_octets, split};
use popgate_tests::{Server, Setup, python, read, reply, run_ok};

const BOB: &str = "bob@example.test";
const BOB_PASSWORD: &str = "bob-secret-1";
const SENDER: &str = "alice@example.test";

/// Lines that dot-stuffing must survive (RFC 5321 §4.5.2): one starting with a dot, a
/// lone `..`, and a lone `.` that would end the message if the client did not stuff it.
const MESSAGE: &[u8] = b"From: Alice <alice@example.test>\r\n\
To: Bob <bob@example.test>\r\n\
Subject: dot-stuffing\r\n\
Message-ID: <dots-1@client.test>\r\n\
\r\n\
first line\r\n\
.leading dot line\r\n\
..\r\n\
.\r\n\
last line\r\n";

const SEND: &str = r#"
host, port, source, sender, rcpt, path = sys.argv[1:]
s = smtp_from(host, port, source)
out("MAIL", *s.mail(sender))
out("RCPT", *s.rcpt(rcpt))
out("DATA", *s.data(open(path, "rb").read()))
out("QUIT", *s.quit())
"#;

const READ_AND_DELETE: &str = r#"
host, port, user, password = sys.argv[1:]
p = POP3From(host, int(port), "127.0.0.2")
out("USER", p.user(user))
out("PASS", p.pass_(password))
count, size = p.stat()
out("STAT", count, size)
resp, listing, _ = p.list()
out("LIST", resp)
for line in listing:
    out("LISTING", line)
resp, lines, octets = p.retr(1)
out("RETR", resp)
hexout("RETRBODY", b"\r\n".join(lines) + b"\r\n")
out("RETROCTETS", octets)
resp, lines, _ = p.top(1, 0)
out("TOP", resp)
hexout("TOPBODY", b"\r\n".join(lines) + b"\r\n")
out("DELE", p.dele(1))
out("QUIT", p.quit())
"#;

fn deliver(server: &Server) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("message.eml");
    std::fs::write(&path, MESSAGE).expect("write the message");
    let smtp = server.smtp();
    let out = python(
        SEND,
        &[
            &smtp.ip().to_string(),
            &smtp.port().to_string(),
            "127.0.0.2",
            SENDER,
            BOB,
            path.to_str().expect("utf-8 temp path"),
        ],
    );
    assert!(out.get("MAIL").starts_with("250 "), "{out:?}");
    assert!(out.get("RCPT").starts_with("250 "), "{out:?}");
    let data = out.get("DATA");
    let id = data.strip_prefix(reply::QUEUED).unwrap_or_else(|| {
        panic!(
            "end of data: expected {:?}<id>, got {data:?}",
            reply::QUEUED
        )
    });
    assert!(!id.trim().is_empty(), "queue id is empty in {data:?}");
    assert!(out.get("QUIT").starts_with("221 "), "{out:?}");
}

#[test]
fn smtp_delivery_is_stored_exactly_and_read_back_over_pop3() {
    let server = Setup::default().user(BOB, BOB_PASSWORD).start();
    deliver(&server);

    // Exactly one file, in new/, with nothing left behind in tmp/.
    let new = server.maildir_files(BOB, "new");
    assert_eq!(new.len(), 1, "files in Maildir/new: {new:?}");
    assert_eq!(
        server.maildir_files(BOB, "tmp"),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        server.maildir_files(BOB, "cur"),
        Vec::<std::path::PathBuf>::new()
    );
    let file = read(&new[0]);

    // RFC 5321 §4.4: final delivery prepends Return-Path and one Received, and the
    // message follows exactly as sent, its dot-stuffing removed.
    let stored = split(&file);
    assert_eq!(
        String::from_utf8_lossy(&stored.return_path),
        format!("Return-Path: <{SENDER}>\r\n")
    );
    let received = popgate_tests::stored::unfold(&stored.received);
    assert!(
        received.contains("by mail.example.test"),
        "Received: names the host: {received:?}"
    );
    assert!(
        received.contains("127.0.0.2"),
        "Received: names the client address: {received:?}"
    );
    assert!(
        received.contains(';'),
        "Received: ends with ; and a date: {received:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&stored.message),
        String::from_utf8_lossy(MESSAGE),
        "the stored message differs from what was sent"
    );

    let pop3 = server.pop3();
    let user = format!("{BOB}:{BOB_PASSWORD}");

    // curl's POP3: LIST (the URL with no message number) then RETR 1.
    let listed = run_ok(Command::new("curl").args([
        "-sS",
        "--max-time",
        "60",
        "--user",
        &user,
        &format!("pop3://{pop3}/"),
    ]));
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        format!("1 {}\r\n", crlf_octets(&file)),
        "curl pop3 LIST"
    );
    let retrieved = run_ok(Command::new("curl").args([
        "-sS",
        "--max-time",
        "60",
        "--user",
        &user,
        &format!("pop3://{pop3}/1"),
    ]));
    assert_eq!(
        String::from_utf8_lossy(&retrieved.stdout),
        String::from_utf8_lossy(&file),
        "curl pop3 RETR 1"
    );
    assert_eq!(
        server.maildir_files(BOB, "new").len() + server.maildir_files(BOB, "cur").len(),
        1
    );

    // poplib: STAT, LIST, RETR, TOP 0, DELE, QUIT.
    let out = python(
        READ_AND_DELETE,
        &[
            &pop3.ip().to_string(),
            &pop3.port().to_string(),
            BOB,
            BOB_PASSWORD,
        ],
    );
    assert!(out.get("PASS").starts_with("+OK"), "{out:?}");
    assert_eq!(out.get("STAT"), format!("1 {}", crlf_octets(&file)));
    assert_eq!(
        out.all("LISTING"),
        vec![format!("1 {}", crlf_octets(&file))]
    );
    assert!(out.get("RETR").starts_with("+OK"), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.bytes("RETRBODY")),
        String::from_utf8_lossy(&file)
    );
    assert_eq!(out.get("RETROCTETS"), crlf_octets(&file).to_string());
    assert!(out.get("TOP").starts_with("+OK"), "{out:?}");
    let header_end = file
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the stored message has a header/body separator")
        + 4;
    assert_eq!(
        String::from_utf8_lossy(&out.bytes("TOPBODY")),
        String::from_utf8_lossy(&file[..header_end]),
        "TOP 1 0 is the header and the blank line"
    );
    assert!(out.get("DELE").starts_with("+OK"), "{out:?}");
    assert!(out.get("QUIT").starts_with("+OK"), "{out:?}");

    // RFC 1939 §6: the UPDATE state removed it.
    assert_eq!(
        server.maildir_files(BOB, "new"),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        server.maildir_files(BOB, "cur"),
        Vec::<std::path::PathBuf>::new()
    );
}
