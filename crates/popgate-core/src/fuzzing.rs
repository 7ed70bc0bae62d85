//! Whole sessions fed arbitrary client bytes, for the fuzz targets (`fuzz/`, feature
//! `fuzzing`) and the property tests (`proptests_protocol`). Not an API.
//!
//! [`run_smtp`] and [`run_pop3`] play the server's driver (the loop written in
//! [`crate::driver`]) over the simulator's in-memory backend ([`crate::sim`]): a
//! known user with a password, a maildrop with a few awkward messages, a grant table.
//! The client's bytes come in *turns*: each turn reaches the session as one read (at
//! most [`READ_CHUNK`] bytes at a time, and only while the session
//! [wants input](crate::driver::Session::wants_input)), and the session runs to
//! quiescence before the next turn. At the end the client disconnects. Every reply,
//! effect and event is recorded in an [`Outcome`], with the most client bytes the
//! session ever held.
//!
//! Limits are small on purpose so the fuzzer reaches them: see [`SMTP_MAX_LINE`],
//! [`MAX_MESSAGE`], [`POP3_MAX_LINE`].

use crate::SessionId;
use crate::driver::Session;
use crate::event::{Event, Protocol};
use crate::pop3::{Pop3Config, Pop3Session};
use crate::sim::backend::Backend;
use crate::sim::{ConnId, Ctx, Endpoint, Log, SimConfig, TLS_CIPHER, TLS_VERSION};
use crate::smtp::{Delivery, Recipient, SmtpConfig, SmtpEffect, SmtpSession};
use crate::time::Millis;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// The user both sessions know (its maildrop holds [`MAILDROP`]).
pub const USER: &str = "taro@example.test";
pub const PASSWORD: &str = "secret";
/// The only local domain.
pub const DOMAIN: &str = "example.test";

/// SMTP command line limit in these runs (RFC 5321 §4.5.3.1.4's 512).
pub const SMTP_MAX_LINE: usize = 512;
/// Message size limit in these runs, after dot-unstuffing.
pub const MAX_MESSAGE: u64 = 4096;
/// POP3 command line limit in these runs (RFC 2449 §4's 255).
pub const POP3_MAX_LINE: usize = 255;
/// Bytes handed to a session in one `handle_input`, at most (as a socket read).
pub const READ_CHUNK: usize = 1024;

/// Messages in the user's maildrop before a POP3 run: a line that starts with a dot,
/// bare line ends, no final line end, an empty message.
pub const MAILDROP: [&[u8]; 4] = [
    b"Subject: one\r\n\r\n.dot first\r\nbody\r\n",
    b"Subject: two\n\nbare LF\rbare CR\n.\n",
    b"no final line end",
    b"",
];

/// Timer firings in one turn after which a session that still wants no input counts
/// as stalled (each failed login's delay is one).
const MAX_TIMERS: u32 = 1000;

/// What a run produced, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Every byte the server wrote.
    pub transmitted: Vec<u8>,
    /// Every effect the session asked for, as `Debug` text (credentials redact
    /// themselves).
    pub effects: Vec<String>,
    pub events: Vec<Event>,
    /// Messages handed over for delivery.
    pub deliveries: Vec<Delivery>,
    /// The most client bytes the session held at once ([`SmtpSession::buffered`],
    /// [`Pop3Session::buffered`]).
    pub max_buffered: usize,
    /// The session closed itself (QUIT, a limit, ...) before the client left.
    pub closed_by_server: bool,
    /// The session wanted no input while bytes waited and no timer could move it:
    /// a deadlock a real client would see as a hang.
    pub stalled: bool,
}

fn client() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 49_152)
}

fn server(port: u16) -> SocketAddr {
    SocketAddr::new(crate::sim::SERVER_ADDRESS, port)
}

fn backend() -> Backend {
    Backend::new(&SimConfig {
        users: vec![(USER.to_owned(), PASSWORD.to_owned())],
        ..SimConfig::default()
    })
}

fn ctx(endpoint: Endpoint) -> Ctx {
    Ctx {
        conn: ConnId(1),
        client: client().ip(),
        endpoint,
    }
}

/// The SMTP listener's settings for these runs: STARTTLS, AUTH with CRAM-MD5, the
/// small limits above.
pub fn smtp_config() -> SmtpConfig {
    SmtpConfig {
        hostname: "mail.example.test".to_owned(),
        local_domains: vec![DOMAIN.to_owned()],
        max_message_size: MAX_MESSAGE,
        max_recipients: 100,
        max_command_line: SMTP_MAX_LINE,
        starttls: true,
        cram_md5: true,
        ..SmtpConfig::default()
    }
}

/// The POP3 listener's settings for these runs: STLS, APOP, CRAM-MD5, a short line.
pub fn pop3_config() -> Pop3Config {
    Pop3Config {
        hostname: "mail.example.test".to_owned(),
        max_line: POP3_MAX_LINE,
        stls: true,
        apop: true,
        sasl_cram_md5: true,
        ..Pop3Config::default()
    }
}

/// One SMTP session on port 25 fed `turns`.
pub fn run_smtp<'a>(turns: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let now = crate::sim::scenario::DEFAULT_START;
    let session = SmtpSession::new(
        Arc::new(smtp_config()),
        SessionId(1),
        Protocol::Smtp,
        client(),
        server(25),
        false,
        now,
    );
    let mut backend = backend();
    let ctx = ctx(Endpoint::Smtp);
    let mut deliveries = Vec::new();
    let mut outcome = drive(
        session,
        now,
        turns,
        SmtpSession::buffered,
        |now, effect, log| {
            if let SmtpEffect::Deliver(delivery) = &effect {
                deliveries.push(delivery.clone());
            }
            backend.smtp(now, &ctx, effect, log)
        },
    );
    outcome.deliveries = deliveries;
    outcome
}

/// One POP3 session on port 110 fed `turns`, [`USER`]'s maildrop holding
/// [`MAILDROP`].
pub fn run_pop3<'a>(turns: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let now = crate::sim::scenario::DEFAULT_START;
    let mut backend = backend();
    let mut log = Log::default();
    let store_ctx = ctx(Endpoint::Smtp);
    for (n, message) in MAILDROP.iter().enumerate() {
        let delivery = Delivery {
            id: format!("seed{n}"),
            from: String::new(),
            recipients: vec![Recipient {
                address: USER.to_owned(),
                local: true,
            }],
            message: message.to_vec(),
            relayed_for: None,
        };
        backend.smtp(now, &store_ctx, SmtpEffect::Deliver(delivery), &mut log);
    }
    let session = Pop3Session::new(
        Arc::new(pop3_config()),
        SessionId(1),
        Protocol::Pop3,
        client(),
        server(110),
        false,
        now,
    );
    let ctx = ctx(Endpoint::Pop3);
    let mut maildrop = None;
    drive(
        session,
        now,
        turns,
        Pop3Session::buffered,
        |now, effect, log| backend.pop3(now, &ctx, &mut maildrop, effect, log),
    )
}

/// The driver loop of [`crate::driver`] with the socket and the clock in memory.
fn drive<'a, S: Session>(
    mut s: S,
    mut now: Millis,
    turns: impl IntoIterator<Item = &'a [u8]>,
    buffered: fn(&S) -> usize,
    mut perform: impl FnMut(Millis, S::Effect, &mut Log) -> Option<S::Result>,
) -> Outcome
where
    S::Effect: std::fmt::Debug,
{
    let mut out = Outcome {
        transmitted: Vec::new(),
        effects: Vec::new(),
        events: Vec::new(),
        deliveries: Vec::new(),
        max_buffered: 0,
        closed_by_server: false,
        stalled: false,
    };
    let mut log = Log::default();
    let mut inbox: Vec<u8> = Vec::new();
    let mut pump = |s: &mut S, now: &mut Millis, inbox: &mut Vec<u8>, out: &mut Outcome| {
        let mut timers = 0;
        loop {
            while let Some(bytes) = s.poll_transmit() {
                out.transmitted.extend_from_slice(&bytes);
            }
            while let Some(event) = s.poll_event() {
                out.events.push(event);
            }
            if let Some(effect) = s.poll_effect() {
                out.effects.push(format!("{effect:?}"));
                if S::is_start_tls(&effect) {
                    // Bytes still in the inbox were sent in plaintext before the
                    // handshake: a real client's would be lost in the TLS stream.
                    inbox.clear();
                    s.handle_tls_established(*now, TLS_VERSION.to_owned(), TLS_CIPHER.to_owned());
                } else if let Some(result) = perform(*now, effect, &mut log) {
                    s.handle_result(*now, result);
                }
                continue;
            }
            out.max_buffered = out.max_buffered.max(buffered(s));
            if s.is_closed() {
                return;
            }
            if s.wants_input() {
                if inbox.is_empty() {
                    return;
                }
                let take = inbox.len().min(READ_CHUNK);
                let chunk: Vec<u8> = inbox.drain(..take).collect();
                s.handle_input(*now, &chunk);
                continue;
            }
            // Waiting for the clock: a failed login's delay holds input back. Past
            // [`MAX_TIMERS`] firings without progress the session is stuck.
            match s.poll_timeout() {
                Some(at) if timers < MAX_TIMERS => {
                    timers += 1;
                    *now = (*now).max(at);
                    s.handle_timeout(*now);
                }
                _ => {
                    out.stalled = !inbox.is_empty() || timers >= MAX_TIMERS;
                    return;
                }
            }
        }
    };
    pump(&mut s, &mut now, &mut inbox, &mut out);
    for turn in turns {
        if s.is_closed() {
            break;
        }
        inbox.extend_from_slice(turn);
        pump(&mut s, &mut now, &mut inbox, &mut out);
    }
    out.closed_by_server = s.is_closed();
    if !s.is_closed() {
        s.handle_disconnect(now);
        pump(&mut s, &mut now, &mut inbox, &mut out);
    }
    out
}

/// SASL PLAIN of [`USER`] and [`PASSWORD`] (RFC 4616), base64.
const PLAIN_OK: &str = "AHRhcm9AZXhhbXBsZS50ZXN0AHNlY3JldA==";

/// SMTP client lines that reach deep states (a transaction, DATA, AUTH, STARTTLS,
/// limits), without their line ends.
pub const SMTP_TOKENS: &[&str] = &[
    "EHLO client.test",
    "HELO client.test",
    "MAIL FROM:<alice@elsewhere.test>",
    "MAIL FROM:<> SIZE=100",
    "MAIL FROM:<taro@example.test> SMTPUTF8",
    "MAIL FROM:<a@b.test> SIZE=999999999",
    "RCPT TO:<taro@example.test>",
    "RCPT TO:<TARO@Example.Test>",
    "RCPT TO:<bob@remote.test>",
    "RCPT TO:<postmaster>",
    "RCPT TO:<nobody@example.test>",
    "RCPT TO:<\"q u\"@example.test>",
    "DATA",
    ".",
    "..",
    "",
    "Subject: x",
    "Received: from x",
    "RSET",
    "NOOP",
    "QUIT",
    "VRFY taro",
    "HELP",
    "STARTTLS",
    "AUTH LOGIN",
    "AUTH CRAM-MD5",
    "AUTH PLAIN",
    "AUTH PLAIN AHRhcm9AZXhhbXBsZS50ZXN0AHNlY3JldA==",
    PLAIN_OK,
    "dGFyb0BleGFtcGxlLnRlc3Q=",
    "c2VjcmV0",
    "*",
    "=",
];

/// POP3 client lines that reach deep states (login every way, TRANSACTION, UPDATE).
pub const POP3_TOKENS: &[&str] = &[
    "USER taro@example.test",
    "USER taro",
    "PASS secret",
    "PASS wrong",
    "APOP taro@example.test 0123456789abcdef0123456789abcdef",
    "CAPA",
    "STAT",
    "LIST",
    "LIST 1",
    "LIST 9",
    "RETR 1",
    "RETR 2",
    "RETR 3",
    "RETR 4",
    "TOP 1 0",
    "TOP 2 1",
    "DELE 1",
    "DELE 2",
    "UIDL",
    "UIDL 3",
    "RSET",
    "NOOP",
    "QUIT",
    "STLS",
    "AUTH",
    "AUTH PLAIN",
    "AUTH LOGIN",
    "AUTH CRAM-MD5",
    "AUTH PLAIN AHRhcm9AZXhhbXBsZS50ZXN0AHNlY3JldA==",
    PLAIN_OK,
    "dGFyb0BleGFtcGxlLnRlc3Q=",
    "c2VjcmV0",
    "*",
    "",
];

/// Maps fuzzer bytes into the protocol's alphabet, so the fuzzer reaches deep
/// states: a byte from 0xE0 up stands for a token and a CRLF, 0xD0..0xE0 for a line
/// end (CRLF, LF, CR, ".\r\n"), anything lower for itself.
pub fn expand(data: &[u8], tokens: &[&str]) -> Vec<u8> {
    const ENDS: [&[u8]; 4] = [b"\r\n", b"\n", b"\r", b".\r\n"];
    let mut out = Vec::with_capacity(data.len() * 4);
    for &b in data {
        match b {
            0xE0.. => {
                if let Some(token) = tokens.get(usize::from(b - 0xE0) % tokens.len().max(1)) {
                    out.extend_from_slice(token.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
            0xD0..0xE0 => out.extend_from_slice(ENDS[usize::from(b) % ENDS.len()]),
            _ => out.push(b),
        }
    }
    out
}

/// `bytes` as lines, each with its LF (the last one may have none): the turns of a
/// client that waits for the server at every line end.
pub fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|&b| b == b'\n').collect()
}

/// Cuts `bytes` at `cuts` (positions taken modulo the length), in order.
pub fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| c.checked_rem(bytes.len()).unwrap_or(0))
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut pieces = Vec::with_capacity(at.len() + 1);
    let mut from = 0;
    for cut in at {
        pieces.push(&bytes[from..cut]);
        from = cut;
    }
    pieces.push(&bytes[from..]);
    pieces
}

/// The message part of a delivery: what follows the session's one `Received:` field
/// (which may be folded: it ends at the first CRLF not followed by WSP).
pub fn after_received(message: &[u8]) -> &[u8] {
    let mut i = 0;
    while let Some(p) = message[i..].windows(2).position(|w| w == b"\r\n") {
        let end = i + p + 2;
        if !matches!(message.get(end), Some(b' ' | b'\t')) {
            return &message[end..];
        }
        i = end;
    }
    &[]
}

/// The promises every run keeps, whatever the input: no stall, and memory within
/// the limits. `line_buffer` is what the session lets its line buffer hold before it
/// stops reading; one read may land on top of that, and in DATA the message up to
/// [`MAX_MESSAGE`].
fn check(outcome: &Outcome, line_buffer: usize) -> Result<(), String> {
    if outcome.stalled {
        return Err("the session stalled with input waiting".to_owned());
    }
    let bound = line_buffer + READ_CHUNK + MAX_MESSAGE as usize;
    if outcome.max_buffered > bound {
        return Err(format!(
            "held {} client bytes, bound {bound}",
            outcome.max_buffered
        ));
    }
    for delivery in &outcome.deliveries {
        let message = after_received(&delivery.message);
        if message.len() as u64 > MAX_MESSAGE {
            return Err(format!("delivered {} bytes", message.len()));
        }
    }
    Ok(())
}

/// [`check`] for an SMTP run.
pub fn check_smtp(outcome: &Outcome) -> Result<(), String> {
    check(
        outcome,
        crate::smtp::fuzzing::PIPELINE_BUFFER.max(SMTP_MAX_LINE + 2),
    )
}

/// [`check`] for a POP3 run.
pub fn check_pop3(outcome: &Outcome) -> Result<(), String> {
    check(outcome, POP3_MAX_LINE + 2)
}
