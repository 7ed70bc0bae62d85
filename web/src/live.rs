//! The live source: the `/api/events` WebSocket feeding [`Action`]s, and the HTTP API
//! behind [`Commands`]. Browser only (wasm32).
//!
//! The stream is read in batches: every frame that has already arrived goes into one
//! [`Action::Frames`], so a burst of events costs one state update and one render, not
//! one per event. When the stream ends the page says so, waits
//! ([`reconnect_delay_ms`]) and connects again; the server answers every new
//! connection with a fresh snapshot, so nothing is assumed about what was missed.
//!
//! A server bound off loopback requires its admin token. The page takes it from its
//! URL fragment (`/#token=...`, which the browser never sends to a server or a log)
//! and presents it as `Authorization: Bearer` on HTTP and as the `popgate.token.`
//! subprotocol on the WebSocket, which cannot carry headers.

use crate::components::clock::local_now;
use crate::components::{Commands, GrantRequest};
use crate::state::{Action, reconnect_delay_ms};
use crate::wire::decode_frame;
use futures_util::StreamExt;
use gloo_net::http::{Request, RequestBuilder, Response};
use gloo_net::websocket::Message;
use gloo_net::websocket::futures::WebSocket;
use gloo_timers::future::TimeoutFuture;
use popgate_core::dashboard::StreamMessage;
use popgate_core::net::Cidr;
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

/// The most frames applied in one state update.
const FRAMES_PER_BATCH: usize = 256;

/// Connects to the event stream for as long as the component lives, and returns the
/// commands that talk to the HTTP API.
#[hook]
pub fn use_live_source(dispatch: Callback<Action>) -> Commands {
    {
        let dispatch = dispatch.clone();
        use_effect_with((), move |_| {
            let stop = Rc::new(Cell::new(false));
            spawn_local(stream(dispatch, stop.clone()));
            move || stop.set(true)
        });
    }
    // One set of callbacks for the life of the page, so the context stays equal and
    // the views do not re-render for nothing.
    (*use_memo((), move |_| commands(dispatch))).clone()
}

/// The subprotocol the server speaks on `/api/events`.
const PROTOCOL: &str = "popgate";
/// How the WebSocket carries the admin token.
const TOKEN_PROTOCOL_PREFIX: &str = "popgate.token.";

/// `token` from the page's fragment, `#token=...` (among other `name=value` pairs
/// joined by `&`).
fn admin_token() -> Option<String> {
    let hash = web_sys::window()?.location().hash().ok()?;
    hash.trim_start_matches('#')
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// A request with the admin token, when the page has one.
pub(crate) fn authorised(request: RequestBuilder) -> RequestBuilder {
    match admin_token() {
        Some(token) => request.header("Authorization", &format!("Bearer {token}")),
        None => request,
    }
}

fn open_socket() -> Option<WebSocket> {
    let url = events_url()?;
    let mut protocols = vec![PROTOCOL.to_owned()];
    protocols.extend(admin_token().map(|t| format!("{TOKEN_PROTOCOL_PREFIX}{t}")));
    WebSocket::open_with_protocols(&url, &protocols).ok()
}

/// `ws://host/api/events` (or `wss:` when the page came over HTTPS).
fn events_url() -> Option<String> {
    let location = web_sys::window()?.location();
    let scheme = match location.protocol().ok()?.as_str() {
        "https:" => "wss:",
        _ => "ws:",
    };
    Some(format!("{scheme}//{}/api/events", location.host().ok()?))
}

async fn stream(dispatch: Callback<Action>, stop: Rc<Cell<bool>>) {
    // Consecutive attempts that ended without a snapshot.
    let mut failures: u32 = 0;
    while !stop.get() {
        dispatch.emit(Action::Connecting);
        if let Some(socket) = open_socket() {
            let mut batches = socket.ready_chunks(FRAMES_PER_BATCH);
            while let Some(batch) = batches.next().await {
                if stop.get() {
                    return;
                }
                let mut frames = Vec::with_capacity(batch.len());
                let mut ended = false;
                for item in batch {
                    match item {
                        // A frame this build cannot read is skipped; the gap it leaves in
                        // `seq` is counted and shown by the state.
                        Ok(Message::Text(text)) => frames.extend(decode_frame(&text)),
                        Ok(Message::Bytes(_)) => {}
                        Err(_) => {
                            ended = true;
                            break;
                        }
                    }
                }
                if frames
                    .iter()
                    .any(|f| matches!(f, StreamMessage::Snapshot(_)))
                {
                    failures = 0;
                }
                if !frames.is_empty() {
                    dispatch.emit(Action::Frames {
                        frames,
                        local: local_now(),
                    });
                }
                if ended {
                    break;
                }
            }
        }
        if stop.get() {
            return;
        }
        let delay = reconnect_delay_ms(failures);
        failures = failures.saturating_add(1);
        dispatch.emit(Action::Disconnected {
            retry_at: local_now().saturating_add(delay),
        });
        TimeoutFuture::new(u32::try_from(delay).unwrap_or(u32::MAX)).await;
    }
}

/// What a refused request says: the server's `error` field, its text, or the status.
async fn error_of(response: Response) -> String {
    let status = format!("{} {}", response.status(), response.status_text());
    match response.text().await {
        Ok(text) if !text.trim().is_empty() => serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned()),
        _ => status,
    }
}

/// `Ok(response)` for a 2xx answer, else what went wrong.
pub(crate) async fn checked(
    response: Result<Response, gloo_net::Error>,
) -> Result<Response, String> {
    match response {
        Ok(r) if r.ok() => Ok(r),
        Ok(r) => Err(error_of(r).await),
        Err(e) => Err(e.to_string()),
    }
}

fn commands(dispatch: Callback<Action>) -> Commands {
    let revoke = {
        let dispatch = dispatch.clone();
        Callback::from(move |key: Cidr| {
            let dispatch = dispatch.clone();
            spawn_local(async move {
                let url = popgate_core::api::grant_path(&key.to_string());
                // Success shows as the `GrantRevoked` event removing the row.
                if let Err(e) = checked(authorised(Request::delete(&url)).send().await).await {
                    dispatch.emit(Action::Notice(Some(e)));
                }
            });
        })
    };
    let add_grant = Callback::from(
        move |(request, done): (GrantRequest, Callback<Result<(), String>>)| {
            spawn_local(async move {
                let sent = match authorised(Request::post("/api/grants")).json(&request) {
                    Ok(r) => checked(r.send().await).await.map(drop),
                    Err(e) => Err(e.to_string()),
                };
                done.emit(sent);
            });
        },
    );
    let open_message = {
        let dispatch = dispatch.clone();
        Callback::from(move |id: String| {
            dispatch.emit(Action::OpenMessage(id.clone()));
            let dispatch = dispatch.clone();
            spawn_local(async move {
                let url = popgate_core::api::message_path(&id);
                let result = match checked(authorised(Request::get(&url)).send().await).await {
                    Ok(r) => r.text().await.map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                dispatch.emit(Action::MessageLoaded { id, result });
            });
        })
    };
    Commands {
        dispatch,
        revoke,
        add_grant,
        open_message,
    }
}
