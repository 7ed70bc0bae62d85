//! The POP3 server session state machine.

use super::message::write_multiline;
use super::parse::{Command, ParseError, parse_command, redact, redact_continuation};
use super::{
    MaildropResult, MessageMeta, MessageResult, Pop3Config, Pop3Effect, Pop3Result, Pop3State,
};
use crate::Secret;
use crate::event::{CloseReason, Event, EventKind, Protocol, SessionId};
use crate::line::{Line, LineReader, is_foreign_protocol, starts_with_proxy_v2};
use crate::net::{Cidr, is_local_host};
use crate::reply::{self, Pop3Code, Pop3Reply};
use crate::sasl::{AuthResult, Credentials, Mechanism, SaslError, SaslExchange, Step};
use crate::time::Millis;
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The mechanism name events carry for USER/PASS logins.
const MECHANISM_USER: &str = "USER";

// Replies only this session sends. The ones users and scripts match on across the
// project live in `crate::reply`.
const GREETING: Pop3Reply = ok("popgate ready");
const SIGNING_OFF: Pop3Reply = ok("popgate signing off");
const USER_OK: Pop3Reply = ok("send PASS");
const NOOP_OK: Pop3Reply = ok("nothing to do");
const CAPA_OK: Pop3Reply = ok("Capability list follows");
const UIDL_OK: Pop3Reply = ok("unique-id listing follows");
const TOP_OK: Pop3Reply = ok("top of message follows");
const INVALID_BYTES: Pop3Reply = err(None, "NUL or invalid UTF-8 in command");
/// Another program removed the message after the snapshot (DESIGN.md: `-ERR`, not a
/// crash); the session goes on.
const MESSAGE_GONE: Pop3Reply = err(None, "Message no longer exists");
/// RFC 1939 §6: the wording the RFC gives for a failed UPDATE.
const NOT_REMOVED: Pop3Reply = err(Some(Pop3Code::SysTemp), "some deleted messages not removed");
/// RFC 2595 §4: the go-ahead for the TLS handshake (the RFC's own example text).
const STLS_OK: Pop3Reply = ok("Begin TLS negotiation");
const TLS_ACTIVE: Pop3Reply = err(None, "TLS already active");
/// `AUTH` without a mechanism: the list follows (as Dovecot answers it).
const AUTH_LIST_OK: Pop3Reply = ok("SASL mechanisms follow");
const UNSUPPORTED_MECHANISM: Pop3Reply = err(None, "Unsupported authentication mechanism");
/// RFC 5034 §4: a cancelled exchange is rejected with -ERR.
const AUTH_CANCELLED: Pop3Reply = err(None, "Authentication cancelled");
/// RFC 5034 §4: a response that does not decode is rejected with -ERR.
const BAD_BASE64: Pop3Reply = err(None, "Invalid base64 data");
const BAD_SASL_RESPONSE: Pop3Reply = err(None, "Invalid SASL response");
/// RFC 4616 §2: acting as another user is not supported.
const AUTHZID_MISMATCH: Pop3Reply = err(
    Some(Pop3Code::Auth),
    "Authorization identity must equal the authentication identity",
);

const fn ok(text: &'static str) -> Pop3Reply {
    Pop3Reply {
        ok: true,
        code: None,
        text,
    }
}

const fn err(code: Option<Pop3Code>, text: &'static str) -> Pop3Reply {
    Pop3Reply {
        ok: false,
        code,
        text,
    }
}

/// The effect whose result the session waits for; at most one at a time.
#[derive(Debug)]
enum Pending {
    Auth {
        claimed: String,
        mechanism: &'static str,
    },
    Grant {
        user: String,
    },
    Open {
        user: String,
    },
    Retrieve {
        index: usize,
        top: Option<u32>,
    },
    Update {
        removed: usize,
        left: usize,
    },
}

/// The snapshot taken at login, with the DELE marks. Present exactly while this
/// session holds the maildrop's lock.
#[derive(Debug)]
struct Maildrop {
    user: String,
    messages: Vec<MessageMeta>,
    deleted: Vec<bool>,
}

impl Maildrop {
    /// Messages not marked deleted, as (1-based number, meta).
    fn live(&self) -> impl Iterator<Item = (usize, &MessageMeta)> {
        self.messages
            .iter()
            .zip(&self.deleted)
            .enumerate()
            .filter(|(_, (_, deleted))| !**deleted)
            .map(|(i, (meta, _))| (i + 1, meta))
    }

    /// RFC 1939 §5 STAT: count and octets of the messages not marked deleted.
    fn stat(&self) -> (usize, u64) {
        self.live().fold((0, 0), |(n, octets), (_, m)| {
            (n + 1, octets.saturating_add(m.size))
        })
    }

    /// The message a client's number names, if it exists and is not marked deleted.
    fn get(&self, msg: u32) -> Result<(usize, &MessageMeta), Pop3Reply> {
        let index = usize::try_from(msg)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .filter(|&i| i < self.messages.len())
            .ok_or(reply::POP3_NO_SUCH_MESSAGE)?;
        if self.deleted[index] {
            return Err(reply::POP3_ALREADY_DELETED);
        }
        Ok((index, &self.messages[index]))
    }

    fn summary(&self) -> String {
        let (n, octets) = self.stat();
        format!("maildrop has {n} messages ({octets} octets)")
    }

    /// A TRANSACTION command against the snapshot (RFC 1939 §5, §6, §7).
    fn answer(&mut self, command: Command) -> Answer {
        match command {
            // RFC 1939 §5 STAT: exactly "+OK nn mm", which clients parse.
            Command::Stat => {
                let (n, octets) = self.stat();
                Answer::Line(format!("+OK {n} {octets}\r\n"))
            }
            Command::List { msg: None } => {
                let (n, octets) = self.stat();
                let body = self
                    .live()
                    .map(|(i, m)| format!("{i} {}\r\n", m.size))
                    .collect();
                Answer::Multi(format!("+OK {n} messages ({octets} octets)\r\n"), body)
            }
            Command::List { msg: Some(msg) } => match self.get(msg) {
                Ok((i, m)) => Answer::Line(format!("+OK {} {}\r\n", i + 1, m.size)),
                Err(e) => Answer::Reply(e),
            },
            // RFC 1939 §7 UIDL.
            Command::Uidl { msg: None } => {
                let body = self
                    .live()
                    .map(|(i, m)| format!("{i} {}\r\n", m.uid))
                    .collect();
                Answer::Multi(UIDL_OK.line(), body)
            }
            Command::Uidl { msg: Some(msg) } => match self.get(msg) {
                Ok((i, m)) => Answer::Line(format!("+OK {} {}\r\n", i + 1, m.uid)),
                Err(e) => Answer::Reply(e),
            },
            Command::Retr { msg } => self.retrieve(msg, None),
            Command::Top { msg, lines } => self.retrieve(msg, Some(lines)),
            Command::Dele { msg } => match self.get(msg) {
                Ok((i, _)) => {
                    // RFC 1939 §5 DELE: only marked; removed in UPDATE.
                    self.deleted[i] = true;
                    Answer::Line(format!("+OK message {msg} deleted\r\n"))
                }
                Err(e) => Answer::Reply(e),
            },
            Command::Noop => Answer::Reply(NOOP_OK),
            // RFC 1939 §5 RSET: unmark everything.
            Command::Rset => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                Answer::Line(format!("+OK {}\r\n", self.summary()))
            }
            Command::Quit => Answer::Update {
                user: self.user.clone(),
                delete: self
                    .messages
                    .iter()
                    .zip(&self.deleted)
                    .filter(|(_, deleted)| **deleted)
                    .map(|(m, _)| m.uid.clone())
                    .collect(),
                left: self.stat().0,
            },
            // RFC 1939 §7, RFC 5034 §4, RFC 2595 §4: logging in and STLS belong to
            // AUTHORIZATION only.
            Command::User { .. }
            | Command::Pass { .. }
            | Command::Apop { .. }
            | Command::Auth { .. }
            | Command::Stls => Answer::Reply(reply::POP3_BAD_SEQUENCE),
            // Answered before the state is looked at; here for exhaustiveness.
            Command::Capa => Answer::Reply(reply::POP3_BAD_SEQUENCE),
        }
    }

    fn retrieve(&self, msg: u32, top: Option<u32>) -> Answer {
        match self.get(msg) {
            Ok((index, m)) => Answer::Retrieve {
                index,
                uid: m.uid.clone(),
                top,
            },
            Err(e) => Answer::Reply(e),
        }
    }
}

/// A failed login's reply, held back for the server's progressive delay.
#[derive(Debug)]
struct Delayed {
    until: Millis,
    reply: Pop3Reply,
    /// The failure limit is reached: close after the reply.
    close: bool,
}

/// What a TRANSACTION command comes to.
enum Answer {
    Reply(Pop3Reply),
    /// One status line, CRLF included.
    Line(String),
    /// A status line and the body of a multi-line reply, without the terminator.
    Multi(String, String),
    Retrieve {
        index: usize,
        uid: String,
        top: Option<u32>,
    },
    Update {
        user: String,
        delete: Vec<String>,
        left: usize,
    },
}

/// A POP3 server session: a pure state machine with no socket and no clock.
///
/// The driver feeds it bytes, effect results, timeouts and the shutdown signal
/// (`handle_*`) and drains what it produces (`poll_*`): bytes to send, effects to
/// perform, events to publish. Every call that needs time takes `now`.
///
/// # Driving loop
///
/// ```text
/// let mut session = Pop3Session::new(config, id, protocol, peer, local, tls, now());
/// loop {
///     // 1. Send what the session wrote (a flush error counts as a disconnect).
///     while let Some(bytes) = session.poll_transmit() { socket.write_all(&bytes) }
///     // 2. Publish its events.
///     while let Some(event) = session.poll_event() { bus.publish(event) }
///     // 3. Perform one effect and feed its result back. At most one effect that
///     //    expects a result is outstanding; while it is, buffered input waits.
///     if let Some(effect) = session.poll_effect() {
///         // STLS (RFC 2595): the +OK went out in step 1; handshake on the socket,
///         // then tell the session (a failed handshake closes the connection).
///         if Pop3Session::is_start_tls(&effect) {
///             let (version, cipher) = tls_handshake(&mut socket)?;
///             session.handle_tls_established(now(), version, cipher);
///             continue;
///         }
///         // Some(result) exactly when effect.expects_result() (not CloseMaildrop).
///         if let Some(result) = backend.perform(effect) {
///             session.handle_result(now(), result);
///         }
///         continue;
///     }
///     // 4. Over: everything above is drained, close the socket.
///     if session.is_closed() { break }
///     // 5. Wait for input (only when wanted), the timeout, or shutdown.
///     select! {
///         n = socket.read(&mut buf), if session.wants_input() => match n {
///             0 | Err(_) => session.handle_disconnect(now()),
///             n => session.handle_input(now(), &buf[..n]),
///         },
///         // poll_timeout() None: no deadline, this branch never fires.
///         _ = sleep_until(session.poll_timeout()) => session.handle_timeout(now()),
///         _ = shutdown.changed() => session.handle_shutdown(now()),
///     }
/// }
/// ```
///
/// If the driver notices a disconnect while an effect is in flight, it still feeds
/// that effect's result: a maildrop locked for a vanished client is then released
/// with [`Pop3Effect::CloseMaildrop`].
///
/// A failed login's `-ERR` waits for the delay the driver returned with
/// `AuthResult::Failed { delay }`: meanwhile [`poll_timeout`](Self::poll_timeout) is
/// the end of the delay and no input is read.
///
/// Memory stays bounded: command lines are at most [`Pop3Config::max_line`] octets, and
/// [`wants_input`](Self::wants_input) is false while input cannot be consumed.
pub struct Pop3Session {
    config: Arc<Pop3Config>,
    id: SessionId,
    peer: SocketAddr,
    tls: bool,
    reader: LineReader,
    state: Pop3State,
    /// RFC 1939 §7: the name from USER, waiting for PASS.
    claimed: Option<String>,
    /// The canonical user whose maildrop this session opened.
    user: Option<String>,
    maildrop: Option<Maildrop>,
    pending: Option<Pending>,
    /// RFC 1939 §7: the greeting's timestamp, present exactly when APOP is offered.
    apop_timestamp: Option<String>,
    /// A SASL exchange waiting for the client's next continuation line (RFC 5034 §4).
    sasl: Option<(Mechanism, SaslExchange)>,
    /// STLS was accepted: nothing is read until the handshake is over.
    starting_tls: bool,
    /// Whether any input arrived yet (a PROXY v2 header can only come first).
    input_seen: bool,
    /// A failed login's reply waiting out its delay.
    delayed: Option<Delayed>,
    /// Failed logins in this session, against [`Pop3Config::max_auth_failures`].
    auth_failures: u32,
    /// Close at the next command boundary.
    shutting_down: bool,
    /// RFC 1939 §3 autologout: idle time counts from the last command (or the last
    /// answer the client had to wait for), not from stray bytes.
    idle_since: Millis,
    transmit: Vec<u8>,
    effects: VecDeque<Pop3Effect>,
    events: VecDeque<Event>,
}

impl fmt::Debug for Pop3Session {
    /// Leaves out buffered input and queued effects: they may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pop3Session")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("tls", &self.tls)
            .field("state", &self.state)
            .field("user", &self.user)
            .field("pending", &self.pending)
            .field("sasl", &self.sasl.as_ref().map(|(m, _)| m))
            .field("starting_tls", &self.starting_tls)
            .field("delayed", &self.delayed)
            .field("auth_failures", &self.auth_failures)
            .field("shutting_down", &self.shutting_down)
            .field("buffered", &self.reader.buffered())
            .finish_non_exhaustive()
    }
}

impl Pop3Session {
    /// A new session on an accepted connection: the greeting is queued and
    /// `SessionOpened` emitted.
    pub fn new(
        config: Arc<Pop3Config>,
        id: SessionId,
        protocol: Protocol,
        peer: SocketAddr,
        local: SocketAddr,
        tls: bool,
        now: Millis,
    ) -> Pop3Session {
        let reader = LineReader::new(config.max_line);
        let apop_timestamp = config.apop.then(|| unique_id(id, now, &config.hostname));
        let mut session = Pop3Session {
            config,
            id,
            peer,
            tls,
            reader,
            state: Pop3State::Authorization,
            claimed: None,
            user: None,
            maildrop: None,
            pending: None,
            apop_timestamp,
            sasl: None,
            starting_tls: false,
            input_seen: false,
            delayed: None,
            auth_failures: 0,
            shutting_down: false,
            idle_since: now,
            transmit: Vec::new(),
            effects: VecDeque::new(),
            events: VecDeque::new(),
        };
        session.event(
            now,
            EventKind::SessionOpened {
                protocol,
                peer: peer.to_string(),
                local: local.to_string(),
                tls,
            },
        );
        // RFC 1939 §4: the greeting opens the AUTHORIZATION state; RFC 1939 §7: with
        // APOP it ends with the timestamp the digest is computed over.
        match session.apop_timestamp.clone() {
            Some(timestamp) => {
                let text = format!("{} {timestamp}", GREETING.text);
                session.send_line(now, GREETING.line_with(&text));
            }
            None => session.send(now, GREETING),
        }
        session
    }

    /// Bytes read from the peer. Complete lines are answered in order (RFC 2449
    /// PIPELINING) until one needs an effect's result; the rest waits in the buffer.
    pub fn handle_input(&mut self, now: Millis, bytes: &[u8]) {
        // RFC 2595 §4: plaintext that arrives after STLS was accepted is never
        // executed, not even once TLS is up.
        if self.state == Pop3State::Closed || self.starting_tls {
            return;
        }
        // A PROXY v2 header on a listener not configured for PROXY: close at once
        // (its signature would read as empty lines, a NUL and QUIT).
        if !std::mem::replace(&mut self.input_seen, true) && starts_with_proxy_v2(bytes) {
            self.send(now, reply::POP3_FOREIGN_PROTOCOL);
            return self.close(now, CloseReason::Error);
        }
        self.reader.push(bytes);
        self.process(now);
        if self.reader.is_runaway() && self.state != Pop3State::Closed {
            // The -ERR went out when the line passed the limit; a line that still
            // has not ended is a flood, not a command (line::MAX_OVERLONG_LINE).
            self.close(now, CloseReason::Error);
        }
    }

    /// The result of the outstanding effect. A result nobody asked for is ignored; one
    /// of the wrong kind is taken as that effect's failure.
    pub fn handle_result(&mut self, now: Millis, result: Pop3Result) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        if self.state == Pop3State::Closed {
            // The peer left while the effect was in flight: give back what it took,
            // and still report what it did.
            match (pending, result) {
                (Pending::Open { user }, Pop3Result::Maildrop(MaildropResult::Opened(_))) => {
                    self.effects.push_back(Pop3Effect::CloseMaildrop { user });
                }
                (Pending::Update { removed, .. }, Pop3Result::Updated { ok: true }) => {
                    self.messages_removed(now, removed);
                }
                _ => {}
            }
            return;
        }
        self.idle_since = now;
        match pending {
            Pending::Auth { claimed, mechanism } => {
                let result = match result {
                    Pop3Result::Auth(r) => r,
                    _ => AuthResult::TempFail,
                };
                self.authenticated(now, claimed, mechanism, result);
            }
            // Any answer means the grant step is over; a store failure is the driver's
            // event to report, and the login goes on.
            Pending::Grant { user } => self.open_maildrop(user),
            Pending::Open { user } => {
                let result = match result {
                    Pop3Result::Maildrop(r) => r,
                    _ => MaildropResult::Failed,
                };
                self.maildrop_opened(now, user, result);
            }
            Pending::Retrieve { index, top } => {
                let result = match result {
                    Pop3Result::Message(r) => r,
                    _ => MessageResult::Failed,
                };
                self.retrieved(now, index, top, result);
            }
            Pending::Update { removed, left } => {
                let ok = matches!(result, Pop3Result::Updated { ok: true });
                self.updated(now, removed, left, ok);
            }
        }
        self.process(now);
    }

    /// Call when `now >= poll_timeout()`: a failed login's delay is over (its reply
    /// goes out), or the client idled too long. RFC 1939 §3: an idle client is logged
    /// out without entering UPDATE, so messages marked deleted stay.
    pub fn handle_timeout(&mut self, now: Millis) {
        if let Some(delayed) = &self.delayed {
            if now >= delayed.until {
                self.end_delay(now);
                self.process(now);
            }
            return;
        }
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => {
                self.send(now, reply::POP3_TIMEOUT);
                self.close(now, CloseReason::Timeout);
            }
            _ => {}
        }
    }

    /// The peer closed the connection (or it failed). RFC 1939 §6: no QUIT, no
    /// UPDATE; the maildrop is released untouched.
    pub fn handle_disconnect(&mut self, now: Millis) {
        if self.state != Pop3State::Closed {
            self.close(now, CloseReason::PeerClosed);
        }
    }

    /// The server is stopping: at the next command boundary (now, unless an effect is
    /// outstanding) answer `-ERR` and close without entering UPDATE.
    pub fn handle_shutdown(&mut self, now: Millis) {
        self.shutting_down = true;
        // A failed login's delay is cut short: stopping the server is not the moment
        // to hold a connection open for it.
        if self.delayed.is_some() {
            self.end_delay(now);
        }
        self.process(now);
    }

    /// The TLS handshake that [`Pop3Effect::StartTls`] asked for succeeded (RFC 2595
    /// §4). The session continues in AUTHORIZATION over TLS: `TlsStarted` is emitted,
    /// STLS is no longer offered, and cleartext logins are allowed.
    pub fn handle_tls_established(&mut self, now: Millis, version: String, cipher: String) {
        if self.state == Pop3State::Closed {
            return;
        }
        self.starting_tls = false;
        self.tls = true;
        self.idle_since = now;
        self.event(now, EventKind::TlsStarted { version, cipher });
        self.process(now);
    }

    /// Whether `effect` is [`Pop3Effect::StartTls`], which the driver answers with a
    /// TLS handshake and [`handle_tls_established`](Self::handle_tls_established)
    /// rather than a [`Pop3Result`].
    pub fn is_start_tls(effect: &Pop3Effect) -> bool {
        matches!(effect, Pop3Effect::StartTls)
    }

    /// Bytes to send, all queued so far.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.transmit.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.transmit))
        }
    }

    pub fn poll_effect(&mut self) -> Option<Pop3Effect> {
        self.effects.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout): the end of a failed
    /// login's delay, else the idle deadline. `None` while the session waits for an
    /// effect or a TLS handshake (the client is waiting on us, not idle) or is closed.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.state == Pop3State::Closed {
            None
        } else if let Some(delayed) = &self.delayed {
            Some(delayed.until)
        } else if self.pending.is_some() || self.starting_tls {
            None
        } else {
            Some(self.idle_since.saturating_add(self.config.idle_timeout))
        }
    }

    /// Whether the driver should read from the peer now. False while an effect result,
    /// a failed login's delay or a TLS handshake is awaited (input would only pile
    /// up), or while the buffer holds a full line's worth.
    pub fn wants_input(&self) -> bool {
        self.is_ready() && self.reader.buffered() <= self.config.max_line + 1
    }

    /// Whether the session is free to answer the next line.
    fn is_ready(&self) -> bool {
        self.state != Pop3State::Closed
            && self.pending.is_none()
            && self.delayed.is_none()
            && !self.starting_tls
    }

    /// Whether the session runs over TLS (implicit, or since STLS).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The session is over: flush [`poll_transmit`](Self::poll_transmit) and perform
    /// the remaining effects, then close the socket.
    pub fn is_closed(&self) -> bool {
        self.state == Pop3State::Closed
    }

    pub fn state(&self) -> Pop3State {
        self.state
    }

    /// Client bytes received and not yet answered (bounded by
    /// [`wants_input`](Self::wants_input) and [`Pop3Config::max_line`]).
    pub fn buffered(&self) -> usize {
        self.reader.buffered()
    }

    /// The canonical user whose maildrop this session opened.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Answer buffered lines until one needs an effect, the buffer runs dry, or the
    /// session closes.
    fn process(&mut self, now: Millis) {
        while self.is_ready() {
            if self.shutting_down {
                self.send(now, reply::POP3_SHUTTING_DOWN);
                self.close(now, CloseReason::ShuttingDown);
                return;
            }
            let Some(line) = self.reader.next_line() else {
                return;
            };
            self.idle_since = now;
            if let Some((mechanism, exchange)) = self.sasl.take() {
                self.sasl_continue(now, mechanism, exchange, line);
                continue;
            }
            match line {
                // The reader already skips to the next LF: the session goes on.
                Line::TooLong => self.send(now, reply::POP3_LINE_TOO_LONG),
                Line::Complete(line) => {
                    self.event(
                        now,
                        EventKind::ClientLine {
                            line: redact(&line),
                        },
                    );
                    // An HTTP request or a PROXY v1 header: not a mail client.
                    if is_foreign_protocol(&line) {
                        self.send(now, reply::POP3_FOREIGN_PROTOCOL);
                        return self.close(now, CloseReason::Error);
                    }
                    match parse_command(&line) {
                        Ok(command) => self.execute(now, command),
                        Err(ParseError::InvalidBytes) => self.send(now, INVALID_BYTES),
                        Err(ParseError::UnknownCommand) => {
                            self.send(now, reply::POP3_UNKNOWN_COMMAND)
                        }
                        Err(ParseError::BadArgument) => self.send(now, reply::POP3_BAD_ARGUMENT),
                    }
                }
            }
        }
    }

    fn execute(&mut self, now: Millis, command: Command) {
        use Pop3State::{Authorization, Transaction};
        match (self.state, command) {
            // RFC 2449 §5: CAPA in both states.
            (_, Command::Capa) => self.capa(now),

            // RFC 1939 §7 USER / PASS.
            (Authorization, Command::User { .. } | Command::Pass { .. })
                if !self.plaintext_allowed() =>
            {
                self.claimed = None;
                self.send(now, reply::POP3_ENCRYPTION_REQUIRED);
            }
            (Authorization, Command::User { name }) => {
                // Always +OK: the answer must not tell whether the user exists.
                self.claimed = Some(name);
                self.send(now, USER_OK);
            }
            (Authorization, Command::Pass { password }) => match self.claimed.take() {
                Some(user) => {
                    self.authenticate(Credentials::password(MECHANISM_USER, None, user, password))
                }
                None => self.send(now, reply::POP3_BAD_SEQUENCE),
            },

            // RFC 1939 §7 APOP, only when enabled (then the greeting has the timestamp).
            (Authorization, Command::Apop { name, digest }) => {
                self.claimed = None;
                match self.apop_timestamp.clone() {
                    Some(timestamp) => self.authenticate(Credentials::Apop {
                        user: name,
                        timestamp,
                        digest,
                    }),
                    None => self.send(now, reply::POP3_UNKNOWN_COMMAND),
                }
            }

            // RFC 5034 §4 AUTH.
            (Authorization, Command::Auth { mechanism, initial }) => {
                self.claimed = None;
                self.auth(now, mechanism, initial);
            }

            // RFC 2595 §4 STLS.
            (Authorization, Command::Stls) => self.stls(now),
            // RFC 1939 §4: QUIT in AUTHORIZATION closes without UPDATE.
            (Authorization, Command::Quit) => {
                self.send(now, SIGNING_OFF);
                self.close(now, CloseReason::Quit);
            }

            (Transaction, command) => self.transaction(now, command),
            _ => self.send(now, reply::POP3_BAD_SEQUENCE),
        }
    }

    /// RFC 1939 §5 and §7: the TRANSACTION state commands.
    fn transaction(&mut self, now: Millis, command: Command) {
        // TRANSACTION always holds a maildrop; answer rather than panic if not.
        let answer = match self.maildrop.as_mut() {
            Some(maildrop) => maildrop.answer(command),
            None => Answer::Reply(reply::POP3_TEMP_FAILURE),
        };
        match answer {
            Answer::Reply(reply) => self.send(now, reply),
            Answer::Line(line) => self.send_line(now, line),
            Answer::Multi(first, body) => self.send_multiline(now, first, body.as_bytes()),
            Answer::Retrieve { index, uid, top } => {
                self.effects.push_back(Pop3Effect::Retrieve { uid });
                self.pending = Some(Pending::Retrieve { index, top });
            }
            Answer::Update { user, delete, left } => {
                // RFC 1939 §6: QUIT in TRANSACTION enters UPDATE.
                self.state = Pop3State::Update;
                self.pending = Some(Pending::Update {
                    removed: delete.len(),
                    left,
                });
                self.effects.push_back(Pop3Effect::Update { user, delete });
            }
        }
    }

    fn retrieved(&mut self, now: Millis, index: usize, top: Option<u32>, result: MessageResult) {
        match result {
            MessageResult::Content(content) => {
                let first = match top {
                    // RFC 1939 §7 TOP.
                    Some(_) => TOP_OK.line(),
                    // RFC 1939 §5 RETR: the size LIST reported, of the CRLF form.
                    None => {
                        let size = self
                            .maildrop
                            .as_ref()
                            .and_then(|d| d.messages.get(index))
                            .map_or(0, |m| m.size);
                        format!("+OK {size} octets\r\n")
                    }
                };
                let mut body = Vec::new();
                write_multiline(&mut body, &content, top);
                self.send_line(now, first);
                // The terminator is already in `body`.
                self.transmit.extend_from_slice(&body);
            }
            MessageResult::Gone => self.send(now, MESSAGE_GONE),
            MessageResult::Failed => self.send(now, reply::POP3_TEMP_FAILURE),
        }
    }

    fn updated(&mut self, now: Millis, removed: usize, left: usize, ok: bool) {
        if ok {
            self.messages_removed(now, removed);
            let text = format!("{} ({left} messages left)", SIGNING_OFF.text);
            self.send_line(now, SIGNING_OFF.line_with(&text));
        } else {
            self.send(now, NOT_REMOVED);
        }
        self.close(now, CloseReason::Quit);
    }

    fn messages_removed(&mut self, now: Millis, count: usize) {
        let user = self.user.clone().unwrap_or_default();
        self.event(now, EventKind::MessagesRemoved { user, count });
    }

    /// RFC 2595 §4: STLS only when offered and TLS is not already up.
    fn stls(&mut self, now: Millis) {
        if self.tls {
            self.send(now, TLS_ACTIVE);
        } else if !self.config.stls {
            self.send(now, reply::POP3_UNKNOWN_COMMAND);
        } else {
            self.claimed = None;
            self.send(now, STLS_OK);
            // RFC 2595 §4 / DESIGN.md: whatever the client pipelined after STLS was
            // sent in plaintext and is dropped, never executed inside TLS.
            self.reader.take_buffer();
            self.starting_tls = true;
            self.effects.push_back(Pop3Effect::StartTls);
        }
    }

    /// RFC 5034 §4: `AUTH` with a mechanism starts an exchange; without one, list the
    /// mechanisms on offer.
    fn auth(&mut self, now: Millis, mechanism: Option<String>, initial: Option<Secret>) {
        let Some(name) = mechanism else {
            let body: String = self
                .mechanisms()
                .map(|m| format!("{}\r\n", m.name()))
                .collect();
            self.send_multiline(now, AUTH_LIST_OK.line(), body.as_bytes());
            return;
        };
        let mechanism = match Mechanism::parse(&name) {
            Some(Mechanism::CramMd5) if !self.config.sasl_cram_md5 => None,
            other => other,
        };
        let Some(mechanism) = mechanism else {
            self.send(now, UNSUPPORTED_MECHANISM);
            return;
        };
        if mechanism.is_plaintext() && !self.plaintext_allowed() {
            self.send(now, reply::POP3_ENCRYPTION_REQUIRED);
            return;
        }
        let challenge_id = unique_id(self.id, now, &self.config.hostname);
        let initial = initial.as_ref().map(Secret::expose);
        let (exchange, step) = SaslExchange::start(mechanism, initial, &challenge_id);
        self.sasl_step(now, mechanism, exchange, step);
    }

    /// One client line while a SASL exchange is in progress.
    fn sasl_continue(
        &mut self,
        now: Millis,
        mechanism: Mechanism,
        mut exchange: SaslExchange,
        line: Line,
    ) {
        let step = match line {
            Line::TooLong => Step::Failed(SaslError::TooLong),
            Line::Complete(line) => {
                self.event(
                    now,
                    EventKind::ClientLine {
                        line: redact_continuation(&line),
                    },
                );
                match std::str::from_utf8(&line) {
                    Ok(text) => exchange.step(text),
                    // Not ASCII, so not base64.
                    Err(_) => Step::Failed(SaslError::BadBase64),
                }
            }
        };
        self.sasl_step(now, mechanism, exchange, step);
    }

    fn sasl_step(&mut self, now: Millis, mechanism: Mechanism, exchange: SaslExchange, step: Step) {
        match step {
            // RFC 5034 §4: "+" SP base64 challenge (an empty one is just "+ ").
            Step::Challenge(challenge) => {
                self.send_line(now, format!("+ {challenge}\r\n"));
                self.sasl = Some((mechanism, exchange));
            }
            Step::Done(credentials) => self.authenticate(credentials),
            Step::Failed(SaslError::Cancelled) => self.send(now, AUTH_CANCELLED),
            Step::Failed(error) => {
                self.event(
                    now,
                    EventKind::AuthFailed {
                        user: None,
                        mechanism: mechanism.name().to_owned(),
                    },
                );
                let reply = match error {
                    SaslError::BadBase64 => BAD_BASE64,
                    SaslError::AuthzidMismatch => AUTHZID_MISMATCH,
                    SaslError::TooLong => reply::POP3_LINE_TOO_LONG,
                    SaslError::Malformed | SaslError::Cancelled => BAD_SASL_RESPONSE,
                };
                // A broken exchange tests no password, so it gets no delay, but it
                // counts against the session's limit like any failed login.
                self.login_failed(now, reply, Duration::ZERO);
            }
        }
    }

    /// Ask the driver to verify `credentials`; the answer continues in
    /// [`authenticated`](Self::authenticated).
    fn authenticate(&mut self, credentials: Credentials) {
        let pending = Pending::Auth {
            claimed: credentials.user().to_owned(),
            mechanism: credentials.mechanism(),
        };
        self.effects
            .push_back(Pop3Effect::Authenticate { credentials });
        self.pending = Some(pending);
    }

    /// A failed login: count it, then answer after `delay` (at once when zero). At the
    /// session's limit the answer is the limit's and the session closes.
    fn login_failed(&mut self, now: Millis, reply: Pop3Reply, delay: Duration) {
        self.auth_failures = self.auth_failures.saturating_add(1);
        let limit = self.config.max_auth_failures;
        let close = limit != 0 && self.auth_failures >= limit;
        let reply = if close {
            reply::POP3_TOO_MANY_AUTH_FAILURES
        } else {
            reply
        };
        self.delayed = Some(Delayed {
            until: now.saturating_add(delay),
            reply,
            close,
        });
        if delay.is_zero() {
            self.end_delay(now);
        }
    }

    /// Send the delayed failure reply (and close at the limit).
    fn end_delay(&mut self, now: Millis) {
        if let Some(delayed) = self.delayed.take() {
            self.idle_since = now;
            self.send(now, delayed.reply);
            if delayed.close {
                self.close(now, CloseReason::Error);
            }
        }
    }

    fn authenticated(
        &mut self,
        now: Millis,
        claimed: String,
        mechanism: &'static str,
        result: AuthResult,
    ) {
        match result {
            AuthResult::Ok { user } => {
                self.event(
                    now,
                    EventKind::AuthSucceeded {
                        user: user.clone(),
                        mechanism: mechanism.to_owned(),
                    },
                );
                // DESIGN.md: the grant is stored before the +OK, and even if the
                // maildrop then turns out to be in use.
                if self.config.grant_requires_tls && !self.tls {
                    self.event(
                        now,
                        EventKind::GrantRefused {
                            // The grant table masks keys to its prefix; no grant is
                            // made here, so the event names the peer itself.
                            key: Cidr::host(self.peer.ip()),
                            user: user.clone(),
                            reason: "tls required".to_owned(),
                        },
                    );
                    self.open_maildrop(user);
                } else {
                    self.effects
                        .push_back(Pop3Effect::Grant { user: user.clone() });
                    self.pending = Some(Pending::Grant { user });
                }
            }
            AuthResult::Failed { delay } => {
                self.event(
                    now,
                    EventKind::AuthFailed {
                        user: Some(claimed),
                        mechanism: mechanism.to_owned(),
                    },
                );
                // RFC 3206 §4: [AUTH], the same text whether the user exists or not,
                // after the delay the server chose for this address.
                self.login_failed(now, reply::POP3_BAD_CREDENTIALS, delay);
            }
            // RFC 3206 §5: not the client's fault, so no AuthFailed.
            AuthResult::TempFail => self.send(now, reply::POP3_TEMP_FAILURE),
        }
    }

    fn open_maildrop(&mut self, user: String) {
        self.effects
            .push_back(Pop3Effect::OpenMaildrop { user: user.clone() });
        self.pending = Some(Pending::Open { user });
    }

    fn maildrop_opened(&mut self, now: Millis, user: String, result: MaildropResult) {
        match result {
            MaildropResult::Opened(messages) => {
                let deleted = vec![false; messages.len()];
                let drop = Maildrop {
                    user: user.clone(),
                    messages,
                    deleted,
                };
                let (count, octets) = drop.stat();
                let summary = drop.summary();
                self.maildrop = Some(drop);
                self.user = Some(user.clone());
                self.state = Pop3State::Transaction;
                self.event(
                    now,
                    EventKind::MaildropOpened {
                        user,
                        messages: count,
                        octets,
                    },
                );
                self.send_line(now, format!("+OK {summary}\r\n"));
            }
            // RFC 2449 §8.1.1. The grant stays: the user proved who they are.
            MaildropResult::InUse => self.send(now, reply::POP3_IN_USE),
            MaildropResult::Failed => self.send(now, reply::POP3_TEMP_FAILURE),
        }
    }

    /// RFC 2449 §5. Capabilities of AUTHORIZATION are announced in both states; the
    /// list follows the session's state, so after STLS it no longer names STLS and
    /// names the cleartext mechanisms TLS allowed.
    fn capa(&mut self, now: Millis) {
        let mut body = String::from("TOP\r\nUIDL\r\n");
        if self.plaintext_allowed() {
            // RFC 2449 §6.8.
            body.push_str("USER\r\n");
        }
        body.push_str("RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
        // RFC 2449 §6.3 / RFC 5034 §3: SASL and the mechanisms on offer.
        let mechanisms: Vec<&str> = self.mechanisms().map(|m| m.name()).collect();
        if !mechanisms.is_empty() {
            body.push_str(&format!("SASL {}\r\n", mechanisms.join(" ")));
        }
        // RFC 2595 §4.
        if self.config.stls && !self.tls {
            body.push_str("STLS\r\n");
        }
        body.push_str("IMPLEMENTATION popgate\r\n");
        self.send_multiline(now, CAPA_OK.line(), body.as_bytes());
    }

    /// The SASL mechanisms this session offers now.
    fn mechanisms(&self) -> impl Iterator<Item = Mechanism> + use<> {
        let plaintext = self.plaintext_allowed();
        let cram_md5 = self.config.sasl_cram_md5;
        Mechanism::ALL.into_iter().filter(move |m| match m {
            Mechanism::Plain | Mechanism::Login => plaintext,
            Mechanism::CramMd5 => cram_md5,
        })
    }

    /// DESIGN.md: cleartext passwords (USER/PASS, SASL PLAIN and LOGIN) without TLS
    /// only when configured, or from the host itself.
    fn plaintext_allowed(&self) -> bool {
        self.config.plaintext_auth || self.tls || is_local_host(self.peer.ip())
    }

    /// End the session: release the maildrop (never UPDATE here) and say why.
    fn close(&mut self, now: Millis, reason: CloseReason) {
        self.state = Pop3State::Closed;
        self.claimed = None;
        self.sasl = None;
        self.delayed = None;
        self.starting_tls = false;
        if let Some(drop) = self.maildrop.take() {
            self.effects
                .push_back(Pop3Effect::CloseMaildrop { user: drop.user });
        }
        self.event(now, EventKind::SessionClosed { reason });
    }

    fn send(&mut self, now: Millis, reply: Pop3Reply) {
        self.send_line(now, reply.line());
    }

    /// One status line (CRLF included), also as a `ServerLine` event.
    fn send_line(&mut self, now: Millis, line: String) {
        self.transmit.extend_from_slice(line.as_bytes());
        let line = line.trim_end_matches("\r\n").to_owned();
        self.event(now, EventKind::ServerLine { line });
    }

    /// A status line, a multi-line body (lines CRLF-terminated, none starting with
    /// `.`), and the terminator (RFC 1939 §3). Only the status line becomes an event.
    fn send_multiline(&mut self, now: Millis, first: String, body: &[u8]) {
        self.send_line(now, first);
        self.transmit.extend_from_slice(body);
        self.transmit.extend_from_slice(b".\r\n");
    }

    fn event(&mut self, now: Millis, kind: EventKind) {
        self.events.push_back(Event::new(now, Some(self.id), kind));
    }
}

/// RFC 1939 §7: a timestamp unique to this session and moment, `<session.millis@host>`;
/// the APOP greeting's timestamp and the CRAM-MD5 challenge (RFC 2195 §2).
fn unique_id(id: SessionId, now: Millis, hostname: &str) -> String {
    format!("<{id}.{}@{hostname}>", now.0)
}
