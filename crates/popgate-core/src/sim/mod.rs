//! The in-browser simulator: popgate's own POP3 and SMTP sessions and grant table,
//! driven against an in-memory backend on a virtual clock.
//!
//! The explainer shows readers what a real popgate server says, so nothing here
//! imitates a protocol: every reply comes from [`Pop3Session`] and [`SmtpSession`],
//! every grant decision from [`GrantTable`]. This module only plays the part the
//! server's connection driver plays (the loop written in [`crate::driver`]) and
//! performs each effect the way the server does, minus the IO (see [`backend`]).
//!
//! * [`Simulator`]: connections from scripted clients, the virtual clock, outputs.
//! * [`backend`]: users, maildrops, the outbound queue, the grant table, the
//!   login-failure throttle, all in memory.
//! * [`scenario`](mod@scenario): scenarios as data (versioned JSON shipped in the crate).
//! * [`player`]: a scenario plus a simulator plus a position: step, seek, replay.
//!
//! # Calling contract
//!
//! ```text
//! let mut sim = Simulator::new(config);              // clock at config.start
//! let c = sim.connect(client_ip, Endpoint::Pop3);    // greeting produced
//! sim.send(c, b"USER taro@example.test\r\n");        // runs to quiescence
//! sim.advance(Duration::from_secs(1800));            // timeouts and expiry, in order
//! for out in sim.drain() { render(out) }             // Wire, GrantCall, Event
//! ```
//!
//! Time is the virtual clock alone: it moves only in [`Simulator::advance`], so a
//! scenario replays to the same outputs, byte for byte, every time.
//!
//! [`Pop3Session`]: crate::pop3::Pop3Session
//! [`SmtpSession`]: crate::smtp::SmtpSession
//! [`GrantTable`]: crate::grant::GrantTable

pub mod backend;
pub mod player;
pub mod scenario;
#[cfg(test)]
mod tests;

pub use player::Player;
pub use scenario::{
    ClientSpec, GrantSpec, Scenario, ScenarioConfig, ScenarioError, ScenarioStep, Text, UserSpec,
    scenario, scenarios,
};

use crate::driver::Session;
use crate::event::{Event, EventKind, Protocol, SessionId};
use crate::grant::{GrantConfig, GrantView, RelayRefusal};
use crate::net::Cidr;
use crate::pop3::{Pop3Config, Pop3Session};
use crate::relay::RelayPolicy;
use crate::smtp::{SmtpConfig, SmtpSession};
use crate::time::Millis;
use backend::Backend;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The TLS version and cipher a simulated handshake reports.
pub const TLS_VERSION: &str = "TLSv1.3";
pub const TLS_CIPHER: &str = "simulated";

/// The server's own address in events (`local`): TEST-NET-1 (RFC 5737), so no real
/// host is ever named.
pub const SERVER_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// Client bytes handed to a session at a time, as the server's driver reads them.
const READ_CHUNK: usize = 16 * 1024;

/// What a simulated server is set up with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    pub hostname: String,
    /// Local domains; the first is where bare login names live.
    pub domains: Vec<String>,
    /// `(address, password)`.
    pub users: Vec<(String, String)>,
    pub grant: GrantConfig,
    /// The virtual clock's reading when the simulation starts.
    pub start: Millis,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            hostname: "mail.example.test".to_owned(),
            domains: vec!["example.test".to_owned()],
            users: Vec::new(),
            grant: GrantConfig::default(),
            start: scenario::DEFAULT_START,
        }
    }
}

/// One simulated connection. Numbered from 1 in connection order, the same number as
/// its session's [`SessionId`], so events and wire lines name it alike.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ConnId(pub u32);

impl ConnId {
    /// The session on this connection, as events name it.
    pub fn session(self) -> SessionId {
        SessionId(u64::from(self.0))
    }
}

/// The listener a simulated client connects to (the server's defaults for each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// POP3 (RFC 1939), port 110: USER/PASS in the clear allowed, STLS offered.
    Pop3,
    /// POP3 over implicit TLS (RFC 8314), port 995.
    Pop3s,
    /// SMTP, port 25: relay on a POP-before-SMTP grant or after AUTH.
    Smtp,
    /// Message submission (RFC 6409), port 587: STARTTLS, then AUTH required.
    Submission,
}

impl Endpoint {
    pub fn protocol(self) -> Protocol {
        match self {
            Endpoint::Pop3 => Protocol::Pop3,
            Endpoint::Pop3s => Protocol::Pop3s,
            Endpoint::Smtp => Protocol::Smtp,
            Endpoint::Submission => Protocol::Submission,
        }
    }

    /// The well-known port, for the addresses events carry.
    pub fn port(self) -> u16 {
        match self {
            Endpoint::Pop3 => 110,
            Endpoint::Pop3s => 995,
            Endpoint::Smtp => 25,
            Endpoint::Submission => 587,
        }
    }

    pub fn is_pop3(self) -> bool {
        matches!(self, Endpoint::Pop3 | Endpoint::Pop3s)
    }
}

/// A question a session put to the grant table, with the table's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum GrantCall {
    /// A POP3 login verified: grant the client's address.
    Login { user: String, answer: LoginAnswer },
    /// The first relayed RCPT of an SMTP transaction: reserve one message.
    Reserve { answer: ReserveAnswer },
    /// The relayed message was accepted: the reservation is spent.
    Commit { key: Cidr },
    /// The transaction ended without a message: the reservation goes back.
    Release { key: Cidr },
}

/// The grant table's answer to a login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum LoginAnswer {
    Created {
        grant: GrantView,
    },
    Refreshed {
        grant: GrantView,
    },
    /// The address is in a deny range: no grant.
    Denied,
}

/// The grant table's answer to a reservation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum ReserveAnswer {
    Reserved { key: Cidr, user: String },
    Refused { reason: RelayRefusal },
}

/// Something that happened in the simulation, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SimOutput {
    /// A line on the wire, for the transcript and the sequence diagram. `text` is the
    /// raw line (lossy UTF-8, without its line ending), client lines exactly as sent:
    /// the reader typed or sees the scripted password anyway; annotating AUTH payloads
    /// is the renderer's choice. (Events, by contrast, are redacted as the server's.)
    Wire {
        at: Millis,
        conn: ConnId,
        client: IpAddr,
        endpoint: Endpoint,
        from_client: bool,
        text: String,
    },
    /// A session asked the grant table something, and the answer.
    GrantCall {
        at: Millis,
        conn: ConnId,
        call: GrantCall,
    },
    /// A core event, numbered from 1 without gaps, for the dashboard's views.
    Event(Event),
}

impl SimOutput {
    pub fn at(&self) -> Millis {
        match self {
            SimOutput::Wire { at, .. } | SimOutput::GrantCall { at, .. } => *at,
            SimOutput::Event(e) => e.at,
        }
    }
}

/// Outputs not yet drained, and the last event number given.
#[derive(Debug, Default)]
pub(crate) struct Log {
    seq: u64,
    items: Vec<SimOutput>,
}

impl Log {
    /// Number and record an event, as the server's event bus does.
    pub(crate) fn event(&mut self, mut event: Event) {
        self.seq += 1;
        event.seq = self.seq;
        self.items.push(SimOutput::Event(event));
    }

    pub(crate) fn grant_call(&mut self, at: Millis, conn: ConnId, call: GrantCall) {
        self.items.push(SimOutput::GrantCall { at, conn, call });
    }

    fn wire(&mut self, at: Millis, ctx: &Ctx, from_client: bool, text: String) {
        self.items.push(SimOutput::Wire {
            at,
            conn: ctx.conn,
            client: ctx.client,
            endpoint: ctx.endpoint,
            from_client,
            text,
        });
    }
}

/// What identifies a connection, for outputs and effects.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx {
    pub(crate) conn: ConnId,
    pub(crate) client: IpAddr,
    pub(crate) endpoint: Endpoint,
}

impl Ctx {
    pub(crate) fn session(&self) -> SessionId {
        self.conn.session()
    }
}

/// The socket's side of a connection: what the client sent that the session has not
/// read yet, and partial lines for the wire transcript.
#[derive(Debug, Default)]
struct Io {
    inbox: Vec<u8>,
    client_partial: Vec<u8>,
    server_partial: Vec<u8>,
    /// Implicit TLS: the handshake came first, but its event follows SessionOpened
    /// (as the server publishes it).
    implicit_tls: Option<Event>,
    /// The client dropped the connection, or the server closed it.
    gone: bool,
}

#[derive(Debug)]
enum AnySession {
    Pop3(Box<Pop3Session>),
    Smtp(Box<SmtpSession>),
}

impl AnySession {
    fn poll_timeout(&self) -> Option<Millis> {
        match self {
            AnySession::Pop3(s) => s.poll_timeout(),
            AnySession::Smtp(s) => s.poll_timeout(),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            AnySession::Pop3(s) => s.is_closed(),
            AnySession::Smtp(s) => s.is_closed(),
        }
    }
}

#[derive(Debug)]
struct Conn {
    ctx: Ctx,
    io: Io,
    session: AnySession,
    /// POP3: the user whose maildrop this connection holds locked.
    maildrop: Option<String>,
}

impl Conn {
    fn is_open(&self) -> bool {
        !self.io.gone && !self.session.is_closed()
    }
}

/// A popgate server in memory: see the module documentation.
#[derive(Debug)]
pub struct Simulator {
    now: Millis,
    pop3: Arc<Pop3Config>,
    smtp: Arc<SmtpConfig>,
    submission: Arc<SmtpConfig>,
    backend: Backend,
    conns: Vec<Conn>,
    log: Log,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Simulator {
        // The settings `popgate serve` gives each listener by default, so the
        // simulated replies are the ones a default server sends.
        let pop3 = Arc::new(Pop3Config {
            hostname: config.hostname.clone(),
            stls: true,
            ..Pop3Config::default()
        });
        let smtp_config = |relay: RelayPolicy, require_auth: bool| {
            Arc::new(SmtpConfig {
                hostname: config.hostname.clone(),
                local_domains: config.domains.clone(),
                relay,
                starttls: true,
                // RFC 6409 §4.3: submission requires AUTH.
                require_auth,
                ..SmtpConfig::default()
            })
        };
        let smtp = smtp_config(RelayPolicy::smtp_default(), false);
        let submission = smtp_config(RelayPolicy::submission_default(), true);
        Simulator {
            now: config.start,
            pop3,
            smtp,
            submission,
            backend: Backend::new(&config),
            conns: Vec::new(),
            log: Log::default(),
        }
    }

    /// The virtual clock.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// A client at `client` connects to `endpoint`: the session is created (over TLS
    /// for [`Endpoint::Pop3s`]) and its greeting produced.
    pub fn connect(&mut self, client: IpAddr, endpoint: Endpoint) -> ConnId {
        let number = u32::try_from(self.conns.len() + 1).unwrap_or(u32::MAX);
        let ctx = Ctx {
            conn: ConnId(number),
            client,
            endpoint,
        };
        // An ephemeral port per connection, so two clients behind one address are
        // still told apart in events.
        let port = 49_152u16.saturating_add(u16::try_from(number % 16_000).unwrap_or(0));
        let peer = SocketAddr::new(client, port);
        let local = SocketAddr::new(SERVER_ADDRESS, endpoint.port());
        let protocol = endpoint.protocol();
        let tls = endpoint == Endpoint::Pop3s;
        let session = match endpoint {
            Endpoint::Pop3 | Endpoint::Pop3s => AnySession::Pop3(Box::new(Pop3Session::new(
                self.pop3.clone(),
                ctx.session(),
                protocol,
                peer,
                local,
                tls,
                self.now,
            ))),
            Endpoint::Smtp | Endpoint::Submission => {
                let config = if endpoint == Endpoint::Smtp {
                    self.smtp.clone()
                } else {
                    self.submission.clone()
                };
                AnySession::Smtp(Box::new(SmtpSession::new(
                    config,
                    ctx.session(),
                    protocol,
                    peer,
                    local,
                    tls,
                    self.now,
                )))
            }
        };
        let implicit_tls = tls.then(|| {
            Event::new(
                self.now,
                Some(ctx.session()),
                EventKind::TlsStarted {
                    version: TLS_VERSION.to_owned(),
                    cipher: TLS_CIPHER.to_owned(),
                },
            )
        });
        self.conns.push(Conn {
            ctx,
            io: Io {
                implicit_tls,
                ..Io::default()
            },
            session,
            maildrop: None,
        });
        self.run(self.conns.len() - 1);
        ctx.conn
    }

    /// Client bytes arrive on `conn`; the session answers what it can. Ignored once the
    /// connection is closed (the server no longer reads it).
    pub fn send(&mut self, conn: ConnId, bytes: &[u8]) {
        let now = self.now;
        let Some(index) = self.index(conn) else {
            return;
        };
        let c = &mut self.conns[index];
        if !c.is_open() {
            return;
        }
        for text in split_lines(&mut c.io.client_partial, bytes) {
            self.log.wire(now, &c.ctx, true, text);
        }
        c.io.inbox.extend_from_slice(bytes);
        self.run(index);
    }

    /// The client drops the connection: the session lets go of what it held (a grant
    /// reservation, a maildrop lock).
    pub fn close(&mut self, conn: ConnId) {
        let now = self.now;
        let Some(index) = self.index(conn) else {
            return;
        };
        let c = &mut self.conns[index];
        if c.io.gone {
            return;
        }
        c.io.gone = true;
        match &mut c.session {
            AnySession::Pop3(s) => s.handle_disconnect(now),
            AnySession::Smtp(s) => s.handle_disconnect(now),
        }
        self.run(index);
    }

    /// The virtual clock jumps ahead by `by`. Every deadline on the way fires at its
    /// exact time, earliest first: a grant's expiry (before a session deadline at the
    /// same instant), a failed login's delay, an idle timeout.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now.saturating_add(by);
        loop {
            let grant_next = self.backend.purge(self.now, &mut self.log);
            let session_next = self
                .conns
                .iter()
                .filter(|c| c.is_open())
                .filter_map(|c| c.session.poll_timeout())
                .min();
            let next = grant_next.into_iter().chain(session_next).min();
            let Some(at) = next.filter(|&at| at <= target) else {
                break;
            };
            self.now = self.now.max(at);
            if grant_next == Some(at) {
                // The purge at the top of the loop removes it, at the new time.
                continue;
            }
            for index in 0..self.conns.len() {
                self.fire_timeout(index);
            }
        }
        self.now = target;
    }

    /// Everything that happened since the last drain, in order.
    pub fn drain(&mut self) -> Vec<SimOutput> {
        std::mem::take(&mut self.log.items)
    }

    /// The live grants, soonest expiry first.
    pub fn grants(&self) -> Vec<GrantView> {
        self.backend.grants(self.now)
    }

    /// Whether the connection is still up: neither side has closed it.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.index(conn).is_some_and(|i| self.conns[i].is_open())
    }

    /// Messages delivered to a local user (by address, any case; a bare name means the
    /// first local domain), oldest first, with the `Return-Path:` delivery added.
    pub fn maildrop(&self, address: &str) -> Vec<Vec<u8>> {
        self.backend.maildrop(address)
    }

    /// Relayed messages in the outbound queue: `(from, rcpts, message)`.
    pub fn queued(&self) -> Vec<(String, Vec<String>, Vec<u8>)> {
        self.backend.queued()
    }

    /// The endpoint and client address of a connection.
    pub fn connection(&self, conn: ConnId) -> Option<(IpAddr, Endpoint)> {
        self.index(conn)
            .map(|i| (self.conns[i].ctx.client, self.conns[i].ctx.endpoint))
    }

    fn index(&self, conn: ConnId) -> Option<usize> {
        let index = usize::try_from(conn.0).ok()?.checked_sub(1)?;
        (index < self.conns.len()).then_some(index)
    }

    /// Fire the session's timeout if it is due, and run it.
    fn fire_timeout(&mut self, index: usize) {
        let now = self.now;
        let c = &mut self.conns[index];
        if !c.is_open() || c.session.poll_timeout().is_none_or(|at| at > now) {
            return;
        }
        match &mut c.session {
            AnySession::Pop3(s) => s.handle_timeout(now),
            AnySession::Smtp(s) => s.handle_timeout(now),
        }
        self.run(index);
        // A session that still claims a past deadline broke its contract; close it
        // as the server's driver does rather than spin.
        let c = &mut self.conns[index];
        if c.is_open() && c.session.poll_timeout().is_some_and(|at| at <= now) {
            c.io.gone = true;
            match &mut c.session {
                AnySession::Pop3(s) => s.handle_disconnect(now),
                AnySession::Smtp(s) => s.handle_disconnect(now),
            }
            self.run(index);
        }
    }

    /// The driving loop of [`crate::driver`] for one connection, until the session
    /// waits for the client or the clock.
    fn run(&mut self, index: usize) {
        let now = self.now;
        let Simulator {
            conns,
            backend,
            log,
            ..
        } = self;
        let Conn {
            ctx,
            io,
            session,
            maildrop,
        } = &mut conns[index];
        let ctx = *ctx;
        match session {
            AnySession::Pop3(s) => drive(s.as_mut(), now, &ctx, io, log, |effect, log| {
                backend.pop3(now, &ctx, maildrop, effect, log)
            }),
            AnySession::Smtp(s) => drive(s.as_mut(), now, &ctx, io, log, |effect, log| {
                backend.smtp(now, &ctx, effect, log)
            }),
        }
        if session.is_closed() {
            // The server closes the socket once the session is over.
            io.gone = true;
        }
    }
}

/// One pass of the driver loop (see [`crate::driver`]), with the socket in memory.
fn drive<S: Session>(
    s: &mut S,
    now: Millis,
    ctx: &Ctx,
    io: &mut Io,
    log: &mut Log,
    mut perform: impl FnMut(S::Effect, &mut Log) -> Option<S::Result>,
) {
    loop {
        while let Some(bytes) = s.poll_transmit() {
            // Written to a connection the client already dropped: nobody reads it.
            if !io.gone {
                for text in split_lines(&mut io.server_partial, &bytes) {
                    log.wire(now, ctx, false, text);
                }
            }
        }
        while let Some(event) = s.poll_event() {
            log.event(event);
        }
        if let Some(event) = io.implicit_tls.take() {
            log.event(event);
        }
        if let Some(effect) = s.poll_effect() {
            if S::is_start_tls(&effect) {
                // The go-ahead is on the wire above; the handshake always succeeds
                // here. After a disconnect there is no handshake to run.
                if !io.gone {
                    s.handle_tls_established(now, TLS_VERSION.to_owned(), TLS_CIPHER.to_owned());
                }
                continue;
            }
            if let Some(result) = perform(effect, log) {
                s.handle_result(now, result);
            }
            continue;
        }
        if s.is_closed() || io.gone {
            break;
        }
        if s.wants_input() && !io.inbox.is_empty() {
            let take = io.inbox.len().min(READ_CHUNK);
            let chunk: Vec<u8> = io.inbox.drain(..take).collect();
            s.handle_input(now, &chunk);
            continue;
        }
        break;
    }
}

/// Complete lines of `bytes` after what `partial` held, without their line endings;
/// the unfinished rest stays in `partial`.
fn split_lines(partial: &mut Vec<u8>, bytes: &[u8]) -> Vec<String> {
    partial.extend_from_slice(bytes);
    let mut lines = Vec::new();
    while let Some(end) = partial.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = partial.drain(..=end).collect();
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        lines.push(String::from_utf8_lossy(line).into_owned());
    }
    lines
}
