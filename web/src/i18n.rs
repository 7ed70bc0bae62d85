//! Every string the app shows, in one place per language.
//!
//! A language is one [`Strings`] value; adding one (Japanese, for the explainer) is
//! adding a `static JA: Strings` and a [`Lang`] variant, and the compiler names every
//! field still missing. Texts with values in them are templates with named
//! placeholders (`{user}`), filled by [`fill`], because word order differs between
//! languages. Views receive `&'static Strings` through a Yew context.

/// The languages the app speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lang {
    #[default]
    En,
    Ja,
}

impl Lang {
    /// Every language, in the order a picker lists them.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ja];

    /// The BCP 47 tag, for `<html lang>`.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    pub fn strings(self) -> &'static Strings {
        match self {
            Lang::En => &EN,
            Lang::Ja => &ja::JA,
        }
    }

    /// The language of a BCP 47 tag as a page option or `navigator.language` gives it
    /// (`ja`, `ja-JP`, `EN-us`); `None` for a language the app does not speak.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or("");
        Lang::ALL
            .into_iter()
            .find(|l| l.tag().eq_ignore_ascii_case(primary))
    }

    /// The language the toggle switches to.
    pub fn next(self) -> Lang {
        match self {
            Lang::En => Lang::Ja,
            Lang::Ja => Lang::En,
        }
    }
}

mod ja;
pub use ja::JA;

/// Replaces each `{name}` in `template` with its value, in one pass: a value is never
/// expanded again, whatever it contains. An unknown `{name}` stays as it is.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let name = &after[..close];
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v, close))
        });
        match value {
            Some((v, close)) => {
                out.push_str(v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The user-visible texts of one language.
#[derive(Debug, PartialEq)]
pub struct Strings {
    pub app_title: &'static str,
    pub tagline: &'static str,

    // Connection to the live event stream.
    pub conn_connecting: &'static str,
    pub conn_live: &'static str,
    pub conn_reconnecting: &'static str,
    /// `{seconds}`: until the next attempt.
    pub conn_retry_in: &'static str,

    // Counters and the throughput chart.
    pub counters_title: &'static str,
    pub counter_sessions_open: &'static str,
    pub counter_sessions_total: &'static str,
    pub counter_logins_ok: &'static str,
    pub counter_logins_failed: &'static str,
    pub counter_grants_live: &'static str,
    pub counter_grants_created: &'static str,
    pub counter_relayed: &'static str,
    pub counter_denied: &'static str,
    pub counter_messages: &'static str,
    pub chart_title: &'static str,
    /// `{bucket}`: seconds per bar, `{span}`: minutes shown.
    pub chart_caption: &'static str,

    // Sessions and transcripts.
    pub sessions_title: &'static str,
    pub sessions_empty: &'static str,
    pub col_session: &'static str,
    pub col_protocol: &'static str,
    pub col_peer: &'static str,
    pub col_user: &'static str,
    pub col_tls: &'static str,
    pub col_state: &'static str,
    pub col_age: &'static str,
    /// Suffixes for ages in seconds, minutes, hours, days.
    pub age_units: [&'static str; 4],
    pub tls_on: &'static str,
    pub tls_off: &'static str,
    pub state_open: &'static str,
    pub state_closed: &'static str,
    pub close_quit: &'static str,
    pub close_peer_closed: &'static str,
    pub close_timeout: &'static str,
    pub close_shutting_down: &'static str,
    pub close_error: &'static str,
    pub transcript_title: &'static str,
    pub transcript_none: &'static str,
    pub transcript_empty: &'static str,
    pub client_label: &'static str,
    pub server_label: &'static str,
    pub close: &'static str,
    /// `{n}`: lines dropped from the front to keep the bound.
    pub transcript_truncated: &'static str,
    /// `{key}`.
    pub session_grant_made: &'static str,
    pub session_recipients: &'static str,
    pub session_messages: &'static str,

    // Grants.
    pub grants_title: &'static str,
    pub grants_empty: &'static str,
    pub col_key: &'static str,
    pub col_expires_in: &'static str,
    pub col_messages_left: &'static str,
    pub col_note: &'static str,
    pub no_limit: &'static str,
    /// `{n}`: messages reserved by transactions in flight.
    pub reserved: &'static str,
    /// `{at}`: the exact expiry, server time.
    pub expires_at: &'static str,
    pub expired: &'static str,
    pub added_by_hand: &'static str,
    /// `{users}`: everyone who logged in on this key.
    pub users_seen: &'static str,
    pub revoke: &'static str,
    pub add_title: &'static str,
    pub add_address: &'static str,
    pub add_ttl: &'static str,
    pub add_messages: &'static str,
    pub add_note: &'static str,
    pub add_submit: &'static str,
    pub add_bad_address: &'static str,
    pub add_bad_messages: &'static str,
    pub add_bad_ttl: &'static str,
    /// `{error}`: what the server said.
    pub request_failed: &'static str,

    // Timeline.
    pub timeline_title: &'static str,
    pub timeline_empty: &'static str,
    pub timeline_hint: &'static str,
    /// The migration panel: who still depends on POP before SMTP.
    pub migration_title: &'static str,
    pub migration_hint: &'static str,
    pub migration_none: &'static str,
    pub migration_grant_only: &'static str,
    pub migration_both: &'static str,
    pub migration_plaintext: &'static str,
    pub migration_moved: &'static str,
    pub migration_quiet: &'static str,
    /// `{user}`, `{grant}` (relays on a grant), `{auth}` (relays with AUTH), `{mode}`.
    pub migration_user: &'static str,
    pub timeline_highlight: &'static str,
    /// `{user}`, `{mechanism}`: a POP3 login (the session chip shows the peer).
    pub tl_login: &'static str,
    /// `{user}`, `{mechanism}`.
    pub tl_auth: &'static str,
    /// `{user}`.
    pub tl_login_failed: &'static str,
    /// `{key}`, `{user}`.
    pub tl_grant_created: &'static str,
    pub tl_grant_refreshed: &'static str,
    /// `{key}`, `{user}`, `{reason}`.
    pub tl_grant_refused: &'static str,
    /// `{key}`, `{left}`.
    pub tl_grant_used: &'static str,
    /// `{key}`: a grant with no count limit.
    pub tl_grant_used_unlimited: &'static str,
    /// `{key}`.
    pub tl_grant_expired: &'static str,
    /// `{key}`, `{reason}`.
    pub tl_grant_revoked: &'static str,
    /// `{rcpt}`, `{key}`, `{user}`.
    pub tl_relay_grant: &'static str,
    /// `{rcpt}`, `{user}`.
    pub tl_relay_auth: &'static str,
    /// `{rcpt}`.
    pub tl_relay_trusted: &'static str,
    pub tl_relay_local: &'static str,
    pub tl_relay_unknown_user: &'static str,
    /// `{rcpt}`, `{reason}`.
    pub tl_relay_denied: &'static str,
    /// `{id}`, `{from}`, `{count}`.
    pub tl_message: &'static str,
    /// `{id}`, `{rcpts}`, `{reason}`: outbound delivery gave up on these recipients.
    pub tl_bounced: &'static str,
    /// `{session}`: a link to the session that made a grant.
    pub tl_via_session: &'static str,
    pub revoked_by_operator: &'static str,
    pub revoked_flushed: &'static str,
    pub revoked_user_removed: &'static str,
    pub revoked_password_changed: &'static str,
    pub revoked_evicted: &'static str,
    pub refusal_no_grant: &'static str,
    pub refusal_expired: &'static str,
    pub refusal_used_up: &'static str,
    pub refusal_auth_required: &'static str,
    pub refusal_grant_switched_off: &'static str,

    // Messages.
    pub message_title: &'static str,
    pub messages_title: &'static str,
    pub message_loading: &'static str,
    pub message_view: &'static str,
    /// `{error}`.
    pub message_unavailable: &'static str,

    // Reply codes, explained on hover in transcripts.
    /// `{code}`, `{meaning}`, `{rfc}`.
    pub code_line: &'static str,
    /// RFC 5321 §4.2.1: the first digit of an SMTP reply.
    pub smtp_classes: &'static [(u8, &'static str)],
    /// Basic SMTP reply codes: (code, meaning, where it is defined).
    pub smtp_codes: &'static [(u16, &'static str, &'static str)],
    /// RFC 3463 §3.1: the class digit of an enhanced status code (2, 4, 5).
    pub status_classes: &'static [(u8, &'static str)],
    /// RFC 3463 §4 subjects (the middle number).
    pub status_subjects: &'static [(u8, &'static str)],
    /// RFC 3463 §3 details: ("subject.detail", meaning); the class does not change it.
    pub status_details: &'static [(&'static str, &'static str)],
    pub pop3_ok: &'static str,
    pub pop3_err: &'static str,
    /// RFC 2449 §8 and RFC 3206 response codes: IN-USE, LOGIN-DELAY, AUTH, SYS/TEMP,
    /// SYS/PERM (matched exhaustively in `codes.rs`).
    pub pop3_in_use: &'static str,
    pub pop3_login_delay: &'static str,
    pub pop3_auth: &'static str,
    pub pop3_sys_temp: &'static str,
    pub pop3_sys_perm: &'static str,

    // The explainer (the simulator in the browser).
    pub ex_title: &'static str,
    pub ex_tagline: &'static str,
    pub ex_scenario: &'static str,
    pub ex_play: &'static str,
    pub ex_pause: &'static str,
    pub ex_back: &'static str,
    pub ex_forward: &'static str,
    pub ex_restart: &'static str,
    pub ex_speed: &'static str,
    /// `{n}`: steps taken, `{total}`: steps in the scenario.
    pub ex_step_of: &'static str,
    pub ex_clock: &'static str,
    pub ex_start_hint: &'static str,
    pub ex_done: &'static str,
    /// The name of this language, on the toggle that switches to it.
    pub lang_name: &'static str,
    pub ex_lang_title: &'static str,
    pub ex_diagram_title: &'static str,
    pub ex_lane_pop3: &'static str,
    pub ex_lane_grants: &'static str,
    pub ex_lane_smtp: &'static str,
    pub ex_state_title: &'static str,
    pub ex_delivered: &'static str,
    pub ex_relayed: &'static str,
    /// `{duration}`: how far the virtual clock jumps.
    pub ex_advanced: &'static str,
    /// A whole number of hours, minutes, seconds or milliseconds: `{n}`.
    pub ex_hours: &'static str,
    pub ex_minutes: &'static str,
    pub ex_seconds: &'static str,
    pub ex_millis: &'static str,
    /// `{endpoint}`: the port's name (POP3, SMTP...).
    pub ex_connects: &'static str,
    pub ex_closes: &'static str,
    pub ex_lines_title: &'static str,
    pub ex_lines_empty: &'static str,
    pub ex_free_title: &'static str,
    pub ex_free_hint: &'static str,
    pub ex_send: &'static str,
    pub ex_free_placeholder: &'static str,
    /// `{minutes}`.
    pub ex_advance_by: &'static str,
    pub ex_reconnect: &'static str,
    pub ex_link: &'static str,
    /// What the simulator's grant-table calls mean: (call name, words).
    pub ex_grant_calls: &'static [(&'static str, &'static str)],
    /// Protocol lines explained, keyed as in `explainer::annotate` (which holds the
    /// RFC sections, the same in every language): (key, meaning).
    pub ann: &'static [(&'static str, &'static str)],
}

pub static EN: Strings = Strings {
    app_title: "popgate",
    tagline: "POP before SMTP, live",

    conn_connecting: "connecting",
    conn_live: "live",
    conn_reconnecting: "reconnecting",
    conn_retry_in: "retry in {seconds} s",

    counters_title: "Counters",
    counter_sessions_open: "sessions open",
    counter_sessions_total: "sessions",
    counter_logins_ok: "logins",
    counter_logins_failed: "failed logins",
    counter_grants_live: "grants live",
    counter_grants_created: "grants made",
    counter_relayed: "relayed",
    counter_denied: "relays denied",
    counter_messages: "messages",
    chart_title: "Messages accepted",
    chart_caption: "per {bucket} s, last {span} min",

    sessions_title: "Sessions",
    sessions_empty: "No sessions yet. Connect a mail client to the POP3 or SMTP port.",
    col_session: "Session",
    col_protocol: "Protocol",
    col_peer: "Peer",
    col_user: "User",
    col_tls: "TLS",
    col_state: "State",
    col_age: "Age",
    age_units: ["s", "m", "h", "d"],
    tls_on: "TLS",
    tls_off: "plain",
    state_open: "open",
    state_closed: "closed",
    close_quit: "quit",
    close_peer_closed: "peer closed",
    close_timeout: "timeout",
    close_shutting_down: "shutting down",
    close_error: "error",
    transcript_title: "Transcript",
    transcript_none: "Select a session to read its transcript.",
    transcript_empty: "No lines yet.",
    client_label: "C:",
    server_label: "S:",
    close: "Close",
    transcript_truncated: "{n} earlier lines not kept",
    session_grant_made: "This login granted relaying to {key}.",
    session_recipients: "Recipients",
    session_messages: "Messages",

    grants_title: "Relay grants",
    grants_empty: "No grants. A POP3 login makes one for the client's address.",
    col_key: "Address",
    col_expires_in: "Expires in",
    col_messages_left: "Messages left",
    col_note: "Note",
    no_limit: "no limit",
    reserved: "{n} in flight",
    expires_at: "expires at {at} UTC (server time)",
    expired: "expired",
    added_by_hand: "by hand",
    users_seen: "logins on this address: {users}",
    revoke: "Revoke",
    add_title: "Add a grant by hand",
    add_address: "Address or network",
    add_ttl: "Time to live",
    add_messages: "Messages",
    add_note: "Note",
    add_submit: "Add grant",
    add_bad_address: "Enter an IP address or a network such as 192.0.2.0/24.",
    add_bad_messages: "Messages must be a whole number (0: no limit).",
    add_bad_ttl: "Time to live looks like 30m, 2h or 90s.",
    request_failed: "The server refused: {error}",

    timeline_title: "Timeline",
    timeline_empty: "Nothing has happened yet.",
    timeline_hint: "POP3 login → grant → the SMTP sessions that relayed on it. Choose an address to follow it.",
    migration_title: "Migration",
    migration_hint: "Who still relays on POP-before-SMTP grants, work left first.",
    migration_none: "No users seen yet.",
    migration_grant_only: "Relays only on grants",
    migration_both: "Uses grants and AUTH",
    migration_plaintext: "Logs in without TLS",
    migration_moved: "Moved to AUTH",
    migration_quiet: "Nothing to move",
    migration_user: "{user}: {grant} on grants, {auth} with AUTH (grant.mode {mode})",
    timeline_highlight: "highlight everything linked to this grant",
    tl_login: "{user} logged in over POP3 ({mechanism})",
    tl_auth: "{user} authenticated ({mechanism})",
    tl_login_failed: "failed login for {user}",
    tl_grant_created: "grant for {key} ({user})",
    tl_grant_refreshed: "grant for {key} renewed ({user})",
    tl_grant_refused: "no grant for {key} ({user}): {reason}",
    tl_grant_used: "grant {key} used, {left} left",
    tl_grant_used_unlimited: "grant {key} used (no count limit)",
    tl_grant_expired: "grant {key} expired",
    tl_grant_revoked: "grant {key} revoked ({reason})",
    tl_relay_grant: "relay to {rcpt} allowed by the grant for {key} ({user})",
    tl_relay_auth: "relay to {rcpt} allowed: SMTP AUTH as {user}",
    tl_relay_trusted: "relay to {rcpt} allowed: trusted network",
    tl_relay_local: "local delivery to {rcpt}",
    tl_relay_unknown_user: "{rcpt}: no such local user",
    tl_relay_denied: "relay to {rcpt} denied: {reason}",
    tl_message: "message {id} from {from} to {count} recipient(s)",
    tl_bounced: "message {id} bounced for {rcpts}: {reason}",
    tl_via_session: "login in session {session}",
    revoked_by_operator: "by an operator",
    revoked_flushed: "table flushed",
    revoked_user_removed: "user removed",
    revoked_password_changed: "password changed",
    revoked_evicted: "table full, closest to expiry",
    refusal_no_grant: "no grant",
    refusal_expired: "grant expired",
    refusal_used_up: "grant used up",
    refusal_auth_required: "AUTH required",
    refusal_grant_switched_off: "POP before SMTP switched off for this user",

    message_title: "Message",
    messages_title: "Recent messages",
    message_loading: "Loading…",
    message_view: "view",
    message_unavailable: "The message is not available: {error}",

    code_line: "{code}: {meaning} ({rfc})",
    smtp_classes: &[
        (2, "positive completion"),
        (3, "positive intermediate: send more"),
        (4, "transient failure: try again later"),
        (5, "permanent failure: do not repeat as is"),
    ],
    smtp_codes: &[
        (211, "system status", "RFC 5321 §4.2.3"),
        (214, "help message", "RFC 5321 §4.2.3"),
        (220, "service ready", "RFC 5321 §4.2.3"),
        (221, "service closing the connection", "RFC 5321 §4.2.3"),
        (235, "authentication succeeded", "RFC 4954 §6"),
        (250, "requested action completed", "RFC 5321 §4.2.3"),
        (251, "user not local; will forward", "RFC 5321 §4.2.3"),
        (
            252,
            "cannot verify the user, but will accept and attempt delivery",
            "RFC 5321 §3.5.3",
        ),
        (
            334,
            "SASL challenge: send the next authentication step",
            "RFC 4954 §4",
        ),
        (
            354,
            "start mail input; end with <CRLF>.<CRLF>",
            "RFC 5321 §4.2.3",
        ),
        (
            421,
            "service not available, closing the connection",
            "RFC 5321 §4.2.3",
        ),
        (450, "mailbox unavailable (temporary)", "RFC 5321 §4.2.3"),
        (
            451,
            "local error in processing, try again later",
            "RFC 5321 §4.2.3",
        ),
        (
            452,
            "insufficient system storage, or too many recipients",
            "RFC 5321 §4.2.3",
        ),
        (
            454,
            "temporary authentication failure, or TLS not available",
            "RFC 4954 §6",
        ),
        (
            455,
            "server unable to accommodate the parameters",
            "RFC 5321 §4.2.3",
        ),
        (
            500,
            "syntax error, command unrecognised or line too long",
            "RFC 5321 §4.2.3",
        ),
        (
            501,
            "syntax error in parameters or arguments",
            "RFC 5321 §4.2.3",
        ),
        (502, "command not implemented", "RFC 5321 §4.2.3"),
        (503, "bad sequence of commands", "RFC 5321 §4.2.3"),
        (504, "command parameter not implemented", "RFC 5321 §4.2.3"),
        (530, "authentication required", "RFC 4954 §6"),
        (535, "authentication credentials invalid", "RFC 4954 §6"),
        (
            538,
            "encryption required for the authentication mechanism",
            "RFC 4954 §6",
        ),
        (
            550,
            "mailbox unavailable (not found, or refused by policy)",
            "RFC 5321 §4.2.3",
        ),
        (551, "user not local", "RFC 5321 §4.2.3"),
        (
            552,
            "exceeded storage allocation (message too big)",
            "RFC 5321 §4.2.3",
        ),
        (553, "mailbox name not allowed", "RFC 5321 §4.2.3"),
        (
            554,
            "transaction failed (for a recipient: relay or policy refusal)",
            "RFC 5321 §4.2.3",
        ),
        (
            555,
            "MAIL or RCPT parameter not recognised",
            "RFC 5321 §4.2.3",
        ),
    ],
    status_classes: &[
        (2, "success"),
        (4, "persistent transient failure"),
        (5, "permanent failure"),
    ],
    status_subjects: &[
        (0, "other or undefined"),
        (1, "addressing"),
        (2, "mailbox"),
        (3, "mail system"),
        (4, "network and routing"),
        (5, "mail delivery protocol"),
        (6, "message content"),
        (7, "security or policy"),
    ],
    status_details: &[
        ("0.0", "other undefined status"),
        ("1.0", "other address status"),
        ("1.1", "bad destination mailbox address"),
        ("1.3", "bad destination mailbox address syntax"),
        ("1.5", "destination address valid"),
        ("3.0", "other or undefined mail system status"),
        ("3.1", "mail system full"),
        ("3.2", "system not accepting network messages"),
        ("3.4", "message too big for system"),
        ("4.2", "bad connection"),
        ("4.6", "routing loop detected"),
        ("5.1", "invalid command"),
        ("5.2", "syntax error"),
        ("5.3", "too many recipients"),
        ("5.4", "invalid command arguments"),
        ("5.6", "line too long"),
        ("6.7", "non-ASCII address not permitted"),
        ("7.0", "other or undefined security status"),
        ("7.1", "delivery not authorised, message refused"),
        ("7.8", "authentication credentials invalid"),
        (
            "7.11",
            "encryption required for the authentication mechanism",
        ),
    ],
    pop3_ok: "positive response (RFC 1939 §3)",
    pop3_err: "negative response (RFC 1939 §3)",
    pop3_in_use: "[IN-USE]: the maildrop is locked by another session (RFC 2449 §8.1.1)",
    pop3_login_delay: "[LOGIN-DELAY]: logins are coming too fast (RFC 2449 §8.1.2)",
    pop3_auth: "[AUTH]: the credentials are wrong, or the mechanism needs TLS (RFC 3206 §4)",
    pop3_sys_temp: "[SYS/TEMP]: a temporary system problem, try again later (RFC 3206 §5)",
    pop3_sys_perm: "[SYS/PERM]: a permanent system problem (RFC 3206 §5)",

    ex_title: "POP before SMTP, step by step",
    ex_tagline: "popgate's own POP3, SMTP and grant code, running in your browser",
    ex_scenario: "Scenario",
    ex_play: "Play",
    ex_pause: "Pause",
    ex_back: "Step back",
    ex_forward: "Step forward",
    ex_restart: "Restart",
    ex_speed: "Speed",
    ex_step_of: "Step {n} of {total}",
    ex_clock: "Virtual clock",
    ex_start_hint: "Press play, or step forward, to begin.",
    ex_done: "End of the scenario.",
    lang_name: "English",
    ex_lang_title: "Language",
    ex_diagram_title: "Sequence diagram",
    ex_lane_pop3: "POP3 server",
    ex_lane_grants: "Grant table",
    ex_lane_smtp: "SMTP server",
    ex_state_title: "State",
    ex_delivered: "delivered locally",
    ex_relayed: "relayed",
    ex_advanced: "{duration} later",
    ex_hours: "{n} h",
    ex_minutes: "{n} min",
    ex_seconds: "{n} s",
    ex_millis: "{n} ms",
    ex_connects: "connects ({endpoint})",
    ex_closes: "disconnects",
    ex_lines_title: "This step's lines, explained",
    ex_lines_empty: "No protocol lines in this step.",
    ex_free_title: "Your turn: type commands",
    ex_free_hint: "Each connection is a real popgate session in your browser. Try USER taro and PASS on POP3, then EHLO, MAIL FROM:<taro@example.test> and RCPT TO:<someone@remote.test> on SMTP.",
    ex_send: "Send",
    ex_free_placeholder: "a command, e.g. NOOP",
    ex_advance_by: "clock +{minutes} min",
    ex_reconnect: "Reconnect",
    ex_link: "link to this step",
    ex_grant_calls: &[
        ("create", "store a grant for this address"),
        ("refresh", "extend the grant (sliding)"),
        ("lookup", "may this address relay?"),
        ("reserve", "reserve one message"),
        ("commit", "spend the reserved message"),
        ("release", "release the reservation"),
        ("expire", "the grant expires"),
        ("refuse", "no grant"),
    ],
    ann: &[
        (
            "pop3 USER",
            "names the mailbox to log in to; nothing is granted yet",
        ),
        (
            "pop3 PASS",
            "the password; if it verifies, the grant is made",
        ),
        (
            "pop3 APOP",
            "login with a digest of the banner and a shared secret",
        ),
        ("pop3 AUTH", "SASL login (the same grant on success)"),
        ("pop3 STAT", "how many messages, and their total size"),
        ("pop3 LIST", "each message's number and size"),
        ("pop3 RETR", "fetch a whole message"),
        (
            "pop3 TOP",
            "fetch the headers and the first lines of a message",
        ),
        ("pop3 UIDL", "each message's unique id"),
        (
            "pop3 DELE",
            "mark a message for deletion (removed only after QUIT)",
        ),
        ("pop3 NOOP", "do nothing; the server answers +OK"),
        ("pop3 RSET", "unmark the messages marked for deletion"),
        (
            "pop3 QUIT",
            "end the session; marked messages are removed now",
        ),
        ("pop3 CAPA", "ask what the server supports"),
        ("pop3 STLS", "switch this connection to TLS"),
        ("pop3 greeting", "the server is ready: authorization state"),
        (
            "pop3 +OK USER",
            "the name is noted; the password comes next",
        ),
        (
            "pop3 +OK PASS",
            "logged in. The grant for this address was created before this reply was written, so an SMTP connection right after it already finds it",
        ),
        ("pop3 -ERR PASS", "login failed: no grant is made"),
        ("pop3 +OK QUIT", "update state: the session ends"),
        ("pop3 +OK STLS", "start the TLS handshake now"),
        ("pop3 +OK", "positive response"),
        ("pop3 -ERR", "negative response"),
        (
            "pop3 data",
            "a line of a multi-line response, ended by a line holding only \".\"",
        ),
        (
            "smtp EHLO",
            "the client names itself and asks for the extensions",
        ),
        ("smtp HELO", "the client names itself (no extensions)"),
        (
            "smtp MAIL",
            "a new message: who it is from (the envelope sender)",
        ),
        (
            "smtp RCPT",
            "one recipient: here the server decides whether it may relay",
        ),
        ("smtp DATA", "the message content follows"),
        ("smtp .", "a line with only a dot ends the message"),
        (
            "smtp data",
            "a line of the message itself (headers, then the body)",
        ),
        ("smtp RSET", "abandon the current message"),
        ("smtp VRFY", "ask whether a user exists"),
        ("smtp NOOP", "do nothing"),
        ("smtp QUIT", "end the session"),
        ("smtp HELP", "ask for help"),
        (
            "smtp STARTTLS",
            "switch this connection to TLS before anything secret is sent",
        ),
        ("smtp AUTH", "authenticate with SASL"),
        (
            "smtp AUTH PLAIN",
            "authenticate with SASL PLAIN: user and password in base64 (an encoding, not encryption: hence TLS first)",
        ),
        ("smtp sasl", "a SASL response (base64)"),
        ("smtp 220", "the server is ready"),
        (
            "smtp 220 STARTTLS",
            "ready: the TLS handshake starts now, and the session starts over",
        ),
        (
            "smtp 250 EHLO",
            "hello; the extensions the server supports follow",
        ),
        (
            "smtp ext PIPELINING",
            "extension: commands may be sent in batches",
        ),
        ("smtp ext SIZE", "extension: the largest message accepted"),
        ("smtp ext 8BITMIME", "extension: 8-bit message content"),
        (
            "smtp ext ENHANCEDSTATUSCODES",
            "extension: replies carry codes such as 5.7.1",
        ),
        ("smtp ext STARTTLS", "extension: TLS can be started"),
        (
            "smtp ext AUTH",
            "extension: these SASL mechanisms are offered",
        ),
        ("smtp ext SMTPUTF8", "extension: UTF-8 addresses"),
        ("smtp ext HELP", "extension: HELP is available"),
        ("smtp 250 MAIL", "sender accepted"),
        (
            "smtp 250 RCPT",
            "recipient accepted: a local mailbox, or relaying allowed (a grant for this address, or AUTH)",
        ),
        (
            "smtp 250 .",
            "the message is accepted: stored or queued before this reply",
        ),
        ("smtp 250", "done"),
        (
            "smtp 354",
            "send the message; end it with a line holding only a dot",
        ),
        ("smtp 221", "goodbye: the server closes the connection"),
        (
            "smtp 235",
            "authenticated: this session may relay, no grant needed",
        ),
        ("smtp 334", "SASL: send the next step"),
        ("smtp 530", "authentication required on this port"),
        ("smtp 535", "authentication failed"),
        ("smtp 538", "authentication needs TLS first"),
        (
            "smtp 554 5.7.1",
            "relay access denied: the recipient is not local, and this address has no grant (and the session did not authenticate)",
        ),
        ("smtp 550 5.1.1", "no such local user"),
        ("smtp 503", "bad sequence of commands"),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_named_placeholders() {
        assert_eq!(
            fill(EN.tl_login, &[("user", "taro"), ("mechanism", "USER")]),
            "taro logged in over POP3 (USER)"
        );
        // A value that looks like a placeholder is not expanded again, in any order.
        assert_eq!(fill("{a}-{b}", &[("b", "2"), ("a", "{b}")]), "{b}-2");
        assert_eq!(fill("{a}-{b}", &[("a", "{b}"), ("b", "2")]), "{b}-2");
        assert_eq!(fill("{x} {", &[]), "{x} {");
    }

    #[test]
    fn code_tables_are_sorted_and_unique() {
        // codes.rs looks codes up by binary search.
        assert!(EN.smtp_codes.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(EN.status_subjects.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
