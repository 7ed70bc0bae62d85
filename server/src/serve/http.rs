//! The HTTP listener: the dashboard's API, its event WebSocket, Prometheus metrics, and
//! the built web app at `/`.
//!
//! ```text
//! GET    /api/health           {"status":"ok"}
//! GET    /api/snapshot         the dashboard state (popgate_core::dashboard::DashboardState)
//! GET    /api/sessions         {"now", "sessions": [session without transcript]}
//! GET    /api/sessions/{id}    one session with its transcript; 404 when not retained
//! GET    /api/grants           {"now", "grants": [grant + remaining_ms]}
//! POST   /api/grants           {"address", "ttl"?, "messages"?, "note"?} -> 201 grant
//! DELETE /api/grants           revoke every grant -> {"flushed": n}
//! DELETE /api/grants/{key}     "192.0.2.0/24" (URL-encoded) or a bare address -> {"revoked": key}
//! GET    /api/messages/{id}    the raw text of a queued or delivered message
//! POST   /api/dovecot/policy   Dovecot's auth policy requests; a successful login
//!                              report grants (see [`dovecot`]) -> {"status":0,"msg":""}
//! GET    /api/events           WebSocket: a snapshot, then events (see [`ws`])
//! GET    /api/migration        who still depends on POP before SMTP, by group
//!                              (popgate_core::migration::MigrationReport)
//! GET    /metrics              Prometheus text format 0.0.4
//! ```
//!
//! Errors are JSON: `{"error": "...", "field": "..."}` (`field` only when one request
//! field is to blame). With `[http] admin_token` set, every `/api` route and `/metrics`
//! need `Authorization: Bearer <token>` (the WebSocket may carry it as the cookie
//! `popgate_token` or the subprotocol `popgate.token.<token>`, since browsers cannot
//! set headers on one); the web app's static files need none.

pub mod client;
mod dovecot;
mod metrics;
mod ws;

use super::state::Shared;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{any, delete, get, post};
use popgate_core::dashboard::{DashboardState, SessionView};
use popgate_core::grant::{GrantView, reason};
use popgate_core::net::Cidr;
use popgate_core::{Millis, SessionId};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower_http::services::ServeDir;

/// Where `cargo xtask run` leaves the built web app, relative to the working folder.
const DEFAULT_WEB_ROOT: &str = "web/dist";

/// The `user` an operator grant (API, CLI) carries.
pub const OPERATOR_USER: &str = "operator";

/// Longest operator note accepted, in characters.
const MAX_NOTE: usize = 500;

/// Newest messages per mailbox searched for a delivered message's id, and the bytes
/// of each read to find it (our `Received:` header comes first).
const MAILDIR_SCAN_FILES: usize = 200;
const MAILDIR_SCAN_BYTES: u64 = 4096;

/// What every handler shares.
#[derive(Clone, Debug)]
struct Api {
    shared: Arc<Shared>,
    ws: Arc<ws::WsStats>,
}

pub fn router(shared: Arc<Shared>) -> Router {
    let api = Api {
        shared: shared.clone(),
        ws: Arc::default(),
    };
    let routes = Router::new()
        .route("/api/health", get(health))
        .route("/api/snapshot", get(snapshot))
        .route("/api/sessions", get(sessions))
        .route("/api/sessions/{id}", get(session))
        .route(
            "/api/grants",
            get(list_grants).post(add_grant).delete(flush_grants),
        )
        .route("/api/grants/{key}", delete(revoke_grant))
        .route("/api/messages/{id}", get(message))
        .route("/api/dovecot/policy", post(dovecot::handler))
        .route("/api/events", get(ws::handler))
        .route("/metrics", get(metrics::handler))
        .route(
            "/api/queue",
            get({
                let shared = shared.clone();
                move || crate::delivery::api::list(shared.clone())
            }),
        )
        .route(
            "/api/migration",
            get({
                let shared = shared.clone();
                move || crate::migration::api(shared.clone())
            }),
        )
        // An unknown API path is a JSON 404 (behind the token too), not the web app.
        .route("/api/{*rest}", any(no_such_route))
        .route_layer(middleware::from_fn_with_state(api.clone(), require_token))
        .with_state(api);
    match web_root(&shared) {
        Some(root) => routes.fallback_service(ServeDir::new(root)),
        None => routes.fallback(placeholder),
    }
}

/// Kernel send buffer of each HTTP connection. Linux grows an unset one up to
/// `tcp_wmem` (4 MiB by default), which would let a dashboard that stopped reading
/// park megabytes of frames in the kernel instead of falling behind the broadcast
/// and resynchronising; a fixed size bounds that memory per client and makes the
/// lag path the one a stalled client takes. Ample for API answers on any link a
/// dashboard is watched over.
const HTTP_SEND_BUFFER: usize = 64 * 1024;

/// The HTTP listener with [`HTTP_SEND_BUFFER`] applied to every connection.
pub fn listener(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp: &mut tokio::net::TcpStream| {
        if let Err(e) = socket2::SockRef::from(&*tcp).set_send_buffer_size(HTTP_SEND_BUFFER) {
            tracing::debug!(error = %e, "cannot size an HTTP connection's send buffer");
        }
    })
}

fn web_root(shared: &Shared) -> Option<PathBuf> {
    let root = shared
        .config
        .http
        .web_root
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_WEB_ROOT));
    root.join("index.html").is_file().then_some(root)
}

/// A JSON error: `{"error": message, "field": name?}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    error: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            field: None,
        }
    }

    fn bad_field(field: &str, error: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(field.to_owned()),
            ..ApiError::new(StatusCode::BAD_REQUEST, error)
        }
    }

    fn not_found(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, error)
    }

    fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %error, "http request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: &self.error,
            field: self.field.as_deref(),
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"popgate\""),
            );
        }
        response
    }
}

/// `[http] admin_token`: when set, the API and metrics need it.
async fn require_token(State(api): State<Api>, request: Request, next: Next) -> Response {
    let token = api.shared.config.http.admin_token.as_str();
    let websocket = request.uri().path() == "/api/events";
    if token.is_empty() || presents_token(request.headers(), token, websocket) {
        next.run(request).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this server requires an admin token: Authorization: Bearer <token>",
        )
        .into_response()
    }
}

/// The cookie a browser may carry the token in for the WebSocket.
pub const TOKEN_COOKIE: &str = "popgate_token";
/// The WebSocket subprotocol prefix a browser may carry the token in.
pub const TOKEN_PROTOCOL_PREFIX: &str = "popgate.token.";

/// Whether the request carries `token`: as a bearer header always; as the cookie or
/// subprotocol only on the WebSocket (a cookie on every route would let any page the
/// browser visits make grant changes with it: cross-site request forgery).
fn presents_token(headers: &HeaderMap, token: &str, websocket: bool) -> bool {
    let values = |name| {
        headers
            .get_all(name)
            .into_iter()
            .filter_map(|v| v.to_str().ok())
    };
    let bearer = values(header::AUTHORIZATION).any(|v| {
        v.split_once(' ').is_some_and(|(scheme, value)| {
            scheme.eq_ignore_ascii_case("bearer") && same_secret(value.trim(), token)
        })
    });
    if bearer || !websocket {
        return bearer;
    }
    let cookie = values(header::COOKIE)
        .flat_map(|v| v.split(';'))
        .any(|pair| {
            pair.trim()
                .split_once('=')
                .is_some_and(|(name, value)| name == TOKEN_COOKIE && same_secret(value, token))
        });
    let protocol = values(header::SEC_WEBSOCKET_PROTOCOL)
        .flat_map(|v| v.split(','))
        .any(|p| {
            p.trim()
                .strip_prefix(TOKEN_PROTOCOL_PREFIX)
                .is_some_and(|value| same_secret(value, token))
        });
    cookie || protocol
}

/// Compare secrets in time independent of where they differ.
fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn no_such_route(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}",
        request.method(),
        request.uri().path()
    ))
}

/// The dashboard state, with `now` the server's clock.
async fn snapshot(State(api): State<Api>) -> Json<DashboardState> {
    let mut state = api.shared.events.with_state(DashboardState::clone);
    state.observe(api.shared.clock.now());
    Json(state)
}

#[derive(Serialize)]
struct SessionList {
    now: Millis,
    /// Oldest first, without transcripts.
    sessions: Vec<SessionView>,
}

async fn sessions(State(api): State<Api>) -> Json<SessionList> {
    let sessions = api.shared.events.with_state(|s| s.session_list());
    Json(SessionList {
        now: api.shared.clock.now(),
        sessions,
    })
}

async fn session(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    let Ok(n) = id.parse::<u64>() else {
        return Err(ApiError::bad_field(
            "id",
            format!("{id:?} is not a session id (a number)"),
        ));
    };
    api.shared
        .events
        .with_state(|s| s.sessions.get(&SessionId(n)).cloned())
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no session {n} (never seen, or no longer retained)"
            ))
        })
}

/// A grant as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct GrantRow {
    #[serde(flatten)]
    pub grant: GrantView,
    /// Milliseconds left, so a client need not trust its own clock.
    pub remaining_ms: u64,
}

impl GrantRow {
    fn new(grant: GrantView, now: Millis) -> GrantRow {
        GrantRow {
            remaining_ms: millis(now.until(grant.expires)),
            grant,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GrantList {
    pub now: Millis,
    /// Soonest expiry first.
    pub grants: Vec<GrantRow>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn list_grants(State(api): State<Api>) -> Result<Json<GrantList>, ApiError> {
    let list = api.shared.grants.list().await.map_err(store_error)?;
    let now = api.shared.clock.now();
    Ok(Json(GrantList {
        now,
        grants: list.into_iter().map(|g| GrantRow::new(g, now)).collect(),
    }))
}

/// A shared grant store that did not answer: 503, the request may be retried.
fn store_error(e: crate::grants::StoreError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// The body of `POST /api/grants`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    /// An address (one host) or a network in CIDR form.
    pub address: String,
    /// A humantime duration (`30m`, `2h`); absent: the configured `[grant] ttl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Messages it may relay; absent: the configured `max_messages`; 0: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

async fn add_grant(
    State(api): State<Api>,
    body: Bytes,
) -> Result<(StatusCode, Json<GrantRow>), ApiError> {
    let new: NewGrant = parse_body(&body)?;
    let key: Cidr = new
        .address
        .parse()
        .map_err(|e| ApiError::bad_field("address", format!("{e}")))?;
    let ttl = match &new.ttl {
        None => None,
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => {
                return Err(ApiError::bad_field("ttl", "ttl must be longer than zero"));
            }
            Ok(d) => Some(d),
            Err(e) => {
                return Err(ApiError::bad_field(
                    "ttl",
                    format!("{text:?} is not a duration such as 30m or 2h: {e}"),
                ));
            }
        },
    };
    if let Some(note) = &new.note
        && note.chars().count() > MAX_NOTE
    {
        return Err(ApiError::bad_field(
            "note",
            format!("note is longer than {MAX_NOTE} characters"),
        ));
    }
    let grant = api
        .shared
        .grants
        .add(key, OPERATOR_USER, ttl, new.messages, new.note)
        .await
        .map_err(store_error)?;
    let now = api.shared.clock.now();
    Ok((StatusCode::CREATED, Json(GrantRow::new(grant, now))))
}

/// A JSON body, with an error naming the field at fault.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // A missing field has no path yet: serde names it in backquotes.
        let field = if path != "." {
            Some(path)
        } else {
            message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned)
        };
        match field {
            Some(field) => ApiError::bad_field(&field, message),
            None => ApiError::new(StatusCode::BAD_REQUEST, format!("bad JSON body: {message}")),
        }
    })
}

async fn revoke_grant(
    State(api): State<Api>,
    Path(key): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // A bare address names the key a login from it would get (its /64 for IPv6), or
    // failing that the host itself; a CIDR names itself.
    let bare: Option<IpAddr> = key.trim().parse().ok();
    let named: Cidr = key
        .parse()
        .map_err(|e| ApiError::bad_field("key", format!("{e}")))?;
    let grants = &api.shared.grants;
    let mut keys = vec![named];
    if let Some(ip) = bare {
        keys.insert(0, grants.key_for(ip));
    }
    let mut revoked = None;
    for k in keys {
        if grants
            .revoke(k, reason::REVOKED)
            .await
            .map_err(store_error)?
        {
            revoked = Some(k);
            break;
        }
    }
    match revoked {
        Some(k) => Ok(Json(serde_json::json!({ "revoked": k }))),
        None => Err(ApiError::not_found(format!("no grant for {named}"))),
    }
}

async fn flush_grants(State(api): State<Api>) -> Result<Json<serde_json::Value>, ApiError> {
    let flushed = api.shared.grants.flush().await.map_err(store_error)?;
    Ok(Json(serde_json::json!({ "flushed": flushed })))
}

/// The raw text of a message: from the queue (relayed or captured mail), or from the
/// mailboxes the dashboard saw it delivered to (found by the id in our `Received:`
/// header among the newest messages there, so one removed by POP3 is gone).
async fn message(State(api): State<Api>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mailboxes = api.shared.events.with_state(|s| {
        s.messages
            .iter()
            .filter(|m| m.id == id)
            .flat_map(|m| m.delivered_to.clone())
            .collect::<Vec<String>>()
    });
    let shared = api.shared.clone();
    let lookup = id.clone();
    let found = tokio::task::spawn_blocking(move || find_message(&shared, &lookup, &mailboxes))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    match found {
        Some(bytes) => Ok((
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            bytes,
        )
            .into_response()),
        None => Err(ApiError::not_found(format!(
            "no message {id} in the queue or a recent delivery"
        ))),
    }
}

fn find_message(
    shared: &Shared,
    id: &str,
    mailboxes: &[String],
) -> std::io::Result<Option<Vec<u8>>> {
    match shared.queue.read_message(id) {
        Ok(Some(bytes)) => return Ok(Some(bytes)),
        Ok(None) => {}
        // Not a valid queue id: nothing the queue or a Received header would carry.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => return Ok(None),
        Err(e) => return Err(e),
    }
    // The id ends the `with ESMTP id <id>` clause: before a CRLF fold or the `;`.
    let needles = [format!(" id {id}\r\n"), format!(" id {id};")];
    for mailbox in mailboxes {
        let entries = shared.store.open(mailbox)?;
        for entry in entries.iter().rev().take(MAILDIR_SCAN_FILES) {
            let mut head = Vec::new();
            match std::fs::File::open(&entry.path) {
                Ok(file) => {
                    file.take(MAILDIR_SCAN_BYTES).read_to_end(&mut head)?;
                }
                // Moved to cur/ or removed meanwhile: read() below follows a move.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            let head = String::from_utf8_lossy(&head);
            let header_end = head.find("\r\n\r\n").unwrap_or(head.len());
            if needles
                .iter()
                .any(|n| head[..header_end].contains(n.as_str()))
            {
                return shared.store.read(entry);
            }
        }
    }
    Ok(None)
}

async fn placeholder() -> impl IntoResponse {
    Html(concat!(
        "<!doctype html><meta charset=utf-8><title>popgate</title>",
        "<h1>popgate</h1><p>The web app is not built. Run <code>cargo xtask run</code>, ",
        "which builds it with trunk and serves it here.</p>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).expect("header value"));
        }
        h
    }

    #[test]
    fn a_bearer_token_is_accepted_everywhere_a_cookie_or_subprotocol_only_on_the_websocket() {
        let bearer = headers(&[("authorization", "Bearer s3cret")]);
        assert!(presents_token(&bearer, "s3cret", false));
        assert!(presents_token(&bearer, "s3cret", true));
        let lower = headers(&[("authorization", "bearer s3cret")]);
        assert!(presents_token(&lower, "s3cret", false));
        let wrong = headers(&[("authorization", "Bearer s3cre")]);
        assert!(!presents_token(&wrong, "s3cret", true));
        let cookie = headers(&[("cookie", "theme=dark; popgate_token=s3cret")]);
        assert!(presents_token(&cookie, "s3cret", true));
        assert!(
            !presents_token(&cookie, "s3cret", false),
            "no cookie auth: CSRF"
        );
        let proto = headers(&[("sec-websocket-protocol", "popgate, popgate.token.s3cret")]);
        assert!(presents_token(&proto, "s3cret", true));
        assert!(!presents_token(&proto, "s3cret", false));
        assert!(!presents_token(&HeaderMap::new(), "s3cret", true));
    }

    #[test]
    fn body_errors_name_the_field() {
        let e = parse_body::<NewGrant>(br#"{"ttl":"1h"}"#).expect_err("missing address");
        assert_eq!(e.field.as_deref(), Some("address"));
        let e = parse_body::<NewGrant>(br#"{"address":"1.2.3.4","messages":-1}"#)
            .expect_err("negative");
        assert_eq!(e.field.as_deref(), Some("messages"));
        let e = parse_body::<NewGrant>(br#"{"address":"1.2.3.4","colour":1}"#)
            .expect_err("unknown field");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = parse_body::<NewGrant>(b"not json").expect_err("not json");
        assert_eq!((e.status, e.field), (StatusCode::BAD_REQUEST, None));
    }
}
