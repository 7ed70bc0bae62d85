//! Outbound delivery through the transport map to a loopback sink: what arrives, a
//! retry after 451, one bounce after 550, none for a null sender.

mod delivery_support;

use delivery_support::{ALICE, Sink, relay, relay_session, setup, without_first_received};
use popgate_tests::{is_event, log_field};

fn transport(sink: &Sink) -> String {
    format!("[relay.transport]\n\"remote.test\" = \"{}\"\n", sink.addr)
}

#[test]
fn a_relayed_message_arrives_byte_identical_but_for_received() {
    let sink = Sink::start();
    let server = setup(&transport(&sink)).start();
    let (_pop, mut smtp) = relay_session(&server);
    // Dot lines, a long line and 8-bit text: what the next hop gets back must match.
    let message = "From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: caf\u{e9}\r\n\r\n\
                   ..a dotted line\r\n..\r\nplain line\r\n"
        .as_bytes();
    let id = relay(
        &mut smtp,
        ALICE,
        &["bob@remote.test", "carol@remote.test"],
        message,
    );
    smtp.smtp("QUIT");

    let got = sink.wait("the relayed message", |m| !m.is_empty());
    assert_eq!(got.len(), 1, "one transaction for both recipients");
    assert_eq!(got[0].from, ALICE);
    assert_eq!(got[0].rcpts, ["bob@remote.test", "carol@remote.test"]);
    // The client sent "..a dotted line" and ".." (stuffed); unstuffed they are these.
    let want = "From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: caf\u{e9}\r\n\r\n\
                .a dotted line\r\n.\r\nplain line\r\n";
    assert_eq!(
        String::from_utf8_lossy(without_first_received(&got[0].data)),
        want
    );
    server.wait_log("the entry is removed", |l| {
        l.contains("event=relay_done") && log_field(l, "id") == Some(&id)
    });
    assert!(
        !server.queue_list().contains(&id),
        "delivered mail leaves the queue"
    );
}

#[test]
fn a_451_is_retried_and_then_delivered() {
    let sink = Sink::start();
    sink.script_data("451 4.3.0 try again later");
    let server = setup(&transport(&sink)).start();
    let (_pop, mut smtp) = relay_session(&server);
    let id = relay(
        &mut smtp,
        ALICE,
        &["bob@remote.test"],
        b"Subject: retry me\r\n\r\nbody\r\n",
    );
    let deferred = server.wait_log("the deferral", |l| {
        l.contains("event=relay_deferred") && log_field(l, "id") == Some(&id)
    });
    assert!(deferred.contains("451 4.3.0"), "{deferred}");
    let got = sink.wait("the retried message", |m| !m.is_empty());
    assert_eq!(got.len(), 1);
    assert_eq!(
        sink.transactions(),
        2,
        "refused once, accepted on the retry"
    );
    server.wait_log("the entry is removed", |l| {
        l.contains("event=relay_done") && log_field(l, "id") == Some(&id)
    });
}

#[test]
fn a_550_gives_exactly_one_bounce_in_the_senders_maildir() {
    let sink = Sink::start();
    sink.script_rcpt("550 5.1.1 <nobody@remote.test>: no such user");
    let server = setup(&transport(&sink)).start();
    let (_pop, mut smtp) = relay_session(&server);
    let id = relay(
        &mut smtp,
        ALICE,
        &["nobody@remote.test"],
        b"Subject: doomed\r\nMessage-ID: <doomed@example.test>\r\n\r\nbody\r\n",
    );
    let bounced = server.wait_log("the bounce", |l| {
        l.contains("event=relay_bounced") && log_field(l, "id") == Some(&id)
    });
    assert_eq!(log_field(&bounced, "dsn"), Some(ALICE), "{bounced}");
    server.wait_log("the entry is removed", |l| {
        l.contains("event=relay_done") && log_field(l, "id") == Some(&id)
    });
    let dsns = server.maildir_files(ALICE, "new");
    assert_eq!(dsns.len(), 1, "exactly one DSN: {dsns:?}");
    let dsn = std::fs::read_to_string(&dsns[0]).expect("read the DSN");
    for want in [
        "Return-Path: <>\r\n",
        "Content-Type: multipart/report; report-type=delivery-status;",
        "Final-Recipient: rfc822; nobody@remote.test\r\nAction: failed\r\nStatus: 5.1.1\r\n",
        "Diagnostic-Code: smtp; 550 5.1.1 <nobody@remote.test>: no such user\r\n",
        "Message-ID: <doomed@example.test>\r\n",
    ] {
        assert!(dsn.contains(want), "DSN lacks {want:?}:\n{dsn}");
    }
    assert!(sink.messages().is_empty());
    assert!(
        !server.queue_list().contains(&id),
        "a local bounce is durable, so the entry is gone"
    );
    assert!(
        server
            .log_lines()
            .iter()
            .filter(|l| is_event(l, "relay_bounced"))
            .count()
            == 1,
        "one bounce event"
    );
}

#[test]
fn a_failing_null_sender_message_gets_no_bounce() {
    let sink = Sink::start();
    sink.script_rcpt("550 5.1.1 no such user");
    let server = setup(&transport(&sink)).start();
    let (_pop, mut smtp) = relay_session(&server);
    let id = relay(
        &mut smtp,
        "",
        &["nobody@remote.test"],
        b"Subject: a bounce itself\r\n\r\nbody\r\n",
    );
    let bounced = server.wait_log("the failure", |l| {
        l.contains("event=relay_bounced") && log_field(l, "id") == Some(&id)
    });
    assert_eq!(log_field(&bounced, "dsn"), Some("none"), "{bounced}");
    server.wait_log("the entry is removed", |l| {
        l.contains("event=relay_done") && log_field(l, "id") == Some(&id)
    });
    assert!(server.maildir_files(ALICE, "new").is_empty());
    assert!(
        server
            .files_under("queue")
            .iter()
            .all(|p| !p.to_string_lossy().ends_with(".json"))
    );
}
