//! Serving: listeners, the per-connection drivers of core sessions, shutdown.
//!
//! The shape follows mini-redis `server.rs`: [`run`] binds every configured listener,
//! prints the readiness lines, and hands each accepted connection to a driver task;
//! a semaphore caps connections; shutdown is a watch channel that every driver selects
//! on, then we wait until every driver has dropped its handle. No protocol rule lives
//! here: drivers only move bytes and perform the effects core sessions ask for.
//!
//! * [`admission`]: who gets a session: PROXY headers from trusted load balancers,
//!   connections per client address.
//! * [`clock`]: the monotonic clock anchored to the wall clock at start.
//! * [`state`]: what every connection shares: config, grant table, users, stores, events.
//! * [`events`]: the event bus (bounded broadcast) and the key=value log lines.
//! * [`conn`]: a connection that may switch from plaintext to TLS mid-session.
//! * [`auth`]: verifying credentials with the per-address failure delay.
//! * [`driver`]: the generic loop that runs one core session over one connection.
//! * [`pop3`], [`smtp`], [`policy`]: performing each protocol's effects.
//! * [`http`]: the HTTP listener (health, grants API, the web app).

pub mod admission;
pub mod auth;
pub mod clock;
pub mod conn;
pub mod driver;
pub mod events;
pub mod http;
pub mod policy;
pub mod pop3;
pub mod smtp;
pub mod state;

use crate::config::Config;
use anyhow::Context;
use popgate_core::Protocol;
use state::Shared;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

/// How long in-flight sessions get to finish after shutdown is requested before
/// their tasks are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Run popgate until Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Signal handlers are installed before anything is announced, so a signal sent
    // right after `popgate: ready` shuts down gracefully rather than killing us.
    let signal = shutdown_signal()?;
    run_until(config, signal).await
}

/// Run popgate until `shutdown` completes (tests pass their own future).
pub async fn run_until(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // Bind first (ports below 1024 need root), then drop root before reading the data
    // folder or serving anyone (`[server] user`, see `privilege`).
    let listeners = bind_all(&config).await?;
    let http_listener = match &config.listen.http {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding http on {addr}"))?,
        ),
        None => None,
    };
    match crate::privilege::drop_to(&config.server)? {
        crate::privilege::Outcome::Dropped { user, uid, gid } => {
            tracing::info!("event=privileges_dropped user={user} uid={uid} gid={gid}")
        }
        crate::privilege::Outcome::Unchanged { root: true } => {
            tracing::warn!("running as root: set `[server] user` to serve as an unprivileged user")
        }
        _ => {}
    }
    if let Some(created) = crate::demo::ensure_demo_users(&config)? {
        tracing::info!(
            users = created.len(),
            file = %config.data_dir.join("demo-credentials.txt").display(),
            "created demo users"
        );
    }
    let (tls, generated) = crate::tls::Tls::load(&config)?;
    let shared = Shared::open(config, tls).await?;
    // Subscribed before any session starts, so the ledger misses none of their events.
    let migration = crate::migration::spawn(shared.clone());

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Every connection task holds a clone of `done_tx`; when all are gone, the
    // receiver yields None and shutdown is complete (mini-redis's pattern).
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    // One cap over every mail listener, and one per client address.
    let limit = Arc::new(Semaphore::new(shared.config.limits.max_connections));
    let per_address = Arc::new(admission::AddressCounts::default());

    let mut stdout = std::io::stdout().lock();
    if let Some(line) = generated {
        writeln!(stdout, "popgate: {line}")?;
    }
    for (name, listener) in &listeners {
        let addr = listener.local_addr()?;
        writeln!(stdout, "popgate: listening {} {addr}", name.name())?;
    }
    let http_addr = match http_listener {
        Some(listener) => {
            let bound = listener.local_addr()?;
            writeln!(stdout, "popgate: listening http {bound}")?;
            let app = http::router(shared.clone());
            let mut rx = shutdown_rx.clone();
            tokio::spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(http::listener(listener), app)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::error!(error = %e, "http server failed");
                }
            });
            Some(bound)
        }
        None => None,
    };
    writeln!(stdout, "popgate: ready")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(http = ?http_addr, "popgate ready");

    tokio::spawn(state::purge_grants(shared.clone(), shutdown_rx.clone()));
    tokio::spawn(crate::delivery::run(shared.clone(), shutdown_rx.clone()));
    #[cfg(unix)]
    tokio::spawn(reload_on_hangup(shared.clone(), shutdown_rx.clone()));

    for (protocol, listener) in listeners {
        tokio::spawn(accept_loop(
            shared.clone(),
            protocol,
            listener,
            limit.clone(),
            per_address.clone(),
            shutdown_rx.clone(),
            done_tx.clone(),
        ));
    }
    drop(done_tx);

    shutdown.await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, done_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("sessions still open after the grace period; closing them");
    }
    // After the last session: its events are counted and saved.
    migration.finish().await;
    Ok(())
}

async fn bind_all(config: &Config) -> anyhow::Result<Vec<(Protocol, TcpListener)>> {
    let listen = &config.listen;
    let wanted: [(Protocol, Option<SocketAddr>); 6] = [
        (Protocol::Smtp, listen.smtp),
        (Protocol::Submission, listen.submission),
        (Protocol::Smtps, listen.smtps),
        (Protocol::Pop3, listen.pop3),
        (Protocol::Pop3s, listen.pop3s),
        (Protocol::Policy, listen.policy),
    ];
    let mut bound = Vec::new();
    for (protocol, addr) in wanted {
        let Some(addr) = addr else { continue };
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {} on {addr}", protocol.name()))?;
        bound.push((protocol, listener));
    }
    Ok(bound)
}

async fn accept_loop(
    shared: Arc<Shared>,
    protocol: Protocol,
    listener: TcpListener,
    limit: Arc<Semaphore>,
    per_address: Arc<admission::AddressCounts>,
    mut shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let behind_proxy = shared.config.listen.proxy.contains(&protocol);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: log, back off a little, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = limit.clone().try_acquire_owned().ok();
        let shared = shared.clone();
        let per_address = per_address.clone();
        let shutdown = shutdown.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let _done = done;
            let Some(_permit) = permit else {
                tracing::warn!(
                    "event=refused peer={} listener={} reason=too_many_connections",
                    peer.ip(),
                    protocol.name()
                );
                return driver::refuse_busy(protocol, stream).await;
            };
            let mut stream = stream;
            let local = stream.local_addr().unwrap_or(peer);
            // Behind a load balancer the client is who the PROXY header names; the
            // header is believed only from `[listen] proxy_from`.
            let (peer, local) = if behind_proxy {
                let limits = &shared.config.limits;
                match admission::read_proxy_header(
                    &mut stream,
                    peer,
                    local,
                    &shared.config.listen.proxy_from,
                    limits.proxy_header_timeout,
                )
                .await
                {
                    Ok(addrs) => addrs,
                    Err(refusal) => {
                        tracing::warn!(
                            "event=refused peer={} listener={} reason={}",
                            peer.ip(),
                            protocol.name(),
                            refusal.reason()
                        );
                        return;
                    }
                }
            } else {
                (peer, local)
            };
            let max = shared.config.limits.max_connections_per_address;
            let Some(_slot) = per_address.try_acquire(peer.ip(), max) else {
                return admission::refuse_address(protocol, stream, peer.ip()).await;
            };
            driver::serve_connection(shared, protocol, stream, peer, local, shutdown).await
        });
    }
}

/// SIGHUP re-reads the TLS certificate and key; a bad pair is logged and the old
/// one stays in use.
#[cfg(unix)]
async fn reload_on_hangup(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install the SIGHUP handler; TLS reload disabled");
        return;
    };
    loop {
        tokio::select! {
            _ = hangup.recv() => match shared.tls.reload() {
                Ok(()) => tracing::info!(cert = %shared.tls.cert_path().display(), "TLS certificate reloaded"),
                Err(e) => tracing::error!(error = %format!("{e:#}"), "TLS reload failed; keeping the previous certificate"),
            },
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// A future that completes on SIGINT (Ctrl-C) or SIGTERM; the handlers are
/// registered when this returns, not when the future is first polled.
#[cfg(unix)]
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
    })
}

#[cfg(not(unix))]
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
