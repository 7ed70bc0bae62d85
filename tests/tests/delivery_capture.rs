//! Capture mode: relayed mail is kept in the queue, listed by `/api/queue`, and never
//! reaches the next hop.

mod delivery_support;

use delivery_support::{ALICE, PW, Sink, http_get, relay, relay_session};
use popgate_tests::Setup;

#[test]
fn captured_mail_is_listed_and_never_delivered() {
    let sink = Sink::start();
    let server = Setup::default()
        .user(ALICE, PW)
        .listeners(&["smtp", "pop3", "http"])
        .relay_settings(&format!(
            "mode = \"capture\"\n[relay.transport]\n\"remote.test\" = \"{}\"\n",
            sink.addr
        ))
        .start();
    let (_pop, mut smtp) = relay_session(&server);
    let id = relay(
        &mut smtp,
        ALICE,
        &["bob@remote.test"],
        b"Subject: captured\r\n\r\nbody\r\n",
    );
    server.wait_log("capture mode", |l| l.contains("relay mode capture"));
    let body = http_get(&server, "/api/queue");
    assert!(body.contains("\"mode\":\"capture\""), "{body}");
    assert!(body.contains(&format!("\"id\":\"{id}\"")), "{body}");
    assert!(body.contains("bob@remote.test"), "{body}");
    // `popgate queue retry` marks it due, and still nothing is sent: capture never
    // delivers. The CLI's exit is the synchronisation point.
    let out = server.cli(&["queue", "retry", &id]);
    assert!(out.contains("due now"), "{out}");
    assert!(server.queue_list().contains(&id));
    assert_eq!(sink.transactions(), 0, "nothing reached the sink");
}
