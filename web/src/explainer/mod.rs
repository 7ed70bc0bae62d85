//! The explainer: popgate-core's own POP3 and SMTP sessions and grant table, driven by
//! core's simulator in the browser, step by step, with every line explained.
//!
//! No server is involved: the scenarios ship inside the WebAssembly module and the
//! simulator runs on a virtual clock, so any static host serves it (a documentation
//! site, `python3 -m http.server`).
//!
//! * [`route`]: how the page asks for it (`?explainer`, `#/explainer/2/3`, the JS
//!   `mount` options), and the links to a step.
//! * [`model`]: [`model::Explainer`], the player wrapped with what the page shows:
//!   outputs per step, the dashboard state their events build, speed, language.
//! * [`annotate`]: what each protocol line means and the RFC section defining it.
//! * [`diagram`]: the sequence diagram's rows (lifelines and arrows) from the outputs.
//! * [`view`]: the components. The state panel reuses the dashboard's views (grants,
//!   sessions, counters, transcript), fed through the same contexts.

pub mod annotate;
pub mod diagram;
pub mod model;
pub mod route;
pub mod view;

#[cfg(test)]
mod tests;
