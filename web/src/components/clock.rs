//! Time for the views: the server's clock, ticking locally.
//!
//! [`ClockProvider`] re-reads the local monotonic clock a few times a second and puts
//! [`Now`] in context; only the components that show time (countdowns, ages, the
//! chart, the retry countdown) use it, so a tick re-renders those alone.

use crate::state::ServerClock;
use popgate_core::Millis;
use yew::prelude::*;

/// How often countdowns refresh: seconds change on time to within this.
pub const TICK_MS: u32 = 250;

/// The current time, on both clocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// The server's time (what grant expiries and event times are in).
    pub server: Millis,
    /// The local monotonic reading it was computed from.
    pub local: u64,
}

/// The local monotonic clock in milliseconds: `performance.now()`, which no wall-clock
/// change moves. (0 on the host, where nothing ticks.)
pub fn local_now() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        web_sys::window()
            .and_then(|w| w.performance())
            .map(|p| p.now().max(0.0) as u64)
            .unwrap_or(0)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

#[derive(Debug, Properties, PartialEq)]
pub struct ClockProps {
    /// How server time relates to local time (from the state).
    pub clock: ServerClock,
    #[prop_or_default]
    pub children: Html,
}

#[function_component(ClockProvider)]
pub fn clock_provider(props: &ClockProps) -> Html {
    let local = use_state(local_now);
    #[cfg(target_arch = "wasm32")]
    {
        let setter = local.setter();
        use_effect_with((), move |_| {
            let interval =
                gloo_timers::callback::Interval::new(TICK_MS, move || setter.set(local_now()));
            move || drop(interval)
        });
    }
    let now = Now {
        server: props.clock.at(*local),
        local: *local,
    };
    html! {
        <ContextProvider<Now> context={now}>
            { props.children.clone() }
        </ContextProvider<Now>>
    }
}

#[hook]
pub fn use_now() -> Now {
    use_context::<Now>().unwrap_or_default()
}

/// The server's time, never behind the latest event the state has applied. (In the
/// render that applies a frame, a view may run before the clock context has caught up
/// with the frame's new anchor; without this a fresh grant would flash a second more
/// than its time to live.)
#[hook]
pub fn use_server_now() -> Millis {
    let now = use_now();
    let ui = super::use_ui();
    now.server.max(ui.dash.now)
}
