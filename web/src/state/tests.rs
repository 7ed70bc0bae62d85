use super::*;
use popgate_core::dashboard::TimelineKind;
use popgate_core::event::RelayOutcome;
use popgate_core::event::{Event, EventKind, Protocol};
use popgate_core::grant::{GrantView, RelayRefusal};
use popgate_core::net::Cidr;

fn key() -> Cidr {
    "127.0.0.2".parse().expect("test key")
}

fn event(seq: u64, at: u64, session: u64, kind: EventKind) -> StreamMessage {
    StreamMessage::Event(Event {
        seq,
        at: Millis(at),
        session: Some(SessionId(session)),
        kind,
        node: None,
    })
}

fn opened(seq: u64, at: u64, session: u64, protocol: Protocol) -> StreamMessage {
    event(
        seq,
        at,
        session,
        EventKind::SessionOpened {
            protocol,
            peer: "127.0.0.2:40000".into(),
            local: "127.0.0.1:2110".into(),
            tls: false,
        },
    )
}

fn grant(at: u64, expires: u64, left: Option<u32>) -> GrantView {
    GrantView {
        key: key(),
        user: "taro@example.test".into(),
        users: vec!["taro@example.test".into()],
        session: Some(SessionId(1)),
        created: Millis(at),
        expires: Millis(expires),
        messages_left: left,
        reserved: 0,
        sliding: true,
        note: None,
    }
}

fn snapshot(seq: u64, now: u64) -> StreamMessage {
    StreamMessage::Snapshot(DashboardState {
        seq,
        now: Millis(now),
        ..DashboardState::default()
    })
}

fn frames(ui: &mut UiState, local: u64, frames: Vec<StreamMessage>) {
    ui.apply(Action::Frames { frames, local });
}

#[test]
fn a_snapshot_makes_the_page_live_and_anchors_the_clock() {
    let mut ui = UiState::default();
    assert_eq!(ui.connection, Connection::Connecting);
    frames(&mut ui, 500, vec![snapshot(0, 1_000_000)]);
    assert_eq!(ui.connection, Connection::Live);
    // 1.5 s of local time later the server's clock is 1.5 s later too, whatever the
    // browser's wall clock says.
    assert_eq!(ui.server_now(2_000), Millis(1_001_500));
    assert_eq!(ui.resyncs, 0);
}

#[test]
fn the_countdown_follows_the_exact_expiry() {
    let mut ui = UiState::default();
    frames(
        &mut ui,
        0,
        vec![
            snapshot(0, 10_000),
            opened(1, 10_000, 1, Protocol::Pop3),
            event(
                2,
                10_100,
                1,
                EventKind::GrantCreated {
                    grant: grant(10_100, 10_100 + 1_800_000, Some(2)),
                },
            ),
        ],
    );
    let g = ui.dash.grants.get(&key()).expect("the grant is shown");
    // The event is later than the anchored estimate (10_000 + 0): the clock moves to it.
    assert_eq!(ui.server_now(0), Millis(10_100));
    let remaining = ui.server_now(60_000).until(g.expires);
    assert_eq!(remaining.as_millis(), 1_800_000 - 60_000);
}

#[test]
fn events_already_in_the_snapshot_are_skipped_and_gaps_counted() {
    let mut ui = UiState::default();
    frames(
        &mut ui,
        0,
        vec![
            snapshot(5, 1_000),
            // In the snapshot already (seq <= 5): not applied twice.
            opened(5, 900, 7, Protocol::Smtp),
            opened(6, 1_000, 8, Protocol::Smtp),
        ],
    );
    assert!(!ui.dash.sessions.contains_key(&SessionId(7)));
    assert!(ui.dash.sessions.contains_key(&SessionId(8)));
    assert_eq!(ui.gaps, 0);
    frames(&mut ui, 10, vec![opened(9, 1_010, 9, Protocol::Smtp)]);
    assert_eq!(ui.gaps, 1);
    assert_eq!(ui.dash.seq, 9);
}

#[test]
fn a_fresh_snapshot_after_a_lag_replaces_the_state() {
    let mut ui = UiState::default();
    frames(
        &mut ui,
        0,
        vec![snapshot(0, 1_000), opened(1, 1_000, 1, Protocol::Pop3)],
    );
    ui.apply(Action::Select(Some(SessionId(1))));
    frames(&mut ui, 5_000, vec![snapshot(40, 90_000)]);
    assert_eq!(ui.resyncs, 1);
    assert_eq!(ui.dash.seq, 40);
    assert!(ui.dash.sessions.is_empty());
    assert_eq!(ui.server_now(6_000), Millis(91_000));
    // UI-only state survives a resync.
    assert_eq!(ui.selected, Some(SessionId(1)));
}

#[test]
fn reconnecting_keeps_the_last_state_visible() {
    let mut ui = UiState::default();
    frames(
        &mut ui,
        0,
        vec![snapshot(0, 1_000), opened(1, 1_000, 1, Protocol::Pop3)],
    );
    ui.apply(Action::Disconnected { retry_at: 500 });
    assert_eq!(ui.connection, Connection::Reconnecting { retry_at: 500 });
    ui.apply(Action::Connecting);
    assert_eq!(ui.connection, Connection::Connecting);
    assert_eq!(ui.dash.sessions.len(), 1);
    frames(&mut ui, 600, vec![snapshot(1, 2_000)]);
    assert_eq!(ui.connection, Connection::Live);
}

#[test]
fn reconnect_delays_back_off_to_a_cap() {
    assert_eq!(reconnect_delay_ms(0), 500);
    assert_eq!(reconnect_delay_ms(1), 1_000);
    assert_eq!(reconnect_delay_ms(4), 8_000);
    assert_eq!(reconnect_delay_ms(5), 10_000);
    assert_eq!(reconnect_delay_ms(u32::MAX), 10_000);
}

#[test]
fn the_clock_never_runs_backwards_on_an_early_event() {
    let mut clock = ServerClock::default();
    clock.reset(Millis(10_000), 0);
    clock.observe(Millis(9_000), 5_000);
    assert_eq!(clock.at(5_000), Millis(15_000));
    clock.observe(Millis(20_000), 5_000);
    assert_eq!(clock.at(6_000), Millis(21_000));
}

#[test]
fn denied_relays_reach_the_timeline_through_core() {
    // The page adds nothing of its own to the timeline: core's reducer decides.
    let mut ui = UiState::default();
    frames(
        &mut ui,
        0,
        vec![
            snapshot(0, 1_000),
            opened(1, 1_000, 2, Protocol::Smtp),
            event(
                2,
                1_100,
                2,
                EventKind::RelayDecision {
                    rcpt: "x@remote.test".into(),
                    decision: RelayOutcome::Denied {
                        reason: RelayRefusal::NoGrant,
                    },
                },
            ),
        ],
    );
    let last = ui.dash.timeline.back().expect("a timeline entry");
    assert_eq!(
        last.kind,
        TimelineKind::RelayDenied {
            rcpt: "x@remote.test".into(),
            reason: RelayRefusal::NoGrant
        }
    );
}

fn accepted(seq: u64, at: u64, session: u64, id: &str) -> StreamMessage {
    event(
        seq,
        at,
        session,
        EventKind::MessageAccepted {
            id: id.into(),
            from: "taro@example.test".into(),
            rcpts: vec!["x@remote.test".into()],
            size: 100,
            relayed: true,
        },
    )
}

#[test]
fn the_chart_counts_per_bucket_from_the_counters() {
    let mut ui = UiState::default();
    frames(
        &mut ui,
        0,
        vec![
            snapshot(0, 100_000),
            opened(1, 100_000, 1, Protocol::Smtp),
            accepted(2, 101_000, 1, "a"),
            accepted(3, 112_000, 1, "b"),
            accepted(4, 113_000, 1, "c"),
        ],
    );
    let series = ui.chart.series(Millis(115_000));
    assert_eq!(series.len(), ui.chart.buckets);
    let tail: Vec<(u64, u64)> = series[series.len() - 2..]
        .iter()
        .map(|s| (s.messages, s.sessions))
        .collect();
    assert_eq!(tail, vec![(1, 1), (2, 0)]);
    // A resync that brings three more messages counts them in its own bucket; a
    // restarted server (lower totals) counts nothing.
    let mut state = (*ui.dash).clone();
    state.seq = 50;
    state.now = Millis(125_000);
    state.counters.messages_accepted += 3;
    frames(&mut ui, 25_000, vec![StreamMessage::Snapshot(state)]);
    assert_eq!(
        ui.chart.series(Millis(125_000)).last().map(|s| s.messages),
        Some(3)
    );
    frames(&mut ui, 26_000, vec![snapshot(1, 126_000)]);
    assert_eq!(
        ui.chart.series(Millis(126_000)).last().map(|s| s.messages),
        Some(3)
    );
    // Old buckets fall off.
    let later = Millis(125_000 + ui.chart.bucket_ms * ui.chart.buckets as u64);
    assert!(ui.chart.series(later).iter().all(|s| s.messages == 0));
}

#[test]
fn the_first_snapshot_fills_the_chart_with_the_history_it_holds() {
    // A page opened after some mail went through shows it, not an empty chart.
    let mut source = UiState::default();
    frames(
        &mut source,
        0,
        vec![
            snapshot(0, 100_000),
            opened(1, 100_000, 1, Protocol::Smtp),
            accepted(2, 101_000, 1, "a"),
            accepted(3, 112_000, 1, "b"),
        ],
    );
    let mut state = (*source.dash).clone();
    state.now = Millis(115_000);
    let mut ui = UiState::default();
    frames(&mut ui, 0, vec![StreamMessage::Snapshot(state)]);
    let series = ui.chart.series(Millis(115_000));
    let tail: Vec<(u64, u64)> = series[series.len() - 2..]
        .iter()
        .map(|s| (s.messages, s.sessions))
        .collect();
    assert_eq!(tail, vec![(1, 1), (1, 0)]);
    // Later events count on top, once.
    frames(&mut ui, 1_000, vec![accepted(4, 116_000, 1, "c")]);
    assert_eq!(
        ui.chart.series(Millis(116_000)).last().map(|s| s.messages),
        Some(2)
    );
}

#[test]
fn message_view_ignores_late_answers() {
    let mut ui = UiState::default();
    ui.apply(Action::OpenMessage("a".into()));
    ui.apply(Action::OpenMessage("b".into()));
    ui.apply(Action::MessageLoaded {
        id: "a".into(),
        result: Ok("Subject: a".into()),
    });
    assert_eq!(
        ui.message,
        Some(MessageView {
            id: "b".into(),
            body: MessageBody::Loading
        })
    );
    ui.apply(Action::MessageLoaded {
        id: "b".into(),
        result: Err("404".into()),
    });
    assert_eq!(
        ui.message.as_ref().map(|m| &m.body),
        Some(&MessageBody::Failed("404".into()))
    );
    ui.apply(Action::CloseMessage);
    assert_eq!(ui.message, None);
}

#[test]
fn frames_parse_from_the_wire_format() {
    // The WebSocket sends JSON text frames, externally tagged.
    let text =
        r#"{"event":{"seq":1,"at":5,"session":3,"kind":{"client_line":{"line":"USER taro"}}}}"#;
    let frame = crate::wire::decode_frame(text).expect("an event frame");
    assert!(matches!(frame, StreamMessage::Event(Event { seq: 1, .. })));
    let snap = serde_json::to_string(&StreamMessage::Snapshot(DashboardState::default()))
        .expect("serialise");
    let back = crate::wire::decode_frame(&snap).expect("a snapshot frame");
    assert!(matches!(back, StreamMessage::Snapshot(_)));
}
