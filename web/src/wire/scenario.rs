//! Scenario documents (core's format, `"version": 1`) decoded by hand, for the same
//! reason as the frames: serde's derived decoder for the internally tagged
//! `ScenarioStep` buffers every step and was the largest generic code left in the
//! module. Core still defines the format, parses it natively
//! ([`Scenario::from_json`], which the server and the tests use) and validates it; the
//! tests decode every shipped scenario here and compare with core's parse.
//!
//! As core's derive reads it: every object refuses unknown fields
//! (`deny_unknown_fields`), the version is checked before anything else, absent
//! settings take core's defaults, and the result must pass [`Scenario::validate`].

use super::{Fields, flag, number, number32, text, texts};
use popgate_core::sim::Endpoint;
use popgate_core::sim::scenario::{
    ClientSpec, DEFAULT_START, GrantSpec, Scenario, ScenarioConfig, ScenarioStep, Text, UserSpec,
    VERSION, default_domains, default_hostname, shipped,
};
use serde_json::Value;

/// Every shipped scenario, in order (as core's `scenarios()`: a file that does not
/// read is left out, and core's tests make sure none is).
pub fn scenarios() -> Vec<Scenario> {
    shipped().iter().filter_map(|json| decode(json)).collect()
}

/// One scenario document, checked.
pub fn decode(json: &str) -> Option<Scenario> {
    let value: Value = serde_json::from_str(json).ok()?;
    let f = Fields::of(&value)?;
    // The version first: a newer document is refused for its version, whatever else
    // it holds.
    if f.req("version", number32)? != VERSION {
        return None;
    }
    f.only(&[
        "version", "id", "title", "summary", "config", "clients", "steps",
    ])?;
    let scenario = Scenario {
        version: VERSION,
        id: f.text("id")?,
        title: f.req("title", text_pair)?,
        summary: f.req("summary", text_pair)?,
        config: f.req("config", config)?,
        clients: f.req("clients", |v| super::list(v, client))?,
        steps: f.req("steps", |v| super::list(v, step))?,
    };
    scenario.validate().ok()?;
    Some(scenario)
}

fn text_pair(v: &Value) -> Option<Text> {
    let f = Fields::of(v)?;
    f.only(&["en", "ja"])?;
    Some(Text {
        en: f.text("en")?,
        ja: f.text("ja")?,
    })
}

fn config(v: &Value) -> Option<ScenarioConfig> {
    let f = Fields::of(v)?;
    f.only(&["hostname", "domains", "users", "grant", "start_ms"])?;
    Some(ScenarioConfig {
        hostname: f.or_else("hostname", text, default_hostname)?,
        domains: f.or_else("domains", texts, default_domains)?,
        users: f.or_default("users", |v| super::list(v, user))?,
        grant: f.or_default("grant", grant)?,
        start_ms: f.or_else("start_ms", number, || DEFAULT_START.0)?,
    })
}

fn user(v: &Value) -> Option<UserSpec> {
    let f = Fields::of(v)?;
    f.only(&["address", "password"])?;
    Some(UserSpec {
        address: f.text("address")?,
        password: f.text("password")?,
    })
}

/// `#[serde(default)]` on the struct: an absent field keeps `GrantSpec::default()`'s
/// value (for `max_messages` too: absent is the default, `null` is no limit).
fn grant(v: &Value) -> Option<GrantSpec> {
    let f = Fields::of(v)?;
    f.only(&["ttl_ms", "max_messages", "sliding"])?;
    let default = GrantSpec::default();
    Some(GrantSpec {
        ttl_ms: f.or_else("ttl_ms", number, || default.ttl_ms)?,
        max_messages: match f.0.get("max_messages") {
            None => default.max_messages,
            Some(Value::Null) => None,
            Some(v) => Some(number32(v)?),
        },
        sliding: f.or_else("sliding", flag, || default.sliding)?,
    })
}

fn client(v: &Value) -> Option<ClientSpec> {
    let f = Fields::of(v)?;
    f.only(&["name", "address", "label"])?;
    Some(ClientSpec {
        name: f.text("name")?,
        address: f.req("address", |v| v.as_str()?.parse().ok())?,
        label: f.req("label", text_pair)?,
    })
}

fn endpoint(v: &Value) -> Option<Endpoint> {
    Some(match v.as_str()? {
        "pop3" => Endpoint::Pop3,
        "pop3s" => Endpoint::Pop3s,
        "smtp" => Endpoint::Smtp,
        "submission" => Endpoint::Submission,
        _ => return None,
    })
}

/// Internally tagged by `action`.
fn step(v: &Value) -> Option<ScenarioStep> {
    let f = Fields::of(v)?;
    let note = || f.opt("note", text_pair);
    Some(match f.0.get("action")?.as_str()? {
        "connect" => {
            f.only(&["action", "conn", "client", "endpoint", "note"])?;
            ScenarioStep::Connect {
                conn: f.text("conn")?,
                client: f.text("client")?,
                endpoint: f.req("endpoint", endpoint)?,
                note: note()?,
            }
        }
        "send" => {
            f.only(&["action", "conn", "line", "note"])?;
            ScenarioStep::Send {
                conn: f.text("conn")?,
                line: f.text("line")?,
                note: note()?,
            }
        }
        "close" => {
            f.only(&["action", "conn", "note"])?;
            ScenarioStep::Close {
                conn: f.text("conn")?,
                note: note()?,
            }
        }
        "advance" => {
            f.only(&["action", "by_ms", "note"])?;
            ScenarioStep::Advance {
                by_ms: f.req("by_ms", number)?,
                note: note()?,
            }
        }
        "note" => {
            f.only(&["action", "text"])?;
            ScenarioStep::Note {
                text: f.req("text", text_pair)?,
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use popgate_core::sim::scenario::ScenarioError;

    #[test]
    fn every_shipped_scenario_decodes_as_core_parses_it() {
        let ours = scenarios();
        assert_eq!(ours.len(), shipped().len());
        for (json, decoded) in shipped().iter().zip(ours) {
            assert_eq!(Ok(decoded), Scenario::from_json(json));
        }
    }

    /// Every step kind and setting, through core's serialiser; an exhaustive match so
    /// a step kind added in core fails to compile here until it is decoded.
    #[test]
    fn every_step_and_setting_decodes_as_core_wrote_it() {
        let text = |s: &str| Text {
            en: format!("{s} (en)"),
            ja: format!("{s}（ja）"),
        };
        let steps = vec![
            ScenarioStep::Connect {
                conn: "c".into(),
                client: "laptop".into(),
                endpoint: Endpoint::Submission,
                note: Some(text("connect")),
            },
            ScenarioStep::Send {
                conn: "c".into(),
                line: "EHLO laptop\nQUIT".into(),
                note: None,
            },
            ScenarioStep::Close {
                conn: "c".into(),
                note: Some(text("close")),
            },
            ScenarioStep::Advance {
                by_ms: 1_800_001,
                note: None,
            },
            ScenarioStep::Note { text: text("note") },
        ];
        for s in &steps {
            match s {
                ScenarioStep::Connect { .. }
                | ScenarioStep::Send { .. }
                | ScenarioStep::Close { .. }
                | ScenarioStep::Advance { .. }
                | ScenarioStep::Note { .. } => {}
            }
        }
        let endpoints = [
            Endpoint::Pop3,
            Endpoint::Pop3s,
            Endpoint::Smtp,
            Endpoint::Submission,
        ];
        for endpoint in endpoints {
            match endpoint {
                Endpoint::Pop3 | Endpoint::Pop3s | Endpoint::Smtp | Endpoint::Submission => {}
            }
        }
        let mut all_steps = steps;
        all_steps.extend(endpoints.map(|endpoint| ScenarioStep::Connect {
            conn: format!("{endpoint:?}"),
            client: "laptop".into(),
            endpoint,
            note: None,
        }));
        let scenario = Scenario {
            version: VERSION,
            id: "every-step".into(),
            title: text("title"),
            summary: text("summary"),
            config: ScenarioConfig {
                hostname: "mx.example.net".into(),
                domains: vec!["example.net".into(), "example.org".into()],
                users: vec![UserSpec {
                    address: "taro@example.net".into(),
                    password: "p".into(),
                }],
                grant: GrantSpec {
                    ttl_ms: 60_000,
                    max_messages: Some(2),
                    sliding: false,
                },
                start_ms: 7,
            },
            clients: vec![ClientSpec {
                name: "laptop".into(),
                address: "2001:db8::7".parse().expect("address"),
                label: text("laptop"),
            }],
            steps: all_steps,
        };
        let json = scenario.to_json().expect("serialise");
        assert_eq!(decode(&json), Some(scenario), "{json}");
    }

    /// Documents written by hand: defaults, and what core refuses.
    #[test]
    fn defaults_and_refusals_match_core() {
        let doc = |config: &str, steps: &str| {
            format!(
                r#"{{"version":1,"id":"x","title":{{"en":"t","ja":"t"}},"summary":{{"en":"s","ja":"s"}},
                    "config":{config},"clients":[{{"name":"a","address":"192.0.2.1","label":{{"en":"a","ja":"a"}}}}],
                    "steps":{steps}}}"#
            )
        };
        let readable = [
            doc("{}", "[]"),
            doc(r#"{"grant":{}}"#, "[]"),
            doc(r#"{"grant":{"max_messages":null}}"#, "[]"),
            doc(
                r#"{"grant":{"ttl_ms":5}}"#,
                r#"[{"action":"note","text":{"en":"n","ja":"n"}}]"#,
            ),
            doc(
                "{}",
                r#"[{"action":"connect","conn":"c","client":"a","endpoint":"smtp","note":null},
                    {"action":"advance","by_ms":3}]"#,
            ),
        ];
        for json in &readable {
            let core = Scenario::from_json(json).expect("core reads it");
            assert_eq!(decode(json), Some(core), "{json}");
        }
        let refused = [
            // Not JSON, another version (whatever else is wrong), an unknown field at
            // each level, a step kind core does not know.
            "nope".to_owned(),
            r#"{"version":2,"junk":true}"#.to_owned(),
            doc(r#"{"colour":"red"}"#, "[]"),
            doc(r#"{"grant":{"ttl":5}}"#, "[]"),
            doc("{}", r#"[{"action":"advance","by_ms":3,"speed":2}]"#),
            doc("{}", r#"[{"action":"sleep","by_ms":3}]"#),
            doc("{}", r#"[{"by_ms":3}]"#),
            // Ill-typed values.
            doc(r#"{"start_ms":-1}"#, "[]"),
            doc(
                "{}",
                r#"[{"action":"connect","conn":"c","client":"a","endpoint":"imap"}]"#,
            ),
            // What validation refuses: a connection used before it is opened.
            doc("{}", r#"[{"action":"send","conn":"c","line":"QUIT"}]"#),
        ];
        for json in &refused {
            assert!(
                matches!(
                    Scenario::from_json(json),
                    Err(ScenarioError::Json(_)
                        | ScenarioError::Version(_)
                        | ScenarioError::UnknownConn { .. })
                ),
                "core reads {json}"
            );
            assert_eq!(decode(json), None, "{json}");
        }
    }
}
