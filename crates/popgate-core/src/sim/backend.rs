//! The simulated server's world, in memory: users, maildrops, the outbound queue, the
//! grant table and the login-failure throttle.
//!
//! Each effect is performed the way the server performs it (its POP3 and SMTP
//! performers and its shared credential check), in the same order and with the same
//! events, minus the IO: a maildrop is a list of messages, the queue a list of
//! relayed messages, and nothing ever fails for want of a disk.

use super::{Ctx, GrantCall, Log, LoginAnswer, ReserveAnswer, SimConfig};
use crate::event::{Event, EventKind};
use crate::grant::{GrantTable, GrantView, LoginGrant};
use crate::pop3::{MaildropResult, MessageMeta, MessageResult, Pop3Effect, Pop3Result, crlf_len};
use crate::relay::canonical_user as canonical;
use crate::sasl::{AuthResult, Credentials};
use crate::smtp::{
    Delivery, LookupResult, ReserveResult, SmtpEffect, SmtpResult, StoreResult, return_path_header,
};
use crate::throttle::{Throttle, ThrottleConfig};
use crate::time::Millis;
use std::collections::{BTreeMap, BTreeSet};

/// One stored message: its UIDL and its bytes as delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stored {
    uid: String,
    bytes: Vec<u8>,
}

/// One relayed message waiting in the outbound queue.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Queued {
    from: String,
    rcpts: Vec<String>,
    message: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct Backend {
    hostname: String,
    domains: Vec<String>,
    /// Canonical address to password.
    users: BTreeMap<String, String>,
    maildrops: BTreeMap<String, Vec<Stored>>,
    /// Maildrops a POP3 session holds (RFC 1939 §8: one session per maildrop).
    locks: BTreeSet<String>,
    queue: Vec<Queued>,
    grants: GrantTable,
    /// The server's defaults: 2 s after the first failure, doubling, at most 15 s.
    throttle: Throttle,
    throttle_config: ThrottleConfig,
    /// Messages stored so far, for unique UIDLs.
    stored: u64,
}

impl Backend {
    pub(crate) fn new(config: &SimConfig) -> Backend {
        let domains: Vec<String> = config
            .domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        let users = config
            .users
            .iter()
            .map(|(address, password)| (canonical(&domains, address), password.clone()))
            .collect();
        let throttle_config = ThrottleConfig::default();
        Backend {
            hostname: config.hostname.clone(),
            domains,
            users,
            maildrops: BTreeMap::new(),
            locks: BTreeSet::new(),
            queue: Vec::new(),
            grants: GrantTable::new(config.grant.clone()),
            throttle: Throttle::new(throttle_config.clone()),
            throttle_config,
            stored: 0,
        }
    }

    pub(crate) fn grants(&self, now: Millis) -> Vec<GrantView> {
        self.grants.list(now)
    }

    /// Expire what is due at `now` and return the next expiry, as the server's purge
    /// task does.
    pub(crate) fn purge(&mut self, now: Millis, log: &mut Log) -> Option<Millis> {
        let next = self.grants.purge(now);
        self.grant_events(log);
        next
    }

    pub(crate) fn maildrop(&self, address: &str) -> Vec<Vec<u8>> {
        self.maildrops
            .get(&canonical(&self.domains, address))
            .map(|messages| messages.iter().map(|m| m.bytes.clone()).collect())
            .unwrap_or_default()
    }

    pub(crate) fn queued(&self) -> Vec<(String, Vec<String>, Vec<u8>)> {
        self.queue
            .iter()
            .map(|q| (q.from.clone(), q.rcpts.clone(), q.message.clone()))
            .collect()
    }

    /// Perform one POP3 effect; `maildrop` is the user whose maildrop this connection
    /// holds.
    pub(crate) fn pop3(
        &mut self,
        now: Millis,
        ctx: &Ctx,
        maildrop: &mut Option<String>,
        effect: Pop3Effect,
        log: &mut Log,
    ) -> Option<Pop3Result> {
        match effect {
            Pop3Effect::Authenticate { credentials } => Some(Pop3Result::Auth(self.authenticate(
                now,
                ctx,
                &credentials,
                log,
            ))),
            Pop3Effect::Grant { user } => {
                // DESIGN: the grant is stored before the +OK is written.
                let grant = self.grants.login(now, ctx.client, &user, ctx.session());
                let answer = match grant {
                    LoginGrant::Created(grant) => LoginAnswer::Created { grant },
                    LoginGrant::Refreshed(grant) => LoginAnswer::Refreshed { grant },
                    LoginGrant::Denied => LoginAnswer::Denied,
                };
                log.grant_call(now, ctx.conn, GrantCall::Login { user, answer });
                self.grant_events(log);
                Some(Pop3Result::GrantDone)
            }
            Pop3Effect::OpenMaildrop { user } => {
                if !self.locks.insert(user.clone()) {
                    return Some(Pop3Result::Maildrop(MaildropResult::InUse));
                }
                let meta = self
                    .maildrops
                    .get(&user)
                    .map(|messages| {
                        messages
                            .iter()
                            .map(|m| MessageMeta {
                                uid: m.uid.clone(),
                                size: crlf_len(&m.bytes),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                *maildrop = Some(user);
                Some(Pop3Result::Maildrop(MaildropResult::Opened(meta)))
            }
            Pop3Effect::Retrieve { uid } => {
                let message = maildrop
                    .as_ref()
                    .and_then(|user| self.maildrops.get(user))
                    .and_then(|messages| messages.iter().find(|m| m.uid == uid));
                Some(Pop3Result::Message(match message {
                    Some(m) => MessageResult::Content(m.bytes.clone()),
                    None => MessageResult::Gone,
                }))
            }
            Pop3Effect::Update { user, delete } => {
                if let Some(messages) = self.maildrops.get_mut(&user) {
                    messages.retain(|m| !delete.contains(&m.uid));
                }
                Some(Pop3Result::Updated { ok: true })
            }
            Pop3Effect::CloseMaildrop { user } => {
                self.locks.remove(&user);
                *maildrop = None;
                None
            }
            // The driver runs the handshake; it never reaches here.
            Pop3Effect::StartTls => None,
        }
    }

    /// Perform one SMTP effect.
    pub(crate) fn smtp(
        &mut self,
        now: Millis,
        ctx: &Ctx,
        effect: SmtpEffect,
        log: &mut Log,
    ) -> Option<SmtpResult> {
        match effect {
            SmtpEffect::LookupLocal { address } => Some(SmtpResult::Lookup(
                if self.users.contains_key(&canonical(&self.domains, &address)) {
                    LookupResult::Exists
                } else {
                    LookupResult::Unknown
                },
            )),
            SmtpEffect::ReserveGrant => {
                let reserved = self.grants.reserve(now, ctx.client, ctx.session());
                let answer = match &reserved {
                    Ok(r) => ReserveAnswer::Reserved {
                        key: r.key,
                        user: r.user.clone(),
                    },
                    Err(reason) => ReserveAnswer::Refused { reason: *reason },
                };
                log.grant_call(now, ctx.conn, GrantCall::Reserve { answer });
                self.grant_events(log);
                Some(SmtpResult::Reserve(match reserved {
                    Ok(r) => ReserveResult::Reserved(r),
                    Err(refusal) => ReserveResult::Refused(refusal),
                }))
            }
            SmtpEffect::CommitGrant { key } => {
                log.grant_call(now, ctx.conn, GrantCall::Commit { key });
                self.grants.commit(now, key, ctx.session());
                self.grant_events(log);
                None
            }
            SmtpEffect::ReleaseGrant { key } => {
                log.grant_call(now, ctx.conn, GrantCall::Release { key });
                self.grants.release(now, key, ctx.session());
                self.grant_events(log);
                None
            }
            SmtpEffect::Deliver(delivery) => {
                Some(SmtpResult::Stored(self.store(now, ctx, delivery, log)))
            }
            SmtpEffect::Authenticate { credentials } => Some(SmtpResult::Auth(self.authenticate(
                now,
                ctx,
                &credentials,
                log,
            ))),
            // The driver runs the handshake; it never reaches here.
            SmtpEffect::StartTls => None,
        }
    }

    /// Verify credentials with the server's progressive failure delay per address,
    /// and its `LoginDelayed` / `AddressBlocked` events.
    fn authenticate(
        &mut self,
        now: Millis,
        ctx: &Ctx,
        credentials: &Credentials,
        log: &mut Log,
    ) -> AuthResult {
        if let Some(user) = self.verify(credentials) {
            self.throttle.success(ctx.client);
            return AuthResult::Ok { user };
        }
        let delay = self.throttle.failure(now, ctx.client);
        let failures = self.throttle.pending(now, ctx.client);
        let blocked = self.throttle.is_blocked(now, ctx.client);
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let session = Some(ctx.session());
        log.event(Event::new(
            now,
            session,
            EventKind::LoginDelayed { delay_ms, failures },
        ));
        if blocked && failures == self.throttle_config.block_after {
            log.event(Event::new(
                now,
                session,
                EventKind::AddressBlocked {
                    address: ctx.client.to_string(),
                    failures,
                },
            ));
        }
        AuthResult::Failed { delay }
    }

    /// The canonical user when the credentials are right. Only passwords: the
    /// simulated server offers neither APOP nor CRAM-MD5 (the server's defaults).
    fn verify(&self, credentials: &Credentials) -> Option<String> {
        let Credentials::Password { user, password, .. } = credentials else {
            return None;
        };
        let user = canonical(&self.domains, user);
        let stored = self.users.get(&user)?;
        (!password.expose().is_empty() && stored == password.expose()).then_some(user)
    }

    /// Make a message durable everywhere it goes, as the server's store does: every
    /// local mailbox with a `Return-Path:` (RFC 5321 §4.4), the queue for the rest.
    fn store(&mut self, now: Millis, ctx: &Ctx, delivery: Delivery, log: &mut Log) -> StoreResult {
        let mut mailboxes: Vec<String> = Vec::new();
        let mut remote: Vec<String> = Vec::new();
        for rcpt in &delivery.recipients {
            if rcpt.local {
                mailboxes.push(canonical(&self.domains, &rcpt.address));
            } else {
                remote.push(rcpt.address.clone());
            }
        }
        mailboxes.sort();
        mailboxes.dedup();
        remote.dedup();
        let return_path = return_path_header(&delivery.from);
        for mailbox in &mailboxes {
            self.stored += 1;
            let mut bytes = return_path.clone().into_bytes();
            bytes.extend_from_slice(&delivery.message);
            // Maildir-like base names: unique, stable, at most 70 characters.
            let uid = format!("{}.M{}.{}", now.0 / 1000, self.stored, self.hostname);
            self.maildrops
                .entry(mailbox.clone())
                .or_default()
                .push(Stored { uid, bytes });
        }
        if !remote.is_empty() {
            self.queue.push(Queued {
                from: delivery.from.clone(),
                rcpts: remote.clone(),
                message: delivery.message.clone(),
            });
        }
        let session = Some(ctx.session());
        for mailbox in mailboxes {
            log.event(Event::new(
                now,
                session,
                EventKind::MessageDelivered {
                    id: delivery.id.clone(),
                    mailbox,
                },
            ));
        }
        if !remote.is_empty() {
            log.event(Event::new(
                now,
                session,
                EventKind::MessageQueued {
                    id: delivery.id.clone(),
                    rcpts: remote,
                },
            ));
        }
        StoreResult::Stored
    }

    fn grant_events(&mut self, log: &mut Log) {
        while let Some(event) = self.grants.poll_event() {
            log.event(event);
        }
    }
}
