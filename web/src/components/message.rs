//! Recently accepted messages, and the raw text of one (`GET /api/messages/{id}`):
//! headers and body exactly as stored, shown as text (Yew escapes it).

use super::{use_commands, use_strings, use_ui};
use crate::format;
use crate::i18n::fill;
use crate::state::{Action, MessageBody};
use yew::prelude::*;

/// How many recent messages the list shows (core keeps more).
const SHOWN: usize = 20;

#[function_component(MessageList)]
pub fn message_list() -> Html {
    let ui = use_ui();
    let s = use_strings();
    let commands = use_commands();
    if ui.dash.messages.is_empty() {
        return html! {};
    }
    html! {
        <>
            <h3>{ s.messages_title }</h3>
            <ul id="messages" class="message-list" data-testid="message-list">
                { for ui.dash.messages.iter().rev().take(SHOWN).map(|m| {
                    let open = { let id = m.id.clone(); commands.open_message.reform(move |_: MouseEvent| id.clone()) };
                    html! {
                        <li data-testid="message-row" data-message-id={m.id.clone()} data-relayed={m.relayed.to_string()}>
                            <time class="mono">{ format::clock_time(m.at) }</time>
                            <span class="from">{ m.from.clone() }</span>
                            <span class="muted">{ format!("→ {}", m.rcpts.join(", ")) }</span>
                            <button type="button" class="link" onclick={open} data-testid="message-link"
                                data-message-id={m.id.clone()}>{ s.message_view }</button>
                        </li>
                    }
                }) }
            </ul>
        </>
    }
}

#[function_component(MessageViewer)]
pub fn message_viewer() -> Html {
    let ui = use_ui();
    let s = use_strings();
    let commands = use_commands();
    let Some(view) = ui.message.clone() else {
        return html! {};
    };
    let close = commands
        .dispatch
        .reform(|_: MouseEvent| Action::CloseMessage);
    let (state, body) = match &view.body {
        MessageBody::Loading => (
            "loading",
            html! { <p class="muted">{ s.message_loading }</p> },
        ),
        MessageBody::Loaded(text) => (
            "loaded",
            html! { <pre class="raw" data-testid="message-raw">{ text.clone() }</pre> },
        ),
        MessageBody::Failed(e) => (
            "failed",
            html! { <p class="error" role="alert">{ fill(s.message_unavailable, &[("error", e)]) }</p> },
        ),
    };
    html! {
        <div class="overlay" role="dialog" aria-modal="true" aria-labelledby="message-title"
            onclick={close.clone()}>
            // A click inside the message is not a click on the backdrop.
            <section id="message-view" class="message-view" data-testid="message-view"
                data-message-id={view.id.clone()} data-state={state}
                onclick={|e: MouseEvent| e.stop_propagation()}>
                <header>
                    <h2 id="message-title">{ s.message_title }<span class="mono">{ format!(" {}", view.id) }</span></h2>
                    <button type="button" class="icon" onclick={close} aria-label={s.close}
                        data-testid="message-close">{ "×" }</button>
                </header>
                { body }
            </section>
        </div>
    }
}
