//! Transcript tests: a session driven by a small in-test backend, read as `C:`/`S:`
//! exchanges.

use super::*;
use crate::Secret;
use crate::event::{CloseReason, Event, EventKind, Protocol, SessionId};
use crate::sasl::{AuthResult, Credentials};
use crate::testing::test;
use crate::time::Millis;
use std::sync::Arc;
use std::time::Duration;

const PASSWORD: &str = "correct horse";
const START: Millis = Millis(1_000_000);
/// The RFC 1939 §7 timestamp of session 7 at START on host `localhost`: the APOP
/// greeting's, and the CRAM-MD5 challenge of an AUTH at START.
const TIMESTAMP: &str = "<7.1000000@localhost>";
/// MD5(TIMESTAMP + PASSWORD) (RFC 1939 §7).
const APOP_DIGEST: &str = "e2c03fb3c5ae84cbc9ca27ce6549a162";
/// HMAC-MD5 of TIMESTAMP keyed with PASSWORD (RFC 2195 §2).
const CRAM_DIGEST: &str = "0963ba2b732b2215da2c208199d0af7f";

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
    /// Digests that verify, as (mechanism, login, challenge, digest): core computes no
    /// MD5, so the test backend knows the right answers.
    digests: Vec<(&'static str, &'static str, &'static str, &'static str)>,
    /// What a failed verification asks the session to wait.
    delay: Duration,
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
            digests: vec![
                ("APOP", "alice", TIMESTAMP, APOP_DIGEST),
                ("CRAM-MD5", "alice", TIMESTAMP, CRAM_DIGEST),
            ],
            delay: Duration::ZERO,
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
            Pop3Effect::Authenticate { credentials } => {
                if self.auth_tempfail {
                    Pop3Result::Auth(AuthResult::TempFail)
                } else {
                    let verified = match credentials {
                        Credentials::Password { user, password, .. } => self
                            .users
                            .iter()
                            .any(|(login, pw, _)| login == user && *pw == password.expose()),
                        Credentials::CramMd5 {
                            user,
                            challenge,
                            digest,
                        }
                        | Credentials::Apop {
                            user,
                            timestamp: challenge,
                            digest,
                        } => self.digests.contains(&(
                            credentials.mechanism(),
                            user.as_str(),
                            challenge.as_str(),
                            digest.as_str(),
                        )),
                    };
                    let canonical = self
                        .users
                        .iter()
                        .find(|(login, _, _)| *login == credentials.user());
                    Pop3Result::Auth(match canonical {
                        Some((_, _, canonical)) if verified => AuthResult::Ok {
                            user: (*canonical).to_owned(),
                        },
                        _ => AuthResult::Failed { delay: self.delay },
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
            Pop3Effect::CloseMaildrop { .. } | Pop3Effect::StartTls => return None,
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

fn user_pass(user: &str, password: &str) -> Credentials {
    Credentials::password("USER", None, user, Secret::new(password))
}

#[test]
fn login_and_read_the_maildrop() {
    let mut h = Harness::new();
    assert_eq!(
        h.send("CAPA\r\n"),
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nRESP-CODES\r\n\
         AUTH-RESP-CODE\r\nPIPELINING\r\nSASL PLAIN LOGIN\r\nIMPLEMENTATION popgate\r\n.\r\n"
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
                credentials: user_pass("alice", PASSWORD),
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
    h.session.handle_result(
        h.now,
        Pop3Result::Auth(AuthResult::Failed {
            delay: Duration::ZERO,
        }),
    );
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
                credentials: user_pass("alice", PASSWORD),
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
    assert!(!c.stls && !c.apop && !c.sasl_cram_md5);
    assert_eq!(c.max_auth_failures, 3);
    assert!(!Pop3Effect::StartTls.expects_result());
    assert!(!Pop3Effect::CloseMaildrop { user: alice() }.expects_result());
    assert!(Pop3Effect::Grant { user: alice() }.expects_result());
}

// ---- STLS (RFC 2595), AUTH (RFC 5034), APOP (RFC 1939 §7), login hygiene ----

use crate::sasl::encode as b64;

const CAPA_HEAD: &str = "+OK Capability list follows\r\nTOP\r\nUIDL\r\n";
const CAPA_TAIL: &str = "RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n";
const FAILED: &str = "-ERR [AUTH] Authentication failed\r\n";
const TLS_VERSION: &str = "TLSv1_3";
const TLS_CIPHER: &str = "TLS13_AES_256_GCM_SHA384";

fn stls_config() -> Pop3Config {
    Pop3Config {
        stls: true,
        ..Pop3Config::default()
    }
}

fn capa(lines: &[&str]) -> String {
    let mut c = CAPA_HEAD.to_owned();
    for line in lines {
        c.push_str(line);
        c.push_str("\r\n");
    }
    c.push_str("IMPLEMENTATION popgate\r\n.\r\n");
    c
}

impl Harness {
    fn established(&mut self) -> String {
        self.session
            .handle_tls_established(self.now, TLS_VERSION.into(), TLS_CIPHER.into());
        self.pump()
    }

    fn auth_effects(&self) -> Vec<Credentials> {
        self.effects()
            .into_iter()
            .filter_map(|e| match e {
                Pop3Effect::Authenticate { credentials } => Some(credentials),
                _ => None,
            })
            .collect()
    }

    fn client_lines(&self) -> Vec<String> {
        self.kinds()
            .into_iter()
            .filter_map(|k| match k {
                EventKind::ClientLine { line } => Some(line),
                _ => None,
            })
            .collect()
    }

    fn logged_in(&self) -> bool {
        self.session.state() == Pop3State::Transaction
    }
}

#[test]
fn stls_discards_plaintext_pipelined_after_it() {
    let mut h = Harness::with(stls_config(), "192.0.2.10:40000", false);
    // The injected USER rides in the same packet as STLS.
    assert_eq!(
        h.send("STLS\r\nUSER x\r\n"),
        "+OK Begin TLS negotiation\r\n"
    );
    assert_eq!(h.effects(), vec![Pop3Effect::StartTls]);
    assert!(Pop3Session::is_start_tls(&Pop3Effect::StartTls));
    // Until the handshake is over: nothing is read and no timer runs.
    assert!(!h.session.wants_input());
    assert_eq!(h.session.poll_timeout(), None);
    h.session.handle_input(h.now, b"PASS y\r\n");
    assert_eq!(h.pump(), "");

    assert_eq!(h.established(), "");
    assert!(h.session.is_tls());
    assert!(h.kinds().contains(&EventKind::TlsStarted {
        version: TLS_VERSION.into(),
        cipher: TLS_CIPHER.into(),
    }));
    // Neither the injected USER nor the PASS ran: PASS now has no USER before it.
    assert_eq!(
        h.send(&format!("PASS {PASSWORD}\r\n")),
        "-ERR Command not valid in this state\r\n"
    );
    assert_eq!(h.client_lines(), ["STLS", "PASS ****"]);
    assert!(h.auth_effects().is_empty());
    // STLS is no longer offered, and refused.
    assert_eq!(
        h.send("CAPA\r\n"),
        capa(&["USER", CAPA_TAIL.trim_end(), "SASL PLAIN LOGIN"])
    );
    assert_eq!(h.send("STLS\r\n"), "-ERR TLS already active\r\n");
    h.login();
    assert!(h.has_grant());
}

#[test]
fn stls_only_when_offered_and_before_login() {
    let mut h = Harness::new();
    assert!(!h.send("CAPA\r\n").contains("STLS"));
    assert_eq!(h.send("STLS\r\n"), "-ERR Unknown command\r\n");

    let mut h = Harness::with(stls_config(), "192.0.2.10:40000", false);
    assert!(h.send("CAPA\r\n").contains("\r\nSTLS\r\n"));
    h.login();
    assert_eq!(
        h.send("STLS\r\n"),
        "-ERR Command not valid in this state\r\n"
    );
    // Over implicit TLS there is nothing to start.
    let mut h = Harness::with(stls_config(), "192.0.2.10:40000", true);
    assert!(!h.send("CAPA\r\n").contains("STLS"));
    assert_eq!(h.send("STLS\r\n"), "-ERR TLS already active\r\n");
}

#[test]
fn a_handshake_that_fails_is_a_disconnect() {
    let mut h = Harness::with(stls_config(), "192.0.2.10:40000", false);
    h.send("STLS\r\n");
    h.session.handle_disconnect(h.now);
    assert_eq!(h.pump(), "");
    assert!(h.session.is_closed());
    // A late handshake report changes nothing.
    h.session
        .handle_tls_established(h.now, TLS_VERSION.into(), TLS_CIPHER.into());
    assert!(!h.session.is_tls());
}

#[test]
fn capa_follows_the_session_state() {
    let refused = Pop3Config {
        stls: true,
        plaintext_auth: false,
        sasl_cram_md5: true,
        ..Pop3Config::default()
    };
    // Plaintext without TLS: no USER, no PLAIN/LOGIN, but CRAM-MD5 and STLS.
    let mut h = Harness::with(refused.clone(), "192.0.2.10:40000", false);
    assert_eq!(
        h.send("CAPA\r\n"),
        capa(&[CAPA_TAIL.trim_end(), "SASL CRAM-MD5", "STLS"])
    );
    h.send("STLS\r\n");
    h.established();
    let after = capa(&["USER", CAPA_TAIL.trim_end(), "SASL PLAIN LOGIN CRAM-MD5"]);
    assert_eq!(h.send("CAPA\r\n"), after);
    h.login();
    // TRANSACTION: the same list (RFC 2449 §5 allows it).
    assert_eq!(h.send("CAPA\r\n"), after);

    // Nothing cleartext and no CRAM-MD5: no SASL line at all.
    let mut h = Harness::with(
        Pop3Config {
            plaintext_auth: false,
            ..Pop3Config::default()
        },
        "192.0.2.10:40000",
        false,
    );
    assert_eq!(h.send("CAPA\r\n"), capa(&[CAPA_TAIL.trim_end()]));
    assert_eq!(h.send("AUTH\r\n"), "+OK SASL mechanisms follow\r\n.\r\n");
}

#[test]
fn auth_plain_with_an_initial_response() {
    let mut h = Harness::new();
    let initial = b64(format!("\0alice\0{PASSWORD}"));
    assert_eq!(
        h.send(&format!("AUTH PLAIN {initial}\r\n")),
        "+OK maildrop has 3 messages (151 octets)\r\n"
    );
    assert!(h.logged_in());
    assert_eq!(
        h.auth_effects(),
        [Credentials::password(
            "PLAIN",
            None,
            "alice",
            Secret::new(PASSWORD)
        )]
    );
    assert!(h.kinds().contains(&EventKind::AuthSucceeded {
        user: alice(),
        mechanism: "PLAIN".into()
    }));
    assert_eq!(h.client_lines(), ["AUTH PLAIN ****"]);
}

#[test]
fn auth_plain_with_a_continuation() {
    let mut h = Harness::new();
    // RFC 5034 §4: an empty challenge is "+ ".
    assert_eq!(h.send("auth plain\r\n"), "+ \r\n");
    assert!(h.session.wants_input());
    let response = b64(format!("alice\0alice\0{PASSWORD}"));
    assert_eq!(
        h.send(&format!("{response}\r\n")),
        "+OK maildrop has 3 messages (151 octets)\r\n"
    );
    assert!(h.logged_in());
    assert_eq!(h.client_lines(), ["auth plain", "****"]);
    // "=" is an empty initial response, which PLAIN cannot use.
    let mut h = Harness::new();
    assert_eq!(h.send("AUTH PLAIN =\r\n"), "-ERR Invalid SASL response\r\n");
}

#[test]
fn auth_login_prompts_for_user_and_password() {
    let mut h = Harness::new();
    assert_eq!(h.send("AUTH LOGIN\r\n"), "+ VXNlcm5hbWU6\r\n");
    assert_eq!(
        h.send(&format!("{}\r\n", b64("alice"))),
        "+ UGFzc3dvcmQ6\r\n"
    );
    assert_eq!(
        h.send(&format!("{}\r\n", b64(PASSWORD))),
        "+OK maildrop has 3 messages (151 octets)\r\n"
    );
    assert!(h.logged_in());
    assert!(h.kinds().contains(&EventKind::AuthSucceeded {
        user: alice(),
        mechanism: "LOGIN".into()
    }));
    assert_eq!(h.client_lines(), ["AUTH LOGIN", "****", "****"]);
}

#[test]
fn auth_cram_md5_challenges_with_a_unique_timestamp() {
    let config = Pop3Config {
        sasl_cram_md5: true,
        ..Pop3Config::default()
    };
    let mut h = Harness::with(config, "192.0.2.10:40000", false);
    // RFC 2195 §2: the challenge is an RFC 1939 §7 style timestamp, base64-encoded.
    assert_eq!(
        h.send("AUTH CRAM-MD5\r\n"),
        format!("+ {}\r\n", b64(TIMESTAMP))
    );
    assert_eq!(
        h.send(&format!("{}\r\n", b64(format!("alice {CRAM_DIGEST}")))),
        "+OK maildrop has 3 messages (151 octets)\r\n"
    );
    assert_eq!(
        h.auth_effects(),
        [Credentials::CramMd5 {
            user: "alice".into(),
            challenge: TIMESTAMP.into(),
            digest: CRAM_DIGEST.into(),
        }]
    );
    // A later exchange gets another challenge.
    let mut h = Harness::with(
        Pop3Config {
            sasl_cram_md5: true,
            ..Pop3Config::default()
        },
        "192.0.2.10:40000",
        false,
    );
    h.now = Millis(START.0 + 1);
    assert_eq!(
        h.send("AUTH CRAM-MD5\r\n"),
        format!("+ {}\r\n", b64("<7.1000001@localhost>"))
    );
    // Off: not offered, not accepted.
    let mut h = Harness::new();
    assert_eq!(
        h.send("AUTH CRAM-MD5\r\n"),
        "-ERR Unsupported authentication mechanism\r\n"
    );
    assert_eq!(
        h.send("AUTH DIGEST-MD5\r\n"),
        "-ERR Unsupported authentication mechanism\r\n"
    );
    assert_eq!(
        h.send("AUTH\r\n"),
        "+OK SASL mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n"
    );
}

#[test]
fn broken_sasl_exchanges_get_err_and_the_session_goes_on() {
    let config = Pop3Config {
        max_auth_failures: 0,
        ..Pop3Config::default()
    };
    let mut h = Harness::with(config, "192.0.2.10:40000", false);
    // RFC 5034 §4: "*" cancels.
    assert_eq!(h.send("AUTH PLAIN\r\n"), "+ \r\n");
    assert_eq!(h.send("*\r\n"), "-ERR Authentication cancelled\r\n");
    assert_eq!(h.send("AUTH LOGIN\r\n"), "+ VXNlcm5hbWU6\r\n");
    h.send(&format!("{}\r\n", b64("alice")));
    assert_eq!(h.send("*\r\n"), "-ERR Authentication cancelled\r\n");
    // Not base64, in the initial response and in a continuation.
    assert_eq!(
        h.send("AUTH PLAIN !!!!\r\n"),
        "-ERR Invalid base64 data\r\n"
    );
    h.send("AUTH PLAIN\r\n");
    assert_eq!(h.send("%%%\r\n"), "-ERR Invalid base64 data\r\n");
    h.send("AUTH PLAIN\r\n");
    assert_eq!(
        h.send_bytes(b"\xff\xfe\r\n"),
        "-ERR Invalid base64 data\r\n"
    );
    // RFC 4616 §2: acting as another user.
    assert_eq!(
        h.send(&format!(
            "AUTH PLAIN {}\r\n",
            b64(format!("bob@example.test\0alice\0{PASSWORD}"))
        )),
        "-ERR [AUTH] Authorization identity must equal the authentication identity\r\n"
    );
    // A continuation longer than max_line.
    h.send("AUTH PLAIN\r\n");
    assert_eq!(
        h.send(&format!("{}\r\n", "A".repeat(DEFAULT_MAX_LINE + 1))),
        "-ERR Line too long\r\n"
    );
    // A command sent where a continuation was expected is just a bad response.
    h.send("AUTH LOGIN\r\n");
    assert_eq!(h.send("LIST 1\r\n"), "-ERR Invalid base64 data\r\n");
    assert!(h.auth_effects().is_empty());
    assert!(!h.has_grant());
    // No password was tested, so none of this waited; a proper login still works.
    h.login();
}

#[test]
fn plaintext_mechanisms_need_tls_unless_allowed() {
    let config = Pop3Config {
        plaintext_auth: false,
        stls: true,
        ..Pop3Config::default()
    };
    let refused = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections\r\n";
    let mut h = Harness::with(config.clone(), "127.0.0.2:40000", false);
    let initial = b64(format!("\0alice\0{PASSWORD}"));
    assert_eq!(h.send(&format!("AUTH PLAIN {initial}\r\n")), refused);
    assert_eq!(h.send("AUTH LOGIN\r\n"), refused);
    assert!(h.auth_effects().is_empty());
    h.send("STLS\r\n");
    h.established();
    assert!(
        h.send(&format!("AUTH PLAIN {initial}\r\n"))
            .starts_with("+OK maildrop")
    );
    // From this host itself, no TLS needed.
    let mut h = Harness::with(config, "[::1]:40000", false);
    assert_eq!(h.send("AUTH LOGIN\r\n"), "+ VXNlcm5hbWU6\r\n");
}

#[test]
fn apop_only_when_enabled() {
    let apop = format!("APOP alice {APOP_DIGEST}\r\n");
    // Off: a plain greeting and APOP is unknown.
    let mut h = Harness::new();
    assert_eq!(h.send(&apop), "-ERR Unknown command\r\n");
    assert!(h.auth_effects().is_empty());

    // On: RFC 1939 §7, the greeting ends with the timestamp.
    let config = Pop3Config {
        apop: true,
        ..Pop3Config::default()
    };
    let session = Pop3Session::new(
        Arc::new(config.clone()),
        SessionId(7),
        Protocol::Pop3,
        addr("192.0.2.10:40000"),
        addr("192.0.2.1:110"),
        false,
        START,
    );
    let mut h = Harness {
        session,
        backend: Backend::new(),
        now: START,
        steps: Vec::new(),
        events: Vec::new(),
    };
    assert_eq!(h.pump(), format!("+OK popgate ready {TIMESTAMP}\r\n"));
    // Wrong digest, then the right one (uppercase hex is the same digest).
    assert_eq!(
        h.send("APOP alice 00000000000000000000000000000000\r\n"),
        FAILED
    );
    assert_eq!(
        h.send(&apop.to_uppercase().replace("ALICE", "alice")),
        "+OK maildrop has 3 messages (151 octets)\r\n"
    );
    assert_eq!(
        h.auth_effects()[1],
        Credentials::Apop {
            user: "alice".into(),
            timestamp: TIMESTAMP.into(),
            digest: APOP_DIGEST.into(),
        }
    );
    assert_eq!(h.client_lines(), ["APOP alice ****", "APOP alice ****"]);
    assert!(h.kinds().contains(&EventKind::AuthSucceeded {
        user: alice(),
        mechanism: "APOP".into()
    }));
    // Another session, another timestamp.
    let mut other = Pop3Session::new(
        Arc::new(config),
        SessionId(8),
        Protocol::Pop3,
        addr("192.0.2.10:40001"),
        addr("192.0.2.1:110"),
        false,
        START,
    );
    assert_eq!(
        other.poll_transmit(),
        Some(b"+OK popgate ready <8.1000000@localhost>\r\n".to_vec())
    );
}

#[test]
fn every_mechanism_grants_before_its_ok() {
    let config = Pop3Config {
        apop: true,
        sasl_cram_md5: true,
        ..Pop3Config::default()
    };
    let logins: Vec<(&str, Vec<String>)> = vec![
        (
            "USER",
            vec!["USER alice".into(), format!("PASS {PASSWORD}")],
        ),
        (
            "PLAIN",
            vec![format!(
                "AUTH PLAIN {}",
                b64(format!("\0alice\0{PASSWORD}"))
            )],
        ),
        (
            "LOGIN",
            vec!["AUTH LOGIN".into(), b64("alice"), b64(PASSWORD)],
        ),
        (
            "CRAM-MD5",
            vec!["AUTH CRAM-MD5".into(), b64(format!("alice {CRAM_DIGEST}"))],
        ),
        ("APOP", vec![format!("APOP alice {APOP_DIGEST}")]),
    ];
    for (mechanism, lines) in logins {
        for tls in [false, true] {
            let config = Pop3Config {
                grant_requires_tls: true,
                ..config.clone()
            };
            let session = Pop3Session::new(
                Arc::new(config),
                SessionId(7),
                Protocol::Pop3,
                addr("192.0.2.10:40000"),
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
            h.pump();
            for line in &lines {
                h.send(&format!("{line}\r\n"));
            }
            assert!(h.logged_in(), "{mechanism}");
            assert!(h.kinds().contains(&EventKind::AuthSucceeded {
                user: alice(),
                mechanism: mechanism.into()
            }));
            // grant_requires_tls: only the login over TLS grants.
            assert_eq!(h.has_grant(), tls, "{mechanism} tls={tls}");
            if tls {
                let grant = h
                    .steps
                    .iter()
                    .position(|s| matches!(s, Step::Effect(Pop3Effect::Grant { .. })));
                let ok = h.steps.iter().rposition(|s| matches!(s, Step::Sent(_)));
                assert!(grant < ok, "{mechanism}: {:?}", h.steps);
            }
        }
    }
}

#[test]
fn a_failed_login_waits_out_its_delay() {
    let mut h = Harness::new();
    let delay = Duration::from_secs(5);
    h.backend.delay = delay;
    h.now = Millis(START.0 + 100);
    h.send("USER alice\r\n");
    // The wrong password and a pipelined CAPA: nothing is answered yet.
    assert_eq!(h.send("PASS wrong\r\nCAPA\r\n"), "");
    let until = h.now.saturating_add(delay);
    assert_eq!(h.session.poll_timeout(), Some(until));
    assert!(!h.session.wants_input());
    // The failure is reported at once; the reply waits.
    assert!(h.kinds().contains(&EventKind::AuthFailed {
        user: Some("alice".into()),
        mechanism: "USER".into()
    }));
    h.session.handle_timeout(Millis(until.0 - 1));
    assert_eq!(h.pump(), "");
    h.now = until;
    h.session.handle_timeout(h.now);
    let out = h.pump();
    assert!(out.starts_with(&format!("{FAILED}{CAPA_HEAD}")), "{out}");
    assert!(h.session.wants_input());
    // The idle clock starts again from the reply.
    assert_eq!(
        h.session.poll_timeout(),
        Some(until.saturating_add(DEFAULT_IDLE_TIMEOUT))
    );
    h.login();
}

#[test]
fn shutdown_cuts_a_delay_short() {
    let mut h = Harness::new();
    h.backend.delay = Duration::from_secs(15);
    h.send("USER alice\r\n");
    assert_eq!(h.send("PASS wrong\r\n"), "");
    h.session.handle_shutdown(h.now);
    assert_eq!(h.pump(), format!("{FAILED}-ERR Server shutting down\r\n"));
    assert!(h.session.is_closed());
}

#[test]
fn unknown_user_and_wrong_password_are_byte_identical() {
    let transcripts = |user: &str| {
        let mut h = Harness::new();
        h.backend.delay = Duration::from_millis(2_000);
        let mut out = h.send(&format!("USER {user}\r\nPASS wrong\r\n"));
        let deadline = h.session.poll_timeout();
        h.now = deadline.expect("a delay");
        h.session.handle_timeout(h.now);
        out.push_str(&h.pump());
        let initial = b64(format!("\0{user}\0wrong"));
        h.session
            .handle_input(h.now, format!("AUTH PLAIN {initial}\r\n").as_bytes());
        h.pump();
        h.now = h.session.poll_timeout().expect("a delay");
        h.session.handle_timeout(h.now);
        out.push_str(&h.pump());
        (out, deadline)
    };
    let known = transcripts("alice");
    let unknown = transcripts("nobody");
    assert_eq!(known, unknown);
    assert_eq!(known.0, format!("+OK send PASS\r\n{FAILED}{FAILED}"));
}

#[test]
fn too_many_failures_close_the_session() {
    let mut h = Harness::new();
    h.backend.delay = Duration::from_millis(10);
    h.send("USER alice\r\nPASS one\r\n");
    h.now = Millis(h.now.0 + 10);
    h.session.handle_timeout(h.now);
    assert_eq!(h.pump(), FAILED);
    // A broken exchange counts too.
    assert_eq!(h.send("AUTH PLAIN !!\r\n"), "-ERR Invalid base64 data\r\n");
    h.send(&format!("AUTH PLAIN {}\r\nNOOP\r\n", b64("\0alice\0three")));
    h.now = Millis(h.now.0 + 10);
    h.session.handle_timeout(h.now);
    assert_eq!(h.pump(), "-ERR [AUTH] Too many authentication failures\r\n");
    assert!(h.session.is_closed());
    assert_eq!(
        h.kinds().last(),
        Some(&EventKind::SessionClosed {
            reason: CloseReason::Error
        })
    );
    assert!(!h.has_grant());
}

#[test]
fn sasl_secrets_never_leave() {
    let secret = "s3cr3t-Value";
    let mut h = Harness::new();
    h.backend
        .users
        .push(("carol", secret, "carol@example.test"));
    let plain = b64(format!("\0carol\0{secret}"));
    let mut out = h.send(&format!("AUTH PLAIN {plain}x\r\n"));
    out.push_str(&h.send("AUTH LOGIN\r\n"));
    out.push_str(&h.send(&format!("{}\r\n", b64("carol"))));
    out.push_str(&h.send(&format!("{}\r\n", b64(secret))));
    assert!(h.logged_in());
    for event in &h.events {
        let json = serde_json::to_string(event).expect("serialise");
        for hidden in [secret, plain.as_str(), &b64(secret)] {
            assert!(!json.contains(hidden), "{json}");
        }
    }
    for step in &h.steps {
        assert!(!format!("{step:?}").contains(secret), "{step:?}");
    }
    assert!(!out.contains(secret));
}

#[test]
fn any_chunking_gives_the_same_sasl_transcript() {
    let mut input = Vec::new();
    input.extend_from_slice(b"CAPA\r\nAUTH PLAIN\r\n*\r\nAUTH LOGIN\r\n");
    input.extend_from_slice(format!("{}\r\n{}\r\n", b64("alice"), b64(PASSWORD)).as_bytes());
    input.extend_from_slice(b"STAT\r\nQUIT\r\n");
    let whole = run_in_chunks(&input, input.len());
    assert!(
        whole
            .0
            .ends_with("+OK popgate signing off (3 messages left)\r\n")
    );
    for chunk in [1, 2, 3, 7, 64] {
        let (out, _, kinds) = run_in_chunks(&input, chunk);
        assert_eq!(out, whole.0, "chunk size {chunk}");
        assert_eq!(kinds, whole.2, "chunk size {chunk}");
    }
}
