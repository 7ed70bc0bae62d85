//! Postfix policy delegation: popgate's grant table as the relay decision of an
//! existing Postfix (`check_policy_service inet:127.0.0.1:10040`).
//!
//! The protocol is Postfix's SMTPD_POLICY_README ("Protocol description"): the SMTP
//! server sends one request as `name=value` lines ended by an empty line, the policy
//! server answers `action=...` and an empty line, and the connection carries further
//! requests. Attributes popgate does not use are ignored, as the README asks, so newer
//! Postfix versions that send more of them keep working.
//!
//! # The decision
//!
//! ```text
//! protocol_state=RCPT, recipient in a local domain   -> DUNNO (no relaying involved)
//! protocol_state=RCPT, non-local, client has a grant -> reserve one message, OK
//! protocol_state=RCPT, non-local, no usable grant    -> DUNNO (Postfix's own rules decide)
//! protocol_state=END-OF-MESSAGE                      -> commit the reservation, DUNNO
//! any other request                                  -> DUNNO
//! ```
//!
//! Counting follows the grant table's contract (DESIGN.md "Counting without races"):
//! Postfix names each mail transaction with its `instance` attribute, so the first
//! relayed RCPT of an instance reserves one message, further RCPTs of the same instance
//! reuse that reservation, END-OF-MESSAGE commits it, and a reservation whose instance
//! never reaches END-OF-MESSAGE (RSET, a refused DATA, a dropped client) is released
//! as soon as a request names another instance or the connection closes. Postfix's
//! smtpd serves one client at a time and keeps one connection per policy service, so a
//! connection has at most one transaction in flight.
//!
//! The session follows the handle_*/poll_* contract of [`crate::driver`]; the grant
//! table is reached through [`PolicyEffect`]s the driver performs.

use crate::event::{CloseReason, Event, EventKind, Protocol, RelayOutcome, SessionId};
use crate::grant::{RelayRefusal, Reservation};
use crate::line::{Line, LineReader};
use crate::migration::{GrantMode, GrantModes};
use crate::net::Cidr;
use crate::smtp::ReserveResult;
use crate::time::Millis;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// SMTPD_POLICY_README: "OK: accept"; the recipient may relay (a grant allows it).
pub const ACTION_OK: &str = "OK";
/// SMTPD_POLICY_README: "DUNNO: pretend that the lookup key was not found"; the
/// restrictions after `check_policy_service` decide.
pub const ACTION_DUNNO: &str = "DUNNO";
/// The grant store failed: a temporary refusal rather than a permanent one, so a
/// client whose grant could not be read retries instead of bouncing.
pub const ACTION_TEMPFAIL: &str = "DEFER_IF_PERMIT 4.7.0 Grant store temporarily unavailable";

/// The one request type Postfix sends (SMTPD_POLICY_README).
const REQUEST_TYPE: &str = "smtpd_access_policy";

/// The policy listener's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Domains whose recipients are local: no relaying, no grant needed.
    pub local_domains: Vec<String>,
    /// Longest attribute line, without its LF. Postfix's own values are bounded by its
    /// SMTP line length (2048) plus the name.
    pub max_line: usize,
    /// Most bytes of attribute lines in one request.
    pub max_request: usize,
    /// Close a connection idle this long (Postfix's `smtpd_policy_service_max_idle`
    /// is 300 s; a longer one here never cuts Postfix off first).
    pub idle_timeout: Duration,
    /// `grant.mode` per user ([`crate::migration`]): `off` answers DUNNO where the
    /// grant would have answered OK (Postfix's own restrictions then refuse the relay),
    /// `warn` answers OK and records the warning.
    pub grant_modes: GrantModes,
}

impl Default for PolicyConfig {
    fn default() -> PolicyConfig {
        PolicyConfig {
            local_domains: Vec::new(),
            max_line: 4096,
            max_request: 64 * 1024,
            idle_timeout: Duration::from_secs(600),
            grant_modes: GrantModes::default(),
        }
    }
}

/// What the session asks its driver to do with the grant table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyEffect {
    /// Reserve one message on the grant covering `client`; answer with
    /// [`PolicyResult::Reserve`].
    ReserveGrant { client: IpAddr },
    /// The transaction reached END-OF-MESSAGE: the reservation becomes a used message.
    CommitGrant { key: Cidr },
    /// The transaction ended without END-OF-MESSAGE: the message is available again.
    ReleaseGrant { key: Cidr },
}

/// The answer to [`PolicyEffect::ReserveGrant`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyResult {
    Reserve(ReserveResult),
}

/// Why a request could not be read; the connection is closed, since a peer that
/// breaks the protocol cannot be answered in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// An attribute line longer than [`PolicyConfig::max_line`].
    LineTooLong,
    /// A request larger than [`PolicyConfig::max_request`].
    RequestTooLarge,
    /// A line that is not `name=value`.
    NotAnAttribute,
}

/// One `name=value` line: the name and the value, split at the first `=`.
/// Postfix does not encode values; bytes that are not UTF-8 are replaced.
pub fn parse_attribute(line: &[u8]) -> Result<(String, String), PolicyError> {
    let at = line
        .iter()
        .position(|&b| b == b'=')
        .ok_or(PolicyError::NotAnAttribute)?;
    if at == 0 {
        return Err(PolicyError::NotAnAttribute);
    }
    Ok((
        String::from_utf8_lossy(&line[..at]).into_owned(),
        String::from_utf8_lossy(&line[at + 1..]).into_owned(),
    ))
}

/// The attributes of one request that the decision reads; the rest are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyRequest {
    pub request: String,
    pub protocol_state: String,
    pub client_address: String,
    pub sender: String,
    pub recipient: String,
    pub instance: String,
}

impl PolicyRequest {
    /// Build from attributes in arrival order; a repeated name keeps its last value.
    pub fn from_attributes<'a>(attrs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut r = PolicyRequest::default();
        for (name, value) in attrs {
            let slot = match name {
                "request" => &mut r.request,
                "protocol_state" => &mut r.protocol_state,
                "client_address" => &mut r.client_address,
                "sender" => &mut r.sender,
                "recipient" => &mut r.recipient,
                "instance" => &mut r.instance,
                _ => continue,
            };
            *slot = value.to_owned();
        }
        r
    }

    /// The SMTP client's address; `None` when absent or not an address (Postfix sends
    /// `unknown` for some clients).
    pub fn client(&self) -> Option<IpAddr> {
        self.client_address.parse().ok()
    }
}

/// A transaction's reservation, kept until END-OF-MESSAGE or another instance.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Held {
    instance: String,
    reservation: Reservation,
}

/// A RCPT request whose reservation is being made.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PendingRcpt {
    instance: String,
    recipient: String,
}

/// One policy connection from a Postfix smtpd process.
#[derive(Debug)]
pub struct PolicySession {
    config: Arc<PolicyConfig>,
    id: SessionId,
    reader: LineReader,
    /// Attributes of the request being read.
    attrs: Vec<(String, String)>,
    request_bytes: usize,
    held: Option<Held>,
    pending: Option<PendingRcpt>,
    transmit: Vec<u8>,
    effects: VecDeque<PolicyEffect>,
    events: VecDeque<Event>,
    last_activity: Millis,
    shutting_down: bool,
    closed: bool,
}

impl PolicySession {
    /// A new session on an accepted connection; queues a `SessionOpened` event.
    pub fn new(
        config: Arc<PolicyConfig>,
        id: SessionId,
        peer: SocketAddr,
        local: SocketAddr,
        now: Millis,
    ) -> PolicySession {
        let reader = LineReader::new(config.max_line);
        let mut s = PolicySession {
            config,
            id,
            reader,
            attrs: Vec::new(),
            request_bytes: 0,
            held: None,
            pending: None,
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
                protocol: Protocol::Policy,
                peer: peer.to_string(),
                local: local.to_string(),
                tls: false,
            },
        );
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

    /// The result of the outstanding [`PolicyEffect::ReserveGrant`].
    pub fn handle_result(&mut self, now: Millis, result: PolicyResult) {
        self.last_activity = now;
        let PolicyResult::Reserve(result) = result;
        let Some(pending) = self.pending.take() else {
            // Nothing awaited (closed meanwhile): a reservation nobody will use goes back.
            if let ReserveResult::Reserved(r) = result {
                self.effects
                    .push_back(PolicyEffect::ReleaseGrant { key: r.key });
            }
            return;
        };
        if self.closed {
            if let ReserveResult::Reserved(r) = result {
                self.effects
                    .push_back(PolicyEffect::ReleaseGrant { key: r.key });
            }
            return;
        }
        match result {
            ReserveResult::Reserved(reservation)
                if self.config.grant_modes.mode_for(&reservation.user) == GrantMode::Off =>
            {
                self.effects.push_back(PolicyEffect::ReleaseGrant {
                    key: reservation.key,
                });
                let (key, user) = (reservation.key, reservation.user);
                self.event(now, EventKind::GrantRelayRefused { key, user });
                let reason = RelayRefusal::GrantSwitchedOff;
                self.decision(now, &pending.recipient, RelayOutcome::Denied { reason });
                self.answer(now, ACTION_DUNNO);
            }
            ReserveResult::Reserved(reservation) => {
                if self.config.grant_modes.mode_for(&reservation.user) == GrantMode::Warn {
                    let (key, user) = (reservation.key, reservation.user.clone());
                    self.event(now, EventKind::GrantRelayWarned { key, user });
                }
                self.decision(now, &pending.recipient, grant_outcome(&reservation));
                self.held = Some(Held {
                    instance: pending.instance,
                    reservation,
                });
                self.answer(now, ACTION_OK);
            }
            ReserveResult::Refused(reason) => {
                self.decision(now, &pending.recipient, RelayOutcome::Denied { reason });
                self.answer(now, ACTION_DUNNO);
            }
            ReserveResult::TempFail => self.answer(now, ACTION_TEMPFAIL),
        }
        self.process(now);
    }

    /// The idle timeout passed: close, releasing any reservation.
    pub fn handle_timeout(&mut self, now: Millis) {
        if self.closed || self.pending.is_some() {
            return;
        }
        if now >= self.last_activity.saturating_add(self.config.idle_timeout) {
            self.close(now, CloseReason::Timeout);
        }
    }

    pub fn handle_disconnect(&mut self, now: Millis) {
        if !self.closed {
            self.close(now, CloseReason::PeerClosed);
        }
    }

    /// The server is shutting down: answer the request in progress, then close.
    pub fn handle_shutdown(&mut self, now: Millis) {
        self.shutting_down = true;
        if self.pending.is_none() && !self.closed {
            self.close(now, CloseReason::ShuttingDown);
        }
    }

    /// The policy protocol has no TLS; never called.
    pub fn handle_tls_established(&mut self, _now: Millis, _version: String, _cipher: String) {}

    pub fn is_start_tls(_effect: &PolicyEffect) -> bool {
        false
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.transmit.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.transmit))
        }
    }

    pub fn poll_effect(&mut self) -> Option<PolicyEffect> {
        self.effects.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.closed {
            None
        } else {
            Some(self.last_activity.saturating_add(self.config.idle_timeout))
        }
    }

    /// Input is read only while no reservation is awaited, so requests are answered in
    /// order, and never while unread input is already more than a request.
    pub fn wants_input(&self) -> bool {
        !self.closed && self.pending.is_none() && self.reader.buffered() <= self.config.max_request
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Read complete requests until one needs the grant table or input runs out.
    fn process(&mut self, now: Millis) {
        while !self.closed && self.pending.is_none() {
            let Some(line) = self.reader.next_line() else {
                break;
            };
            let line = match line {
                Line::Complete(line) => line,
                Line::TooLong => {
                    self.protocol_error(now, PolicyError::LineTooLong);
                    return;
                }
            };
            if line.is_empty() {
                // SMTPD_POLICY_README: "the request ends with an empty line".
                let attrs = std::mem::take(&mut self.attrs);
                self.request_bytes = 0;
                let request = PolicyRequest::from_attributes(
                    attrs.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                );
                self.request(now, request);
                continue;
            }
            self.request_bytes = self.request_bytes.saturating_add(line.len() + 1);
            if self.request_bytes > self.config.max_request {
                self.protocol_error(now, PolicyError::RequestTooLarge);
                return;
            }
            match parse_attribute(&line) {
                Ok(pair) => self.attrs.push(pair),
                Err(e) => {
                    self.protocol_error(now, e);
                    return;
                }
            }
        }
        if self.shutting_down && self.pending.is_none() && !self.closed {
            self.close(now, CloseReason::ShuttingDown);
        }
    }

    fn request(&mut self, now: Millis, r: PolicyRequest) {
        self.event(now, EventKind::ClientLine { line: summary(&r) });
        // A request that names another transaction ends the one we hold a message for.
        if !r.instance.is_empty() && self.held.as_ref().is_some_and(|h| h.instance != r.instance) {
            self.release_held();
        }
        if r.request != REQUEST_TYPE {
            self.answer(now, ACTION_DUNNO);
            return;
        }
        match r.protocol_state.to_ascii_uppercase().as_str() {
            "RCPT" => self.rcpt(now, r),
            "END-OF-MESSAGE" => {
                if let Some(held) = self.held.take() {
                    self.effects.push_back(PolicyEffect::CommitGrant {
                        key: held.reservation.key,
                    });
                }
                self.answer(now, ACTION_DUNNO);
            }
            _ => self.answer(now, ACTION_DUNNO),
        }
    }

    fn rcpt(&mut self, now: Millis, r: PolicyRequest) {
        if r.recipient.is_empty() || self.is_local(&r.recipient) {
            if !r.recipient.is_empty() {
                self.decision(now, &r.recipient, RelayOutcome::Local);
            }
            self.answer(now, ACTION_DUNNO);
            return;
        }
        if let Some(held) = self.held.as_ref().filter(|h| h.instance == r.instance) {
            // Another recipient of the same message: the reservation already covers it.
            let outcome = grant_outcome(&held.reservation);
            self.decision(now, &r.recipient, outcome);
            self.answer(now, ACTION_OK);
            return;
        }
        let Some(client) = r.client() else {
            self.decision(
                now,
                &r.recipient,
                RelayOutcome::Denied {
                    reason: RelayRefusal::NoGrant,
                },
            );
            self.answer(now, ACTION_DUNNO);
            return;
        };
        self.pending = Some(PendingRcpt {
            instance: r.instance,
            recipient: r.recipient,
        });
        self.effects
            .push_back(PolicyEffect::ReserveGrant { client });
    }

    /// A recipient in one of the local domains (a bare local part is local too).
    fn is_local(&self, recipient: &str) -> bool {
        crate::relay::is_local_address(&self.config.local_domains, recipient)
    }

    fn release_held(&mut self) {
        if let Some(held) = self.held.take() {
            self.effects.push_back(PolicyEffect::ReleaseGrant {
                key: held.reservation.key,
            });
        }
    }

    /// SMTPD_POLICY_README: the reply is `action=...` followed by an empty line.
    fn answer(&mut self, now: Millis, action: &str) {
        let line = format!("action={action}");
        self.transmit.extend_from_slice(line.as_bytes());
        self.transmit.extend_from_slice(b"\n\n");
        self.event(now, EventKind::ServerLine { line });
    }

    fn decision(&mut self, now: Millis, rcpt: &str, decision: RelayOutcome) {
        self.event(
            now,
            EventKind::RelayDecision {
                rcpt: rcpt.to_owned(),
                decision,
            },
        );
    }

    fn protocol_error(&mut self, now: Millis, error: PolicyError) {
        let what = match error {
            PolicyError::LineTooLong => "attribute line too long",
            PolicyError::RequestTooLarge => "request too large",
            PolicyError::NotAnAttribute => "not a name=value line",
        };
        self.event(
            now,
            EventKind::ClientLine {
                line: format!("(policy protocol error: {what})"),
            },
        );
        self.close(now, CloseReason::Error);
    }

    fn close(&mut self, now: Millis, reason: CloseReason) {
        self.release_held();
        self.attrs.clear();
        self.closed = true;
        self.event(now, EventKind::SessionClosed { reason });
    }

    fn event(&mut self, now: Millis, kind: EventKind) {
        self.events.push_back(Event::new(now, Some(self.id), kind));
    }
}

// ---- Dovecot's authentication policy reports ---------------------------------------

/// Dovecot's auth policy answer meaning "allow, no delay" (`status` 0, empty `msg`).
pub const DOVECOT_ALLOW: &str = r#"{"status":0,"msg":""}"#;

/// What a Dovecot authentication policy request means for the grant table.
///
/// Dovecot (2.2.27+, `auth_policy_server_url`) POSTs a JSON object of the attributes in
/// `auth_policy_request_attributes` (every value a string) with `?command=allow` before
/// or after authenticating, and with `?command=report` after it, adding `success` and
/// `policy_reject` (booleans) to the report. Only a successful report proves the
/// credentials; an `allow` check arrives for failed attempts too, so it never grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DovecotVerdict {
    /// A verified login: grant `peer` for `user`. `protocol` is Dovecot's service
    /// (`imap`, `pop3`); `tls` whether Dovecot called the connection secured.
    Grant {
        peer: IpAddr,
        user: String,
        protocol: String,
        tls: bool,
    },
    /// Nothing to do (a check, a failed or policy-refused login, a malformed report).
    Ignore,
}

/// Read one policy request: `command` is the URL's `command` parameter, `body` its JSON.
pub fn dovecot_request(command: &str, body: &serde_json::Value) -> DovecotVerdict {
    let field = |name: &str| body.get(name).and_then(serde_json::Value::as_str);
    // Booleans in the report; an attribute an operator added may be a string.
    let flag = |name: &str| match body.get(name) {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => {
            matches!(
                s.to_ascii_lowercase().as_str(),
                "true" | "yes" | "1" | "secured"
            )
        }
        _ => false,
    };
    if command != "report" || !flag("success") || flag("policy_reject") {
        return DovecotVerdict::Ignore;
    }
    let Some(peer) = field("remote").and_then(|r| r.parse::<IpAddr>().ok()) else {
        return DovecotVerdict::Ignore;
    };
    let Some(user) = field("login").filter(|u| !u.is_empty()) else {
        return DovecotVerdict::Ignore;
    };
    DovecotVerdict::Grant {
        peer,
        user: user.to_owned(),
        protocol: field("protocol").unwrap_or("").to_ascii_lowercase(),
        // `%{secured}` expands to "secured" (Dovecot 2.3); newer versions send `tls`.
        tls: flag("secured") || flag("tls"),
    }
}

fn grant_outcome(r: &Reservation) -> RelayOutcome {
    RelayOutcome::Grant {
        key: r.key,
        user: r.user.clone(),
        // A grant added by hand has no login session behind it: session 0.
        granting_session: r.granting_session.unwrap_or_default(),
    }
}

/// The transcript line for one request: the attributes the decision read.
fn summary(r: &PolicyRequest) -> String {
    let mut line = format!(
        "{} client={}",
        if r.protocol_state.is_empty() {
            "-"
        } else {
            &r.protocol_state
        },
        if r.client_address.is_empty() {
            "-"
        } else {
            &r.client_address
        }
    );
    if !r.sender.is_empty() || r.protocol_state.eq_ignore_ascii_case("MAIL") {
        line.push_str(&format!(" from=<{}>", r.sender));
    }
    if !r.recipient.is_empty() {
        line.push_str(&format!(" to=<{}>", r.recipient));
    }
    if !r.instance.is_empty() {
        line.push_str(&format!(" instance={}", r.instance));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::{GrantTable, RelayRefusal};
    use crate::testing::test;

    const PEER: &str = "127.0.0.1:40000";
    const LOCAL: &str = "127.0.0.1:10040";
    const GRANTED: &str = "192.0.2.7";

    fn config() -> Arc<PolicyConfig> {
        Arc::new(PolicyConfig {
            local_domains: vec!["example.test".into()],
            ..PolicyConfig::default()
        })
    }

    fn session() -> PolicySession {
        let peer: SocketAddr = PEER.parse().expect("peer");
        let local: SocketAddr = LOCAL.parse().expect("local");
        PolicySession::new(config(), SessionId(9), peer, local, Millis(0))
    }

    /// A request as Postfix writes it (LF line ends).
    fn request(state: &str, client: &str, rcpt: &str, instance: &str) -> Vec<u8> {
        format!(
            "request=smtpd_access_policy\nprotocol_state={state}\nprotocol_name=ESMTP\n\
             client_address={client}\nclient_name=unknown\nhelo_name=client.test\n\
             sender=a@example.net\nrecipient={rcpt}\ninstance={instance}\n\
             some_future_attribute=ignored\n\n"
        )
        .into_bytes()
    }

    /// Drives a session against a real grant table, as the server's driver does.
    struct Harness {
        s: PolicySession,
        grants: GrantTable,
        now: Millis,
    }

    impl Harness {
        fn new() -> Harness {
            Harness {
                s: session(),
                grants: GrantTable::default(),
                now: Millis(1),
            }
        }

        fn grant(&mut self, messages: Option<u32>) {
            let key = self.grants.key_for(GRANTED.parse().expect("ip"));
            self.grants
                .add(self.now, key, "taro@example.test", None, messages, None);
        }

        fn perform(&mut self) {
            while let Some(effect) = self.s.poll_effect() {
                let id = SessionId(9);
                match effect {
                    PolicyEffect::ReserveGrant { client } => {
                        let r = match self.grants.reserve(self.now, client, id) {
                            Ok(r) => ReserveResult::Reserved(r),
                            Err(e) => ReserveResult::Refused(e),
                        };
                        self.s.handle_result(self.now, PolicyResult::Reserve(r));
                    }
                    PolicyEffect::CommitGrant { key } => self.grants.commit(self.now, key, id),
                    PolicyEffect::ReleaseGrant { key } => self.grants.release(self.now, key, id),
                }
            }
        }

        fn send(&mut self, bytes: &[u8]) -> String {
            self.s.handle_input(self.now, bytes);
            self.perform();
            String::from_utf8(self.s.poll_transmit().unwrap_or_default()).expect("utf-8")
        }

        fn left(&self) -> Option<(Option<u32>, u32)> {
            self.grants
                .get(self.now, GRANTED.parse().expect("ip"))
                .map(|g| (g.messages_left, g.reserved))
        }

        fn events(&mut self) -> Vec<EventKind> {
            std::iter::from_fn(|| self.s.poll_event())
                .map(|e| e.kind)
                .collect()
        }
    }

    #[test]
    fn attribute_lines_parse_at_the_first_equals_sign() {
        type Case<'a> = (&'a [u8], Result<(&'a str, &'a str), PolicyError>);
        let table: &[Case] = &[
            (
                b"request=smtpd_access_policy",
                Ok(("request", "smtpd_access_policy")),
            ),
            (b"sender=", Ok(("sender", ""))),
            (b"ccert_subject=CN=a=b", Ok(("ccert_subject", "CN=a=b"))),
            (b"=value", Err(PolicyError::NotAnAttribute)),
            (b"no equals sign", Err(PolicyError::NotAnAttribute)),
        ];
        for (line, want) in table {
            let got = parse_attribute(line);
            let want = (*want).map(|(n, v)| (n.to_owned(), v.to_owned()));
            assert_eq!(got, want, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn requests_end_at_an_empty_line_with_lf_or_crlf_in_any_split() {
        let lf = request("CONNECT", "192.0.2.1", "", "1.2.3");
        let crlf: Vec<u8> = String::from_utf8(lf.clone())
            .expect("utf-8")
            .replace('\n', "\r\n")
            .into_bytes();
        for bytes in [lf, crlf] {
            for split in [1, 7, bytes.len() - 1, bytes.len()] {
                let mut h = Harness::new();
                let mut out = h.send(&bytes[..split]);
                out.push_str(&h.send(&bytes[split..]));
                assert_eq!(out, "action=DUNNO\n\n", "split at {split}");
            }
        }
    }

    #[test]
    fn unknown_attributes_are_ignored_and_repeats_keep_the_last_value() {
        let r = PolicyRequest::from_attributes([
            ("request", "smtpd_access_policy"),
            ("recipient", "a@x.test"),
            ("brand_new", "1"),
            ("recipient", "b@x.test"),
        ]);
        assert_eq!(r.recipient, "b@x.test");
        assert_eq!(r.request, "smtpd_access_policy");
        assert_eq!(r.client(), None);
    }

    #[test]
    fn no_grant_answers_dunno_and_records_the_refusal() {
        let mut h = Harness::new();
        let out = h.send(&request("RCPT", "192.0.2.99", "x@remote.test", "a.1"));
        assert_eq!(out, "action=DUNNO\n\n");
        assert!(h.events().contains(&EventKind::RelayDecision {
            rcpt: "x@remote.test".into(),
            decision: RelayOutcome::Denied {
                reason: RelayRefusal::NoGrant
            },
        }));
    }

    #[test]
    fn local_recipients_need_no_grant_and_reserve_nothing() {
        let mut h = Harness::new();
        h.grant(Some(1));
        for rcpt in ["taro@example.test", "taro@EXAMPLE.test.", "postmaster"] {
            let out = h.send(&request("RCPT", GRANTED, rcpt, "a.1"));
            assert_eq!(out, "action=DUNNO\n\n", "{rcpt}");
        }
        assert_eq!(h.left(), Some((Some(1), 0)));
    }

    #[test]
    fn a_grant_answers_ok_and_one_reservation_covers_every_rcpt_of_an_instance() {
        let mut h = Harness::new();
        h.grant(Some(2));
        for rcpt in ["a@remote.test", "b@remote.test", "c@other.test"] {
            let out = h.send(&request("RCPT", GRANTED, rcpt, "a.1"));
            assert_eq!(out, "action=OK\n\n", "{rcpt}");
        }
        assert_eq!(h.left(), Some((Some(2), 1)));
        let decisions = h
            .events()
            .into_iter()
            .filter(|k| {
                matches!(
                    k,
                    EventKind::RelayDecision {
                        decision: RelayOutcome::Grant { .. },
                        ..
                    }
                )
            })
            .count();
        assert_eq!(decisions, 3);
    }

    #[test]
    fn end_of_message_commits_the_instance_reservation() {
        let mut h = Harness::new();
        h.grant(Some(1));
        assert_eq!(
            h.send(&request("RCPT", GRANTED, "a@remote.test", "a.1")),
            "action=OK\n\n"
        );
        assert_eq!(
            h.send(&request("END-OF-MESSAGE", GRANTED, "", "a.1")),
            "action=DUNNO\n\n"
        );
        assert_eq!(h.left(), Some((Some(0), 0)));
        // The grant is spent: the next message is Postfix's to refuse.
        assert_eq!(
            h.send(&request("RCPT", GRANTED, "b@remote.test", "a.2")),
            "action=DUNNO\n\n"
        );
        assert!(h.events().contains(&EventKind::RelayDecision {
            rcpt: "b@remote.test".into(),
            decision: RelayOutcome::Denied {
                reason: RelayRefusal::UsedUp
            },
        }));
    }

    #[test]
    fn a_new_instance_releases_the_reservation_of_an_unfinished_one() {
        let mut h = Harness::new();
        h.grant(Some(1));
        assert_eq!(
            h.send(&request("RCPT", GRANTED, "a@remote.test", "a.1")),
            "action=OK\n\n"
        );
        // RSET (or a refused DATA): the next transaction has another instance, and the
        // grant's only message is available to it.
        assert_eq!(
            h.send(&request("RCPT", GRANTED, "a@remote.test", "a.2")),
            "action=OK\n\n"
        );
        assert_eq!(h.left(), Some((Some(1), 1)));
        h.send(&request("END-OF-MESSAGE", GRANTED, "", "a.2"));
        assert_eq!(h.left(), Some((Some(0), 0)));
    }

    #[test]
    fn closing_releases_the_reservation() {
        for close in ["disconnect", "timeout", "shutdown"] {
            let mut h = Harness::new();
            h.grant(Some(1));
            h.send(&request("RCPT", GRANTED, "a@remote.test", "a.1"));
            assert_eq!(h.left(), Some((Some(1), 1)));
            match close {
                "disconnect" => h.s.handle_disconnect(h.now),
                "timeout" => {
                    let at = h.s.poll_timeout().expect("an idle deadline");
                    h.s.handle_timeout(at);
                }
                _ => h.s.handle_shutdown(h.now),
            }
            h.perform();
            assert!(h.s.is_closed(), "{close}");
            assert_eq!(h.left(), Some((Some(1), 0)), "{close}");
        }
    }

    #[test]
    fn requests_wait_for_the_reservation_and_are_answered_in_order() {
        let mut h = Harness::new();
        h.grant(None);
        let mut both = request("RCPT", GRANTED, "a@remote.test", "a.1");
        both.extend(request("END-OF-MESSAGE", GRANTED, "", "a.1"));
        h.s.handle_input(h.now, &both);
        assert!(!h.s.wants_input(), "a reservation is awaited");
        assert_eq!(h.s.poll_transmit(), None);
        h.perform();
        let out = String::from_utf8(h.s.poll_transmit().unwrap_or_default()).expect("utf-8");
        assert_eq!(out, "action=OK\n\naction=DUNNO\n\n");
    }

    #[test]
    fn a_store_failure_defers_instead_of_refusing() {
        let mut h = Harness::new();
        h.s.handle_input(h.now, &request("RCPT", GRANTED, "a@remote.test", "a.1"));
        assert_eq!(
            h.s.poll_effect(),
            Some(PolicyEffect::ReserveGrant {
                client: GRANTED.parse().expect("ip")
            })
        );
        h.s.handle_result(h.now, PolicyResult::Reserve(ReserveResult::TempFail));
        let out = String::from_utf8(h.s.poll_transmit().unwrap_or_default()).expect("utf-8");
        assert_eq!(out, format!("action={ACTION_TEMPFAIL}\n\n"));
    }

    #[test]
    fn other_states_requests_and_unknown_clients_answer_dunno() {
        let mut h = Harness::new();
        h.grant(None);
        for bytes in [
            request("MAIL", GRANTED, "", "a.1"),
            request("DATA", GRANTED, "", "a.1"),
            request("RCPT", "unknown", "a@remote.test", "a.1"),
            b"request=something_else\nprotocol_state=RCPT\nrecipient=a@remote.test\n\n".to_vec(),
            b"\n".to_vec(),
        ] {
            assert_eq!(h.send(&bytes), "action=DUNNO\n\n");
        }
        assert_eq!(h.left(), Some((None, 0)));
    }

    #[test]
    fn input_is_bounded() {
        let mut h = Harness::new();
        let long = format!("client_name={}\n", "x".repeat(5000));
        h.send(long.as_bytes());
        assert!(h.s.is_closed(), "an overlong line closes");

        let mut h = Harness::new();
        let line = format!("x={}\n", "y".repeat(4000));
        for _ in 0..20 {
            if h.s.is_closed() {
                break;
            }
            h.send(line.as_bytes());
        }
        assert!(h.s.is_closed(), "a request over max_request closes");
        assert!(h.events().contains(&EventKind::SessionClosed {
            reason: CloseReason::Error
        }));

        let mut h = Harness::new();
        h.send(b"GET / HTTP/1.1\n");
        assert!(h.s.is_closed(), "a line that is not an attribute closes");
        assert!(!h.s.wants_input());
    }

    #[test]
    fn only_a_successful_dovecot_report_grants() {
        let report = |extra: &str| -> serde_json::Value {
            serde_json::from_str(&format!(
                r#"{{"login":"taro@example.test","pwhash":"ab12","remote":"127.0.0.2",
                    "device_id":"","protocol":"imap","session_id":"x"{extra}}}"#
            ))
            .expect("json")
        };
        let grant = |tls| DovecotVerdict::Grant {
            peer: "127.0.0.2".parse().expect("ip"),
            user: "taro@example.test".into(),
            protocol: "imap".into(),
            tls,
        };
        let table = [
            (
                "report",
                r#","success":true,"policy_reject":false"#,
                grant(false),
            ),
            (
                "report",
                r#","success":true,"policy_reject":false,"secured":"secured""#,
                grant(true),
            ),
            ("report", r#","success":true,"tls":true"#, grant(true)),
            (
                "report",
                r#","success":false,"policy_reject":false"#,
                DovecotVerdict::Ignore,
            ),
            (
                "report",
                r#","success":true,"policy_reject":true"#,
                DovecotVerdict::Ignore,
            ),
            ("report", "", DovecotVerdict::Ignore),
            ("allow", r#","success":true"#, DovecotVerdict::Ignore),
        ];
        for (command, extra, want) in table {
            assert_eq!(
                dovecot_request(command, &report(extra)),
                want,
                "{command} {extra}"
            );
        }
        let bad_remote: serde_json::Value =
            serde_json::from_str(r#"{"login":"a","remote":"","success":true}"#).expect("json");
        assert_eq!(
            dovecot_request("report", &bad_remote),
            DovecotVerdict::Ignore
        );
        let no_login: serde_json::Value =
            serde_json::from_str(r#"{"login":"","remote":"::1","success":true}"#).expect("json");
        assert_eq!(dovecot_request("report", &no_login), DovecotVerdict::Ignore);
    }

    #[test]
    fn opens_and_closes_as_a_policy_session() {
        let mut h = Harness::new();
        h.s.handle_disconnect(h.now);
        let events = h.events();
        assert!(matches!(
            events.first(),
            Some(EventKind::SessionOpened {
                protocol: Protocol::Policy,
                ..
            })
        ));
        assert_eq!(
            events.last(),
            Some(&EventKind::SessionClosed {
                reason: CloseReason::PeerClosed
            })
        );
    }
}
