//! `/metrics`: Prometheus text exposition format 0.0.4.
//!
//! Every figure comes from the dashboard's counters (totals since start, never trimmed
//! by retention), the WebSocket counters, and the queue folder.

use super::{Api, ApiError};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use popgate_core::Protocol;
use popgate_core::dashboard::Counters;
use std::fmt::Write;
use std::sync::atomic::Ordering;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every protocol, so each series exists from the start (a counter that appears only
/// after its first increment hides the first increase from `rate()`).
const PROTOCOLS: [Protocol; 7] = [
    Protocol::Smtp,
    Protocol::Submission,
    Protocol::Smtps,
    Protocol::Pop3,
    Protocol::Pop3s,
    Protocol::Policy,
    Protocol::Dovecot,
];

pub(super) async fn handler(State(api): State<Api>) -> Result<Response, ApiError> {
    let (counters, grants_live, events) = api
        .shared
        .events
        .with_state(|s| (s.counters.clone(), s.grants.len(), s.seq));
    let shared = api.shared.clone();
    let queue_depth = tokio::task::spawn_blocking(move || shared.queue.list().map(|l| l.len()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let ws = Ws {
        clients: api.ws.clients.load(Ordering::Relaxed),
        lagged: api.ws.lagged.load(Ordering::Relaxed),
        dropped: api.ws.dropped.load(Ordering::Relaxed),
    };
    let mut text = render(
        &counters,
        grants_live as u64,
        queue_depth as u64,
        events,
        &ws,
    );
    text.push_str(&crate::migration::metrics(&api.shared, &counters));
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

pub struct Ws {
    pub clients: u64,
    pub lagged: u64,
    pub dropped: u64,
}

/// The exposition text: for each metric `# HELP`, `# TYPE`, then its samples.
pub fn render(c: &Counters, grants_live: u64, queue_depth: u64, events: u64, ws: &Ws) -> String {
    let mut out = Text(String::new());
    let sessions: Vec<(String, u64)> = PROTOCOLS
        .iter()
        .map(|p| {
            let n = c.sessions_by_protocol.get(p.name()).copied().unwrap_or(0);
            (format!("protocol=\"{}\"", p.name()), n)
        })
        .collect();
    out.family(
        "popgate_sessions_total",
        "counter",
        "POP3 and SMTP sessions opened, by listener protocol.",
        &sessions,
    );
    out.one(
        "popgate_sessions_open",
        "gauge",
        "Sessions open now.",
        c.sessions_open,
    );
    out.family(
        "popgate_auth_total",
        "counter",
        "Logins (POP3 and SMTP AUTH) by result.",
        &[
            ("result=\"ok\"".into(), c.auth_ok),
            ("result=\"failed\"".into(), c.auth_failed),
        ],
    );
    out.one(
        "popgate_grants_live",
        "gauge",
        "Relay grants in the table now.",
        grants_live,
    );
    out.one(
        "popgate_grants_created_total",
        "counter",
        "Grants created by a login or by an operator.",
        c.grants_created,
    );
    out.one(
        "popgate_grants_refreshed_total",
        "counter",
        "Logins that refreshed a live grant.",
        c.grants_refreshed,
    );
    out.one(
        "popgate_grants_expired_total",
        "counter",
        "Grants that reached their expiry.",
        c.grants_expired,
    );
    out.one(
        "popgate_grants_revoked_total",
        "counter",
        "Grants revoked (operator, flush, user removed, eviction).",
        c.grants_revoked,
    );
    out.one(
        "popgate_grants_used_total",
        "counter",
        "Relayed messages committed against a grant.",
        c.grants_used,
    );
    out.family(
        "popgate_relay_decisions_total",
        "counter",
        "Recipient decisions: relayed by grant, auth or trust; local; denied; unknown user.",
        &[
            ("outcome=\"grant\"".into(), c.relay_by_grant),
            ("outcome=\"auth\"".into(), c.relay_by_auth),
            ("outcome=\"trusted\"".into(), c.relay_trusted),
            ("outcome=\"local\"".into(), c.relay_local),
            ("outcome=\"denied\"".into(), c.relay_denied),
            ("outcome=\"unknown_user\"".into(), c.relay_unknown_user),
        ],
    );
    out.one(
        "popgate_messages_accepted_total",
        "counter",
        "Messages answered 250 at end of data.",
        c.messages_accepted,
    );
    out.one(
        "popgate_messages_delivered_total",
        "counter",
        "Deliveries: one per local mailbox and per relayed recipient delivered.",
        c.messages_delivered,
    );
    out.one(
        "popgate_messages_queued_total",
        "counter",
        "Messages queued for relaying.",
        c.messages_queued,
    );
    out.one(
        "popgate_messages_deferred_total",
        "counter",
        "Outbound delivery attempts that left recipients for a retry.",
        c.messages_deferred,
    );
    out.one(
        "popgate_messages_bounced_total",
        "counter",
        "Outbound deliveries given up, with a bounce unless the sender was null.",
        c.messages_bounced,
    );
    out.one(
        "popgate_queue_depth",
        "gauge",
        "Messages in the outbound queue.",
        queue_depth,
    );
    out.one(
        "popgate_events_total",
        "counter",
        "Events published on the dashboard's stream.",
        events,
    );
    out.one(
        "popgate_ws_clients",
        "gauge",
        "Dashboard WebSocket clients connected.",
        ws.clients,
    );
    out.one(
        "popgate_ws_lagged_total",
        "counter",
        "Times a WebSocket client fell behind the event broadcast and was sent a fresh snapshot.",
        ws.lagged,
    );
    out.one(
        "popgate_ws_dropped_total",
        "counter",
        "WebSocket clients dropped because their socket took nothing for too long.",
        ws.dropped,
    );
    out.0
}

struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        let _ = writeln!(self.0, "{name} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_with_help_and_type() {
        let mut c = Counters::default();
        c.sessions_by_protocol.insert("pop3".into(), 2);
        c.auth_ok = 3;
        c.relay_denied = 1;
        let text = render(
            &c,
            1,
            4,
            9,
            &Ws {
                clients: 1,
                lagged: 0,
                dropped: 0,
            },
        );
        assert!(
            text.contains("popgate_sessions_total{protocol=\"pop3\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("popgate_sessions_total{protocol=\"smtp\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("popgate_auth_total{result=\"ok\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("popgate_relay_decisions_total{outcome=\"denied\"} 1\n"));
        assert!(text.contains("popgate_queue_depth 4\n"));
        assert!(text.contains("# TYPE popgate_ws_lagged_total counter\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            assert!(text.contains(&format!("# TYPE {name} ")), "{line}");
        }
    }
}
