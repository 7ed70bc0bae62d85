//! The explainer's state, natively: the player wrapper over the shipped scenarios,
//! deep links, language switching, the diagram's rows and the lines' annotations.

use super::diagram::{RowKind, rows};
use super::model::{Explainer, Speed, find_scenario};
use super::view::{Act, act, explained_lines};
use crate::i18n::{EN, JA, Lang};
use popgate_core::sim::{SimOutput, scenarios};

fn wire_texts(e: &Explainer) -> Vec<String> {
    e.step_outputs()
        .iter()
        .flatten()
        .filter_map(|o| match o {
            SimOutput::Wire { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_shipped_scenarios_are_listed_and_found_by_number_or_id() {
    let list = scenarios();
    assert_eq!(list.len(), 8, "eight scenarios ship with the explainer");
    assert_eq!(find_scenario(&list, "1"), Some(0));
    assert_eq!(find_scenario(&list, "8"), Some(7));
    assert_eq!(find_scenario(&list, "9"), None);
    assert_eq!(find_scenario(&list, "0"), None);
    assert_eq!(find_scenario(&list, "pop-then-relay"), Some(1));
    assert_eq!(find_scenario(&list, "nope"), None);
}

#[test]
fn a_deep_link_opens_the_scenario_at_the_step() {
    let e = Explainer::new(Lang::En, Some("2"), Some(3));
    assert_eq!(e.index(), 1);
    assert_eq!(e.scenario().id, "pop-then-relay");
    assert_eq!(e.position(), 3);
    assert_eq!(e.step_outputs().len(), 3);
    // Past the end: every step, no more.
    let e = Explainer::new(Lang::En, Some("pop-then-relay"), Some(10_000));
    assert_eq!(e.position(), e.len());
    // An unknown scenario opens the first, at its start.
    let e = Explainer::new(Lang::En, Some("nope"), None);
    assert_eq!((e.index(), e.position()), (0, 0));
}

#[test]
fn stepping_forward_and_back_replays_the_same_lines() {
    let mut e = Explainer::new(Lang::En, Some("2"), None);
    for _ in 0..e.len() {
        act(&mut e, Act::Forward);
    }
    assert!(e.at_end());
    let all = wire_texts(&e);
    assert!(!all.is_empty());
    act(&mut e, Act::Back);
    assert_eq!(e.position(), e.len() - 1);
    act(&mut e, Act::Forward);
    assert_eq!(wire_texts(&e), all, "a replay gives the same lines");
    act(&mut e, Act::Restart);
    assert_eq!((e.position(), e.step_outputs().len()), (0, 0));
    assert!(e.ui().dash.sessions.is_empty());
}

#[test]
fn the_grant_appears_with_the_login_and_counts_down_on_the_virtual_clock() {
    let mut e = Explainer::new(Lang::En, Some("2"), None);
    // Play until the grant table holds something.
    while e.ui().dash.grants.is_empty() && !e.at_end() {
        act(&mut e, Act::Forward);
    }
    let ui = e.ui();
    let grant = ui
        .dash
        .grants
        .values()
        .next()
        .expect("scenario 2 makes a grant");
    assert_eq!(grant.key.to_string(), "198.51.100.23/32");
    // The countdown: the virtual clock, 30 minutes before the expiry.
    assert_eq!(ui.dash.now, e.player().sim().now());
    assert_eq!(grant.expires.0 - ui.dash.now.0, 30 * 60 * 1000);
    // The step that made it said +OK to PASS, explained as the moment the grant exists.
    let lines = explained_lines(&EN, &e);
    assert!(
        lines
            .iter()
            .any(|(_, a)| a.as_ref().is_some_and(|a| a.key == "pop3 +OK PASS")),
        "{lines:?}"
    );
    // And the diagram has the call to the grant table.
    let r = rows(&EN, &e);
    assert!(r.iter().any(|row| matches!(
        row.kind,
        RowKind::Grant {
            call: "login_created",
            ok: true
        }
    )));
}

#[test]
fn scenario_1_refuses_the_relay_and_scenario_3_expires_the_grant() {
    let e = Explainer::new(Lang::En, Some("1"), Some(usize::MAX));
    assert!(wire_texts(&e).iter().any(|l| l.starts_with("554 5.7.1")));
    assert!(
        rows(&EN, &e)
            .iter()
            .any(|r| matches!(r.kind, RowKind::Grant { ok: false, .. }))
    );
    let e = Explainer::new(Lang::En, Some("grant-expires"), Some(usize::MAX));
    let r = rows(&EN, &e);
    assert!(r.iter().any(|row| row.kind == RowKind::Clock));
    assert!(r.iter().any(|row| row.kind == RowKind::Expired));
    assert!(
        e.ui().dash.grants.is_empty(),
        "the grant is gone after expiry"
    );
    assert!(wire_texts(&e).iter().any(|l| l.starts_with("554 5.7.1")));
}

#[test]
fn every_scenario_plays_to_the_end_with_every_line_explained() {
    for (i, scenario) in scenarios().into_iter().enumerate() {
        let e = Explainer::new(Lang::Ja, Some(&(i + 1).to_string()), Some(usize::MAX));
        assert_eq!(e.position(), scenario.steps.len());
        // Every line of every step, in both languages.
        for lang in [Lang::En, Lang::Ja] {
            let mut e = Explainer::new(lang, Some(&scenario.id), None);
            while !e.at_end() {
                act(&mut e, Act::Forward);
                for (line, a) in explained_lines(lang.strings(), &e) {
                    assert!(a.is_some(), "{}: no annotation for {line:?}", scenario.id);
                }
            }
        }
    }
}

#[test]
fn the_language_switches_live_and_the_state_stays() {
    let mut e = Explainer::new(Lang::En, Some("2"), Some(3));
    let note_en = e.note().to_owned();
    act(&mut e, Act::Lang(Lang::Ja));
    assert_eq!(e.lang, Lang::Ja);
    assert_eq!(e.position(), 3);
    assert_ne!(e.note(), note_en);
    assert_eq!(
        e.note(),
        e.current_step()
            .and_then(|s| s.note())
            .map(|t| t.ja.as_str())
            .unwrap_or("")
    );
    let ja_rows = rows(&JA, &e);
    let en_rows = rows(&EN, &e);
    assert_eq!(ja_rows.len(), en_rows.len());
    // Browser tags pick the language, and the toggle goes to the other one.
    assert_eq!(Lang::from_tag("ja-JP"), Some(Lang::Ja));
    assert_eq!(Lang::from_tag("en-GB"), Some(Lang::En));
    assert_eq!(Lang::from_tag("de"), None);
    assert_eq!(Lang::Ja.next(), Lang::En);
    assert_eq!(Lang::En.next(), Lang::Ja);
}

#[test]
fn play_runs_to_the_end_and_stops() {
    let mut e = Explainer::new(Lang::En, Some("1"), None);
    act(&mut e, Act::Speed(Speed::Four));
    assert!(Speed::Four.interval_ms() < Speed::Half.interval_ms());
    act(&mut e, Act::TogglePlay);
    assert!(e.playing);
    // What the page's timer does at each tick.
    while e.playing {
        e.step_forward();
    }
    assert!(e.at_end());
    // Play at the end starts over.
    act(&mut e, Act::TogglePlay);
    assert!(e.playing);
    assert_eq!(e.position(), 0);
    act(&mut e, Act::TogglePlay);
    assert!(!e.playing);
}

#[test]
fn free_play_sends_typed_lines_to_the_real_sessions() {
    let mut e = Explainer::new(Lang::En, Some("free-play"), Some(usize::MAX));
    assert!(e.is_free_play());
    let conns = e.connections();
    assert!(conns.iter().any(|c| c.name == "pop" && c.id.is_some()));
    act(
        &mut e,
        Act::Type {
            conn: "pop".into(),
            line: "USER taro@example.test".into(),
        },
    );
    act(
        &mut e,
        Act::Type {
            conn: "pop".into(),
            line: "PASS kitsune-7".into(),
        },
    );
    assert_eq!(e.ui().dash.grants.len(), 1, "a typed login grants");
    let lines = explained_lines(&EN, &e);
    assert!(lines.iter().any(|(o, _)| matches!(o, SimOutput::Wire { text, from_client: false, .. } if text.starts_with("+OK"))));
    // The clock jumps past the grant's life.
    act(&mut e, Act::Advance { minutes: 30 });
    assert!(e.ui().dash.grants.is_empty());
    // A name that does not exist is refused, not played.
    let before = e.position();
    act(
        &mut e,
        Act::Type {
            conn: "nope".into(),
            line: "NOOP".into(),
        },
    );
    assert_eq!(e.position(), before);
    // QUIT closes; reconnecting opens a new connection to the same port.
    act(
        &mut e,
        Act::Type {
            conn: "pop".into(),
            line: "QUIT".into(),
        },
    );
    let pop = e.player().conn("pop").expect("opened");
    assert!(!e.player().sim().is_open(pop));
    act(&mut e, Act::Reconnect("pop".into()));
    let again = e.connections();
    let new = again
        .iter()
        .find(|c| c.name == "pop#2")
        .expect("a new connection");
    assert!(new.id.is_some_and(|id| e.player().sim().is_open(id)));
}

#[test]
fn choosing_a_scenario_starts_it_from_the_beginning() {
    let mut e = Explainer::new(Lang::En, Some("2"), Some(4));
    act(&mut e, Act::Choose(6));
    assert_eq!((e.index(), e.position()), (6, 0));
    assert_eq!(e.scenario().id, "submission-auth");
    // Out of range: nothing changes.
    act(&mut e, Act::Choose(99));
    assert_eq!(e.index(), 6);
}
