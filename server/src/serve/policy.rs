//! Performing the Postfix policy session's effects on the grant table.

use super::driver::Perform;
use super::state::Shared;
use popgate_core::SessionId;
use popgate_core::policy::{PolicyEffect, PolicyResult, PolicySession};
use popgate_core::smtp::ReserveResult;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug)]
pub struct PolicyPerformer {
    shared: Arc<Shared>,
    /// The Postfix smtpd connected to us (the SMTP client is in each request).
    peer: SocketAddr,
    id: SessionId,
}

impl PolicyPerformer {
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, id: SessionId) -> PolicyPerformer {
        PolicyPerformer { shared, peer, id }
    }
}

impl Perform<PolicySession> for PolicyPerformer {
    async fn perform(&mut self, effect: PolicyEffect) -> Option<PolicyResult> {
        let now = self.shared.clock.now();
        let (peer, id) = (self.peer, self.id);
        match effect {
            PolicyEffect::ReserveGrant { client } => {
                let reserved = self
                    .shared
                    .with_grants(Some(peer), |g| g.reserve(now, client, id));
                Some(PolicyResult::Reserve(match reserved {
                    Ok(r) => ReserveResult::Reserved(r),
                    Err(refusal) => ReserveResult::Refused(refusal),
                }))
            }
            PolicyEffect::CommitGrant { key } => {
                self.shared
                    .with_grants(Some(peer), |g| g.commit(now, key, id));
                None
            }
            PolicyEffect::ReleaseGrant { key } => {
                self.shared
                    .with_grants(Some(peer), |g| g.release(now, key, id));
                None
            }
        }
    }
}
