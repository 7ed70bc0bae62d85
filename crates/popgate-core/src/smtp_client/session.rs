//! The SMTP client state machine.

use super::reply::{Reply, ReplyError, ReplyParser};
use super::{ClientConfig, ClientEffect, Envelope, Failure, Outcome, RcptOutcome, TlsMode, data};
use crate::time::Millis;
use base64::Engine as _;
use std::collections::VecDeque;

/// One outbound SMTP connection carrying one transaction (RFC 5321 §3.3), sans IO.
///
/// ```text
/// let mut c = SmtpClient::new(config, envelope, &message, now);  // waits for the 220
/// loop {
///     while let Some(bytes) = c.poll_transmit() { write bytes; c.handle_written(now) }
///     if let Some(ClientEffect::StartTls) = c.poll_effect() {
///         TLS client handshake on the socket;
///         on success c.handle_tls_established(now), on failure c.handle_disconnect(now);
///         continue;
///     }
///     if c.is_closed() { break }
///     wait for the first of:
///         bytes from the next hop        -> c.handle_input(now, bytes)
///         end of stream or an error      -> c.handle_disconnect(now)
///         now reaches c.poll_timeout()   -> c.handle_timeout(now)
/// }
/// let outcome = c.take_outcome();          // always Some once closed
/// ```
///
/// The outcome is decided as soon as the end of data is answered (or the transaction
/// fails); the QUIT that follows cannot change it. Anything the next hop does that
/// does not fit (garbage, an unexpected code, a close mid-reply, silence past the
/// timeout) makes every undecided recipient a temporary failure, never a lost
/// message.
#[derive(Debug)]
pub struct SmtpClient {
    config: ClientConfig,
    envelope: Envelope,
    /// DATA content, already encoded for the wire; taken when 354 arrives.
    body: Vec<u8>,
    /// Octets of the message as stored, for SIZE (RFC 1870).
    size: u64,
    eight_bit: bool,
    /// RFC 6531: a non-ASCII address needs SMTPUTF8.
    needs_utf8: bool,
    parser: ReplyParser,
    ext: Extensions,
    tls: bool,
    /// Replies owed by the next hop, oldest first (several while pipelining).
    expect: VecDeque<Expect>,
    /// Commands waiting to be written (without PIPELINING: one per reply).
    queued: VecDeque<(String, Expect)>,
    results: Vec<Option<RcptOutcome>>,
    /// Recipients the next hop accepted with RCPT, waiting for the end of data.
    accepted: Vec<usize>,
    /// The MAIL command failed: RCPT replies still owed are read and ignored.
    mail_failed: bool,
    transmit: Vec<u8>,
    effects: VecDeque<ClientEffect>,
    outcome: Option<Outcome>,
    deadline: Millis,
    closed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    /// STARTTLS was accepted: waiting for the driver's handshake, not for a reply.
    Handshake,
    Auth,
    Mail,
    Rcpt(usize),
    Data,
    Dot,
    Quit,
}

impl Expect {
    /// The positive codes that answer this command (RFC 5321 §4.3.2).
    fn accepts(&self, code: u16) -> bool {
        match self {
            Expect::Greeting | Expect::StartTls => code == 220,
            Expect::Ehlo | Expect::Helo | Expect::Mail | Expect::Dot => code == 250,
            Expect::Rcpt(_) => code == 250 || code == 251,
            Expect::Auth => code == 235,
            Expect::Data => code == 354,
            Expect::Handshake | Expect::Quit => true,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Expect::Greeting => "greeting",
            Expect::Ehlo => "EHLO",
            Expect::Helo => "HELO",
            Expect::StartTls => "STARTTLS",
            Expect::Handshake => "TLS handshake",
            Expect::Auth => "AUTH",
            Expect::Mail => "MAIL FROM",
            Expect::Rcpt(_) => "RCPT TO",
            Expect::Data => "DATA",
            Expect::Dot => "end of data",
            Expect::Quit => "QUIT",
        }
    }
}

/// What the EHLO reply offered (RFC 5321 §4.1.1.1: one keyword per line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Extensions {
    pipelining: bool,
    /// RFC 1870: `SIZE n`; 0 or absent means no fixed limit.
    size: Option<u64>,
    eight_bit_mime: bool,
    smtputf8: bool,
    starttls: bool,
    auth_plain: bool,
}

impl Extensions {
    fn parse(reply: &Reply) -> Extensions {
        let mut ext = Extensions::default();
        // The first line is the greeting name, the rest keywords.
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => ext.pipelining = true,
                "SIZE" => ext.size = words.next().and_then(|n| n.parse().ok()),
                "8BITMIME" => ext.eight_bit_mime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "STARTTLS" => ext.starttls = true,
                "AUTH" => ext.auth_plain = words.any(|m| m.eq_ignore_ascii_case("PLAIN")),
                _ => {}
            }
        }
        ext
    }
}

impl SmtpClient {
    /// A client for a freshly opened connection: it waits for the greeting.
    pub fn new(
        config: ClientConfig,
        envelope: Envelope,
        message: &[u8],
        now: Millis,
    ) -> SmtpClient {
        let needs_utf8 =
            !envelope.from.is_ascii() || envelope.recipients.iter().any(|r| !r.is_ascii());
        let results = vec![None; envelope.recipients.len()];
        let deadline = now.saturating_add(config.timeout);
        SmtpClient {
            body: data::encode(message),
            size: message.len() as u64,
            eight_bit: data::is_eight_bit(message),
            needs_utf8,
            config,
            envelope,
            parser: ReplyParser::default(),
            ext: Extensions::default(),
            tls: false,
            expect: VecDeque::from([Expect::Greeting]),
            queued: VecDeque::new(),
            results,
            accepted: Vec::new(),
            mail_failed: false,
            transmit: Vec::new(),
            effects: VecDeque::new(),
            outcome: None,
            deadline,
            closed: false,
        }
    }

    /// Bytes from the next hop.
    pub fn handle_input(&mut self, now: Millis, bytes: &[u8]) {
        if self.closed {
            return;
        }
        if self.expect.front() == Some(&Expect::Handshake) {
            // RFC 3207 §4.2: nothing sent before the handshake may be read as a reply
            // inside TLS; bytes here would be a next hop breaking the protocol.
            return self.fail_all(Failure::temporary(
                "4.5.0",
                "next hop sent data after accepting STARTTLS",
            ));
        }
        self.deadline = now.saturating_add(self.config.timeout);
        self.parser.push(bytes);
        while !self.closed {
            match self.parser.next_reply() {
                None => break,
                Some(Ok(reply)) => self.on_reply(reply),
                Some(Err(e)) => self.protocol_error(&e),
            }
        }
    }

    /// Bytes were written to the next hop; a slow but moving upload is not a timeout.
    pub fn handle_written(&mut self, now: Millis) {
        self.deadline = now.saturating_add(self.config.timeout);
    }

    /// The TLS handshake asked for by [`ClientEffect::StartTls`] succeeded.
    pub fn handle_tls_established(&mut self, now: Millis) {
        if self.expect.front() != Some(&Expect::Handshake) {
            return;
        }
        self.expect.pop_front();
        self.tls = true;
        self.deadline = now.saturating_add(self.config.timeout);
        // RFC 3207 §4.2: forget everything learnt before TLS and say EHLO again.
        self.parser.clear();
        self.ext = Extensions::default();
        self.command(format!("EHLO {}", self.config.helo_name), Expect::Ehlo);
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        if self.closed || now < self.deadline {
            return;
        }
        let waiting = self.expect.front().map_or("reply", Expect::name);
        self.fail_all(Failure::temporary(
            "4.4.2",
            format!("next hop did not answer {waiting} in time"),
        ));
    }

    /// The connection ended (or the TLS handshake failed).
    pub fn handle_disconnect(&mut self, _now: Millis) {
        if self.closed {
            return;
        }
        let waiting = self.expect.front().map_or("reply", Expect::name);
        self.fail_all(Failure::temporary(
            "4.4.2",
            format!("connection lost waiting for the {waiting} reply"),
        ));
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.transmit.is_empty()).then(|| std::mem::take(&mut self.transmit))
    }

    pub fn poll_effect(&mut self) -> Option<ClientEffect> {
        self.effects.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Millis> {
        (!self.closed).then_some(self.deadline)
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The outcome, once decided (at the latest when closed).
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    pub fn take_outcome(&mut self) -> Option<Outcome> {
        self.outcome.take()
    }

    // ---- replies ------------------------------------------------------------------

    fn on_reply(&mut self, reply: Reply) {
        let Some(expect) = self.expect.pop_front() else {
            // RFC 5321 §4.2: a reply nobody asked for.
            return self.fail_all(Failure::temporary(
                "4.5.0",
                format!("unexpected reply from next hop: {}", reply.summary()),
            ));
        };
        if reply.code < 400 && !expect.accepts(reply.code) {
            // RFC 5321 §4.2.1: a positive code that does not answer this command means
            // the next hop lost track of the dialogue; nothing it says can be trusted.
            return self.fail_all(Failure::temporary(
                "4.5.0",
                format!(
                    "unexpected reply to {} from next hop: {}",
                    expect.name(),
                    reply.summary()
                ),
            ));
        }
        match expect {
            Expect::Greeting => self.on_greeting(reply),
            Expect::Ehlo => self.on_ehlo(reply),
            Expect::Helo => self.on_helo(reply),
            Expect::StartTls => self.on_starttls(reply),
            Expect::Handshake => {}
            Expect::Auth => self.on_auth(reply),
            Expect::Mail => self.on_mail(reply),
            Expect::Rcpt(i) => self.on_rcpt(i, reply),
            Expect::Data => self.on_data(reply),
            Expect::Dot => self.on_dot(reply),
            Expect::Quit => self.close(),
        }
        self.flush_queued();
    }

    fn on_greeting(&mut self, reply: Reply) {
        // RFC 5321 §3.1, §4.3.2: 220, or 554 for "no service here".
        if reply.code != 220 {
            return self.failed_reply(&reply, "greeting", false);
        }
        self.command(format!("EHLO {}", self.config.helo_name), Expect::Ehlo);
    }

    fn on_ehlo(&mut self, reply: Reply) {
        match reply.code {
            250 => {
                self.ext = Extensions::parse(&reply);
                self.after_hello();
            }
            // RFC 5321 §3.2: a server that does not know EHLO answers 500/502 (or
            // 5xx generally); fall back to HELO, which offers no extensions.
            500..=599 if !self.tls => {
                self.command(format!("HELO {}", self.config.helo_name), Expect::Helo)
            }
            _ => self.failed_reply(&reply, "EHLO", false),
        }
    }

    fn on_helo(&mut self, reply: Reply) {
        if reply.code != 250 {
            return self.failed_reply(&reply, "HELO", false);
        }
        self.ext = Extensions::default();
        self.after_hello();
    }

    fn after_hello(&mut self) {
        if !self.tls && self.config.tls != TlsMode::Disabled {
            if self.ext.starttls {
                return self.command("STARTTLS".to_owned(), Expect::StartTls);
            }
            if self.config.tls == TlsMode::Required {
                return self.fail_all(Failure::temporary(
                    "4.7.10",
                    "TLS is required for this route but the next hop does not offer STARTTLS",
                ));
            }
        }
        self.authenticate_or_send();
    }

    fn on_starttls(&mut self, reply: Reply) {
        if reply.code == 220 {
            // RFC 3207 §4.2: plaintext after the go-ahead is discarded.
            self.parser.clear();
            self.expect.push_front(Expect::Handshake);
            self.effects.push_back(ClientEffect::StartTls);
            return;
        }
        if self.config.tls == TlsMode::Required {
            return self.failed_reply(&reply, "STARTTLS (TLS is required for this route)", false);
        }
        // RFC 3207 §4: the client may go on without TLS when STARTTLS is refused.
        self.authenticate_or_send();
    }

    fn authenticate_or_send(&mut self) {
        let Some(auth) = self.config.auth.clone() else {
            return self.begin_transaction();
        };
        if !self.tls {
            return self.fail_all(Failure::temporary(
                "4.7.10",
                "credentials are configured for this route; refusing to send them without TLS",
            ));
        }
        if !self.ext.auth_plain {
            return self.fail_all(Failure::temporary(
                "4.7.0",
                "the next hop does not offer AUTH PLAIN",
            ));
        }
        // RFC 4616 §2: authzid NUL authcid NUL passwd; RFC 4954 §4 initial response.
        let plain = format!("\0{}\0{}", auth.user, auth.password.expose());
        let encoded = base64::engine::general_purpose::STANDARD.encode(plain);
        self.command(format!("AUTH PLAIN {encoded}"), Expect::Auth);
    }

    fn on_auth(&mut self, reply: Reply) {
        // A refused login is our configuration's fault, not the message's: retry
        // rather than bounce (RFC 4954 §6: 535 and 454).
        if reply.code != 235 {
            return self.failed_reply(&reply, "AUTH", false);
        }
        self.begin_transaction();
    }

    fn begin_transaction(&mut self) {
        if let Some(limit) = self.ext.size.filter(|&n| n > 0)
            && self.size > limit
        {
            // RFC 1870 §6: the client must not send a message the server said is too big.
            return self.fail_all(Failure::permanent(
                "5.3.4",
                format!(
                    "message of {} octets exceeds the next hop's fixed limit of {limit} (RFC 1870)",
                    self.size
                ),
            ));
        }
        if self.eight_bit && !self.ext.eight_bit_mime {
            // RFC 6152 §3: 8-bit data only to a server that offers 8BITMIME.
            return self.fail_all(Failure::permanent(
                "5.6.3",
                "message has 8-bit content but the next hop does not offer 8BITMIME (RFC 6152)",
            ));
        }
        if self.needs_utf8 && !self.ext.smtputf8 {
            // RFC 6531 §3.4: a non-ASCII address only to a server that offers SMTPUTF8.
            return self.fail_all(Failure::permanent(
                "5.6.7",
                "an address is not ASCII but the next hop does not offer SMTPUTF8 (RFC 6531)",
            ));
        }
        let mut mail = format!("MAIL FROM:<{}>", self.envelope.from);
        if self.ext.size.is_some() {
            mail.push_str(&format!(" SIZE={}", self.size));
        }
        if self.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if self.needs_utf8 {
            mail.push_str(" SMTPUTF8");
        }
        self.command(mail, Expect::Mail);
        for i in 0..self.envelope.recipients.len() {
            let rcpt = format!("RCPT TO:<{}>", self.envelope.recipients[i]);
            self.command(rcpt, Expect::Rcpt(i));
        }
    }

    fn on_mail(&mut self, reply: Reply) {
        if reply.code != 250 {
            self.mail_failed = true;
            let failure = self.reply_failure(&reply, "MAIL FROM");
            for r in self.results.iter_mut().filter(|r| r.is_none()) {
                *r = Some(RcptOutcome::Failed(failure.clone()));
            }
            // Without PIPELINING the RCPTs were never sent; with it, their replies
            // are still owed and read below.
            self.queued.clear();
            if !self.expect.iter().any(|e| matches!(e, Expect::Rcpt(_))) {
                self.decide_and_quit();
            }
        }
    }

    fn on_rcpt(&mut self, i: usize, reply: Reply) {
        if !self.mail_failed {
            match reply.code {
                // RFC 5321 §4.2.5: 251 (will forward) is acceptance too.
                250 | 251 => self.accepted.push(i),
                _ => {
                    let failure = self.reply_failure(&reply, "RCPT TO");
                    if let Some(slot) = self.results.get_mut(i) {
                        *slot = Some(RcptOutcome::Failed(failure));
                    }
                }
            }
        }
        let more = self.expect.iter().any(|e| matches!(e, Expect::Rcpt(_)))
            || self
                .queued
                .iter()
                .any(|(_, e)| matches!(e, Expect::Rcpt(_)));
        if more {
            return;
        }
        if self.mail_failed || self.accepted.is_empty() {
            return self.decide_and_quit();
        }
        self.command("DATA".to_owned(), Expect::Data);
    }

    fn on_data(&mut self, reply: Reply) {
        if reply.code != 354 {
            return self.fail_accepted(&reply, "DATA");
        }
        let body = std::mem::take(&mut self.body);
        self.transmit.extend_from_slice(&body);
        self.expect.push_back(Expect::Dot);
    }

    fn on_dot(&mut self, reply: Reply) {
        if reply.code != 250 {
            return self.fail_accepted(&reply, "end of data");
        }
        let text = reply.summary();
        for &i in &self.accepted {
            if let Some(slot) = self.results.get_mut(i) {
                *slot = Some(RcptOutcome::Delivered {
                    reply: text.clone(),
                });
            }
        }
        self.decide_and_quit();
    }

    // ---- helpers ------------------------------------------------------------------

    /// A reply that failed the accepted recipients (DATA or end of data).
    fn fail_accepted(&mut self, reply: &Reply, what: &str) {
        let failure = self.reply_failure(reply, what);
        for &i in &self.accepted {
            if let Some(slot) = self.results.get_mut(i) {
                *slot = Some(RcptOutcome::Failed(failure.clone()));
            }
        }
        self.decide_and_quit();
    }

    /// A connection-level refusal (greeting, EHLO, STARTTLS, AUTH): every recipient
    /// shares it; `permanent_ok` says whether a 5xx here may bounce the message.
    fn failed_reply(&mut self, reply: &Reply, what: &str, permanent_ok: bool) {
        let mut failure = self.reply_failure(reply, what);
        if !permanent_ok && failure.permanent {
            // A host that refuses us outright says nothing about the recipients;
            // another attempt (or another MX) may succeed.
            failure.permanent = false;
            failure.status = "4.4.0".to_owned();
        }
        self.fail_all(failure);
    }

    /// RFC 5321 §4.2.1: 4yz is transient, 5yz permanent; any other code where a
    /// completion was expected is the next hop misbehaving, so transient.
    fn reply_failure(&self, reply: &Reply, what: &str) -> Failure {
        let summary = reply.summary();
        let (permanent, default) = match reply.code {
            500..=599 => (true, "5.0.0"),
            400..=499 => (false, "4.0.0"),
            _ => {
                return Failure {
                    permanent: false,
                    status: "4.5.0".to_owned(),
                    reply: Some(summary.clone()),
                    text: format!("unexpected reply to {what}: {summary}"),
                };
            }
        };
        Failure {
            permanent,
            status: reply
                .enhanced_status()
                .unwrap_or_else(|| default.to_owned()),
            reply: Some(summary.clone()),
            text: format!("next hop answered {what} with {summary}"),
        }
    }

    fn protocol_error(&mut self, e: &ReplyError) {
        self.fail_all(Failure::temporary(
            "4.5.0",
            format!("next hop sent a bad reply: {e}"),
        ));
    }

    /// Every undecided recipient gets `failure`; the connection is given up at once
    /// (after a failure at this level there is nothing left to say to the peer).
    fn fail_all(&mut self, failure: Failure) {
        for r in self.results.iter_mut().filter(|r| r.is_none()) {
            *r = Some(RcptOutcome::Failed(failure.clone()));
        }
        self.decide();
        self.close();
    }

    /// Record the outcome and say QUIT (RFC 5321 §4.1.1.10).
    fn decide_and_quit(&mut self) {
        self.decide();
        self.queued.clear();
        self.expect.clear();
        self.command("QUIT".to_owned(), Expect::Quit);
    }

    fn decide(&mut self) {
        if self.outcome.is_some() {
            return;
        }
        let recipients = self
            .envelope
            .recipients
            .iter()
            .zip(&self.results)
            .map(|(rcpt, result)| {
                let outcome = result.clone().unwrap_or_else(|| {
                    RcptOutcome::Failed(Failure::temporary(
                        "4.4.0",
                        "the transaction ended before this recipient was answered",
                    ))
                });
                (rcpt.clone(), outcome)
            })
            .collect();
        self.outcome = Some(Outcome {
            recipients,
            tls: self.tls,
        });
    }

    fn close(&mut self) {
        self.decide();
        self.closed = true;
        self.expect.clear();
        self.queued.clear();
    }

    /// Queue a command; it is written at once when nothing is awaited or when the
    /// next hop offered PIPELINING for this group (RFC 2920 §3.1: MAIL and RCPT may
    /// be pipelined; EHLO, STARTTLS, AUTH, DATA and QUIT end a group).
    fn command(&mut self, line: String, expect: Expect) {
        self.queued.push_back((line, expect));
        self.flush_queued();
    }

    fn flush_queued(&mut self) {
        while let Some((_, expect)) = self.queued.front() {
            let pipelinable = matches!(expect, Expect::Mail | Expect::Rcpt(_));
            let can_send = self.expect.is_empty()
                || (self.ext.pipelining
                    && pipelinable
                    && self
                        .expect
                        .iter()
                        .all(|e| matches!(e, Expect::Mail | Expect::Rcpt(_))));
            if !can_send {
                break;
            }
            let Some((line, expect)) = self.queued.pop_front() else {
                break;
            };
            self.transmit.extend_from_slice(line.as_bytes());
            self.transmit.extend_from_slice(b"\r\n");
            self.expect.push_back(expect);
        }
    }
}
