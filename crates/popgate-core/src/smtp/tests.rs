//! Transcript tests: a session driven by the documented loop against an in-test
//! backend that answers effects.

use super::*;
use crate::event::{CloseReason, Event, EventKind, Protocol, RelayOutcome, SessionId};
use crate::grant::{RelayRefusal, Reservation};
use crate::sasl::{AuthResult, Credentials};
use crate::testing::test;
use crate::time::Millis;
use std::sync::Arc;
use std::time::Duration;

/// Sat, 28 Nov 2026 19:18:11 +0000
const NOW: Millis = Millis(1_795_893_491_000);
const DATE: &str = "Sat, 28 Nov 2026 19:18:11 +0000";
const GREETING: &str = "220 mail.example.test ESMTP popgate\r\n";
const EHLO_REPLY: &str = "250-mail.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
                          250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n";

fn config() -> SmtpConfig {
    SmtpConfig {
        hostname: "mail.example.test".into(),
        local_domains: vec!["example.test".into(), "Example.ORG".into()],
        // These transcripts pipeline freely and make many errors to test other rules
        // in one read; the discipline and the error delay are tested in `hardening`.
        forbid_unauth_pipelining: false,
        error_limits: ErrorLimits {
            sleep: Duration::ZERO,
            ..ErrorLimits::default()
        },
        ..SmtpConfig::default()
    }
}

fn key() -> Cidr {
    "192.0.2.7/32".parse().expect("cidr")
}

fn reservation() -> Reservation {
    Reservation {
        key: key(),
        user: "alice@example.test".into(),
        granting_session: Some(SessionId(3)),
    }
}

fn grant_outcome() -> RelayOutcome {
    RelayOutcome::Grant {
        key: key(),
        user: "alice@example.test".into(),
        granting_session: SessionId(3),
    }
}

/// The answers the test's "server" gives.
#[derive(Debug)]
struct Backend {
    users: Vec<&'static str>,
    reserve: ReserveResult,
    lookup_fails: bool,
    store: StoreResult,
    /// (user, password) pairs that verify; CRAM-MD5 verifies for any listed user.
    accounts: Vec<(&'static str, &'static str)>,
    /// The delay a failed verification asks for.
    auth_delay: Duration,
    auth_temp_fails: bool,
}

impl Default for Backend {
    fn default() -> Backend {
        Backend {
            users: vec!["bob@example.test", "carol@example.org"],
            reserve: ReserveResult::Refused(RelayRefusal::NoGrant),
            lookup_fails: false,
            store: StoreResult::Stored,
            accounts: vec![("alice@example.test", "secret")],
            auth_delay: Duration::ZERO,
            auth_temp_fails: false,
        }
    }
}

impl Backend {
    fn granting() -> Backend {
        Backend {
            reserve: ReserveResult::Reserved(reservation()),
            ..Backend::default()
        }
    }

    fn answer(&self, effect: &SmtpEffect) -> Option<SmtpResult> {
        match effect {
            SmtpEffect::LookupLocal { address } => Some(SmtpResult::Lookup(if self.lookup_fails {
                LookupResult::TempFail
            } else if self.users.iter().any(|u| u.eq_ignore_ascii_case(address)) {
                LookupResult::Exists
            } else {
                LookupResult::Unknown
            })),
            SmtpEffect::ReserveGrant => Some(SmtpResult::Reserve(self.reserve.clone())),
            SmtpEffect::Deliver(_) => Some(SmtpResult::Stored(self.store)),
            SmtpEffect::Authenticate { credentials } => {
                Some(SmtpResult::Auth(self.verify(credentials)))
            }
            SmtpEffect::CommitGrant { .. }
            | SmtpEffect::ReleaseGrant { .. }
            | SmtpEffect::StartTls => None,
        }
    }

    fn verify(&self, credentials: &Credentials) -> AuthResult {
        if self.auth_temp_fails {
            return AuthResult::TempFail;
        }
        let found = self
            .accounts
            .iter()
            .find(|(user, password)| match credentials {
                Credentials::Password {
                    user: claimed,
                    password: given,
                    ..
                } => user.eq_ignore_ascii_case(claimed) && given.expose() == *password,
                Credentials::CramMd5 { user: claimed, .. } => user.eq_ignore_ascii_case(claimed),
                Credentials::Apop { .. } => false,
            });
        match found {
            Some((user, _)) => AuthResult::Ok {
                user: (*user).to_owned(),
            },
            None => AuthResult::Failed {
                delay: self.auth_delay,
            },
        }
    }
}

/// What the driver saw, in order: `S:` bytes written, `E:` effects performed.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    S(String),
    E(SmtpEffect),
}

#[derive(Debug)]
struct Run {
    session: SmtpSession,
    backend: Backend,
    seen: Vec<Seen>,
    events: Vec<Event>,
    /// Output not yet taken by `take`.
    out: String,
}

impl Run {
    fn new(config: SmtpConfig, backend: Backend) -> Run {
        Run::at(config, backend, "192.0.2.7:50000", false)
    }

    /// A session from `peer`, on a TLS connection from the start (SMTPS) or not.
    fn at(config: SmtpConfig, backend: Backend, peer: &str, tls: bool) -> Run {
        let session = SmtpSession::new(
            Arc::new(config),
            SessionId(7),
            Protocol::Smtp,
            peer.parse().expect("peer"),
            "192.0.2.1:25".parse().expect("local"),
            tls,
            NOW,
        );
        let mut run = Run {
            session,
            backend,
            seen: Vec::new(),
            events: Vec::new(),
            out: String::new(),
        };
        run.pump();
        run
    }

    /// A session past the greeting and EHLO.
    fn greeted(config: SmtpConfig, backend: Backend) -> Run {
        let mut run = Run::new(config, backend);
        run.send("EHLO client.example\r\n");
        run.take();
        run
    }

    /// The documented driving loop, minus the waiting.
    fn pump(&mut self) {
        loop {
            while let Some(bytes) = self.session.poll_transmit() {
                let text = String::from_utf8(bytes).expect("replies are UTF-8");
                self.out.push_str(&text);
                self.seen.push(Seen::S(text));
            }
            while let Some(event) = self.session.poll_event() {
                self.events.push(event);
            }
            let Some(effect) = self.session.poll_effect() else {
                break;
            };
            let result = self.backend.answer(&effect);
            assert_eq!(result.is_some(), effect.expects_result(), "{effect:?}");
            self.seen.push(Seen::E(effect));
            if let Some(result) = result {
                self.session.handle_result(NOW, result);
            }
        }
    }

    fn send(&mut self, input: &str) {
        self.send_bytes(input.as_bytes(), input.len().max(1));
    }

    fn send_bytes(&mut self, input: &[u8], chunk: usize) {
        for chunk in input.chunks(chunk) {
            if self.session.is_closed() {
                break;
            }
            assert!(self.session.wants_input());
            self.session.handle_input(NOW, chunk);
            self.pump();
        }
    }

    /// The replies written since the last call.
    fn take(&mut self) -> String {
        std::mem::take(&mut self.out)
    }

    fn effects(&self) -> Vec<SmtpEffect> {
        self.seen
            .iter()
            .filter_map(|s| match s {
                Seen::E(e) => Some(e.clone()),
                Seen::S(_) => None,
            })
            .collect()
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.effects()
            .into_iter()
            .filter_map(|e| match e {
                SmtpEffect::Deliver(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    fn kinds(&self) -> Vec<EventKind> {
        self.events.iter().map(|e| e.kind.clone()).collect()
    }

    fn decisions(&self) -> Vec<(String, RelayOutcome)> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::RelayDecision { rcpt, decision } => {
                    Some((rcpt.clone(), decision.clone()))
                }
                _ => None,
            })
            .collect()
    }
}

/// Reply lines as one string, CRLF after each.
fn s(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\r\n")).collect()
}

fn id(transaction: u64) -> String {
    format!("{:X}.7.{transaction}", NOW.0)
}

fn queued(transaction: u64) -> String {
    format!("250 2.0.0 Ok: queued as {}", id(transaction))
}

#[test]
fn greets_and_answers_the_simple_commands() {
    let mut run = Run::new(config(), Backend::default());
    assert_eq!(run.take(), GREETING);
    run.send("EHLO client.example\r\n");
    assert_eq!(run.take(), EHLO_REPLY);
    run.send(
        "helo client\r\nNOOP\r\nVRFY bob\r\nHELP\r\nEXPN staff\r\nFOO bar\r\nQUIT\r\nNOOP\r\n",
    );
    assert_eq!(
        run.take(),
        s(&[
            "250 mail.example.test",
            "250 2.0.0 Ok",
            "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
            "214 2.0.0 See RFC 5321; commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
            "502 5.5.1 Command not implemented",
            "500 5.5.2 Syntax error, command unrecognized",
            "221 2.0.0 Bye",
        ])
    );
    assert!(run.session.is_closed());
    assert!(!run.session.wants_input());
    assert_eq!(run.session.poll_timeout(), None);
    let kinds = run.kinds();
    assert_eq!(
        kinds.first(),
        Some(&EventKind::SessionOpened {
            protocol: Protocol::Smtp,
            peer: "192.0.2.7:50000".into(),
            local: "192.0.2.1:25".into(),
            tls: false,
        })
    );
    assert_eq!(
        kinds.last(),
        Some(&EventKind::SessionClosed {
            reason: CloseReason::Quit
        })
    );
    assert!(kinds.contains(&EventKind::ClientLine {
        line: "VRFY bob".into()
    }));
    assert!(kinds.contains(&EventKind::ServerLine {
        line: "250-PIPELINING".into()
    }));
    assert!(
        run.events
            .iter()
            .all(|e| e.session == Some(SessionId(7)) && e.at == NOW)
    );
}

#[test]
fn local_delivery_stores_the_exact_bytes_with_one_received_header() {
    let mut run = Run::new(config(), Backend::default());
    run.send(
        "EHLO client.example\r\nMAIL FROM:<sender@remote.example>\r\nRCPT TO:<Bob@EXAMPLE.test>\r\nDATA\r\n",
    );
    run.send("Subject: hi\r\n\r\n..leading dot\r\n\u{65e5} 8bit\tand tab \r\n.\r\nQUIT\r\n");
    assert_eq!(
        run.take(),
        format!(
            "{GREETING}{EHLO_REPLY}{}",
            s(&[
                "250 2.1.0 Ok",
                "250 2.1.5 Ok",
                "354 End data with <CR><LF>.<CR><LF>",
                &queued(1),
                "221 2.0.0 Bye",
            ])
        )
    );
    let received = format!(
        "Received: from client.example ([192.0.2.7])\r\n\
         \tby mail.example.test (popgate) with ESMTP id {}\r\n\
         \tfor <Bob@example.test>; {DATE}\r\n",
        id(1)
    );
    let body = "Subject: hi\r\n\r\n.leading dot\r\n\u{65e5} 8bit\tand tab \r\n";
    assert_eq!(
        run.effects(),
        vec![
            SmtpEffect::LookupLocal {
                address: "Bob@example.test".into()
            },
            SmtpEffect::Deliver(Delivery {
                id: id(1),
                from: "sender@remote.example".into(),
                recipients: vec![Recipient {
                    address: "Bob@example.test".into(),
                    local: true
                }],
                message: format!("{received}{body}").into_bytes(),
                relayed_for: None,
            }),
        ]
    );
    let kinds = run.kinds();
    assert!(kinds.contains(&EventKind::MailFrom {
        from: "sender@remote.example".into()
    }));
    assert!(kinds.contains(&EventKind::MessageAccepted {
        id: id(1),
        from: "sender@remote.example".into(),
        rcpts: vec!["Bob@example.test".into()],
        size: body.len() as u64,
        relayed: false,
    }));
    assert_eq!(
        run.decisions(),
        vec![("Bob@example.test".into(), RelayOutcome::Local)]
    );
    // DATA content is never streamed as client lines.
    assert!(!kinds.iter().any(|k| matches!(
        k,
        EventKind::ClientLine { line } if line.contains("leading dot")
    )));
}

#[test]
fn relay_is_refused_without_a_grant() {
    let mut run = Run::greeted(config(), Backend::default());
    run.send("MAIL FROM:<alice@example.test>\r\nRCPT TO:<friend@remote.example>\r\nDATA\r\n");
    assert_eq!(
        run.take(),
        s(&[
            "250 2.1.0 Ok",
            "554 5.7.1 Relay access denied",
            "554 5.5.1 No valid recipients",
        ])
    );
    assert_eq!(run.effects(), vec![SmtpEffect::ReserveGrant]);
    assert_eq!(
        run.decisions(),
        vec![(
            "friend@remote.example".into(),
            RelayOutcome::Denied {
                reason: RelayRefusal::NoGrant
            }
        )]
    );

    // A listener whose policy allows neither grants nor AUTH asks nothing.
    let mut closed = config();
    closed.relay = RelayPolicy::default();
    let mut run = Run::greeted(closed, Backend::granting());
    run.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<friend@remote.example>\r\n");
    assert_eq!(
        run.take(),
        s(&["250 2.1.0 Ok", "554 5.7.1 Relay access denied"])
    );
    assert_eq!(run.effects(), vec![]);

    // Submission: AUTH only; without AUTH the reason says so.
    let mut submission = config();
    submission.relay = RelayPolicy::submission_default();
    let mut run = Run::greeted(submission, Backend::granting());
    run.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<x@remote.example>\r\n");
    assert_eq!(run.effects(), vec![]);
    assert_eq!(
        run.decisions(),
        vec![(
            "x@remote.example".into(),
            RelayOutcome::Denied {
                reason: RelayRefusal::AuthRequired
            }
        )]
    );

    // A grant store failure is temporary.
    let mut run = Run::greeted(
        config(),
        Backend {
            reserve: ReserveResult::TempFail,
            ..Backend::default()
        },
    );
    run.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<x@remote.example>\r\n");
    assert_eq!(
        run.take(),
        s(&[
            "250 2.1.0 Ok",
            "451 4.3.0 Temporary failure, try again later"
        ])
    );
}

#[test]
fn relay_on_a_grant_reserves_once_and_commits_after_the_250() {
    let mut run = Run::greeted(config(), Backend::granting());
    let transaction = "MAIL FROM:<alice@example.test>\r\n\
                       RCPT TO:<x@remote.example>\r\n\
                       RCPT TO:<Y@Remote.Example>\r\n\
                       RCPT TO:<bob@example.test>\r\n\
                       DATA\r\n\
                       Subject: relayed\r\n\r\nhello\r\n.\r\n";
    run.send(transaction);
    assert_eq!(
        run.take(),
        s(&[
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            &queued(1),
        ])
    );
    let received = format!(
        "Received: from client.example ([192.0.2.7])\r\n\
         \tby mail.example.test (popgate) with ESMTP id {}\r\n\
         \t(relayed on a POP-before-SMTP grant for alice@example.test);\r\n\
         \t{DATE}\r\n",
        id(1)
    );
    let delivery = Delivery {
        id: id(1),
        from: "alice@example.test".into(),
        recipients: vec![
            Recipient {
                address: "x@remote.example".into(),
                local: false,
            },
            Recipient {
                address: "Y@remote.example".into(),
                local: false,
            },
            Recipient {
                address: "bob@example.test".into(),
                local: true,
            },
        ],
        message: format!("{received}Subject: relayed\r\n\r\nhello\r\n").into_bytes(),
        relayed_for: Some("alice@example.test".into()),
    };
    assert_eq!(
        run.effects(),
        vec![
            SmtpEffect::ReserveGrant,
            SmtpEffect::LookupLocal {
                address: "bob@example.test".into()
            },
            SmtpEffect::Deliver(delivery),
            SmtpEffect::CommitGrant { key: key() },
        ]
    );
    // The commit is performed only after the 250 was written.
    let queued_at = run
        .seen
        .iter()
        .position(|s| matches!(s, Seen::S(t) if t.contains("queued")));
    let commit_at = run
        .seen
        .iter()
        .position(|s| matches!(s, Seen::E(SmtpEffect::CommitGrant { .. })));
    assert!(queued_at.is_some() && queued_at < commit_at);
    assert_eq!(
        run.decisions(),
        vec![
            ("x@remote.example".into(), grant_outcome()),
            ("Y@remote.example".into(), grant_outcome()),
            ("bob@example.test".into(), RelayOutcome::Local),
        ]
    );
    assert!(
        run.kinds()
            .iter()
            .any(|k| matches!(k, EventKind::MessageAccepted { relayed: true, .. }))
    );

    // The next transaction reserves anew, once.
    run.send("MAIL FROM:<alice@example.test>\r\nRCPT TO:<z@remote.example>\r\nDATA\r\nx\r\n.\r\n");
    let reserves = run
        .effects()
        .iter()
        .filter(|e| **e == SmtpEffect::ReserveGrant)
        .count();
    let commits = run
        .effects()
        .iter()
        .filter(|e| matches!(e, SmtpEffect::CommitGrant { .. }))
        .count();
    assert_eq!((reserves, commits), (2, 2));
    assert!(run.take().ends_with(&format!("{}\r\n", queued(2))));
}

#[test]
fn trusted_networks_relay_without_a_grant() {
    let mut trusted = config();
    trusted.relay.trusted = vec!["192.0.2.0/24".parse().expect("cidr")];
    let mut run = Run::greeted(trusted, Backend::granting());
    run.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<x@remote.example>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(
        run.decisions(),
        vec![("x@remote.example".into(), RelayOutcome::Trusted)]
    );
    let deliveries = run.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].relayed_for, None);
    assert!(
        !run.effects()
            .iter()
            .any(|e| matches!(e, SmtpEffect::ReserveGrant | SmtpEffect::CommitGrant { .. }))
    );
}

#[test]
fn reservations_are_released_when_the_transaction_ends_without_a_message() {
    let release = SmtpEffect::ReleaseGrant { key: key() };
    let relayed = "MAIL FROM:<a@example.test>\r\nRCPT TO:<x@remote.example>\r\n";
    for (ending, reply) in [
        ("RSET\r\n", "250 2.0.0 Ok\r\n".to_owned()),
        ("EHLO again\r\n", EHLO_REPLY.to_owned()),
        ("QUIT\r\n", "221 2.0.0 Bye\r\n".to_owned()),
        (
            "DATA\r\nx\r\n.\r\n",
            s(&[
                "354 End data with <CR><LF>.<CR><LF>",
                "451 4.3.0 Temporary failure storing the message, try again later",
            ]),
        ),
    ] {
        let mut run = Run::greeted(
            config(),
            Backend {
                store: StoreResult::TempFail,
                ..Backend::granting()
            },
        );
        run.send(relayed);
        run.take();
        run.send(ending);
        assert_eq!(run.take(), reply, "{ending:?}");
        assert_eq!(
            run.effects(),
            vec![SmtpEffect::ReserveGrant]
                .into_iter()
                .chain(run.deliveries().into_iter().map(SmtpEffect::Deliver))
                .chain([release.clone()])
                .collect::<Vec<_>>(),
            "{ending:?}"
        );
    }

    // Disk full: 452 4.3.1, released.
    let mut run = Run::greeted(
        config(),
        Backend {
            store: StoreResult::DiskFull,
            ..Backend::granting()
        },
    );
    run.send(relayed);
    run.send("DATA\r\nx\r\n.\r\n");
    assert!(
        run.take()
            .ends_with("452 4.3.1 Insufficient system storage\r\n")
    );
    assert_eq!(run.effects().last(), Some(&release));

    // Disconnect in the middle of DATA: released, nothing delivered.
    let mut run = Run::greeted(config(), Backend::granting());
    run.send(relayed);
    run.send("DATA\r\nhalf a mess");
    run.session.handle_disconnect(NOW);
    run.pump();
    assert_eq!(
        run.effects(),
        vec![SmtpEffect::ReserveGrant, release.clone()]
    );
    assert!(run.session.is_closed());
    assert_eq!(
        run.kinds().last(),
        Some(&EventKind::SessionClosed {
            reason: CloseReason::PeerClosed
        })
    );
}

#[test]
fn a_reservation_in_flight_when_the_peer_leaves_is_released() {
    let mut run = Run::greeted(config(), Backend::granting());
    run.session.handle_input(
        NOW,
        b"MAIL FROM:<a@example.test>\r\nRCPT TO:<x@remote.example>\r\n",
    );
    assert_eq!(run.session.poll_effect(), Some(SmtpEffect::ReserveGrant));
    assert!(!run.session.wants_input());
    assert_eq!(run.session.poll_timeout(), None);
    run.session.handle_disconnect(NOW);
    run.session.handle_result(
        NOW,
        SmtpResult::Reserve(ReserveResult::Reserved(reservation())),
    );
    assert_eq!(
        run.session.poll_effect(),
        Some(SmtpEffect::ReleaseGrant { key: key() })
    );
    assert_eq!(run.session.poll_effect(), None);
}

#[test]
fn a_delivery_not_yet_handed_out_is_dropped_on_disconnect() {
    let mut run = Run::greeted(config(), Backend::default());
    run.session.handle_input(
        NOW,
        b"MAIL FROM:<a@example.test>\r\nRCPT TO:<postmaster>\r\nDATA\r\nx\r\n.\r\n",
    );
    run.session.handle_disconnect(NOW);
    assert_eq!(run.session.poll_effect(), None);
}

#[test]
fn postmaster_is_accepted_without_a_lookup() {
    let mut run = Run::greeted(config(), Backend::default());
    run.send(
        "MAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nRCPT TO:<PostMaster@EXAMPLE.ORG>\r\n\
         RCPT TO:<\"postmaster\"@example.test>\r\nRCPT TO:<POSTMASTER>\r\n",
    );
    assert_eq!(
        run.take(),
        s(&[
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok"
        ])
    );
    assert_eq!(run.effects(), vec![]);
    assert_eq!(
        run.decisions(),
        vec![
            ("postmaster@example.test".into(), RelayOutcome::Local),
            ("PostMaster@example.org".into(), RelayOutcome::Local),
        ]
    );
    // postmaster of somebody else's domain is an ordinary relay.
    run.send("RCPT TO:<postmaster@remote.example>\r\n");
    assert_eq!(run.take(), s(&["554 5.7.1 Relay access denied"]));
    assert_eq!(run.effects(), vec![SmtpEffect::ReserveGrant]);
}

#[test]
fn unknown_local_users_are_refused() {
    let mut run = Run::greeted(config(), Backend::default());
    run.send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<nobody@example.test>\r\n");
    assert_eq!(
        run.take(),
        s(&[
            "250 2.1.0 Ok",
            "550 5.1.1 Recipient address rejected: User unknown"
        ])
    );
    assert_eq!(
        run.decisions(),
        vec![("nobody@example.test".into(), RelayOutcome::UnknownUser)]
    );

    let mut run = Run::greeted(
        config(),
        Backend {
            lookup_fails: true,
            ..Backend::default()
        },
    );
    run.send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.test>\r\n");
    assert_eq!(
        run.take(),
        s(&[
            "250 2.1.0 Ok",
            "451 4.3.0 Temporary failure, try again later"
        ])
    );
    assert_eq!(run.decisions(), vec![]);
}

#[test]
fn pipelined_commands_in_one_read_are_answered_in_order() {
    let mut run = Run::new(config(), Backend::default());
    run.take();
    run.send(
        "EHLO client.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.test>\r\n\
         RCPT TO:<nobody@example.test>\r\nRCPT TO:<x@remote.example>\r\nRCPT TO:<carol@example.org>\r\n\
         DATA\r\nhi\r\n.\r\nMAIL FROM:<b@remote.example>\r\nRSET\r\nQUIT\r\n",
    );
    assert_eq!(
        run.take(),
        format!(
            "{EHLO_REPLY}{}",
            s(&[
                "250 2.1.0 Ok",
                "250 2.1.5 Ok",
                "550 5.1.1 Recipient address rejected: User unknown",
                "554 5.7.1 Relay access denied",
                "250 2.1.5 Ok",
                "354 End data with <CR><LF>.<CR><LF>",
                &queued(1),
                "250 2.1.0 Ok",
                "250 2.0.0 Ok",
                "221 2.0.0 Bye",
            ])
        )
    );
    let deliveries = run.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(
        deliveries[0]
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect::<Vec<_>>(),
        vec!["bob@example.test", "carol@example.org"]
    );
}

#[test]
fn bare_line_endings_never_end_data() {
    // Normalised rather than refused (the default, tested in `hardening`), so the
    // one message that results can be looked at.
    let config = SmtpConfig {
        bare_newline: BareNewline::Normalize,
        ..config()
    };
    for smuggle in [
        "\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r\n.\r", "\r.\r\n", "\n.\r",
    ] {
        let mut run = Run::greeted(config.clone(), Backend::default());
        let input = format!(
            "MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n\
             Subject: one\r\n\r\nfirst{smuggle}MAIL FROM:<evil@remote.example>\r\n\
             RCPT TO:<carol@example.org>\r\nDATA\r\nSubject: two\r\n\r\n.\r\nNOOP\r\n"
        );
        run.send(&input);
        assert_eq!(
            run.take(),
            s(&[
                "250 2.1.0 Ok",
                "250 2.1.5 Ok",
                "354 End data with <CR><LF>.<CR><LF>",
                &queued(1),
                "250 2.0.0 Ok",
            ]),
            "{smuggle:?}"
        );
        let deliveries = run.deliveries();
        assert_eq!(deliveries.len(), 1, "{smuggle:?}");
        let message = String::from_utf8(deliveries[0].message.clone()).expect("utf-8");
        assert!(
            message.contains("MAIL FROM:<evil@remote.example>"),
            "{smuggle:?}"
        );
    }
}

#[test]
fn size_limits_are_advertised_and_enforced() {
    let mut small = config();
    small.max_message_size = 100;
    let mut run = Run::new(small, Backend::granting());
    run.send("EHLO client.example\r\n");
    assert!(run.take().contains("250-SIZE 100\r\n"));
    run.send("MAIL FROM:<a@example.test> SIZE=101\r\nMAIL FROM:<a@example.test> SIZE=100\r\n");
    assert_eq!(
        run.take(),
        s(&["552 5.3.4 Message size exceeds fixed limit", "250 2.1.0 Ok"])
    );
    run.send("RCPT TO:<x@remote.example>\r\nDATA\r\n");
    run.take();
    let big = format!("{}\r\n.\r\nNOOP\r\n", "x".repeat(150));
    run.send(&big);
    assert_eq!(
        run.take(),
        s(&["552 5.3.4 Message size exceeds fixed limit", "250 2.0.0 Ok"])
    );
    assert_eq!(
        run.effects(),
        vec![
            SmtpEffect::ReserveGrant,
            SmtpEffect::ReleaseGrant { key: key() }
        ]
    );
    // Exactly at the limit is fine.
    run.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n");
    run.send(&format!("{}\r\n.\r\n", "y".repeat(98)));
    assert!(run.take().ends_with(&format!("{}\r\n", queued(2))));
}

#[test]
fn more_than_100_received_headers_is_a_loop() {
    let headers = "Received: from a by b; Sat, 28 Nov 2026 19:00:00 +0000\r\n".repeat(100);
    for (extra, expected) in [
        ("", queued(1)),
        (
            "received: from c by d\r\n",
            "554 5.4.6 Too many Received headers: mail loop detected".to_owned(),
        ),
    ] {
        let mut run = Run::greeted(config(), Backend::granting());
        run.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<x@remote.example>\r\nDATA\r\n");
        run.take();
        run.send(&format!("{extra}{headers}Subject: x\r\n\r\nbody\r\n.\r\n"));
        assert_eq!(run.take(), s(&[&expected]));
        let last = run.effects().last().cloned();
        if extra.is_empty() {
            assert_eq!(last, Some(SmtpEffect::CommitGrant { key: key() }));
        } else {
            assert_eq!(last, Some(SmtpEffect::ReleaseGrant { key: key() }));
        }
    }
}

#[test]
fn the_same_transcript_in_any_chunking_gives_the_same_result() {
    let transcript: &[u8] = b"EHLO client.example\r\n\
        MAIL FROM:<a@example.test> SIZE=20 BODY=8BITMIME\r\n\
        RCPT TO:<bob@example.test>\r\nRCPT TO:<nobody@example.test>\r\n\
        RCPT TO:<x@remote.example>\r\nRCPT TO:<postmaster>\r\nDATA\r\n\
        Subject: chunks\r\n\r\n..dot\r\nbare\n.\nstill data\r\n\xe6\x97\xa5\r\n.\r\n\
        NOOP\r\nRSET\r\nMAIL FROM:<>\r\nRCPT TO:<y@remote.example>\r\nRSET\r\n\
        FOO\r\nQUIT\r\n";
    let run_with = |chunk: usize| {
        // The bare LF in the message is normalised, not refused, so it is delivered.
        let config = SmtpConfig {
            bare_newline: BareNewline::Normalize,
            ..config()
        };
        let mut run = Run::new(config, Backend::granting());
        run.send_bytes(transcript, chunk);
        assert!(run.session.is_closed(), "chunk {chunk}");
        (run.take(), run.seen, run.events)
    };
    let whole = run_with(transcript.len());
    assert!(whole.0.ends_with("221 2.0.0 Bye\r\n"));
    assert_eq!(
        whole.0.matches("queued as").count(),
        1,
        "one message in {}",
        whole.0
    );
    let mut chunk = 1;
    while chunk <= 512 {
        let chunked = run_with(chunk);
        assert_eq!(chunked.0, whole.0, "chunk {chunk}");
        // Writes may be split differently; the effects between them may not.
        let effects = |seen: &[Seen]| -> Vec<SmtpEffect> {
            seen.iter()
                .filter_map(|s| match s {
                    Seen::E(e) => Some(e.clone()),
                    Seen::S(_) => None,
                })
                .collect()
        };
        assert_eq!(effects(&chunked.1), effects(&whole.1), "chunk {chunk}");
        assert_eq!(chunked.2, whole.2, "chunk {chunk}");
        chunk *= 2;
    }
}

#[test]
fn idle_timeout_releases_and_closes() {
    let mut run = Run::greeted(config(), Backend::granting());
    run.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<x@remote.example>\r\n");
    run.take();
    let deadline = NOW.saturating_add(Duration::from_secs(300));
    assert_eq!(run.session.poll_timeout(), Some(deadline));
    // A timer that fires early changes nothing.
    run.session.handle_timeout(Millis(deadline.0 - 1));
    run.pump();
    assert_eq!(run.take(), "");
    run.session.handle_timeout(deadline);
    run.pump();
    assert_eq!(run.take(), s(&["421 4.4.2 Error: timeout exceeded"]));
    assert!(run.session.is_closed());
    assert_eq!(
        run.effects().last(),
        Some(&SmtpEffect::ReleaseGrant { key: key() })
    );
    assert_eq!(
        run.kinds().last(),
        Some(&EventKind::SessionClosed {
            reason: CloseReason::Timeout
        })
    );
}

#[test]
fn shutdown_waits_for_the_message_in_progress() {
    // Idle: at once.
    let mut run = Run::greeted(config(), Backend::default());
    run.session.handle_shutdown(NOW);
    run.pump();
    assert_eq!(
        run.take(),
        s(&["421 4.3.2 Service shutting down, closing transmission channel"])
    );
    assert!(run.session.is_closed());

    // Inside DATA: the message is finished first, pipelined commands after it are not
    // executed.
    let mut run = Run::greeted(config(), Backend::default());
    run.send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\npart");
    run.take();
    run.session.handle_shutdown(NOW);
    run.pump();
    assert_eq!(run.take(), "");
    assert!(!run.session.is_closed());
    run.send(" two\r\n.\r\nNOOP\r\n");
    assert_eq!(
        run.take(),
        s(&[
            &queued(1),
            "421 4.3.2 Service shutting down, closing transmission channel"
        ])
    );
    assert_eq!(run.deliveries().len(), 1);
    assert_eq!(
        run.kinds().last(),
        Some(&EventKind::SessionClosed {
            reason: CloseReason::ShuttingDown
        })
    );
}

#[test]
fn nothing_is_processed_while_a_result_is_awaited() {
    let mut run = Run::greeted(config(), Backend::default());
    run.session.handle_input(
        NOW,
        b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.test>\r\nNOOP\r\n",
    );
    assert_eq!(
        run.session.poll_transmit(),
        Some(b"250 2.1.0 Ok\r\n".to_vec())
    );
    assert_eq!(
        run.session.poll_effect(),
        Some(SmtpEffect::LookupLocal {
            address: "bob@example.test".into()
        })
    );
    assert!(!run.session.wants_input());
    assert_eq!(run.session.poll_transmit(), None);
    run.session
        .handle_result(NOW, SmtpResult::Lookup(LookupResult::Exists));
    assert_eq!(
        run.session.poll_transmit(),
        Some(b"250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n".to_vec())
    );
    assert!(run.session.wants_input());
}

#[test]
fn sequence_and_parameter_errors() {
    let mut run = Run::new(config(), Backend::default());
    run.take();
    run.send(
        "MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n\
         HELO client\r\nMAIL FROM:<a@remote.example> SIZE=10\r\nMAIL FROM:<a@remote.example>\r\n\
         MAIL FROM:<b@remote.example>\r\nDATA\r\nRCPT TO:<bob@example.test> NOTIFY=NEVER\r\n\
         RCPT TO:<bob@example.test..>\r\nRCPT TO:bob@example.test\r\n",
    );
    assert_eq!(
        run.take(),
        s(&[
            "503 5.5.1 Bad sequence of commands",
            "503 5.5.1 Bad sequence of commands",
            "503 5.5.1 Bad sequence of commands",
            "250 mail.example.test",
            "555 5.5.4 Unsupported MAIL or RCPT parameter",
            "250 2.1.0 Ok",
            "503 5.5.1 Bad sequence of commands",
            "554 5.5.1 No valid recipients",
            "555 5.5.4 Unsupported MAIL or RCPT parameter",
            "501 5.1.3 Bad address syntax",
            "501 5.1.3 Bad address syntax",
        ])
    );
    // A HELO transaction is recorded as SMTP.
    run.send("RCPT TO:<bob@example.test>\r\nDATA\r\nx\r\n.\r\n");
    let message = run.deliveries()[0].message.clone();
    assert!(
        String::from_utf8(message)
            .expect("utf-8")
            .contains("(popgate) with SMTP id")
    );
}

#[test]
fn non_ascii_addresses_need_smtputf8() {
    let mut run = Run::greeted(config(), Backend::granting());
    run.send(
        "MAIL FROM:<\u{7530}\u{4e2d}@example.test>\r\nMAIL FROM:<a@example.test>\r\n\
         RCPT TO:<\u{5c71}\u{7530}@remote.example>\r\nRSET\r\n\
         MAIL FROM:<\u{7530}\u{4e2d}@example.test> SMTPUTF8\r\n\
         RCPT TO:<\u{5c71}\u{7530}@\u{4f8b}\u{3048}.example>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(
        run.take(),
        s(&[
            "553 5.6.7 Non-ASCII address requires SMTPUTF8",
            "250 2.1.0 Ok",
            "553 5.6.7 Non-ASCII address requires SMTPUTF8",
            "250 2.0.0 Ok",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            &queued(2),
        ])
    );
    let delivery = &run.deliveries()[0];
    assert_eq!(delivery.from, "\u{7530}\u{4e2d}@example.test");
    assert!(
        String::from_utf8(delivery.message.clone())
            .expect("utf-8")
            .contains("with UTF8SMTP id")
    );
}

#[test]
fn too_many_recipients() {
    let mut few = config();
    few.max_recipients = 2;
    let mut run = Run::greeted(few, Backend::default());
    run.send(
        "MAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<carol@example.org>\r\n\
         RCPT TO:<bob@example.test>\r\nRCPT TO:<postmaster>\r\n",
    );
    assert_eq!(
        run.take(),
        s(&[
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            // a duplicate is accepted (and delivered once)
            "250 2.1.5 Ok",
            "452 4.5.3 Too many recipients",
        ])
    );
}

#[test]
fn bad_input_is_answered_and_the_session_goes_on() {
    let mut short = config();
    short.max_command_line = 40;
    let mut run = Run::greeted(short, Backend::default());
    let long = format!("NOOP {}\r\n", "x".repeat(100));
    run.send(&long);
    run.send_bytes(b"NO\0OP\r\nRCPT TO:<\xff@example.test>\r\nNOOP\r\n", 3);
    assert_eq!(
        run.take(),
        s(&[
            "500 5.5.6 Line too long",
            "500 5.5.2 Syntax error, command unrecognized",
            "500 5.5.2 Syntax error, command unrecognized",
            "250 2.0.0 Ok",
        ])
    );
    // An overlong line arriving in pieces is reported once.
    run.send_bytes(long.as_bytes(), 7);
    run.send("NOOP\r\n");
    assert_eq!(run.take(), s(&["500 5.5.6 Line too long", "250 2.0.0 Ok"]));
    assert!(!run.session.is_closed());
}

#[test]
fn auth_payloads_are_redacted_from_events() {
    let mut run = Run::greeted(config(), Backend::default());
    run.send("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    assert_eq!(
        run.take(),
        s(&["538 5.7.11 Encryption required for requested authentication mechanism"])
    );
    assert!(run.kinds().contains(&EventKind::ClientLine {
        line: "AUTH PLAIN ****".into()
    }));
    run.send("AUTH\tPLAIN\tAGFsaWNlAHNlY3JldA==\r\n");
    assert_eq!(
        run.kinds()
            .iter()
            .filter(|k| **k
                == EventKind::ClientLine {
                    line: "AUTH PLAIN ****".into()
                })
            .count(),
        2
    );
    assert!(!format!("{:?}", run.events).contains("AGFsaWNlAHNlY3JldA"));
}

#[test]
fn return_path_header_names_the_reverse_path() {
    assert_eq!(
        return_path_header("a@example.test"),
        "Return-Path: <a@example.test>\r\n"
    );
    assert_eq!(return_path_header(""), "Return-Path: <>\r\n");
}

#[test]
fn buffered_pipelined_input_is_bounded() {
    // 20 000 NOOPs are far past the junk command limit, which is not tested here.
    let mut config = config();
    config.error_limits.junk_commands = u32::MAX;
    let mut run = Run::greeted(config, Backend::default());
    run.session.handle_input(
        NOW,
        b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.test>\r\n",
    );
    assert!(!run.session.wants_input(), "a lookup is awaited");
    let noops = "NOOP\r\n".repeat(20_000);
    run.session.handle_input(NOW, noops.as_bytes());
    assert!(!run.session.wants_input());
    run.pump();
    assert!(run.session.wants_input());
    assert_eq!(run.take().matches("250 2.0.0 Ok\r\n").count(), 20_000);
}

/// A small fuzz in the protocol's alphabet (deterministic, so it runs everywhere):
/// whatever arrives, the session never panics, and answers or waits.
#[test]
fn arbitrary_input_never_panics() {
    const PIECES: &[&str] = &[
        "EHLO x\r\n",
        "HELO x\r\n",
        "MAIL FROM:<a@remote.example>\r\n",
        "MAIL FROM:<>",
        " SIZE=5",
        " SMTPUTF8",
        "RCPT TO:<bob@example.test>\r\n",
        "RCPT TO:<x@remote.example>\r\n",
        "RCPT TO:<postmaster>\r\n",
        "DATA\r\n",
        "\r\n.\r\n",
        ".",
        "\r",
        "\n",
        "\0",
        "\u{7530}",
        "\u{ff}",
        "RSET\r\n",
        "NOOP\r\n",
        "<",
        ">",
        "@",
        "\"",
        "AUTH PLAIN x\r\n",
        "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n",
        "AUTH LOGIN\r\n",
        "AUTH CRAM-MD5\r\n",
        "*\r\n",
        "YWxpY2U=\r\n",
        "STARTTLS\r\n",
        "Received: x\r\n",
    ];
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    let mut delivered = 0;
    for round in 0..200 {
        let backend = if round % 2 == 0 {
            Backend::granting()
        } else {
            Backend::default()
        };
        // Half the rounds from 127.0.0.1, where AUTH runs without TLS.
        let peer = if round % 4 < 2 {
            "192.0.2.7:50000"
        } else {
            "127.0.0.1:50000"
        };
        // Random commands make many errors: no error limit here, it would end most
        // sessions before their end of data.
        let mut config = config();
        config.error_limits.hard = u32::MAX;
        // Stray "\r" and "\n" pieces would get every message refused.
        config.bare_newline = BareNewline::Normalize;
        let mut run = Run::at(config, backend, peer, false);
        let mut input = Vec::new();
        for _ in 0..60 {
            input.extend_from_slice(PIECES[next() % PIECES.len()].as_bytes());
        }
        let chunk = 1 + next() % 64;
        run.send_bytes(&input, chunk);
        run.session.handle_disconnect(NOW);
        run.pump();
        assert!(run.session.is_closed());
        // Every reservation granted ends in a commit or a release.
        let effects = run.effects();
        delivered += run.deliveries().len();
        let reserved = effects
            .iter()
            .filter(|e| **e == SmtpEffect::ReserveGrant)
            .count();
        let settled = effects
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    SmtpEffect::CommitGrant { .. } | SmtpEffect::ReleaseGrant { .. }
                )
            })
            .count();
        if round % 2 == 0 {
            assert_eq!(reserved, settled, "round {round}: {effects:?}");
        } else {
            assert_eq!(settled, 0, "round {round}: nothing was reserved");
        }
    }
    assert!(delivered > 0, "the input reaches the end of data");
}

mod hardening;
mod limits;
mod tls_auth;
