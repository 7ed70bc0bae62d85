//! The popgate web app (Yew, compiled to WebAssembly by trunk): the live dashboard and
//! the explainer (the same module, no server: core's simulator in the browser).
//!
//! # Layout
//!
//! * [`state`]: [`state::UiState`], core's dashboard reducer wrapped with page-only
//!   state, changed by [`state::Action`]s. Plain Rust, tested natively.
//! * [`components`]: small function components that render a [`state::UiState`] and
//!   send intents through [`components::Commands`]. They never ask where events come
//!   from: the live WebSocket today, the in-browser simulator of the explainer later.
//! * `live` (wasm32 only): the live source: the `/api/events` WebSocket with
//!   reconnection, and the HTTP calls behind the commands.
//! * [`i18n`]: every user-visible string, one table per language.
//! * [`codes`]: SMTP and POP3 reply codes explained (the transcript tooltips).
//! * [`format`]: durations, clock times, URL path segments.
//! * [`wire`]: the `/api/events` frames decoded by hand (a fraction of serde's code size).
//! * [`explainer`]: the explainer: scenarios played by core's simulator, the sequence
//!   diagram, every line explained; the options and deep links that start it.
//! * `embed` (wasm32 only): starting in `index.html`, or in a host page through the
//!   exported JS `mount(element, options)`.
//!
//! `src/main.rs` starts [`Root`] (the dashboard or the explainer, as the URL asks). This library also compiles natively (browser IO is
//! behind `cfg(target_arch = "wasm32")`), so `cargo test -p popgate-web` runs the state
//! and formatting tests on the host.

pub mod codes;
pub mod components;
#[cfg(target_arch = "wasm32")]
pub mod embed;
pub mod explainer;
pub mod format;
pub mod i18n;
#[cfg(target_arch = "wasm32")]
mod live;
pub mod state;
pub mod wire;

pub use components::app::{App, Root};

/// The popgate version this app was built from. Every crate of the workspace shares one
/// version (`[workspace.package]`), so this is also popgate-core's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
