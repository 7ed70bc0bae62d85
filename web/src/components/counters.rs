//! The server's totals (core's `Counters`) and the number of live grants.

use super::{use_strings, use_ui};
use yew::prelude::*;

#[function_component(CounterList)]
pub fn counter_list() -> Html {
    let ui = use_ui();
    let s = use_strings();
    let c = &ui.dash.counters;
    let sessions: u64 = c.sessions_by_protocol.values().sum();
    let grants_live = ui.dash.grants.len() as u64;
    // (test id, label, value)
    let rows: [(&str, &str, u64); 9] = [
        ("sessions_open", s.counter_sessions_open, c.sessions_open),
        ("sessions", s.counter_sessions_total, sessions),
        ("auth_ok", s.counter_logins_ok, c.auth_ok),
        ("auth_failed", s.counter_logins_failed, c.auth_failed),
        ("grants_live", s.counter_grants_live, grants_live),
        ("grants_created", s.counter_grants_created, c.grants_created),
        ("relay_allowed", s.counter_relayed, c.relay_allowed),
        ("relay_denied", s.counter_denied, c.relay_denied),
        ("messages_accepted", s.counter_messages, c.messages_accepted),
    ];
    html! {
        <dl id="counters" class="counters" data-testid="counters">
            { for rows.iter().map(|(id, label, value)| html! {
                <div class="counter" data-testid="counter" data-counter={*id} data-value={value.to_string()}>
                    <dt>{ *label }</dt>
                    <dd>{ value.to_string() }</dd>
                </div>
            }) }
        </dl>
    }
}
