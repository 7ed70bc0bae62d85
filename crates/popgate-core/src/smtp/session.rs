//! The SMTP session state machine.

use super::data::{DataError, DataReceiver};
use super::parse::{Command, Domain, ForwardPath, MailParams, Mailbox, ReversePath, parse_command};
use super::received::{Stamp, received_header, with_protocol};
use super::{
    Delivery, LookupResult, Recipient, ReserveResult, SmtpConfig, SmtpEffect, SmtpResult,
    StoreResult,
};
use crate::event::{CloseReason, Event, EventKind, Protocol, RelayOutcome, SessionId};
use crate::grant::{RelayRefusal, Reservation};
use crate::line::{Line, LineReader};
use crate::reply::{self, SmtpReply};
use crate::time::Millis;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

/// Pipelined input (RFC 2920) buffered while a result is awaited, at most; the driver
/// stops reading at this bound (see [`SmtpSession::wants_input`]).
const PIPELINE_BUFFER: usize = 64 * 1024;

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
///         // LookupLocal, ReserveGrant and Deliver expect a result; CommitGrant and
///         // ReleaseGrant do not. At most one result-expecting effect is outstanding.
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
    /// The user who authenticated with SMTP AUTH (RFC 4954); set by the AUTH
    /// exchange once it is offered, `None` until then.
    authenticated: Option<String>,
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
    last_activity: Millis,
    shutting_down: bool,
    closed: bool,
}

#[derive(Debug)]
enum Mode {
    Command,
    Data(DataReceiver),
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
}

#[derive(Debug)]
enum Pending {
    Lookup { address: String },
    Reserve { address: String },
    Deliver { id: String, size: u64 },
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
            shutting_down: false,
            closed: false,
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
        let greeting = format!("{} {}", s.config.hostname, reply::GREETING.text);
        s.reply(now, reply::GREETING.line_with(&greeting));
        s
    }

    /// Bytes read from the peer. Call only while [`wants_input`](Self::wants_input).
    pub fn handle_input(&mut self, now: Millis, bytes: &[u8]) {
        if self.closed {
            return;
        }
        self.last_activity = now;
        self.reader.push(bytes);
        self.process(now);
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
                }
            }
        }
        self.process(now);
    }

    /// [`poll_timeout`](Self::poll_timeout) has passed: RFC 5321 §4.5.3.2 lets the
    /// server close an idle connection; 421 4.4.2, releasing any reservation.
    pub fn handle_timeout(&mut self, now: Millis) {
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

    /// When to call [`handle_timeout`](Self::handle_timeout): the idle timeout after
    /// the last input. `None` when closed, or while a result is awaited (the wait is
    /// the server's, not the client's).
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.closed || self.pending.is_some() {
            None
        } else {
            Some(self.last_activity.saturating_add(self.config.idle_timeout))
        }
    }

    /// Whether the driver should read more bytes now.
    pub fn wants_input(&self) -> bool {
        !self.closed
            && self.pending.is_none()
            && self.reader.buffered() < PIPELINE_BUFFER.max(self.config.max_command_line + 2)
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Work through buffered input until more is needed, a result is awaited, or the
    /// session closes.
    fn process(&mut self, now: Millis) {
        while !self.closed && self.pending.is_none() {
            match std::mem::replace(&mut self.mode, Mode::Command) {
                Mode::Data(mut receiver) => {
                    let buffered = self.reader.take_buffer();
                    match receiver.push(&buffered) {
                        Some(used) => {
                            // RFC 2920 §3.1: what follows the end of data are commands.
                            self.reader.unread(&buffered[used..]);
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
                    match self.reader.next_line() {
                        None => return,
                        Some(Line::TooLong) => self.reply(now, reply::LINE_TOO_LONG.line()),
                        Some(Line::Complete(line)) => self.command(now, &line),
                    }
                }
            }
        }
    }

    fn command(&mut self, now: Millis, line: &[u8]) {
        self.event(
            now,
            EventKind::ClientLine {
                line: client_line_for_event(line),
            },
        );
        let command = match parse_command(line) {
            Ok(command) => command,
            Err(e) => return self.reply(now, e.reply().line()),
        };
        match command {
            Command::Ehlo(name) => self.hello(now, name, true),
            Command::Helo(name) => self.hello(now, name, false),
            Command::Mail { from, params } => self.mail(now, from, params),
            Command::Rcpt { to } => self.rcpt(now, to),
            Command::Data => self.data(now),
            // RFC 5321 §4.1.1.5: RSET aborts the transaction, keeps the greeting.
            Command::Rset => {
                self.end_transaction();
                self.reply(now, reply::RESET.line());
            }
            Command::Noop => self.reply(now, reply::NOOP.line()),
            // RFC 5321 §4.1.1.10
            Command::Quit => self.close(now, Some(reply::BYE), CloseReason::Quit),
            // RFC 5321 §3.5.3: 252 rather than reveal who exists.
            Command::Vrfy => self.reply(now, reply::CANNOT_VRFY.line()),
            Command::Help => self.reply(now, reply::HELP.line()),
            // RFC 5321 §3.5.2: EXPN may be disabled. STARTTLS (RFC 3207) and AUTH
            // (RFC 4954) are not offered yet; their handlers go here.
            Command::Expn | Command::StartTls | Command::Auth => {
                self.reply(now, reply::NOT_IMPLEMENTED.line())
            }
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

    /// The EHLO keywords. STARTTLS (RFC 3207, only before TLS) and AUTH (RFC 4954,
    /// only where the listener's policy allows it) are added here when they land.
    fn extensions(&self) -> Vec<String> {
        vec![
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
        ]
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
        let from = from.address();
        self.transactions += 1;
        self.transaction = Some(Transaction {
            from: from.clone(),
            smtputf8: params.smtputf8,
            recipients: Vec::new(),
            reservation: None,
            relayed_for: None,
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
        if self.is_local(&mailbox) {
            // RFC 5321 §4.5.1: postmaster at any local domain, case-insensitive.
            if mailbox.unquoted_local().eq_ignore_ascii_case("postmaster") {
                return self.accept(now, address, true, None);
            }
            self.effects.push_back(SmtpEffect::LookupLocal {
                address: address.clone(),
            });
            self.pending = Some(Pending::Lookup { address });
            return;
        }
        self.relay(now, address);
    }

    /// A local domain (address literals never are).
    fn is_local(&self, mailbox: &Mailbox) -> bool {
        match &mailbox.domain {
            Domain::Name(domain) => self
                .config
                .local_domains
                .iter()
                .any(|d| d.to_lowercase() == *domain),
            Domain::Literal(_) => false,
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
        let reason = if policy.auth {
            RelayRefusal::AuthRequired
        } else {
            RelayRefusal::NoGrant
        };
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
        self.mode = Mode::Data(DataReceiver::new(self.config.max_message_size));
    }

    fn end_of_data(&mut self, now: Millis, receiver: DataReceiver) {
        let body = match receiver.finish() {
            Ok(body) => body,
            Err(e) => {
                self.end_transaction();
                let refusal = match e {
                    DataError::TooBig => reply::MESSAGE_TOO_BIG,
                    DataError::Loop => reply::MAIL_LOOP,
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
        if let Some(last) = last {
            self.reply(now, last.line());
        }
        // Effects not yet handed out (a delivery, a lookup) are dropped; a result for
        // one already in flight is ignored, or released if it is a reservation.
        self.effects.retain(|e| !e.expects_result());
        self.pending = None;
        self.end_transaction();
        self.mode = Mode::Command;
        self.closed = true;
        self.event(now, EventKind::SessionClosed { reason });
    }

    /// Queue reply bytes, one `ServerLine` event per line.
    fn reply(&mut self, now: Millis, text: String) {
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

fn grant_outcome(r: &Reservation) -> RelayOutcome {
    RelayOutcome::Grant {
        key: r.key,
        user: r.user.clone(),
        // A grant added by hand has no POP3 session behind it: session 0.
        granting_session: r.granting_session.unwrap_or_default(),
    }
}

/// A client line as the event stream may show it. The one place where secrets are
/// redacted: the AUTH exchange (RFC 4954 §4) keeps its mechanism name and hides
/// the initial response; its continuation lines must be hidden here too once AUTH
/// is offered.
fn client_line_for_event(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut words = text.splitn(3, ' ');
    if let (Some(verb), Some(mechanism), Some(_)) = (words.next(), words.next(), words.next())
        && verb.eq_ignore_ascii_case("AUTH")
    {
        return format!("{verb} {mechanism} ****");
    }
    text.into_owned()
}
