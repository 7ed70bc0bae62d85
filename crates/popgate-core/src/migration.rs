//! Migration insight: who still depends on POP before SMTP, and switching it off in
//! stages.
//!
//! Operators keep POP before SMTP only because some users' mail clients still need it.
//! This module holds the rules that tell them who, and that let them turn grants off
//! without surprising anyone:
//!
//! * [`GrantMode`] and [`GrantModes`]: `grant.mode = "on" | "warn" | "off"`, globally,
//!   per domain or per user; the most specific setting wins (user > domain > global).
//!   The SMTP session and the Postfix policy session ask [`GrantModes::mode_for`] with
//!   the grant's user when a relay would use a grant.
//! * [`UserStats`]: what one user did (POP3 logins, grants, relays on a grant, relays
//!   with SMTP AUTH by listener and TLS, client addresses), each with its last time.
//! * [`Ledger`]: folds the [`Event`] stream into per-user stats. Pure: the server keeps
//!   it durable, the tests feed it events.
//! * [`Group`] and [`MigrationReport`]: each user's group and the list sorted so the
//!   work left comes first, as `popgate report migration` and the dashboard show it.

use crate::event::{Event, EventKind, Protocol, RelayOutcome, SessionId};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// What happens to a relay that would use a POP-before-SMTP grant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantMode {
    /// Grants relay as always.
    #[default]
    On,
    /// Grants still relay, but the message's `Received:` header and an event mark it,
    /// and the user may get a notice mail.
    Warn,
    /// A relay that would have used a grant is refused with 554 5.7.1.
    Off,
}

impl GrantMode {
    pub fn name(self) -> &'static str {
        match self {
            GrantMode::On => "on",
            GrantMode::Warn => "warn",
            GrantMode::Off => "off",
        }
    }
}

/// The grant mode of every user: a default and overrides keyed by domain
/// (`example.test`) or user (`bob@example.test`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantModes {
    pub default: GrantMode,
    /// Lowercased keys: a full address names one user, anything else a domain (or a
    /// grant user without a domain, such as the one operator grants carry).
    pub overrides: BTreeMap<String, GrantMode>,
}

impl GrantModes {
    pub fn new(
        default: GrantMode,
        overrides: impl IntoIterator<Item = (String, GrantMode)>,
    ) -> Self {
        GrantModes {
            default,
            overrides: overrides
                .into_iter()
                .map(|(k, m)| (normalise_key(&k), m))
                .collect(),
        }
    }

    /// The mode for `user`: the user's own setting, else their domain's, else the
    /// default.
    pub fn mode_for(&self, user: &str) -> GrantMode {
        let user = normalise_key(user);
        if let Some(mode) = self.overrides.get(&user) {
            return *mode;
        }
        user.rsplit_once('@')
            .and_then(|(_, domain)| self.overrides.get(domain))
            .copied()
            .unwrap_or(self.default)
    }

    /// Whether any user may be in `warn` (so the notice machinery is worth running).
    pub fn any_warn(&self) -> bool {
        self.default == GrantMode::Warn || self.overrides.values().any(|m| *m == GrantMode::Warn)
    }
}

/// Keys compare without case and without a trailing dot on the domain.
fn normalise_key(key: &str) -> String {
    key.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Client addresses kept per user, most recent first.
pub const MAX_ADDRESSES: usize = 8;

/// Sessions the ledger follows at once; beyond it the oldest are forgotten (a
/// `SessionClosed` lost to a lagging subscriber must not grow it for ever).
pub const MAX_SESSIONS: usize = 20_000;

/// A POP3 (or Dovecot-reported) login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginSeen {
    pub at: Millis,
    /// `USER`, `APOP`, `PLAIN`... as the session named it.
    pub mechanism: String,
    pub tls: bool,
    pub protocol: Protocol,
}

/// Messages relayed with SMTP AUTH on one listener, with or without TLS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRelays {
    pub listener: Protocol,
    pub tls: bool,
    pub count: u64,
    pub first: Millis,
    pub last: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressSeen {
    pub address: String,
    pub last: Millis,
}

/// What one user did within the window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserStats {
    pub user: String,
    pub pop3_logins: u64,
    /// Of those, without TLS.
    pub plaintext_logins: u64,
    pub last_login: Option<LoginSeen>,
    /// Grants this user's logins created or refreshed.
    pub grants: u64,
    pub last_grant: Option<Millis>,
    /// Messages relayed on a grant (`warned` of them in `warn` mode).
    pub grant_relays: u64,
    pub warned_relays: u64,
    pub last_grant_relay: Option<Millis>,
    /// Relays refused because grants are off for this user.
    pub refused_relays: u64,
    pub last_refused: Option<Millis>,
    /// Messages relayed with SMTP AUTH, per listener and TLS.
    pub auth_relays: Vec<AuthRelays>,
    /// Client addresses seen on logins and relays, most recent first.
    pub addresses: Vec<AddressSeen>,
    /// When the last migration notice was delivered.
    pub last_notice: Option<Millis>,
}

impl UserStats {
    fn new(user: &str) -> UserStats {
        UserStats {
            user: user.to_owned(),
            ..UserStats::default()
        }
    }

    pub fn auth_relay_count(&self) -> u64 {
        self.auth_relays.iter().map(|a| a.count).sum()
    }

    pub fn first_auth_relay(&self) -> Option<Millis> {
        self.auth_relays.iter().map(|a| a.first).min()
    }

    pub fn last_auth_relay(&self) -> Option<Millis> {
        self.auth_relays.iter().map(|a| a.last).max()
    }

    /// Relays that used, or tried to use, a grant.
    pub fn grant_attempts(&self) -> u64 {
        self.grant_relays + self.refused_relays
    }

    pub fn last_grant_attempt(&self) -> Option<Millis> {
        self.last_grant_relay.max(self.last_refused)
    }

    /// The last POP3 login had no TLS.
    pub fn plaintext_login(&self) -> bool {
        self.last_login.as_ref().is_some_and(|l| !l.tls)
    }

    /// The latest thing that happened.
    pub fn last_seen(&self) -> Option<Millis> {
        [
            self.last_login.as_ref().map(|l| l.at),
            self.last_grant,
            self.last_grant_relay,
            self.last_refused,
            self.last_auth_relay(),
            self.last_notice,
        ]
        .into_iter()
        .flatten()
        .max()
    }

    /// The user's group (see [`Group`] for the rules).
    pub fn group(&self) -> Group {
        let grant = self.grant_attempts() > 0;
        let auth = self.auth_relay_count() > 0;
        match (grant, auth) {
            (true, false) => Group::GrantOnly,
            // Still relaying on a grant after the first AUTH relay: a device that has
            // not moved yet.
            (true, true) if self.last_grant_attempt() >= self.first_auth_relay() => Group::Both,
            _ if self.plaintext_login() => Group::PlaintextLogin,
            (_, true) => Group::MovedToAuth,
            (_, false) => Group::Quiet,
        }
    }

    fn address(&mut self, address: &str, at: Millis) {
        self.addresses.retain(|a| a.address != address);
        self.addresses.insert(
            0,
            AddressSeen {
                address: address.to_owned(),
                last: at,
            },
        );
        self.addresses.truncate(MAX_ADDRESSES);
    }

    /// Forget what happened before `cutoff`: counts whose last time is older start
    /// again from zero. `false` when nothing is left.
    fn prune(&mut self, cutoff: Millis) -> bool {
        let old = |t: Option<Millis>| t.is_none_or(|t| t < cutoff);
        if self.last_login.as_ref().is_some_and(|l| l.at < cutoff) {
            self.last_login = None;
            self.pop3_logins = 0;
            self.plaintext_logins = 0;
        }
        if old(self.last_grant) {
            self.last_grant = None;
            self.grants = 0;
        }
        if old(self.last_grant_relay) {
            self.last_grant_relay = None;
            self.grant_relays = 0;
            self.warned_relays = 0;
        }
        if old(self.last_refused) {
            self.last_refused = None;
            self.refused_relays = 0;
        }
        self.auth_relays.retain(|a| a.last >= cutoff);
        self.addresses.retain(|a| a.last >= cutoff);
        if old(self.last_notice) {
            self.last_notice = None;
        }
        self.last_seen().is_some()
    }
}

/// Where a user stands, in the order of the work left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// Relays only on grants (or tries to, where they are off): every client still to
    /// move to authenticated submission.
    GrantOnly,
    /// Relays with SMTP AUTH and, since the first time, on grants too: some device
    /// left.
    Both,
    /// Relays on no grant (any more), but the last POP3 login had no TLS.
    PlaintextLogin,
    /// Relays with SMTP AUTH and no grant since: done.
    MovedToAuth,
    /// Logs in (with TLS) and relays nothing: nothing to move.
    Quiet,
}

impl Group {
    /// Every group, work left first.
    pub const ALL: [Group; 5] = [
        Group::GrantOnly,
        Group::Both,
        Group::PlaintextLogin,
        Group::MovedToAuth,
        Group::Quiet,
    ];

    /// The stable name (JSON, test hooks).
    pub fn id(self) -> &'static str {
        match self {
            Group::GrantOnly => "grant_only",
            Group::Both => "both",
            Group::PlaintextLogin => "plaintext_login",
            Group::MovedToAuth => "moved_to_auth",
            Group::Quiet => "quiet",
        }
    }
}

/// What a relay in an open transaction went through, until its message is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Via {
    Grant(String),
    Auth(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct SessionSeen {
    protocol: Protocol,
    /// The client's address without its port.
    address: String,
    tls: bool,
    via: Option<Via>,
}

/// The per-user stats, folded from events. Sessions are followed only while open; the
/// stats are what is kept ([`Ledger::users`], [`Ledger::from_users`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    users: BTreeMap<String, UserStats>,
    sessions: BTreeMap<SessionId, SessionSeen>,
}

/// The durable form: `{"version": 1, "users": [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerFile {
    pub version: u32,
    pub users: Vec<UserStats>,
}

/// The one version [`LedgerFile`] has.
pub const LEDGER_VERSION: u32 = 1;

impl Ledger {
    pub fn from_users(users: impl IntoIterator<Item = UserStats>) -> Ledger {
        Ledger {
            users: users.into_iter().map(|u| (u.user.clone(), u)).collect(),
            sessions: BTreeMap::new(),
        }
    }

    pub fn to_file(&self) -> LedgerFile {
        LedgerFile {
            version: LEDGER_VERSION,
            users: self.users.values().cloned().collect(),
        }
    }

    pub fn users(&self) -> impl Iterator<Item = &UserStats> {
        self.users.values()
    }

    pub fn user(&self, user: &str) -> Option<&UserStats> {
        self.users.get(user)
    }

    /// Apply one event. Returns whether the stats changed (worth saving).
    pub fn apply(&mut self, event: &Event) -> bool {
        let at = event.at;
        let sid = event.session;
        match &event.kind {
            EventKind::SessionOpened {
                protocol,
                peer,
                tls,
                ..
            } => {
                if let Some(id) = sid {
                    let address = peer
                        .parse::<SocketAddr>()
                        .map(|a| crate::net::canonical(a.ip()).to_string())
                        .unwrap_or_else(|_| peer.clone());
                    self.sessions.insert(
                        id,
                        SessionSeen {
                            protocol: *protocol,
                            address,
                            tls: *tls,
                            via: None,
                        },
                    );
                    while self.sessions.len() > MAX_SESSIONS {
                        self.sessions.pop_first();
                    }
                }
                false
            }
            EventKind::TlsStarted { .. } => {
                if let Some(s) = self.session(sid) {
                    s.tls = true;
                }
                false
            }
            EventKind::SessionClosed { .. } => {
                if let Some(id) = sid {
                    self.sessions.remove(&id);
                }
                false
            }
            EventKind::AuthSucceeded { user, mechanism } => {
                let Some(s) = sid.and_then(|id| self.sessions.get(&id)).cloned() else {
                    return false;
                };
                if !(s.protocol.is_pop3() || s.protocol == Protocol::Dovecot) {
                    return false;
                }
                let u = self.stats(user);
                u.pop3_logins += 1;
                if !s.tls {
                    u.plaintext_logins += 1;
                }
                u.last_login = Some(LoginSeen {
                    at,
                    mechanism: mechanism.clone(),
                    tls: s.tls,
                    protocol: s.protocol,
                });
                u.address(&s.address, at);
                true
            }
            // Grants an operator added by hand have no login behind them.
            EventKind::GrantCreated { grant } | EventKind::GrantRefreshed { grant }
                if grant.session.is_some() =>
            {
                let u = self.stats(&grant.user);
                u.grants += 1;
                u.last_grant = Some(at);
                true
            }
            EventKind::MailFrom { .. } => {
                if let Some(s) = self.session(sid) {
                    s.via = None;
                }
                false
            }
            EventKind::RelayDecision { decision, .. } => {
                let via = match decision {
                    RelayOutcome::Grant { user, .. } => Via::Grant(user.clone()),
                    RelayOutcome::Auth { user } => Via::Auth(user.clone()),
                    _ => return false,
                };
                if let Some(s) = self.session(sid) {
                    s.via = Some(via);
                }
                false
            }
            EventKind::GrantRelayWarned { user, .. } => {
                self.stats(user).warned_relays += 1;
                true
            }
            EventKind::GrantRelayRefused { user, .. } => {
                let address = sid
                    .and_then(|id| self.sessions.get(&id))
                    .map(|s| s.address.clone());
                let u = self.stats(user);
                u.refused_relays += 1;
                u.last_refused = Some(at);
                if let Some(a) = address {
                    u.address(&a, at);
                }
                true
            }
            EventKind::MessageAccepted { relayed: true, .. } => {
                let Some(s) = sid.and_then(|id| self.sessions.get_mut(&id)) else {
                    return false;
                };
                let Some(via) = s.via.take() else {
                    return false;
                };
                let s = s.clone();
                match via {
                    Via::Grant(user) => {
                        let u = self.stats(&user);
                        u.grant_relays += 1;
                        u.last_grant_relay = Some(at);
                        u.address(&s.address, at);
                    }
                    Via::Auth(user) => {
                        let u = self.stats(&user);
                        match u
                            .auth_relays
                            .iter_mut()
                            .find(|a| a.listener == s.protocol && a.tls == s.tls)
                        {
                            Some(a) => {
                                a.count += 1;
                                a.last = at;
                            }
                            None => u.auth_relays.push(AuthRelays {
                                listener: s.protocol,
                                tls: s.tls,
                                count: 1,
                                first: at,
                                last: at,
                            }),
                        }
                        u.address(&s.address, at);
                    }
                }
                true
            }
            EventKind::MigrationNoticeSent { user } => {
                self.stats(user).last_notice = Some(at);
                true
            }
            _ => false,
        }
    }

    /// Whether `user` is due a notice at `now`: none yet, or the last one `period` ago.
    pub fn notice_due(&self, user: &str, now: Millis, period: Duration) -> bool {
        self.users
            .get(user)
            .and_then(|u| u.last_notice)
            .is_none_or(|last| now >= last.saturating_add(period))
    }

    /// Drop what is older than `window` before `now`; returns whether anything went.
    pub fn prune(&mut self, now: Millis, window: Duration) -> bool {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let cutoff = Millis(now.0.saturating_sub(window_ms));
        let before = self.users.clone();
        self.users.retain(|_, u| u.prune(cutoff));
        before != self.users
    }

    /// Every user with their group and mode, work left first.
    pub fn report(&self, now: Millis, window: Duration, modes: &GrantModes) -> MigrationReport {
        MigrationReport::new(now, window, modes, self.users.values().cloned())
    }

    fn stats(&mut self, user: &str) -> &mut UserStats {
        let key = user.to_ascii_lowercase();
        self.users
            .entry(key.clone())
            .or_insert_with(|| UserStats::new(&key))
    }

    fn session(&mut self, sid: Option<SessionId>) -> Option<&mut SessionSeen> {
        sid.and_then(|id| self.sessions.get_mut(&id))
    }
}

/// One user in the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub group: Group,
    /// The grant mode in force for this user now.
    pub mode: GrantMode,
    pub stats: UserStats,
}

/// The users of one group, in report order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupUsers {
    pub group: Group,
    pub users: Vec<String>,
}

/// `popgate report migration --json` and `GET /api/migration`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationReport {
    pub now: Millis,
    pub window_ms: u64,
    pub default_mode: GrantMode,
    /// Every group, work left first, each with its users (possibly none).
    pub groups: Vec<GroupUsers>,
    /// Every user, work left first: by group, then most grant relays, then name.
    pub users: Vec<UserRow>,
}

impl MigrationReport {
    pub fn new(
        now: Millis,
        window: Duration,
        modes: &GrantModes,
        users: impl IntoIterator<Item = UserStats>,
    ) -> MigrationReport {
        let mut rows: Vec<UserRow> = users
            .into_iter()
            .map(|stats| UserRow {
                group: stats.group(),
                mode: modes.mode_for(&stats.user),
                stats,
            })
            .collect();
        rows.sort_by(|a, b| {
            (
                a.group,
                std::cmp::Reverse(a.stats.grant_attempts()),
                &a.stats.user,
            )
                .cmp(&(
                    b.group,
                    std::cmp::Reverse(b.stats.grant_attempts()),
                    &b.stats.user,
                ))
        });
        let groups = Group::ALL
            .into_iter()
            .map(|group| GroupUsers {
                group,
                users: rows
                    .iter()
                    .filter(|r| r.group == group)
                    .map(|r| r.stats.user.clone())
                    .collect(),
            })
            .collect();
        MigrationReport {
            now,
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            default_mode: modes.default,
            groups,
            users: rows,
        }
    }

    pub fn group(&self, group: Group) -> &[String] {
        self.groups
            .iter()
            .find(|g| g.group == group)
            .map(|g| g.users.as_slice())
            .unwrap_or(&[])
    }
}

/// Why a notice template cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeError {
    /// The first line is not `Subject: ...`, or no blank line follows the header.
    NoSubject,
}

/// What fills a notice template's `{name}` placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoticeValues<'a> {
    pub user: &'a str,
    pub hostname: &'a str,
    /// The port of authenticated submission clients should use (587 normally).
    pub submission_port: u16,
}

/// A notice ready to store: sender, recipient, date and id are the caller's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    pub date: Millis,
    pub message_id: &'a str,
}

/// Fill a template: `Subject: ...`, a blank line, then the body (UTF-8). Returns the
/// subject and body with `{user}`, `{hostname}` and `{submission_port}` replaced.
pub fn render_notice(
    template: &str,
    v: &NoticeValues<'_>,
) -> Result<(String, String), NoticeError> {
    let template = template.strip_prefix('\u{feff}').unwrap_or(template);
    let (head, body) = template
        .split_once("\r\n\r\n")
        .or_else(|| template.split_once("\n\n"))
        .ok_or(NoticeError::NoSubject)?;
    let subject = head
        .trim()
        .strip_prefix("Subject:")
        .ok_or(NoticeError::NoSubject)?
        .trim();
    let port = v.submission_port.to_string();
    let fill = |text: &str| {
        text.replace("{user}", v.user)
            .replace("{hostname}", v.hostname)
            .replace("{submission_port}", &port)
    };
    Ok((fill(subject), fill(body)))
}

/// The notice as an RFC 5322 message with MIME headers (RFC 2045): UTF-8 plain text,
/// 8bit, the subject encoded per RFC 2047 when it is not ASCII, and `Auto-Submitted`
/// (RFC 3834 §5) so that vacation responders do not answer it.
pub fn notice_message(n: &Notice<'_>) -> Vec<u8> {
    let mut m = String::new();
    m.push_str(&format!("From: <{}>\r\n", n.from));
    m.push_str(&format!("To: <{}>\r\n", n.to));
    m.push_str(&format!("Subject: {}\r\n", encode_header_text(n.subject)));
    m.push_str(&format!("Date: {}\r\n", n.date.rfc5322()));
    m.push_str(&format!("Message-ID: <{}>\r\n", n.message_id));
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str("Content-Type: text/plain; charset=UTF-8\r\n");
    m.push_str("Content-Transfer-Encoding: 8bit\r\n");
    m.push_str("Auto-Submitted: auto-generated\r\n");
    m.push_str("\r\n");
    for line in n.body.lines() {
        m.push_str(line);
        m.push_str("\r\n");
    }
    m.into_bytes()
}

/// RFC 2047 §4.1, §5(1): non-ASCII header text as `B` encoded-words of UTF-8, each at
/// most 75 characters (§2) and never splitting a character (§5(3)), folded with CRLF
/// SP between words (the space between encoded-words is not part of the text, §6.2).
/// ASCII text is left as it is.
pub fn encode_header_text(text: &str) -> String {
    use base64::Engine;
    if text.is_ascii() && !text.contains("=?") {
        return text.to_owned();
    }
    // "=?UTF-8?B?" + base64 + "?=" <= 75: 63 base64 characters, 45 octets.
    const MAX_OCTETS: usize = 45;
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > MAX_OCTETS {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CloseReason;
    use crate::grant::GrantView;
    use crate::net::Cidr;
    use crate::testing::test;

    const DAY: u64 = 24 * 3600 * 1000;

    struct Feed {
        ledger: Ledger,
        next: u64,
    }

    impl Feed {
        fn new() -> Feed {
            Feed {
                ledger: Ledger::default(),
                next: 1,
            }
        }

        fn ev(&mut self, at: u64, sid: u64, kind: EventKind) -> bool {
            self.ledger
                .apply(&Event::new(Millis(at), Some(SessionId(sid)), kind))
        }

        fn open(&mut self, at: u64, protocol: Protocol, peer: &str, tls: bool) -> u64 {
            let sid = self.next;
            self.next += 1;
            self.ev(
                at,
                sid,
                EventKind::SessionOpened {
                    protocol,
                    peer: peer.into(),
                    local: "127.0.0.1:25".into(),
                    tls,
                },
            );
            sid
        }

        fn close(&mut self, at: u64, sid: u64) {
            self.ev(
                at,
                sid,
                EventKind::SessionClosed {
                    reason: CloseReason::Quit,
                },
            );
        }

        /// C: USER/PASS (S: +OK and a grant) from `peer`.
        fn pop_login(&mut self, at: u64, user: &str, peer: &str, tls: bool) {
            let sid = self.open(at, Protocol::Pop3, peer, tls);
            self.ev(
                at,
                sid,
                EventKind::AuthSucceeded {
                    user: user.into(),
                    mechanism: "USER".into(),
                },
            );
            let grant = GrantView {
                key: Cidr::host(peer.parse::<SocketAddr>().expect("peer").ip()),
                user: user.into(),
                users: vec![user.into()],
                session: Some(SessionId(sid)),
                created: Millis(at),
                expires: Millis(at + 1_800_000),
                messages_left: None,
                reserved: 0,
                sliding: true,
                note: None,
            };
            self.ev(at, sid, EventKind::GrantCreated { grant });
            self.close(at, sid);
        }

        /// One relayed message in a session on `protocol`, through `decision`.
        fn relay(&mut self, at: u64, protocol: Protocol, peer: &str, tls: bool, d: RelayOutcome) {
            let sid = self.open(at, protocol, peer, tls);
            self.ev(at, sid, EventKind::MailFrom { from: "x@y".into() });
            self.ev(
                at,
                sid,
                EventKind::RelayDecision {
                    rcpt: "a@remote.test".into(),
                    decision: d,
                },
            );
            self.ev(
                at,
                sid,
                EventKind::MessageAccepted {
                    id: "1".into(),
                    from: "x@y".into(),
                    rcpts: vec!["a@remote.test".into()],
                    size: 10,
                    relayed: true,
                },
            );
            self.close(at, sid);
        }

        fn grant_relay(&mut self, at: u64, user: &str, peer: &str) {
            let key = Cidr::host(peer.parse::<SocketAddr>().expect("peer").ip());
            self.relay(
                at,
                Protocol::Smtp,
                peer,
                false,
                RelayOutcome::Grant {
                    key,
                    user: user.into(),
                    granting_session: SessionId(1),
                },
            );
        }

        fn auth_relay(&mut self, at: u64, user: &str, peer: &str) {
            self.relay(
                at,
                Protocol::Submission,
                peer,
                true,
                RelayOutcome::Auth { user: user.into() },
            );
        }
    }

    #[test]
    fn the_most_specific_mode_wins() {
        let modes = GrantModes::new(
            GrantMode::On,
            [
                ("Example.TEST".to_owned(), GrantMode::Warn),
                ("bob@example.test".to_owned(), GrantMode::Off),
                ("carol@example.test".to_owned(), GrantMode::On),
            ],
        );
        assert_eq!(modes.mode_for("alice@example.test"), GrantMode::Warn);
        assert_eq!(modes.mode_for("BOB@example.test"), GrantMode::Off);
        assert_eq!(modes.mode_for("carol@example.test"), GrantMode::On);
        assert_eq!(modes.mode_for("dave@other.test"), GrantMode::On);
        assert_eq!(modes.mode_for("operator"), GrantMode::On);
        assert!(modes.any_warn());
        let off = GrantModes::new(GrantMode::Off, []);
        assert_eq!(off.mode_for("anyone@example.test"), GrantMode::Off);
        assert!(!off.any_warn());
    }

    #[test]
    fn logins_grants_and_relays_are_counted_per_user() {
        let mut f = Feed::new();
        f.pop_login(1_000, "alice@example.test", "192.0.2.7:4000", false);
        f.grant_relay(2_000, "alice@example.test", "192.0.2.7:4001");
        f.grant_relay(3_000, "alice@example.test", "[::ffff:192.0.2.8]:4002");
        f.auth_relay(4_000, "bob@example.test", "198.51.100.1:5000");
        let alice = f.ledger.user("alice@example.test").expect("alice");
        assert_eq!(alice.pop3_logins, 1);
        assert_eq!(alice.plaintext_logins, 1);
        assert_eq!(alice.grants, 1);
        assert_eq!(alice.grant_relays, 2);
        assert_eq!(alice.last_grant_relay, Some(Millis(3_000)));
        assert_eq!(alice.auth_relay_count(), 0);
        // Canonical (`::ffff:a.b.c.d` is `a.b.c.d`), most recent first, no duplicates.
        let addrs: Vec<&str> = alice.addresses.iter().map(|a| a.address.as_str()).collect();
        assert_eq!(addrs, ["192.0.2.8", "192.0.2.7"]);
        let login = alice.last_login.as_ref().expect("login");
        assert_eq!((login.mechanism.as_str(), login.tls), ("USER", false));
        let bob = f.ledger.user("bob@example.test").expect("bob");
        assert_eq!(
            bob.auth_relays,
            vec![AuthRelays {
                listener: Protocol::Submission,
                tls: true,
                count: 1,
                first: Millis(4_000),
                last: Millis(4_000),
            }]
        );
        assert_eq!(bob.grant_relays, 0);
    }

    #[test]
    fn tls_started_after_the_greeting_counts_as_tls() {
        let mut f = Feed::new();
        let sid = f.open(1, Protocol::Pop3, "192.0.2.7:1", false);
        f.ev(
            1,
            sid,
            EventKind::TlsStarted {
                version: "TLSv1.3".into(),
                cipher: "x".into(),
            },
        );
        f.ev(
            2,
            sid,
            EventKind::AuthSucceeded {
                user: "a@example.test".into(),
                mechanism: "PLAIN".into(),
            },
        );
        let a = f.ledger.user("a@example.test").expect("a");
        assert_eq!(a.plaintext_logins, 0);
        assert!(!a.plaintext_login());
    }

    #[test]
    fn smtp_auth_alone_is_no_login_and_refused_messages_are_no_relays() {
        let mut f = Feed::new();
        let sid = f.open(1, Protocol::Submission, "192.0.2.7:1", true);
        f.ev(
            1,
            sid,
            EventKind::AuthSucceeded {
                user: "a@example.test".into(),
                mechanism: "PLAIN".into(),
            },
        );
        f.ev(
            1,
            sid,
            EventKind::MailFrom {
                from: "a@example.test".into(),
            },
        );
        f.ev(
            1,
            sid,
            EventKind::RelayDecision {
                rcpt: "x@remote.test".into(),
                decision: RelayOutcome::Auth {
                    user: "a@example.test".into(),
                },
            },
        );
        // RSET, a new transaction: the earlier decision no longer counts.
        f.ev(
            1,
            sid,
            EventKind::MailFrom {
                from: "a@example.test".into(),
            },
        );
        f.ev(
            1,
            sid,
            EventKind::MessageAccepted {
                id: "2".into(),
                from: "a@example.test".into(),
                rcpts: vec![],
                size: 1,
                relayed: true,
            },
        );
        assert_eq!(f.ledger.user("a@example.test"), None);
    }

    #[test]
    fn groups_and_work_left_first() {
        let mut f = Feed::new();
        // Only grants.
        f.pop_login(10, "grant@example.test", "192.0.2.1:1", false);
        f.grant_relay(11, "grant@example.test", "192.0.2.1:2");
        f.grant_relay(12, "grant@example.test", "192.0.2.1:3");
        f.pop_login(10, "grant2@example.test", "192.0.2.2:1", true);
        f.grant_relay(11, "grant2@example.test", "192.0.2.2:2");
        // AUTH from the phone, a grant from the desktop afterwards.
        f.auth_relay(20, "both@example.test", "192.0.2.3:1");
        f.grant_relay(21, "both@example.test", "192.0.2.4:1");
        // A grant long ago, AUTH since.
        f.grant_relay(5, "moved@example.test", "192.0.2.5:1");
        f.auth_relay(30, "moved@example.test", "192.0.2.5:2");
        // No relays, plaintext logins.
        f.pop_login(40, "plain@example.test", "192.0.2.6:1", false);
        // Moved, but still fetches without TLS: TLS is work left.
        f.auth_relay(30, "moved-plain@example.test", "192.0.2.7:1");
        f.pop_login(41, "moved-plain@example.test", "192.0.2.7:2", false);
        // Nothing to do.
        f.pop_login(50, "quiet@example.test", "192.0.2.8:1", true);
        let r = f.ledger.report(
            Millis(100),
            Duration::from_secs(90 * 86_400),
            &GrantModes::default(),
        );
        let order: Vec<(&str, Group)> = r
            .users
            .iter()
            .map(|u| (u.stats.user.as_str(), u.group))
            .collect();
        assert_eq!(
            order,
            [
                ("grant@example.test", Group::GrantOnly),
                ("grant2@example.test", Group::GrantOnly),
                ("both@example.test", Group::Both),
                ("moved-plain@example.test", Group::PlaintextLogin),
                ("plain@example.test", Group::PlaintextLogin),
                ("moved@example.test", Group::MovedToAuth),
                ("quiet@example.test", Group::Quiet),
            ]
        );
        assert_eq!(r.group(Group::Both), ["both@example.test"]);
        assert_eq!(r.groups.len(), Group::ALL.len());
        assert_eq!(r.users[0].mode, GrantMode::On);
    }

    #[test]
    fn refused_relays_keep_a_user_in_grant_only() {
        let mut f = Feed::new();
        let sid = f.open(5, Protocol::Smtp, "192.0.2.1:9", false);
        f.ev(
            5,
            sid,
            EventKind::GrantRelayRefused {
                key: Cidr::host("192.0.2.1".parse().expect("ip")),
                user: "a@example.test".into(),
            },
        );
        let a = f.ledger.user("a@example.test").expect("a");
        assert_eq!((a.refused_relays, a.grant_relays), (1, 0));
        assert_eq!(a.group(), Group::GrantOnly);
        assert_eq!(a.addresses[0].address, "192.0.2.1");
    }

    #[test]
    fn notices_are_due_once_per_period() {
        let mut f = Feed::new();
        let period = Duration::from_secs(7 * 86_400);
        assert!(f.ledger.notice_due("a@example.test", Millis(DAY), period));
        f.ev(
            DAY,
            0,
            EventKind::MigrationNoticeSent {
                user: "a@example.test".into(),
            },
        );
        assert!(!f.ledger.notice_due("a@example.test", Millis(DAY), period));
        assert!(
            !f.ledger
                .notice_due("a@example.test", Millis(7 * DAY), period)
        );
        assert!(
            f.ledger
                .notice_due("a@example.test", Millis(8 * DAY), period)
        );
    }

    #[test]
    fn the_window_forgets_old_activity_field_by_field() {
        let mut f = Feed::new();
        f.grant_relay(DAY, "a@example.test", "192.0.2.1:1");
        f.auth_relay(50 * DAY, "a@example.test", "192.0.2.2:1");
        f.grant_relay(DAY, "old@example.test", "192.0.2.3:1");
        let window = Duration::from_secs(90 * 86_400);
        assert!(!f.ledger.prune(Millis(60 * DAY), window));
        assert!(f.ledger.prune(Millis(100 * DAY), window));
        assert_eq!(f.ledger.user("old@example.test"), None);
        let a = f.ledger.user("a@example.test").expect("a");
        assert_eq!(a.grant_relays, 0);
        assert_eq!(a.auth_relay_count(), 1);
        assert_eq!(a.group(), Group::MovedToAuth);
        let addrs: Vec<&str> = a.addresses.iter().map(|x| x.address.as_str()).collect();
        assert_eq!(addrs, ["192.0.2.2"]);
    }

    /// An SMTP session on port 25 from 192.0.2.7 whose grant belongs to `user`:
    /// C: EHLO, MAIL, RCPT to a remote address (the grant is reserved), DATA. Returns
    /// what the server wrote and the session's events.
    fn relay_on_grant(
        modes: GrantModes,
        off_text: &str,
        user: &str,
    ) -> (String, Vec<EventKind>, Vec<u8>) {
        use crate::smtp::{
            ReserveResult, SmtpConfig, SmtpEffect, SmtpResult, SmtpSession, StoreResult,
        };
        let config = std::sync::Arc::new(SmtpConfig {
            hostname: "mail.example.test".into(),
            local_domains: vec!["example.test".into()],
            grant_modes: modes,
            grant_off_text: off_text.into(),
            ..SmtpConfig::default()
        });
        let peer: SocketAddr = "192.0.2.7:4000".parse().expect("peer");
        let local: SocketAddr = "192.0.2.1:25".parse().expect("local");
        let now = Millis(1_000);
        let mut s = SmtpSession::new(
            config,
            SessionId(9),
            Protocol::Smtp,
            peer,
            local,
            false,
            now,
        );
        let mut wire = String::new();
        let mut stored = Vec::new();
        let drive = |s: &mut SmtpSession, wire: &mut String, stored: &mut Vec<u8>| loop {
            while let Some(b) = s.poll_transmit() {
                wire.push_str(&String::from_utf8_lossy(&b));
            }
            let Some(effect) = s.poll_effect() else { break };
            let result = match effect {
                SmtpEffect::ReserveGrant => {
                    SmtpResult::Reserve(ReserveResult::Reserved(crate::grant::Reservation {
                        key: Cidr::host(peer.ip()),
                        user: user.into(),
                        granting_session: Some(SessionId(3)),
                    }))
                }
                SmtpEffect::Deliver(d) => {
                    *stored = d.message;
                    SmtpResult::Stored(StoreResult::Stored)
                }
                _ => continue,
            };
            s.handle_result(now, result);
        };
        for line in [
            "EHLO client.test\r\n",
            "MAIL FROM:<a@example.test>\r\n",
            "RCPT TO:<x@remote.test>\r\n",
            "DATA\r\n",
            "Subject: hi\r\n\r\nbody\r\n.\r\n",
        ] {
            drive(&mut s, &mut wire, &mut stored);
            s.handle_input(now, line.as_bytes());
        }
        drive(&mut s, &mut wire, &mut stored);
        let events = std::iter::from_fn(|| s.poll_event())
            .map(|e| e.kind)
            .collect();
        (wire, events, stored)
    }

    #[test]
    fn off_refuses_the_grant_relay_with_the_configured_text() {
        let modes = GrantModes::new(
            GrantMode::On,
            [("bob@example.test".to_owned(), GrantMode::Off)],
        );
        let (wire, events, stored) = relay_on_grant(
            modes.clone(),
            "Use port 587\r\nwith AUTH",
            "bob@example.test",
        );
        // S: 554 5.7.1 with the operator's text on one line; DATA then has no recipient.
        assert!(
            wire.contains("\r\n554 5.7.1 Use port 587  with AUTH\r\n"),
            "{wire}"
        );
        assert!(stored.is_empty());
        assert!(events.contains(&EventKind::GrantRelayRefused {
            key: Cidr::host("192.0.2.7".parse().expect("ip")),
            user: "bob@example.test".into(),
        }));
        assert!(events.contains(&EventKind::RelayDecision {
            rcpt: "x@remote.test".into(),
            decision: RelayOutcome::Denied {
                reason: crate::grant::RelayRefusal::GrantSwitchedOff
            },
        }));
        // Without a configured text: the default, which names port 587.
        let (wire, _, _) = relay_on_grant(modes.clone(), "", "bob@example.test");
        assert!(
            wire.contains(&crate::reply::GRANT_SWITCHED_OFF.line()),
            "{wire}"
        );
        // Another user of the same grant table is unaffected.
        let (wire, events, stored) = relay_on_grant(modes, "", "alice@example.test");
        assert!(wire.contains("250 2.0.0 Ok: queued as"), "{wire}");
        assert!(!stored.is_empty());
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, EventKind::GrantRelayRefused { .. }))
        );
    }

    #[test]
    fn warn_relays_marks_the_received_header_and_says_so_once() {
        let modes = GrantModes::new(
            GrantMode::On,
            [("example.test".to_owned(), GrantMode::Warn)],
        );
        let (wire, events, stored) = relay_on_grant(modes, "", "alice@example.test");
        assert!(wire.contains("250 2.0.0 Ok: queued as"), "{wire}");
        let text = String::from_utf8_lossy(&stored);
        let header = text.split("Subject:").next().unwrap_or_default();
        assert!(header.contains(crate::smtp::WARN_MARKER), "{text}");
        let warned = events
            .iter()
            .filter(|e| matches!(e, EventKind::GrantRelayWarned { .. }))
            .count();
        assert_eq!(warned, 1);
        // `on`: no marker.
        let (_, events, stored) = relay_on_grant(GrantModes::default(), "", "alice@example.test");
        assert!(!String::from_utf8_lossy(&stored).contains(crate::smtp::WARN_MARKER));
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, EventKind::GrantRelayWarned { .. }))
        );
    }

    #[test]
    fn notice_templates_fill_and_japanese_subjects_are_encoded_words() {
        let v = NoticeValues {
            user: "taro@example.test",
            hostname: "mail.example.test",
            submission_port: 587,
        };
        let (subject, body) = render_notice(
            "Subject: {user}: 送信設定の変更のお願い\n\nポート {submission_port} ({hostname})\n",
            &v,
        )
        .expect("template");
        assert_eq!(subject, "taro@example.test: 送信設定の変更のお願い");
        assert_eq!(body, "ポート 587 (mail.example.test)\n");
        assert_eq!(
            render_notice("no subject line\n\nbody", &v),
            Err(NoticeError::NoSubject)
        );
        let encoded = encode_header_text(&subject);
        for word in encoded.split("\r\n ") {
            assert!(word.len() <= 75, "{word}");
            assert!(
                word.starts_with("=?UTF-8?B?") && word.ends_with("?="),
                "{word}"
            );
        }
        // Decoding the words gives the subject back, whole characters each.
        use base64::Engine;
        let decoded: String = encoded
            .split("\r\n ")
            .map(|w| {
                let b64 = &w["=?UTF-8?B?".len()..w.len() - 2];
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .expect("base64");
                String::from_utf8(bytes).expect("whole UTF-8 characters per word")
            })
            .collect();
        assert_eq!(decoded, subject);
        assert_eq!(encode_header_text("Plain subject"), "Plain subject");
        let m = notice_message(&Notice {
            from: "postmaster@example.test",
            to: "taro@example.test",
            subject: &subject,
            body: &body,
            date: Millis(1_795_893_491_000),
            message_id: "n1@mail.example.test",
        });
        let text = String::from_utf8(m).expect("utf8");
        assert!(text.contains("Content-Type: text/plain; charset=UTF-8\r\n"));
        assert!(text.contains("MIME-Version: 1.0\r\n"));
        assert!(text.contains("Subject: =?UTF-8?B?"));
        assert!(text.ends_with("\r\n\r\nポート 587 (mail.example.test)\r\n"));
    }

    #[test]
    fn the_file_round_trips() {
        let mut f = Feed::new();
        f.pop_login(1, "a@example.test", "192.0.2.1:1", false);
        f.grant_relay(2, "a@example.test", "192.0.2.1:2");
        let json = serde_json::to_string(&f.ledger.to_file()).expect("serialise");
        let back: LedgerFile = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back.version, LEDGER_VERSION);
        let again = Ledger::from_users(back.users);
        assert_eq!(
            again.user("a@example.test"),
            f.ledger.user("a@example.test")
        );
    }
}
