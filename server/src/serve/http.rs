//! The HTTP listener: health, the grant table, and the built web app at `/`.
//!
//! The full dashboard API (sessions, the event WebSocket, metrics, grant changes) is
//! the dashboard's work; this is the part the mail server itself needs now.

use super::state::Shared;
use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use popgate_core::grant::GrantView;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use tower_http::services::ServeDir;

/// Where `cargo xtask run` leaves the built web app, relative to the working folder.
const DEFAULT_WEB_ROOT: &str = "web/dist";

pub fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/api/health", get(health))
        .route("/api/grants", get(grants))
        .with_state(shared.clone());
    match web_root(&shared) {
        Some(root) => api.fallback_service(ServeDir::new(root)),
        None => api.fallback(placeholder),
    }
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

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

#[derive(Serialize)]
struct GrantRow {
    #[serde(flatten)]
    grant: GrantView,
    /// Milliseconds left, so a client need not trust its own clock.
    remaining_ms: u64,
}

#[derive(Serialize)]
struct GrantList {
    now: u64,
    grants: Vec<GrantRow>,
}

async fn grants(State(shared): State<Arc<Shared>>) -> Json<GrantList> {
    let now = shared.clock.now();
    let list = shared.with_grants(None, |g| g.list(now));
    let grants = list
        .into_iter()
        .map(|grant| GrantRow {
            remaining_ms: now.until(grant.expires).as_millis() as u64,
            grant,
        })
        .collect();
    Json(GrantList { now: now.0, grants })
}

async fn placeholder() -> impl IntoResponse {
    Html(concat!(
        "<!doctype html><meta charset=utf-8><title>popgate</title>",
        "<h1>popgate</h1><p>The web app is not built. Run <code>cargo xtask run</code>, ",
        "which builds it with trunk and serves it here.</p>"
    ))
}
