//! The SMTP session state machine.

use super::data::{DataError, DataReceiver};
use super::parse::{Command, Domain, ForwardPath, MailParams, Mailbox, ReversePath, parse_command};
use super::received::{Stamp, received_header, with_protocol};
use super::{
    Delivery, LookupResult, Recipient, ReserveResult, SenderPolicy, SmtpConfig, SmtpEffect,
    SmtpResult, StoreResult,
};
use crate::Secret;
use crate::event::{CloseReason, Event, EventKind, Protocol, RelayOutcome, SessionId};
use crate::grant::{RelayRefusal, Reservation};
use crate::line::{Line, LineReader, is_foreign_protocol, starts_with_proxy_v2};
use crate::migration::GrantMode;
use crate::net::is_local_host;
use crate::reply::{self, SmtpReply};
use crate::sasl::{self, AuthResult, Mechanism, SaslError, SaslExchange, Step};
use crate::time::Millis;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

/// Pipelined input (RFC 2920) buffered while a result is awaited, at most; the driver
/// stops reading at this bound (see [`SmtpSession::wants_input`]).
pub(crate) const PIPELINE_BUFFER: usize = 64 * 1024;

/// One SMTP server session (RFC 5321), sans IO.
///
/// The session never touches a socket, a file or a clock. Its driver (the server's
/// connection task, or the browser simulator) runs it like this:
///
/// ```text
/// let mut s = SmtpSession::new(config, id, protocol, peer, local, tls, now); // queues the 220
/// loop {
///     while let Some(bytes) = s.poll_transmit() { write bytes }
///     while let Some(event) = s.poll_event() { publish event }
///     if let Some(effect) = s.poll_effect() {
///         // LookupLocal, ReserveGrant, Deliver and Authenticate expect a result;
///         // CommitGrant and ReleaseGrant do not. At most one result-expecting effect
///         // (or StartTls) is outstanding.
///         if SmtpSession::is_start_tls(&effect) {
///             flush transmit (the 220), run the TLS handshake without reading
///             plaintext; on success s.handle_tls_established(now, version, cipher),
///             on failure close the connection; continue;
///         }
///         if effect.expects_result() {
///             let result = perform(effect);         // IO happens here, outside core
///             s.handle_result(now, result);
///         } else {
///             perform(effect);
///         }
///         continue;
///     }
///     if s.is_closed() { close the connection; break }   // after draining all three
///     wait for the first of:
///         bytes, only while s.wants_input()  -> s.handle_input(now, bytes)
///         end of stream or an error          -> s.handle_disconnect(now)
///         now reaches s.poll_timeout()       -> s.handle_timeout(now)
///         the server shuts down              -> s.handle_shutdown(now)
/// }
/// ```
///
/// While a result is awaited the session processes no buffered input, so pipelined
/// commands (RFC 2920) are answered in order; [`wants_input`](Self::wants_input) is
/// false meanwhile, and while buffered input is at its bound, so memory stays bounded.
/// After [`is_closed`](Self::is_closed) turns true, keep draining transmit (the last
/// reply), events (`SessionClosed`) and effects (a `ReleaseGrant`): a result fed for a
/// reservation that was in flight when the session closed is released too.
///
/// STARTTLS (RFC 3207): when the command is accepted, every byte already buffered
/// after it is discarded, and input given while the handshake is awaited is dropped:
/// nothing sent in plaintext is ever executed inside TLS (the command injection of
/// CVE-2011-0411). Once TLS is up the session starts over as after the greeting.
///
/// AUTH (RFC 4954): a failed verification comes back with the server's delay; the
/// session waits it out on the caller's clock (`poll_timeout` is the end of the
/// delay, input is not processed meanwhile) and only then answers 535.
///
/// A grant reservation lives exactly as long as its transaction: the first relayed
/// RCPT reserves (`ReserveGrant`), the 250 after end of data commits (`CommitGrant`),
/// and every other end (RSET, HELO/EHLO, QUIT, a refused message, disconnect,
/// timeout, shutdown) releases (`ReleaseGrant`).
#[derive(Debug)]
pub struct SmtpSession {
    config: Arc<SmtpConfig>,
    id: SessionId,
    peer: SocketAddr,
    tls: bool,
    /// The user who authenticated with SMTP AUTH (RFC 4954), as the server named
    /// them (a full address).
    authenticated: Option<String>,
    /// Failed AUTH attempts (535) so far.
    auth_failures: u32,
    reader: LineReader,
    mode: Mode,
    helo: Option<Helo>,
    transaction: Option<Transaction>,
    /// The result-expecting effect in flight, if any.
    pending: Option<Pending>,
    /// Transactions begun, for message ids.
    transactions: u64,
    transmit: Vec<u8>,
    effects: VecDeque<SmtpEffect>,
    events: VecDeque<Event>,
    /// The end of the last complete command line (or result): the idle timeout runs
    /// from here, so bytes of an unfinished line do not restart it.
    last_activity: Millis,
    /// In DATA: when the client runs out of time (see [`SmtpConfig::min_data_rate`]).
    data_deadline: Millis,
    /// In DATA: octets of the current text line so far (RFC 5321 §4.5.3.1.6).
    data_line: usize,
    shutting_down: bool,
    closed: bool,
    /// Our address on this connection: an address literal naming it is local.
    local: SocketAddr,
    /// The greeting is held until then ([`SmtpConfig::greet_pause`]); input before it
    /// is an early talker.
    greet_at: Option<Millis>,
    /// Whether any input arrived yet (a PROXY v2 header can only come first).
    input_seen: bool,
    /// Errors (4xx/5xx replies, and junk commands past their limit) since the last
    /// accepted message, as Postfix counts them for `smtpd_*_error_limit`.
    errors: u32,
    /// NOOP, VRFY, RSET and HELP since the last accepted message.
    junk: u32,
}

#[derive(Debug)]
enum Mode {
    Command,
    Data(DataReceiver),
    /// RFC 4954 §4: inside an AUTH exchange, every line is a SASL response.
    Auth {
        exchange: SaslExchange,
        mechanism: Mechanism,
    },
}

#[derive(Debug)]
struct Helo {
    name: String,
    /// EHLO rather than HELO.
    esmtp: bool,
}

/// RFC 5321 §3.3: a mail transaction, from MAIL to the reply to end of data.
#[derive(Debug)]
struct Transaction {
    from: String,
    smtputf8: bool,
    recipients: Vec<Recipient>,
    /// The grant message reserved by this transaction's first relayed RCPT.
    reservation: Option<Reservation>,
    /// The granting or authenticated user, once a recipient is relayed for one.
    relayed_for: Option<String>,
    /// The reservation's user is in `grant.mode = "warn"`: mark the message.
    grant_warned: bool,
}

#[derive(Debug)]
enum Pending {
    Lookup {
        address: String,
    },
    Reserve {
        address: String,
    },
    Deliver {
        id: String,
        size: u64,
    },
    /// RFC 3207: STARTTLS was accepted; waiting for `handle_tls_established`.
    Tls,
    /// Credentials are being verified; `user` is what the client claimed.
    Authenticate {
        mechanism: Mechanism,
        user: String,
    },
    /// A failed AUTH is answered 535 at `until`, after the server's delay.
    AuthDelay {
        until: Millis,
    },
    /// Past the soft error limit: this reply is written at `until`.
    ErrorDelay {
        until: Millis,
        reply: String,
    },
}

impl SmtpSession {
    /// A new session on an accepted connection; queues the 220 greeting (RFC 5321
    /// §4.2) and a `SessionOpened` event.
    pub fn new(
        config: Arc<SmtpConfig>,
        id: SessionId,
        protocol: Protocol,
        peer: SocketAddr,
        local: SocketAddr,
        tls: bool,
        now: Millis,
    ) -> SmtpSession {
        let reader = LineReader::new(config.max_command_line);
        let mut s = SmtpSession {
            config,
            id,
            peer,
            tls,
            authenticated: None,
            auth_failures: 0,
            reader,
            mode: Mode::Command,
            helo: None,
            transaction: None,
            pending: None,
            transactions: 0,
            transmit: Vec::new(),
            effects: VecDeque::new(),
            events: VecDeque::new(),
            last_activity: now,
            data_deadline: now,
            data_line: 0,
            shutting_down: false,
            closed: false,
            local,
            greet_at: None,
            input_seen: false,
            errors: 0,
            junk: 0,
        };
        s.event(
            now,
            EventKind::SessionOpened {
                protocol,
                peer: peer.to_string(),
                local: local.to_string(),
                tls,
            },
        );
        if s.config.greet_pause.is_zero() {
            s.greet(now);
        } else {
            s.greet_at = Some(now.saturating_add(s.config.greet_pause));
        }
        s
    }

    /// RFC 5321 §4.2: the 220 greeting.
    fn greet(&mut self, now: Millis) {
        self.greet_at = None;
        let greeting = format!("{} {}", self.config.hostname, reply::GREETING.text);
        self.send(now, reply::GREETING.line_with(&greeting));
    }

    /// Bytes read from the peer. Call only while [`wants_input`](Self::wants_input).
    pub fn handle_input(&mut self, now: Millis, bytes: &[u8]) {
        // DESIGN: plaintext that arrives while the TLS handshake is awaited is never
        // executed, whatever the driver does.
        if self.closed || matches!(self.pending, Some(Pending::Tls)) {
            return;
        }
        let first = !self.input_seen;
        self.input_seen = true;
        // A PROXY v2 header on a listener not configured for PROXY (the driver strips
        // it where it is): its signature would read as empty lines, a NUL and QUIT.
        if first && starts_with_proxy_v2(bytes) {
            return self.close(now, Some(reply::FOREIGN_PROTOCOL), CloseReason::Error);
        }
        // RFC 5321 §4.3.1, §3.1: the client waits for the greeting. Input before it
        // is an early talker (a spam engine that does not read replies).
        if self.greet_at.is_some() {
            return self.close(now, Some(reply::PROTOCOL_SYNC), CloseReason::Error);
        }
        if matches!(self.mode, Mode::Data(_)) {
            self.data_progress(now, bytes.len());
        }
        self.reader.push(bytes);
        self.process(now);
        if self.reader.is_runaway() && !self.closed {
            // The 500 5.5.6 went out when the line passed the limit; a line that
            // still has not ended is a flood, not a command (line::MAX_OVERLONG_LINE).
            self.close(now, None, CloseReason::Error);
        }
    }

    /// Postfix `smtpd_min_data_rate`: N octets of DATA buy N/rate more seconds, never
    /// more than the idle timeout from now. Without a rate each read restarts the
    /// timeout (RFC 5321 §4.5.3.2.5: a data block may take 3 minutes).
    fn data_progress(&mut self, now: Millis, octets: usize) {
        let full = now.saturating_add(self.config.idle_timeout);
        self.data_deadline = match self.config.min_data_rate {
            0 => full,
            rate => {
                let credit = (octets as u64).saturating_mul(1000) / rate;
                let earned = self
                    .data_deadline
                    .saturating_add(std::time::Duration::from_millis(credit));
                earned.min(full)
            }
        };
    }

    /// The result of the last effect that [expects one](SmtpEffect::expects_result).
    pub fn handle_result(&mut self, now: Millis, result: SmtpResult) {
        self.last_activity = now;
        let Some(pending) = self.pending.take() else {
            // Nothing awaited (the session closed meanwhile, or a driver bug): a
            // reservation nobody will use must still go back.
            if let SmtpResult::Reserve(ReserveResult::Reserved(r)) = result {
                self.effects
                    .push_back(SmtpEffect::ReleaseGrant { key: r.key });
            }
            return;
        };
        match (pending, result) {
            (Pending::Lookup { address }, SmtpResult::Lookup(result)) => {
                self.lookup_done(now, address, result)
            }
            (Pending::Reserve { address }, SmtpResult::Reserve(result)) => {
                self.reserve_done(now, address, result)
            }
            (Pending::Deliver { id, size }, SmtpResult::Stored(result)) => {
                self.deliver_done(now, id, size, result)
            }
            (Pending::Authenticate { mechanism, user }, SmtpResult::Auth(result)) => {
                self.auth_done(now, mechanism, user, result)
            }
            // Nothing is fed back for these (a driver bug): keep waiting, so that
            // plaintext is still never processed before TLS is up.
            (
                pending @ (Pending::Tls | Pending::AuthDelay { .. } | Pending::ErrorDelay { .. }),
                other,
            ) => {
                self.pending = Some(pending);
                if let SmtpResult::Reserve(ReserveResult::Reserved(r)) = other {
                    self.effects
                        .push_back(SmtpEffect::ReleaseGrant { key: r.key });
                }
                return;
            }
            // A result of the wrong kind is a driver bug; answer as if the effect had
            // failed temporarily rather than hang or guess.
            (pending, other) => {
                if let SmtpResult::Reserve(ReserveResult::Reserved(r)) = other {
                    self.effects
                        .push_back(SmtpEffect::ReleaseGrant { key: r.key });
                }
                match pending {
                    Pending::Lookup { address } => {
                        self.lookup_done(now, address, LookupResult::TempFail)
                    }
                    Pending::Reserve { address } => {
                        self.reserve_done(now, address, ReserveResult::TempFail)
                    }
                    Pending::Deliver { id, size } => {
                        self.deliver_done(now, id, size, StoreResult::TempFail)
                    }
                    Pending::Authenticate { mechanism, user } => {
                        self.auth_done(now, mechanism, user, AuthResult::TempFail)
                    }
                    Pending::Tls | Pending::AuthDelay { .. } | Pending::ErrorDelay { .. } => {}
                }
            }
        }
        self.process(now);
    }

    /// The TLS handshake that [`SmtpEffect::StartTls`] asked for succeeded. RFC 3207
    /// §4.2: the session forgets everything the client said before (HELO/EHLO, the
    /// transaction, AUTH) and waits for a new EHLO, which no longer offers STARTTLS.
    /// Ignored unless a handshake was asked for.
    pub fn handle_tls_established(&mut self, now: Millis, version: String, cipher: String) {
        if self.closed || !matches!(self.pending, Some(Pending::Tls)) {
            return;
        }
        self.pending = None;
        self.last_activity = now;
        // Nothing should be here (input is dropped while the handshake runs); make
        // sure no plaintext byte survives into the TLS session.
        self.reader.take_buffer();
        self.tls = true;
        self.end_transaction();
        self.helo = None;
        self.authenticated = None;
        self.event(now, EventKind::TlsStarted { version, cipher });
        self.process(now);
    }

    /// Whether `effect` is [`SmtpEffect::StartTls`], which the driver answers with a
    /// handshake and [`handle_tls_established`](Self::handle_tls_established) rather
    /// than a result.
    pub fn is_start_tls(effect: &SmtpEffect) -> bool {
        matches!(effect, SmtpEffect::StartTls)
    }

    /// [`poll_timeout`](Self::poll_timeout) has passed: the end of a failed AUTH's
    /// delay (answer 535), or RFC 5321 §4.5.3.2 lets the server close an idle
    /// connection: 421 4.4.2, releasing any reservation.
    pub fn handle_timeout(&mut self, now: Millis) {
        if self.greet_at.is_some_and(|at| now >= at) {
            self.last_activity = now;
            return self.greet(now);
        }
        if let Some(Pending::ErrorDelay { until, .. }) = &self.pending {
            if now >= *until
                && let Some(Pending::ErrorDelay { reply, .. }) = self.pending.take()
            {
                self.last_activity = now;
                self.send(now, reply);
                self.process(now);
            }
            return;
        }
        if let Some(Pending::AuthDelay { until }) = self.pending {
            if now >= until {
                self.pending = None;
                self.last_activity = now;
                self.auth_failed(now);
                self.process(now);
            }
            return;
        }
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => {
                self.close(now, Some(reply::TIMEOUT), CloseReason::Timeout)
            }
            _ => {}
        }
    }

    /// The peer closed the connection (or it failed): release any reservation, and
    /// drop any delivery not yet handed out.
    pub fn handle_disconnect(&mut self, now: Millis) {
        if !self.closed {
            self.close(now, None, CloseReason::PeerClosed);
        }
    }

    /// The server is shutting down: at the next command boundary send 421 4.3.2 and
    /// close. A message being received, or a result awaited, is finished first.
    pub fn handle_shutdown(&mut self, now: Millis) {
        self.shutting_down = true;
        self.process(now);
    }

    /// Bytes to write to the peer.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.transmit.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.transmit))
        }
    }

    /// The next effect to perform.
    pub fn poll_effect(&mut self) -> Option<SmtpEffect> {
        self.effects.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout): the end of a failed
    /// AUTH's delay, else the idle timeout after the last input. `None` when closed,
    /// or while a result or the TLS handshake is awaited (the wait is the server's,
    /// not the client's; the driver bounds its handshake itself).
    pub fn poll_timeout(&self) -> Option<Millis> {
        match &self.pending {
            _ if self.closed => None,
            _ if self.greet_at.is_some() => self.greet_at,
            Some(Pending::AuthDelay { until } | Pending::ErrorDelay { until, .. }) => Some(*until),
            Some(_) => None,
            None if matches!(self.mode, Mode::Data(_)) => Some(self.data_deadline),
            None => Some(self.last_activity.saturating_add(self.config.idle_timeout)),
        }
    }

    /// Whether the driver should read more bytes now.
    pub fn wants_input(&self) -> bool {
        !self.closed
            && self.pending.is_none()
            && self.reader.buffered() < PIPELINE_BUFFER.max(self.reader.max() + 2)
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Client bytes held: the command line buffer plus a message being received. The
    /// first is bounded by the driver's reads ([`wants_input`](Self::wants_input)), the
    /// second by [`SmtpConfig::max_message_size`]; the property tests check both.
    pub fn buffered(&self) -> usize {
        let message = match &self.mode {
            Mode::Data(receiver) => receiver.held(),
            _ => 0,
        };
        self.reader.buffered() + message
    }

    /// Work through buffered input until more is needed, a result is awaited, or the
    /// session closes.
    fn process(&mut self, now: Millis) {
        while !self.closed && self.pending.is_none() {
            match std::mem::replace(&mut self.mode, Mode::Command) {
                Mode::Data(mut receiver) => {
                    let buffered = self.reader.take_buffer();
                    let end = receiver.push(&buffered);
                    let data = &buffered[..end.unwrap_or(buffered.len())];
                    if text_line_too_long(&mut self.data_line, data, self.config.max_text_line) {
                        // RFC 5321 §4.5.3.1.6: the message cannot be read in step any
                        // more; the transaction ends and the connection closes.
                        self.close(now, Some(reply::LINE_TOO_LONG), CloseReason::Error);
                        return;
                    }
                    match end {
                        Some(used) => {
                            // RFC 2920 §3.1: what follows the end of data are commands,
                            // but only a client that was offered PIPELINING may send
                            // them before the reply (RFC 5321 §4.3.1).
                            let rest = &buffered[used..];
                            if !rest.is_empty() && !self.may_pipeline() {
                                return self.close(
                                    now,
                                    Some(reply::PROTOCOL_SYNC),
                                    CloseReason::Error,
                                );
                            }
                            self.reader.unread(rest);
                            self.last_activity = now;
                            self.end_of_data(now, receiver);
                        }
                        None => {
                            self.mode = Mode::Data(receiver);
                            return;
                        }
                    }
                }
                Mode::Command => {
                    // A command boundary: the place where shutdown takes effect.
                    if self.shutting_down {
                        self.close(now, Some(reply::SHUTTING_DOWN), CloseReason::ShuttingDown);
                        return;
                    }
                    let line = self.reader.next_line();
                    if line.is_some() {
                        self.last_activity = now;
                    }
                    match line {
                        None => return,
                        Some(Line::TooLong) => self.reply(now, reply::LINE_TOO_LONG.line()),
                        Some(Line::Complete(line)) => self.command(now, &line),
                    }
                }
                Mode::Auth {
                    mut exchange,
                    mechanism,
                } => {
                    // An exchange is abandoned, not finished, by a shutdown.
                    if self.shutting_down {
                        self.end_auth_exchange();
                        self.close(now, Some(reply::SHUTTING_DOWN), CloseReason::ShuttingDown);
                        return;
                    }
                    match self.reader.next_line() {
                        None => {
                            self.mode = Mode::Auth {
                                exchange,
                                mechanism,
                            };
                            return;
                        }
                        Some(Line::TooLong) => {
                            self.last_activity = now;
                            self.event(now, client_line_event(b"", true));
                            self.end_auth_exchange();
                            self.reply(now, reply::LINE_TOO_LONG.line());
                        }
                        Some(Line::Complete(line)) => {
                            self.last_activity = now;
                            self.event(now, client_line_event(&line, true));
                            // Base64 is ASCII: a line that is not UTF-8 is not base64.
                            let step = match std::str::from_utf8(&line) {
                                Ok(text) => exchange.step(text),
                                Err(_) => Step::Failed(SaslError::BadBase64),
                            };
                            self.auth_step(now, exchange, mechanism, step);
                        }
                    }
                }
            }
        }
    }

    /// Whether the client was offered PIPELINING (RFC 2920 §3: only in the EHLO
    /// reply), or the discipline is off.
    fn may_pipeline(&self) -> bool {
        !self.config.forbid_unauth_pipelining || self.helo.as_ref().is_some_and(|h| h.esmtp)
    }

    fn command(&mut self, now: Millis, line: &[u8]) {
        self.event(now, client_line_event(line, false));
        // An HTTP request or a PROXY v1 header: not a mail client; close at once
        // rather than answer each header and then run the commands in its body.
        if is_foreign_protocol(line) {
            return self.close(now, Some(reply::FOREIGN_PROTOCOL), CloseReason::Error);
        }
        let command = parse_command(line);
        // RFC 2920 §3.1: DATA ends a group (the client waits for 354); RFC 5321
        // §4.3.1 without PIPELINING every command waits for its reply. Bytes already
        // here are a client that does not read replies (a spam engine, or smuggling
        // that counts on a different reading of the stream): 554 and close. Bytes
        // after STARTTLS are discarded by design (CVE-2011-0411) and QUIT closes anyway.
        let exempt = matches!(command, Ok(Command::StartTls | Command::Quit));
        let data = matches!(command, Ok(Command::Data));
        if self.config.forbid_unauth_pipelining
            && !exempt
            && self.reader.buffered() > 0
            && (data || !self.may_pipeline())
        {
            return self.close(now, Some(reply::PROTOCOL_SYNC), CloseReason::Error);
        }
        let command = match command {
            Ok(command) => command,
            Err(e) => return self.reply(now, e.reply().line()),
        };
        // Postfix `smtpd_junk_command_limit`: past it each junk command counts as
        // an error (and is slowed down like one).
        if matches!(
            command,
            Command::Noop | Command::Vrfy | Command::Rset | Command::Help
        ) {
            self.junk = self.junk.saturating_add(1);
        }
        match command {
            Command::Ehlo(name) => self.hello(now, name, true),
            Command::Helo(name) => self.hello(now, name, false),
            Command::Mail { from, params } => self.mail(now, from, params),
            Command::Rcpt { to } => self.rcpt(now, to),
            Command::Data => self.data(now),
            // RFC 5321 §4.1.1.5: RSET aborts the transaction, keeps the greeting.
            Command::Rset => {
                self.end_transaction();
                self.junk_reply(now, reply::RESET.line());
            }
            Command::Noop => self.junk_reply(now, reply::NOOP.line()),
            // RFC 5321 §4.1.1.10
            Command::Quit => self.close(now, Some(reply::BYE), CloseReason::Quit),
            // RFC 5321 §3.5.3: 252 rather than reveal who exists.
            Command::Vrfy => self.junk_reply(now, reply::CANNOT_VRFY.line()),
            Command::Help => self.junk_reply(now, reply::HELP.line()),
            // RFC 5321 §3.5.2: EXPN may be disabled.
            Command::Expn => self.reply(now, reply::NOT_IMPLEMENTED.line()),
            Command::StartTls => self.starttls(now),
            Command::Auth { mechanism, initial } => self.auth(now, &mechanism, initial),
        }
    }

    /// RFC 3207 §4: STARTTLS.
    fn starttls(&mut self, now: Millis) {
        // Not offered: a listener without a certificate.
        if !self.config.starttls {
            return self.reply(now, reply::NOT_IMPLEMENTED.line());
        }
        // RFC 3207 §4: a client MUST NOT start TLS on a TLS session. RFC 3207 names
        // no code for it; 503 (bad sequence, RFC 5321 §4.2.4) is what the reply
        // table uses for every out-of-sequence command.
        if self.tls {
            return self.reply(now, reply::TLS_ALREADY_ACTIVE.line());
        }
        // Not inside a transaction (as Postfix): the reset of RFC 3207 §4.2 would
        // silently drop the client's recipients.
        if self.transaction.is_some() {
            return self.reply(now, reply::BAD_SEQUENCE.line());
        }
        self.reply(now, reply::READY_TO_START_TLS.line());
        // DESIGN, CVE-2011-0411: whatever the client pipelined after STARTTLS was
        // sent in plaintext and is dropped unread, never executed inside TLS.
        self.reader.take_buffer();
        self.pending = Some(Pending::Tls);
        self.effects.push_back(SmtpEffect::StartTls);
    }

    /// Whether AUTH may run on this connection: offered at all, and over TLS, or
    /// from 127.0.0.1 / ::1 when the listener allows plaintext AUTH there
    /// (RFC 4954 §4: mechanisms that expose the password need an encryption layer).
    fn auth_allowed(&self) -> bool {
        self.config.auth
            && (self.tls || (self.config.plaintext_auth_localhost && is_local_host(self.peer.ip())))
    }

    /// The mechanisms this listener offers, in EHLO order.
    fn mechanisms(&self) -> impl Iterator<Item = Mechanism> + '_ {
        Mechanism::ALL
            .into_iter()
            .filter(|m| *m != Mechanism::CramMd5 || self.config.cram_md5)
    }

    /// RFC 4954 §4: `AUTH mechanism [initial-response]`.
    fn auth(&mut self, now: Millis, mechanism: &str, initial: Option<Secret>) {
        if !self.config.auth {
            return self.reply(now, reply::NOT_IMPLEMENTED.line());
        }
        // AUTH is a service extension: it needs EHLO (RFC 5321 §4.1.1.1, RFC 4954 §3).
        if !self.helo.as_ref().is_some_and(|h| h.esmtp) {
            return self.reply(now, reply::BAD_SEQUENCE.line());
        }
        // RFC 4954 §4: after a successful AUTH, further AUTH commands get 503.
        if self.authenticated.is_some() {
            return self.reply(now, reply::ALREADY_AUTHENTICATED.line());
        }
        // RFC 4954 §4: AUTH is not permitted during a mail transaction: 503.
        if self.transaction.is_some() {
            return self.reply(now, reply::BAD_SEQUENCE.line());
        }
        // RFC 4954 §4: an unsupported mechanism gets 504.
        let Some(mechanism) =
            Mechanism::parse(mechanism).filter(|m| self.mechanisms().any(|o| o == *m))
        else {
            return self.reply(now, reply::UNKNOWN_MECHANISM.line());
        };
        // RFC 4954 §4, §6: 538 5.7.11 when the mechanism needs an encryption layer.
        if !self.auth_allowed() {
            return self.reply(now, reply::ENCRYPTION_REQUIRED.line());
        }
        // RFC 2195 §2 / RFC 1939 §7 style: unique per session and moment.
        let challenge_id = format!("<{}.{}@{}>", self.id, now.0, self.config.hostname);
        let (exchange, step) = SaslExchange::start(
            mechanism,
            initial.as_ref().map(Secret::expose),
            &challenge_id,
        );
        self.auth_step(now, exchange, mechanism, step);
    }

    /// Act on one step of a SASL exchange.
    fn auth_step(&mut self, now: Millis, exchange: SaslExchange, mechanism: Mechanism, step: Step) {
        match step {
            // RFC 4954 §4: a challenge is a 334 reply with the base64 text.
            Step::Challenge(challenge) => {
                self.reply(now, reply::AUTH_CHALLENGE.line_with(&challenge));
                // Responses may be longer than commands, up to what sasl accepts.
                let max = self.config.max_command_line.max(sasl::MAX_RESPONSE);
                self.reader.set_max(max);
                self.mode = Mode::Auth {
                    exchange,
                    mechanism,
                };
            }
            Step::Done(credentials) => {
                self.end_auth_exchange();
                self.pending = Some(Pending::Authenticate {
                    mechanism,
                    user: credentials.user().to_owned(),
                });
                self.effects
                    .push_back(SmtpEffect::Authenticate { credentials });
            }
            Step::Failed(error) => {
                self.end_auth_exchange();
                let refusal = match error {
                    // RFC 4954 §4: "*" cancels the exchange: 501.
                    SaslError::Cancelled => reply::AUTH_CANCELLED,
                    // RFC 4954 §4: an undecodable response gets 501 5.5.2.
                    SaslError::BadBase64 => reply::AUTH_BAD_BASE64,
                    SaslError::Malformed => reply::AUTH_MALFORMED,
                    SaslError::TooLong => reply::LINE_TOO_LONG,
                    // RFC 4616 §2: the client may not act as this authzid, an
                    // authorization failure; answered as bad credentials (535, RFC
                    // 4954 §6) and counted like one, so it is no cheaper to probe.
                    SaslError::AuthzidMismatch => {
                        self.event(
                            now,
                            EventKind::AuthFailed {
                                user: None,
                                mechanism: mechanism.name().into(),
                            },
                        );
                        return self.auth_failed(now);
                    }
                };
                self.reply(now, refusal.line());
            }
        }
    }

    /// Back to commands after an AUTH exchange.
    fn end_auth_exchange(&mut self) {
        self.reader.set_max(self.config.max_command_line);
    }

    fn auth_done(
        &mut self,
        now: Millis,
        mechanism: Mechanism,
        claimed: String,
        result: AuthResult,
    ) {
        match result {
            AuthResult::Ok { user } => {
                self.authenticated = Some(user.clone());
                self.reply(now, reply::AUTH_SUCCEEDED.line());
                self.event(
                    now,
                    EventKind::AuthSucceeded {
                        user,
                        mechanism: mechanism.name().into(),
                    },
                );
            }
            AuthResult::Failed { delay } => {
                self.event(
                    now,
                    EventKind::AuthFailed {
                        user: Some(claimed),
                        mechanism: mechanism.name().into(),
                    },
                );
                if delay.is_zero() {
                    self.auth_failed(now);
                } else {
                    self.pending = Some(Pending::AuthDelay {
                        until: now.saturating_add(delay),
                    });
                }
            }
            // RFC 4954 §6: 454 4.7.0 temporary authentication failure.
            AuthResult::TempFail => self.reply(now, reply::TEMP_AUTH_FAILURE.line()),
        }
    }

    /// RFC 4954 §6: 535 5.7.8, the same bytes whatever was wrong; after too many,
    /// 421 4.7.0 and close.
    fn auth_failed(&mut self, now: Millis) {
        self.auth_failures = self.auth_failures.saturating_add(1);
        self.reply(now, reply::BAD_CREDENTIALS.line());
        if self.auth_failures >= self.config.max_auth_failures.max(1) {
            self.close(now, Some(reply::TOO_MANY_AUTH_FAILURES), CloseReason::Error);
        }
    }

    /// RFC 5321 §4.1.1.1 and §4.1.4: HELO/EHLO (again) resets any transaction.
    fn hello(&mut self, now: Millis, name: String, esmtp: bool) {
        self.end_transaction();
        self.helo = Some(Helo { name, esmtp });
        let hostname = &self.config.hostname;
        let text = if esmtp {
            let mut lines = vec![hostname.clone()];
            lines.extend(self.extensions());
            let last = lines.len() - 1;
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let sep = if i == last { ' ' } else { '-' };
                    format!("{}{sep}{l}\r\n", reply::HELLO.code)
                })
                .collect()
        } else {
            reply::HELLO.line_with(hostname)
        };
        self.reply(now, text);
    }

    /// The EHLO keywords.
    fn extensions(&self) -> Vec<String> {
        let mut keywords = vec![
            // RFC 2920
            "PIPELINING".into(),
            // RFC 1870 §4
            format!("SIZE {}", self.config.max_message_size),
            // RFC 6152
            "8BITMIME".into(),
            // RFC 6531
            "SMTPUTF8".into(),
            // RFC 2034
            "ENHANCEDSTATUSCODES".into(),
        ];
        // RFC 3207 §4.2: not offered again once TLS is up.
        if self.config.starttls && !self.tls {
            keywords.push("STARTTLS".into());
        }
        // RFC 4954 §3: the mechanisms, only where AUTH may run on this connection
        // (so a client never sends a password it would be refused for).
        if self.auth_allowed() {
            let names: Vec<&str> = self.mechanisms().map(|m| m.name()).collect();
            keywords.push(format!("AUTH {}", names.join(" ")));
        }
        keywords
    }

    /// RFC 5321 §4.1.1.2
    fn mail(&mut self, now: Millis, from: ReversePath, params: MailParams) {
        let Some(helo) = &self.helo else {
            return self.reply(now, reply::BAD_SEQUENCE.line());
        };
        // RFC 5321 §4.1.4: no nested transactions.
        if self.transaction.is_some() {
            return self.reply(now, reply::BAD_SEQUENCE.line());
        }
        // RFC 6409 §4.3, RFC 4954 §6: submission requires AUTH before MAIL: 530.
        if self.config.require_auth && self.authenticated.is_none() {
            return self.reply(now, reply::AUTH_REQUIRED.line());
        }
        // RFC 5321 §4.1.1.11: parameters are service extensions, which need EHLO.
        if params.any && !helo.esmtp {
            return self.reply(now, reply::BAD_PARAMETER.line());
        }
        // RFC 1870 §6.1: a declared size over the limit is refused up front.
        if params
            .size
            .is_some_and(|size| size > self.config.max_message_size)
        {
            return self.reply(now, reply::MESSAGE_TOO_BIG.line());
        }
        // RFC 6531 §3.5
        if !params.smtputf8 && !from.is_ascii() {
            return self.reply(now, reply::NEEDS_SMTPUTF8.line());
        }
        // RFC 6409 §6.1: a submission server may check that the sender is one the
        // authenticated user may use.
        if let Some(user) = &self.authenticated
            && self.config.sender_policy == SenderPolicy::Reject
            && !self.owns(user, &from)
        {
            let text = format!("<{}>: {}", from.address(), reply::SENDER_NOT_OWNED.text);
            return self.reply(now, reply::SENDER_NOT_OWNED.line_with(&text));
        }
        let from = from.address();
        self.transactions += 1;
        self.transaction = Some(Transaction {
            from: from.clone(),
            smtputf8: params.smtputf8,
            recipients: Vec::new(),
            reservation: None,
            relayed_for: None,
            grant_warned: false,
        });
        self.event(now, EventKind::MailFrom { from });
        self.reply(now, reply::SENDER_OK.line());
    }

    /// RFC 5321 §4.1.1.3, and the relay decision of DESIGN.md for each recipient.
    fn rcpt(&mut self, now: Millis, to: ForwardPath) {
        let Some(tx) = &self.transaction else {
            return self.reply(now, reply::BAD_SEQUENCE.line());
        };
        let (address, mailbox) = match to {
            // RFC 5321 §4.5.1: postmaster always exists; bare, it is ours.
            ForwardPath::Postmaster => {
                let domain = self
                    .config
                    .local_domains
                    .first()
                    .unwrap_or(&self.config.hostname)
                    .to_lowercase();
                (format!("postmaster@{domain}"), None)
            }
            ForwardPath::Mailbox(m) => {
                // RFC 6531 §3.5
                if !tx.smtputf8 && !m.is_ascii() {
                    return self.reply(now, reply::NEEDS_SMTPUTF8.line());
                }
                (m.address(), Some(m))
            }
        };
        // The same recipient twice is accepted and delivered once.
        if tx.recipients.iter().any(|r| r.address == address) {
            return self.reply(now, reply::RECIPIENT_OK.line());
        }
        // RFC 5321 §4.5.3.1.8
        if tx.recipients.len() >= self.config.max_recipients {
            return self.reply(now, reply::TOO_MANY_RECIPIENTS.line());
        }
        let Some(mailbox) = mailbox else {
            return self.accept(now, address, true, None);
        };
        // The relay decision is made on the address as RFC 5321 §4.1.2 reads it: the
        // source route already dropped (§3.6.1, Appendix C: the final mailbox
        // decides), the domain lowercased without its trailing dot, quotes removed
        // from the local part, and an address literal local only if it is ours.
        let Some(domain) = self.local_domain(&mailbox) else {
            return self.relay(now, address);
        };
        let local = mailbox.unquoted_local();
        if is_routed(&local) {
            // Percent hack, bang path, "user@elsewhere": never a relay, and never
            // rewritten into one. A session that may relay anyway looks it up as
            // written (no such user); any other is refused like a relay attempt.
            if !self.may_relay_now() {
                let reason = self.relay_refusal();
                return self.deny(now, address, reason);
            }
        } else if is_unsafe_local(&local) {
            return self.reply(now, reply::UNSAFE_LOCAL_PART.line());
        }
        let address = format!("{local}@{domain}");
        // The same recipient written another way is still the same recipient.
        if self
            .transaction
            .as_ref()
            .is_some_and(|tx| tx.recipients.iter().any(|r| r.address == address))
        {
            return self.reply(now, reply::RECIPIENT_OK.line());
        }
        // RFC 5321 §4.5.1: postmaster at any local domain, case-insensitive.
        if local.eq_ignore_ascii_case("postmaster") {
            return self.accept(now, address, true, None);
        }
        self.effects.push_back(SmtpEffect::LookupLocal {
            address: address.clone(),
        });
        self.pending = Some(Pending::Lookup { address });
    }

    /// Whether this session may relay without asking the grant table: a trusted
    /// network, or SMTP AUTH where the listener accepts it.
    fn may_relay_now(&self) -> bool {
        let policy = &self.config.relay;
        policy.trusts(self.peer.ip()) || (policy.auth && self.authenticated.is_some())
    }

    /// Why a relay without permission is refused on this listener.
    fn relay_refusal(&self) -> RelayRefusal {
        if self.config.relay.auth && !self.config.relay.grant {
            RelayRefusal::AuthRequired
        } else {
            RelayRefusal::NoGrant
        }
    }

    /// Whether `user` (as the server named them at AUTH) may send as `from`: their
    /// own address, compared case-insensitively, or the null sender (bounces).
    fn owns(&self, user: &str, from: &ReversePath) -> bool {
        let ReversePath::Mailbox(m) = from else {
            return true;
        };
        let Domain::Name(domain) = &m.domain else {
            return false;
        };
        let claimed = format!("{}@{domain}", m.unquoted_local());
        match user.split_once('@') {
            Some(_) => claimed.eq_ignore_ascii_case(user),
            // A bare login name means that user at the first local domain (DESIGN).
            None => self
                .config
                .local_domains
                .first()
                .is_some_and(|first| claimed.eq_ignore_ascii_case(&format!("{user}@{first}"))),
        }
    }

    /// The local domain `mailbox` is in, lowercased: one of ours by name, or an
    /// address literal of this connection's own address (RFC 5321 §4.1.3), which
    /// means the first local domain. Any other literal is somewhere else: a relay.
    fn local_domain(&self, mailbox: &Mailbox) -> Option<String> {
        match &mailbox.domain {
            Domain::Name(domain) => {
                crate::relay::is_local_domain(&self.config.local_domains, domain)
                    .then(|| domain.to_lowercase())
            }
            Domain::Literal(literal) => {
                let ours = crate::net::canonical(self.local.ip());
                (literal_ip(literal) == Some(ours))
                    .then(|| self.config.local_domains.first().map(|d| d.to_lowercase()))
                    .flatten()
            }
        }
    }

    /// A non-local recipient: may this session relay? (DESIGN.md relay decision)
    fn relay(&mut self, now: Millis, address: String) {
        let policy = &self.config.relay;
        if policy.trusts(self.peer.ip()) {
            return self.accept(now, address, false, Some(RelayOutcome::Trusted));
        }
        if policy.auth
            && let Some(user) = self.authenticated.clone()
        {
            if let Some(tx) = &mut self.transaction {
                tx.relayed_for = Some(user.clone());
            }
            return self.accept(now, address, false, Some(RelayOutcome::Auth { user }));
        }
        if policy.grant {
            // One reservation per transaction, however many relayed recipients.
            let held = self
                .transaction
                .as_ref()
                .and_then(|tx| tx.reservation.clone());
            match held {
                Some(r) => {
                    let outcome = grant_outcome(&r);
                    self.accept(now, address, false, Some(outcome))
                }
                None => {
                    self.effects.push_back(SmtpEffect::ReserveGrant);
                    self.pending = Some(Pending::Reserve { address });
                }
            }
            return;
        }
        let reason = self.relay_refusal();
        self.deny(now, address, reason);
    }

    fn lookup_done(&mut self, now: Millis, address: String, result: LookupResult) {
        match result {
            LookupResult::Exists => self.accept(now, address, true, Some(RelayOutcome::Local)),
            LookupResult::Unknown => {
                self.decision(now, address, RelayOutcome::UnknownUser);
                self.reply(now, reply::UNKNOWN_USER.line());
            }
            LookupResult::TempFail => self.reply(now, reply::TEMP_FAILURE.line()),
        }
    }

    fn reserve_done(&mut self, now: Millis, address: String, result: ReserveResult) {
        match result {
            ReserveResult::Reserved(r) => {
                let mode = self.config.grant_modes.mode_for(&r.user);
                if mode == GrantMode::Off {
                    return self.switched_off(now, address, r);
                }
                if mode == GrantMode::Warn && self.transaction.is_some() {
                    // One reservation per transaction: warned once per message.
                    let (key, user) = (r.key, r.user.clone());
                    self.event(now, EventKind::GrantRelayWarned { key, user });
                    if let Some(tx) = &mut self.transaction {
                        tx.grant_warned = true;
                    }
                }
                let outcome = grant_outcome(&r);
                match &mut self.transaction {
                    Some(tx) => {
                        tx.relayed_for = Some(r.user.clone());
                        tx.reservation = Some(r);
                    }
                    // Cannot happen (nothing ends a transaction while a result is
                    // awaited), but a reservation must never leak.
                    None => {
                        self.effects
                            .push_back(SmtpEffect::ReleaseGrant { key: r.key });
                        return self.reply(now, reply::TEMP_FAILURE.line());
                    }
                }
                self.accept(now, address, false, Some(outcome));
            }
            ReserveResult::Refused(reason) => self.deny(now, address, reason),
            ReserveResult::TempFail => self.reply(now, reply::TEMP_FAILURE.line()),
        }
    }

    /// Add an accepted recipient; `outcome` `None` means Local without a lookup.
    fn accept(&mut self, now: Millis, address: String, local: bool, outcome: Option<RelayOutcome>) {
        if let Some(tx) = &mut self.transaction {
            tx.recipients.push(Recipient {
                address: address.clone(),
                local,
            });
        }
        self.decision(now, address, outcome.unwrap_or(RelayOutcome::Local));
        self.reply(now, reply::RECIPIENT_OK.line());
    }

    /// `grant.mode = "off"` for the grant's user: the reservation goes back and the
    /// recipient gets 554 5.7.1 with the configured text (the client's user is told
    /// what to do instead), while SMTP AUTH on the same listener is unaffected.
    fn switched_off(&mut self, now: Millis, address: String, r: Reservation) {
        self.effects
            .push_back(SmtpEffect::ReleaseGrant { key: r.key });
        self.event(
            now,
            EventKind::GrantRelayRefused {
                key: r.key,
                user: r.user,
            },
        );
        self.decision(
            now,
            address,
            RelayOutcome::Denied {
                reason: RelayRefusal::GrantSwitchedOff,
            },
        );
        let text = one_line(&self.config.grant_off_text);
        let text = if text.is_empty() {
            reply::GRANT_SWITCHED_OFF.text.to_owned()
        } else {
            text
        };
        self.reply(now, reply::GRANT_SWITCHED_OFF.line_with(&text));
    }

    fn deny(&mut self, now: Millis, address: String, reason: RelayRefusal) {
        self.decision(now, address, RelayOutcome::Denied { reason });
        self.reply(now, reply::RELAY_DENIED.line());
    }

    fn decision(&mut self, now: Millis, rcpt: String, decision: RelayOutcome) {
        self.event(now, EventKind::RelayDecision { rcpt, decision });
    }

    /// RFC 5321 §4.1.1.4
    fn data(&mut self, now: Millis) {
        let Some(tx) = &self.transaction else {
            return self.reply(now, reply::BAD_SEQUENCE.line());
        };
        // RFC 2920 §3.1: with pipelining, DATA after only refused recipients is refused.
        if tx.recipients.is_empty() {
            return self.reply(now, reply::NO_VALID_RECIPIENTS.line());
        }
        self.reply(now, reply::START_DATA.line());
        self.mode = Mode::Data(DataReceiver::with_bare_newline(
            self.config.max_message_size,
            self.config.bare_newline,
        ));
        self.data_deadline = now.saturating_add(self.config.idle_timeout);
        self.data_line = 0;
    }

    fn end_of_data(&mut self, now: Millis, receiver: DataReceiver) {
        let body = match receiver.finish() {
            Ok(body) => body,
            Err(e) => {
                self.end_transaction();
                let refusal = match e {
                    DataError::TooBig => reply::MESSAGE_TOO_BIG,
                    DataError::Loop => reply::MAIL_LOOP,
                    // RFC 5321 §2.3.8: SMTP smuggling needs a bare line ending.
                    DataError::BareLf => reply::BARE_LF,
                    DataError::BareCr => reply::BARE_CR,
                };
                return self.reply(now, refusal.line());
            }
        };
        let (Some(tx), Some(helo)) = (&self.transaction, &self.helo) else {
            return self.reply(now, reply::BAD_SEQUENCE.line());
        };
        let id = format!("{:X}.{}.{}", now.0, self.id, self.transactions);
        let single = match tx.recipients.as_slice() {
            [only] => Some(only.address.as_str()),
            _ => None,
        };
        let header = received_header(&Stamp {
            helo: &helo.name,
            peer: self.peer.ip(),
            hostname: &self.config.hostname,
            with: with_protocol(
                helo.esmtp,
                tx.smtputf8,
                self.tls,
                self.authenticated.is_some(),
            ),
            id: &id,
            grant_user: tx.reservation.as_ref().map(|r| r.user.as_str()),
            grant_warn: tx.grant_warned,
            auth_user: self.authenticated.as_deref(),
            single_recipient: single,
            now,
        });
        let size = body.len() as u64;
        let mut message = header.into_bytes();
        message.extend_from_slice(&body);
        let delivery = Delivery {
            id: id.clone(),
            from: tx.from.clone(),
            recipients: tx.recipients.clone(),
            message,
            relayed_for: tx.relayed_for.clone(),
        };
        self.effects.push_back(SmtpEffect::Deliver(delivery));
        self.pending = Some(Pending::Deliver { id, size });
    }

    fn deliver_done(&mut self, now: Millis, id: String, size: u64, result: StoreResult) {
        let refusal = match result {
            StoreResult::Stored => None,
            StoreResult::TempFail => Some(reply::STORE_FAILED),
            StoreResult::DiskFull => Some(reply::DISK_FULL),
        };
        if let Some(refusal) = refusal {
            self.end_transaction();
            return self.reply(now, refusal.line());
        }
        let Some(tx) = self.transaction.take() else {
            return;
        };
        // Only now is the message durable: the 250 of RFC 5321 §4.1.1.4, then the
        // grant is spent.
        let queued = format!("{} as {id}", reply::QUEUED.text);
        self.reply(now, reply::QUEUED.line_with(&queued));
        // Postfix counts errors and junk "without delivering mail".
        self.errors = 0;
        self.junk = 0;
        if let Some(r) = &tx.reservation {
            self.effects
                .push_back(SmtpEffect::CommitGrant { key: r.key });
        }
        let relayed = tx.recipients.iter().any(|r| !r.local);
        self.event(
            now,
            EventKind::MessageAccepted {
                id,
                from: tx.from,
                rcpts: tx.recipients.into_iter().map(|r| r.address).collect(),
                size,
                relayed,
            },
        );
    }

    /// Abort the transaction, giving back its reservation.
    fn end_transaction(&mut self) {
        if let Some(tx) = self.transaction.take()
            && let Some(r) = tx.reservation
        {
            self.effects
                .push_back(SmtpEffect::ReleaseGrant { key: r.key });
        }
    }

    fn close(&mut self, now: Millis, last: Option<SmtpReply>, reason: CloseReason) {
        if self.closed {
            return;
        }
        // A reply held back by the error delay is still the answer to its command.
        if let Some(Pending::ErrorDelay { reply, .. }) = self.pending.take() {
            self.send(now, reply);
        }
        if let Some(last) = last {
            self.send(now, last.line());
        }
        // Effects not yet handed out (a delivery, a lookup, a handshake) are dropped;
        // a result for one already in flight is ignored, or released if it is a
        // reservation.
        self.effects
            .retain(|e| !e.expects_result() && !SmtpSession::is_start_tls(e));
        self.pending = None;
        self.end_transaction();
        self.mode = Mode::Command;
        self.closed = true;
        self.event(now, EventKind::SessionClosed { reason });
    }

    /// The reply to a client's command: a 4xx or 5xx one is an error, counted and,
    /// past the soft limit, delayed.
    fn reply(&mut self, now: Millis, text: String) {
        let error = text.starts_with(['4', '5']);
        self.respond(now, text, error);
    }

    /// The reply to NOOP, VRFY, RSET or HELP: an error once the junk limit is passed.
    fn junk_reply(&mut self, now: Millis, text: String) {
        let error = self.junk > self.config.error_limits.junk_commands;
        self.respond(now, text, error);
    }

    /// Postfix's `smtpd_soft_error_limit`, `smtpd_hard_error_limit` and
    /// `smtpd_error_sleep_time`, sans IO: past the soft limit the reply waits (the
    /// session asks for it through `poll_timeout`, so a simulator's virtual clock
    /// runs it exactly), growing by `sleep` with each error; at the hard limit the
    /// reply is followed by 421 4.7.0 and the connection closes.
    fn respond(&mut self, now: Millis, text: String, error: bool) {
        if !error {
            return self.send(now, text);
        }
        let limits = self.config.error_limits;
        self.errors = self.errors.saturating_add(1);
        if self.errors >= limits.hard.max(1) {
            self.send(now, text);
            return self.close(now, Some(reply::TOO_MANY_ERRORS), CloseReason::Error);
        }
        let over = self.errors.saturating_sub(limits.soft);
        if over == 0 || limits.sleep.is_zero() || self.pending.is_some() {
            return self.send(now, text);
        }
        let until = now.saturating_add(limits.sleep.saturating_mul(over));
        self.pending = Some(Pending::ErrorDelay { until, reply: text });
    }

    /// Queue reply bytes, one `ServerLine` event per line.
    fn send(&mut self, now: Millis, text: String) {
        for line in text.split_terminator("\r\n") {
            self.event(
                now,
                EventKind::ServerLine {
                    line: line.to_owned(),
                },
            );
        }
        self.transmit.extend_from_slice(text.as_bytes());
    }

    fn event(&mut self, now: Millis, kind: EventKind) {
        self.events.push_back(Event::new(now, Some(self.id), kind));
    }
}

/// RFC 5321 §4.2: a reply line is text up to CRLF; an operator's text with line breaks
/// or other controls would break the reply, so they become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

fn grant_outcome(r: &Reservation) -> RelayOutcome {
    RelayOutcome::Grant {
        key: r.key,
        user: r.user.clone(),
        // A grant added by hand has no POP3 session behind it: session 0.
        granting_session: r.granting_session.unwrap_or_default(),
    }
}

/// A client line as the event stream may show it. The one place where secrets are
/// redacted: the AUTH command (RFC 4954 §4) keeps its mechanism name and hides the
/// initial response, and every line of a SASL exchange (`sasl`) is hidden whole.
/// Every verb this session knows, so a stray base64 line is told apart from them.
const SMTP_VERBS: &[&str] = &[
    "EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "HELP", "EXPN",
    "STARTTLS", "AUTH", "BDAT", "ETRN",
];

/// The address in an RFC 5321 §4.1.3 address literal (`[192.0.2.1]`,
/// `[IPv6:2001:db8::1]`), canonical (`::ffff:a.b.c.d` is `a.b.c.d`).
fn literal_ip(literal: &str) -> Option<std::net::IpAddr> {
    let inner = literal.strip_prefix('[')?.strip_suffix(']')?;
    let ip = match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
            std::net::IpAddr::V6(inner[5..].parse().ok()?)
        }
        _ => std::net::IpAddr::V4(inner.parse().ok()?),
    };
    Some(crate::net::canonical(ip))
}

/// RFC 5321 §3.6.1 and Appendix C, RFC 1123 §5.2.16: a local part that routes
/// somewhere else (`user%other`, `other!user`, `"user@other"`). popgate never
/// rewrites it (Postfix: `allow_percent_hack = no`, `swap_bangpath = no`), so such an
/// address in a local domain is never a way to relay: it is refused unless the
/// session could relay anyway, and then it is looked up as written.
fn is_routed(local: &str) -> bool {
    local.contains(['%', '!', '@'])
}

/// A local part that could name something outside its mailbox folder once it is a
/// path component: a separator, a control character, or a leading dot (`.`, `..`,
/// hidden files, Maildir++ folders).
fn is_unsafe_local(local: &str) -> bool {
    local.starts_with('.')
        || local
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

fn client_line_event(line: &[u8], sasl: bool) -> EventKind {
    const HIDDEN: &str = "****";
    let line = if sasl {
        HIDDEN.to_owned()
    } else {
        let text = String::from_utf8_lossy(line);
        // Split on any whitespace, not only the SP the parser wants: a malformed AUTH
        // line (tabs, NULs after the response) is refused but must not leak either.
        let mut words = text.split(|c: char| c.is_ascii_whitespace() || c == '\0');
        match (words.next(), words.next(), words.next()) {
            (Some(verb), Some(mechanism), Some(_)) if verb.eq_ignore_ascii_case("AUTH") => {
                format!("{verb} {mechanism} {HIDDEN}")
            }
            _ if crate::sasl::may_be_credentials(line, SMTP_VERBS) => HIDDEN.to_owned(),
            _ => text.into_owned(),
        }
    };
    EventKind::ClientLine { line }
}

/// Advance the length of the current DATA text line over `data` (octets since the last
/// LF, a CR included); whether a line ran longer than `max` octets plus its CRLF.
fn text_line_too_long(line: &mut usize, data: &[u8], max: usize) -> bool {
    for chunk in data.split_inclusive(|&b| b == b'\n') {
        let ended = chunk.last() == Some(&b'\n');
        let body = chunk.len() - usize::from(ended);
        *line = line.saturating_add(body);
        // +1: the CR of the CRLF is counted here, not in `max`.
        if *line > max.saturating_add(1) {
            return true;
        }
        if ended {
            *line = 0;
        }
    }
    false
}
