//! Protocol hardening, each rule with the exact reply: SMTP smuggling (RFC 5321
//! §2.3.8, §4.1.1.4), pipelining discipline (RFC 2920 §3.1, RFC 5321 §4.3.1), other
//! protocols sent to the port, the error and junk limits, the address forms read
//! before the relay decision (RFC 5321 §3.6.1, §4.1.2, §4.1.3), and NUL or invalid
//! UTF-8 in every command. These use the default pipelining discipline, so every
//! client line is its own read unless a test pipelines on purpose.

use super::*;
use crate::testing::test;

const SYNC: &str = "554 5.5.0 Error: SMTP protocol synchronization\r\n";
const FOREIGN: &str = "554 5.5.0 Error: not an SMTP command, closing\r\n";
const BARE_LF: &str = "550 5.5.2 Error: bare <LF> received\r\n";
const BARE_CR: &str = "550 5.5.2 Error: bare <CR> received\r\n";
const RELAY_DENIED: &str = "554 5.7.1 Relay access denied\r\n";
const UNKNOWN: &str = "550 5.1.1 Recipient address rejected: User unknown\r\n";
const UNSAFE: &str = "553 5.1.3 Recipient address rejected: bad local part\r\n";
const OK_RCPT: &str = "250 2.1.5 Ok\r\n";
const TOO_MANY_ERRORS: &str = "421 4.7.0 Error: too many errors\r\n";

/// The default configuration, with this test file's domains and hostname.
fn strict() -> SmtpConfig {
    SmtpConfig {
        forbid_unauth_pipelining: true,
        ..config()
    }
}

/// Send each line as its own read, as a client that waits for every reply does.
fn lines(run: &mut Run, lines: &[&str]) {
    for line in lines {
        run.send(&format!("{line}\r\n"));
    }
}

fn greeted_strict(backend: Backend) -> Run {
    let mut run = Run::new(strict(), backend);
    run.take();
    run.send("EHLO client.example\r\n");
    run.take();
    run
}

#[test]
fn smuggled_end_of_data_variants_are_refused_and_never_end_the_message() {
    for (end, refusal) in [
        ("\n.\n", BARE_LF),
        ("\r.\r", BARE_CR),
        ("\r\n.\n", BARE_LF),
        ("\n.\r\n", BARE_LF),
        ("\r.\r\n", BARE_CR),
        ("\r\n.\r", BARE_CR),
    ] {
        let mut run = greeted_strict(Backend::default());
        lines(
            &mut run,
            &[
                "MAIL FROM:<a@remote.example>",
                "RCPT TO:<bob@example.test>",
                "DATA",
            ],
        );
        assert_eq!(
            run.take(),
            s(&[
                "250 2.1.0 Ok",
                "250 2.1.5 Ok",
                "354 End data with <CR><LF>.<CR><LF>"
            ])
        );
        // C: the message, a smuggled transaction after the bare "end", then the real end.
        run.send(&format!(
            "Subject: x\r\n\r\nbefore{end}MAIL FROM:<evil@remote.example>\r\n\
             RCPT TO:<bob@example.test>\r\nDATA\r\nevil\r\n.\r\n"
        ));
        assert_eq!(
            run.take(),
            refusal,
            "{end:?}: one reply, to the real end of data"
        );
        assert!(run.deliveries().is_empty(), "{end:?}: nothing stored");
        // The session goes on in step: the next command is answered as a command.
        lines(&mut run, &["NOOP"]);
        assert_eq!(run.take(), "250 2.0.0 Ok\r\n", "{end:?}");
    }
}

#[test]
fn normalised_bare_line_endings_make_one_message_without_a_bare_lf() {
    for end in ["\n.\n", "\r.\r", "\r\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\r"] {
        let config = SmtpConfig {
            bare_newline: BareNewline::Normalize,
            ..strict()
        };
        let mut run = Run::new(config, Backend::granting());
        run.send("EHLO client.example\r\n");
        lines(
            &mut run,
            &[
                "MAIL FROM:<a@example.test>",
                "RCPT TO:<x@remote.example>",
                "DATA",
            ],
        );
        run.take();
        run.send(&format!(
            "Subject: x\r\n\r\nbefore{end}MAIL FROM:<evil@remote.example>\r\nevil\r\n.\r\n"
        ));
        assert_eq!(run.take(), format!("{}\r\n", queued(1)), "{end:?}");
        let deliveries = run.deliveries();
        assert_eq!(deliveries.len(), 1, "{end:?}: one message");
        let message = &deliveries[0].message;
        for (i, &b) in message.iter().enumerate() {
            let paired = match b {
                b'\r' => message.get(i + 1) == Some(&b'\n'),
                b'\n' => i > 0 && message[i - 1] == b'\r',
                _ => true,
            };
            assert!(
                paired,
                "{end:?}: bare CR or LF at {i} of the queued message"
            );
        }
        assert!(
            message.ends_with(b"before\r\n.\r\nMAIL FROM:<evil@remote.example>\r\nevil\r\n")
                || message.ends_with(b"before\r\n\r\nMAIL FROM:<evil@remote.example>\r\nevil\r\n")
                || message
                    .ends_with(b"before\r\n.\r\n\r\nMAIL FROM:<evil@remote.example>\r\nevil\r\n")
                || message
                    .ends_with(b"before\r\n\r\n\r\nMAIL FROM:<evil@remote.example>\r\nevil\r\n"),
            "{end:?}: the smuggled part stays inside the one message: {:?}",
            String::from_utf8_lossy(message)
        );
    }
}

#[test]
fn an_early_talker_gets_554_and_is_closed() {
    let config = SmtpConfig {
        greet_pause: Duration::from_secs(3),
        ..strict()
    };
    // C: EHLO before the (held) greeting.
    let mut run = Run::new(config.clone(), Backend::default());
    assert_eq!(run.take(), "", "the greeting is held");
    assert_eq!(
        run.session.poll_timeout(),
        Some(NOW.saturating_add(Duration::from_secs(3)))
    );
    assert!(run.session.wants_input(), "reading, to see an early talker");
    run.send("EHLO spam.example\r\n");
    assert_eq!(run.take(), SYNC);
    assert!(run.session.is_closed());
    assert!(
        run.kinds().contains(&EventKind::SessionClosed {
            reason: CloseReason::Error
        }),
        "{:?}",
        run.kinds()
    );

    // A client that waits gets the greeting when the pause ends, and is served.
    let mut run = Run::new(config, Backend::default());
    run.session
        .handle_timeout(NOW.saturating_add(Duration::from_secs(3)));
    run.pump();
    assert_eq!(run.take(), GREETING);
    run.send("EHLO client.example\r\n");
    assert_eq!(run.take(), EHLO_REPLY);
}

#[test]
fn pipelining_without_ehlo_gets_554_and_a_close() {
    // C: HELO and MAIL in one write: PIPELINING was never offered.
    let mut run = Run::new(strict(), Backend::default());
    run.take();
    run.send("HELO client\r\nMAIL FROM:<a@remote.example>\r\n");
    assert_eq!(run.take(), SYNC);
    assert!(run.session.is_closed());

    // Nor in a HELO session after the greeting exchange.
    let mut run = Run::new(strict(), Backend::default());
    run.take();
    run.send("HELO client\r\n");
    assert_eq!(run.take(), "250 mail.example.test\r\n");
    run.send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.test>\r\n");
    assert_eq!(run.take(), SYNC);

    // EHLO itself may not be pipelined with what follows (the client cannot know yet).
    let mut run = Run::new(strict(), Backend::default());
    run.take();
    run.send("EHLO client\r\nMAIL FROM:<a@remote.example>\r\n");
    assert_eq!(run.take(), SYNC);

    // A HELO client that sends QUIT before the reply to its end of data.
    let mut run = Run::new(strict(), Backend::default());
    run.take();
    lines(
        &mut run,
        &[
            "HELO client",
            "MAIL FROM:<a@remote.example>",
            "RCPT TO:<bob@example.test>",
            "DATA",
        ],
    );
    run.take();
    run.send("x\r\n.\r\nQUIT\r\n");
    assert_eq!(run.take(), SYNC);
    assert!(
        run.deliveries().is_empty(),
        "no message from a desynchronised client"
    );
}

#[test]
fn a_command_pipelined_after_data_gets_554_and_a_close() {
    let mut run = greeted_strict(Backend::granting());
    // RFC 2920 §3.1: MAIL, RCPT and DATA may be one group; the group ends at DATA.
    run.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<x@remote.example>\r\nDATA\r\nSubject: x\r\n");
    assert_eq!(
        run.take(),
        format!("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n{SYNC}")
    );
    assert!(run.session.is_closed());
    assert!(run.deliveries().is_empty());
    assert_eq!(
        run.effects().last(),
        Some(&SmtpEffect::ReleaseGrant { key: key() }),
        "the reservation goes back"
    );

    // With EHLO, the same group ending at DATA, then the message after 354, then
    // commands pipelined after the end of data: all allowed.
    let mut run = greeted_strict(Backend::default());
    run.send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n");
    assert_eq!(
        run.take(),
        s(&[
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>"
        ])
    );
    run.send("x\r\n.\r\nRSET\r\nQUIT\r\n");
    assert_eq!(
        run.take(),
        format!("{}\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n", queued(1))
    );
}

#[test]
fn http_and_proxy_requests_close_at_once() {
    let requests: [&[u8]; 6] = [
        b"GET / HTTP/1.1\r\nHost: mail.example.test\r\n\r\n",
        b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\nMAIL FROM:<a@remote.example>\r\n",
        b"CONNECT victim.example:25 HTTP/1.0\r\n\r\n",
        b"User-Agent: probe\r\n",
        b"PROXY TCP4 198.51.100.1 192.0.2.1 40000 25\r\nEHLO x\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc6\x33\x64\x01\xc0\x00\x02\x01\x9c\x40\x00\x19",
    ];
    for request in requests {
        let mut run = Run::new(strict(), Backend::default());
        run.take();
        run.send_bytes(request, request.len());
        assert_eq!(
            run.take(),
            FOREIGN,
            "{:?}",
            String::from_utf8_lossy(request)
        );
        assert!(run.session.is_closed());
    }
    // After EHLO too.
    let mut run = greeted_strict(Backend::default());
    run.send("GET / HTTP/1.1\r\n");
    assert_eq!(run.take(), FOREIGN);
}

#[test]
fn errors_past_the_hard_limit_close_with_421() {
    let config = SmtpConfig {
        error_limits: ErrorLimits {
            soft: 1,
            hard: 3,
            sleep: Duration::ZERO,
            junk_commands: 100,
        },
        ..strict()
    };
    let mut run = Run::new(config, Backend::default());
    run.take();
    lines(&mut run, &["FOO", "DATA"]);
    assert_eq!(
        run.take(),
        s(&[
            "500 5.5.2 Syntax error, command unrecognized",
            "503 5.5.1 Bad sequence of commands"
        ])
    );
    assert!(!run.session.is_closed());
    lines(&mut run, &["RCPT TO:<bob@example.test>"]);
    assert_eq!(
        run.take(),
        format!("503 5.5.1 Bad sequence of commands\r\n{TOO_MANY_ERRORS}")
    );
    assert!(run.session.is_closed());
}

#[test]
fn errors_past_the_soft_limit_are_answered_after_a_growing_delay() {
    let second = Duration::from_secs(1);
    let config = SmtpConfig {
        error_limits: ErrorLimits {
            soft: 1,
            hard: 10,
            sleep: second,
            junk_commands: 100,
        },
        ..strict()
    };
    let mut run = Run::new(config, Backend::default());
    run.take();
    lines(&mut run, &["FOO"]);
    assert_eq!(
        run.take(),
        "500 5.5.2 Syntax error, command unrecognized\r\n",
        "the first is at once"
    );
    for n in 1..=3u32 {
        lines(&mut run, &["FOO"]);
        assert_eq!(run.take(), "", "error {} is held", n + 1);
        assert!(
            !run.session.wants_input(),
            "no reading while the reply is held"
        );
        let due = NOW.saturating_add(second * n);
        assert_eq!(
            run.session.poll_timeout(),
            Some(due),
            "error {}: {n} s",
            n + 1
        );
        run.session.handle_timeout(due);
        run.pump();
        assert_eq!(
            run.take(),
            "500 5.5.2 Syntax error, command unrecognized\r\n"
        );
    }
    // A good command is answered at once.
    lines(&mut run, &["EHLO client.example"]);
    assert_eq!(run.take(), EHLO_REPLY);
}

#[test]
fn junk_commands_past_their_limit_count_as_errors() {
    let config = SmtpConfig {
        error_limits: ErrorLimits {
            soft: 10,
            hard: 2,
            sleep: Duration::ZERO,
            junk_commands: 3,
        },
        ..strict()
    };
    let mut run = greeted_strict_with(config);
    lines(&mut run, &["NOOP", "RSET", "VRFY bob", "HELP", "NOOP"]);
    assert_eq!(
        run.take(),
        s(&[
            "250 2.0.0 Ok",
            "250 2.0.0 Ok",
            "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
            "214 2.0.0 See RFC 5321; commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
            "250 2.0.0 Ok",
            "421 4.7.0 Error: too many errors",
        ])
    );
}

#[test]
fn an_accepted_message_starts_the_error_count_over() {
    let config = SmtpConfig {
        error_limits: ErrorLimits {
            soft: 10,
            hard: 2,
            sleep: Duration::ZERO,
            junk_commands: 100,
        },
        ..strict()
    };
    let mut run = greeted_strict_with(config);
    lines(
        &mut run,
        &[
            "FOO",
            "MAIL FROM:<a@remote.example>",
            "RCPT TO:<bob@example.test>",
            "DATA",
            "x\r\n.",
        ],
    );
    lines(&mut run, &["FOO"]);
    assert!(!run.session.is_closed(), "{}", run.take());
    assert!(
        run.take()
            .ends_with("500 5.5.2 Syntax error, command unrecognized\r\n")
    );
    lines(&mut run, &["FOO"]);
    assert!(run.take().ends_with(TOO_MANY_ERRORS));
}

fn greeted_strict_with(config: SmtpConfig) -> Run {
    let mut run = Run::new(config, Backend::default());
    run.send("EHLO client.example\r\n");
    run.take();
    run
}

/// RFC 5321 §4.1.2 forms before the relay decision; the session is on 192.0.2.1:25
/// and has no grant. `Ok(address)` is the local address looked up.
#[test]
fn address_forms_are_read_before_the_relay_decision() {
    let cases: &[(&str, Result<&str, &str>)] = &[
        // trailing dot and case
        ("<Bob@EXAMPLE.TEST.>", Ok("Bob@example.test")),
        ("<bob@example.test.evil>", Err(RELAY_DENIED)),
        ("<bob@evil.example.test>", Err(RELAY_DENIED)),
        // source routes: the final mailbox decides (RFC 5321 §3.6.1, Appendix C)
        (
            "<@a.example,@b.example:bob@example.test>",
            Ok("bob@example.test"),
        ),
        ("<@example.test:victim@remote.example>", Err(RELAY_DENIED)),
        // quoted local parts
        ("<\"bob\"@example.test>", Ok("bob@example.test")),
        ("<\"b\\ob\"@example.test>", Ok("bob@example.test")),
        ("<\"b ob\"@example.test>", Ok("b ob@example.test")),
        // address literals: ours is local, any other is a relay
        ("<bob@[192.0.2.1]>", Ok("bob@example.test")),
        ("<bob@[IPv6:::ffff:192.0.2.1]>", Ok("bob@example.test")),
        ("<bob@[192.0.2.99]>", Err(RELAY_DENIED)),
        ("<bob@[IPv6:2001:db8::1]>", Err(RELAY_DENIED)),
        // routing in the local part is never a relay
        ("<victim%remote.example@example.test>", Err(RELAY_DENIED)),
        ("<remote.example!victim@example.test>", Err(RELAY_DENIED)),
        (
            "<\"victim@remote.example\"@example.test>",
            Err(RELAY_DENIED),
        ),
        ("<victim%remote.example@[192.0.2.1]>", Err(RELAY_DENIED)),
        // local parts that would leave the mailbox folder
        ("<.bob@example.test>", Err(UNSAFE)),
        ("<\"../../etc\"@example.test>", Err(UNSAFE)),
        ("<\"a/b\"@example.test>", Err(UNSAFE)),
        ("<\"a\\\\b\"@example.test>", Err(UNSAFE)),
        ("<\"..\"@example.test>", Err(UNSAFE)),
    ];
    for (path, expected) in cases {
        let mut run = greeted_strict(Backend {
            users: vec!["bob@example.test", "b ob@example.test"],
            ..Backend::default()
        });
        lines(&mut run, &["MAIL FROM:<a@remote.example>"]);
        run.take();
        lines(&mut run, &[&format!("RCPT TO:{path}")]);
        let reply = run.take();
        let lookups: Vec<String> = run
            .effects()
            .into_iter()
            .filter_map(|e| match e {
                SmtpEffect::LookupLocal { address } => Some(address),
                _ => None,
            })
            .collect();
        match expected {
            Ok(address) => {
                assert_eq!(reply, OK_RCPT, "{path}");
                assert_eq!(lookups, vec![address.to_string()], "{path}");
            }
            Err(refusal) => {
                assert_eq!(reply, *refusal, "{path}");
                assert!(lookups.is_empty(), "{path}: {lookups:?}");
            }
        }
    }
}

/// A session that may relay (here a trusted network) still never turns a routed
/// local address into a relay: it is looked up as written, and is unknown.
#[test]
fn routed_local_addresses_are_never_relayed_even_when_relaying_is_allowed() {
    let mut trusted = strict();
    trusted.relay.trusted = vec!["192.0.2.0/24".parse().expect("cidr")];
    for path in [
        "<victim%remote.example@example.test>",
        "<remote.example!victim@example.test>",
        "<\"victim@remote.example\"@example.test>",
    ] {
        let mut run = greeted_strict_with(trusted.clone());
        lines(
            &mut run,
            &["MAIL FROM:<a@remote.example>", &format!("RCPT TO:{path}")],
        );
        assert_eq!(run.take(), format!("250 2.1.0 Ok\r\n{UNKNOWN}"), "{path}");
        assert_eq!(run.decisions().len(), 1);
        assert_eq!(run.decisions()[0].1, RelayOutcome::UnknownUser, "{path}");
    }
}

/// NUL and invalid UTF-8 in every verb: 500 5.5.2, and the session goes on.
#[test]
fn nul_and_invalid_utf8_in_every_command_get_500_and_the_session_goes_on() {
    let config = SmtpConfig {
        error_limits: ErrorLimits {
            soft: 1000,
            hard: 1000,
            ..ErrorLimits::default()
        },
        ..strict()
    };
    let mut run = greeted_strict_with(config);
    for verb in [
        "EHLO x",
        "HELO x",
        "MAIL FROM:<a@remote.example>",
        "RCPT TO:<bob@example.test>",
        "DATA",
        "RSET",
        "NOOP",
        "QUIT",
        "VRFY bob",
        "EXPN x",
        "HELP",
        "STARTTLS",
        "AUTH PLAIN",
    ] {
        for bad in [&b"\0"[..], b"\xff", b"\xc3\x28"] {
            for at in [0, verb.len() / 2, verb.len()] {
                let mut line = verb.as_bytes()[..at].to_vec();
                line.extend_from_slice(bad);
                line.extend_from_slice(&verb.as_bytes()[at..]);
                line.extend_from_slice(b"\r\n");
                run.send_bytes(&line, line.len());
                assert_eq!(
                    run.take(),
                    "500 5.5.2 Syntax error, command unrecognized\r\n",
                    "{:?}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
    }
    assert!(!run.session.is_closed());
    lines(
        &mut run,
        &["MAIL FROM:<a@remote.example>", "RCPT TO:<bob@example.test>"],
    );
    assert_eq!(
        run.take(),
        s(&["250 2.1.0 Ok", "250 2.1.5 Ok"]),
        "the session goes on"
    );
}
