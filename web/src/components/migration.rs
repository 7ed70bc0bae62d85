//! Who still depends on POP before SMTP: `GET /api/migration`, users in their groups,
//! work left first (the groups and their order are core's, `popgate_core::migration`).
//!
//! The report is fetched when the panel appears and again whenever the stream shows
//! a login or an accepted message (what can change a group), at most every few
//! seconds otherwise. Test hooks: `data-testid="migration-group"` with `data-group`
//! (the group's stable id), and a `data-user` per user.

use super::{use_strings, use_ui};
use crate::i18n::{Strings, fill};
use popgate_core::migration::{Group, MigrationReport, UserRow};
use yew::prelude::*;

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
fn user_text(s: &Strings, row: &UserRow) -> String {
    let st = &row.stats;
    fill(
        s.migration_user,
        &[
            ("user", &st.user),
            ("grant", &st.grant_attempts().to_string()),
            ("auth", &st.auth_relay_count().to_string()),
            ("mode", row.mode.name()),
        ],
    )
}

#[function_component(MigrationPanel)]
pub fn migration_panel() -> Html {
    let s = use_strings();
    let ui = use_ui();
    let report = use_state(|| None::<MigrationReport>);
    let c = &ui.dash.counters;
    // What can move a user between groups: logins and accepted messages.
    let changes = (c.auth_ok, c.messages_accepted, c.relay_denied);
    use_report_fetch(report.clone(), changes);
    let Some(r) = report.as_ref() else {
        return html! { <p class="hint" data-testid="migration-empty">{ s.migration_none }</p> };
    };
    html! {
        <div id="migration" data-testid="migration">
            { for r.groups.iter().filter(|g| !g.users.is_empty()).map(|g| html! {
                <div class="migration-group" data-testid="migration-group" data-group={g.group.id()}>
                    <h3>{ format!("{} ({})", group_label(s, g.group), g.users.len()) }</h3>
                    <ul>
                        { for r.users.iter().filter(|u| u.group == g.group).map(|u| html! {
                            <li data-user={u.stats.user.clone()}>{ user_text(s, u) }</li>
                        }) }
                    </ul>
                </div>
            }) }
            if r.users.is_empty() {
                <p class="hint">{ s.migration_none }</p>
            }
        </div>
    }
}

/// Fetch the report now and whenever `changes` changes (browser only).
#[cfg(target_arch = "wasm32")]
#[hook]
fn use_report_fetch(report: UseStateHandle<Option<MigrationReport>>, changes: (u64, u64, u64)) {
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
                && let Ok(parsed) = serde_json::from_str::<MigrationReport>(&text)
            {
                report.set(Some(parsed));
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
fn use_report_fetch(_report: UseStateHandle<Option<MigrationReport>>, _changes: (u64, u64, u64)) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;
    use popgate_core::migration::{GrantMode, UserStats};

    #[test]
    fn every_group_has_words_in_every_language() {
        for lang in Lang::ALL {
            let s = lang.strings();
            for g in Group::ALL {
                assert!(!group_label(s, g).is_empty(), "{lang:?} {g:?}");
            }
            let row = UserRow {
                group: Group::GrantOnly,
                mode: GrantMode::Warn,
                stats: UserStats {
                    user: "taro@example.test".into(),
                    grant_relays: 2,
                    refused_relays: 1,
                    ..UserStats::default()
                },
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
