//! Migration insight and the staged switch-off, with real clients: Alice's mail client
//! logs in over POP3 (python3's poplib) and relays on the grant (smtplib) from
//! 127.0.0.2; Bob's relays with swaks, SMTP AUTH over STARTTLS, from 127.0.0.3.
//!
//! * `popgate report migration --json` puts them in the right groups with the right
//!   counts, and the counts survive a restart (the second relay adds to the first).
//! * `grant.mode = "warn"`: the relay works, its `Received:` header and an event mark
//!   it, and the notice mail (Japanese template) arrives once per period, not per
//!   message, not again after a restart.
//! * `grant.mode = "off"`: the relay on a grant gets 554 5.7.1 with the configured
//!   text, the dashboard's timeline says why, and Bob's AUTH relay on the same port is
//!   unaffected.

mod delivery_support;
mod migration_support;

use delivery_support::http_get;
use migration_support::{
    ALICE, ALICE_HOST, BOB, BOB_HOST, REMOTE, alice_pop_then_relay, bob_swaks_auth, group,
    report_json, row, setup,
};
use popgate_tests::{Server, TestCa, is_event, log_field, reply};

/// The queue ids of relayed messages for `rcpt` (capture mode keeps them queued).
fn queued_for(server: &Server, rcpt: &str) -> Vec<String> {
    server
        .queue_list()
        .lines()
        .filter(|l| l.contains(rcpt))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// A graceful stop: every session ends and the migration ledger is saved.
fn stop(server: &mut Server) {
    server.signal("TERM");
    let status = server.wait_exit();
    assert!(
        status.success(),
        "popgate exited with {status} after SIGTERM"
    );
}

#[test]
fn grant_and_auth_users_are_grouped_with_their_counts_across_a_restart() {
    let ca = TestCa::new("migration test CA");
    let mut server = setup(&ca, &["smtp", "submission", "pop3", "http"]).start();

    let alice = alice_pop_then_relay(&server, "before the restart");
    assert!(alice.get("DATA").starts_with("250 "), "{}", alice.0);
    bob_swaks_auth(server.addr("submission"), &ca);

    // SIGTERM and start again: the ledger is saved at shutdown and loaded at start.
    server.signal("TERM");
    server.restart();
    let alice = alice_pop_then_relay(&server, "after the restart");
    assert!(alice.get("DATA").starts_with("250 "), "{}", alice.0);
    stop(&mut server);

    // The report reads the data folder: no server needed.
    let report = report_json(&server);
    assert_eq!(group(&report, "grant_only"), [ALICE], "{report:#}");
    assert_eq!(group(&report, "moved_to_auth"), [BOB], "{report:#}");
    assert!(group(&report, "both").is_empty(), "{report:#}");

    let a = &row(&report, ALICE)["stats"];
    assert_eq!(
        a["grant_relays"], 2,
        "counted before and after the restart: {a:#}"
    );
    assert_eq!(a["pop3_logins"], 2, "{a:#}");
    assert_eq!(
        a["plaintext_logins"], 2,
        "poplib logged in without TLS: {a:#}"
    );
    assert_eq!(a["last_login"]["mechanism"], "USER", "{a:#}");
    assert_eq!(a["last_login"]["tls"], false, "{a:#}");
    assert!(a["grants"].as_u64() >= Some(2), "{a:#}");
    assert_eq!(a["auth_relays"].as_array().map(Vec::len), Some(0), "{a:#}");
    assert_eq!(a["addresses"][0]["address"], ALICE_HOST, "{a:#}");
    assert!(a["last_grant_relay"].as_u64() > Some(0), "{a:#}");

    let b = &row(&report, BOB)["stats"];
    assert_eq!(b["grant_relays"], 0, "{b:#}");
    assert_eq!(
        b["auth_relays"],
        serde_json::json!([{
            "listener": "submission",
            "tls": true,
            "count": 1,
            "first": b["auth_relays"][0]["first"],
            "last": b["auth_relays"][0]["last"],
        }]),
        "{b:#}"
    );
    assert_eq!(b["addresses"][0]["address"], BOB_HOST, "{b:#}");
    assert_eq!(b["pop3_logins"], 0, "{b:#}");

    // The table: work left first.
    let table = server.cli(&["report", "migration"]);
    let alice_at = table.find(ALICE).expect("alice in the table");
    let bob_at = table.find(BOB).expect("bob in the table");
    assert!(alice_at < bob_at, "grant-only users come first:\n{table}");
    assert!(
        table.contains("grant_only 1") && table.contains("moved_to_auth 1"),
        "{table}"
    );
}

#[test]
fn warn_relays_marks_and_sends_one_notice_per_period() {
    let ca = TestCa::new("migration test CA");
    let mut server = setup(&ca, &["smtp", "pop3", "http"])
        .grant_setting("mode = \"warn\"")
        .toml("[migration.notice]\nenabled = true\nperiod = \"30d\"\nlanguage = \"ja\"")
        .start();

    for subject in ["first", "second"] {
        let out = alice_pop_then_relay(&server, subject);
        assert!(
            out.get("DATA").starts_with("250 "),
            "warn still relays: {}",
            out.0
        );
    }
    // One line per warned relay, written after the notice decision for it.
    let warned = server.wait_logs("for each warned relay", 2, |l| {
        is_event(l, "grant_relay_warned") && log_field(l, "user") == Some(ALICE)
    });
    assert_eq!(warned.len(), 2);
    let sent: Vec<String> = server
        .log_lines()
        .into_iter()
        .filter(|l| is_event(l, "notice_sent"))
        .collect();
    assert_eq!(sent.len(), 1, "one notice for two relays: {sent:?}");

    // Both relayed messages carry the marker in their Received header.
    let ids = queued_for(&server, REMOTE);
    assert_eq!(ids.len(), 2, "{}", server.queue_list());
    for id in &ids {
        let shown = server.cli(&["queue", "show", id]);
        let header = shown.split("\nSubject:").next().unwrap_or_default();
        assert!(
            header.contains("(grant.mode=warn: POP before SMTP is being switched off)"),
            "no warn marker in the Received header of {id}:\n{shown}"
        );
    }

    // The notice: in Alice's own mailbox, UTF-8 text with an RFC 2047 subject.
    let notices = server.maildir_files(ALICE, "new");
    assert_eq!(notices.len(), 1, "{notices:?}");
    let notice = std::fs::read_to_string(&notices[0]).expect("the notice is UTF-8 text");
    for header in [
        "Return-Path: <>\r\n",
        "From: <postmaster@example.test>\r\n",
        "To: <alice@example.test>\r\n",
        "Subject: =?UTF-8?B?",
        "MIME-Version: 1.0\r\n",
        "Content-Type: text/plain; charset=UTF-8\r\n",
        "Auto-Submitted: auto-generated\r\n",
    ] {
        assert!(
            notice.contains(header),
            "notice lacks {header:?}:\n{notice}"
        );
    }
    assert!(
        notice.contains("POP before SMTP") && notice.contains("STARTTLS"),
        "{notice}"
    );
    assert!(
        notice.contains("送信") && notice.contains("587"),
        "{notice}"
    );

    // The stages' counters.
    let metrics = http_get(&server, "/metrics");
    assert!(
        metrics.contains("\npopgate_grant_relays_warned_total 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\npopgate_migration_notices_total 1\n"),
        "{metrics}"
    );

    // The period is remembered across a restart: a third relay sends nothing.
    server.signal("TERM");
    server.restart();
    let out = alice_pop_then_relay(&server, "third");
    assert!(out.get("DATA").starts_with("250 "), "{}", out.0);
    server.wait_log("for the warned relay after the restart", |l| {
        is_event(l, "grant_relay_warned")
    });
    assert_eq!(
        server.maildir_files(ALICE, "new").len(),
        1,
        "no second notice"
    );
    assert!(
        !server
            .log_lines()
            .iter()
            .any(|l| is_event(l, "notice_sent"))
    );
}

#[test]
fn off_refuses_grant_relays_with_the_configured_text_and_auth_is_unaffected() {
    const OFF_TEXT: &str = "POP before SMTP is off here: use port 587 with your password";
    let ca = TestCa::new("migration test CA");
    let mut server = setup(&ca, &["smtp", "pop3", "http"])
        .grant_setting("modes = { \"example.test\" = \"off\" }")
        .toml(&format!("[migration]\noff_text = \"{OFF_TEXT}\""))
        .start();

    let out = alice_pop_then_relay(&server, "refused");
    assert_eq!(
        out.get("RCPT"),
        format!("554 5.7.1 {OFF_TEXT}"),
        "{}",
        out.0
    );
    assert!(out.all("DATA").is_empty(), "{}", out.0);
    assert!(
        out.get("RCPT").starts_with(&reply::RELAY_DENIED[..9]),
        "the same code and status as a relay refusal"
    );

    // Bob's AUTH over STARTTLS on the same port 25 listener relays.
    bob_swaks_auth(server.smtp(), &ca);
    assert_eq!(queued_for(&server, REMOTE).len(), 1, "only Bob's message");

    // The timeline says why Alice's relay was refused.
    server.wait_log("the refused relay", |l| {
        is_event(l, "relay") && l.contains("decision=denied reason=GrantSwitchedOff")
    });
    let snapshot = http_get(&server, "/api/snapshot");
    assert!(
        snapshot.contains(
            "\"relay_denied\":{\"rcpt\":\"friend@remote.test\",\"reason\":\"grant_switched_off\"}"
        ),
        "{snapshot}"
    );
    server.wait_log("the ledger's refusal line", |l| {
        is_event(l, "grant_relay_refused")
    });
    let metrics = http_get(&server, "/metrics");
    assert!(
        metrics.contains("\npopgate_grant_relays_switched_off_total 1\n"),
        "{metrics}"
    );

    stop(&mut server);
    let report = report_json(&server);
    let a = row(&report, ALICE);
    assert_eq!(
        a["group"], "grant_only",
        "a refused grant relay is still work left"
    );
    assert_eq!(a["mode"], "off");
    assert_eq!(a["stats"]["refused_relays"], 1);
    assert_eq!(a["stats"]["grant_relays"], 0);
    assert_eq!(row(&report, BOB)["group"], "moved_to_auth");
    assert_eq!(
        row(&report, BOB)["stats"]["auth_relays"][0]["listener"],
        "smtp"
    );
}
