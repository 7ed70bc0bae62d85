//! The grant table: address, user, the session that made it, a live countdown to the
//! exact expiry, messages left, and a revoke button.

use super::clock::use_server_now;
use super::{use_commands, use_strings, use_ui};
use crate::format;
use crate::i18n::fill;
use crate::state::Action;
use popgate_core::Millis;
use popgate_core::grant::GrantView;
use yew::prelude::*;

#[function_component(GrantTable)]
pub fn grant_table() -> Html {
    let ui = use_ui();
    let s = use_strings();
    if ui.dash.grants.is_empty() {
        return html! { <p class="empty" data-testid="grants-empty">{ s.grants_empty }</p> };
    }
    html! {
        <div class="scroll">
            <table id="grants" class="table grants" data-testid="grant-table">
                <thead>
                    <tr>
                        <th>{ s.col_key }</th>
                        <th>{ s.col_user }</th>
                        <th>{ s.col_session }</th>
                        <th>{ s.col_expires_in }</th>
                        <th>{ s.col_messages_left }</th>
                        <th><span class="sr-only">{ s.revoke }</span></th>
                    </tr>
                </thead>
                <tbody>
                    { for ui.dash.grants.values().map(|g| html! {
                        <GrantRow key={g.key.to_string()} grant={g.clone()} />
                    }) }
                </tbody>
            </table>
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct RowProps {
    grant: GrantView,
}

#[function_component(GrantRow)]
fn grant_row(props: &RowProps) -> Html {
    let s = use_strings();
    let commands = use_commands();
    let g = &props.grant;
    let key = g.key;
    let revoke = commands.revoke.reform(move |_: MouseEvent| key);
    let session = match g.session {
        Some(id) => {
            let select = commands
                .dispatch
                .reform(move |_: MouseEvent| Action::Select(Some(id)));
            html! {
                <button type="button" class="link" onclick={select} data-testid="grant-session"
                    data-session={id.to_string()}>{ format!("#{id}") }</button>
            }
        }
        None => {
            html! { <span class="muted" data-testid="grant-session">{ s.added_by_hand }</span> }
        }
    };
    let users = fill(s.users_seen, &[("users", &g.users.join(", "))]);
    let messages = match g.messages_left {
        Some(n) => n.to_string(),
        None => s.no_limit.to_owned(),
    };
    html! {
        <tr data-testid="grant-row" data-key={key.to_string()} data-user={g.user.clone()}>
            <td class="mono" data-testid="grant-key">{ key.to_string() }</td>
            <td title={users}>
                { g.user.clone() }
                if let Some(note) = &g.note {
                    <div class="note muted" data-testid="grant-note">{ note.clone() }</div>
                }
            </td>
            <td>{ session }</td>
            <Countdown expires={g.expires} />
            <td class="num" data-label={s.col_messages_left} data-testid="grant-messages-left"
                data-value={g.messages_left.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())}
                data-reserved={g.reserved.to_string()}>
                { messages }
                if g.reserved > 0 {
                    <span class="muted reserved">{ format!(" ({})", fill(s.reserved, &[("n", &g.reserved.to_string())])) }</span>
                }
            </td>
            <td>
                <button type="button" class="danger" onclick={revoke} data-testid="grant-revoke"
                    data-key={key.to_string()}>{ s.revoke }</button>
            </td>
        </tr>
    }
}

#[derive(Properties, PartialEq)]
struct CountdownProps {
    expires: Millis,
}

/// Time left until the exact expiry, on the server's clock. The row stays until the
/// server's `GrantExpired` event removes it; at zero it reads "expired".
#[function_component(Countdown)]
fn countdown(props: &CountdownProps) -> Html {
    let s = use_strings();
    let now = use_server_now();
    let remaining = now.until(props.expires).as_millis() as u64;
    let title = fill(s.expires_at, &[("at", &format::clock_time(props.expires))]);
    html! {
        <td class={classes!("num", "countdown", (remaining == 0).then_some("expired"))}
            data-label={s.col_expires_in}
            data-testid="grant-countdown"
            data-expires={props.expires.0.to_string()}
            data-remaining-ms={remaining.to_string()}
            {title}>
            <time>{ if remaining == 0 { s.expired.to_owned() } else { format::countdown(remaining) } }</time>
        </td>
    }
}
