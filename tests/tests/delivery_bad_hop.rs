//! A broken next hop (garbage instead of a greeting, a reply cut off by a close, a
//! peer that never answers) is a temporary failure: the attempt times out or fails,
//! the message is deferred and retried, and once the next hop behaves it arrives
//! exactly once. No message is lost and no delivery worker stays stuck.

mod delivery_support;

use delivery_support::{ALICE, BadHop, PW, Sink, relay, relay_session};
use popgate_tests::{Setup, is_event, log_field};

/// A short reply timeout so a silent peer costs 300 ms, and a fast retry.
fn start(sink: &Sink) -> popgate_tests::Server {
    Setup::default()
        .user(ALICE, PW)
        .relay_settings(&format!(
            "mode = \"deliver\"\nretry = [\"100ms\"]\ntimeout = \"300ms\"\n\
             [relay.transport]\n\"remote.test\" = \"{}\"\n",
            sink.addr
        ))
        .start()
}

/// Script `bad` on the sink, relay one message, and check: one deferral per bad
/// connection, then exactly one copy at the sink and the entry gone.
fn deferred_then_delivered_once(bad: &[BadHop]) {
    let sink = Sink::start();
    for &how in bad {
        sink.script_bad(how);
    }
    let server = start(&sink);
    let (_pop, mut smtp) = relay_session(&server);
    let id = relay(
        &mut smtp,
        ALICE,
        &["bob@remote.test"],
        b"Subject: through a bad hop\r\n\r\nbody\r\n",
    );
    smtp.smtp("QUIT");

    let deferrals = server.wait_logs("a deferral per bad connection", bad.len(), |l| {
        is_event(l, "relay_deferred") && log_field(l, "id") == Some(&id)
    });
    // Each deferral says what went wrong, in the order the connections failed.
    for (how, line) in bad.iter().zip(&deferrals) {
        let want = match how {
            BadHop::Garbage => "next hop sent a bad reply",
            BadHop::ClosesMidReply => "connection lost waiting for the EHLO reply",
            BadHop::Silent => "did not answer greeting in time",
        };
        assert!(
            line.split_once(" reason=")
                .is_some_and(|(_, r)| r.contains(want)),
            "{how:?}: {line}"
        );
    }
    let got = sink.wait("the message after the retries", |m| !m.is_empty());
    server.wait_log("the entry is removed", |l| {
        is_event(l, "relay_done") && log_field(l, "id") == Some(&id)
    });
    assert_eq!(
        sink.bad_served(),
        bad.len(),
        "every bad connection was tried"
    );
    assert_eq!(got.len(), 1, "exactly one copy: {deferrals:#?}");
    assert_eq!(sink.messages().len(), 1, "and no late duplicate");
    assert_eq!(
        server
            .log_lines()
            .iter()
            .filter(|l| is_event(l, "relay_deferred") && log_field(l, "id") == Some(&id))
            .count(),
        bad.len(),
        "one deferral per bad connection, none after the delivery"
    );
    assert!(
        !server.queue_list().contains(&id),
        "delivered mail leaves the queue"
    );
}

#[test]
fn garbage_instead_of_a_greeting_is_retried() {
    deferred_then_delivered_once(&[BadHop::Garbage, BadHop::Garbage]);
}

#[test]
fn a_close_in_the_middle_of_a_reply_is_retried() {
    deferred_then_delivered_once(&[BadHop::ClosesMidReply, BadHop::ClosesMidReply]);
}

#[test]
fn a_next_hop_that_never_answers_times_out_and_is_retried() {
    deferred_then_delivered_once(&[BadHop::Silent, BadHop::Silent]);
}

#[test]
fn every_kind_in_a_row_then_a_good_hop() {
    deferred_then_delivered_once(&[BadHop::Garbage, BadHop::ClosesMidReply, BadHop::Silent]);
}
