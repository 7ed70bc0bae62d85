//! The POP3 server session state machine.

use super::message::write_multiline;
use super::parse::{Command, ParseError, parse_command, redact};
use super::{
    AuthResult, MaildropResult, MessageMeta, MessageResult, Pop3Config, Pop3Effect, Pop3Result,
    Pop3State,
};
use crate::event::{CloseReason, Event, EventKind, Protocol, SessionId};
use crate::line::{Line, LineReader};
use crate::net::{Cidr, is_local_host};
use crate::reply::{self, Pop3Code, Pop3Reply};
use crate::time::Millis;
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// The mechanism name events carry for USER/PASS logins.
const MECHANISM: &str = "USER";

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
    Auth { claimed: String },
    Grant { user: String },
    Open { user: String },
    Retrieve { index: usize, top: Option<u32> },
    Update { removed: usize, left: usize },
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
            // RFC 1939 §7: USER and PASS belong to AUTHORIZATION only.
            Command::User { .. } | Command::Pass { .. } => Answer::Reply(reply::POP3_BAD_SEQUENCE),
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
        // RFC 1939 §4: the greeting opens the AUTHORIZATION state.
        session.send(now, GREETING);
        session
    }

    /// Bytes read from the peer. Complete lines are answered in order (RFC 2449
    /// PIPELINING) until one needs an effect's result; the rest waits in the buffer.
    pub fn handle_input(&mut self, now: Millis, bytes: &[u8]) {
        if self.state == Pop3State::Closed {
            return;
        }
        self.reader.push(bytes);
        self.process(now);
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
            Pending::Auth { claimed } => {
                let result = match result {
                    Pop3Result::Auth(r) => r,
                    _ => AuthResult::TempFail,
                };
                self.authenticated(now, claimed, result);
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

    /// Call when `now >= poll_timeout()`. RFC 1939 §3: an idle client is logged out
    /// without entering UPDATE, so messages marked deleted stay.
    pub fn handle_timeout(&mut self, now: Millis) {
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
        self.process(now);
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

    /// When to call [`handle_timeout`](Self::handle_timeout); `None` while the session
    /// waits for an effect (the client is waiting on us, not idle) or is closed.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.state == Pop3State::Closed || self.pending.is_some() {
            None
        } else {
            Some(self.idle_since.saturating_add(self.config.idle_timeout))
        }
    }

    /// Whether the driver should read from the peer now. False while an effect result
    /// is awaited (input would only pile up) or the buffer holds a full line's worth.
    pub fn wants_input(&self) -> bool {
        self.state != Pop3State::Closed
            && self.pending.is_none()
            && self.reader.buffered() <= self.config.max_line + 1
    }

    /// The session is over: flush [`poll_transmit`](Self::poll_transmit) and perform
    /// the remaining effects, then close the socket.
    pub fn is_closed(&self) -> bool {
        self.state == Pop3State::Closed
    }

    pub fn state(&self) -> Pop3State {
        self.state
    }

    /// The canonical user whose maildrop this session opened.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Answer buffered lines until one needs an effect, the buffer runs dry, or the
    /// session closes.
    fn process(&mut self, now: Millis) {
        while self.pending.is_none() && self.state != Pop3State::Closed {
            if self.shutting_down {
                self.send(now, reply::POP3_SHUTTING_DOWN);
                self.close(now, CloseReason::ShuttingDown);
                return;
            }
            let Some(line) = self.reader.next_line() else {
                return;
            };
            self.idle_since = now;
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
                    self.effects.push_back(Pop3Effect::Authenticate {
                        user: user.clone(),
                        password,
                    });
                    self.pending = Some(Pending::Auth { claimed: user });
                }
                None => self.send(now, reply::POP3_BAD_SEQUENCE),
            },
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

    fn authenticated(&mut self, now: Millis, claimed: String, result: AuthResult) {
        match result {
            AuthResult::Ok { user } => {
                self.event(
                    now,
                    EventKind::AuthSucceeded {
                        user: user.clone(),
                        mechanism: MECHANISM.to_owned(),
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
            AuthResult::Failed => {
                self.event(
                    now,
                    EventKind::AuthFailed {
                        user: Some(claimed),
                        mechanism: MECHANISM.to_owned(),
                    },
                );
                // RFC 3206 §4: [AUTH], the same text whether the user exists or not.
                self.send(now, reply::POP3_BAD_CREDENTIALS);
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

    /// RFC 2449 §5. Capabilities of AUTHORIZATION are announced in both states.
    fn capa(&mut self, now: Millis) {
        let mut body = String::from("TOP\r\nUIDL\r\n");
        if self.plaintext_allowed() {
            // RFC 2449 §6.8.
            body.push_str("USER\r\n");
        }
        body.push_str("RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nIMPLEMENTATION popgate\r\n");
        self.send_multiline(now, CAPA_OK.line(), body.as_bytes());
    }

    /// DESIGN.md: USER/PASS without TLS only when configured, or from the host itself.
    fn plaintext_allowed(&self) -> bool {
        self.config.plaintext_auth || self.tls || is_local_host(self.peer.ip())
    }

    /// End the session: release the maildrop (never UPDATE here) and say why.
    fn close(&mut self, now: Millis, reason: CloseReason) {
        self.state = Pop3State::Closed;
        self.claimed = None;
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
