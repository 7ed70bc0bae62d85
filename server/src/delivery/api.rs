//! `GET /api/queue`: the outbound queue as JSON (what capture mode keeps, what
//! delivery is still trying), oldest first.

use crate::config::RelayMode;
use crate::queue::QueueEntry;
use crate::serve::state::Shared;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Serialize)]
pub struct QueueList {
    /// `deliver` or `capture`.
    pub mode: &'static str,
    pub messages: Vec<QueueEntry>,
}

/// The handler; the router adds it behind the admin token like every `/api` route.
pub async fn list(shared: Arc<Shared>) -> Response {
    let queue = shared.queue.clone();
    let mode = match shared.config.relay.mode {
        RelayMode::Deliver => "deliver",
        RelayMode::Capture => "capture",
    };
    match tokio::task::spawn_blocking(move || queue.list()).await {
        Ok(Ok(messages)) => Json(QueueList { mode, messages }).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "api: cannot list the queue");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({ "error": "cannot list the queue" })),
            )
                .into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
