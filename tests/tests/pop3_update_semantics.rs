//! RFC 1939 §6: DELE only marks; messages are removed in the UPDATE state, which only
//! QUIT enters. UIDL is stable across sessions; one session per maildrop (RFC 2449
//! [IN-USE]).

use std::path::PathBuf;

use popgate_tests::{Client, Server, Setup, host, message, reply, send_local};

const BOB: &str = "bob@example.test";
const PW: &str = "bob-secret-2";

fn server_with_mail(count: usize) -> Server {
    let server = Setup::default().user(BOB, PW).start();
    for i in 0..count {
        send_local(server.smtp(), BOB, &message(&format!("message {i}")));
    }
    server
}

fn stored(server: &Server) -> Vec<PathBuf> {
    let mut files = server.maildir_files(BOB, "new");
    files.extend(server.maildir_files(BOB, "cur"));
    files
}

fn login(server: &Server) -> Client {
    Client::pop3_login(server.pop3(), host(1), BOB, PW)
}

/// QUIT, its +OK, and the server's close.
fn quit(c: &mut Client) {
    let r = c.pop("QUIT");
    assert!(r.starts_with("+OK"), "QUIT: {r:?}");
    assert_eq!(c.read_to_eof(), b"", "bytes after the QUIT reply");
}

fn stat(c: &mut Client) -> String {
    c.pop("STAT")
}

#[test]
fn dele_then_dropped_connection_keeps_the_message() {
    let server = server_with_mail(1);
    let mut c = login(&server);
    let before = stat(&mut c);
    assert!(before.starts_with("+OK 1 "), "STAT: {before:?}");
    let r = c.pop("DELE 1");
    assert!(r.starts_with("+OK"), "DELE 1: {r:?}");
    // The client goes away without QUIT: the server sees end of input and closes.
    c.shutdown_write();
    assert_eq!(
        c.read_to_eof(),
        b"",
        "the server answers nothing to a dropped connection"
    );
    drop(c);

    assert_eq!(
        stored(&server).len(),
        1,
        "a DELE without QUIT removed the message"
    );
    let mut c = login(&server);
    assert_eq!(stat(&mut c), before, "STAT after a dropped session");
    quit(&mut c);
    assert_eq!(stored(&server).len(), 1);
}

#[test]
fn dele_rset_quit_keeps_the_message() {
    let server = server_with_mail(2);
    let mut c = login(&server);
    let before = stat(&mut c);
    assert!(before.starts_with("+OK 2 "), "STAT: {before:?}");
    let r = c.pop("DELE 1");
    assert!(r.starts_with("+OK"), "DELE 1: {r:?}");
    // A deleted message is gone from this session's view (RFC 1939 §5).
    let r = c.pop("RETR 1");
    assert!(r.starts_with("-ERR"), "RETR of a deleted message: {r:?}");
    let r = c.pop("DELE 1");
    assert!(r.starts_with("-ERR"), "DELE of a deleted message: {r:?}");
    let r = c.pop("LIST");
    assert!(r.starts_with("+OK"), "LIST: {r:?}");
    let listing = c.pop_multiline();
    assert_eq!(listing.len(), 1, "LIST after DELE 1: {listing:?}");
    assert!(
        listing[0].starts_with(b"2 "),
        "LIST after DELE 1: {listing:?}"
    );
    let r = stat(&mut c);
    assert!(r.starts_with("+OK 1 "), "STAT after DELE 1: {r:?}");

    let r = c.pop("RSET");
    assert!(r.starts_with("+OK"), "RSET: {r:?}");
    assert_eq!(stat(&mut c), before, "STAT after RSET");
    quit(&mut c);

    assert_eq!(
        stored(&server).len(),
        2,
        "DELE, RSET, QUIT removed a message"
    );
    let mut c = login(&server);
    assert_eq!(stat(&mut c), before);
    quit(&mut c);
}

#[test]
fn dele_quit_removes_the_message() {
    let server = server_with_mail(2);
    let mut c = login(&server);
    let r = c.pop("UIDL 2");
    assert!(r.starts_with("+OK 2 "), "UIDL 2: {r:?}");
    let kept_uid = r["+OK 2 ".len()..].to_string();
    let r = c.pop("DELE 1");
    assert!(r.starts_with("+OK"), "DELE 1: {r:?}");
    // Until QUIT, nothing is removed from the disk.
    assert_eq!(
        stored(&server).len(),
        2,
        "DELE removed the file before QUIT"
    );
    quit(&mut c);

    let left = stored(&server);
    assert_eq!(left.len(), 1, "after DELE 1, QUIT: {left:?}");
    let mut c = login(&server);
    let r = stat(&mut c);
    assert!(r.starts_with("+OK 1 "), "STAT: {r:?}");
    let r = c.pop("UIDL 1");
    assert_eq!(
        r,
        format!("+OK 1 {kept_uid}"),
        "the message that is left is the second one"
    );
    quit(&mut c);
}

#[test]
fn uidl_is_stable_across_sessions_and_names_the_maildir_file() {
    let server = server_with_mail(3);
    let mut c = login(&server);
    let r = c.pop("UIDL");
    assert!(r.starts_with("+OK"), "UIDL: {r:?}");
    let first = c.pop_multiline();
    assert_eq!(first.len(), 3, "UIDL listing: {first:?}");
    // Reading a message may move it from new/ to cur/; its UID must not change.
    let r = c.pop("RETR 2");
    assert!(r.starts_with("+OK"), "RETR 2: {r:?}");
    c.pop_multiline();
    quit(&mut c);

    let mut c = login(&server);
    let r = c.pop("UIDL");
    assert!(r.starts_with("+OK"), "UIDL: {r:?}");
    let second = c.pop_multiline();
    assert_eq!(
        second
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect::<Vec<_>>(),
        first
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect::<Vec<_>>(),
        "UIDL changed between sessions"
    );
    quit(&mut c);

    // DESIGN: the UID is the Maildir base name (before `:2,`), at most 70 characters
    // (RFC 1939 §7), each distinct.
    let names: Vec<String> = stored(&server)
        .iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.split(":2,").next().unwrap_or_default().to_string()
        })
        .collect();
    let mut uids = Vec::new();
    for (i, line) in first.iter().enumerate() {
        let line = String::from_utf8_lossy(line);
        let (n, uid) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("UIDL line {line:?}"));
        assert_eq!(n, (i + 1).to_string(), "UIDL numbering: {line:?}");
        assert!((1..=70).contains(&uid.len()), "UID length: {uid:?}");
        assert!(
            uid.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "UID characters: {uid:?}"
        );
        assert!(
            names.contains(&uid.to_string()),
            "UID {uid:?} is not a Maildir base name of {names:?}"
        );
        uids.push(uid.to_string());
    }
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 3, "UIDs are not distinct: {first:?}");
}

#[test]
fn second_concurrent_login_gets_in_use() {
    let server = server_with_mail(1);
    let mut a = login(&server);

    let mut b = Client::connect_from(server.pop3(), host(1));
    let greeting = b.read_line();
    assert!(greeting.starts_with("+OK"), "greeting: {greeting:?}");
    let r = b.pop(&format!("USER {BOB}"));
    assert!(r.starts_with("+OK"), "USER: {r:?}");
    let r = b.pop(&format!("PASS {PW}"));
    assert!(
        r.starts_with(reply::POP3_IN_USE),
        "second login: expected {:?}..., got {r:?}",
        reply::POP3_IN_USE
    );

    // The first session is untouched.
    let r = stat(&mut a);
    assert!(r.starts_with("+OK 1 "), "STAT in the first session: {r:?}");
    quit(&mut a);
    drop(b);

    // Once the first session has ended, the maildrop can be opened again.
    let mut c = login(&server);
    let r = stat(&mut c);
    assert!(r.starts_with("+OK 1 "), "STAT: {r:?}");
    quit(&mut c);
}
