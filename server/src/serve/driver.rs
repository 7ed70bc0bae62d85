//! The per-connection driver: runs one core session over one connection.
//!
//! This is the loop written in `popgate_core::driver`'s docs, over tokio IO. It owns
//! no protocol rule; it moves bytes, publishes events, and asks a [`Perform`]er to
//! carry out the session's effects.

use super::state::Shared;
use super::{pop3, smtp};
use popgate_core::Protocol;
use popgate_core::driver::Session;
use popgate_core::reply::{POP3_TOO_MANY_CONNECTIONS, TOO_MANY_CONNECTIONS};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Bytes read from the socket at a time. The session's `wants_input` bounds how much
/// unprocessed input it holds, so this is not a memory bound by itself.
const READ_CHUNK: usize = 16 * 1024;

/// Carries out the effects one session asks for.
pub trait Perform<S: Session> {
    /// Perform one effect; `Some` for effects that expect a result.
    fn perform(&mut self, effect: S::Effect) -> impl Future<Output = Option<S::Result>> + Send;
}

pub async fn serve_connection(
    shared: Arc<Shared>,
    protocol: Protocol,
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    // Mail sessions write small replies and wait for the answer: no Nagle delay.
    let _ = stream.set_nodelay(true);
    let id = shared.next_session_id();
    let now = shared.clock.now();
    if protocol.is_pop3() {
        let session = popgate_core::pop3::Pop3Session::new(
            shared.pop3_config.clone(),
            id,
            protocol,
            peer,
            local,
            false,
            now,
        );
        let performer = pop3::Pop3Performer::new(shared.clone(), peer, id);
        drive(&shared, session, performer, stream, peer, shutdown).await;
    } else {
        let session = popgate_core::smtp::SmtpSession::new(
            shared.smtp_config(protocol),
            id,
            protocol,
            peer,
            local,
            false,
            now,
        );
        let performer = smtp::SmtpPerformer::new(shared.clone(), peer, id);
        drive(&shared, session, performer, stream, peer, shutdown).await;
    }
}

/// Over the connection limit: one reply, then close (DESIGN reply table).
pub async fn refuse_busy(protocol: Protocol, mut stream: TcpStream) {
    let line = if protocol.is_pop3() {
        POP3_TOO_MANY_CONNECTIONS.line()
    } else {
        TOO_MANY_CONNECTIONS.line()
    };
    let _ = stream.write_all(line.as_bytes()).await;
    let _ = stream.shutdown().await;
}

pub async fn drive<S, P, IO>(
    shared: &Shared,
    mut session: S,
    mut performer: P,
    stream: IO,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Session + Send,
    P: Perform<S> + Send,
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut peer_gone = false;
    let mut shutdown_seen = *shutdown.borrow();
    if shutdown_seen {
        session.handle_shutdown(shared.clock.now());
    }
    loop {
        while let Some(bytes) = session.poll_transmit() {
            if !peer_gone && writer.write_all(&bytes).await.is_err() {
                peer_gone = true;
                session.handle_disconnect(shared.clock.now());
            }
        }
        while let Some(event) = session.poll_event() {
            shared.events.publish(event, Some(peer));
        }
        if let Some(effect) = session.poll_effect() {
            if let Some(result) = performer.perform(effect).await {
                session.handle_result(shared.clock.now(), result);
            }
            continue;
        }
        if session.is_closed() {
            break;
        }
        if peer_gone {
            // The session did not close on disconnect; nothing more can happen.
            break;
        }
        let deadline = session.poll_timeout().map(|at| shared.clock.instant_at(at));
        let reading = session.wants_input();
        tokio::select! {
            r = reader.read(&mut buf), if reading => match r {
                Ok(0) | Err(_) => {
                    peer_gone = true;
                    session.handle_disconnect(shared.clock.now());
                }
                Ok(n) => session.handle_input(shared.clock.now(), &buf[..n]),
            },
            _ = sleep_until(deadline), if deadline.is_some() => {
                session.handle_timeout(shared.clock.now());
            }
            r = shutdown.wait_for(|s| *s), if !shutdown_seen => {
                shutdown_seen = true;
                if r.is_ok() {
                    session.handle_shutdown(shared.clock.now());
                }
            }
            else => {
                // Not reading, no deadline, shutdown already seen: the session is
                // stuck by contract violation. Close rather than spin.
                tracing::error!(%peer, "session neither reading nor waiting; closing");
                session.handle_disconnect(shared.clock.now());
                peer_gone = true;
            }
        }
    }
    let _ = writer.shutdown().await;
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
