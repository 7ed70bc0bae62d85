//! SMTP server session (RFC 5321 and extensions), sans IO.
//!
//! [`SmtpSession`] is a pure state machine: the driver feeds it bytes, effect results
//! and timeouts, and drains bytes to send, [`SmtpEffect`]s to perform and events. The
//! calling contract is written on [`SmtpSession`].
//!
//! * `parse`: commands, paths and MAIL parameters (RFC 5321 §4.1, RFC 1870, 6152, 6531).
//! * `data`: the DATA receiver (only `CRLF.CRLF` ends data; dot-unstuffing; bounds).
//! * `received`: the `Received:` trace header (RFC 5321 §4.4, RFC 3848).
//! * `session`: the state machine and its relay decisions.

mod data;
/// The parser and the DATA receiver for the fuzz targets and property tests.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod parse;
mod received;
mod session;
#[cfg(test)]
mod tests;

pub use data::{BareNewline, MAX_RECEIVED_HEADERS, is_mail_loop, received_headers};
pub use received::WARN_MARKER;
pub use session::SmtpSession;

use crate::grant::{RelayRefusal, Reservation};
use crate::migration::GrantModes;
use crate::net::Cidr;
use crate::relay::RelayPolicy;
use crate::sasl::{AuthResult, Credentials};
use std::time::Duration;

/// Settings of one SMTP listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Our name in the greeting, EHLO and `Received:` headers.
    pub hostname: String,
    /// Domains we deliver for; compared case-insensitively, never ending in '.'.
    pub local_domains: Vec<String>,
    /// What may relay on this listener.
    pub relay: RelayPolicy,
    /// Largest message accepted, in octets after dot-unstuffing; advertised as `SIZE`
    /// (RFC 1870). Default as Postfix `message_size_limit`.
    pub max_message_size: u64,
    /// RFC 5321 §4.5.3.1.8: at least 100 recipients must be accepted; more get 452 4.5.3.
    pub max_recipients: usize,
    /// RFC 5321 §4.5.3.1.4 sets 512 octets, and extensions may lengthen it; default as
    /// Postfix `line_length_limit`.
    pub max_command_line: usize,
    /// Longest text line in DATA, in octets without its CRLF. RFC 5321 §4.5.3.1.6
    /// requires at least 998 (1000 with the CRLF); longer gets 500 5.5.6 and a close,
    /// because the rest of the message can no longer be read in step.
    pub max_text_line: usize,
    /// RFC 5321 §4.5.3.2.7: the server waits at least 5 minutes for the next command.
    /// The clock restarts at each complete command line, not at each byte, so a
    /// client that trickles one byte at a time cannot hold the session open.
    pub idle_timeout: Duration,
    /// Postfix `smtpd_min_data_rate`, octets per second during DATA; 0: none. DATA's
    /// deadline starts at `idle_timeout` and each read of N octets moves it N/rate
    /// seconds later, never further than `idle_timeout` ahead: a client slower than
    /// this runs out of time and gets 421 4.4.2.
    pub min_data_rate: u64,
    /// Offer STARTTLS (RFC 3207); the server sets it when it has a certificate.
    pub starttls: bool,
    /// Submission and SMTPS (RFC 6409 §4.3, RFC 4954 §6): MAIL before AUTH gets
    /// 530 5.7.0.
    pub require_auth: bool,
    /// Offer SMTP AUTH (RFC 4954) at all.
    pub auth: bool,
    /// Allow AUTH without TLS from 127.0.0.1 and ::1 ([`crate::net::is_local_host`]);
    /// from anywhere else AUTH without TLS gets 538 5.7.11 (RFC 4954 §4, §6).
    pub plaintext_auth_localhost: bool,
    /// Offer CRAM-MD5 (RFC 2195); the server sets it when stored secrets allow it.
    pub cram_md5: bool,
    /// What to do when MAIL FROM is not the authenticated user's address.
    pub sender_policy: SenderPolicy,
    /// Failed AUTH attempts (535) in one session before 421 4.7.0 and close.
    pub max_auth_failures: u32,
    /// What a relay on a grant does, per user (`grant.mode`, [`crate::migration`]).
    pub grant_modes: GrantModes,
    /// The text after `554 5.7.1` when grants are off for the user; empty: the
    /// default of [`crate::reply::GRANT_SWITCHED_OFF`].
    pub grant_off_text: String,
    /// What a bare CR or LF inside DATA does (RFC 5321 §2.3.8, SMTP smuggling).
    pub bare_newline: BareNewline,
    /// Hold the 220 greeting this long; a client that talks first gets 554 5.5.0 and
    /// a close (RFC 5321 §4.3.1: it must wait for the greeting). Zero: greet at once,
    /// and there is no "before the greeting" to detect.
    pub greet_pause: Duration,
    /// RFC 2920 §3.1, RFC 5321 §4.3.1: a command pipelined after DATA, or any
    /// pipelining before PIPELINING was offered (HELO, or before EHLO), gets 554 5.5.0
    /// and a close. Postfix `smtpd_forbid_unauth_pipelining`.
    pub forbid_unauth_pipelining: bool,
    /// Errors a client may make before its replies slow down and then it is closed.
    pub error_limits: ErrorLimits,
}

/// Postfix's error and junk command limits (`smtpd_soft_error_limit`,
/// `smtpd_hard_error_limit`, `smtpd_error_sleep_time`, `smtpd_junk_command_limit`).
/// An error is a 4xx or 5xx reply to a command; the counts start over when a message
/// is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorLimits {
    /// Past this many errors each error reply waits `sleep` times the excess.
    pub soft: u32,
    /// At this many errors: the reply, then 421 4.7.0 and close.
    pub hard: u32,
    pub sleep: Duration,
    /// NOOP, VRFY, RSET and HELP past this many count as errors.
    pub junk_commands: u32,
}

impl Default for ErrorLimits {
    fn default() -> ErrorLimits {
        ErrorLimits {
            soft: 10,
            hard: 20,
            sleep: Duration::from_secs(1),
            junk_commands: 100,
        }
    }
}

/// Whether an authenticated user may send as any address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SenderPolicy {
    /// MAIL FROM must be the authenticated user's own address (compared
    /// case-insensitively) or the null sender `<>`; otherwise 553 5.7.1.
    #[default]
    Reject,
    /// Any sender address.
    Allow,
}

impl Default for SmtpConfig {
    fn default() -> SmtpConfig {
        SmtpConfig {
            hostname: "localhost".into(),
            local_domains: Vec::new(),
            relay: RelayPolicy::smtp_default(),
            max_message_size: 10_240_000,
            max_recipients: 1000,
            max_command_line: 2048,
            max_text_line: 2048,
            idle_timeout: Duration::from_secs(5 * 60),
            min_data_rate: 500,
            starttls: false,
            require_auth: false,
            auth: true,
            plaintext_auth_localhost: true,
            cram_md5: false,
            sender_policy: SenderPolicy::Reject,
            max_auth_failures: 3,
            grant_modes: GrantModes::default(),
            grant_off_text: String::new(),
            bare_newline: BareNewline::Reject,
            greet_pause: Duration::ZERO,
            forbid_unauth_pipelining: true,
            error_limits: ErrorLimits::default(),
        }
    }
}

/// Something the session needs done outside core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmtpEffect {
    /// Does this local recipient exist as a user or alias? The local part is as the
    /// client wrote it (match it case-insensitively), the domain lowercased.
    /// Answer with [`SmtpResult::Lookup`].
    LookupLocal { address: String },
    /// Reserve one message on the grant that covers this session's peer.
    /// Answer with [`SmtpResult::Reserve`].
    ReserveGrant,
    /// The message was answered 250: spend the reservation. No result.
    CommitGrant { key: Cidr },
    /// The transaction ended without a message (RSET, QUIT, a dropped connection, a
    /// refused message): give the reservation back. No result.
    ReleaseGrant { key: Cidr },
    /// Make the message durable. Answer with [`SmtpResult::Stored`]; the session
    /// replies 250 only after `Stored`.
    Deliver(Delivery),
    /// RFC 3207 §4: `220 Ready to start TLS` is queued. Flush transmit, run the TLS
    /// handshake, then call [`SmtpSession::handle_tls_established`], or close the
    /// connection if the handshake fails. No [`SmtpResult`]; read nothing meanwhile.
    StartTls,
    /// Verify SASL credentials (RFC 4954). Answer with [`SmtpResult::Auth`]; the
    /// session waits out a failure's delay itself (see `poll_timeout`).
    Authenticate { credentials: Credentials },
}

impl SmtpEffect {
    /// Whether the driver must feed a [`SmtpResult`] back for this effect.
    pub fn expects_result(&self) -> bool {
        match self {
            SmtpEffect::LookupLocal { .. }
            | SmtpEffect::ReserveGrant
            | SmtpEffect::Deliver(_)
            | SmtpEffect::Authenticate { .. } => true,
            SmtpEffect::CommitGrant { .. }
            | SmtpEffect::ReleaseGrant { .. }
            | SmtpEffect::StartTls => false,
        }
    }
}

/// A message to store, for local mailboxes and/or the outbound queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Unique per transaction; also in the `Received:` header and the 250 reply.
    pub id: String,
    /// The reverse-path, `""` for the null path `<>`.
    pub from: String,
    pub recipients: Vec<Recipient>,
    /// One `Received:` header (RFC 5321 §4.4), then the message as received after
    /// dot-unstuffing, line endings untouched.
    pub message: Vec<u8>,
    /// The granting or authenticated user when any recipient is relayed on a grant
    /// or on AUTH.
    pub relayed_for: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// `local@domain`: local part as given, domain lowercased.
    pub address: String,
    /// A local mailbox, alias or postmaster (false: relay it).
    pub local: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupResult {
    Exists,
    Unknown,
    TempFail,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReserveResult {
    Reserved(Reservation),
    Refused(RelayRefusal),
    TempFail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreResult {
    Stored,
    TempFail,
    DiskFull,
}

/// The answer to an effect that [expects one](SmtpEffect::expects_result).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmtpResult {
    Lookup(LookupResult),
    Reserve(ReserveResult),
    Stored(StoreResult),
    Auth(AuthResult),
}

/// RFC 5321 §4.4: the `Return-Path:` header final delivery prepends, `from` being the
/// reverse-path (`""` for `<>`).
pub fn return_path_header(from: &str) -> String {
    format!("Return-Path: <{from}>\r\n")
}
