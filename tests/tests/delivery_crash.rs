//! A crash with a full queue: SIGKILL while 200 messages wait for a slow next hop,
//! restart, and every message arrives at least once; duplicates are counted and
//! reported, never a loss.

mod delivery_support;

use delivery_support::{ALICE, Sink, relay, relay_session, setup};
use std::collections::BTreeMap;
use std::time::Duration;

const MESSAGES: usize = 200;

fn subject(data: &[u8]) -> String {
    String::from_utf8_lossy(data)
        .lines()
        .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn sigkill_with_200_queued_loses_nothing() {
    // 20 ms per message and 2 connections: about 2 s to drain, so the kill lands
    // with most of the queue still waiting.
    let sink = Sink::with_delay(Duration::from_millis(20));
    let mut server = setup(&format!(
        "max_per_destination = 2\n[relay.transport]\n\"remote.test\" = \"{}\"\n",
        sink.addr
    ))
    .start();
    let (pop, mut smtp) = relay_session(&server);
    for n in 0..MESSAGES {
        relay(
            &mut smtp,
            ALICE,
            &["bob@remote.test"],
            format!("Subject: crash test {n}\r\n\r\nbody {n}\r\n").as_bytes(),
        );
    }
    smtp.smtp("QUIT");
    drop(pop);
    // Some have gone out; kill in the middle of the rest.
    sink.wait("the first deliveries", |m| m.len() >= 5);
    server.crash_and_restart();
    let got = sink.wait("every message after the restart", |m| {
        let distinct: std::collections::BTreeSet<String> =
            m.iter().map(|r| subject(&r.data)).collect();
        distinct.len() >= MESSAGES
    });
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &got {
        *counts.entry(subject(&r.data)).or_default() += 1;
    }
    for n in 0..MESSAGES {
        assert!(
            counts.contains_key(&format!("crash test {n}")),
            "message {n} lost"
        );
    }
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    // Reported, not failed: delivery is at least once by design.
    println!(
        "crash test: {MESSAGES} messages, {} received, {duplicates} duplicates",
        got.len()
    );
    assert!(
        duplicates <= 2 * 2,
        "at most the transactions in flight at the kill are sent twice, got {duplicates}"
    );
}
