//! The views. Each is a small function component that reads the [`UiState`] and the
//! strings from context and sends what the user asked for through [`Commands`].
//!
//! Test hooks: every element a browser test looks for carries a `data-testid` (and
//! rows carry their key: `data-key` for a grant, `data-session` for a session), so
//! tests never depend on texts, which are translated, or on the layout.

pub mod app;
pub mod chart;
pub mod clock;
pub mod connection;
pub mod counters;
pub mod grant_form;
pub mod grants;
pub mod message;
pub mod migration;
pub mod sessions;
pub mod timeline;
pub mod transcript;

use crate::i18n::{Lang, Strings};
use crate::state::{Action, UiState};
use popgate_core::net::Cidr;
use serde::Serialize;
use std::rc::Rc;
use yew::prelude::*;

/// A grant an operator adds by hand: the JSON body of `POST /api/grants`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GrantRequest {
    pub address: String,
    /// A duration such as `30m` (the configuration's syntax); absent: the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Absent or 0: no count limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What the views can ask for. The live source performs these with HTTP calls; a
/// simulator would act on its own grant table. Results come back as [`Action`]s or
/// as events in the stream (a revoked grant disappears through `GrantRevoked`).
#[derive(Clone, Debug, PartialEq)]
pub struct Commands {
    /// Page-only changes (select a session, close the message view).
    pub dispatch: Callback<Action>,
    pub revoke: Callback<Cidr>,
    /// The request and where to report its outcome (`Err`: the server's message).
    pub add_grant: Callback<(GrantRequest, Callback<Result<(), String>>)>,
    /// Open the message view and fetch the raw text.
    pub open_message: Callback<String>,
}

/// The state the views render, shared through a context.
pub type Shared = Rc<UiState>;

/// The strings of the current language (the context holds the [`Lang`], which is
/// cheap to compare when it changes).
#[hook]
pub fn use_strings() -> &'static Strings {
    use_context::<Lang>().unwrap_or_default().strings()
}

/// The current state; an empty one outside a provider.
#[hook]
pub fn use_ui() -> Shared {
    use_context::<Shared>().unwrap_or_default()
}

/// The commands; no-ops outside a provider.
#[hook]
pub fn use_commands() -> Commands {
    use_context::<Commands>().unwrap_or_else(|| Commands {
        dispatch: Callback::noop(),
        revoke: Callback::noop(),
        add_grant: Callback::noop(),
        open_message: Callback::noop(),
    })
}
