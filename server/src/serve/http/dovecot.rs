//! `POST /api/dovecot/policy`: Dovecot's authentication policy server, so a login to
//! Dovecot (IMAP or POP3) grants relay like a login to popgate's own POP3 does.
//!
//! Dovecot (`auth_policy_server_url = http://127.0.0.1:8025/api/dovecot/policy`) posts
//! each request with `?command=allow` or `?command=report`; what a request means is
//! core's rule ([`popgate_core::policy::dovecot_request`]). Every request is answered
//! "allow" (`{"status":0,"msg":""}`): popgate only listens, it never refuses a login.
//! A successful report makes the grant before the answer is written, with the same
//! deny ranges, limits, `require_tls` and table cap as a POP3 login.

use super::Api;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use popgate_core::event::{CloseReason, EventKind};
use popgate_core::net::Cidr;
use popgate_core::policy::{DOVECOT_ALLOW, DovecotVerdict, dovecot_request};
use popgate_core::{Event, Protocol};
use std::net::SocketAddr;

/// The reason a `GrantRefused` event gives when `[grant] require_tls` refuses a login
/// Dovecot did not call secured (the same words the POP3 session uses).
const TLS_REQUIRED: &str = "tls required";

pub(super) async fn handler(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let command = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("command="))
        .unwrap_or("");
    let verdict = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(json) => dovecot_request(command, &json),
        Err(e) => {
            tracing::warn!(error = %e, "dovecot policy request is not JSON; allowed, no grant");
            DovecotVerdict::Ignore
        }
    };
    if let DovecotVerdict::Grant {
        peer,
        user,
        protocol,
        tls,
    } = verdict
    {
        grant(&api, peer, &user, &protocol, tls).await;
    }
    ([(header::CONTENT_TYPE, "application/json")], DOVECOT_ALLOW).into_response()
}

/// A verified Dovecot login, told as a short session of its own (opened, login, grant,
/// closed) so the dashboard links the grant to it like to a POP3 session.
async fn grant(api: &Api, ip: std::net::IpAddr, user: &str, protocol: &str, tls: bool) {
    let shared = &api.shared;
    let id = shared.next_session_id();
    let peer = SocketAddr::new(ip, 0);
    let via = if protocol.is_empty() {
        "dovecot".to_owned()
    } else {
        format!("dovecot {protocol}")
    };
    let publish = |kind| {
        shared
            .events
            .publish(Event::new(shared.clock.now(), Some(id), kind), Some(peer))
    };
    publish(EventKind::SessionOpened {
        protocol: Protocol::Dovecot,
        peer: ip.to_string(),
        local: via.clone(),
        tls,
    });
    publish(EventKind::AuthSucceeded {
        user: user.to_owned(),
        mechanism: via.clone(),
    });
    if shared.config.grant.require_tls && !tls {
        publish(EventKind::GrantRefused {
            key: Cidr::host(ip),
            user: user.to_owned(),
            reason: TLS_REQUIRED.to_owned(),
        });
    } else {
        // A store that fails is reported (GrantRefused); Dovecot is answered all the same.
        shared
            .grants
            .login_or_report(ip, user, id, Some(via.clone()))
            .await;
    }
    publish(EventKind::SessionClosed {
        reason: CloseReason::Quit,
    });
}
