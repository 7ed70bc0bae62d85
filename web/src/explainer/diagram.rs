//! The sequence diagram's content: lifelines and the rows drawn between them, from the
//! simulator's outputs. Pure data (tested natively); `view` draws it as SVG.
//!
//! Lifelines, left to right: each client of the scenario, the POP3 server, the grant
//! table, the SMTP server (ports 25 and 587). A wire line is an arrow between its
//! client and its server; consecutive lines in one direction on one connection (a
//! multi-line reply, a message body) are one arrow, so the diagram stays readable and
//! the line panel shows each line. A grant-table call is an arrow from the server to
//! the table, labelled with the question and the answer. An expiry and a clock jump
//! are marks across the diagram.

use super::model::Explainer;
use crate::components::timeline::refusal;
use crate::i18n::{Strings, fill};
use popgate_core::event::EventKind;
use popgate_core::sim::{ConnId, GrantCall, LoginAnswer, ReserveAnswer, ScenarioStep, SimOutput};

/// A lifeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// A client, by its index in the scenario's `clients`.
    Client(usize),
    Pop3,
    Grants,
    Smtp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// Wire lines, client to server or back.
    Wire {
        from_client: bool,
        conn: ConnId,
        /// Every line, for the tooltip.
        lines: Vec<String>,
    },
    /// A question to the grant table and its answer; `call` is a stable name
    /// (`login_created`, `reserve_refused`...), `ok` whether it allowed something.
    Grant { call: &'static str, ok: bool },
    /// A connection opens (`true`) or closes.
    Connection { open: bool, conn: ConnId },
    /// A grant expired (an event with no session: the table's own clock).
    Expired,
    /// The virtual clock jumped.
    Clock,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The step (from 0) that produced it.
    pub step: usize,
    pub from: Lane,
    pub to: Lane,
    pub label: String,
    pub kind: RowKind,
}

/// Lines on an arrow's label before it is cut short.
const LABEL_CHARS: usize = 46;

fn short(text: &str) -> String {
    if text.chars().count() <= LABEL_CHARS {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(LABEL_CHARS - 1).collect();
        s.push('…');
        s
    }
}

/// The words for a grant call (`create`, `lookup`...) in this language.
fn call_words(s: &Strings, name: &str) -> &'static str {
    s.ex_grant_calls
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
        .unwrap_or("")
}

/// The rows of the diagram for everything played so far.
pub fn rows(s: &Strings, e: &Explainer) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let conns = e.connections();
    let lane_of_client = |conn: ConnId| {
        conns
            .iter()
            .find(|c| c.id == Some(conn))
            .map(|c| (Lane::Client(c.client), c.endpoint))
    };
    for (step, outputs) in e.step_outputs().iter().enumerate() {
        if let Some(ScenarioStep::Advance { by_ms, .. }) = e.scenario().steps.get(step) {
            rows.push(Row {
                step,
                from: Lane::Client(0),
                to: Lane::Smtp,
                label: fill(s.ex_advanced, &[("duration", &duration(*by_ms, s))]),
                kind: RowKind::Clock,
            });
        }
        // A connection opens before its greeting, though the event that says so
        // follows the greeting in the output.
        let opens = outputs.iter().filter(|o| {
            matches!(o, SimOutput::Event(ev) if matches!(ev.kind, EventKind::SessionOpened { .. }))
        });
        let rest = outputs.iter().filter(|o| {
            !matches!(o, SimOutput::Event(ev) if matches!(ev.kind, EventKind::SessionOpened { .. }))
        });
        for out in opens.chain(rest) {
            match out {
                SimOutput::Wire {
                    conn,
                    endpoint,
                    from_client,
                    text,
                    ..
                } => {
                    let client = lane_of_client(*conn).map_or(Lane::Client(0), |(l, _)| l);
                    let server = if endpoint.is_pop3() {
                        Lane::Pop3
                    } else {
                        Lane::Smtp
                    };
                    // Continue the previous arrow: same step, connection and direction.
                    if let Some(Row {
                        step: last_step,
                        kind:
                            RowKind::Wire {
                                from_client: f,
                                conn: c,
                                lines,
                            },
                        ..
                    }) = rows.last_mut()
                        && *last_step == step
                        && *f == *from_client
                        && *c == *conn
                    {
                        lines.push(text.clone());
                        continue;
                    }
                    let (from, to) = if *from_client {
                        (client, server)
                    } else {
                        (server, client)
                    };
                    rows.push(Row {
                        step,
                        from,
                        to,
                        label: String::new(),
                        kind: RowKind::Wire {
                            from_client: *from_client,
                            conn: *conn,
                            lines: vec![text.clone()],
                        },
                    });
                }
                SimOutput::GrantCall { conn, call, .. } => {
                    let server = match lane_of_client(*conn) {
                        Some((_, endpoint)) if endpoint.is_pop3() => Lane::Pop3,
                        _ => Lane::Smtp,
                    };
                    let (name, words, answer, ok) = grant_call(s, call);
                    rows.push(Row {
                        step,
                        from: server,
                        to: Lane::Grants,
                        label: format!("{words} → {answer}"),
                        kind: RowKind::Grant { call: name, ok },
                    });
                }
                SimOutput::Event(event) => match &event.kind {
                    EventKind::SessionOpened { .. } | EventKind::SessionClosed { .. } => {
                        let open = matches!(event.kind, EventKind::SessionOpened { .. });
                        let Some(conn) = event
                            .session
                            .and_then(|id| u32::try_from(id.0).ok())
                            .map(ConnId)
                        else {
                            continue;
                        };
                        let Some((client, endpoint)) = lane_of_client(conn) else {
                            continue;
                        };
                        let server = if endpoint.is_pop3() {
                            Lane::Pop3
                        } else {
                            Lane::Smtp
                        };
                        let label = if open {
                            fill(s.ex_connects, &[("endpoint", endpoint_name(endpoint))])
                        } else {
                            s.ex_closes.to_owned()
                        };
                        rows.push(Row {
                            step,
                            from: client,
                            to: server,
                            label,
                            kind: RowKind::Connection { open, conn },
                        });
                    }
                    EventKind::GrantExpired { key } => rows.push(Row {
                        step,
                        from: Lane::Grants,
                        to: Lane::Grants,
                        label: format!("{}: {key}", call_words(s, "expire")),
                        kind: RowKind::Expired,
                    }),
                    _ => {}
                },
            }
        }
    }
    for row in &mut rows {
        if let RowKind::Wire { lines, .. } = &row.kind {
            let first = lines.first().map(String::as_str).unwrap_or("");
            row.label = match lines.len() {
                1 => short(first),
                n => format!("{} (+{})", short(first), n - 1),
            };
        }
    }
    rows
}

/// `(stable name, question, answer, allowed)` for a grant call.
fn grant_call(s: &Strings, call: &GrantCall) -> (&'static str, &'static str, String, bool) {
    match call {
        GrantCall::Login { user, answer } => match answer {
            LoginAnswer::Created { grant } => (
                "login_created",
                call_words(s, "create"),
                format!("{} ({user})", grant.key),
                true,
            ),
            LoginAnswer::Refreshed { grant } => (
                "login_refreshed",
                call_words(s, "refresh"),
                format!("{} ({user})", grant.key),
                true,
            ),
            LoginAnswer::Denied => (
                "login_denied",
                call_words(s, "create"),
                call_words(s, "refuse").to_owned(),
                false,
            ),
        },
        GrantCall::Reserve { answer } => match answer {
            ReserveAnswer::Reserved { key, user } => (
                "reserve_ok",
                call_words(s, "lookup"),
                format!("{} ({key}, {user})", call_words(s, "reserve")),
                true,
            ),
            ReserveAnswer::Refused { reason } => (
                "reserve_refused",
                call_words(s, "lookup"),
                refusal(s, *reason).to_owned(),
                false,
            ),
        },
        GrantCall::Commit { key } => ("commit", call_words(s, "commit"), key.to_string(), true),
        GrantCall::Release { key } => ("release", call_words(s, "release"), key.to_string(), true),
    }
}

/// The port a client connects to, as readers know it.
pub fn endpoint_name(endpoint: popgate_core::sim::Endpoint) -> &'static str {
    use popgate_core::sim::Endpoint;
    match endpoint {
        Endpoint::Pop3 => "POP3 110",
        Endpoint::Pop3s => "POP3S 995",
        Endpoint::Smtp => "SMTP 25",
        Endpoint::Submission => "submission 587",
    }
}

/// A clock jump in words: `30 min`, `90 s`, `2 h`.
/// A clock jump in the largest whole unit, in the reader's language.
pub fn duration(ms: u64, s: &Strings) -> String {
    let secs = ms / 1000;
    let (template, n) = if secs >= 3600 && secs.is_multiple_of(3600) {
        (s.ex_hours, secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        (s.ex_minutes, secs / 60)
    } else if ms.is_multiple_of(1000) {
        (s.ex_seconds, secs)
    } else {
        (s.ex_millis, ms)
    };
    fill(template, &[("n", &n.to_string())])
}
