//! POP3 server session (RFC 1939, RFC 2449 CAPA and RESP-CODES, RFC 3206 codes,
//! RFC 2595 STLS, RFC 5034 SASL AUTH, RFC 1939 §7 APOP).
//!
//! * [`parse`]: one command line to a [`Command`] (no state).
//! * [`message`]: a stored message as POP3 sends it (CRLF, byte-stuffing, TOP).
//! * [`Pop3Session`]: the state machine. It asks its driver to act on the world
//!   through [`Pop3Effect`]s and is told the outcome through [`Pop3Result`]s.
//!
//! The login that verifies is where POP before SMTP happens: the session emits
//! [`Pop3Effect::Grant`] and waits for it to be stored before it answers `+OK`, so an
//! SMTP connection that follows the `+OK` always finds the grant. Every way of logging
//! in (USER/PASS, AUTH with any mechanism, APOP) takes that same path.

use crate::sasl::{AuthResult, Credentials};
use std::time::Duration;

pub mod message;
pub mod parse;
mod session;
#[cfg(test)]
mod tests;

pub use message::crlf_len;
pub use parse::{Command, ParseError, parse_command};
pub use session::Pop3Session;

/// Longest command line accepted, without its CRLF. RFC 2449 §4 caps commands at 255
/// octets, but long passwords and SASL responses (RFC 5034) exceed that in practice;
/// 1024 leaves room for both and still bounds the memory a session buffers.
pub const DEFAULT_MAX_LINE: usize = 1024;

/// RFC 1939 §3: an autologout timer, if any, "MUST be of at least 10 minutes".
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Failed logins one session may make before it is closed.
pub const DEFAULT_MAX_AUTH_FAILURES: u32 = 3;

/// The settings a POP3 session needs (DESIGN.md `[pop3]`, `[grant] require_tls`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pop3Config {
    /// This server's name, for the RFC 1939 §7 APOP timestamp and the CRAM-MD5
    /// challenge.
    pub hostname: String,
    /// Longest command line, without CRLF ([`DEFAULT_MAX_LINE`]).
    pub max_line: usize,
    /// Time since the last command after which the session is closed (RFC 1939 §3).
    pub idle_timeout: Duration,
    /// `false`: USER/PASS and AUTH PLAIN/LOGIN are refused without TLS (`-ERR
    /// [AUTH]`, left out of CAPA) unless the peer is 127.0.0.1 or ::1.
    pub plaintext_auth: bool,
    /// `true`: a login without TLS logs in but makes no grant.
    pub grant_requires_tls: bool,
    /// Offer STLS (RFC 2595); the server sets this when it has a certificate.
    pub stls: bool,
    /// RFC 1939 §7 APOP: the greeting carries a timestamp and APOP is accepted. Off,
    /// the greeting has no timestamp and APOP is an unknown command.
    pub apop: bool,
    /// Offer SASL CRAM-MD5 (RFC 2195); it needs secrets stored so the server can
    /// compute the digest.
    pub sasl_cram_md5: bool,
    /// Failed logins after which the session answers `-ERR [AUTH]` and closes
    /// ([`DEFAULT_MAX_AUTH_FAILURES`]); 0: no limit.
    pub max_auth_failures: u32,
}

impl Default for Pop3Config {
    fn default() -> Pop3Config {
        Pop3Config {
            hostname: "localhost".to_owned(),
            max_line: DEFAULT_MAX_LINE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            plaintext_auth: true,
            grant_requires_tls: false,
            stls: false,
            apop: false,
            sasl_cram_md5: false,
            max_auth_failures: DEFAULT_MAX_AUTH_FAILURES,
        }
    }
}

/// One message of the maildrop snapshot taken at login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageMeta {
    /// RFC 1939 §7 UIDL: 1 to 70 characters in 0x21..=0x7E, stable forever.
    pub uid: String,
    /// Octets of the CRLF form, as [`crlf_len`] computes them.
    pub size: u64,
}

/// What the session asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pop3Effect {
    /// Verify credentials (USER/PASS, SASL, APOP). Answer: [`Pop3Result::Auth`].
    /// `AuthResult::Failed { delay }` makes the session hold its `-ERR` for `delay`.
    Authenticate { credentials: Credentials },
    /// RFC 2595 §4: the `+OK` to STLS is queued; flush it, run the TLS handshake on
    /// the connection, then call [`Pop3Session::handle_tls_established`] (or close the
    /// connection if the handshake fails). No [`Pop3Result`].
    StartTls,
    /// Store the POP-before-SMTP grant for this peer; the `+OK` waits for it.
    /// Answer: [`Pop3Result::GrantDone`] (also when the grant store refused or failed:
    /// the driver reports that as its own event; the login goes on).
    Grant { user: String },
    /// Lock the maildrop and take its snapshot. Answer: [`Pop3Result::Maildrop`].
    OpenMaildrop { user: String },
    /// Read one message's stored bytes. Answer: [`Pop3Result::Message`].
    Retrieve { uid: String },
    /// RFC 1939 §6 UPDATE: remove these messages. Answer: [`Pop3Result::Updated`].
    Update { user: String, delete: Vec<String> },
    /// Unlock the maildrop. No answer.
    CloseMaildrop { user: String },
}

impl Pop3Effect {
    /// Whether the session waits for a [`Pop3Result`] for this effect.
    pub fn expects_result(&self) -> bool {
        !matches!(
            self,
            Pop3Effect::CloseMaildrop { .. } | Pop3Effect::StartTls
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaildropResult {
    /// Locked; the snapshot in the order messages are numbered (1-based).
    Opened(Vec<MessageMeta>),
    /// Another session holds the lock (RFC 2449 §8.1.1 `[IN-USE]`).
    InUse,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageResult {
    /// The stored bytes, any line ends; the session converts them.
    Content(Vec<u8>),
    /// Another program removed the message since the snapshot.
    Gone,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pop3Result {
    Auth(AuthResult),
    GrantDone,
    Maildrop(MaildropResult),
    Message(MessageResult),
    Updated { ok: bool },
}

/// The RFC 1939 states, as seen from outside (a state that waits for an effect's
/// result reports the state it is in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pop3State {
    Authorization,
    Transaction,
    Update,
    Closed,
}
