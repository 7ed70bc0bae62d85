//! `/api/events`: the dashboard's live stream over a WebSocket.
//!
//! Frames are JSON text, [`StreamMessage`]s: a snapshot first, then every event in
//! `seq` order. The shape follows axum's `examples/chat`: per socket a send task and a
//! receive task, and whichever ends first aborts the other; [`serve`] is written
//! against a generic `Sink`/`Stream`, so it is tested without a server.
//!
//! The mail path never waits for a browser: publishing is a send on a bounded
//! broadcast, which overwrites what a slow receiver has not read. A client that falls
//! that far behind gets `RecvError::Lagged` here and is sent a fresh snapshot
//! (counted in `popgate_ws_lagged_total`); one whose socket accepts nothing for
//! [`SEND_TIMEOUT`] is dropped (`popgate_ws_dropped_total`). Memory per stalled client
//! is its receiver's place in the shared ring plus one socket's write buffer
//! ([`MAX_WRITE_BUFFER`]).

use super::{Api, ApiError, TOKEN_PROTOCOL_PREFIX};
use crate::serve::events::EventBus;
use crate::serve::state::Shared;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use popgate_core::Event;
use popgate_core::dashboard::{DashboardState, StreamMessage};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};

/// The subprotocol the server selects when a client offers it.
pub const PROTOCOL: &str = "popgate";

/// A client whose socket takes nothing for this long is dropped.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of frames buffered for one socket beyond what the kernel holds.
const MAX_WRITE_BUFFER: usize = 4 << 20;

/// What a client may send: nothing is expected but control frames.
const MAX_CLIENT_MESSAGE: usize = 4096;

/// WebSocket counters for `/metrics`.
#[derive(Debug, Default)]
pub struct WsStats {
    pub clients: AtomicU64,
    pub lagged: AtomicU64,
    pub dropped: AtomicU64,
}

/// Where a stream's snapshots and events come from.
pub trait Source: Send + Sync + 'static {
    /// A snapshot and a receiver of exactly the events after it.
    fn subscribe(&self) -> (DashboardState, broadcast::Receiver<Event>);
}

impl Source for Shared {
    fn subscribe(&self) -> (DashboardState, broadcast::Receiver<Event>) {
        self.events.subscribe_with_snapshot(self.clock.now())
    }
}

impl Source for EventBus {
    fn subscribe(&self) -> (DashboardState, broadcast::Receiver<Event>) {
        self.subscribe_with_snapshot(popgate_core::Millis(0))
    }
}

pub(super) async fn handler(
    State(api): State<Api>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !same_origin(&headers) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-origin WebSocket refused: Origin must match Host",
        )
        .into_response();
    }
    let token = &api.shared.config.http.admin_token;
    let mut protocols = vec![PROTOCOL.to_owned()];
    if !token.is_empty() {
        // A browser that sent its token as a subprotocol must see one selected.
        protocols.push(format!("{TOKEN_PROTOCOL_PREFIX}{token}"));
    }
    upgrade
        .protocols(protocols)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            let (sink, stream) = socket.split();
            serve(sink, stream, api.shared, api.ws).await;
        })
}

/// No `Origin` (a non-browser client), or one naming the host the request was sent
/// to: a page elsewhere cannot read the stream through a visitor's browser (which
/// does not apply the same-origin policy to WebSockets).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(host)) = (
        origin.to_str(),
        headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    ) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

/// Counts a client for as long as it is connected.
struct Connected(Arc<WsStats>);

impl Connected {
    fn new(stats: Arc<WsStats>) -> Connected {
        stats.clients.fetch_add(1, Ordering::Relaxed);
        Connected(stats)
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Stream to one client until it leaves, its socket fails, or the bus closes.
pub async fn serve<S, R, E, Src>(sink: S, stream: R, source: Arc<Src>, stats: Arc<WsStats>)
where
    S: Sink<Message> + Send + Unpin + 'static,
    R: Stream<Item = Result<Message, E>> + Send + Unpin + 'static,
    E: Send + 'static,
    Src: Source,
{
    let _connected = Connected::new(stats.clone());
    let mut send = AbortOnDrop(tokio::spawn(send_frames(sink, source, stats)));
    let mut recv = AbortOnDrop(tokio::spawn(read_until_closed(stream)));
    // Whichever ends first, the other is aborted when both guards drop here (also
    // when this future itself is dropped).
    tokio::select! {
        _ = &mut send.0 => {}
        _ = &mut recv.0 => {}
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The snapshot, then events; a fresh snapshot after a lag.
async fn send_frames<S, Src>(mut sink: S, source: Arc<Src>, stats: Arc<WsStats>)
where
    S: Sink<Message> + Unpin,
    Src: Source,
{
    let (snapshot, mut events) = source.subscribe();
    let mut last = snapshot.seq;
    let mut frame = StreamMessage::Snapshot(snapshot);
    loop {
        // Frames already waiting go out in one write: flush only when this is the last
        // one the receiver holds (the next recv would wait), so a burst of events costs
        // one syscall, not one per event, and no frame is ever left unflushed.
        let flush = events.is_empty();
        if !send(&mut sink, &frame, flush).await {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        frame = loop {
            match events.recv().await {
                // Already in the snapshot (cannot happen with a receiver taken under
                // the bus's lock; cheap to keep the contract the client keeps too).
                Ok(event) if event.seq <= last => continue,
                Ok(event) => {
                    last = event.seq;
                    break StreamMessage::Event(event);
                }
                Err(RecvError::Lagged(missed)) => {
                    stats.lagged.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(missed, "dashboard client fell behind; sending a snapshot");
                    let (snapshot, fresh) = source.subscribe();
                    events = fresh;
                    last = snapshot.seq;
                    break StreamMessage::Snapshot(snapshot);
                }
                Err(RecvError::Closed) => {
                    let _ = sink.close().await;
                    return;
                }
            }
        };
    }
}

/// Queue one frame and, with `flush`, write out what is queued; false when the client
/// is gone or took nothing for [`SEND_TIMEOUT`].
async fn send<S: Sink<Message> + Unpin>(sink: &mut S, frame: &StreamMessage, flush: bool) -> bool {
    let text = match serde_json::to_string(frame) {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise a dashboard frame");
            return false;
        }
    };
    let write = async {
        sink.feed(Message::text(text)).await?;
        if flush { sink.flush().await } else { Ok(()) }
    };
    matches!(tokio::time::timeout(SEND_TIMEOUT, write).await, Ok(Ok(())))
}

/// The client sends nothing we act on; reading keeps pings answered and notices a
/// close.
async fn read_until_closed<R, E>(mut stream: R)
where
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    while let Some(Ok(message)) = stream.next().await {
        if let Message::Close(_) = message {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use popgate_core::event::EventKind;
    use popgate_core::{Millis, Protocol, SessionId};
    use tokio::sync::mpsc;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        h
    }

    #[test]
    fn origin_must_match_host() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8025")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8025"),
            ("origin", "http://127.0.0.1:8025")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "Mail.Example.Test"),
            ("origin", "https://mail.example.test")
        ])));
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:8026",
            "null",
            "http://127.0.0.1:8025.evil.example",
        ] {
            assert!(
                !same_origin(&headers(&[("host", "127.0.0.1:8025"), ("origin", origin)])),
                "{origin}"
            );
        }
        assert!(!same_origin(&headers(&[(
            "origin",
            "http://127.0.0.1:8025"
        )])));
    }

    fn opened(id: u64) -> Event {
        Event::new(
            Millis(10 + id),
            Some(SessionId(id)),
            EventKind::SessionOpened {
                protocol: Protocol::Smtp,
                peer: "192.0.2.1:1000".into(),
                local: "127.0.0.1:2525".into(),
                tls: false,
            },
        )
    }

    /// A sink that hands frames to the test as parsed [`StreamMessage`]s.
    fn frame_sink(
        tx: mpsc::UnboundedSender<StreamMessage>,
    ) -> impl Sink<Message, Error = ()> + Send + Unpin + 'static {
        Box::pin(futures_util::sink::unfold(
            tx,
            |tx, message: Message| async move {
                let text = message.into_text().map_err(|_| ())?;
                let frame = serde_json::from_str(text.as_str()).map_err(|_| ())?;
                tx.send(frame).map_err(|_| ())?;
                Ok::<_, ()>(tx)
            },
        ))
    }

    #[tokio::test]
    async fn sends_a_snapshot_then_events_in_order() {
        let bus = Arc::new(EventBus::new(true));
        bus.publish(opened(1), None);
        let (tx, mut frames) = mpsc::unbounded_channel();
        let stats = Arc::new(WsStats::default());
        let (client_tx, client_rx) = mpsc::unbounded_channel::<Result<Message, ()>>();
        let client = tokio_stream(client_rx);
        let task = tokio::spawn(serve(frame_sink(tx), client, bus.clone(), stats.clone()));
        let Some(StreamMessage::Snapshot(first)) = frames.recv().await else {
            panic!("the first frame is a snapshot");
        };
        assert_eq!(first.seq, 1);
        assert!(first.sessions.contains_key(&SessionId(1)));
        bus.publish(opened(2), None);
        bus.publish(opened(3), None);
        for want in [2, 3] {
            match frames.recv().await {
                Some(StreamMessage::Event(e)) => assert_eq!(e.seq, want),
                other => panic!("expected event {want}, got {other:?}"),
            }
        }
        assert_eq!(stats.clients.load(Ordering::Relaxed), 1);
        // The client closes: the receive task ends and aborts the send task.
        client_tx
            .send(Ok(Message::Close(None)))
            .expect("client stream open");
        task.await.expect("serve ends");
        assert_eq!(stats.clients.load(Ordering::Relaxed), 0);
        assert_eq!(stats.lagged.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_client_that_lags_gets_a_fresh_snapshot_and_continues() {
        let bus = Arc::new(EventBus::new(true));
        let stats = Arc::new(WsStats::default());
        // A sink that takes the first frame, then blocks on the second until the test
        // lets it go: a browser that stopped reading.
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let (blocked_tx, mut blocked) = mpsc::unbounded_channel::<()>();
        let (tx, mut frames) = mpsc::unbounded_channel();
        let sink = Box::pin(futures_util::sink::unfold(
            (tx, gate_rx, blocked_tx, 0u32),
            |(tx, mut gate, blocked_tx, sent), message: Message| async move {
                if sent == 1 {
                    blocked_tx.send(()).map_err(|_| ())?;
                    gate.wait_for(|open| *open).await.map_err(|_| ())?;
                }
                let text = message.into_text().map_err(|_| ())?;
                let frame: StreamMessage = serde_json::from_str(text.as_str()).map_err(|_| ())?;
                tx.send(frame).map_err(|_| ())?;
                Ok::<_, ()>((tx, gate, blocked_tx, sent + 1))
            },
        ));
        let (_client_tx, client_rx) = mpsc::unbounded_channel::<Result<Message, ()>>();
        let task = tokio::spawn(serve(
            sink,
            tokio_stream(client_rx),
            bus.clone(),
            stats.clone(),
        ));
        assert!(matches!(
            frames.recv().await,
            Some(StreamMessage::Snapshot(_))
        ));
        // Event 1 is taken from the receiver and held in the blocked send; then more
        // than the broadcast holds are published behind it.
        bus.publish(opened(1), None);
        blocked.recv().await.expect("the send of event 1 blocks");
        let total = crate::serve::events::EVENT_CAPACITY as u64 + 10;
        for id in 2..=total {
            bus.publish(opened(id), None);
        }
        gate_tx.send(true).expect("sink waiting");
        let seq = |frame: Option<StreamMessage>| match frame {
            Some(StreamMessage::Event(e)) => ("event", e.seq),
            Some(StreamMessage::Snapshot(s)) => ("snapshot", s.seq),
            None => ("end", 0),
        };
        assert_eq!(
            seq(frames.recv().await),
            ("event", 1),
            "the frame in flight"
        );
        assert_eq!(
            seq(frames.recv().await),
            ("snapshot", total),
            "a fresh snapshot"
        );
        assert_eq!(stats.lagged.load(Ordering::Relaxed), 1);
        bus.publish(opened(total + 1), None);
        assert_eq!(
            seq(frames.recv().await),
            ("event", total + 1),
            "and it continues"
        );
        task.abort();
    }

    /// A tokio receiver as a `Stream`.
    fn tokio_stream<T: Send + 'static>(
        rx: mpsc::UnboundedReceiver<T>,
    ) -> impl Stream<Item = T> + Send + Unpin + 'static {
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }
}
