//! Verifying credentials for both protocols, with the progressive failure delay.
//!
//! Every failure from one address (across parallel connections) grows that address's
//! delay; other addresses are unaffected. The session applies the delay before it
//! answers, so unknown users and wrong passwords get the same reply after the same
//! wait. Each delay, and an address crossing into "blocked", is an event.

use super::state::Shared;
use crate::users::Verify;
use popgate_core::event::EventKind;
use popgate_core::sasl::{AuthResult, Credentials};
use popgate_core::{Event, SessionId};
use std::net::SocketAddr;
use std::sync::Arc;

pub async fn authenticate(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    id: SessionId,
    credentials: Credentials,
) -> AuthResult {
    let db = shared.users();
    let rehash_with = match &credentials {
        Credentials::Password { password, .. } if shared.config.users_rehash => {
            Some(password.clone())
        }
        _ => None,
    };
    // Password hashing is deliberately slow: keep it off the IO threads.
    let verdict = tokio::task::spawn_blocking(move || db.verify_credentials(&credentials)).await;
    let now = shared.clock.now();
    match verdict {
        Ok(Verify::Ok { user }) => {
            shared.with_throttle(|t| t.success(peer.ip()));
            if let Some(password) = rehash_with
                && shared.users().needs_rehash(&user)
            {
                let (shared, user) = (shared.clone(), user.clone());
                // The login succeeds whatever happens here; a failed rewrite is logged.
                let _ = tokio::task::spawn_blocking(move || match shared.rehash(&user, password.expose()) {
                    Ok(()) => tracing::info!("event=rehash user={user} scheme=ARGON2ID"),
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "event=rehash_failed user={user}"),
                })
                .await;
            }
            AuthResult::Ok { user }
        }
        Ok(Verify::Bad) => {
            let (delay, failures, blocked) = shared.with_throttle(|t| {
                let delay = t.failure(now, peer.ip());
                (
                    delay,
                    t.pending(now, peer.ip()),
                    t.is_blocked(now, peer.ip()),
                )
            });
            let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            let publish = |kind| {
                shared
                    .events
                    .publish(Event::new(now, Some(id), kind), Some(peer))
            };
            publish(EventKind::LoginDelayed { delay_ms, failures });
            if blocked && failures == shared.config.auth.block_after {
                publish(EventKind::AddressBlocked {
                    address: peer.ip().to_string(),
                    failures,
                });
            }
            AuthResult::Failed { delay }
        }
        Err(_) => AuthResult::TempFail,
    }
}
