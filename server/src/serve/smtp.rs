//! Performing the SMTP session's effects: recipient lookup, grants, durable storage.

use super::driver::Perform;
use super::state::Shared;
use popgate_core::event::EventKind;
use popgate_core::smtp::{
    Delivery, LookupResult, SmtpEffect, SmtpResult, SmtpSession, StoreResult, return_path_header,
};
use popgate_core::{Event, SessionId};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug)]
pub struct SmtpPerformer {
    shared: Arc<Shared>,
    peer: SocketAddr,
    id: SessionId,
}

impl SmtpPerformer {
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, id: SessionId) -> SmtpPerformer {
        SmtpPerformer { shared, peer, id }
    }

    fn lookup(&self, address: &str) -> LookupResult {
        if self.shared.users().exists(address) || self.shared.aliases.contains(address) {
            LookupResult::Exists
        } else {
            LookupResult::Unknown
        }
    }

    /// Local mailboxes and remote addresses a delivery goes to, aliases expanded.
    fn route(&self, delivery: &Delivery) -> (Vec<String>, Vec<String>) {
        let users = self.shared.users();
        let mut mailboxes: Vec<String> = Vec::new();
        let mut remote: Vec<String> = Vec::new();
        for rcpt in &delivery.recipients {
            if !rcpt.local {
                remote.push(rcpt.address.clone());
                continue;
            }
            let targets = self
                .shared
                .aliases
                .resolve(&rcpt.address)
                .unwrap_or_else(|| vec![rcpt.address.clone()]);
            for target in targets {
                if popgate_core::relay::is_local_address(&self.shared.config.domains, &target) {
                    mailboxes.push(users.canonical(&target));
                } else {
                    remote.push(target);
                }
            }
        }
        mailboxes.sort();
        mailboxes.dedup();
        remote.dedup();
        (mailboxes, remote)
    }

    /// Make the message durable everywhere it goes before answering: every local
    /// mailbox (tmp, fsync, link into new, fsync dir) and the queue for the rest.
    async fn store(&self, delivery: Delivery) -> StoreResult {
        let (mailboxes, remote) = self.route(&delivery);
        let shared = self.shared.clone();
        let id = delivery.id.clone();
        type Stored = (Vec<String>, Option<(String, Vec<String>)>);
        let stored = tokio::task::spawn_blocking(move || -> std::io::Result<Stored> {
            let return_path = return_path_header(&delivery.from);
            for mailbox in &mailboxes {
                shared
                    .store
                    .deliver(mailbox, &[return_path.as_bytes(), &delivery.message])?;
            }
            let queued = if remote.is_empty() {
                None
            } else {
                Some((
                    shared.queue.enqueue(
                        &delivery.id,
                        &delivery.from,
                        &remote,
                        &delivery.message,
                    )?,
                    remote,
                ))
            };
            crate::fault::point("after-fsync-before-reply")?;
            Ok((mailboxes, queued))
        })
        .await;
        let now = self.shared.clock.now();
        match stored {
            Ok(Ok((mailboxes, queued))) => {
                for mailbox in mailboxes {
                    self.publish(
                        now,
                        EventKind::MessageDelivered {
                            id: id.clone(),
                            mailbox,
                        },
                    );
                }
                if let Some((queue_id, rcpts)) = queued {
                    self.publish(
                        now,
                        EventKind::MessageQueued {
                            id: queue_id,
                            rcpts,
                        },
                    );
                }
                StoreResult::Stored
            }
            Ok(Err(e))
                if e.kind() == std::io::ErrorKind::StorageFull
                    || e.kind() == std::io::ErrorKind::QuotaExceeded =>
            {
                tracing::error!(error = %e, "storing message failed: disk full");
                StoreResult::DiskFull
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "storing message failed");
                StoreResult::TempFail
            }
            Err(_) => StoreResult::TempFail,
        }
    }

    fn publish(&self, now: popgate_core::Millis, kind: EventKind) {
        self.shared
            .events
            .publish(Event::new(now, Some(self.id), kind), Some(self.peer));
    }
}

impl Perform<SmtpSession> for SmtpPerformer {
    async fn perform(&mut self, effect: SmtpEffect) -> Option<SmtpResult> {
        let (peer, id) = (self.peer, self.id);
        match effect {
            SmtpEffect::LookupLocal { address } => Some(SmtpResult::Lookup(self.lookup(&address))),
            SmtpEffect::ReserveGrant => Some(SmtpResult::Reserve(
                self.shared.grants.reserve_for_relay(peer.ip(), id).await,
            )),
            SmtpEffect::CommitGrant { key } => {
                self.shared.grants.commit(key, id).await;
                None
            }
            SmtpEffect::ReleaseGrant { key } => {
                self.shared.grants.release(key, id).await;
                None
            }
            SmtpEffect::Deliver(delivery) => Some(SmtpResult::Stored(self.store(delivery).await)),
            SmtpEffect::Authenticate { credentials } => Some(SmtpResult::Auth(
                super::auth::authenticate(&self.shared, peer, id, credentials).await,
            )),
            // The driver performs the handshake itself; it never reaches here.
            SmtpEffect::StartTls => None,
        }
    }
}
