//! Several popgate nodes sharing grants and events through a real `redis-server`
//! (DESIGN "The grant store is a trait"), and sharing one Maildir store with a
//! maildrop lock that holds across them (RFC 1939 §8, RFC 2449 §8.1.2 [IN-USE]).
//!
//! Each test starts its own redis-server on a free loopback port and two popgate
//! processes on their own ports: POP3 on node A, SMTP relay through node B, as ISPs
//! with separate POP and SMTP hosts ran POP before SMTP.

use popgate_tests::redis::Redis;
use popgate_tests::{
    Client, IO_TIMEOUT, Server, Setup, host, message, read, relay_rcpt, reply, send_local,
};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ALICE: &str = "alice@example.test";
const PW: &str = "alice-secret-9";
const REMOTE: &str = "someone@remote.test";
/// The maildrop lock file in a Maildir (popgate's on-disk contract).
const LOCK_FILE: &str = "popgate-pop3.lock";

fn node_setup(name: &str, store: &str) -> Setup {
    Setup::default()
        .listeners(&["smtp", "pop3", "http"])
        .user(ALICE, PW)
        .grant_setting(&format!("store = \"{store}\""))
        .grant_setting(&format!("node = \"{name}\""))
        .grant_setting("store_timeout = \"300ms\"")
}

/// Nodes A and B on one redis-server; `None` when redis-server is missing.
fn cluster(max_messages: u32) -> Option<(Redis, Server, Server)> {
    let redis = Redis::start()?;
    let a = node_setup("node-a", &redis.url())
        .max_messages(max_messages)
        .start();
    let b = node_setup("node-b", &redis.url())
        .max_messages(max_messages)
        .start();
    Some((redis, a, b))
}

fn login_and_quit(server: &Server, source: u8) {
    let mut pop = Client::pop3_login(server.pop3(), host(source), ALICE, PW);
    let bye = pop.pop("QUIT");
    assert!(bye.starts_with("+OK"), "QUIT: {bye:?}");
}

/// One relay attempt from `source` through `server`: the RCPT reply, and when it was
/// accepted the end-of-data reply.
fn relay_once(server: &Server, source: u8, subject: &str) -> (String, Option<String>) {
    let mut c = Client::smtp_from(server.smtp(), host(source));
    let rcpt = relay_rcpt(&mut c, REMOTE);
    let end = rcpt
        .starts_with("250 ")
        .then(|| c.smtp_data(&message(subject)));
    c.smtp("QUIT");
    (rcpt, end)
}

/// A plain HTTP/1.1 request to a node's API; the body.
fn http(addr: SocketAddr, method: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the HTTP listener");
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set a read timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {answer:?}"));
    assert!(head.starts_with("HTTP/1.1 2"), "{method} {path}: {head}");
    body.to_string()
}

fn snapshot(server: &Server) -> serde_json::Value {
    let body = http(server.addr("http"), "GET", "/api/snapshot");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("snapshot JSON: {e}\n{body}"))
}

/// Ask `check` again until it answers, at most until [`IO_TIMEOUT`]; the answer. Used
/// where what is awaited travels between processes without a line to wait on (Redis
/// pub/sub, a reconnection): each attempt is a real request, a short pause apart.
fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {IO_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sessions_of(snapshot: &serde_json::Value, node: &str) -> Vec<serde_json::Value> {
    snapshot["sessions"]
        .as_array()
        .map(|sessions| {
            sessions
                .iter()
                .filter(|s| s["node"] == node)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_login_on_node_a_lets_its_address_relay_through_node_b_until_revoked() {
    let Some((_redis, a, b)) = cluster(0) else {
        return;
    };
    // C: (127.0.0.2 -> node A) USER/PASS   S: +OK: the grant is in Redis before +OK.
    login_and_quit(&a, 2);
    let (rcpt, end) = relay_once(&b, 2, "via node b");
    assert!(
        rcpt.starts_with("250 "),
        "relay through B at once: {rcpt:?}"
    );
    let end = end.expect("DATA after an accepted RCPT");
    assert!(end.starts_with(reply::QUEUED), "end of data: {end:?}");
    assert!(
        b.queue_list().contains(REMOTE),
        "B queued the relayed message"
    );

    // Another address never logged in: refused on both nodes.
    assert_eq!(relay_once(&b, 3, "no grant").0, reply::RELAY_DENIED);
    assert_eq!(relay_once(&a, 3, "no grant").0, reply::RELAY_DENIED);

    // B lists the grant A made (GET /api/grants reads the shared store).
    let listed = http(b.addr("http"), "GET", "/api/grants");
    assert!(
        listed.contains("\"127.0.0.2/32\""),
        "B's grant list:\n{listed}"
    );

    // Both nodes' events reach one dashboard: A's snapshot shows B's SMTP session,
    // naming B, beside its own POP3 session, naming A.
    let seen = poll("node B's sessions in node A's snapshot", || {
        let snap = snapshot(&a);
        let from_b = sessions_of(&snap, "node-b");
        (from_b.iter().any(|s| s["protocol"] == "smtp") && !sessions_of(&snap, "node-a").is_empty())
            .then_some(snap)
    });
    let own = sessions_of(&seen, "node-a");
    assert!(
        own.iter().any(|s| s["protocol"] == "pop3"),
        "A's own POP3 session names A: {own:?}"
    );
    // And B's dashboard shows the grant A made.
    poll("node A's grant in node B's snapshot", || {
        let grants = snapshot(&b)["grants"].clone();
        grants
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g["key"] == "127.0.0.2/32"))
            .then_some(())
    });

    // Revoked through node A's API: node B refuses at once.
    let out = http(a.addr("http"), "DELETE", "/api/grants/127.0.0.2");
    assert!(out.contains("127.0.0.2/32"), "revoke: {out}");
    assert_eq!(
        relay_once(&b, 2, "after revoke").0,
        reply::RELAY_DENIED,
        "B after A revoked the grant"
    );
}

#[test]
fn the_last_message_of_a_grant_is_spent_once_across_nodes() {
    let Some((_redis, a, b)) = cluster(1) else {
        return;
    };
    login_and_quit(&a, 4);
    // Two transactions from the granted address, one on each node, reach RCPT at the
    // same moment: exactly one gets the grant's only message.
    let barrier = Arc::new(Barrier::new(2));
    let attempts: Vec<_> = [a.smtp(), b.smtp()]
        .into_iter()
        .map(|smtp| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = Client::smtp_from(smtp, host(4));
                let mail = c.smtp("MAIL FROM:<sender@elsewhere.test>");
                assert!(mail.starts_with("250 "), "MAIL: {mail:?}");
                barrier.wait();
                let rcpt = c.smtp(&format!("RCPT TO:<{REMOTE}>"));
                let end = rcpt
                    .starts_with("250 ")
                    .then(|| c.smtp_data(&message("the last one")));
                c.smtp("QUIT");
                (rcpt, end)
            })
        })
        .collect();
    let results: Vec<(String, Option<String>)> = attempts
        .into_iter()
        .map(|t| t.join().expect("a relay thread"))
        .collect();
    let accepted: Vec<_> = results
        .iter()
        .filter(|(r, _)| r.starts_with("250 "))
        .collect();
    assert_eq!(accepted.len(), 1, "exactly one RCPT accepted: {results:?}");
    let refused: Vec<_> = results
        .iter()
        .filter(|(r, _)| r == reply::RELAY_DENIED)
        .collect();
    assert_eq!(refused.len(), 1, "the other refused: {results:?}");
    let end = accepted[0].1.as_deref().unwrap_or_default();
    assert!(end.starts_with(reply::QUEUED), "end of data: {end:?}");

    let queued = [a.queue_list(), b.queue_list()]
        .iter()
        .map(|q| q.matches(REMOTE).count())
        .sum::<usize>();
    assert_eq!(queued, 1, "one relayed message in the two queues");
    // The grant is spent on both nodes now.
    assert_eq!(relay_once(&a, 4, "spent").0, reply::RELAY_DENIED);
    assert_eq!(relay_once(&b, 4, "spent").0, reply::RELAY_DENIED);
}

#[test]
fn redis_down_fails_relays_closed_and_recovery_needs_no_restart() {
    let Some((mut redis, a, b)) = cluster(0) else {
        return;
    };
    login_and_quit(&a, 5);
    assert!(relay_once(&b, 5, "before").0.starts_with("250 "));

    redis.stop();
    // The relay decision cannot be made: 451 4.3.0 (try later), never 250.
    let (rcpt, _) = relay_once(&b, 5, "while redis is down");
    assert!(
        rcpt.starts_with(reply::TEMP_FAILURE),
        "relay with Redis down: {rcpt:?}"
    );
    // Local mail needs no grant and still delivers, on both nodes.
    send_local(b.smtp(), ALICE, &message("local on b"));
    send_local(a.smtp(), ALICE, &message("local on a"));
    assert_eq!(b.maildir_files(ALICE, "new").len(), 1, "delivered on B");
    // A login still succeeds, and says its grant was not stored.
    let mark = a.log_len();
    let mut pop = Client::pop3_login(a.pop3(), host(5), ALICE, PW);
    let stat = pop.pop("STAT");
    assert!(
        stat.starts_with("+OK 1 "),
        "POP3 retrieval goes on: {stat:?}"
    );
    pop.pop("QUIT");
    a.wait_log_after(mark, "grant_refused: store unavailable", |l| {
        l.contains("event=grant_refused") && l.contains("grant store unavailable")
    });

    // Redis comes back (empty): the nodes reconnect by themselves. A fresh login on A
    // grants again, and B relays on it.
    redis.restart();
    let attempts = poll("a relay through B after Redis came back", || {
        login_and_quit(&a, 5);
        let (rcpt, end) = relay_once(&b, 5, "after");
        rcpt.starts_with("250 ").then_some(end)
    });
    let end = attempts.expect("DATA after an accepted RCPT");
    assert!(end.starts_with(reply::QUEUED), "end of data: {end:?}");
}

#[test]
fn redis_auth_comes_from_the_url_and_a_wrong_password_fails_closed() {
    let Some(redis) = Redis::start_with_password("s3cret-pw") else {
        return;
    };
    let a = node_setup("node-a", &redis.url()).start();
    let wrong = node_setup("node-w", &redis.url_with_password(Some("wrong"))).start();
    login_and_quit(&a, 7);
    assert!(
        relay_once(&a, 7, "with AUTH").0.starts_with("250 "),
        "the node with the right password relays"
    );
    let (rcpt, _) = relay_once(&wrong, 7, "wrong password");
    assert!(
        rcpt.starts_with(reply::TEMP_FAILURE),
        "a node Redis refuses decides nothing: {rcpt:?}"
    );
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[test]
fn one_pop3_session_per_mailbox_across_nodes_sharing_a_maildir_store() {
    // No Redis here: the lock is a file in the Maildir, so it needs none (but without
    // a shared grant store it must be asked for).
    let file_lock = |setup: Setup| {
        let mut setup = setup;
        setup
            .extra_toml
            .push_str("\n[pop3]\nmaildrop_lock = \"file\"\n");
        setup
    };
    let a = file_lock(node_setup("node-a", "memory")).start();
    fs::create_dir_all(a.mail_dir()).expect("the shared mail folder");
    let b = file_lock(node_setup("node-b", "memory"))
        .share_mail(&a.mail_dir())
        .start();
    send_local(a.smtp(), ALICE, &message("shared"));
    let lock = a.maildir(ALICE).join(LOCK_FILE);

    // C: (node A) USER, PASS   S: +OK maildrop locked; the lock names node A.
    let mut on_a = Client::pop3_login(a.pop3(), host(6), ALICE, PW);
    let holder = String::from_utf8_lossy(&read(&lock)).into_owned();
    assert!(
        holder.starts_with("node=node-a pid="),
        "lock file: {holder:?}"
    );
    // C: (node B) USER, PASS   S: -ERR [IN-USE]
    let mut on_b = Client::connect_from(b.pop3(), host(6));
    assert!(on_b.read_line().starts_with("+OK"));
    assert!(on_b.pop(&format!("USER {ALICE}")).starts_with("+OK"));
    let pass = on_b.pop(&format!("PASS {PW}"));
    assert!(
        pass.starts_with(reply::POP3_IN_USE),
        "node B while node A holds the maildrop: {pass:?}"
    );
    assert!(on_b.pop("QUIT").starts_with("+OK"));
    assert!(on_a.pop("STAT").starts_with("+OK 1 "));
    assert!(on_a.pop("QUIT").starts_with("+OK"));

    // Released: node B gets it now.
    poll("node A's lock released", || (!lock.exists()).then_some(()));
    let mut on_b = Client::pop3_login(b.pop3(), host(6), ALICE, PW);
    assert!(on_b.pop("STAT").starts_with("+OK 1 "));
    assert!(on_b.pop("QUIT").starts_with("+OK"));
    poll("node B's lock released", || (!lock.exists()).then_some(()));

    // A lock from a node that is alive (a fresh heartbeat) holds, whoever wrote it...
    fs::write(
        &lock,
        format!("node=node-c pid=4242 heartbeat={}\n", unix_ms()),
    )
    .expect("write a live lock");
    let mut c = Client::connect_from(b.pop3(), host(6));
    assert!(c.read_line().starts_with("+OK"));
    assert!(c.pop(&format!("USER {ALICE}")).starts_with("+OK"));
    let pass = c.pop(&format!("PASS {PW}"));
    assert!(pass.starts_with(reply::POP3_IN_USE), "live lock: {pass:?}");

    // ...and one whose node died (its heartbeat long past the stale age) is taken over.
    fs::write(&lock, "node=node-c pid=4242 heartbeat=1000\n").expect("write a stale lock");
    let mark = b.log_len();
    let mut on_b = Client::pop3_login(b.pop3(), host(6), ALICE, PW);
    b.wait_log_after(mark, "a stale lock taken over", |l| {
        l.contains("took over a stale maildrop lock")
    });
    let holder = String::from_utf8_lossy(&read(&lock)).into_owned();
    assert!(
        holder.starts_with("node=node-b pid="),
        "lock file: {holder:?}"
    );
    assert!(on_b.pop("QUIT").starts_with("+OK"));
    poll("the taken-over lock released", || {
        (!lock.exists()).then_some(())
    });
}
