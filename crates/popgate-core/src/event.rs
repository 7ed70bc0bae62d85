//! The event stream: every session, grant and relay decision, as the dashboard sees it.
//!
//! Sessions and the grant table push [`Event`]s with `seq: 0`; the server's event bus
//! numbers them in the order it publishes them. **Secrets never leave core**: a PASS
//! argument, an AUTH payload or an APOP digest is redacted before the event is made.

use crate::grant::{GrantView, RelayRefusal};
use crate::net::Cidr;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies one POP3 or SMTP session, unique for the life of the process.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The listener a session arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Smtp,
    Submission,
    Smtps,
    Pop3,
    Pop3s,
    /// A Postfix smtpd asking popgate for relay decisions (policy delegation).
    Policy,
    /// A login Dovecot reported (IMAP or POP3 served by Dovecot, not by popgate).
    Dovecot,
}

impl Protocol {
    pub fn is_pop3(&self) -> bool {
        matches!(self, Protocol::Pop3 | Protocol::Pop3s)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Submission => "submission",
            Protocol::Smtps => "smtps",
            Protocol::Pop3 => "pop3",
            Protocol::Pop3s => "pop3s",
            Protocol::Policy => "policy",
            Protocol::Dovecot => "dovecot",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Assigned by the event bus; 0 until published.
    pub seq: u64,
    pub at: Millis,
    /// The session that caused the event (`None` for operator actions and expiry sweeps).
    pub session: Option<SessionId>,
    pub kind: EventKind,
    /// The node that made the event when several popgate nodes share grants and
    /// events (`[grant] store = "redis://..."`); `None` (and absent from the JSON) on a
    /// node of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Event {
    pub fn new(at: Millis, session: Option<SessionId>, kind: EventKind) -> Event {
        Event {
            seq: 0,
            at,
            session,
            kind,
            node: None,
        }
    }
}

/// How a relay decision for one recipient came out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayOutcome {
    /// A local mailbox, alias or postmaster: no relaying involved.
    Local,
    /// The peer is in the listener's trusted networks.
    Trusted,
    /// A POP-before-SMTP grant allowed it: the grant and the POP3 session that made it.
    Grant {
        key: Cidr,
        user: String,
        granting_session: SessionId,
    },
    /// The session authenticated with SMTP AUTH.
    Auth { user: String },
    /// Refused: 554 5.7.1.
    Denied { reason: RelayRefusal },
    /// A local domain but no such user: 550 5.1.1.
    UnknownUser,
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// QUIT and its reply.
    Quit,
    /// The peer closed or reset the connection.
    PeerClosed,
    Timeout,
    ShuttingDown,
    /// A limit or protocol violation made the server close.
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    SessionOpened {
        protocol: Protocol,
        peer: String,
        local: String,
        tls: bool,
    },
    SessionClosed {
        reason: CloseReason,
    },
    /// A line from the client, redacted (PASS, AUTH payloads, APOP digests) and
    /// lossily decoded; DATA content is not streamed, only summarised.
    ClientLine {
        line: String,
    },
    /// A line the server sent.
    ServerLine {
        line: String,
    },
    /// A TLS handshake completed (implicit TLS, STARTTLS or STLS).
    TlsStarted {
        version: String,
        cipher: String,
    },
    AuthSucceeded {
        user: String,
        mechanism: String,
    },
    /// `user` is what the client claimed, if anything.
    AuthFailed {
        user: Option<String>,
        mechanism: String,
    },
    /// A failed login's reply was held back for the address's progressive delay;
    /// `failures` is the address's count including this one.
    LoginDelayed {
        delay_ms: u64,
        failures: u32,
    },
    /// An address failed so often that every further failure gets the longest delay.
    AddressBlocked {
        address: String,
        failures: u32,
    },
    /// SMTP: a transaction began (MAIL accepted) or was reset.
    MailFrom {
        from: String,
    },
    GrantCreated {
        grant: GrantView,
    },
    GrantRefreshed {
        grant: GrantView,
    },
    /// A login verified but made no grant: the address is in a deny range, TLS was
    /// required, or the store failed.
    GrantRefused {
        key: Cidr,
        user: String,
        reason: String,
    },
    GrantReserved {
        key: Cidr,
        user: String,
    },
    GrantReleased {
        key: Cidr,
    },
    /// A relayed message was committed against the grant.
    GrantUsed {
        key: Cidr,
        user: String,
        messages_left: Option<u32>,
    },
    GrantExpired {
        key: Cidr,
    },
    GrantRevoked {
        key: Cidr,
        reason: String,
    },
    RelayDecision {
        rcpt: String,
        decision: RelayOutcome,
    },
    /// End of data answered 250: the message is durable.
    MessageAccepted {
        id: String,
        from: String,
        rcpts: Vec<String>,
        size: u64,
        relayed: bool,
    },
    MessageDelivered {
        id: String,
        mailbox: String,
    },
    MessageQueued {
        id: String,
        rcpts: Vec<String>,
    },
    /// A delivery attempt left these recipients for a later retry (a 4xx reply, a
    /// connection failure or a timeout); `next_attempt` is when.
    MessageDeferred {
        id: String,
        rcpts: Vec<String>,
        reason: String,
        next_attempt: Millis,
    },
    /// These recipients were given up on (a 5xx reply, no route, too old, a loop);
    /// `dsn` is where the bounce went (a mailbox or a queue id), `None` for a null
    /// sender, which never gets one.
    MessageBounced {
        id: String,
        rcpts: Vec<String>,
        reason: String,
        dsn: Option<String>,
    },
    /// POP3: a maildrop was opened (`messages`, `octets` as STAT shows them).
    MaildropOpened {
        user: String,
        messages: usize,
        octets: u64,
    },
    /// POP3 UPDATE state removed these messages.
    MessagesRemoved {
        user: String,
        count: usize,
    },
    /// `grant.mode = "warn"`: a relay on this grant was allowed, and the message is
    /// marked (see [`crate::migration`]). Once per transaction.
    GrantRelayWarned {
        key: Cidr,
        user: String,
    },
    /// `grant.mode = "off"`: a relay that would have used this grant was refused
    /// (the `RelayDecision` says `grant_switched_off`).
    GrantRelayRefused {
        key: Cidr,
        user: String,
    },
    /// The migration notice (how to set up authenticated submission) was delivered
    /// to the user's mailbox.
    MigrationNoticeSent {
        user: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    #[test]
    fn serialises_externally_tagged() {
        let e = Event::new(
            Millis(5),
            Some(SessionId(3)),
            EventKind::ClientLine {
                line: "PASS ****".into(),
            },
        );
        let json = serde_json::to_string(&e).expect("serialise");
        assert_eq!(
            json,
            r#"{"seq":0,"at":5,"session":3,"kind":{"client_line":{"line":"PASS ****"}}}"#
        );
        let back: Event = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, e);
    }
}
