//! The app's state: core's [`DashboardState`] (the one reducer of core events) wrapped
//! with what only the page needs: the connection, a server clock, the selected session,
//! the open message and the throughput chart's samples.
//!
//! Plain Rust with no browser in it, so it is tested natively. Whatever feeds it (the
//! live WebSocket, or later the in-browser simulator) turns its input into [`Action`]s;
//! the views read [`UiState`] and never ask where the events came from.
//!
//! Local time is a monotonic reading in milliseconds (`performance.now()` in the
//! browser), passed in with each action. The browser's wall clock is never used: a
//! countdown is the server's `now` at the last snapshot (or the latest event time, if
//! later) plus the local time elapsed since, see [`ServerClock`].

use popgate_core::dashboard::{Counters, DashboardState, StreamMessage};
use popgate_core::{Millis, SessionId};
use std::collections::VecDeque;
use std::rc::Rc;

/// The connection to the event source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// Opening the stream; no snapshot yet.
    Connecting,
    /// A snapshot arrived and events follow.
    Live,
    /// The stream closed; the next attempt starts at local time `retry_at`.
    Reconnecting { retry_at: u64 },
}

/// Reconnection delay after `failures` consecutive failed attempts: 0.5 s doubling to
/// at most 10 s, so a restarting server is picked up quickly and a dead one is not
/// hammered.
pub fn reconnect_delay_ms(failures: u32) -> u64 {
    const FIRST: u64 = 500;
    const MAX: u64 = 10_000;
    FIRST.saturating_mul(1 << failures.min(16)).min(MAX)
}

/// The server's clock as seen from here: a server reading anchored to a local
/// monotonic reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerClock {
    server: Millis,
    local: u64,
}

impl ServerClock {
    /// The server time at local time `local`.
    pub fn at(&self, local: u64) -> Millis {
        Millis(
            self.server
                .0
                .saturating_add(local.saturating_sub(self.local)),
        )
    }

    /// A snapshot's `now`: the server's clock when it was taken. The snapshot is
    /// only as late as its transit time, so this is the anchor.
    pub fn reset(&mut self, server: Millis, local: u64) {
        *self = ServerClock { server, local };
    }

    /// An event stamped `at` arrived at `local`: the server's clock is at least `at`
    /// now, so an estimate behind it moves forward (never back).
    pub fn observe(&mut self, at: Millis, local: u64) {
        if at > self.at(local) {
            self.reset(at, local);
        }
    }
}

/// What the chart counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub messages: u64,
    pub sessions: u64,
}

impl Sample {
    fn totals(c: &Counters) -> Sample {
        Sample {
            messages: c.messages_accepted,
            sessions: c.sessions_by_protocol.values().sum(),
        }
    }
}

/// Messages accepted and sessions opened per time bucket (server time), from the
/// growth of the server's counters, so events the page missed during a lag still count
/// (in the bucket of the snapshot that brought them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Throughput {
    pub bucket_ms: u64,
    pub buckets: usize,
    /// (bucket start, counts), oldest first, at most `buckets` of them.
    samples: VecDeque<(u64, Sample)>,
    /// The totals last seen; `None` until the first snapshot.
    last: Option<Sample>,
}

impl Default for Throughput {
    fn default() -> Throughput {
        Throughput {
            bucket_ms: 10_000,
            buckets: 30,
            samples: VecDeque::new(),
            last: None,
        }
    }
}

impl Throughput {
    /// The first snapshot: the history it still holds (retained sessions and
    /// messages, with their times) fills the chart; from then on the counters' growth
    /// does.
    pub fn seed(&mut self, state: &DashboardState) {
        let window = self.bucket_ms * self.buckets as u64;
        let since = state.now.0.saturating_sub(window);
        let history = state
            .sessions
            .values()
            .map(|s| {
                (
                    s.opened,
                    Sample {
                        messages: 0,
                        sessions: 1,
                    },
                )
            })
            .chain(state.messages.iter().map(|m| {
                (
                    m.at,
                    Sample {
                        messages: 1,
                        sessions: 0,
                    },
                )
            }))
            .filter(|(at, _)| at.0 >= since);
        // Counted per bucket in place and added oldest first: the same as adding each
        // in time order, without a sort (a sort is a few KB of WebAssembly per type).
        let first = since - since % self.bucket_ms;
        let mut counts: Vec<Sample> = Vec::new();
        for (at, delta) in history {
            let i = usize::try_from((at.0 - first) / self.bucket_ms).unwrap_or(usize::MAX);
            // Nothing is later than the snapshot's `now`; a clock that says otherwise
            // must not size this list.
            if i > self.buckets {
                continue;
            }
            if i >= counts.len() {
                counts.resize(i.saturating_add(1), Sample::default());
            }
            counts[i].messages += delta.messages;
            counts[i].sessions += delta.sessions;
        }
        for (i, delta) in counts.into_iter().enumerate() {
            self.add(Millis(first + i as u64 * self.bucket_ms), delta);
        }
        self.last = Some(Sample::totals(&state.counters));
    }

    /// The counters were `totals` at server time `at`.
    pub fn record(&mut self, at: Millis, totals: &Counters) {
        let now = Sample::totals(totals);
        let Some(last) = self.last.replace(now) else {
            return;
        };
        // Counters that went down mean the server restarted: its totals start again, and
        // the drop is not throughput.
        let delta = Sample {
            messages: now.messages.saturating_sub(last.messages),
            sessions: now.sessions.saturating_sub(last.sessions),
        };
        self.add(at, delta);
    }

    fn add(&mut self, at: Millis, delta: Sample) {
        if delta == Sample::default() {
            return;
        }
        let start = at.0 - at.0 % self.bucket_ms;
        match self.samples.iter_mut().rev().find(|(s, _)| *s == start) {
            Some((_, sample)) => {
                sample.messages += delta.messages;
                sample.sessions += delta.sessions;
            }
            None => {
                // Callers go forward in time; a later bucket never precedes an earlier one.
                if self.samples.back().is_some_and(|(s, _)| *s > start) {
                    return;
                }
                self.samples.push_back((start, delta));
                while self.samples.len() > self.buckets {
                    self.samples.pop_front();
                }
            }
        }
    }

    /// The `buckets` most recent buckets up to the one holding `now`, oldest first,
    /// with empty buckets as zeros.
    pub fn series(&self, now: Millis) -> Vec<Sample> {
        let last = now.0 - now.0 % self.bucket_ms;
        (0..self.buckets as u64)
            .rev()
            .map(|back| {
                let start = last.saturating_sub(back * self.bucket_ms);
                // Before the epoch (tests with small times) there are no buckets.
                if back * self.bucket_ms > last {
                    return Sample::default();
                }
                self.samples
                    .iter()
                    .find(|(s, _)| *s == start)
                    .map(|(_, v)| *v)
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// The raw text of a message, as the message view shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    Loading,
    Loaded(String),
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageView {
    pub id: String,
    pub body: MessageBody,
}

/// Everything that changes the state.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// The source is opening a connection.
    Connecting,
    /// Frames that arrived together at local time `local`, in order.
    Frames {
        frames: Vec<StreamMessage>,
        local: u64,
    },
    /// The stream ended; the source tries again at local time `retry_at`.
    Disconnected {
        retry_at: u64,
    },
    /// Show a session's transcript (`None`: close it).
    Select(Option<SessionId>),
    /// Open the message view for a message id (its text is being fetched).
    OpenMessage(String),
    MessageLoaded {
        id: String,
        result: Result<String, String>,
    },
    CloseMessage,
    /// An operator action failed with this error (or `None`: dismiss the notice).
    Notice(Option<String>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct UiState {
    /// Core's view of sessions, grants, timeline and counters. Shared, so that a UI
    /// action clones a pointer, not every transcript.
    pub dash: Rc<DashboardState>,
    pub connection: Connection,
    pub clock: ServerClock,
    pub selected: Option<SessionId>,
    pub message: Option<MessageView>,
    pub notice: Option<String>,
    pub chart: Throughput,
    /// Snapshots received after the first: how often the page fell behind (or the
    /// connection dropped) and resynchronised.
    pub resyncs: u64,
    /// Events that arrived out of sequence (a gap in `seq`): shown, never hidden.
    pub gaps: u64,
    snapshots: u64,
}

impl Default for UiState {
    fn default() -> UiState {
        UiState {
            dash: Rc::new(DashboardState::default()),
            connection: Connection::Connecting,
            clock: ServerClock::default(),
            selected: None,
            message: None,
            notice: None,
            chart: Throughput::default(),
            resyncs: 0,
            gaps: 0,
            snapshots: 0,
        }
    }
}

impl UiState {
    /// The server's time at local time `local`.
    pub fn server_now(&self, local: u64) -> Millis {
        self.clock.at(local)
    }

    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Connecting => {
                // A reconnect keeps showing the last state until the new snapshot.
                if self.connection != Connection::Live {
                    self.connection = Connection::Connecting;
                }
            }
            Action::Frames { frames, local } => {
                for frame in frames {
                    self.frame(frame, local);
                }
            }
            Action::Disconnected { retry_at } => {
                self.connection = Connection::Reconnecting { retry_at };
            }
            Action::Select(id) => self.selected = id,
            Action::OpenMessage(id) => {
                self.message = Some(MessageView {
                    id,
                    body: MessageBody::Loading,
                });
            }
            Action::MessageLoaded { id, result } => {
                // A late answer for a message the user already left is dropped.
                if let Some(view) = self.message.as_mut().filter(|m| m.id == id) {
                    view.body = match result {
                        Ok(text) => MessageBody::Loaded(text),
                        Err(e) => MessageBody::Failed(e),
                    };
                }
            }
            Action::CloseMessage => self.message = None,
            Action::Notice(text) => self.notice = text,
        }
    }

    fn frame(&mut self, frame: StreamMessage, local: u64) {
        match frame {
            StreamMessage::Snapshot(state) => {
                self.clock.reset(state.now, local);
                if self.snapshots > 0 {
                    self.resyncs += 1;
                }
                if self.snapshots == 0 {
                    self.chart.seed(&state);
                } else {
                    self.chart.record(state.now, &state.counters);
                }
                self.snapshots += 1;
                self.dash = Rc::new(state);
                self.connection = Connection::Live;
            }
            StreamMessage::Event(event) => {
                let seq = self.dash.seq;
                // The core contract: events up to the snapshot's seq are in it already.
                // (Seq 0 means unnumbered, e.g. from a source with no event bus.)
                if event.seq != 0 && event.seq <= seq {
                    return;
                }
                if event.seq != 0 && seq != 0 && event.seq != seq + 1 {
                    self.gaps += 1;
                }
                self.clock.observe(event.at, local);
                let dash = Rc::make_mut(&mut self.dash);
                dash.apply(&event);
                self.chart.record(event.at, &dash.counters);
            }
        }
    }
}

#[cfg(test)]
mod tests;
