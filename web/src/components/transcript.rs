//! The selected session's transcript: client and server lines told apart, each reply
//! code explained on hover; below it, the session's recipients and messages.

use super::sessions::session_state;
use super::timeline::relay_text;
use super::{use_commands, use_strings, use_ui};
use crate::codes;
use crate::format;
use crate::i18n::{Strings, fill};
use crate::state::Action;
use popgate_core::Protocol;
use popgate_core::dashboard::{SessionView, TranscriptLine};
use yew::prelude::*;

#[function_component(Transcript)]
pub fn transcript() -> Html {
    let ui = use_ui();
    let s = use_strings();
    let commands = use_commands();
    let Some(session) = ui.selected.and_then(|id| ui.dash.sessions.get(&id)) else {
        return html! { <p class="empty" data-testid="transcript-none">{ s.transcript_none }</p> };
    };
    let close = commands
        .dispatch
        .reform(|_: MouseEvent| Action::Select(None));
    html! {
        <div id="transcript" class="transcript" data-testid="transcript" data-session={session.id.to_string()}>
            <div class="transcript-head">
                <SessionSummary session={session.clone()} />
                <button type="button" class="icon" onclick={close} aria-label={s.close}
                    data-testid="transcript-close">{ "×" }</button>
            </div>
            if session.truncated > 0 {
                <p class="muted">{ fill(s.transcript_truncated, &[("n", &session.truncated.to_string())]) }</p>
            }
            if session.transcript.is_empty() {
                <p class="empty">{ s.transcript_empty }</p>
            } else {
                <ol class="lines" data-testid="transcript-lines">
                    { for session.transcript.iter().map(|l| line(s, session.protocol, l)) }
                </ol>
            }
            <SessionExtras session={session.clone()} />
        </div>
    }
}

fn line(s: &Strings, protocol: Protocol, l: &TranscriptLine) -> Html {
    let (dir, label) = if l.from_client {
        ("client", s.client_label)
    } else {
        ("server", s.server_label)
    };
    // Yew escapes text nodes: whatever a peer sent is shown as text, never as markup.
    let body = match (!l.from_client)
        .then(|| codes::parse(protocol, &l.text))
        .flatten()
    {
        Some((code, len)) => {
            let (head, rest) = l.text.split_at(len);
            html! {
                <>
                    <abbr class="code" data-testid="reply-code" title={codes::explain(s, code)}>{ head.to_owned() }</abbr>
                    { rest.to_owned() }
                </>
            }
        }
        None => html! { { l.text.clone() } },
    };
    html! {
        <li class={classes!("line", dir)} data-testid="transcript-line" data-dir={dir}
            title={format::clock_time(l.at)}>
            <span class="who">{ label }</span>
            <span class="text">{ body }</span>
        </li>
    }
}

#[derive(Properties, PartialEq)]
struct SessionProps {
    session: SessionView,
}

#[function_component(SessionSummary)]
fn session_summary(props: &SessionProps) -> Html {
    let s = use_strings();
    let v = &props.session;
    let tls = match (&v.tls_version, &v.tls_cipher) {
        (Some(version), Some(cipher)) => format!("{version} {cipher}"),
        (Some(version), None) => version.clone(),
        _ if v.tls => s.tls_on.to_owned(),
        _ => s.tls_off.to_owned(),
    };
    html! {
        <div class="summary">
            <strong>{ format!("#{} {}", v.id, v.protocol.name()) }</strong>
            <span class="mono">{ format!("{} → {}", v.peer, v.local) }</span>
            if let Some(user) = &v.user {
                <span>{ user.clone() }</span>
            }
            <span class={classes!("tls", v.tls.then_some("on"))}>{ tls }</span>
            <span class="muted">{ session_state(s, v.closed.as_ref().map(|c| &c.reason)) }</span>
        </div>
    }
}

/// What the session did beyond its lines: the grant its login made, its recipients'
/// relay decisions, the messages it had accepted.
#[function_component(SessionExtras)]
fn session_extras(props: &SessionProps) -> Html {
    let s = use_strings();
    let commands = use_commands();
    let v = &props.session;
    html! {
        <>
            if let Some(key) = v.grant_made {
                <p class="grant-made" data-testid="session-grant" data-key={key.to_string()}>
                    { fill(s.session_grant_made, &[("key", &key.to_string())]) }
                </p>
            }
            if !v.relays.is_empty() {
                <h3>{ s.session_recipients }</h3>
                <ul class="relays">
                    { for v.relays.iter().map(|r| html! {
                        <li data-testid="session-relay">{ relay_text(s, &r.rcpt, &r.decision) }</li>
                    }) }
                </ul>
            }
            if !v.messages.is_empty() {
                <h3>{ s.session_messages }</h3>
                <ul class="messages">
                    { for v.messages.iter().map(|id| {
                        let open = { let id = id.clone(); commands.open_message.reform(move |_: MouseEvent| id.clone()) };
                        html! {
                            <li>
                                <span class="mono">{ id.clone() }</span>{ " " }
                                <button type="button" class="link" onclick={open}
                                    data-testid="message-link" data-message-id={id.clone()}>{ s.message_view }</button>
                            </li>
                        }
                    }) }
                </ul>
            }
        </>
    }
}
