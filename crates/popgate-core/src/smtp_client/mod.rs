//! The SMTP client that delivers relayed mail to the next hop (RFC 5321), sans IO.
//!
//! One [`SmtpClient`] is one connection to one next hop carrying one transaction: the
//! message and every recipient routed to that host. It takes the next hop's reply
//! bytes, effect results (TLS established) and `now`; it returns the bytes to send,
//! at most one effect (start TLS) and, once decided, the [`Outcome`] per recipient.
//! The server's queue runner drives it over a socket; tests drive it against a
//! scripted server.
//!
//! * [`reply`](mod@reply): the strict, bounded reply parser.
//! * [`data`]: DATA content on the wire: CRLF line ends and dot-stuffing.
//! * [`session`]: the client state machine.

pub mod data;
pub mod reply;
pub mod session;

#[cfg(test)]
mod tests;

pub use session::SmtpClient;

use crate::Secret;
use std::time::Duration;

/// Whether the client uses STARTTLS (RFC 3207).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Use STARTTLS when the next hop offers it, carry on in plaintext otherwise
    /// (opportunistic TLS, RFC 7435).
    #[default]
    Opportunistic,
    /// The route requires TLS: a next hop that does not offer STARTTLS, or refuses
    /// it, is a temporary failure (the message waits for a hop that does).
    Required,
    /// Never start TLS.
    Disabled,
}

/// SMTP AUTH credentials for a smarthost (RFC 4954, mechanism PLAIN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: Secret,
}

/// How the client behaves on one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Our name in EHLO/HELO (RFC 5321 §4.1.1.1).
    pub helo_name: String,
    pub tls: TlsMode,
    /// Sent only inside TLS: credentials never cross the network in plaintext.
    pub auth: Option<Credentials>,
    /// How long to wait for each reply (RFC 5321 §4.5.3.2 suggests 2 to 10 minutes
    /// depending on the command; one figure keeps configuration simple).
    pub timeout: Duration,
}

impl ClientConfig {
    pub fn new(helo_name: impl Into<String>) -> ClientConfig {
        ClientConfig {
            helo_name: helo_name.into(),
            tls: TlsMode::Opportunistic,
            auth: None,
            // RFC 5321 §4.5.3.2.1-6: 5 minutes for most replies.
            timeout: Duration::from_secs(5 * 60),
        }
    }
}

/// The envelope of one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path without brackets; empty for the null sender (a bounce).
    pub from: String,
    /// Forward-paths without brackets.
    pub recipients: Vec<String>,
}

/// What the client asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEffect {
    /// The next hop said go ahead to STARTTLS: run the client handshake on the
    /// socket, then call [`SmtpClient::handle_tls_established`] (or
    /// [`SmtpClient::handle_disconnect`] when it fails).
    StartTls,
}

/// Why a recipient was not delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Permanent (5xx or a rule the next hop cannot meet): bounce now. Otherwise try
    /// again later.
    pub permanent: bool,
    /// RFC 3463 status for the DSN: the next hop's enhanced code, or ours.
    pub status: String,
    /// The next hop's reply as one line, when the failure was its reply (the DSN's
    /// `Diagnostic-Code: smtp; ...`, RFC 3464 §2.3.6).
    pub reply: Option<String>,
    /// What happened, in words, for logs and the DSN's human-readable part.
    pub text: String,
}

impl Failure {
    pub fn temporary(status: &str, text: impl Into<String>) -> Failure {
        Failure {
            permanent: false,
            status: status.to_owned(),
            reply: None,
            text: text.into(),
        }
    }

    pub fn permanent(status: &str, text: impl Into<String>) -> Failure {
        Failure {
            permanent: true,
            status: status.to_owned(),
            reply: None,
            text: text.into(),
        }
    }
}

/// One recipient's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptOutcome {
    /// The next hop answered the end of data with 250: it has the message.
    Delivered {
        reply: String,
    },
    Failed(Failure),
}

/// Every recipient's result, in envelope order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub recipients: Vec<(String, RcptOutcome)>,
    /// Whether the message crossed the wire inside TLS.
    pub tls: bool,
}
