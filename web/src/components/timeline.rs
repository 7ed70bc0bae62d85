//! Cause and effect in one list: a POP3 login, the grant it made, the SMTP sessions
//! and recipients that relayed on it, and the relays refused with their reason.
//!
//! Choosing a grant's address highlights every entry linked to it: the entries naming
//! the grant and every entry of the sessions that made or used it. A relay allowed by
//! a grant links back to the login session that made the grant.

use super::{use_commands, use_strings, use_ui};
use crate::format;
use crate::i18n::{Strings, fill};
use crate::state::Action;
use popgate_core::SessionId;
use popgate_core::dashboard::{DashboardState, RelayVia, TimelineEntry, TimelineKind};
use popgate_core::event::RelayOutcome;
use popgate_core::grant::RelayRefusal;
use popgate_core::net::Cidr;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use yew::prelude::*;

/// Why a relay was refused, in words.
pub fn refusal(s: &Strings, reason: RelayRefusal) -> &'static str {
    match reason {
        RelayRefusal::NoGrant => s.refusal_no_grant,
        RelayRefusal::Expired => s.refusal_expired,
        RelayRefusal::UsedUp => s.refusal_used_up,
        RelayRefusal::AuthRequired => s.refusal_auth_required,
        RelayRefusal::GrantSwitchedOff => s.refusal_grant_switched_off,
    }
}

/// Why a grant was revoked, in words: core's reason strings
/// (`popgate_core::grant::reason`) are its wire format; others are shown as sent.
pub fn revoke_reason<'a>(s: &Strings, reason: &'a str) -> &'a str {
    use popgate_core::grant::reason;
    match reason {
        reason::REVOKED => s.revoked_by_operator,
        reason::FLUSHED => s.revoked_flushed,
        reason::USER_REMOVED => s.revoked_user_removed,
        reason::PASSWORD_CHANGED => s.revoked_password_changed,
        reason::EVICTED => s.revoked_evicted,
        other => other,
    }
}

/// The stable name of a refusal, for test hooks (`data-reason`).
pub fn refusal_id(reason: RelayRefusal) -> &'static str {
    match reason {
        RelayRefusal::NoGrant => "no_grant",
        RelayRefusal::Expired => "expired",
        RelayRefusal::UsedUp => "used_up",
        RelayRefusal::AuthRequired => "auth_required",
        RelayRefusal::GrantSwitchedOff => "grant_switched_off",
    }
}

/// One recipient's relay decision, in words (the transcript's recipient list).
pub fn relay_text(s: &Strings, rcpt: &str, decision: &RelayOutcome) -> String {
    match decision {
        RelayOutcome::Local => fill(s.tl_relay_local, &[("rcpt", rcpt)]),
        RelayOutcome::UnknownUser => fill(s.tl_relay_unknown_user, &[("rcpt", rcpt)]),
        RelayOutcome::Trusted => fill(s.tl_relay_trusted, &[("rcpt", rcpt)]),
        RelayOutcome::Auth { user } => fill(s.tl_relay_auth, &[("rcpt", rcpt), ("user", user)]),
        RelayOutcome::Grant { key, user, .. } => fill(
            s.tl_relay_grant,
            &[("rcpt", rcpt), ("key", &key.to_string()), ("user", user)],
        ),
        RelayOutcome::Denied { reason } => fill(
            s.tl_relay_denied,
            &[("rcpt", rcpt), ("reason", refusal(s, *reason))],
        ),
    }
}

/// The entry's stable kind name (`data-kind`), its text, and the grant it names.
pub fn describe(s: &Strings, kind: &TimelineKind) -> (&'static str, String, Option<Cidr>) {
    match kind {
        TimelineKind::Login {
            user,
            mechanism,
            protocol,
            ..
        } => {
            let text = if protocol.is_some_and(|p| p.is_pop3()) {
                // The peer is on the session chip; the login text names the user.
                fill(s.tl_login, &[("user", user), ("mechanism", mechanism)])
            } else {
                fill(s.tl_auth, &[("user", user), ("mechanism", mechanism)])
            };
            ("login", text, None)
        }
        TimelineKind::LoginFailed { user, .. } => (
            "login_failed",
            fill(
                s.tl_login_failed,
                &[("user", user.as_deref().unwrap_or("?"))],
            ),
            None,
        ),
        TimelineKind::GrantCreated { key, user, .. } => (
            "grant_created",
            fill(
                s.tl_grant_created,
                &[("key", &key.to_string()), ("user", user)],
            ),
            Some(*key),
        ),
        TimelineKind::GrantRefreshed { key, user, .. } => (
            "grant_refreshed",
            fill(
                s.tl_grant_refreshed,
                &[("key", &key.to_string()), ("user", user)],
            ),
            Some(*key),
        ),
        TimelineKind::GrantRefused { key, user, reason } => (
            "grant_refused",
            fill(
                s.tl_grant_refused,
                &[
                    ("key", &key.to_string()),
                    ("user", user),
                    ("reason", reason),
                ],
            ),
            Some(*key),
        ),
        TimelineKind::GrantUsed {
            key, messages_left, ..
        } => {
            let text = match messages_left {
                Some(n) => fill(
                    s.tl_grant_used,
                    &[("key", &key.to_string()), ("left", &n.to_string())],
                ),
                None => fill(s.tl_grant_used_unlimited, &[("key", &key.to_string())]),
            };
            ("grant_used", text, Some(*key))
        }
        TimelineKind::GrantExpired { key } => (
            "grant_expired",
            fill(s.tl_grant_expired, &[("key", &key.to_string())]),
            Some(*key),
        ),
        TimelineKind::GrantRevoked { key, reason } => (
            "grant_revoked",
            fill(
                s.tl_grant_revoked,
                &[
                    ("key", &key.to_string()),
                    ("reason", revoke_reason(s, reason)),
                ],
            ),
            Some(*key),
        ),
        TimelineKind::RelayAllowed { rcpt, via } => {
            let (text, key) = match via {
                RelayVia::Grant { key, user, .. } => (
                    fill(
                        s.tl_relay_grant,
                        &[("rcpt", rcpt), ("key", &key.to_string()), ("user", user)],
                    ),
                    Some(*key),
                ),
                RelayVia::Auth { user } => (
                    fill(s.tl_relay_auth, &[("rcpt", rcpt), ("user", user)]),
                    None,
                ),
                RelayVia::Trusted => (fill(s.tl_relay_trusted, &[("rcpt", rcpt)]), None),
            };
            ("relay_allowed", text, key)
        }
        TimelineKind::RelayDenied { rcpt, reason } => (
            "relay_denied",
            fill(
                s.tl_relay_denied,
                &[("rcpt", rcpt), ("reason", refusal(s, *reason))],
            ),
            None,
        ),
        TimelineKind::MessageAccepted {
            id, from, rcpts, ..
        } => (
            "message_accepted",
            fill(
                s.tl_message,
                &[("id", id), ("from", from), ("count", &rcpts.to_string())],
            ),
            None,
        ),
        TimelineKind::MessageBounced {
            id, rcpts, reason, ..
        } => (
            "message_bounced",
            fill(
                s.tl_bounced,
                &[("id", id), ("rcpts", &rcpts.join(", ")), ("reason", reason)],
            ),
            None,
        ),
    }
}

/// The sessions linked to a grant: those whose login made or renewed it and those that
/// relayed on it.
pub fn linked_sessions<'a>(
    entries: impl IntoIterator<Item = &'a TimelineEntry>,
    key: Cidr,
) -> BTreeSet<SessionId> {
    let mut out = BTreeSet::new();
    for e in entries {
        match &e.kind {
            TimelineKind::GrantCreated { key: k, .. }
            | TimelineKind::GrantRefreshed { key: k, .. }
            | TimelineKind::GrantUsed { key: k, .. }
                if *k == key =>
            {
                out.extend(e.session);
            }
            TimelineKind::RelayAllowed {
                via:
                    RelayVia::Grant {
                        key: k,
                        granting_session,
                        ..
                    },
                ..
            } if *k == key => {
                out.extend(e.session);
                out.insert(*granting_session);
            }
            _ => {}
        }
    }
    out
}

#[function_component(Timeline)]
pub fn timeline() -> Html {
    let ui = use_ui();
    let s = use_strings();
    let highlight = use_state(|| None::<Cidr>);
    // Stable while the highlight is unchanged, so unchanged entries skip re-rendering.
    let on_key = use_callback(highlight.clone(), |key: Cidr, highlight| {
        // A second click on the same address clears the highlight.
        highlight.set((**highlight != Some(key)).then_some(key));
    });
    if ui.dash.timeline.is_empty() {
        return html! { <p class="empty" data-testid="timeline-empty">{ s.timeline_empty }</p> };
    }
    let linked = highlight
        .map(|key| linked_sessions(&ui.dash.timeline, key))
        .unwrap_or_default();
    // Entries are keyed by `seq`: every source numbers its events (core's contract).
    html! {
        <ol id="timeline" class="timeline" data-testid="timeline"
            data-highlight={highlight.map(|k| k.to_string()).unwrap_or_default()}>
            { for ui.dash.timeline.iter().rev().map(|e| {
                let key = entry_key(s, e, &ui.dash);
                let lit = highlight.is_some()
                    && (key.is_some() && key == *highlight
                        || e.session.is_some_and(|id| linked.contains(&id)));
                let session = e.session.map(|id| match ui.dash.sessions.get(&id) {
                    Some(v) => format!("#{id} {} {}", v.protocol.name(), v.peer),
                    None => format!("#{id}"),
                });
                html! {
                    <Entry key={e.seq} entry={e.clone()} grant_key={key} {session} {lit}
                        on_key={on_key.clone()} />
                }
            }) }
        </ol>
    }
}

/// The address an entry is about (`data-key`, the highlight): the grant it names, or
/// for a refused relay the refused client's address, a host key (the session's peer,
/// while the session is retained), so it lights up with that address's grant entries.
fn entry_key(s: &Strings, e: &TimelineEntry, dash: &DashboardState) -> Option<Cidr> {
    match &e.kind {
        TimelineKind::RelayDenied { .. } => {
            let peer = &dash.sessions.get(&e.session?)?.peer;
            let ip = peer.parse::<SocketAddr>().ok()?.ip();
            Some(Cidr::host(ip))
        }
        kind => describe(s, kind).2,
    }
}

#[derive(Properties, PartialEq)]
struct EntryProps {
    entry: TimelineEntry,
    /// [`entry_key`].
    grant_key: Option<Cidr>,
    /// The label of the entry's session chip (`#3 pop3 192.0.2.7:41000`).
    session: Option<String>,
    lit: bool,
    on_key: Callback<Cidr>,
}

#[function_component(Entry)]
fn entry(props: &EntryProps) -> Html {
    let s = use_strings();
    let commands = use_commands();
    let e = &props.entry;
    let (kind, text, _) = describe(s, &e.kind);
    let key = props.grant_key;
    let session_chip = |id: SessionId, testid: &'static str, label: String| {
        let select = commands
            .dispatch
            .reform(move |_: MouseEvent| Action::Select(Some(id)));
        html! {
            <button type="button" class="chip" onclick={select} data-testid={testid}
                data-session={id.to_string()}>{ label }</button>
        }
    };
    let own = e
        .session
        .zip(props.session.clone())
        .map(|(id, label)| session_chip(id, "timeline-session", label));
    let (reason, granting) = match &e.kind {
        TimelineKind::RelayDenied { reason, .. } => (Some(refusal_id(*reason)), None),
        TimelineKind::RelayAllowed {
            via: RelayVia::Grant {
                granting_session, ..
            },
            ..
        } => (None, Some(*granting_session)),
        _ => (None, None),
    };
    let via = granting.map(|id| {
        session_chip(
            id,
            "timeline-granting-session",
            fill(s.tl_via_session, &[("session", &id.to_string())]),
        )
    });
    let key_chip = key.map(|k| {
        let on_key = props.on_key.reform(move |_: MouseEvent| k);
        html! {
            <button type="button" class="chip key" onclick={on_key} data-testid="timeline-key"
                data-key={k.to_string()} title={s.timeline_highlight}>{ k.to_string() }</button>
        }
    });
    let message = match &e.kind {
        TimelineKind::MessageAccepted { id, .. } => {
            let open = {
                let id = id.clone();
                commands
                    .open_message
                    .reform(move |_: MouseEvent| id.clone())
            };
            Some(html! {
                <button type="button" class="link" onclick={open} data-testid="message-link"
                    data-message-id={id.clone()}>{ s.message_view }</button>
            })
        }
        _ => None,
    };
    html! {
        <li
            class={classes!("entry", format!("kind-{kind}"), props.lit.then_some("lit"))}
            data-testid="timeline-entry"
            data-kind={kind}
            data-seq={e.seq.to_string()}
            data-session={e.session.map(|id| id.to_string())}
            data-key={key.map(|k| k.to_string())}
            data-reason={reason}
            data-granting-session={granting.map(|id| id.to_string())}
        >
            <time class="at mono">{ format::clock_time(e.at) }</time>
            <span class="what">{ text }</span>
            <span class="links">
                { for own }
                { for key_chip }
                { for via }
                { for message }
            </span>
        </li>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::EN;
    use popgate_core::Millis;

    fn entry(seq: u64, session: u64, kind: TimelineKind) -> TimelineEntry {
        TimelineEntry {
            at: Millis(seq),
            seq,
            session: Some(SessionId(session)),
            kind,
        }
    }

    #[test]
    fn a_grant_links_its_login_and_the_sessions_that_used_it() {
        let key: Cidr = "127.0.0.2".parse().expect("key");
        let other: Cidr = "127.0.0.3".parse().expect("key");
        let entries = vec![
            entry(
                1,
                1,
                TimelineKind::GrantCreated {
                    key,
                    user: "taro".into(),
                    expires: Millis(100),
                    messages_left: Some(2),
                },
            ),
            entry(
                2,
                2,
                TimelineKind::RelayAllowed {
                    rcpt: "x@remote.test".into(),
                    via: RelayVia::Grant {
                        key,
                        user: "taro".into(),
                        granting_session: SessionId(1),
                    },
                },
            ),
            entry(
                3,
                3,
                TimelineKind::GrantCreated {
                    key: other,
                    user: "hanako".into(),
                    expires: Millis(100),
                    messages_left: None,
                },
            ),
            entry(
                4,
                4,
                TimelineKind::RelayDenied {
                    rcpt: "x@remote.test".into(),
                    reason: RelayRefusal::NoGrant,
                },
            ),
        ];
        assert_eq!(
            linked_sessions(&entries, key),
            BTreeSet::from([SessionId(1), SessionId(2)])
        );
        let (kind, text, named) = describe(&EN, &entries[3].kind);
        assert_eq!(kind, "relay_denied");
        assert_eq!(text, "relay to x@remote.test denied: no grant");
        assert_eq!(named, None);
        let (_, text, named) = describe(&EN, &entries[1].kind);
        assert_eq!(
            text,
            "relay to x@remote.test allowed by the grant for 127.0.0.2/32 (taro)"
        );
        assert_eq!(named, Some(key));
    }

    #[test]
    fn every_refusal_has_words_and_a_stable_name() {
        for r in [
            RelayRefusal::NoGrant,
            RelayRefusal::Expired,
            RelayRefusal::UsedUp,
            RelayRefusal::AuthRequired,
            RelayRefusal::GrantSwitchedOff,
        ] {
            assert!(!refusal(&EN, r).is_empty());
            // The stable name is serde's, so tests can match the API's JSON too.
            let json = serde_json::to_string(&r).expect("serialise");
            assert_eq!(json, format!("\"{}\"", refusal_id(r)));
        }
    }
}
