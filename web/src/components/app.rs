//! The root: the state, its source, and the page layout.

use super::chart::Chart;
use super::clock::ClockProvider;
use super::connection::ConnectionBadge;
use super::counters::CounterList;
use super::grant_form::GrantForm;
use super::grants::GrantTable;
use super::message::{MessageList, MessageViewer};
use super::migration::MigrationPanel;
use super::sessions::SessionList;
use super::timeline::Timeline;
use super::transcript::Transcript;
use super::{Commands, Shared, use_commands, use_strings, use_ui};
use crate::i18n::Lang;
use crate::state::{Action, UiState};
use std::rc::Rc;
use yew::prelude::*;

impl Reducible for UiState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        // Cheap: the dashboard state inside is shared; it is copied only when a frame
        // changes it (once per batch of frames, see `live`).
        let mut next = Rc::unwrap_or_clone(self);
        next.apply(action);
        Rc::new(next)
    }
}

#[derive(Clone, Debug, PartialEq, Properties)]
pub struct RootProps {
    /// What the URL or the host page asked for (the mode, the scenario and step...).
    #[prop_or_default]
    pub options: crate::explainer::route::Options,
    /// The language, already resolved (the option, else the browser's).
    #[prop_or_default]
    pub lang: Lang,
    /// The app owns the page (`index.html`), rather than an element of a host page.
    #[prop_or_default]
    pub standalone: bool,
}

/// The app in the mode asked for: the live dashboard, or the explainer.
#[function_component(Root)]
pub fn root(props: &RootProps) -> Html {
    use crate::explainer::route::Mode;
    use crate::explainer::view::ExplainerApp;
    match props.options.mode {
        Mode::Live => html! { <App lang={props.lang} /> },
        Mode::Explainer => html! {
            <ExplainerApp options={props.options.clone()} lang={props.lang}
                standalone={props.standalone} />
        },
    }
}

#[derive(Clone, Debug, Default, PartialEq, Properties)]
pub struct AppProps {
    #[prop_or_default]
    pub lang: Lang,
}

/// The live dashboard: state fed by the `/api/events` WebSocket, commands performed
/// by the HTTP API.
#[function_component(App)]
pub fn app(props: &AppProps) -> Html {
    let ui = use_reducer(UiState::default);
    let dispatch = {
        let dispatcher = ui.dispatcher();
        Callback::from(move |action: Action| dispatcher.dispatch(action))
    };
    let commands = use_source(dispatch);
    let shared: Shared = Rc::new((*ui).clone());
    html! {
        <Provide state={shared} {commands} lang={props.lang}>
            <Dashboard />
        </Provide>
    }
}

#[cfg(target_arch = "wasm32")]
#[hook]
fn use_source(dispatch: Callback<Action>) -> Commands {
    crate::live::use_live_source(dispatch)
}

/// On the host there is no browser: nothing feeds the state.
#[cfg(not(target_arch = "wasm32"))]
#[hook]
fn use_source(dispatch: Callback<Action>) -> Commands {
    Commands {
        dispatch,
        revoke: Callback::noop(),
        add_grant: Callback::noop(),
        open_message: Callback::noop(),
    }
}

#[derive(Debug, Properties, PartialEq)]
pub struct ProvideProps {
    pub state: Shared,
    pub commands: Commands,
    pub lang: Lang,
    #[prop_or_default]
    pub children: Html,
}

/// Puts a state, its commands, the strings and the clock in context for the views
/// below: whatever drives the state (live stream or simulator) renders through this.
#[function_component(Provide)]
pub fn provide(props: &ProvideProps) -> Html {
    html! {
        <ContextProvider<Lang> context={props.lang}>
        <ContextProvider<Commands> context={props.commands.clone()}>
        <ContextProvider<Shared> context={props.state.clone()}>
            <ClockProvider clock={props.state.clock}>
                { props.children.clone() }
            </ClockProvider>
        </ContextProvider<Shared>>
        </ContextProvider<Commands>>
        </ContextProvider<Lang>>
    }
}

/// The whole page.
#[function_component(Dashboard)]
pub fn dashboard() -> Html {
    let s = use_strings();
    html! {
        <div class="app">
            <header class="top">
                <h1>{ s.app_title }</h1>
                <span class="tagline">{ s.tagline }</span>
                <ConnectionBadge />
            </header>
            <Notice />
            // Two columns when wide (what you act on, then what happened), one when
            // narrow, where `order` puts cause and effect right under the grants.
            <main class="grid">
                <div class="col">
                    <section class="panel area-grants" aria-labelledby="grants-title">
                        <h2 id="grants-title">{ s.grants_title }</h2>
                        <GrantTable />
                        <GrantForm />
                    </section>
                    <section class="panel area-sessions" aria-labelledby="sessions-title">
                        <h2 id="sessions-title">{ s.sessions_title }</h2>
                        <SessionList />
                    </section>
                    <section class="panel area-stats" aria-labelledby="counters-title">
                        <h2 id="counters-title">{ s.counters_title }</h2>
                        <CounterList />
                        <Chart />
                        <MessageList />
                    </section>
                    <section class="panel area-migration" aria-labelledby="migration-title">
                        <h2 id="migration-title">{ s.migration_title }</h2>
                        <p class="hint">{ s.migration_hint }</p>
                        <MigrationPanel />
                    </section>
                </div>
                <div class="col">
                    <section class="panel area-timeline" aria-labelledby="timeline-title">
                        <h2 id="timeline-title">{ s.timeline_title }</h2>
                        <p class="hint">{ s.timeline_hint }</p>
                        <Timeline />
                    </section>
                    <section class="panel area-transcript" aria-labelledby="transcript-title">
                        <h2 id="transcript-title">{ s.transcript_title }</h2>
                        <Transcript />
                    </section>
                </div>
            </main>
            <MessageViewer />
            <footer class="foot">{ format!("popgate {}", crate::VERSION) }</footer>
        </div>
    }
}

/// An operator action the server refused, until dismissed.
#[function_component(Notice)]
fn notice() -> Html {
    let ui = use_ui();
    let commands = use_commands();
    let s = use_strings();
    let Some(error) = ui.notice.as_deref() else {
        return html! {};
    };
    let text = crate::i18n::fill(s.request_failed, &[("error", error)]);
    let dismiss = commands
        .dispatch
        .reform(|_: MouseEvent| Action::Notice(None));
    html! {
        <div id="notice" class="notice" role="alert" data-testid="notice">
            <span>{ text }</span>
            <button type="button" class="icon" onclick={dismiss} aria-label={s.close}>{ "×" }</button>
        </div>
    }
}
