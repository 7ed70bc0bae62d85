//! Crashes at the worst moments of a delivery and of POP3 UPDATE, with the fault points
//! of the `fault-points` build (server/src/fault.rs): the process aborts there, then
//! the normal binary starts on the same data.
//!
//! * killed after the message bytes are written, before their fsync: no truncated
//!   message in `new/` (the copy in `tmp/` is not a message: POP3 does not list it),
//!   and the message acknowledged before it is there byte for byte;
//! * killed after the fsyncs, before the `250`: the message is complete in `new/`
//!   (the client, never told, may send it again: at least once, never half);
//! * killed in UPDATE after one of the marked messages is removed: every message not
//!   marked deleted is still there, byte for byte.

use popgate_tests::{Client, Server, Setup, host, reply, stored};
use std::os::unix::process::ExitStatusExt;

const TARO: &str = "taro@example.test";
const PASSWORD: &str = "taro-password";

fn setup() -> Setup {
    Setup::default().user(TARO, PASSWORD)
}

/// A message big enough that a torn write would show: 256 KB of numbered lines.
fn big_message(tag: &str) -> Vec<u8> {
    let mut m = format!("Subject: {tag}\r\nTo: {TARO}\r\n\r\n").into_bytes();
    for n in 0..4096 {
        m.extend_from_slice(format!("{tag} line {n:05} {}\r\n", "x".repeat(44)).as_bytes());
    }
    m
}

/// MAIL, RCPT and DATA for `message` from a fresh connection, up to the end of data.
fn send_message(server: &Server, message: &[u8]) -> Client {
    let mut c = Client::smtp_from(server.smtp(), host(1));
    assert!(
        c.smtp("MAIL FROM:<sender@elsewhere.test>")
            .starts_with("250 ")
    );
    assert!(c.smtp(&format!("RCPT TO:<{TARO}>")).starts_with("250 "));
    assert!(c.smtp("DATA").starts_with("354 "));
    c.send(message);
    c.send(b".\r\n");
    c
}

/// A delivery the server acknowledges: `250 2.0.0 Ok: queued as ...`.
fn deliver(server: &Server, message: &[u8]) {
    let end = send_message(server, message).smtp_last();
    assert!(end.starts_with(reply::QUEUED), "end of data: {end:?}");
}

/// A delivery the fault point kills: the connection closes with no reply at all.
fn deliver_into_crash(server: &mut Server, message: &[u8]) {
    let rest = send_message(server, message).wait_closed();
    assert!(
        rest.is_empty(),
        "the server answered before dying: {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert_aborted(server);
}

/// The process must have died of the fault point's abort (SIGABRT), not of anything
/// else.
fn assert_aborted(server: &mut Server) {
    let status = server.wait_exit();
    assert_eq!(
        status.signal(),
        Some(6),
        "popgate should have aborted at the fault point, exited {status}\n{}",
        server.stderr_log()
    );
}

/// The message part (after Return-Path and Received) of every file in `new/` and
/// `cur/`.
fn stored_messages(server: &Server) -> Vec<Vec<u8>> {
    ["new", "cur"]
        .iter()
        .flat_map(|sub| server.maildir_files(TARO, sub))
        .map(|path| stored::split(&popgate_tests::read(&path)).message)
        .collect()
}

/// Messages by their subject and size, for failure messages that fit on a screen.
fn summary(messages: &[Vec<u8>]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(m);
            let subject = text.lines().next().unwrap_or_default().to_owned();
            format!("{subject} ({} bytes)", m.len())
        })
        .collect()
}

/// `got` holds exactly `expected`, byte for byte, in any order.
fn assert_same(got: &[Vec<u8>], expected: &[Vec<u8>], what: &str) {
    let mut got = got.to_vec();
    let mut expected = expected.to_vec();
    got.sort();
    expected.sort();
    assert!(
        got == expected,
        "{what}: got {:?}, expected {:?}",
        summary(&got),
        summary(&expected)
    );
}

/// POP3: log in and read every message (RETR, un-stuffed); QUIT without DELE.
fn pop3_messages(server: &Server) -> Vec<Vec<u8>> {
    let mut c = Client::pop3_login(server.pop3(), host(1), TARO, PASSWORD);
    let stat = c.pop("STAT");
    let count: usize = stat
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("STAT: {stat:?}"));
    let mut messages = Vec::new();
    for n in 1..=count {
        let ok = c.pop(&format!("RETR {n}"));
        assert!(ok.starts_with("+OK"), "RETR {n}: {ok:?}");
        let lines = c.pop_multiline();
        let mut bytes = Vec::new();
        for line in lines {
            bytes.extend_from_slice(&line);
            bytes.extend_from_slice(b"\r\n");
        }
        messages.push(stored::split(&bytes).message);
    }
    assert!(c.pop("QUIT").starts_with("+OK"));
    messages
}

#[test]
fn killed_before_fsync_leaves_no_torn_message_and_keeps_the_acknowledged_one() {
    let mut server = setup().start_with_fault("after-write-before-fsync@2");
    let first = big_message("first");
    let second = big_message("second");
    deliver(&server, &first);
    // The second delivery dies with its bytes written and not fsynced.
    deliver_into_crash(&mut server, &second);

    server.restart();
    // In new/: the acknowledged message byte for byte, and nothing torn. The second
    // message never reached new/ (the link comes after the fsync).
    assert_same(
        &stored_messages(&server),
        std::slice::from_ref(&first),
        "new/ after the crash",
    );
    // Its tmp/ copy may remain; POP3 never shows it.
    assert_same(
        &pop3_messages(&server),
        std::slice::from_ref(&first),
        "POP3 after the crash",
    );
    // And the restarted server delivers as before.
    let third = big_message("third");
    deliver(&server, &third);
    assert_same(
        &pop3_messages(&server),
        &[first, third],
        "POP3 after a new delivery",
    );
}

#[test]
fn killed_after_fsync_before_250_leaves_the_whole_message() {
    let mut server = setup().start_with_fault("after-fsync-before-reply@2");
    let first = big_message("first");
    let second = big_message("second");
    deliver(&server, &first);
    deliver_into_crash(&mut server, &second);

    server.restart();
    // Durable before the reply: both are complete; the second was never acknowledged,
    // so its sender will try again (at least once, never a torn copy).
    assert_same(
        &stored_messages(&server),
        &[first, second],
        "new/ after the crash",
    );
}

#[test]
fn killed_during_update_loses_no_message_that_was_not_deleted() {
    let mut server = setup().start_with_fault("during-update");
    let messages: Vec<Vec<u8>> = (1..=4).map(|n| big_message(&format!("m{n}"))).collect();
    for m in &messages {
        deliver(&server, m);
    }
    let mut c = Client::pop3_login(server.pop3(), host(1), TARO, PASSWORD);
    assert!(c.pop("STAT").starts_with("+OK 4 "));
    // C: DELE 1, DELE 3, QUIT: UPDATE removes message 1 and aborts before message 3.
    assert!(c.pop("DELE 1").starts_with("+OK"));
    assert!(c.pop("DELE 3").starts_with("+OK"));
    c.send_line("QUIT");
    let rest = c.wait_closed();
    assert!(
        rest.is_empty(),
        "QUIT answered: {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert_aborted(&mut server);

    server.restart();
    // The store itself (new/ and cur/).
    let left = stored_messages(&server);
    // And what POP3 shows at once: the crashed process's maildrop lock does not keep
    // the maildrop [IN-USE] after the restart.
    assert_same(
        &pop3_messages(&server),
        &left,
        "POP3 after the restart, against the store",
    );
    // Messages 2 and 4 were never marked: both must be there, byte for byte. Message 3
    // was marked and may or may not be gone; nothing else may be there.
    for kept in [&messages[1], &messages[3]] {
        assert!(
            left.contains(kept),
            "an unmarked message was lost in UPDATE"
        );
    }
    for m in &left {
        assert!(messages.contains(m), "a message changed in the crash");
    }
    assert!(
        !left.contains(&messages[0]),
        "the fault point acts after the first removal"
    );
    println!(
        "UPDATE crash: {} of 4 left, message 3 {}",
        left.len(),
        if left.contains(&messages[2]) {
            "kept"
        } else {
            "removed"
        }
    );
}
