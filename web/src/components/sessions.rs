//! Sessions, newest first: protocol, peer, user, TLS, state and age. A click opens the
//! transcript.

use super::clock::use_server_now;
use super::{use_commands, use_strings, use_ui};
use crate::format;
use crate::i18n::Strings;
use crate::state::Action;
use popgate_core::dashboard::SessionView;
use popgate_core::event::CloseReason;
use popgate_core::{Millis, SessionId};
use yew::prelude::*;

#[function_component(SessionList)]
pub fn session_list() -> Html {
    let ui = use_ui();
    let s = use_strings();
    if ui.dash.sessions.is_empty() {
        return html! { <p class="empty" data-testid="sessions-empty">{ s.sessions_empty }</p> };
    }
    let rows = ui
        .dash
        .sessions
        .values()
        .rev()
        .map(|v| html! { <SessionRow key={v.id.0} session={SessionRowData::from(v)} selected={ui.selected == Some(v.id)} /> });
    html! {
        <div class="scroll">
            <table id="sessions" class="table sessions" data-testid="sessions-table">
                <thead>
                    <tr>
                        <th>{ s.col_session }</th>
                        <th>{ s.col_protocol }</th>
                        <th>{ s.col_peer }</th>
                        <th>{ s.col_user }</th>
                        <th>{ s.col_tls }</th>
                        <th>{ s.col_state }</th>
                        <th>{ s.col_age }</th>
                    </tr>
                </thead>
                <tbody>{ for rows }</tbody>
            </table>
        </div>
    }
}

/// What a row shows: a session without its transcript, so a new transcript line does
/// not re-render every row.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRowData {
    pub id: SessionId,
    pub protocol: &'static str,
    pub peer: String,
    pub user: Option<String>,
    pub tls: Option<String>,
    pub opened: Millis,
    pub closed: Option<(Millis, CloseReason)>,
}

impl From<&SessionView> for SessionRowData {
    fn from(v: &SessionView) -> SessionRowData {
        SessionRowData {
            id: v.id,
            protocol: v.protocol.name(),
            peer: v.peer.clone(),
            user: v.user.clone(),
            tls: v.tls.then(|| v.tls_version.clone().unwrap_or_default()),
            opened: v.opened,
            closed: v.closed.as_ref().map(|c| (c.at, c.reason.clone())),
        }
    }
}

pub fn close_reason(s: &Strings, reason: &CloseReason) -> &'static str {
    match reason {
        CloseReason::Quit => s.close_quit,
        CloseReason::PeerClosed => s.close_peer_closed,
        CloseReason::Timeout => s.close_timeout,
        CloseReason::ShuttingDown => s.close_shutting_down,
        CloseReason::Error => s.close_error,
    }
}

/// "open", or "closed (quit)".
pub fn session_state(s: &Strings, closed: Option<&CloseReason>) -> String {
    match closed {
        None => s.state_open.to_owned(),
        Some(reason) => format!("{} ({})", s.state_closed, close_reason(s, reason)),
    }
}

#[derive(Properties, PartialEq)]
struct RowProps {
    session: SessionRowData,
    selected: bool,
}

#[function_component(SessionRow)]
fn session_row(props: &RowProps) -> Html {
    let s = use_strings();
    let commands = use_commands();
    let v = &props.session;
    let id = v.id;
    let onclick = commands
        .dispatch
        .reform(move |_: MouseEvent| Action::Select(Some(id)));
    let state = if v.closed.is_some() { "closed" } else { "open" };
    html! {
        <tr
            class={classes!("row", props.selected.then_some("selected"), v.closed.is_some().then_some("closed"))}
            data-testid="session-row"
            data-session={id.to_string()}
            data-protocol={v.protocol}
            data-state={state}
            aria-selected={props.selected.to_string()}
            {onclick}
        >
            <td>
                <button type="button" class="link" data-testid="session-open">{ format!("#{id}") }</button>
            </td>
            <td><span class={classes!("proto", format!("proto-{}", v.protocol))}>{ v.protocol }</span></td>
            <td class="mono">{ v.peer.clone() }</td>
            <td>{ v.user.clone().unwrap_or_default() }</td>
            <td>
                { match &v.tls {
                    Some(version) => html! { <span class="tls on" title={version.clone()}>{ s.tls_on }</span> },
                    None => html! { <span class="tls off">{ s.tls_off }</span> },
                } }
            </td>
            <td>{ session_state(s, v.closed.as_ref().map(|(_, r)| r)) }</td>
            <Age opened={v.opened} closed={v.closed.as_ref().map(|(at, _)| *at)} />
        </tr>
    }
}

#[derive(Properties, PartialEq)]
struct AgeProps {
    opened: Millis,
    closed: Option<Millis>,
}

/// How long the session has been open (or was, once closed).
#[function_component(Age)]
fn age(props: &AgeProps) -> Html {
    let s = use_strings();
    let now = use_server_now();
    let end = props.closed.unwrap_or(now);
    let elapsed = props.opened.until(end).as_millis() as u64;
    html! { <td class="mono age" data-label={s.col_age} data-testid="session-age">{ format::age(elapsed, s.age_units) }</td> }
}
