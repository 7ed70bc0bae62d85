//! Transcript tests: a session driven by a small in-test backend, read as `C:`/`S:`
//! exchanges.

use super::*;
use crate::event::{CloseReason, Event, EventKind, Protocol, SessionId};
use crate::testing::test;
use crate::time::Millis;
use std::sync::Arc;

const PASSWORD: &str = "correct horse";
const START: Millis = Millis(1_000_000);

/// Sizes below are of the CRLF form: 45, 67 and 39 octets, 151 in all.
fn maildrop() -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "1001.a".into(),
            b"From: a@example.test\r\nSubject: one\r\n\r\nHello\r\n".to_vec(),
        ),
        // Bare LF line ends, lines that start with a dot, no final line end.
        (
            "1002.b".into(),
            b"From: b@example.test\nSubject: two\n\nline1\n.dotted\n..two\nlast".to_vec(),
        ),
        (
            "1003.c".into(),
            b"Subject: three\n\nbody1\nbody2\nbody3\n".to_vec(),
        ),
    ]
}

/// What a real backend would do, in memory.
struct Backend {
    /// (login name, password, canonical address)
    users: Vec<(&'static str, &'static str, &'static str)>,
    messages: Vec<(String, Vec<u8>)>,
    locked_elsewhere: bool,
    /// Removed by "another program" after the snapshot.
    gone: Vec<String>,
    read_fails: bool,
    update_fails: bool,
    auth_tempfail: bool,
}

impl Backend {
    fn new() -> Backend {
        Backend {
            users: vec![
                ("alice", PASSWORD, "alice@example.test"),
                ("bob@example.test", "bobs secret", "bob@example.test"),
            ],
            messages: maildrop(),
            locked_elsewhere: false,
            gone: Vec::new(),
            read_fails: false,
            update_fails: false,
            auth_tempfail: false,
        }
    }

    fn perform(&mut self, effect: &Pop3Effect) -> Option<Pop3Result> {
        Some(match effect {
            Pop3Effect::Authenticate { user, password } => {
                if self.auth_tempfail {
                    Pop3Result::Auth(AuthResult::TempFail)
                } else {
                    let found = self
                        .users
                        .iter()
                        .find(|(login, pw, _)| login == user && *pw == password.expose());
                    Pop3Result::Auth(match found {
                        Some((_, _, canonical)) => AuthResult::Ok {
                            user: (*canonical).to_owned(),
                        },
                        None => AuthResult::Failed,
                    })
                }
            }
            Pop3Effect::Grant { .. } => Pop3Result::GrantDone,
            Pop3Effect::OpenMaildrop { .. } => Pop3Result::Maildrop(if self.locked_elsewhere {
                MaildropResult::InUse
            } else {
                MaildropResult::Opened(
                    self.messages
                        .iter()
                        .map(|(uid, content)| MessageMeta {
                            uid: uid.clone(),
                            size: crlf_len(content),
                        })
                        .collect(),
                )
            }),
            Pop3Effect::Retrieve { uid } => Pop3Result::Message(if self.read_fails {
                MessageResult::Failed
            } else if self.gone.contains(uid) {
                MessageResult::Gone
            } else {
                match self.messages.iter().find(|(u, _)| u == uid) {
                    Some((_, content)) => MessageResult::Content(content.clone()),
                    None => MessageResult::Gone,
                }
            }),
            Pop3Effect::Update { delete, .. } => {
                if self.update_fails {
                    Pop3Result::Updated { ok: false }
                } else {
                    self.messages.retain(|(uid, _)| !delete.contains(uid));
                    Pop3Result::Updated { ok: true }
                }
            }
            Pop3Effect::CloseMaildrop { .. } => return None,
        })
    }
}

/// One thing the driver saw, in order: so tests can check that a grant was stored
/// before the reply went out.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Effect(Pop3Effect),
    Sent(String),
}

/// The driving loop of `Pop3Session`'s doc, with the backend above.
struct Harness {
    session: Pop3Session,
    backend: Backend,
    now: Millis,
    steps: Vec<Step>,
    events: Vec<Event>,
}

fn addr(s: &str) -> std::net::SocketAddr {
    s.parse().expect("test address")
}

impl Harness {
    fn new() -> Harness {
        Harness::with(Pop3Config::default(), "192.0.2.10:40000", false)
    }

    fn with(config: Pop3Config, peer: &str, tls: bool) -> Harness {
        let session = Pop3Session::new(
            Arc::new(config),
            SessionId(7),
            Protocol::Pop3,
            addr(peer),
            addr("192.0.2.1:110"),
            tls,
            START,
        );
        let mut h = Harness {
            session,
            backend: Backend::new(),
            now: START,
            steps: Vec::new(),
            events: Vec::new(),
        };
        assert_eq!(h.pump(), "+OK popgate ready\r\n");
        h
    }

    /// Drain transmit and events, perform effects and feed results, until quiet.
    fn pump(&mut self) -> String {
        let mut out = Vec::new();
        loop {
            while let Some(bytes) = self.session.poll_transmit() {
                self.steps
                    .push(Step::Sent(String::from_utf8_lossy(&bytes).into_owned()));
                out.extend_from_slice(&bytes);
            }
            while let Some(event) = self.session.poll_event() {
                self.events.push(event);
            }
            match self.session.poll_effect() {
                Some(effect) => {
                    let result = self.backend.perform(&effect);
                    assert_eq!(result.is_some(), effect.expects_result(), "{effect:?}");
                    self.steps.push(Step::Effect(effect));
                    if let Some(result) = result {
                        self.session.handle_result(self.now, result);
                    }
                }
                None => break,
            }
        }
        String::from_utf8(out).expect("replies are UTF-8")
    }

    /// C: `input` / S: the returned text.
    fn send(&mut self, input: &str) -> String {
        self.send_bytes(input.as_bytes())
    }

    fn send_bytes(&mut self, input: &[u8]) -> String {
        assert!(self.session.wants_input(), "session does not want input");
        self.session.handle_input(self.now, input);
        self.pump()
    }

    fn login(&mut self) {
        assert_eq!(self.send("USER alice\r\n"), "+OK send PASS\r\n");
        assert_eq!(
            self.send(&format!("PASS {PASSWORD}\r\n")),
            "+OK maildrop has 3 messages (151 octets)\r\n"
        );
        assert_eq!(self.session.state(), Pop3State::Transaction);
        assert_eq!(self.session.user(), Some("alice@example.test"));
    }

    fn effects(&self) -> Vec<Pop3Effect> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Effect(e) => Some(e.clone()),
                Step::Sent(_) => None,
            })
            .collect()
    }

    fn kinds(&self) -> Vec<EventKind> {
        self.events.iter().map(|e| e.kind.clone()).collect()
    }

    fn has_grant(&self) -> bool {
        self.effects()
            .iter()
            .any(|e| matches!(e, Pop3Effect::Grant { .. }))
    }
}

fn alice() -> String {
    "alice@example.test".to_owned()
}

#[test]
fn login_and_read_the_maildrop() {
    let mut h = Harness::new();
    assert_eq!(
        h.send("CAPA\r\n"),
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nRESP-CODES\r\n\
         AUTH-RESP-CODE\r\nPIPELINING\r\nIMPLEMENTATION popgate\r\n.\r\n"
    );
    h.login();
    assert_eq!(h.send("STAT\r\n"), "+OK 3 151\r\n");
    assert_eq!(
        h.send("LIST\r\n"),
        "+OK 3 messages (151 octets)\r\n1 45\r\n2 67\r\n3 39\r\n.\r\n"
    );
    assert_eq!(h.send("LIST 2\r\n"), "+OK 2 67\r\n");
    assert_eq!(
        h.send("UIDL\r\n"),
        "+OK unique-id listing follows\r\n1 1001.a\r\n2 1002.b\r\n3 1003.c\r\n.\r\n"
    );
    assert_eq!(h.send("uidl 3\r\n"), "+OK 3 1003.c\r\n");
    // Bare LF becomes CRLF, dots are stuffed, the last line gets its CRLF.
    assert_eq!(
        h.send("RETR 2\r\n"),
        "+OK 67 octets\r\nFrom: b@example.test\r\nSubject: two\r\n\r\nline1\r\n\
         ..dotted\r\n...two\r\nlast\r\n.\r\n"
    );
    assert_eq!(
        h.send("RETR 1\r\n"),
        "+OK 45 octets\r\nFrom: a@example.test\r\nSubject: one\r\n\r\nHello\r\n.\r\n"
    );
    assert_eq!(
        h.send("TOP 3 1\r\n"),
        "+OK top of message follows\r\nSubject: three\r\n\r\nbody1\r\n.\r\n"
    );
    assert_eq!(
        h.send("TOP 2 0\r\n"),
        "+OK top of message follows\r\nFrom: b@example.test\r\nSubject: two\r\n\r\n.\r\n"
    );
    // CAPA is valid in TRANSACTION too, with the same list (RFC 2449 §5).
    assert!(h.send("CAPA\r\n").contains("\r\nUSER\r\n"));
    assert_eq!(h.send("NOOP\r\n"), "+OK nothing to do\r\n");
    assert_eq!(
        h.send("QUIT\r\n"),
        "+OK popgate signing off (3 messages left)\r\n"
    );
    assert!(h.session.is_closed());
    assert_eq!(h.session.state(), Pop3State::Closed);
    assert_eq!(
        h.effects(),
        vec![
            Pop3Effect::Authenticate {
                user: "alice".into(),
                password: crate::Secret::new(PASSWORD),
            },
            Pop3Effect::Grant { user: alice() },
            Pop3Effect::OpenMaildrop { user: alice() },
            Pop3Effect::Retrieve {
                uid: "1002.b".into()
            },
            Pop3Effect::Retrieve {
                uid: "1001.a".into()
            },
            Pop3Effect::Retrieve {
                uid: "1003.c".into()
            },
            Pop3Effect::Retrieve {
                uid: "1002.b".into()
            },
            Pop3Effect::Update {
                user: alice(),
                delete: vec![]
            },
            Pop3Effect::CloseMaildrop { user: alice() },
        ]
    );
    let kinds = h.kinds();
    assert_eq!(
        kinds.first(),
        Some(&EventKind::SessionOpened {
            protocol: Protocol::Pop3,
            peer: "192.0.2.10:40000".into(),
            local: "192.0.2.1:110".into(),
            tls: false,
        })
    );
    assert_eq!(
        kinds.last(),
        Some(&EventKind::SessionClosed {
            reason: CloseReason::Quit
        })
    );
    assert!(kinds.contains(&EventKind::AuthSucceeded {
        user: alice(),
        mechanism: "USER".into()
    }));
    assert!(kinds.contains(&EventKind::MaildropOpened {
        user: alice(),
        messages: 3,
        octets: 151
    }));
    assert!(kinds.contains(&EventKind::ClientLine {
        line: "PASS ****".into()
    }));
    // Multi-line replies appear once, as their status line.
    assert!(kinds.contains(&EventKind::ServerLine {
        line: "+OK 3 messages (151 octets)".into()
    }));
    assert!(!kinds.contains(&EventKind::ServerLine {
        line: "1 45".into()
    }));
    assert!(
        h.events
            .iter()
            .all(|e| e.session == Some(SessionId(7)) && e.seq == 0)
    );
}

#[test]
fn dele_hides_and_rset_restores() {
    let mut h = Harness::new();
    h.login();
    assert_eq!(h.send("DELE 2\r\n"), "+OK message 2 deleted\r\n");
    assert_eq!(h.send("STAT\r\n"), "+OK 2 84\r\n");
    assert_eq!(
        h.send("LIST\r\n"),
        "+OK 2 messages (84 octets)\r\n1 45\r\n3 39\r\n.\r\n"
    );
    assert_eq!(
        h.send("UIDL\r\n"),
        "+OK unique-id listing follows\r\n1 1001.a\r\n3 1003.c\r\n.\r\n"
    );
    let deleted = "-ERR Message already deleted\r\n";
    assert_eq!(h.send("LIST 2\r\n"), deleted);
    assert_eq!(h.send("UIDL 2\r\n"), deleted);
    assert_eq!(h.send("RETR 2\r\n"), deleted);
    assert_eq!(h.send("TOP 2 1\r\n"), deleted);
    assert_eq!(h.send("DELE 2\r\n"), deleted);
    // Messages keep their numbers (RFC 1939 §5).
    assert_eq!(h.send("LIST 3\r\n"), "+OK 3 39\r\n");
    assert_eq!(
        h.send("RSET\r\n"),
        "+OK maildrop has 3 messages (151 octets)\r\n"
    );
    assert_eq!(h.send("STAT\r\n"), "+OK 3 151\r\n");
    assert_eq!(h.send("LIST 2\r\n"), "+OK 2 67\r\n");
    assert!(
        !h.effects()
            .iter()
            .any(|e| matches!(e, Pop3Effect::Retrieve { .. }))
    );
}

#[test]
fn quit_removes_exactly_the_marked_messages() {
    let mut h = Harness::new();
    h.login();
    h.send("DELE 1\r\n");
    h.send("DELE 3\r\n");
    assert_eq!(
        h.send("QUIT\r\n"),
        "+OK popgate signing off (1 messages left)\r\n"
    );
    let effects = h.effects();
    assert_eq!(
        effects[effects.len() - 2..],
        [
            Pop3Effect::Update {
                user: alice(),
                delete: vec!["1001.a".into(), "1003.c".into()]
            },
            Pop3Effect::CloseMaildrop { user: alice() },
        ]
    );
    let left: Vec<&str> = h.backend.messages.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(left, ["1002.b"]);
    assert!(h.kinds().contains(&EventKind::MessagesRemoved {
        user: alice(),
        count: 2
    }));
    assert_eq!(h.session.poll_timeout(), None);
    assert!(!h.session.wants_input());
}

#[test]
fn a_failed_update_says_so_and_still_unlocks() {
    let mut h = Harness::new();
    h.login();
    h.backend.update_fails = true;
    h.send("DELE 1\r\n");
    assert_eq!(
        h.send("QUIT\r\n"),
        "-ERR [SYS/TEMP] some deleted messages not removed\r\n"
    );
    assert!(h.session.is_closed());
    assert_eq!(
        h.effects().last(),
        Some(&Pop3Effect::CloseMaildrop { user: alice() })
    );
    assert!(
        !h.kinds()
            .iter()
            .any(|k| matches!(k, EventKind::MessagesRemoved { .. }))
    );
}

#[test]
fn a_dropped_connection_removes_nothing() {
    let mut h = Harness::new();
    h.login();
    h.send("DELE 1\r\n");
    h.session.handle_disconnect(h.now);
    assert_eq!(h.pump(), "");
    assert!(h.session.is_closed());
    assert!(
        !h.effects()
            .iter()
            .any(|e| matches!(e, Pop3Effect::Update { .. }))
    );
    assert_eq!(
        h.effects().last(),
        Some(&Pop3Effect::CloseMaildrop { user: alice() })
    );
    assert_eq!(h.backend.messages.len(), 3);
    assert_eq!(
        h.kinds().last(),
        Some(&EventKind::SessionClosed {
            reason: CloseReason::PeerClosed
        })
    );
    // Nothing more happens after the end.
    h.session.handle_disconnect(h.now);
    h.session.handle_input(h.now, b"QUIT\r\n");
    h.session.handle_timeout(Millis(u64::MAX));
    h.session.handle_shutdown(h.now);
    assert_eq!(h.pump(), "");
    assert_eq!(
        h.events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::SessionClosed { .. }))
            .count(),
        1
    );
}

#[test]
fn a_drop_before_login_unlocks_nothing() {
    let mut h = Harness::new();
    h.send("USER alice\r\n");
    h.session.handle_disconnect(h.now);
    h.pump();
    assert!(h.effects().is_empty());
}

#[test]
fn in_use_still_grants_before_replying() {
    let mut h = Harness::new();
    h.backend.locked_elsewhere = true;
    h.send("USER alice\r\n");
    h.steps.clear();
    assert_eq!(
        h.send(&format!("PASS {PASSWORD}\r\n")),
        "-ERR [IN-USE] Maildrop is locked by another session\r\n"
    );
    // The grant was stored before anything was said.
    assert_eq!(
        h.steps[1..],
        [
            Step::Effect(Pop3Effect::Grant { user: alice() }),
            Step::Effect(Pop3Effect::OpenMaildrop { user: alice() }),
            Step::Sent("-ERR [IN-USE] Maildrop is locked by another session\r\n".into()),
        ]
    );
    assert_eq!(h.session.state(), Pop3State::Authorization);
    assert_eq!(h.session.user(), None);
    // USER was forgotten; nothing to unlock.
    assert_eq!(
        h.send("PASS again\r\n"),
        "-ERR Command not valid in this state\r\n"
    );
    h.backend.locked_elsewhere = false;
    h.login();
}

#[test]
fn every_login_grants_before_its_ok() {
    let mut h = Harness::new();
    h.send("USER alice\r\n");
    h.steps.clear();
    h.send(&format!("PASS {PASSWORD}\r\n"));
    let grant = h
        .steps
        .iter()
        .position(|s| matches!(s, Step::Effect(Pop3Effect::Grant { .. })));
    let ok = h.steps.iter().position(|s| matches!(s, Step::Sent(_)));
    assert!(grant.is_some() && grant < ok, "{:?}", h.steps);
}

#[test]
fn failed_logins_make_no_grant() {
    let mut h = Harness::new();
    h.send("USER alice\r\n");
    let failed = "-ERR [AUTH] Authentication failed\r\n";
    assert_eq!(h.send("PASS wrong\r\n"), failed);
    assert_eq!(h.session.state(), Pop3State::Authorization);
    // Unknown user: the same words.
    h.send("USER mallory\r\n");
    assert_eq!(h.send("PASS wrong\r\n"), failed);
    // USER is forgotten after a failure.
    assert_eq!(
        h.send("PASS wrong\r\n"),
        "-ERR Command not valid in this state\r\n"
    );
    // USER alone grants nothing either.
    h.send("USER alice\r\n");
    assert!(!h.has_grant());
    assert_eq!(
        h.kinds()
            .iter()
            .filter(|k| matches!(k, EventKind::AuthFailed { .. }))
            .cloned()
            .collect::<Vec<_>>(),
        vec![
            EventKind::AuthFailed {
                user: Some("alice".into()),
                mechanism: "USER".into()
            },
            EventKind::AuthFailed {
                user: Some("mallory".into()),
                mechanism: "USER".into()
            },
        ]
    );
    // And a right password after all that still works.
    h.send(&format!("PASS {PASSWORD}\r\n"));
    assert!(h.has_grant());
}

#[test]
fn a_temporary_auth_failure_is_sys_temp_and_no_auth_failed() {
    let mut h = Harness::new();
    h.backend.auth_tempfail = true;
    h.send("USER alice\r\n");
    assert_eq!(
        h.send("PASS x\r\n"),
        "-ERR [SYS/TEMP] Temporary server failure, try again later\r\n"
    );
    assert!(!h.has_grant());
    assert!(
        !h.kinds()
            .iter()
            .any(|k| matches!(k, EventKind::AuthFailed { .. }))
    );
}

#[test]
fn the_password_never_leaves() {
    let secret = "s3cr3t-Value";
    let mut h = Harness::new();
    h.backend
        .users
        .push(("carol", secret, "carol@example.test"));
    // A near miss, then the right password pipelined behind it: while the first
    // PASS waits for its result, the second sits in the input buffer.
    h.session.handle_input(
        h.now,
        format!("USER carol\r\nPASS {secret}x\r\nUSER carol\r\nPASS {secret}\r\n").as_bytes(),
    );
    assert!(
        h.session
            .poll_effect()
            .is_some_and(|e| !format!("{e:?}").contains(secret))
    );
    let debug = format!("{:?}", h.session);
    h.session
        .handle_result(h.now, Pop3Result::Auth(AuthResult::Failed));
    let mut out = h.pump();
    assert_eq!(h.session.state(), Pop3State::Transaction);
    h.session
        .handle_input(h.now, format!("PASS {secret}\0\r\nSTAT\r\n").as_bytes());
    out.push_str(&h.pump());
    out.push_str(&h.send(&format!("pass {secret}\r\n")));
    out.push_str(&h.send("QUIT\r\n"));

    assert!(!out.contains(secret));
    assert!(!debug.contains(secret), "{debug}");
    for step in &h.steps {
        assert!(!format!("{step:?}").contains(secret), "{step:?}");
    }
    for event in &h.events {
        let json = serde_json::to_string(event).expect("serialise");
        assert!(!json.contains(secret), "{json}");
        assert!(!format!("{event:?}").contains(secret), "{event:?}");
    }
    assert!(h.kinds().contains(&EventKind::ClientLine {
        line: "pass ****".into()
    }));
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let mut h = Harness::new();
    let out = h.send(&format!(
        "USER alice\r\nPASS {PASSWORD}\r\nSTAT\r\nRETR 1\r\nDELE 1\r\nLIST 1\r\nQUIT\r\nNOOP\r\n"
    ));
    assert_eq!(
        out,
        "+OK send PASS\r\n\
         +OK maildrop has 3 messages (151 octets)\r\n\
         +OK 3 151\r\n\
         +OK 45 octets\r\nFrom: a@example.test\r\nSubject: one\r\n\r\nHello\r\n.\r\n\
         +OK message 1 deleted\r\n\
         -ERR Message already deleted\r\n\
         +OK popgate signing off (2 messages left)\r\n"
    );
    assert!(h.session.is_closed());
}

/// The transcript of the chunk test: every state, every kind of reply.
fn long_transcript() -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(b"CAPA\r\nNOOP\nUSER alice\r\nPASS wrong\r\n");
    t.extend_from_slice(&[b'X'; 2000]);
    t.extend_from_slice(b"\r\nSTAT\r\nUSER alice\r\n");
    t.extend_from_slice(format!("PASS {PASSWORD}\r\n").as_bytes());
    t.extend_from_slice(b"STAT\r\nLIST\nUIDL\r\nRETR 2\r\nTOP 3 1\r\nNO\0OP\r\nLIST \xff\r\n");
    t.extend_from_slice(b"DELE 2\r\nLIST\r\nRSET\r\nDELE 3\r\nRETR 9\r\nQUIT\r\n");
    t
}

fn run_in_chunks(input: &[u8], chunk: usize) -> (String, Vec<Step>, Vec<EventKind>) {
    let mut h = Harness::new();
    let mut out = String::new();
    for piece in input.chunks(chunk) {
        out.push_str(&h.send_bytes(piece));
    }
    (out, h.steps.clone(), h.kinds())
}

#[test]
fn any_chunking_gives_the_same_transcript() {
    let input = long_transcript();
    let whole = run_in_chunks(&input, input.len());
    assert!(
        whole
            .0
            .ends_with("+OK popgate signing off (2 messages left)\r\n")
    );
    assert!(whole.0.contains("-ERR Line too long\r\n"));
    let mut chunk = 1;
    while chunk <= 512 {
        let (out, _, kinds) = run_in_chunks(&input, chunk);
        assert_eq!(out, whole.0, "chunk size {chunk}");
        assert_eq!(kinds, whole.2, "chunk size {chunk}");
        chunk *= 2;
    }
}

#[test]
fn bad_lines_get_err_and_the_session_goes_on() {
    let mut h = Harness::new();
    // Wrong state: TRANSACTION commands before login; NOOP too (RFC 1939 §5).
    for cmd in [
        "STAT", "LIST", "RETR 1", "DELE 1", "RSET", "TOP 1 1", "UIDL", "NOOP",
    ] {
        assert_eq!(
            h.send(&format!("{cmd}\r\n")),
            "-ERR Command not valid in this state\r\n",
            "{cmd}"
        );
    }
    let long = format!("USER {}\r\n", "a".repeat(DEFAULT_MAX_LINE));
    assert_eq!(h.send(&long), "-ERR Line too long\r\n");
    // An overlong line that arrives without its end: reported once, then skipped.
    assert_eq!(
        h.send(&"b".repeat(DEFAULT_MAX_LINE + 10)),
        "-ERR Line too long\r\n"
    );
    assert_eq!(h.send(&"c".repeat(5000)), "");
    assert_eq!(h.send("\r\nCAPA x\r\n"), "-ERR Invalid argument\r\n");
    assert_eq!(
        h.send("US\0ER alice\r\n"),
        "-ERR NUL or invalid UTF-8 in command\r\n"
    );
    assert_eq!(
        h.send_bytes(b"USER \xc3\x28\r\n"),
        "-ERR NUL or invalid UTF-8 in command\r\n"
    );
    assert_eq!(h.send("HELO x\r\n"), "-ERR Unknown command\r\n");
    assert_eq!(h.send("\r\n"), "-ERR Unknown command\r\n");
    assert_eq!(h.send("USER\r\n"), "-ERR Invalid argument\r\n");
    h.login();
    assert_eq!(
        h.send("USER alice\r\n"),
        "-ERR Command not valid in this state\r\n"
    );
    assert_eq!(
        h.send("PASS x\r\n"),
        "-ERR Command not valid in this state\r\n"
    );
    let none = "-ERR No such message\r\n";
    assert_eq!(h.send("RETR 0\r\n"), none);
    assert_eq!(h.send("RETR 4\r\n"), none);
    assert_eq!(h.send("LIST 99999999999999999999999\r\n"), none);
    assert_eq!(h.send("DELE 4294967296\r\n"), none);
    assert_eq!(h.send("TOP 1\r\n"), "-ERR Invalid argument\r\n");
    assert_eq!(h.send("RETR -1\r\n"), "-ERR Invalid argument\r\n");
    assert_eq!(h.send("STAT\r\n"), "+OK 3 151\r\n");
}

#[test]
fn a_message_removed_by_another_program_is_an_err_not_a_crash() {
    let mut h = Harness::new();
    h.login();
    h.backend.gone.push("1002.b".into());
    assert_eq!(h.send("RETR 2\r\n"), "-ERR Message no longer exists\r\n");
    assert_eq!(h.send("TOP 2 0\r\n"), "-ERR Message no longer exists\r\n");
    h.backend.read_fails = true;
    assert_eq!(
        h.send("RETR 1\r\n"),
        "-ERR [SYS/TEMP] Temporary server failure, try again later\r\n"
    );
    h.backend.read_fails = false;
    assert_eq!(h.send("STAT\r\n"), "+OK 3 151\r\n");
}

#[test]
fn idle_timeout_closes_without_update() {
    let mut h = Harness::new();
    h.login();
    h.now = Millis(START.0 + 5_000);
    h.send("DELE 1\r\n");
    let deadline = h.now.saturating_add(DEFAULT_IDLE_TIMEOUT);
    assert_eq!(h.session.poll_timeout(), Some(deadline));
    // Bytes that make no command do not count as activity.
    h.session.handle_input(h.now, b"NO");
    h.now = Millis(h.now.0 + 60_000);
    h.session.handle_input(h.now, b"O");
    assert_eq!(h.session.poll_timeout(), Some(deadline));
    // An early wake-up does nothing.
    h.session.handle_timeout(Millis(deadline.0 - 1));
    assert_eq!(h.pump(), "");
    h.session.handle_timeout(deadline);
    assert_eq!(h.pump(), "-ERR Autologout; idle for too long\r\n");
    assert!(h.session.is_closed());
    assert!(
        !h.effects()
            .iter()
            .any(|e| matches!(e, Pop3Effect::Update { .. }))
    );
    assert_eq!(
        h.effects().last(),
        Some(&Pop3Effect::CloseMaildrop { user: alice() })
    );
    assert_eq!(h.backend.messages.len(), 3);
    assert_eq!(
        h.kinds().last(),
        Some(&EventKind::SessionClosed {
            reason: CloseReason::Timeout
        })
    );
    assert_eq!(h.session.poll_timeout(), None);
}

#[test]
fn shutdown_closes_at_the_next_command_boundary_without_update() {
    // Idle: at once.
    let mut h = Harness::new();
    h.login();
    h.send("DELE 1\r\n");
    h.session.handle_shutdown(h.now);
    assert_eq!(h.pump(), "-ERR Server shutting down\r\n");
    assert!(h.session.is_closed());
    assert!(
        !h.effects()
            .iter()
            .any(|e| matches!(e, Pop3Effect::Update { .. }))
    );
    assert_eq!(
        h.kinds().last(),
        Some(&EventKind::SessionClosed {
            reason: CloseReason::ShuttingDown
        })
    );

    // Mid-command: the command finishes, then the session closes; pipelined commands
    // behind it are not run.
    let mut h = Harness::new();
    h.login();
    h.session
        .handle_input(h.now, b"RETR 1\r\nDELE 1\r\nQUIT\r\n");
    assert_eq!(
        h.session.poll_effect(),
        Some(Pop3Effect::Retrieve {
            uid: "1001.a".into()
        })
    );
    h.session.handle_shutdown(h.now);
    h.session.handle_result(
        h.now,
        Pop3Result::Message(MessageResult::Content(b"x\r\n".to_vec())),
    );
    assert_eq!(
        h.pump(),
        "+OK 45 octets\r\nx\r\n.\r\n-ERR Server shutting down\r\n"
    );
    assert_eq!(
        h.effects(),
        vec![
            Pop3Effect::Authenticate {
                user: "alice".into(),
                password: crate::Secret::new(PASSWORD)
            },
            Pop3Effect::Grant { user: alice() },
            Pop3Effect::OpenMaildrop { user: alice() },
            Pop3Effect::CloseMaildrop { user: alice() },
        ]
    );
}

#[test]
fn waiting_for_an_effect_stops_reading_and_the_clock() {
    let mut h = Harness::new();
    h.send("USER alice\r\n");
    h.session.handle_input(h.now, b"PASS x\r\nSTAT\r\n");
    assert!(!h.session.wants_input());
    assert_eq!(h.session.poll_timeout(), None);
    // A spurious result of the wrong kind is that step's failure.
    assert!(matches!(
        h.session.poll_effect(),
        Some(Pop3Effect::Authenticate { .. })
    ));
    h.session.handle_result(h.now, Pop3Result::GrantDone);
    assert_eq!(
        h.pump(),
        "-ERR [SYS/TEMP] Temporary server failure, try again later\r\n\
         -ERR Command not valid in this state\r\n"
    );
    assert!(h.session.wants_input());
    // A result nobody asked for is ignored.
    h.session
        .handle_result(h.now, Pop3Result::Updated { ok: true });
    assert_eq!(h.pump(), "");
}

#[test]
fn a_maildrop_opened_after_the_peer_left_is_closed_again() {
    let mut h = Harness::new();
    h.send("USER alice\r\n");
    h.session
        .handle_input(h.now, format!("PASS {PASSWORD}\r\n").as_bytes());
    assert!(matches!(
        h.session.poll_effect(),
        Some(Pop3Effect::Authenticate { .. })
    ));
    h.session
        .handle_result(h.now, Pop3Result::Auth(AuthResult::Ok { user: alice() }));
    assert_eq!(
        h.session.poll_effect(),
        Some(Pop3Effect::Grant { user: alice() })
    );
    h.session.handle_result(h.now, Pop3Result::GrantDone);
    assert_eq!(
        h.session.poll_effect(),
        Some(Pop3Effect::OpenMaildrop { user: alice() })
    );
    h.session.handle_disconnect(h.now);
    assert!(h.session.is_closed());
    h.session
        .handle_result(h.now, Pop3Result::Maildrop(MaildropResult::Opened(vec![])));
    assert_eq!(
        h.session.poll_effect(),
        Some(Pop3Effect::CloseMaildrop { user: alice() })
    );
    assert_eq!(h.pump(), "");
}

#[test]
fn an_update_finished_after_the_peer_left_is_still_reported() {
    let mut h = Harness::new();
    h.login();
    h.send("DELE 2\r\n");
    h.session.handle_input(h.now, b"QUIT\r\n");
    assert_eq!(h.session.state(), Pop3State::Update);
    let update = h.session.poll_effect();
    assert!(matches!(update, Some(Pop3Effect::Update { .. })));
    h.session.handle_disconnect(h.now);
    h.session
        .handle_result(h.now, Pop3Result::Updated { ok: true });
    assert_eq!(h.pump(), "");
    assert_eq!(
        h.effects().last(),
        Some(&Pop3Effect::CloseMaildrop { user: alice() })
    );
    assert_eq!(
        h.kinds()[h.kinds().len() - 2..],
        [
            EventKind::SessionClosed {
                reason: CloseReason::PeerClosed
            },
            EventKind::MessagesRemoved {
                user: alice(),
                count: 1
            },
        ]
    );
}

#[test]
fn plaintext_refused_without_tls_except_from_this_host() {
    let config = Pop3Config {
        plaintext_auth: false,
        ..Pop3Config::default()
    };
    let mut h = Harness::with(config.clone(), "192.0.2.10:40000", false);
    let capa = h.send("CAPA\r\n");
    assert!(!capa.contains("USER"), "{capa}");
    let refused = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections\r\n";
    assert_eq!(h.send("USER alice\r\n"), refused);
    assert_eq!(h.send(&format!("PASS {PASSWORD}\r\n")), refused);
    assert!(h.effects().is_empty());

    for (peer, tls) in [
        ("127.0.0.1:40000", false),
        ("[::1]:40000", false),
        ("[::ffff:127.0.0.1]:40000", false),
        ("192.0.2.10:40000", true),
    ] {
        let mut h = Harness::with(config.clone(), peer, tls);
        assert!(h.send("CAPA\r\n").contains("\r\nUSER\r\n"), "{peer}");
        h.login();
    }
    // 127.0.0.2 is another host as far as this rule goes.
    let mut h = Harness::with(config, "127.0.0.2:40000", false);
    assert_eq!(h.send("USER alice\r\n"), refused);
}

#[test]
fn grant_requires_tls_logs_in_without_a_grant() {
    let config = Pop3Config {
        grant_requires_tls: true,
        ..Pop3Config::default()
    };
    let mut h = Harness::with(config.clone(), "192.0.2.10:40000", false);
    h.login();
    assert!(!h.has_grant());
    assert!(h.kinds().contains(&EventKind::GrantRefused {
        key: crate::net::Cidr::host(addr("192.0.2.10:1").ip()),
        user: alice(),
        reason: "tls required".into()
    }));

    let mut h = Harness::with(config, "192.0.2.10:40000", true);
    h.login();
    assert!(h.has_grant());
}

#[test]
fn quit_before_login_just_closes() {
    let mut h = Harness::new();
    h.send("USER alice\r\n");
    assert_eq!(h.send("QUIT\r\nNOOP\r\n"), "+OK popgate signing off\r\n");
    assert!(h.session.is_closed());
    assert!(h.effects().is_empty());
    assert_eq!(
        h.kinds().last(),
        Some(&EventKind::SessionClosed {
            reason: CloseReason::Quit
        })
    );
}

#[test]
fn config_defaults_follow_the_rfcs() {
    let c = Pop3Config::default();
    assert_eq!(c.max_line, 1024);
    assert_eq!(c.idle_timeout, std::time::Duration::from_secs(600));
    assert!(c.plaintext_auth && !c.grant_requires_tls);
    assert!(!Pop3Effect::CloseMaildrop { user: alice() }.expects_result());
    assert!(Pop3Effect::Grant { user: alice() }.expects_result());
}
