//! The configuration: DESIGN.md "Configuration and command line" over the embedded
//! defaults of DESIGN.md "Defaults".
//!
//! Every table denies unknown keys, and every value is checked while it is read, so an
//! error carries toml's line, column and snippet plus the dotted key that was wrong
//! and what was expected. popgate never starts half-configured: [`Config::load`]
//! either returns a whole configuration or an error.
//!
//! Paths: `data_dir` is relative to the config file's folder (without a config file:
//! `./popgate-data`); the users file, the aliases file and the TLS pair are relative
//! to `data_dir`.

use anyhow::{Context, bail};
use popgate_core::Protocol;
use popgate_core::grant::GrantConfig;
use popgate_core::migration::{GrantMode, GrantModes};
use popgate_core::net::Cidr;
use popgate_core::relay::RelayPolicy;
use popgate_core::smtp::{BareNewline, ErrorLimits, SmtpConfig};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The embedded defaults, one place each (DESIGN.md "Defaults").
pub mod defaults {
    pub const HOSTNAME: &str = "mail.example.test";
    pub const DOMAIN: &str = "example.test";
    pub const DATA_DIR: &str = "popgate-data";
    pub const USERS_FILE: &str = "users";
    pub const ALIASES_FILE: &str = "aliases";
    pub const SMTP_PORT: u16 = 2525;
    pub const SUBMISSION_PORT: u16 = 2587;
    pub const SMTPS_PORT: u16 = 2465;
    pub const POP3_PORT: u16 = 2110;
    pub const POP3S_PORT: u16 = 2995;
    pub const HTTP_PORT: u16 = 8025;
    pub const GRANT_STORE: &str = "memory";
    /// The longest a relay decision waits for a shared grant store before it answers
    /// 451 4.3.0 (fail closed).
    pub const GRANT_STORE_TIMEOUT_MS: u64 = 500;
    /// A maildrop lock file whose heartbeat is older is taken over (its node died).
    pub const MAILDROP_LOCK_STALE_SECS: u64 = 2 * 60;
    /// Postfix's `message_size_limit`.
    pub const MAX_MESSAGE_SIZE: u64 = 10_240_000;
    /// Postfix's `smtpd_recipient_limit`.
    pub const MAX_RECIPIENTS: usize = 1000;
    /// RFC 5321 §4.5.3.1.8: a server must take at least 100 recipients per message.
    pub const MAX_RECIPIENTS_MIN: usize = 100;
    /// RFC 5321 §4.5.3.2.7 asks for at least 5 minutes.
    pub const SMTP_IDLE_TIMEOUT_SECS: u64 = 5 * 60;
    /// RFC 1939 §3: an autologout timer of at least 10 minutes.
    pub const POP3_IDLE_TIMEOUT_SECS: u64 = 10 * 60;
    pub const MAX_CONNECTIONS: usize = 1000;
    /// Postfix `smtpd_client_connection_count_limit`.
    pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 50;
    /// Postfix `line_length_limit`, for SMTP command lines and DATA text lines
    /// (octets without the CRLF). RFC 5321 §4.5.3.1.4 and §4.5.3.1.6 set the floors.
    pub const SMTP_LINE_LENGTH: usize = 2048;
    pub const SMTP_TEXT_LINE_LENGTH: usize = 2048;
    /// RFC 5321 §4.5.3.1.4: 512 octets with the CRLF.
    pub const SMTP_LINE_LENGTH_MIN: usize = 510;
    /// RFC 5321 §4.5.3.1.6: 1000 octets with the CRLF.
    pub const SMTP_TEXT_LINE_LENGTH_MIN: usize = 998;
    /// RFC 2449 §4 caps POP3 commands at 255 octets, but long passwords and SASL
    /// responses (RFC 5034) need more; core's default.
    pub const POP3_LINE_LENGTH: usize = popgate_core::pop3::DEFAULT_MAX_LINE;
    /// RFC 2449 §4: 255 octets with the CRLF.
    pub const POP3_LINE_LENGTH_MIN: usize = 253;
    /// Postfix `smtpd_min_data_rate`, octets per second during DATA.
    pub const MIN_DATA_RATE: u64 = 500;
    /// How long a trusted proxy may take to send its PROXY header.
    pub const PROXY_HEADER_TIMEOUT_SECS: u64 = 10;
    pub const TLS_HANDSHAKE_TIMEOUT_SECS: u64 = 30;
    /// Dovecot's auth penalty starts at 2 s and doubles up to 15 s.
    pub const AUTH_FAILURE_DELAY_MS: u64 = 2000;
    pub const AUTH_FAILURE_DELAY_MAX_MS: u64 = 15_000;
    pub const AUTH_BLOCK_AFTER: u32 = 10;
    pub const AUTH_MAX_FAILURES_PER_SESSION: u32 = 3;
    /// RFC 5321 §4.5.4.1: retry after at least 30 minutes is the classic advice;
    /// modern MTAs start sooner and back off (Postfix: 5m, growing to 4000s).
    pub const RELAY_RETRY: [&str; 4] = ["1m", "5m", "15m", "1h"];
    /// RFC 5321 §4.5.4.1: give up after at least 4-5 days.
    pub const RELAY_MAX_AGE_SECS: u64 = 5 * 24 * 3600;
    /// RFC 5321 §4.5.3.2: 5 minutes for most replies.
    pub const RELAY_TIMEOUT_SECS: u64 = 5 * 60;
    pub const RELAY_MAX_CONCURRENCY: usize = 20;
    pub const RELAY_MAX_PER_DESTINATION: usize = 4;
    /// RFC 5321 §4.5.4.2: port 25 for MX hosts.
    pub const RELAY_MX_PORT: u16 = 25;
    /// `[migration] window`: how long per-user activity is kept.
    pub const MIGRATION_WINDOW_DAYS: u64 = 90;
    /// `[migration.notice] period`: at most one notice per user this often.
    pub const NOTICE_PERIOD_DAYS: u64 = 7;
    /// `data_dir/migration.json`: the per-user migration stats.
    pub const MIGRATION_FILE: &str = "migration.json";
}

/// The whole configuration, resolved: paths are absolute (or relative to the working
/// folder when no config file was given), domains lowercased.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub hostname: String,
    /// Local domains: lowercased, no trailing dot, never empty. The first is the
    /// domain of bare login names.
    pub domains: Vec<String>,
    pub data_dir: PathBuf,
    pub listen: Listen,
    pub grant: GrantSettings,
    pub pop3: Pop3Settings,
    pub auth: AuthSettings,
    /// Resolved against `data_dir` (`[users] file`, default "users").
    pub users_file: PathBuf,
    /// `[users] rehash`: a successful login with a legacy crypt hash (SHA512-CRYPT,
    /// MD5-CRYPT...) rewrites it as ARGON2ID. PLAIN entries are kept: APOP and CRAM-MD5
    /// need them.
    pub users_rehash: bool,
    /// Resolved against `data_dir` (`[aliases] file`, default "aliases").
    pub aliases_file: PathBuf,
    /// `None`: a self-signed pair generated in `data_dir`.
    pub tls: Option<TlsSettings>,
    pub relay: RelaySettings,
    pub http: HttpSettings,
    pub limits: Limits,
    pub log: LogSettings,
    /// `[migration]`: the report's window, the notice mail and the switch-off text.
    pub migration: MigrationSettings,
    pub server: ServerSettings,
    /// The file this configuration came from; `None` for the embedded defaults.
    pub source: Option<PathBuf>,
}

/// Listener addresses; `None` is not started. Port 0 picks a free port (tests).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    #[serde(default, deserialize_with = "de_opt_addr")]
    pub smtp: Option<SocketAddr>,
    #[serde(default, deserialize_with = "de_opt_addr")]
    pub submission: Option<SocketAddr>,
    #[serde(default, deserialize_with = "de_opt_addr")]
    pub smtps: Option<SocketAddr>,
    #[serde(default, deserialize_with = "de_opt_addr")]
    pub pop3: Option<SocketAddr>,
    #[serde(default, deserialize_with = "de_opt_addr")]
    pub pop3s: Option<SocketAddr>,
    #[serde(default, deserialize_with = "de_opt_addr")]
    pub http: Option<SocketAddr>,
    /// Postfix policy delegation (`check_policy_service inet:ADDR`); off unless set.
    #[serde(default, deserialize_with = "de_opt_addr")]
    pub policy: Option<SocketAddr>,
    /// Mail listeners behind a load balancer: every connection must start with a
    /// PROXY protocol header (v1 or v2) and come from `proxy_from`; anything else is
    /// closed. The address the header names is the client for grants, limits, logs
    /// and events.
    #[serde(default)]
    pub proxy: Vec<Protocol>,
    /// The load balancers' addresses (CIDRs) allowed to send a PROXY header.
    #[serde(default)]
    pub proxy_from: Vec<Cidr>,
}

impl Listen {
    /// Every listener on 127.0.0.1 at its default port.
    pub fn embedded() -> Listen {
        let at = |port| Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        Listen {
            smtp: at(defaults::SMTP_PORT),
            submission: at(defaults::SUBMISSION_PORT),
            smtps: at(defaults::SMTPS_PORT),
            pop3: at(defaults::POP3_PORT),
            pop3s: at(defaults::POP3S_PORT),
            http: at(defaults::HTTP_PORT),
            policy: None,
            proxy: Vec::new(),
            proxy_from: Vec::new(),
        }
    }

    /// The configured listeners by name, in a fixed order.
    pub fn all(&self) -> [(&'static str, Option<SocketAddr>); 7] {
        [
            ("smtp", self.smtp),
            ("submission", self.submission),
            ("smtps", self.smtps),
            ("pop3", self.pop3),
            ("pop3s", self.pop3s),
            ("http", self.http),
            ("policy", self.policy),
        ]
    }

    /// One line for humans: "smtp 127.0.0.1:2525, pop3 127.0.0.1:2110" or "none".
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .all()
            .iter()
            .filter_map(|(name, addr)| addr.map(|a| format!("{name} {a}")))
            .collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// `[grant]`: DESIGN.md "Grant semantics".
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantSettings {
    #[serde(deserialize_with = "de_duration")]
    pub ttl: Duration,
    /// 0: no count limit.
    pub max_messages: u32,
    pub sliding: bool,
    #[serde(deserialize_with = "de_ipv4_prefix")]
    pub ipv4_prefix: u8,
    #[serde(deserialize_with = "de_ipv6_prefix")]
    pub ipv6_prefix: u8,
    pub require_tls: bool,
    pub deny: Vec<Cidr>,
    pub max_entries: usize,
    /// What a relay on a grant does: `"on"`, `"warn"` (relay, mark, notify) or `"off"`
    /// (554 5.7.1). The default for users and domains not in `modes`.
    pub mode: GrantMode,
    /// `[grant.modes]`: per domain (`"example.test" = "warn"`) or per user
    /// (`"bob@example.test" = "off"`); the most specific wins (user > domain > mode).
    #[serde(deserialize_with = "de_grant_modes")]
    pub modes: BTreeMap<String, GrantMode>,
    /// "memory", or a `redis://` / `rediss://` URL.
    #[serde(deserialize_with = "de_store")]
    pub store: String,
    /// How long a shared store may take to answer before a relay is refused with
    /// 451 4.3.0 (and a login is told to have stored no grant).
    #[serde(deserialize_with = "de_duration")]
    pub store_timeout: Duration,
    /// This node's name in shared events and locks; empty: the machine's host name.
    pub node: String,
}

impl Default for GrantSettings {
    fn default() -> GrantSettings {
        let core = GrantConfig::default();
        GrantSettings {
            ttl: core.ttl,
            max_messages: core.max_messages.unwrap_or(0),
            sliding: core.sliding,
            ipv4_prefix: core.ipv4_prefix,
            ipv6_prefix: core.ipv6_prefix,
            require_tls: false,
            deny: core.deny,
            max_entries: core.max_entries,
            mode: GrantMode::On,
            modes: BTreeMap::new(),
            store: defaults::GRANT_STORE.to_owned(),
            store_timeout: Duration::from_millis(defaults::GRANT_STORE_TIMEOUT_MS),
            node: String::new(),
        }
    }
}

impl GrantSettings {
    /// `mode` and `[grant.modes]` as the sessions ask them.
    pub fn modes(&self) -> GrantModes {
        GrantModes::new(self.mode, self.modes.clone())
    }

    /// The grant table's settings.
    pub fn core(&self) -> GrantConfig {
        GrantConfig {
            ttl: self.ttl,
            max_messages: (self.max_messages != 0).then_some(self.max_messages),
            sliding: self.sliding,
            ipv4_prefix: self.ipv4_prefix,
            ipv6_prefix: self.ipv6_prefix,
            deny: self.deny.clone(),
            max_entries: self.max_entries,
        }
    }
}

/// `[migration]`: who still depends on POP before SMTP, and the staged switch-off.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigrationSettings {
    /// Per-user activity older than this is forgotten.
    #[serde(deserialize_with = "de_duration")]
    pub window: Duration,
    /// The text after `554 5.7.1` when grants are off for a user; empty: the default,
    /// which names authenticated submission on port 587.
    #[serde(deserialize_with = "de_reply_text")]
    pub off_text: String,
    pub notice: NoticeSettings,
}

impl Default for MigrationSettings {
    fn default() -> MigrationSettings {
        MigrationSettings {
            window: Duration::from_secs(defaults::MIGRATION_WINDOW_DAYS * 86_400),
            off_text: String::new(),
            notice: NoticeSettings::default(),
        }
    }
}

/// `[migration.notice]`: in `warn` mode, a mail to the user's own mailbox telling them
/// how to set up authenticated submission, at most once per `period`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoticeSettings {
    pub enabled: bool,
    #[serde(deserialize_with = "de_duration")]
    pub period: Duration,
    /// The shipped template's language: `"en"` or `"ja"`.
    pub language: NoticeLanguage,
    /// A template of your own (relative to `data_dir`); wins over `language`.
    pub template: Option<PathBuf>,
    /// The notice's sender; empty: `postmaster@<first domain>`.
    pub from: String,
}

impl Default for NoticeSettings {
    fn default() -> NoticeSettings {
        NoticeSettings {
            enabled: false,
            period: Duration::from_secs(defaults::NOTICE_PERIOD_DAYS * 86_400),
            language: NoticeLanguage::En,
            template: None,
            from: String::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeLanguage {
    #[default]
    En,
    Ja,
}

/// `[pop3]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3Settings {
    /// USER/PASS (and APOP) without TLS: what legacy POP-before-SMTP clients speak.
    pub plaintext_auth: bool,
    pub apop: bool,
    /// A maildrop lock file (held by a POP3 session on any node sharing the Maildir
    /// store) whose heartbeat is older than this is stale and taken over.
    #[serde(deserialize_with = "de_duration")]
    pub lock_stale: Duration,
    /// How a POP3 session holds its maildrop; unset: `file` when grants are shared
    /// through Redis (nodes then usually share the Maildir store too), else `process`.
    pub maildrop_lock: Option<MaildropLockKind>,
}

/// `[pop3] maildrop_lock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaildropLockKind {
    /// A lock file in the Maildir: holds across every node sharing the store.
    File,
    /// This process only: no file per session, for a store no other node serves.
    Process,
}

impl Default for Pop3Settings {
    fn default() -> Pop3Settings {
        Pop3Settings {
            plaintext_auth: true,
            apop: false,
            lock_stale: Duration::from_secs(defaults::MAILDROP_LOCK_STALE_SECS),
            maildrop_lock: None,
        }
    }
}

impl Config {
    /// The maildrop lock in effect (see [`Pop3Settings::maildrop_lock`]).
    pub fn maildrop_lock(&self) -> MaildropLockKind {
        self.pop3
            .maildrop_lock
            .unwrap_or(if self.grant.store == defaults::GRANT_STORE {
                MaildropLockKind::Process
            } else {
                MaildropLockKind::File
            })
    }
}

/// `[tls]`: the certificate chain and key, PEM, relative to `data_dir`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What may relay on a listener (DESIGN.md "Grant semantics").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayMethod {
    /// `[relay] trusted_networks`.
    Trusted,
    /// POP before SMTP.
    Grant,
    /// SMTP AUTH.
    Auth,
}

/// `[relay] mode`: what happens to relayed mail once queued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayMode {
    /// Deliver to the next hop (transport map, smarthost or MX).
    #[default]
    Deliver,
    /// Keep relayed mail in the queue for viewing, never deliver it (for developers
    /// testing mail code).
    Capture,
}

/// `[relay]` and `[relay.policy]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelaySettings {
    pub mode: RelayMode,
    /// SMTP AUTH (PLAIN, only inside TLS) at the smarthost; empty: no AUTH.
    pub smarthost_user: String,
    pub smarthost_password: String,
    /// Refuse to deliver to the smarthost without TLS.
    pub smarthost_require_tls: bool,
    /// Recipient domains whose next hop must offer STARTTLS (otherwise the message
    /// waits and retries); `"*"` is every domain.
    pub require_tls: Vec<String>,
    /// The DNS server for MX and address lookups; `None`: the system's.
    pub resolver: Option<SocketAddr>,
    /// The port of hosts found by MX (or A/AAAA) lookup.
    pub mx_port: u16,
    /// Waits between attempts; the last repeats until `max_age`.
    pub retry: Vec<Duration>,
    /// A message still undelivered this long after it was queued is bounced.
    pub max_age: Duration,
    /// How long to wait for a connection or each reply of the next hop.
    pub timeout: Duration,
    /// Delivery connections open at once, at most.
    pub max_concurrency: usize,
    /// Delivery connections to one destination at once, at most.
    pub max_per_destination: usize,
    /// "host:port"; empty: MX lookup.
    pub smarthost: String,
    /// Per-domain next hop (lowercased domain to "host:port"); wins over smarthost and MX.
    pub transport: BTreeMap<String, String>,
    /// Empty by default: no address is trusted for relay, loopback included.
    pub trusted_networks: Vec<Cidr>,
    pub smtp: Vec<RelayMethod>,
    pub submission: Vec<RelayMethod>,
    pub smtps: Vec<RelayMethod>,
    /// `[relay.dkim]`: sign relayed mail of one domain; `None`: no signing.
    pub dkim: Option<DkimSettings>,
}

/// `[relay.dkim]`: DKIM signing (RFC 6376) of relayed mail whose envelope sender or
/// From: is in `domain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkimSettings {
    /// `d=`.
    pub domain: String,
    /// `s=`: the public key is published at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// The private key, PEM (RSA in PKCS#8 or PKCS#1); resolved against `data_dir`.
    pub key: PathBuf,
    /// Header fields to sign, lowercase.
    pub headers: Vec<String>,
}

impl Default for RelaySettings {
    fn default() -> RelaySettings {
        RelaySettings {
            mode: RelayMode::Deliver,
            smarthost_user: String::new(),
            smarthost_password: String::new(),
            smarthost_require_tls: false,
            require_tls: Vec::new(),
            resolver: None,
            mx_port: defaults::RELAY_MX_PORT,
            retry: defaults::RELAY_RETRY
                .iter()
                .filter_map(|d| humantime::parse_duration(d).ok())
                .collect(),
            max_age: Duration::from_secs(defaults::RELAY_MAX_AGE_SECS),
            timeout: Duration::from_secs(defaults::RELAY_TIMEOUT_SECS),
            max_concurrency: defaults::RELAY_MAX_CONCURRENCY,
            max_per_destination: defaults::RELAY_MAX_PER_DESTINATION,
            smarthost: String::new(),
            transport: BTreeMap::new(),
            trusted_networks: Vec::new(),
            smtp: vec![RelayMethod::Grant, RelayMethod::Auth],
            submission: vec![RelayMethod::Auth],
            smtps: vec![RelayMethod::Auth],
            dkim: None,
        }
    }
}

/// `[http]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Bearer token for the API; required when the HTTP listener is not on loopback.
    pub admin_token: String,
    /// Serve the built web app from this folder (relative to the config file's folder).
    pub web_root: Option<PathBuf>,
}

/// `[auth]`: SMTP AUTH, POP3 SASL and login hygiene.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// AUTH without TLS from 127.0.0.1 and ::1 (elsewhere: 538 5.7.11).
    pub plaintext_localhost: bool,
    /// Offer CRAM-MD5 (SMTP and POP3); it verifies only users stored with `{PLAIN}`.
    pub cram_md5: bool,
    /// MAIL FROM of an authenticated session that is not the user's own address.
    pub sender_policy: SenderPolicySetting,
    /// Failed authentications one session may make before it is closed.
    pub max_failures: u32,
    /// The delay after an address's first failed login; it doubles per failure.
    #[serde(deserialize_with = "de_duration")]
    pub failure_delay: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub failure_delay_max: Duration,
    /// Failures after which an address is reported blocked (every further failure
    /// waits the maximum).
    pub block_after: u32,
}

impl Default for AuthSettings {
    fn default() -> AuthSettings {
        AuthSettings {
            plaintext_localhost: true,
            cram_md5: false,
            sender_policy: SenderPolicySetting::Reject,
            max_failures: defaults::AUTH_MAX_FAILURES_PER_SESSION,
            failure_delay: Duration::from_millis(defaults::AUTH_FAILURE_DELAY_MS),
            failure_delay_max: Duration::from_millis(defaults::AUTH_FAILURE_DELAY_MAX_MS),
            block_after: defaults::AUTH_BLOCK_AFTER,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SenderPolicySetting {
    /// 553 5.7.1 (the default).
    #[default]
    Reject,
    Allow,
}

/// `[limits]`: named, with Postfix-like defaults.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_message_size: u64,
    pub max_recipients: usize,
    #[serde(deserialize_with = "de_duration")]
    pub smtp_idle_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub pop3_idle_timeout: Duration,
    pub max_connections: usize,
    /// A TLS handshake (implicit, STARTTLS or STLS) that takes longer is closed.
    #[serde(deserialize_with = "de_duration")]
    pub tls_handshake_timeout: Duration,
    /// Connections open at once from one client address (after PROXY); more get
    /// 421 4.7.0 / -ERR [SYS/TEMP] and a close.
    pub max_connections_per_address: usize,
    /// Longest SMTP command line, octets without the CRLF (at least 510).
    pub smtp_line_length: usize,
    /// Longest DATA text line, octets without the CRLF (at least 998).
    pub smtp_text_line_length: usize,
    /// Longest POP3 command line, octets without the CRLF (at least 253).
    pub pop3_line_length: usize,
    /// Octets per second a client must keep up during DATA; 0: no minimum.
    pub min_data_rate: u64,
    /// A trusted proxy that has not sent its PROXY header by then is closed.
    #[serde(deserialize_with = "de_duration")]
    pub proxy_header_timeout: Duration,
    /// A bare CR or LF inside DATA: `"reject"` (550 5.5.2) or `"normalize"` (stored
    /// as CRLF). RFC 5321 §2.3.8; Postfix `smtpd_forbid_bare_newline`.
    pub bare_newline: BareNewline,
    /// Hold the SMTP greeting this long; a client that talks first gets 554 5.5.0.
    /// 0 (the default): greet at once.
    #[serde(deserialize_with = "de_duration")]
    pub greet_pause: Duration,
    /// RFC 2920: a command pipelined after DATA, or any pipelining before EHLO
    /// offered it, gets 554 5.5.0 and a close. Postfix `smtpd_forbid_unauth_pipelining`.
    pub forbid_unauth_pipelining: bool,
    /// Postfix `smtpd_soft_error_limit`: past it each error reply is delayed.
    pub soft_error_limit: u32,
    /// Postfix `smtpd_hard_error_limit`: at it, 421 4.7.0 and a close.
    pub hard_error_limit: u32,
    /// Postfix `smtpd_error_sleep_time`: the delay per error past the soft limit.
    #[serde(deserialize_with = "de_duration")]
    pub error_sleep_time: Duration,
    /// Postfix `smtpd_junk_command_limit`: NOOP, VRFY, RSET, HELP past it are errors.
    pub junk_command_limit: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_size: defaults::MAX_MESSAGE_SIZE,
            max_recipients: defaults::MAX_RECIPIENTS,
            smtp_idle_timeout: Duration::from_secs(defaults::SMTP_IDLE_TIMEOUT_SECS),
            pop3_idle_timeout: Duration::from_secs(defaults::POP3_IDLE_TIMEOUT_SECS),
            max_connections: defaults::MAX_CONNECTIONS,
            tls_handshake_timeout: Duration::from_secs(defaults::TLS_HANDSHAKE_TIMEOUT_SECS),
            max_connections_per_address: defaults::MAX_CONNECTIONS_PER_ADDRESS,
            smtp_line_length: defaults::SMTP_LINE_LENGTH,
            smtp_text_line_length: defaults::SMTP_TEXT_LINE_LENGTH,
            pop3_line_length: defaults::POP3_LINE_LENGTH,
            min_data_rate: defaults::MIN_DATA_RATE,
            proxy_header_timeout: Duration::from_secs(defaults::PROXY_HEADER_TIMEOUT_SECS),
            // Core's SMTP defaults are the one place for these (Postfix's values).
            bare_newline: BareNewline::default(),
            greet_pause: SmtpConfig::default().greet_pause,
            forbid_unauth_pipelining: SmtpConfig::default().forbid_unauth_pipelining,
            soft_error_limit: ErrorLimits::default().soft,
            hard_error_limit: ErrorLimits::default().hard,
            error_sleep_time: ErrorLimits::default().sleep,
            junk_command_limit: ErrorLimits::default().junk_commands,
        }
    }
}

/// `[server]`: the process itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Started as root (to bind ports below 1024): switch to this user once every
    /// listener is bound, before reading the data folder or serving anyone. `None`:
    /// stay who we are.
    pub user: Option<String>,
    /// The group to switch to; `None`: the user's primary group.
    pub group: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `key=value` lines that fail2ban can match.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// Capture session transcripts for the dashboard; off for privacy.
    pub transcripts: bool,
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings {
            format: LogFormat::Text,
            transcripts: true,
        }
    }
}

impl Config {
    /// The embedded defaults: what `popgate serve` runs with no config file. Data in
    /// `./popgate-data` (relative to the working folder).
    pub fn embedded() -> Config {
        Config::resolve(FileConfig::default(), Path::new("."), None)
    }

    /// Load `path` over the embedded defaults, or the embedded defaults (with an
    /// absolute `data_dir`) when `path` is `None`.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let Some(path) = path else {
            let cwd = std::env::current_dir().context("cannot find the working folder")?;
            return Ok(Config::resolve(FileConfig::default(), &cwd, None));
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = std::path::absolute(&base).unwrap_or(base);
        Config::parse(&text, &base, Some(path.to_path_buf()))
            .with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parse config text; relative paths resolve against `base` (the file's folder).
    pub fn parse(text: &str, base: &Path, source: Option<PathBuf>) -> anyhow::Result<Config> {
        let raw: FileConfig = match serde_path_to_error::deserialize(toml::Deserializer::new(text))
        {
            Ok(raw) => raw,
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner().to_string();
                let inner = inner.trim_end();
                // Syntax errors have no key path ("."); toml's text already has the
                // line, column and a snippet.
                if path.is_empty() || path == "." {
                    bail!("{inner}");
                }
                bail!("key `{path}`: {inner}");
            }
        };
        let config = Config::resolve(raw, base, source);
        config.check()?;
        Ok(config)
    }

    fn resolve(raw: FileConfig, base: &Path, source: Option<PathBuf>) -> Config {
        let data_dir = base.join(raw.data_dir);
        let notice_template = (raw.migration.notice.template.clone()).map(|t| data_dir.join(t));
        let tls = raw.tls.map(|t| TlsSettings {
            cert: data_dir.join(t.cert),
            key: data_dir.join(t.key),
        });
        let dkim = raw.relay.dkim.map(|d| DkimSettings {
            domain: d.domain.trim_end_matches('.').to_ascii_lowercase(),
            selector: d.selector,
            key: data_dir.join(d.key),
            headers: d.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
        });
        let http = HttpSettings {
            web_root: raw.http.web_root.map(|w| base.join(w)),
            ..raw.http
        };
        Config {
            hostname: raw.hostname.0,
            domains: raw.domains.0,
            users_file: data_dir.join(raw.users.file),
            users_rehash: raw.users.rehash,
            aliases_file: data_dir.join(raw.aliases.file),
            data_dir,
            listen: raw.listen,
            grant: raw.grant,
            pop3: raw.pop3,
            auth: raw.auth,
            tls,
            relay: RelaySettings {
                mode: raw.relay.mode,
                smarthost_user: raw.relay.smarthost_user,
                smarthost_password: raw.relay.smarthost_password,
                smarthost_require_tls: raw.relay.smarthost_require_tls,
                require_tls: raw.relay.require_tls.into_iter().map(|d| d.0).collect(),
                resolver: raw.relay.resolver,
                mx_port: raw.relay.mx_port,
                retry: raw.relay.retry,
                max_age: raw.relay.max_age,
                timeout: raw.relay.timeout,
                max_concurrency: raw.relay.max_concurrency,
                max_per_destination: raw.relay.max_per_destination,
                smarthost: raw.relay.smarthost,
                transport: raw.relay.transport,
                trusted_networks: raw.relay.trusted_networks,
                smtp: raw.relay.policy.smtp,
                submission: raw.relay.policy.submission,
                smtps: raw.relay.policy.smtps,
                dkim,
            },
            http,
            limits: raw.limits,
            log: raw.log,
            migration: MigrationSettings {
                notice: NoticeSettings {
                    template: notice_template,
                    ..raw.migration.notice
                },
                ..raw.migration
            },
            server: raw.server,
            source,
        }
    }

    /// Rules that span several keys (each key alone was checked while reading).
    fn check(&self) -> anyhow::Result<()> {
        if self.limits.max_connections == 0 {
            bail!(
                "key `limits.max_connections`: 0 would refuse every connection; expected at least 1"
            );
        }
        let l = &self.limits;
        if l.max_connections_per_address == 0 {
            bail!(
                "key `limits.max_connections_per_address`: 0 would refuse every connection; expected at least 1"
            );
        }
        if l.max_recipients < defaults::MAX_RECIPIENTS_MIN {
            bail!(
                "key `limits.max_recipients`: {} is below the RFC minimum; expected at least {} (RFC 5321 §4.5.3.1.8)",
                l.max_recipients,
                defaults::MAX_RECIPIENTS_MIN
            );
        }
        for (key, value, min) in [
            (
                "smtp_line_length",
                l.smtp_line_length,
                defaults::SMTP_LINE_LENGTH_MIN,
            ),
            (
                "smtp_text_line_length",
                l.smtp_text_line_length,
                defaults::SMTP_TEXT_LINE_LENGTH_MIN,
            ),
            (
                "pop3_line_length",
                l.pop3_line_length,
                defaults::POP3_LINE_LENGTH_MIN,
            ),
        ] {
            if value < min {
                bail!(
                    "key `limits.{key}`: {value} is below the RFC minimum; expected at least {min} (octets without the CRLF)"
                );
            }
        }
        for p in &self.listen.proxy {
            if matches!(p, Protocol::Policy | Protocol::Dovecot) {
                bail!(
                    "key `listen.proxy`: {:?} cannot be behind a proxy; expected mail listeners (smtp, submission, smtps, pop3, pop3s)",
                    p.name()
                );
            }
        }
        if !self.listen.proxy.is_empty() && self.listen.proxy_from.is_empty() {
            bail!(
                "key `listen.proxy_from`: required when `listen.proxy` is set; expected the load balancers' CIDRs such as [\"10.0.0.5/32\"]"
            );
        }
        if let Some(user) = &self.server.user
            && user.is_empty()
        {
            bail!("key `server.user`: expected a user name");
        }
        if self.relay.max_concurrency == 0 || self.relay.max_per_destination == 0 {
            bail!(
                "key `relay.max_concurrency`/`relay.max_per_destination`: 0 would never deliver; expected at least 1"
            );
        }
        if self.relay.smarthost_user.is_empty() != self.relay.smarthost_password.is_empty() {
            bail!(
                "key `relay.smarthost_user`/`relay.smarthost_password`: expected both or neither"
            );
        }
        if let Some(d) = &self.relay.dkim {
            // RFC 6376 §5.4: From must be signed; a selector and domain are DNS labels.
            if !d.headers.iter().any(|h| h == "from") {
                bail!("key `relay.dkim.headers`: must include \"from\" (RFC 6376 §5.4)");
            }
            if d.domain.is_empty() || d.selector.is_empty() || d.selector.contains([';', ' ']) {
                bail!("key `relay.dkim.domain`/`relay.dkim.selector`: expected DNS names");
            }
        }
        if let Some(addr) = self.listen.http
            && !addr.ip().is_loopback()
            && self.http.admin_token.is_empty()
        {
            bail!(
                "key `http.admin_token`: required when `listen.http` ({addr}) is not on loopback; \
                 expected a non-empty secret string"
            );
        }
        Ok(())
    }

    /// The relay policy of the listener `protocol` arrived on. POP3 listeners relay
    /// nothing.
    pub fn relay_policy(&self, protocol: Protocol) -> RelayPolicy {
        let methods: &[RelayMethod] = match protocol {
            Protocol::Smtp => &self.relay.smtp,
            Protocol::Submission => &self.relay.submission,
            Protocol::Smtps => &self.relay.smtps,
            Protocol::Pop3 | Protocol::Pop3s | Protocol::Policy | Protocol::Dovecot => &[],
        };
        RelayPolicy {
            trusted: if methods.contains(&RelayMethod::Trusted) {
                self.relay.trusted_networks.clone()
            } else {
                Vec::new()
            },
            grant: methods.contains(&RelayMethod::Grant),
            auth: methods.contains(&RelayMethod::Auth),
        }
    }

    /// The first local domain: where bare login names live.
    pub fn primary_domain(&self) -> &str {
        self.domains
            .first()
            .map(String::as_str)
            .unwrap_or(defaults::DOMAIN)
    }

    /// `<data_dir>/mail`: the Maildir root.
    pub fn mail_dir(&self) -> PathBuf {
        self.data_dir.join("mail")
    }

    /// `<data_dir>/queue`: the outbound queue.
    pub fn queue_dir(&self) -> PathBuf {
        self.data_dir.join("queue")
    }
}

// ---- the file as written ----------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    hostname: Hostname,
    domains: Domains,
    data_dir: PathBuf,
    /// Present: only the listeners named in it start.
    listen: Listen,
    grant: GrantSettings,
    pop3: Pop3Settings,
    auth: AuthSettings,
    users: FileUsers,
    aliases: FileRef,
    tls: Option<TlsSettings>,
    relay: FileRelay,
    http: HttpSettings,
    limits: Limits,
    log: LogSettings,
    migration: MigrationSettings,
    server: ServerSettings,
}

impl Default for FileConfig {
    fn default() -> FileConfig {
        FileConfig {
            hostname: Hostname(defaults::HOSTNAME.to_owned()),
            domains: Domains(vec![defaults::DOMAIN.to_owned()]),
            data_dir: PathBuf::from(defaults::DATA_DIR),
            listen: Listen::embedded(),
            grant: GrantSettings::default(),
            pop3: Pop3Settings::default(),
            auth: AuthSettings::default(),
            users: FileUsers::default(),
            aliases: FileRef {
                file: PathBuf::from(defaults::ALIASES_FILE),
            },
            tls: None,
            relay: FileRelay::default(),
            http: HttpSettings::default(),
            limits: Limits::default(),
            log: LogSettings::default(),
            migration: MigrationSettings::default(),
            server: ServerSettings::default(),
        }
    }
}

/// `[users]`: the passwd-file, and whether a legacy hash is rehashed on login.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileUsers {
    file: PathBuf,
    rehash: bool,
}

impl Default for FileUsers {
    fn default() -> FileUsers {
        FileUsers {
            file: PathBuf::from(defaults::USERS_FILE),
            rehash: false,
        }
    }
}

/// `[aliases]`: `file = "..."`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRef {
    file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileRelay {
    mode: RelayMode,
    smarthost_user: String,
    smarthost_password: String,
    smarthost_require_tls: bool,
    require_tls: Vec<TlsDomain>,
    #[serde(deserialize_with = "de_opt_addr")]
    resolver: Option<SocketAddr>,
    mx_port: u16,
    #[serde(deserialize_with = "de_retry")]
    retry: Vec<Duration>,
    #[serde(deserialize_with = "de_duration")]
    max_age: Duration,
    #[serde(deserialize_with = "de_duration")]
    timeout: Duration,
    max_concurrency: usize,
    max_per_destination: usize,
    #[serde(deserialize_with = "de_host_port_or_empty")]
    smarthost: String,
    #[serde(deserialize_with = "de_transport")]
    transport: BTreeMap<String, String>,
    trusted_networks: Vec<Cidr>,
    policy: FilePolicy,
    dkim: Option<FileDkim>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDkim {
    domain: String,
    selector: String,
    key: PathBuf,
    #[serde(default = "default_dkim_headers")]
    headers: Vec<String>,
}

fn default_dkim_headers() -> Vec<String> {
    popgate_core::dkim::DEFAULT_HEADERS
        .iter()
        .map(|h| (*h).to_owned())
        .collect()
}

impl Default for FileRelay {
    fn default() -> FileRelay {
        let d = RelaySettings::default();
        FileRelay {
            mode: d.mode,
            smarthost_user: d.smarthost_user,
            smarthost_password: d.smarthost_password,
            smarthost_require_tls: d.smarthost_require_tls,
            require_tls: Vec::new(),
            resolver: d.resolver,
            mx_port: d.mx_port,
            retry: d.retry,
            max_age: d.max_age,
            timeout: d.timeout,
            max_concurrency: d.max_concurrency,
            max_per_destination: d.max_per_destination,
            smarthost: d.smarthost,
            transport: d.transport,
            trusted_networks: d.trusted_networks,
            policy: FilePolicy {
                smtp: d.smtp,
                submission: d.submission,
                smtps: d.smtps,
            },
            dkim: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FilePolicy {
    smtp: Vec<RelayMethod>,
    submission: Vec<RelayMethod>,
    smtps: Vec<RelayMethod>,
}

impl Default for FilePolicy {
    fn default() -> FilePolicy {
        FileRelay::default().policy
    }
}

#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
struct Hostname(String);

impl TryFrom<String> for Hostname {
    type Error = String;
    fn try_from(s: String) -> Result<Hostname, String> {
        let s = s.trim_end_matches('.').to_ascii_lowercase();
        if is_domain(&s) {
            Ok(Hostname(s))
        } else {
            Err(format!(
                "{s:?} is not a host name; expected a name such as \"mail.example.test\""
            ))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(try_from = "Vec<String>")]
struct Domains(Vec<String>);

impl TryFrom<Vec<String>> for Domains {
    type Error = String;
    fn try_from(list: Vec<String>) -> Result<Domains, String> {
        if list.is_empty() {
            return Err(
                "no local domains; expected at least one, such as [\"example.test\"]".to_owned(),
            );
        }
        let mut out: Vec<String> = Vec::with_capacity(list.len());
        for d in list {
            // DESIGN: domains compare case-insensitively and may not end in a dot.
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            if !is_domain(&d) {
                return Err(format!(
                    "{d:?} is not a domain name; expected a name such as \"example.test\""
                ));
            }
            if !out.contains(&d) {
                out.push(d);
            }
        }
        Ok(Domains(out))
    }
}

/// Letters, digits, hyphens and dots, no empty label (RFC 5321 §4.1.2 `Domain`).
pub fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

const ADDR_EXPECTED: &str = "expected \"ip:port\" such as \"127.0.0.1:2525\" or \"[::1]:2525\"";

fn de_opt_addr<'de, D: Deserializer<'de>>(de: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(de)?;
    s.parse()
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{s:?} is not a socket address; {ADDR_EXPECTED}")))
}

/// `[grant.modes]`: keys are a domain or a user address, compared without case.
fn de_grant_modes<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<BTreeMap<String, GrantMode>, D::Error> {
    let raw = BTreeMap::<String, GrantMode>::deserialize(de)?;
    let mut modes = BTreeMap::new();
    for (key, mode) in raw {
        let k = key.trim().trim_end_matches('.').to_ascii_lowercase();
        if k.is_empty() || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(D::Error::custom(format!(
                "{key:?} is not a domain or an address; expected e.g. \"example.test\" or \"bob@example.test\""
            )));
        }
        if modes.insert(k.clone(), mode).is_some() {
            return Err(D::Error::custom(format!("{k:?} is given twice")));
        }
    }
    Ok(modes)
}

/// A reply text: one line (RFC 5321 §4.2), at most 400 characters.
fn de_reply_text<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    let s = String::deserialize(de)?;
    if s.chars().any(char::is_control) || s.chars().count() > 400 {
        return Err(D::Error::custom(
            "expected one line of text without control characters, at most 400 characters",
        ));
    }
    Ok(s.trim().to_owned())
}

fn de_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(de)?;
    humantime::parse_duration(&s).map_err(|e| {
        D::Error::custom(format!(
            "{s:?} is not a duration ({e}); expected a duration such as \"30m\", \"90s\" or \"1h 30m\""
        ))
    })
}

fn de_prefix<'de, D: Deserializer<'de>>(de: D, max: u8) -> Result<u8, D::Error> {
    let n = u8::deserialize(de)?;
    if n > max {
        return Err(D::Error::custom(format!(
            "{n} is not a prefix length; expected 0 to {max}"
        )));
    }
    Ok(n)
}

fn de_ipv4_prefix<'de, D: Deserializer<'de>>(de: D) -> Result<u8, D::Error> {
    de_prefix(de, 32)
}

fn de_ipv6_prefix<'de, D: Deserializer<'de>>(de: D) -> Result<u8, D::Error> {
    de_prefix(de, 128)
}

fn de_store<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    let s = String::deserialize(de)?;
    if s == defaults::GRANT_STORE || s.starts_with("redis://") || s.starts_with("rediss://") {
        Ok(s)
    } else {
        Err(D::Error::custom(format!(
            "{s:?} is not a grant store; expected \"memory\" or a URL such as \"redis://127.0.0.1:6379/0\""
        )))
    }
}

/// "host:port" with a numeric port; the host may be a name or an address.
fn is_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => port.parse::<u16>().is_ok() && is_domain(host.trim_end_matches('.')),
        None => false,
    }
}

fn de_host_port_or_empty<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    let s = String::deserialize(de)?;
    if s.is_empty() || is_host_port(&s) {
        Ok(s)
    } else {
        Err(D::Error::custom(format!(
            "{s:?} is not a next hop; expected \"host:port\" such as \"smtp.example.net:25\", or \"\" for MX lookup"
        )))
    }
}

fn de_transport<'de, D: Deserializer<'de>>(de: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<DomainKey, NextHop>::deserialize(de)?;
    Ok(raw.into_iter().map(|(k, v)| (k.0, v.0)).collect())
}

fn de_retry<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<Duration>, D::Error> {
    let list = Vec::<String>::deserialize(de)?;
    if list.is_empty() {
        return Err(D::Error::custom(
            "an empty retry schedule; expected waits such as [\"1m\", \"5m\", \"1h\"]",
        ));
    }
    list.iter()
        .map(|s| {
            humantime::parse_duration(s).map_err(|e| {
                D::Error::custom(format!(
                    "{s:?} is not a duration ({e}); expected waits such as [\"1m\", \"5m\", \"1h\"]"
                ))
            })
        })
        .collect()
}

/// A `[relay] require_tls` entry: a domain, or `"*"` for every domain.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
struct TlsDomain(String);

impl TryFrom<String> for TlsDomain {
    type Error = String;
    fn try_from(s: String) -> Result<TlsDomain, String> {
        let d = s.trim_end_matches('.').to_ascii_lowercase();
        if d == "*" || is_domain(&d) {
            Ok(TlsDomain(d))
        } else {
            Err(format!(
                "{s:?} is not a domain name; expected names such as \"partner.test\" or \"*\""
            ))
        }
    }
}

/// A `[relay.transport]` key: a domain, lowercased, without a trailing dot.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
struct DomainKey(String);

impl TryFrom<String> for DomainKey {
    type Error = String;
    fn try_from(s: String) -> Result<DomainKey, String> {
        let d = s.trim_end_matches('.').to_ascii_lowercase();
        if is_domain(&d) {
            Ok(DomainKey(d))
        } else {
            Err(format!(
                "{s:?} is not a domain name; expected keys such as \"partner.test\""
            ))
        }
    }
}

/// A `[relay.transport]` value: "host:port".
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
struct NextHop(String);

impl TryFrom<String> for NextHop {
    type Error = String;
    fn try_from(s: String) -> Result<NextHop, String> {
        if is_host_port(&s) {
            Ok(NextHop(s))
        } else {
            Err(format!(
                "{s:?} is not a next hop; expected \"host:port\" such as \"127.0.0.1:2626\""
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        Config::parse(
            text,
            Path::new("/etc/popgate"),
            Some(PathBuf::from("/etc/popgate/popgate.toml")),
        )
    }

    fn local(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
    }

    #[test]
    fn relay_dkim_settings() {
        assert_eq!(Config::embedded().relay.dkim, None);
        let c = parse(
            "[relay.dkim]\ndomain = \"Example.TEST\"\nselector = \"popgate\"\nkey = \"dkim.pem\"\n",
        )
        .expect("dkim settings");
        let d = c.relay.dkim.expect("dkim on");
        assert_eq!(d.domain, "example.test");
        assert_eq!(d.key, c.data_dir.join("dkim.pem"));
        assert_eq!(d.headers, ["from", "to", "subject", "date", "message-id"]);
        let e = parse(
            "[relay.dkim]\ndomain = \"e.test\"\nselector = \"s\"\nkey = \"k\"\nheaders = [\"to\"]\n",
        )
        .expect_err("From unsigned");
        assert!(format!("{e:#}").contains("relay.dkim.headers"), "{e:#}");
    }

    #[test]
    fn relay_delivery_settings() {
        let c = Config::embedded();
        assert_eq!(c.relay.mode, RelayMode::Deliver);
        assert_eq!(c.relay.retry[0], Duration::from_secs(60));
        assert_eq!(c.relay.retry.len(), 4);
        assert_eq!(c.relay.max_age, Duration::from_secs(5 * 24 * 3600));
        assert_eq!(c.relay.max_concurrency, 20);
        assert_eq!(c.relay.max_per_destination, 4);
        let c = parse(
            "[relay]\nmode = \"capture\"\nresolver = \"127.0.0.1:5353\"\nretry = [\"10ms\", \"1s\"]\n\
             max_age = \"2s\"\ntimeout = \"500ms\"\nmx_port = 2525\nrequire_tls = [\"Partner.test\", \"*\"]\n",
        )
        .expect("relay settings");
        assert_eq!(c.relay.mode, RelayMode::Capture);
        assert_eq!(
            c.relay.resolver,
            Some("127.0.0.1:5353".parse().expect("addr"))
        );
        assert_eq!(
            c.relay.retry,
            vec![Duration::from_millis(10), Duration::from_secs(1)]
        );
        assert_eq!(c.relay.timeout, Duration::from_millis(500));
        assert_eq!(c.relay.mx_port, 2525);
        assert_eq!(c.relay.require_tls, vec!["partner.test", "*"]);
        for (text, wants) in [
            ("[relay]\nmode = \"send\"\n", &["relay.mode", "line 2"][..]),
            (
                "[relay]\nretry = []\n",
                &["relay.retry", "line 2", "empty retry"][..],
            ),
            (
                "[relay]\nretry = [\"soon\"]\n",
                &["relay.retry", "line 2", "not a duration"][..],
            ),
            (
                "[relay]\nresolver = \"dns\"\n",
                &["relay.resolver", "line 2"][..],
            ),
            (
                "[relay]\nmax_concurrency = 0\n",
                &["relay.max_concurrency"][..],
            ),
            (
                "[relay]\nsmarthost_user = \"u\"\n",
                &["relay.smarthost_password"][..],
            ),
            ("[relay]\nretries = [\"1m\"]\n", &["retries", "line 2"][..]),
        ] {
            let e = format!("{:#}", parse(text).expect_err(text));
            for want in wants {
                assert!(e.contains(want), "{text:?}: {want:?} not in {e}");
            }
        }
    }

    #[test]
    fn embedded_defaults_match_design() {
        let c = Config::embedded();
        assert_eq!(c.hostname, "mail.example.test");
        assert_eq!(c.domains, vec!["example.test".to_owned()]);
        assert_eq!(c.data_dir, Path::new("./popgate-data"));
        assert_eq!(c.users_file, Path::new("./popgate-data/users"));
        assert_eq!(c.aliases_file, Path::new("./popgate-data/aliases"));
        assert_eq!(c.listen, Listen::embedded());
        assert_eq!(c.listen.smtp, local(2525));
        assert_eq!(c.listen.submission, local(2587));
        assert_eq!(c.listen.smtps, local(2465));
        assert_eq!(c.listen.pop3, local(2110));
        assert_eq!(c.listen.pop3s, local(2995));
        assert_eq!(c.listen.http, local(8025));
        assert_eq!(c.grant.core(), GrantConfig::default());
        assert_eq!(c.grant.store, "memory");
        assert!(!c.grant.require_tls);
        assert_eq!(
            c.pop3,
            Pop3Settings {
                plaintext_auth: true,
                apop: false,
                lock_stale: Duration::from_secs(120),
                maildrop_lock: None,
            }
        );
        assert_eq!(c.grant.store_timeout, Duration::from_millis(500));
        assert_eq!(c.grant.node, "");
        assert_eq!(c.tls, None);
        assert_eq!(c.relay, RelaySettings::default());
        assert_eq!(c.relay_policy(Protocol::Smtp), RelayPolicy::smtp_default());
        assert_eq!(
            c.relay_policy(Protocol::Submission),
            RelayPolicy::submission_default()
        );
        assert_eq!(
            c.relay_policy(Protocol::Smtps),
            RelayPolicy::submission_default()
        );
        assert_eq!(c.relay_policy(Protocol::Pop3), RelayPolicy::default());
        assert_eq!(c.limits.max_message_size, 10_240_000);
        assert_eq!(c.limits.max_recipients, 1000);
        assert_eq!(c.limits.smtp_idle_timeout, Duration::from_secs(300));
        assert_eq!(c.limits.pop3_idle_timeout, Duration::from_secs(600));
        assert_eq!(c.limits.max_connections, 1000);
        assert_eq!(c.limits.max_connections_per_address, 50);
        assert_eq!(c.limits.smtp_line_length, 2048);
        assert_eq!(c.limits.smtp_text_line_length, 2048);
        assert_eq!(c.limits.pop3_line_length, 1024);
        assert_eq!(c.limits.min_data_rate, 500);
        assert_eq!(c.server, ServerSettings::default());
        assert!(c.listen.proxy.is_empty() && c.listen.proxy_from.is_empty());
        assert_eq!(c.log.format, LogFormat::Text);
        assert!(c.log.transcripts);
        assert_eq!(c.source, None);
    }

    #[test]
    fn load_without_file_is_absolute_embedded() {
        let c = Config::load(None).expect("embedded config");
        assert!(c.data_dir.is_absolute());
        assert!(c.data_dir.ends_with("popgate-data"));
        assert_eq!(c.listen, Listen::embedded());
    }

    #[test]
    fn empty_file_is_the_defaults_with_relative_paths_resolved() {
        let c = parse("").expect("empty config");
        assert_eq!(c.data_dir, Path::new("/etc/popgate/popgate-data"));
        assert_eq!(c.users_file, Path::new("/etc/popgate/popgate-data/users"));
        assert_eq!(c.listen, Listen::embedded());
        assert_eq!(
            c.source.as_deref(),
            Some(Path::new("/etc/popgate/popgate.toml"))
        );
    }

    #[test]
    fn full_file() {
        let text = r#"
hostname = "MX.Example.NET."
domains = ["Example.NET.", "example.org", "example.net"]
data_dir = "/var/lib/popgate"

[listen]
smtp = "0.0.0.0:25"
pop3 = "[::]:110"
http = "127.0.0.1:0"

[grant]
ttl = "1h 30m"
max_messages = 5
sliding = false
ipv4_prefix = 24
ipv6_prefix = 56
require_tls = true
deny = ["192.0.2.0/24", "2001:db8::/32"]
max_entries = 10
store = "redis://127.0.0.1:6379/0"
store_timeout = "250ms"
node = "pop-1"

[pop3]
plaintext_auth = false
apop = true
lock_stale = "30s"
maildrop_lock = "file"

[users]
file = "passwd"

[aliases]
file = "/etc/popgate/aliases"

[tls]
cert = "tls/cert.pem"
key = "/etc/ssl/key.pem"

[relay]
smarthost = "smtp.example.net:587"
trusted_networks = ["10.0.0.0/8"]
[relay.transport]
"Partner.test" = "127.0.0.1:2626"
[relay.policy]
smtp = ["trusted", "grant"]
submission = ["auth", "grant"]
smtps = []

[http]
admin_token = "s3cret"
web_root = "web"

[limits]
max_message_size = 1000
max_recipients = 150
smtp_idle_timeout = "30s"
pop3_idle_timeout = "2m"
max_connections = 3

[log]
format = "json"
transcripts = false
"#;
        let c = parse(text).expect("full config");
        assert_eq!(c.hostname, "mx.example.net");
        assert_eq!(c.domains, vec!["example.net", "example.org"]);
        assert_eq!(c.data_dir, Path::new("/var/lib/popgate"));
        assert_eq!(
            c.listen,
            Listen {
                smtp: Some("0.0.0.0:25".parse().expect("addr")),
                pop3: Some("[::]:110".parse().expect("addr")),
                http: Some("127.0.0.1:0".parse().expect("addr")),
                ..Listen::default()
            }
        );
        assert_eq!(
            c.listen.summary(),
            "smtp 0.0.0.0:25, pop3 [::]:110, http 127.0.0.1:0"
        );
        let g = c.grant.core();
        assert_eq!(g.ttl, Duration::from_secs(5400));
        assert_eq!(g.max_messages, Some(5));
        assert!(!g.sliding);
        assert_eq!((g.ipv4_prefix, g.ipv6_prefix), (24, 56));
        assert_eq!(g.deny.len(), 2);
        assert_eq!(g.max_entries, 10);
        assert!(c.grant.require_tls);
        assert_eq!(c.grant.store, "redis://127.0.0.1:6379/0");
        assert_eq!(c.grant.store_timeout, Duration::from_millis(250));
        assert_eq!(c.grant.node, "pop-1");
        assert_eq!(
            c.pop3,
            Pop3Settings {
                plaintext_auth: false,
                apop: true,
                lock_stale: Duration::from_secs(30),
                maildrop_lock: Some(MaildropLockKind::File),
            }
        );
        assert_eq!(c.users_file, Path::new("/var/lib/popgate/passwd"));
        assert_eq!(c.aliases_file, Path::new("/etc/popgate/aliases"));
        assert_eq!(
            c.tls,
            Some(TlsSettings {
                cert: PathBuf::from("/var/lib/popgate/tls/cert.pem"),
                key: PathBuf::from("/etc/ssl/key.pem"),
            })
        );
        assert_eq!(c.relay.smarthost, "smtp.example.net:587");
        assert_eq!(
            c.relay.transport.get("partner.test").map(String::as_str),
            Some("127.0.0.1:2626")
        );
        let p = c.relay_policy(Protocol::Smtp);
        assert!(p.grant && !p.auth);
        assert!(p.trusts("10.1.2.3".parse().expect("ip")));
        let p = c.relay_policy(Protocol::Submission);
        assert!(p.grant && p.auth && p.trusted.is_empty());
        assert_eq!(c.relay_policy(Protocol::Smtps), RelayPolicy::default());
        assert_eq!(c.http.admin_token, "s3cret");
        assert_eq!(c.http.web_root, Some(PathBuf::from("/etc/popgate/web")));
        assert_eq!(c.limits.max_message_size, 1000);
        assert_eq!(c.limits.max_recipients, 150);
        assert_eq!(c.limits.smtp_idle_timeout, Duration::from_secs(30));
        assert_eq!(c.limits.pop3_idle_timeout, Duration::from_secs(120));
        assert_eq!(c.limits.max_connections, 3);
        assert_eq!(c.log.format, LogFormat::Json);
        assert!(!c.log.transcripts);
    }

    #[test]
    fn listen_table_present_starts_only_named_listeners() {
        let c = parse("[listen]\npop3 = \"127.0.0.1:0\"\n").expect("config");
        assert_eq!(
            c.listen,
            Listen {
                pop3: Some("127.0.0.1:0".parse().expect("addr")),
                ..Listen::default()
            }
        );
        let c = parse("[listen]\n").expect("config");
        assert_eq!(c.listen.summary(), "none");
    }

    #[test]
    fn relative_data_dir_is_relative_to_the_config_folder() {
        let c = parse("data_dir = \"state/mail\"\n[users]\nfile = \"db/users\"\n").expect("config");
        assert_eq!(c.data_dir, Path::new("/etc/popgate/state/mail"));
        assert_eq!(c.users_file, Path::new("/etc/popgate/state/mail/db/users"));
    }

    #[test]
    fn errors_name_key_line_and_expectation() {
        // (config text, fragments the message must contain)
        let cases: &[(&str, &[&str])] = &[
            (
                "hostname = \"a\"\n\n[grant]\nttl = \"30m\"\nbogus = 1\n",
                &[
                    "grant.bogus",
                    "line 5",
                    "unknown field `bogus`",
                    "expected one of",
                ],
            ),
            ("colour = \"red\"\n", &["colour", "line 1", "unknown field"]),
            (
                "[listen]\nsmtp = \"127.0.0.1\"\n",
                &["listen.smtp", "line 2", "not a socket address", "ip:port"],
            ),
            (
                "[listen]\nhttp = 8025\n",
                &["listen.http", "line 2", "expected a string"],
            ),
            (
                "[grant]\ndeny = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n",
                &["grant.deny", "line 2", "prefix"],
            ),
            (
                "[grant]\nttl = \"soon\"\n",
                &["grant.ttl", "line 2", "not a duration", "30m"],
            ),
            (
                "\n\ndomains = []\n",
                &[
                    "domains",
                    "line 3",
                    "no local domains",
                    "expected at least one",
                ],
            ),
            (
                "domains = [\"exa mple.test\"]\n",
                &["domains", "line 1", "not a domain name"],
            ),
            (
                "[grant]\nipv4_prefix = 33\n",
                &["grant.ipv4_prefix", "line 2", "0 to 32"],
            ),
            (
                "[grant]\nstore = \"mysql://x\"\n",
                &["grant.store", "line 2", "memory"],
            ),
            (
                "[relay.policy]\nsmtp = [\"grant\", \"everyone\"]\n",
                &[
                    "relay.policy.smtp",
                    "line 2",
                    "unknown variant `everyone`",
                    "`trusted`",
                ],
            ),
            (
                "[relay.transport]\n\"partner.test\" = \"nowhere\"\n",
                &["relay.transport.partner.test", "line 2", "host:port"],
            ),
            (
                "[relay.transport]\n\"bad domain\" = \"127.0.0.1:25\"\n",
                &["relay.transport", "line 2", "not a domain name"],
            ),
            (
                "[log]\nformat = \"xml\"\n",
                &["log.format", "line 2", "`json`"],
            ),
            (
                "[limits]\nsmtp_idle_timeout = \"5 parsecs\"\n",
                &["limits.smtp_idle_timeout", "line 2", "not a duration"],
            ),
            ("[tls]\ncert = \"c.pem\"\n", &["tls", "missing field `key`"]),
            ("[listen\n", &["line 1", "invalid table header"]),
            (
                "[limits]\nmax_connections = 0\n",
                &["limits.max_connections", "at least 1"],
            ),
            (
                "[listen]\nhttp = \"0.0.0.0:8025\"\n",
                &["http.admin_token", "required", "not on loopback"],
            ),
            (
                "[limits]\nmax_recipients = 99\n",
                &["limits.max_recipients", "RFC minimum", "at least 100"],
            ),
            (
                "[limits]\nsmtp_line_length = 100\n",
                &["limits.smtp_line_length", "RFC minimum", "at least 510"],
            ),
            (
                "[limits]\nsmtp_text_line_length = 997\n",
                &["limits.smtp_text_line_length", "at least 998"],
            ),
            (
                "[limits]\npop3_line_length = 100\n",
                &["limits.pop3_line_length", "at least 253"],
            ),
            (
                "[limits]\nmax_connections_per_address = 0\n",
                &["limits.max_connections_per_address", "at least 1"],
            ),
            (
                "[listen]\npop3 = \"127.0.0.1:0\"\nproxy = [\"pop3\"]\n",
                &["listen.proxy_from", "required"],
            ),
            (
                "[listen]\nproxy = [\"http\"]\nproxy_from = [\"10.0.0.5/32\"]\n",
                &["listen.proxy", "line 2", "unknown variant `http`"],
            ),
            (
                "[listen]\nproxy = [\"policy\"]\nproxy_from = [\"10.0.0.5/32\"]\n",
                &["listen.proxy", "mail listeners"],
            ),
            ("[server]\nuser = \"\"\n", &["server.user", "user name"]),
            ("[server]\nuid = 0\n", &["server", "unknown field `uid`"]),
        ];
        for (text, fragments) in cases {
            let err = match parse(text) {
                Ok(c) => panic!("{text:?} should fail, got {c:?}"),
                Err(e) => format!("{e:#}"),
            };
            for f in *fragments {
                assert!(err.contains(f), "{text:?}: {err:?} lacks {f:?}");
            }
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("popgate.toml");
        std::fs::write(&path, "data_dir = \"d\"\nnope = 1\n").expect("write");
        let err = format!("{:#}", Config::load(Some(&path)).expect_err("bad key"));
        assert!(err.contains("popgate.toml"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        let missing = dir.path().join("missing.toml");
        let err = format!("{:#}", Config::load(Some(&missing)).expect_err("missing"));
        assert!(err.contains("cannot read config file"), "{err}");
        std::fs::write(&path, "data_dir = \"d\"\n").expect("write");
        let c = Config::load(Some(&path)).expect("config");
        assert_eq!(c.data_dir, dir.path().join("d"));
    }
}
