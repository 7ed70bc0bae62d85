//! The popgate web app (Yew, compiled to WebAssembly by trunk).
//!
//! For now a placeholder page: the live dashboard (a stream of core events over the
//! `/api/events` WebSocket) and the in-browser explainer (core sessions driven by a
//! virtual clock) are coming. `src/main.rs` mounts [`App`] on the page; this library
//! also compiles natively so `cargo clippy --workspace` and native tests cover it.

use yew::prelude::*;

/// The popgate version this app was built from. Every crate of the workspace shares one
/// version (`[workspace.package]`), so this is also popgate-core's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The root component.
#[function_component(App)]
pub fn app() -> Html {
    html! {
        <main class="placeholder">
            <h1>{ "popgate" }</h1>
            <p>
                { "POP before SMTP, granted inside the mail server and shown live. " }
                { "The live dashboard and the explainer are coming." }
            </p>
            <p class="version">{ format!("popgate-core {VERSION}") }</p>
        </main>
    }
}
