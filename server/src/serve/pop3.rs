//! Performing the POP3 session's effects: users, grants, the Maildir maildrop.

use super::driver::Perform;
use super::state::Shared;
use crate::maildir::{MaildropEntry, MaildropLock};
use popgate_core::SessionId;
use popgate_core::pop3::{
    MaildropResult, MessageMeta, MessageResult, Pop3Effect, Pop3Result, Pop3Session,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug)]
pub struct Pop3Performer {
    shared: Arc<Shared>,
    peer: SocketAddr,
    id: SessionId,
    maildrop: Option<OpenMaildrop>,
}

#[derive(Debug)]
struct OpenMaildrop {
    entries: HashMap<String, MaildropEntry>,
    /// Held for the life of the session's TRANSACTION state: one session per maildrop.
    _lock: MaildropLock,
}

impl Pop3Performer {
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, id: SessionId) -> Pop3Performer {
        Pop3Performer {
            shared,
            peer,
            id,
            maildrop: None,
        }
    }

    async fn open(&mut self, user: String) -> MaildropResult {
        let shared = self.shared.clone();
        let opened = tokio::task::spawn_blocking(move || {
            // RFC 2449 §8.1.2: held by a session here or on another node: [IN-USE].
            let Some(lock) = shared.store.lock(&user)? else {
                return Ok(None);
            };
            shared
                .store
                .open(&user)
                .map(|entries| Some((lock, entries)))
        })
        .await;
        match opened {
            Ok(Ok(None)) => MaildropResult::InUse,
            Ok(Ok(Some((lock, entries)))) => {
                let meta = entries
                    .iter()
                    .map(|e| MessageMeta {
                        uid: e.uid.clone(),
                        size: e.size,
                    })
                    .collect();
                let entries = entries.into_iter().map(|e| (e.uid.clone(), e)).collect();
                self.maildrop = Some(OpenMaildrop {
                    entries,
                    _lock: lock,
                });
                MaildropResult::Opened(meta)
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "opening maildrop failed");
                MaildropResult::Failed
            }
            Err(_) => MaildropResult::Failed,
        }
    }

    async fn retrieve(&self, uid: String) -> MessageResult {
        let Some(entry) = self
            .maildrop
            .as_ref()
            .and_then(|m| m.entries.get(&uid))
            .cloned()
        else {
            return MessageResult::Gone;
        };
        let shared = self.shared.clone();
        match tokio::task::spawn_blocking(move || shared.store.read(&entry)).await {
            Ok(Ok(Some(bytes))) => MessageResult::Content(bytes),
            Ok(Ok(None)) => MessageResult::Gone,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading message failed");
                MessageResult::Failed
            }
            Err(_) => MessageResult::Failed,
        }
    }

    async fn update(&self, delete: Vec<String>) -> bool {
        let Some(maildrop) = self.maildrop.as_ref() else {
            return delete.is_empty();
        };
        let entries: Vec<MaildropEntry> = delete
            .iter()
            .filter_map(|uid| maildrop.entries.get(uid))
            .cloned()
            .collect();
        let shared = self.shared.clone();
        let removed = tokio::task::spawn_blocking(move || {
            let refs: Vec<&MaildropEntry> = entries.iter().collect();
            shared.store.remove(&refs)
        })
        .await;
        match removed {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "removing messages failed");
                false
            }
            Err(_) => false,
        }
    }
}

impl Perform<Pop3Session> for Pop3Performer {
    async fn perform(&mut self, effect: Pop3Effect) -> Option<Pop3Result> {
        match effect {
            Pop3Effect::Authenticate { credentials } => Some(Pop3Result::Auth(
                super::auth::authenticate(&self.shared, self.peer, self.id, credentials).await,
            )),
            Pop3Effect::Grant { user } => {
                // DESIGN: the grant is stored before the reply is written; this call
                // returns only once it is in the store (or the store gave up: the login
                // still succeeds, and an event says no grant was stored).
                self.shared
                    .grants
                    .login_or_report(self.peer.ip(), &user, self.id, None)
                    .await;
                Some(Pop3Result::GrantDone)
            }
            Pop3Effect::OpenMaildrop { user } => Some(Pop3Result::Maildrop(self.open(user).await)),
            Pop3Effect::Retrieve { uid } => Some(Pop3Result::Message(self.retrieve(uid).await)),
            Pop3Effect::Update { delete, .. } => Some(Pop3Result::Updated {
                ok: self.update(delete).await,
            }),
            Pop3Effect::CloseMaildrop { .. } => {
                self.maildrop = None;
                None
            }
            // The driver performs the handshake itself; it never reaches here.
            Pop3Effect::StartTls => None,
        }
    }
}
