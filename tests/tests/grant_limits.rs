//! A grant's message count, spent without races (DESIGN "Grant semantics"): the first
//! relayed RCPT of a transaction reserves one message, the 250 after end of data
//! commits it, RSET or QUIT releases it. Two transactions never both get the last one.

use popgate_tests::{Client, Server, Setup, host, message, relay_rcpt, reply};

const ALICE: &str = "alice@example.test";
const PW: &str = "alice-secret-4";
const REMOTE: &str = "someone@remote.test";

fn granted_server(max_messages: u32, source: u8) -> (Server, Client) {
    let server = Setup::default()
        .user(ALICE, PW)
        .max_messages(max_messages)
        .start();
    let pop = Client::pop3_login(server.pop3(), host(source), ALICE, PW);
    (server, pop)
}

fn queued(c: &mut Client) {
    let end = c.smtp_data(&message("relayed"));
    assert!(
        end.starts_with(reply::QUEUED),
        "end of data: expected {:?}<id>, got {end:?}",
        reply::QUEUED
    );
}

#[test]
fn grant_used_up_by_its_count_refuses_the_next_relay() {
    let (server, _pop) = granted_server(2, 2);
    let mut c = Client::smtp_from(server.smtp(), host(2));
    for i in 1..=2 {
        let r = relay_rcpt(&mut c, REMOTE);
        assert!(r.starts_with("250 "), "relay {i} of 2: {r:?}");
        queued(&mut c);
    }
    assert_eq!(
        relay_rcpt(&mut c, REMOTE),
        reply::RELAY_DENIED,
        "relay 3 of 2, same session"
    );
    let r = c.smtp("RSET");
    assert!(r.starts_with("250 "), "RSET: {r:?}");

    let mut d = Client::smtp_from(server.smtp(), host(2));
    assert_eq!(
        relay_rcpt(&mut d, REMOTE),
        reply::RELAY_DENIED,
        "relay 3 of 2, new session"
    );
    // Local mail needs no grant.
    let r = d.smtp(&format!("RCPT TO:<{ALICE}>"));
    assert!(
        r.starts_with("250 "),
        "local RCPT with a used-up grant: {r:?}"
    );
}

#[test]
fn the_last_message_is_spent_once_by_concurrent_transactions() {
    let (server, _pop) = granted_server(1, 2);
    let mut a = Client::smtp_from(server.smtp(), host(2));
    let mut b = Client::smtp_from(server.smtp(), host(2));

    let r = relay_rcpt(&mut a, REMOTE);
    assert!(r.starts_with("250 "), "A: RCPT: {r:?}");
    // A holds the reservation of the only message.
    assert_eq!(
        relay_rcpt(&mut b, REMOTE),
        reply::RELAY_DENIED,
        "B: RCPT while A holds the last message"
    );
    // More recipients in A's transaction spend nothing more.
    let r = a.smtp("RCPT TO:<other@remote.test>");
    assert!(
        r.starts_with("250 "),
        "A: second RCPT in the same transaction: {r:?}"
    );
    queued(&mut a);
    assert_eq!(
        b.smtp(&format!("RCPT TO:<{REMOTE}>")),
        reply::RELAY_DENIED,
        "B: RCPT after A's message"
    );
    assert_eq!(
        relay_after_rset(&mut a),
        reply::RELAY_DENIED,
        "A: next transaction"
    );
    let queue = server.queue_list();
    assert!(
        queue.contains(REMOTE),
        "popgate queue list does not show {REMOTE}:\n{queue}"
    );
}

fn relay_after_rset(c: &mut Client) -> String {
    let r = c.smtp("RSET");
    assert!(r.starts_with("250 "), "RSET: {r:?}");
    relay_rcpt(c, REMOTE)
}

#[test]
fn rset_releases_the_reservation() {
    let (server, _pop) = granted_server(1, 3);
    let mut a = Client::smtp_from(server.smtp(), host(3));
    let mut b = Client::smtp_from(server.smtp(), host(3));

    let r = relay_rcpt(&mut a, REMOTE);
    assert!(r.starts_with("250 "), "A: RCPT: {r:?}");
    assert_eq!(
        relay_rcpt(&mut b, REMOTE),
        reply::RELAY_DENIED,
        "B: RCPT while A holds the last message"
    );
    let r = a.smtp("RSET");
    assert!(r.starts_with("250 "), "A: RSET: {r:?}");
    let r = b.smtp(&format!("RCPT TO:<{REMOTE}>"));
    assert!(r.starts_with("250 "), "B: RCPT after A's RSET: {r:?}");
    queued(&mut b);
    assert_eq!(
        relay_rcpt(&mut a, REMOTE),
        reply::RELAY_DENIED,
        "A: after B spent the message"
    );
}

#[test]
fn quit_releases_the_reservation() {
    let (server, _pop) = granted_server(1, 4);
    let mut a = Client::smtp_from(server.smtp(), host(4));
    let mut b = Client::smtp_from(server.smtp(), host(4));

    let r = relay_rcpt(&mut a, REMOTE);
    assert!(r.starts_with("250 "), "A: RCPT: {r:?}");
    assert_eq!(
        relay_rcpt(&mut b, REMOTE),
        reply::RELAY_DENIED,
        "B: RCPT while A holds the last message"
    );
    let r = a.smtp("QUIT");
    assert!(r.starts_with("221 "), "A: QUIT: {r:?}");
    assert_eq!(a.read_to_eof(), b"", "bytes after 221");
    let r = b.smtp(&format!("RCPT TO:<{REMOTE}>"));
    assert!(r.starts_with("250 "), "B: RCPT after A quit: {r:?}");
    queued(&mut b);
}
