//! The connection state, always visible: connecting, live, or reconnecting (with the
//! seconds until the next attempt).

use super::clock::use_now;
use super::{use_strings, use_ui};
use crate::i18n::fill;
use crate::state::Connection;
use yew::prelude::*;

#[function_component(ConnectionBadge)]
pub fn connection_badge() -> Html {
    let ui = use_ui();
    let s = use_strings();
    let now = use_now();
    let (state, label, detail) = match ui.connection {
        Connection::Connecting => ("connecting", s.conn_connecting, None),
        Connection::Live => ("live", s.conn_live, None),
        Connection::Reconnecting { retry_at } => {
            let seconds = retry_at.saturating_sub(now.local).div_ceil(1000);
            (
                "reconnecting",
                s.conn_reconnecting,
                Some(fill(s.conn_retry_in, &[("seconds", &seconds.to_string())])),
            )
        }
    };
    html! {
        <div
            id="connection-state"
            class={classes!("conn", format!("conn-{state}"))}
            role="status"
            aria-live="polite"
            data-testid="connection-state"
            data-state={state}
            data-seq={ui.dash.seq.to_string()}
            data-resyncs={ui.resyncs.to_string()}
        >
            <span class="dot" aria-hidden="true"></span>
            <span class="label">{ label }</span>
            if let Some(detail) = detail {
                <span class="detail">{ detail }</span>
            }
        </div>
    }
}
