//! Performing the Postfix policy session's effects on the grant table.

use super::driver::Perform;
use super::state::Shared;
use popgate_core::SessionId;
use popgate_core::policy::{PolicyEffect, PolicyResult, PolicySession};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug)]
pub struct PolicyPerformer {
    shared: Arc<Shared>,
    id: SessionId,
}

impl PolicyPerformer {
    /// `_peer` is the Postfix smtpd connected to us; the SMTP client whose relay is
    /// decided is in each request.
    pub fn new(shared: Arc<Shared>, _peer: SocketAddr, id: SessionId) -> PolicyPerformer {
        PolicyPerformer { shared, id }
    }
}

impl Perform<PolicySession> for PolicyPerformer {
    async fn perform(&mut self, effect: PolicyEffect) -> Option<PolicyResult> {
        let id = self.id;
        match effect {
            PolicyEffect::ReserveGrant { client } => Some(PolicyResult::Reserve(
                self.shared.grants.reserve_for_relay(client, id).await,
            )),
            PolicyEffect::CommitGrant { key } => {
                self.shared.grants.commit(key, id).await;
                None
            }
            PolicyEffect::ReleaseGrant { key } => {
                self.shared.grants.release(key, id).await;
                None
            }
        }
    }
}
