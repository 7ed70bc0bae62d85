//! Who still depends on POP before SMTP: `GET /api/migration`, users in their groups,
//! work left first (the groups and their order are core's, `popgate_core::migration`).
//!
//! The report is fetched when the panel appears and again whenever the stream shows
//! a login or an accepted message (what can change a group), at most every few
//! seconds otherwise. Test hooks: `data-testid="migration-group"` with `data-group`
//! (the group's stable id), and a `data-user` per user.
//!
//! The report is read by hand from a `serde_json::Value`, as `crate::wire` reads the
//! stream and for the same reason (serde's derived decoders are large in WebAssembly),
//! and only what the panel shows.

use super::{use_strings, use_ui};
use crate::i18n::{Strings, fill};
use popgate_core::migration::Group;
use serde_json::Value;
use yew::prelude::*;

/// One user as the panel shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub user: String,
    pub group: Group,
    /// `on`, `warn` or `off`.
    pub mode: String,
    /// Relays on a grant, refused ones included.
    pub grant: u64,
    /// Relays with SMTP AUTH, every listener.
    pub auth: u64,
}

/// The report's users in its order (work left first); `None` if it cannot be read.
pub fn decode_report(text: &str) -> Option<Vec<Row>> {
    let value: Value = serde_json::from_str(text).ok()?;
    let count = |v: &Value, name: &str| v.get(name).and_then(Value::as_u64).unwrap_or(0);
    value
        .get("users")?
        .as_array()?
        .iter()
        .map(|u| {
            let stats = u.get("stats")?;
            let group = u.get("group")?.as_str()?;
            Some(Row {
                user: stats.get("user")?.as_str()?.to_owned(),
                group: Group::ALL.into_iter().find(|g| g.id() == group)?,
                mode: u.get("mode")?.as_str()?.to_owned(),
                grant: count(stats, "grant_relays") + count(stats, "refused_relays"),
                auth: stats
                    .get("auth_relays")?
                    .as_array()?
                    .iter()
                    .map(|a| count(a, "count"))
                    .sum(),
            })
        })
        .collect()
}

/// A group's name, in words.
fn group_label(s: &Strings, group: Group) -> &'static str {
    match group {
        Group::GrantOnly => s.migration_grant_only,
        Group::Both => s.migration_both,
        Group::PlaintextLogin => s.migration_plaintext,
        Group::MovedToAuth => s.migration_moved,
        Group::Quiet => s.migration_quiet,
    }
}

/// One user's counts, in words.
fn user_text(s: &Strings, row: &Row) -> String {
    fill(
        s.migration_user,
        &[
            ("user", &row.user),
            ("grant", &row.grant.to_string()),
            ("auth", &row.auth.to_string()),
            ("mode", &row.mode),
        ],
    )
}

#[function_component(MigrationPanel)]
pub fn migration_panel() -> Html {
    let s = use_strings();
    let ui = use_ui();
    let report = use_state(|| None::<Vec<Row>>);
    let c = &ui.dash.counters;
    // What can move a user between groups: logins and accepted messages.
    let changes = (c.auth_ok, c.messages_accepted, c.relay_denied);
    use_report_fetch(report.clone(), changes);
    let rows = match report.as_ref() {
        Some(rows) if !rows.is_empty() => rows,
        _ => {
            return html! { <p class="hint" data-testid="migration-empty">{ s.migration_none }</p> };
        }
    };
    let groups = Group::ALL
        .into_iter()
        .map(|g| (g, rows.iter().filter(|r| r.group == g).collect::<Vec<_>>()))
        .filter(|(_, users)| !users.is_empty());
    html! {
        <div id="migration" data-testid="migration">
            { for groups.map(|(g, users)| html! {
                <div class="migration-group" data-testid="migration-group" data-group={g.id()}>
                    <h3>{ format!("{} ({})", group_label(s, g), users.len()) }</h3>
                    <ul>
                        { for users.into_iter().map(|u| html! {
                            <li data-user={u.user.clone()}>{ user_text(s, u) }</li>
                        }) }
                    </ul>
                </div>
            }) }
        </div>
    }
}

/// Fetch the report now and whenever `changes` changes (browser only).
#[cfg(target_arch = "wasm32")]
#[hook]
fn use_report_fetch(report: UseStateHandle<Option<Vec<Row>>>, changes: (u64, u64, u64)) {
    use wasm_bindgen_futures::spawn_local;
    // Also on a timer: the ledger applies an event just after the browser sees it.
    let tick = use_state(|| 0u32);
    {
        let tick = tick.clone();
        use_effect_with((), move |_| {
            let interval = gloo_timers::callback::Interval::new(REFRESH_MS, move || {
                tick.set(tick.wrapping_add(1))
            });
            move || drop(interval)
        });
    }
    use_effect_with((changes, *tick), move |_| {
        spawn_local(async move {
            let request = crate::live::authorised(gloo_net::http::Request::get("/api/migration"));
            if let Ok(r) = crate::live::checked(request.send().await).await
                && let Ok(text) = r.text().await
                && let Some(rows) = decode_report(&text)
            {
                report.set(Some(rows));
            }
        });
    });
}

/// How often the report is fetched even when the stream shows nothing new.
#[cfg(target_arch = "wasm32")]
const REFRESH_MS: u32 = 5_000;

/// On the host there is no server to ask.
#[cfg(not(target_arch = "wasm32"))]
#[hook]
fn use_report_fetch(_report: UseStateHandle<Option<Vec<Row>>>, _changes: (u64, u64, u64)) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;
    use popgate_core::migration::{AuthRelays, GrantMode, GrantModes, MigrationReport, UserStats};
    use popgate_core::{Millis, Protocol};

    #[test]
    fn the_report_decodes_as_core_writes_it() {
        let stats = |user: &str, grant: u64, auth: u64| UserStats {
            user: user.into(),
            grant_relays: grant,
            refused_relays: 1,
            auth_relays: (1..=auth.min(1))
                .map(|_| AuthRelays {
                    listener: Protocol::Submission,
                    tls: true,
                    count: auth,
                    first: Millis(5),
                    last: Millis(6),
                })
                .collect(),
            ..UserStats::default()
        };
        let modes = GrantModes::new(GrantMode::Warn, []);
        let report = MigrationReport::new(
            Millis(10),
            std::time::Duration::from_secs(60),
            &modes,
            [stats("b@example.test", 0, 3), stats("a@example.test", 2, 0)],
        );
        let json = serde_json::to_string(&report).expect("serialise");
        let rows = decode_report(&json).expect("decode");
        let expected: Vec<Row> = report
            .users
            .iter()
            .map(|u| Row {
                user: u.stats.user.clone(),
                group: u.group,
                mode: u.mode.name().into(),
                grant: u.stats.grant_attempts(),
                auth: u.stats.auth_relay_count(),
            })
            .collect();
        assert_eq!(rows, expected);
        assert_eq!(rows[0].user, "a@example.test");
        assert_eq!((rows[0].grant, rows[1].auth), (3, 3));
        assert_eq!(decode_report("{\"users\":[{}]}"), None);
    }

    #[test]
    fn every_group_has_words_in_every_language() {
        for lang in Lang::ALL {
            let s = lang.strings();
            for g in Group::ALL {
                assert!(!group_label(s, g).is_empty(), "{lang:?} {g:?}");
            }
            let row = Row {
                user: "taro@example.test".into(),
                group: Group::GrantOnly,
                mode: "warn".into(),
                grant: 3,
                auth: 0,
            };
            let text = user_text(s, &row);
            assert!(
                text.contains("taro@example.test") && text.contains('3'),
                "{text}"
            );
            assert!(text.contains("warn") && !text.contains('{'), "{text}");
        }
    }
}
