//! Outbound delivery: the queue runner that takes relayed mail from the durable
//! queue (`crate::queue`) to the next hop, the way an MTA does.
//!
//! * [`route`]: transport map, smarthost, MX (then A/AAAA) through the DNS resolver.
//! * [`client`]: one connection driving core's SMTP client, STARTTLS included.
//! * [`api`]: `GET /api/queue`.
//! * [`dkim`]: DKIM signing of relayed mail of the configured domain (RFC 6376).
//!
//! The queue folder is the only truth. The runner lists it every
//! [`SCAN_INTERVAL`] (and whenever a delivery finishes); an entry whose
//! `next_attempt_at_unix_ms` has passed is handed to a job, one job per message at a
//! time. On start every entry is due at once, whatever its schedule said: a crash or a
//! restart never delays mail. A job groups the pending recipients by route, runs one
//! transaction per destination (under the overall and per-destination limits),
//! records every result in the envelope, bounces what failed for good (the DSN is
//! made durable before the recipients are marked bounced), and removes the entry only
//! when every recipient was delivered or bounced. Delivery is at least once: a crash
//! after the next hop's 250 but before the envelope is rewritten sends again.

pub mod api;
pub mod client;
pub mod dkim;
pub mod route;

use crate::config::RelayMode;
use crate::queue::{Attempt, QueueEntry, RecipientState, RecipientStatus};
use crate::serve::state::Shared;
use popgate_core::dsn::{self, Action, DsnRecipient, Report};
use popgate_core::smtp::return_path_header;
use popgate_core::smtp_client::{ClientConfig, Envelope, Failure, RcptOutcome};
use popgate_core::{Event, EventKind, Millis};
use route::{Route, Router};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// How often the queue folder is listed for new entries and `popgate queue retry`
/// marks: new mail leaves within this time.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// What every delivery job shares.
#[derive(Debug)]
struct Ctx {
    shared: Arc<Shared>,
    router: Router,
    overall: Arc<Semaphore>,
    /// One semaphore per destination (route key); entries stay for the process's
    /// life, one per destination ever used (small: a key per next hop).
    per_destination: Mutex<HashMap<String, Arc<Semaphore>>>,
    dsn_counter: AtomicU64,
    /// `[relay.dkim]`: the signer, when configured.
    dkim: Option<Arc<dkim::Signer>>,
}

impl Ctx {
    fn destination_limit(&self, key: &str) -> Arc<Semaphore> {
        let mut map = self
            .per_destination
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_owned())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(self.shared.config.relay.max_per_destination))
            })
            .clone()
    }

    fn now(&self) -> Millis {
        self.shared.clock.now()
    }
}

/// Run the queue runner until shutdown. In capture mode it returns at once: relayed
/// mail stays queued for viewing.
pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    if shared.config.relay.mode == RelayMode::Capture {
        tracing::info!("relay mode capture: relayed mail stays in the queue");
        return;
    }
    let router = match Router::new(shared.config.relay.clone()) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "delivery disabled: no DNS resolver");
            return;
        }
    };
    let dkim = match shared.config.relay.dkim.as_ref().map(dkim::Signer::load) {
        None => None,
        Some(Ok(signer)) => Some(Arc::new(signer)),
        Some(Err(e)) => {
            // Unsigned mail could fail the domain's DMARC policy: keep it queued.
            tracing::error!(error = %format!("{e:#}"), "delivery disabled: no DKIM key");
            return;
        }
    };
    let ctx = Arc::new(Ctx {
        overall: Arc::new(Semaphore::new(shared.config.relay.max_concurrency)),
        shared,
        router,
        per_destination: Mutex::new(HashMap::new()),
        dsn_counter: AtomicU64::new(0),
        dkim,
    });
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut jobs: JoinSet<String> = JoinSet::new();
    let mut first_scan = true;
    loop {
        let now = ctx.now();
        let mut wake = now.saturating_add(SCAN_INTERVAL);
        let queue = ctx.shared.queue.clone();
        match tokio::task::spawn_blocking(move || queue.list()).await {
            Ok(Ok(entries)) => {
                for entry in entries {
                    if in_flight.contains(&entry.id) {
                        continue;
                    }
                    let due = Millis(entry.next_attempt_at_unix_ms);
                    if first_scan || due <= now {
                        in_flight.insert(entry.id.clone());
                        let ctx = ctx.clone();
                        jobs.spawn(async move {
                            let id = entry.id.clone();
                            deliver_message(&ctx, entry).await;
                            id
                        });
                    } else {
                        wake = wake.min(due);
                    }
                }
                first_scan = false;
            }
            Ok(Err(e)) => tracing::error!(error = %e, "delivery: cannot list the queue"),
            Err(e) => tracing::error!(error = %e, "delivery: queue scan failed"),
        }
        let sleep = tokio::time::sleep_until(ctx.shared.clock.instant_at(wake));
        tokio::select! {
            _ = sleep => {}
            Some(done) = jobs.join_next(), if !jobs.is_empty() => {
                finished(&mut in_flight, done);
                while let Some(done) = jobs.try_join_next() {
                    finished(&mut in_flight, done);
                }
            }
            _ = shutdown.wait_for(|s| *s) => {
                // In-flight transactions are dropped; their messages stay queued and
                // are sent again after the restart (at least once).
                jobs.abort_all();
                return;
            }
        }
    }
}

fn finished(in_flight: &mut HashSet<String>, done: Result<String, tokio::task::JoinError>) {
    match done {
        Ok(id) => {
            in_flight.remove(&id);
        }
        Err(e) => {
            // A panicked job: its id is unknown here, so forget every in-flight id
            // the set no longer tracks correctly by rescanning from scratch.
            tracing::error!(error = %e, "delivery job failed");
            in_flight.clear();
        }
    }
}

/// One delivery round for one message.
async fn deliver_message(ctx: &Ctx, entry: QueueEntry) {
    let id = entry.id.clone();
    let queue = ctx.shared.queue.clone();
    let read_id = id.clone();
    let message = match tokio::task::spawn_blocking(move || {
        Ok::<_, std::io::Error>((queue.entry(&read_id)?, queue.read_message(&read_id)?))
    })
    .await
    {
        Ok(Ok((Some(entry), Some(message)))) => (entry, message),
        Ok(Ok(_)) => return, // deleted meanwhile
        Ok(Err(e)) => {
            tracing::error!(id = %id, error = %e, "delivery: cannot read the queued message");
            return;
        }
        Err(_) => return,
    };
    let (mut entry, message) = message;
    let message: Arc<[u8]> = Arc::from(message);
    let original = message.clone();
    let message = sign(ctx, &entry.from, message).await;
    let mut states = entry.recipient_states();
    let now = ctx.now();
    let relay = &ctx.shared.config.relay;

    let pending: Vec<usize> = (0..states.len())
        .filter(|&i| states[i].status == RecipientStatus::Pending)
        .collect();
    let mut results: Vec<(usize, RcptOutcome, Option<String>)> = Vec::new();

    if !pending.is_empty() && popgate_core::smtp::is_mail_loop(&message) {
        // RFC 5321 §6.3: a loop; never send it on.
        let f = Failure::permanent(
            "5.4.6",
            format!(
                "mail loop: more than {} Received header fields",
                popgate_core::smtp::MAX_RECEIVED_HEADERS
            ),
        );
        results.extend(
            pending
                .iter()
                .map(|&i| (i, RcptOutcome::Failed(f.clone()), None)),
        );
    } else if !pending.is_empty() {
        // Route each pending recipient; group by destination.
        let mut routes: BTreeMap<String, (Route, Vec<usize>)> = BTreeMap::new();
        let mut by_domain: HashMap<String, Result<Route, Failure>> = HashMap::new();
        for &i in &pending {
            let rcpt = &states[i].rcpt;
            let domain = rcpt
                .rsplit_once('@')
                .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
                .unwrap_or_default();
            if !by_domain.contains_key(&domain) {
                let r = ctx.router.route(&domain).await;
                by_domain.insert(domain.clone(), r);
            }
            match by_domain.get(&domain) {
                Some(Ok(route)) => {
                    routes
                        .entry(route.key())
                        .or_insert_with(|| (route.clone(), Vec::new()))
                        .1
                        .push(i);
                }
                Some(Err(f)) => results.push((i, RcptOutcome::Failed(f.clone()), None)),
                None => {}
            }
        }
        let mut transactions = JoinSet::new();
        for (key, (route, rcpts)) in routes {
            let envelope = Envelope {
                from: entry.from.clone(),
                recipients: rcpts.iter().map(|&i| states[i].rcpt.clone()).collect(),
            };
            let message = message.clone();
            let overall = ctx.overall.clone();
            let per = ctx.destination_limit(&key);
            let clock = ctx.shared.clock;
            let mut config = ClientConfig::new(ctx.shared.config.hostname.clone());
            config.tls = route.tls;
            config.auth = route.auth.clone();
            config.timeout = relay.timeout;
            let addresses = resolve_all(&ctx.router, &route).await;
            transactions.spawn(async move {
                let _overall = overall.acquire_owned().await;
                let _per = per.acquire_owned().await;
                let (outcome, host) =
                    transaction(clock, addresses, config, envelope, &message).await;
                (rcpts, outcome, host)
            });
        }
        while let Some(done) = transactions.join_next().await {
            let Ok((rcpts, outcomes, host)) = done else {
                continue;
            };
            for (i, outcome) in rcpts.into_iter().zip(outcomes) {
                results.push((i, outcome, host.clone()));
            }
        }
    }

    // Apply the round's results.
    let now_after = ctx.now();
    let mut delivered = Vec::new();
    let mut deferred: Vec<String> = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    for (i, outcome, host) in results {
        let state = &mut states[i];
        state.remote_mta = host.clone();
        match outcome {
            RcptOutcome::Delivered { reply } => {
                state.status = RecipientStatus::Delivered;
                state.status_code = "2.0.0".into();
                state.detail = reply.clone();
                state.reply = Some(reply.clone());
                tracing::info!(
                    "event=relay_delivered id={id} rcpt=<{}> host={} reply={reply:?}",
                    state.rcpt,
                    host.as_deref().unwrap_or("-")
                );
                delivered.push(state.rcpt.clone());
            }
            RcptOutcome::Failed(f) => {
                state.status_code = f.status.clone();
                state.detail = f.text.clone();
                state.reply = f.reply.clone();
                reasons.push(f.text.clone());
                if f.permanent {
                    state.status = RecipientStatus::Failed;
                } else {
                    deferred.push(state.rcpt.clone());
                }
            }
        }
    }
    entry.attempt_count = entry.attempt_count.saturating_add(1);
    entry.push_attempt(Attempt {
        at_unix_ms: now.0,
        host: states
            .iter()
            .filter_map(|s| s.remote_mta.clone())
            .next()
            .unwrap_or_else(|| "-".into()),
        result: reasons
            .first()
            .cloned()
            .unwrap_or_else(|| "delivered".into()),
    });

    // Too old: the pending recipients are given up (RFC 5321 §4.5.4.1).
    let expires = Millis(entry.queued_at_unix_ms).saturating_add(relay.max_age);
    let waits = &relay.retry;
    let wait = waits
        .get((entry.attempt_count as usize).saturating_sub(1))
        .or(waits.last())
        .copied()
        .unwrap_or(SCAN_INTERVAL);
    let next = now_after.saturating_add(wait);
    if now_after >= expires {
        for s in states
            .iter_mut()
            .filter(|s| s.status == RecipientStatus::Pending)
        {
            s.status = RecipientStatus::Failed;
            let last = std::mem::take(&mut s.detail);
            s.status_code = "4.4.7".into();
            s.detail = format!(
                "gave up after {} attempts over {}: {last}",
                entry.attempt_count,
                humantime::format_duration(relay.max_age)
            );
        }
        deferred.clear();
    }
    entry.next_attempt_at_unix_ms = next.min(expires.max(now_after)).0;
    entry.states = states;
    if !delivered.is_empty() {
        for rcpt in &delivered {
            ctx.shared.events.publish(
                Event::new(
                    now_after,
                    None,
                    EventKind::MessageDelivered {
                        id: id.clone(),
                        mailbox: rcpt.clone(),
                    },
                ),
                None,
            );
        }
    }
    if !deferred.is_empty() {
        let reason = reasons.first().cloned().unwrap_or_default();
        tracing::info!(
            "event=relay_deferred id={id} rcpts={} next_in_ms={} reason={reason:?}",
            deferred.len(),
            Millis(entry.next_attempt_at_unix_ms)
                .0
                .saturating_sub(now_after.0)
        );
        ctx.shared.events.publish(
            Event::new(
                now_after,
                None,
                EventKind::MessageDeferred {
                    id: id.clone(),
                    rcpts: deferred,
                    reason,
                    next_attempt: Millis(entry.next_attempt_at_unix_ms),
                },
            ),
            None,
        );
    }
    // Record who got the message before anything else: a crash from here on never
    // sends to them again.
    if !save(ctx, &entry).await {
        return;
    }
    // The bounce quotes the message as it was queued, without our signature.
    bounce_failed(ctx, &mut entry, &original).await;
    let done = entry.recipient_states().iter().all(|s| {
        matches!(
            s.status,
            RecipientStatus::Delivered | RecipientStatus::Bounced
        )
    });
    if done {
        let queue = ctx.shared.queue.clone();
        let del_id = id.clone();
        match tokio::task::spawn_blocking(move || queue.delete(&del_id)).await {
            Ok(Ok(_)) => tracing::info!("event=relay_done id={id}"),
            Ok(Err(e)) => {
                tracing::error!(id = %id, error = %e, "delivery: cannot remove the finished entry")
            }
            Err(_) => {}
        }
    }
}

/// The message as it goes on the wire: DKIM-signed when `[relay.dkim]` covers its
/// sender (RFC 6376 §5), else as queued. Signed every round, with that round's
/// `t=`; a signing failure sends it unsigned rather than holding it forever.
async fn sign(ctx: &Ctx, sender: &str, message: Arc<[u8]>) -> Arc<[u8]> {
    let Some(signer) = ctx.dkim.clone() else {
        return message;
    };
    if !signer.applies(sender, &message) {
        return message;
    }
    let now_secs = ctx.now().0 / 1000;
    let input = message.clone();
    // RSA is a few milliseconds of CPU: off the async workers.
    match tokio::task::spawn_blocking(move || signer.sign(&input, now_secs)).await {
        Ok(Ok(signed)) => Arc::from(signed),
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "delivery: DKIM signing failed; sent unsigned");
            message
        }
        Err(_) => message,
    }
}

/// Resolve every hop of a route to addresses, in order; DNS failures become the
/// hop's error (kept for the outcome when nothing else works).
async fn resolve_all(
    router: &Router,
    route: &Route,
) -> Vec<Result<(String, std::net::SocketAddr), Failure>> {
    let mut out = Vec::new();
    for hop in &route.hops {
        match router.addresses(hop).await {
            Ok(addrs) => out.extend(addrs.into_iter().map(|a| Ok((hop.host.clone(), a)))),
            Err(f) => out.push(Err(f)),
        }
    }
    out
}

/// RFC 5321 §5.1: try the addresses in order until one gives an answer that is not
/// "try elsewhere" (no connection, or a temporary failure for every recipient before
/// any was accepted).
async fn transaction(
    clock: crate::serve::clock::Clock,
    addresses: Vec<Result<(String, std::net::SocketAddr), Failure>>,
    config: ClientConfig,
    envelope: Envelope,
    message: &[u8],
) -> (Vec<RcptOutcome>, Option<String>) {
    let n = envelope.recipients.len();
    let mut last = Failure::temporary("4.4.1", "no next hop could be reached");
    let mut last_host = None;
    let mut any_permanent_dns = None;
    // Bound the hosts tried per round, like Postfix's smtp_mx_address_limit.
    for address in addresses.into_iter().take(5) {
        let (host, addr) = match address {
            Ok(pair) => pair,
            Err(f) => {
                if f.permanent {
                    any_permanent_dns = Some(f.clone());
                }
                last = f;
                continue;
            }
        };
        match client::deliver(
            clock,
            addr,
            &host,
            config.clone(),
            envelope.clone(),
            message,
        )
        .await
        {
            client::Attempt::NoConnection(text) => {
                tracing::info!("event=relay_connect_failed host={host} addr={addr} error={text:?}");
                last = Failure::temporary("4.4.1", text);
                last_host = Some(host);
            }
            client::Attempt::Ran(outcome) => {
                let all_temporary = outcome
                    .recipients
                    .iter()
                    .all(|(_, o)| matches!(o, RcptOutcome::Failed(f) if !f.permanent));
                let results: Vec<RcptOutcome> =
                    outcome.recipients.into_iter().map(|(_, o)| o).collect();
                if all_temporary {
                    if let Some(RcptOutcome::Failed(f)) = results.first() {
                        last = f.clone();
                    }
                    last_host = Some(host);
                    continue;
                }
                return (results, Some(host));
            }
        }
    }
    if last_host.is_none()
        && let Some(f) = any_permanent_dns
    {
        last = f;
    }
    (vec![RcptOutcome::Failed(last); n], last_host)
}

async fn save(ctx: &Ctx, entry: &QueueEntry) -> bool {
    let queue = ctx.shared.queue.clone();
    let e = entry.clone();
    match tokio::task::spawn_blocking(move || queue.update(&e)).await {
        Ok(Ok(true)) => true,
        Ok(Ok(false)) => false, // deleted by an operator meanwhile
        Ok(Err(e)) => {
            tracing::error!(id = %entry.id, error = %e, "delivery: cannot record the attempt");
            false
        }
        Err(_) => false,
    }
}

/// Bounce every recipient in `Failed`: build one DSN for them, make it durable (the
/// sender's local Maildir, or the queue with the null sender), then mark them
/// `Bounced`. A null sender gets no bounce (RFC 5321 §4.5.5); they are simply marked.
async fn bounce_failed(ctx: &Ctx, entry: &mut QueueEntry, message: &Arc<[u8]>) {
    let mut states = entry.recipient_states();
    let failed: Vec<usize> = (0..states.len())
        .filter(|&i| states[i].status == RecipientStatus::Failed)
        .collect();
    if failed.is_empty() {
        return;
    }
    let now = ctx.now();
    let rcpts: Vec<DsnRecipient> = failed.iter().map(|&i| dsn_recipient(&states[i])).collect();
    let report = Report {
        reporting_mta: &ctx.shared.config.hostname,
        queue_id: &entry.id,
        sender: &entry.from,
        arrival: Millis(entry.queued_at_unix_ms),
        now,
        recipients: &rcpts,
        original: message,
    };
    let reason = rcpts.first().map(|r| r.text.clone()).unwrap_or_default();
    let dsn_to = match dsn::bounce(&report) {
        None => None,
        Some(bounce) => match store_bounce(ctx, &entry.from, bounce).await {
            Ok(place) => Some(place),
            Err(e) => {
                // Not durable: keep them Failed and try the bounce again next round.
                tracing::error!(id = %entry.id, error = %e, "delivery: cannot store the bounce");
                entry.next_attempt_at_unix_ms = now.saturating_add(SCAN_INTERVAL).0;
                save(ctx, entry).await;
                return;
            }
        },
    };
    for &i in &failed {
        states[i].status = RecipientStatus::Bounced;
    }
    entry.states = states;
    let bounced: Vec<String> = rcpts.iter().map(|r| r.rcpt.clone()).collect();
    tracing::info!(
        "event=relay_bounced id={} rcpts={} dsn={} reason={reason:?}",
        entry.id,
        bounced.len(),
        dsn_to.as_deref().unwrap_or("none")
    );
    ctx.shared.events.publish(
        Event::new(
            now,
            None,
            EventKind::MessageBounced {
                id: entry.id.clone(),
                rcpts: bounced,
                reason,
                dsn: dsn_to,
            },
        ),
        None,
    );
    save(ctx, entry).await;
}

fn dsn_recipient(s: &RecipientState) -> DsnRecipient {
    DsnRecipient {
        rcpt: s.rcpt.clone(),
        action: Action::Failed,
        status: if s.status_code.is_empty() {
            "5.0.0".into()
        } else {
            s.status_code.clone()
        },
        reply: s.reply.clone(),
        remote_mta: s.remote_mta.clone(),
        text: s.detail.clone(),
    }
}

/// Deliver a bounce: to the sender's Maildir when the sender is a local user, else
/// into the queue (null reverse-path, so it can never bounce back). Returns where.
async fn store_bounce(ctx: &Ctx, sender: &str, bounce: Vec<u8>) -> std::io::Result<String> {
    let shared = ctx.shared.clone();
    let sender = sender.to_owned();
    let now = ctx.now();
    let n = ctx.dsn_counter.fetch_add(1, Ordering::Relaxed);
    let id = format!("{:X}.B.{n}", now.0);
    tokio::task::spawn_blocking(move || {
        let local = sender
            .rsplit_once('@')
            .is_some_and(|(_, d)| popgate_core::relay::is_local_domain(&shared.config.domains, d));
        if local {
            let users = shared.users();
            let targets = shared
                .aliases
                .resolve(&sender)
                .unwrap_or_else(|| vec![sender.clone()]);
            let mut stored = Vec::new();
            for target in targets {
                let mailbox = users.canonical(&target);
                if users.exists(&mailbox) {
                    // RFC 5321 §4.4: the bounce's Return-Path is the null path.
                    shared.store.deliver(&mailbox, &[return_path_header("").as_bytes(), &bounce])?;
                    stored.push(mailbox);
                }
            }
            if stored.is_empty() {
                tracing::warn!(sender = %sender, "delivery: bounce for an unknown local sender dropped");
                return Ok("dropped".to_owned());
            }
            return Ok(stored.join(","));
        }
        shared.queue.enqueue(&id, "", &[sender], &bounce)
    })
    .await
    .map_err(std::io::Error::other)?
}
