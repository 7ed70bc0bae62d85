//! Scenarios as data: who connects where, what they type, when the clock jumps, and
//! what to tell the reader, in English and Japanese.
//!
//! A scenario is one JSON document (`"version": 1`). The ones the explainer ships
//! live in the crate's `scenarios/` folder and are embedded in the binary, so the
//! WebAssembly module needs no request to find them. The live dashboard can write a
//! recorded session in the same format ([`Scenario::to_json`]).
//!
//! ```json
//! {
//!   "version": 1,
//!   "id": "pop-then-relay",
//!   "title": { "en": "...", "ja": "..." },
//!   "summary": { "en": "...", "ja": "..." },
//!   "config": { "users": [{ "address": "taro@example.test", "password": "..." }],
//!               "grant": { "ttl_ms": 1800000, "max_messages": null, "sliding": true } },
//!   "clients": [{ "name": "laptop", "address": "198.51.100.23", "label": { ... } }],
//!   "steps": [
//!     { "action": "connect", "conn": "pop", "client": "laptop", "endpoint": "pop3",
//!       "note": { "en": "...", "ja": "..." } },
//!     { "action": "send", "conn": "pop", "line": "USER taro@example.test" },
//!     { "action": "advance", "by_ms": 1800000 },
//!     { "action": "note", "text": { "en": "...", "ja": "..." } }
//!   ]
//! }
//! ```
//!
//! Parsing never panics: [`Scenario::from_json`] returns what is wrong, and a test
//! parses every shipped file.

use super::{Endpoint, SimConfig};
use crate::grant::GrantConfig;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// The format version this code reads and writes.
pub const VERSION: u32 = 1;

/// Where a scenario's clock starts unless it says otherwise: 2026-04-01 09:00:00 UTC,
/// a plausible working morning, so dates in headers look real.
pub const DEFAULT_START: Millis = Millis(1_775_034_000_000);

/// The scenarios shipped with the explainer, in the order it lists them.
const SHIPPED: [&str; 8] = [
    include_str!("../../scenarios/01-relay-denied.json"),
    include_str!("../../scenarios/02-pop-then-relay.json"),
    include_str!("../../scenarios/03-grant-expires.json"),
    include_str!("../../scenarios/04-message-limit.json"),
    include_str!("../../scenarios/05-failed-login.json"),
    include_str!("../../scenarios/06-shared-nat.json"),
    include_str!("../../scenarios/07-submission-auth.json"),
    include_str!("../../scenarios/08-free-play.json"),
];

/// The raw JSON of every shipped scenario, in order.
pub fn shipped() -> &'static [&'static str] {
    &SHIPPED
}

/// Every shipped scenario, in order. A file that fails to parse is left out (the
/// tests make sure none does).
pub fn scenarios() -> Vec<Scenario> {
    SHIPPED
        .iter()
        .filter_map(|json| Scenario::from_json(json).ok())
        .collect()
}

/// The shipped scenario with this id.
pub fn scenario(id: &str) -> Option<Scenario> {
    scenarios().into_iter().find(|s| s.id == id)
}

/// Text for the reader, in every language the explainer speaks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub en: String,
    pub ja: String,
}

impl Text {
    /// The text in `lang` (`"ja"`, `"ja-JP"` ...), English otherwise.
    pub fn get(&self, lang: &str) -> &str {
        if lang.get(..2).is_some_and(|l| l.eq_ignore_ascii_case("ja")) {
            &self.ja
        } else {
            &self.en
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub version: u32,
    /// Stable, URL-safe: deep links name a scenario by it.
    pub id: String,
    pub title: Text,
    pub summary: Text,
    pub config: ScenarioConfig,
    pub clients: Vec<ClientSpec>,
    pub steps: Vec<ScenarioStep>,
}

/// The simulated server's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioConfig {
    #[serde(default = "default_hostname")]
    pub hostname: String,
    #[serde(default = "default_domains")]
    pub domains: Vec<String>,
    #[serde(default)]
    pub users: Vec<UserSpec>,
    #[serde(default)]
    pub grant: GrantSpec,
    /// The virtual clock at the start, milliseconds since the Unix epoch.
    #[serde(default = "default_start")]
    pub start_ms: u64,
}

/// `config.hostname` when a document has none.
pub fn default_hostname() -> String {
    "mail.example.test".to_owned()
}

/// `config.domains` when a document has none.
pub fn default_domains() -> Vec<String> {
    vec!["example.test".to_owned()]
}

fn default_start() -> u64 {
    DEFAULT_START.0
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub address: String,
    pub password: String,
}

/// The `[grant]` settings a scenario may change; the rest are the server's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantSpec {
    pub ttl_ms: u64,
    /// `None`: no count limit.
    pub max_messages: Option<u32>,
    pub sliding: bool,
}

impl Default for GrantSpec {
    fn default() -> GrantSpec {
        let defaults = GrantConfig::default();
        GrantSpec {
            ttl_ms: u64::try_from(defaults.ttl.as_millis()).unwrap_or(u64::MAX),
            max_messages: defaults.max_messages,
            sliding: defaults.sliding,
        }
    }
}

impl ScenarioConfig {
    pub fn sim_config(&self) -> SimConfig {
        SimConfig {
            hostname: self.hostname.clone(),
            domains: self.domains.clone(),
            users: self
                .users
                .iter()
                .map(|u| (u.address.clone(), u.password.clone()))
                .collect(),
            grant: GrantConfig {
                ttl: Duration::from_millis(self.grant.ttl_ms),
                max_messages: self.grant.max_messages.filter(|&n| n > 0),
                sliding: self.grant.sliding,
                ..GrantConfig::default()
            },
            start: Millis(self.start_ms),
        }
    }
}

/// A scripted client: a host with an address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// What steps call it.
    pub name: String,
    pub address: IpAddr,
    /// What the reader sees, e.g. "Taro's laptop".
    pub label: Text,
}

/// One step of a scenario. Every step but `Note` may carry a `note` telling the reader
/// what is about to happen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScenarioStep {
    /// The client opens connection `conn` (a name later steps use) to `endpoint`.
    Connect {
        conn: String,
        client: String,
        endpoint: Endpoint,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<Text>,
    },
    /// The client sends `line` with CRLF. A `line` holding `\n` is several lines sent
    /// at once (a message body, or pipelined commands), each ended with CRLF.
    Send {
        conn: String,
        line: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<Text>,
    },
    /// The client drops the connection without a goodbye.
    Close {
        conn: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<Text>,
    },
    /// The virtual clock jumps ahead.
    Advance {
        by_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<Text>,
    },
    /// Only an explanation; nothing happens.
    Note { text: Text },
}

impl ScenarioStep {
    /// What to tell the reader at this step.
    pub fn note(&self) -> Option<&Text> {
        match self {
            ScenarioStep::Connect { note, .. }
            | ScenarioStep::Send { note, .. }
            | ScenarioStep::Close { note, .. }
            | ScenarioStep::Advance { note, .. } => note.as_ref(),
            ScenarioStep::Note { text } => Some(text),
        }
    }

    /// The connection the step acts on.
    pub fn conn(&self) -> Option<&str> {
        match self {
            ScenarioStep::Connect { conn, .. }
            | ScenarioStep::Send { conn, .. }
            | ScenarioStep::Close { conn, .. } => Some(conn),
            ScenarioStep::Advance { .. } | ScenarioStep::Note { .. } => None,
        }
    }

    /// The bytes a `Send` step puts on the wire.
    pub fn wire_bytes(line: &str) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        for part in line.split('\n') {
            bytes.extend_from_slice(part.strip_suffix('\r').unwrap_or(part).as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        bytes
    }
}

/// What is wrong with a scenario document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScenarioError {
    /// Not valid JSON, or not the shape of a scenario.
    Json(String),
    /// A version this code does not read.
    Version(u32),
    /// Two clients share a name.
    DuplicateClient(String),
    /// A step names a client that is not in `clients`.
    UnknownClient { step: usize, client: String },
    /// A step uses a connection no earlier step opened.
    UnknownConn { step: usize, conn: String },
    /// A connect step reuses a connection name.
    DuplicateConn { step: usize, conn: String },
    /// Text for the reader is missing in a language (`what` says where).
    MissingText { what: String },
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScenarioError::Json(e) => write!(f, "not a scenario: {e}"),
            ScenarioError::Version(v) => {
                write!(
                    f,
                    "scenario version {v} is not supported (expected {VERSION})"
                )
            }
            ScenarioError::DuplicateClient(name) => write!(f, "client {name:?} is defined twice"),
            ScenarioError::UnknownClient { step, client } => {
                write!(f, "step {step}: no client named {client:?}")
            }
            ScenarioError::UnknownConn { step, conn } => {
                write!(f, "step {step}: connection {conn:?} was never opened")
            }
            ScenarioError::DuplicateConn { step, conn } => {
                write!(f, "step {step}: connection {conn:?} is already open")
            }
            ScenarioError::MissingText { what } => {
                write!(f, "{what} needs text in both English and Japanese")
            }
        }
    }
}

impl std::error::Error for ScenarioError {}

impl Scenario {
    /// Parse and check a scenario document.
    pub fn from_json(json: &str) -> Result<Scenario, ScenarioError> {
        // The version first, so a newer document says so rather than failing on a
        // field this code does not know.
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let versioned: Versioned =
            serde_json::from_str(json).map_err(|e| ScenarioError::Json(e.to_string()))?;
        if versioned.version != VERSION {
            return Err(ScenarioError::Version(versioned.version));
        }
        let scenario: Scenario =
            serde_json::from_str(json).map_err(|e| ScenarioError::Json(e.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// The document, pretty-printed.
    pub fn to_json(&self) -> Result<String, ScenarioError> {
        serde_json::to_string_pretty(self).map_err(|e| ScenarioError::Json(e.to_string()))
    }

    /// Every name a step uses is defined first, and every text has both languages.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.version != VERSION {
            return Err(ScenarioError::Version(self.version));
        }
        check_text(&self.title, "title")?;
        check_text(&self.summary, "summary")?;
        for client in &self.clients {
            check_text(&client.label, &format!("client {:?}", client.name))?;
        }
        for (step, s) in self.steps.iter().enumerate() {
            if let Some(note) = s.note() {
                check_text(note, &format!("step {step}"))?;
            }
        }
        self.check_names()
    }

    /// Every client is named once, and every step names a client that exists and a
    /// connection an earlier step opened (a step the reader adds in free play is
    /// checked with this alone: it carries no text to translate).
    pub fn check_names(&self) -> Result<(), ScenarioError> {
        let mut clients = BTreeSet::new();
        for client in &self.clients {
            if !clients.insert(client.name.as_str()) {
                return Err(ScenarioError::DuplicateClient(client.name.clone()));
            }
        }
        let mut conns = BTreeSet::new();
        for (step, s) in self.steps.iter().enumerate() {
            match s {
                ScenarioStep::Connect { conn, client, .. } => {
                    if !clients.contains(client.as_str()) {
                        return Err(ScenarioError::UnknownClient {
                            step,
                            client: client.clone(),
                        });
                    }
                    if !conns.insert(conn.as_str()) {
                        return Err(ScenarioError::DuplicateConn {
                            step,
                            conn: conn.clone(),
                        });
                    }
                }
                ScenarioStep::Send { conn, .. } | ScenarioStep::Close { conn, .. } => {
                    if !conns.contains(conn.as_str()) {
                        return Err(ScenarioError::UnknownConn {
                            step,
                            conn: conn.clone(),
                        });
                    }
                }
                ScenarioStep::Advance { .. } | ScenarioStep::Note { .. } => {}
            }
        }
        Ok(())
    }

    /// The client a connection name belongs to, as the scenario's steps open it.
    pub fn client_of(&self, conn: &str) -> Option<&ClientSpec> {
        self.steps.iter().find_map(|s| match s {
            ScenarioStep::Connect {
                conn: c, client, ..
            } if c == conn => self.clients.iter().find(|spec| &spec.name == client),
            _ => None,
        })
    }
}

fn check_text(text: &Text, what: &str) -> Result<(), ScenarioError> {
    if text.en.trim().is_empty() || text.ja.trim().is_empty() {
        return Err(ScenarioError::MissingText {
            what: what.to_owned(),
        });
    }
    Ok(())
}
