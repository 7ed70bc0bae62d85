//! Transcript tests for STARTTLS (RFC 3207), AUTH (RFC 4954) and the policies
//! around them: plaintext AUTH only from the local host, submission requiring AUTH,
//! the sender policy, failure delays and limits, and secrets kept out of events.

use super::*;
use crate::Secret;
use crate::sasl::encode;
use crate::testing::test;

const TLS_VERSION: &str = "TLSv1.3";
const TLS_CIPHER: &str = "TLS13_AES_256_GCM_SHA384";
const BAD_CREDENTIALS: &str = "535 5.7.8 Authentication credentials invalid";

/// The EHLO reply with these keywords after the ones always offered.
fn ehlo(extra: &[&str]) -> String {
    let mut lines = vec![
        "mail.example.test",
        "PIPELINING",
        "SIZE 10240000",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
    ];
    lines.extend_from_slice(extra);
    let last = lines.len() - 1;
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
        .collect()
}

fn starttls_config() -> SmtpConfig {
    SmtpConfig {
        starttls: true,
        ..config()
    }
}

/// RFC 4616 §2: `\0user\0password`, base64.
fn plain(user: &str, password: &str) -> String {
    encode(format!("\0{user}\0{password}"))
}

/// A session on a connection that is TLS from the start (SMTPS), past EHLO.
fn over_tls(config: SmtpConfig, backend: Backend) -> Run {
    let mut run = Run::at(config, backend, "192.0.2.7:50000", true);
    run.send("EHLO client.example\r\n");
    run.take();
    run
}

/// A session from 127.0.0.1 without TLS, past EHLO.
fn from_localhost(config: SmtpConfig, backend: Backend) -> Run {
    let mut run = Run::at(config, backend, "127.0.0.1:50000", false);
    run.send("EHLO client.example\r\n");
    run.take();
    run
}

fn client_lines(run: &Run) -> Vec<String> {
    run.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ClientLine { line } => Some(line.clone()),
            _ => None,
        })
        .collect()
}

fn password(mechanism: &'static str, user: &str, password: &str) -> SmtpEffect {
    SmtpEffect::Authenticate {
        credentials: Credentials::password(mechanism, None, user, Secret::new(password)),
    }
}

fn succeeded(mechanism: &str) -> EventKind {
    EventKind::AuthSucceeded {
        user: "alice@example.test".into(),
        mechanism: mechanism.into(),
    }
}

#[test]
fn plaintext_pipelined_after_starttls_is_never_executed() {
    let mut run = Run::new(starttls_config(), Backend::default());
    run.send("EHLO client.example\r\n");
    assert_eq!(run.take(), format!("{GREETING}{}", ehlo(&["STARTTLS"])));

    // C: STARTTLS\r\nRSET\r\n in one packet.
    run.session.handle_input(NOW, b"STARTTLS\r\nRSET\r\n");
    run.pump();
    assert_eq!(run.take(), s(&["220 2.0.0 Ready to start TLS"]));
    assert_eq!(run.effects(), vec![SmtpEffect::StartTls]);
    assert!(SmtpSession::is_start_tls(&SmtpEffect::StartTls));
    assert!(!SmtpSession::is_start_tls(&SmtpEffect::ReserveGrant));
    assert!(
        !run.session.wants_input(),
        "no plaintext is read during the handshake"
    );
    assert_eq!(run.session.poll_timeout(), None);
    // Even a driver that reads on gets nothing executed.
    run.session
        .handle_input(NOW, b"MAIL FROM:<x@remote.example>\r\n");
    run.pump();
    assert_eq!(run.take(), "");

    run.session
        .handle_tls_established(NOW, TLS_VERSION.into(), TLS_CIPHER.into());
    run.pump();
    assert_eq!(run.take(), "", "TLS up, nothing answered");
    assert_eq!(
        client_lines(&run),
        vec!["EHLO client.example", "STARTTLS"],
        "RSET and MAIL were never processed"
    );
    assert!(!run.kinds().iter().any(|k| matches!(
        k,
        EventKind::ServerLine { line } if line.starts_with("250 2.0.0") || line.starts_with("250 2.1.0")
    )));
    assert_eq!(
        run.kinds().last(),
        Some(&EventKind::TlsStarted {
            version: TLS_VERSION.into(),
            cipher: TLS_CIPHER.into(),
        })
    );

    // RFC 3207 §4.2: the EHLO before TLS is forgotten.
    run.send("MAIL FROM:<a@example.test>\r\n");
    assert_eq!(run.take(), s(&["503 5.5.1 Bad sequence of commands"]));
    // The new EHLO offers AUTH and no longer STARTTLS.
    run.send("EHLO client.example\r\n");
    assert_eq!(run.take(), ehlo(&["AUTH PLAIN LOGIN"]));
    run.send("STARTTLS\r\n");
    assert_eq!(run.take(), s(&["503 5.5.1 TLS already active"]));
    assert_eq!(run.effects(), vec![SmtpEffect::StartTls]);
    // A Received header now says ESMTPS.
    run.send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nx\r\n.\r\n");
    let message = String::from_utf8(run.deliveries()[0].message.clone()).expect("utf-8");
    assert!(message.contains("with ESMTPS id"), "{message}");
}

#[test]
fn starttls_refusals() {
    // Not offered (no certificate): not implemented.
    let mut run = Run::greeted(config(), Backend::default());
    run.send("STARTTLS\r\n");
    assert_eq!(run.take(), s(&["502 5.5.1 Command not implemented"]));

    // RFC 3207 §4: no parameters; not inside a transaction.
    let mut run = Run::greeted(starttls_config(), Backend::default());
    run.send("STARTTLS now\r\nMAIL FROM:<a@remote.example>\r\nSTARTTLS\r\nRSET\r\n");
    assert_eq!(
        run.take(),
        s(&[
            "501 5.5.4 Syntax error in parameters or arguments",
            "250 2.1.0 Ok",
            "503 5.5.1 Bad sequence of commands",
            "250 2.0.0 Ok",
        ])
    );
    assert_eq!(run.effects(), vec![]);

    // A handshake nobody asked for changes nothing.
    run.session
        .handle_tls_established(NOW, TLS_VERSION.into(), TLS_CIPHER.into());
    run.pump();
    run.send("EHLO client.example\r\n");
    assert_eq!(run.take(), ehlo(&["STARTTLS"]));
    assert!(
        !run.kinds()
            .iter()
            .any(|k| matches!(k, EventKind::TlsStarted { .. }))
    );

    // Before EHLO is fine (RFC 3207 does not ask for it); a disconnect during the
    // handshake closes cleanly.
    let mut run = Run::new(starttls_config(), Backend::default());
    run.take();
    run.send("STARTTLS\r\n");
    assert_eq!(run.take(), s(&["220 2.0.0 Ready to start TLS"]));
    run.session.handle_disconnect(NOW);
    run.pump();
    assert!(run.session.is_closed());
}

#[test]
fn starttls_forgets_an_earlier_auth() {
    let submission = SmtpConfig {
        require_auth: true,
        ..starttls_config()
    };
    let mut run = Run::at(submission, Backend::default(), "127.0.0.1:50000", false);
    run.send("EHLO client.example\r\n");
    assert_eq!(
        run.take(),
        format!("{GREETING}{}", ehlo(&["STARTTLS", "AUTH PLAIN LOGIN"]))
    );
    run.send(&format!(
        "AUTH PLAIN {}\r\n",
        plain("alice@example.test", "secret")
    ));
    assert_eq!(run.take(), s(&["235 2.7.0 Authentication successful"]));
    run.send("STARTTLS\r\n");
    run.take();
    run.session
        .handle_tls_established(NOW, TLS_VERSION.into(), TLS_CIPHER.into());
    run.send("EHLO client.example\r\nMAIL FROM:<alice@example.test>\r\n");
    assert_eq!(
        run.take(),
        format!(
            "{}{}",
            ehlo(&["AUTH PLAIN LOGIN"]),
            s(&["530 5.7.0 Authentication required"])
        )
    );
}

#[test]
fn auth_plain_with_an_initial_response() {
    let mut run = over_tls(config(), Backend::default());
    run.send(&format!(
        "AUTH PLAIN {}\r\n",
        plain("alice@example.test", "secret")
    ));
    assert_eq!(run.take(), s(&["235 2.7.0 Authentication successful"]));
    assert_eq!(
        run.effects(),
        vec![password("PLAIN", "alice@example.test", "secret")]
    );
    assert!(run.kinds().contains(&succeeded("PLAIN")));
    assert_eq!(
        client_lines(&run),
        vec!["EHLO client.example", "AUTH PLAIN ****"]
    );
    // RFC 4954 §4: once authenticated, AUTH again is 503.
    run.send("AUTH LOGIN\r\n");
    assert_eq!(run.take(), s(&["503 5.5.1 Already authenticated"]));
}

#[test]
fn auth_plain_with_a_continuation() {
    let mut run = over_tls(config(), Backend::default());
    run.send("auth plain\r\n");
    // RFC 4616 §2: an empty challenge.
    assert_eq!(run.take(), "334 \r\n");
    run.send(&format!("{}\r\n", plain("alice@example.test", "secret")));
    assert_eq!(run.take(), s(&["235 2.7.0 Authentication successful"]));
    assert_eq!(
        client_lines(&run),
        vec!["EHLO client.example", "auth plain", "****"]
    );
    // `=` is an empty initial response, which PLAIN cannot use.
    let mut run = over_tls(config(), Backend::default());
    run.send("AUTH PLAIN =\r\n");
    assert_eq!(
        run.take(),
        s(&["501 5.5.2 Malformed authentication response"])
    );
}

#[test]
fn auth_login_prompts_for_user_and_password() {
    let mut run = over_tls(config(), Backend::default());
    run.send("AUTH LOGIN\r\n");
    assert_eq!(run.take(), "334 VXNlcm5hbWU6\r\n");
    run.send(&format!("{}\r\n", encode("alice@example.test")));
    assert_eq!(run.take(), "334 UGFzc3dvcmQ6\r\n");
    run.send(&format!("{}\r\n", encode("secret")));
    assert_eq!(run.take(), s(&["235 2.7.0 Authentication successful"]));
    assert_eq!(
        run.effects(),
        vec![password("LOGIN", "alice@example.test", "secret")]
    );
    assert!(run.kinds().contains(&succeeded("LOGIN")));
    assert_eq!(
        client_lines(&run),
        vec!["EHLO client.example", "AUTH LOGIN", "****", "****"]
    );
}

#[test]
fn cram_md5_is_offered_only_when_configured() {
    let cram = SmtpConfig {
        cram_md5: true,
        ..config()
    };
    let mut run = Run::at(cram, Backend::default(), "192.0.2.7:50000", true);
    run.send("EHLO client.example\r\n");
    assert_eq!(
        run.take(),
        format!("{GREETING}{}", ehlo(&["AUTH PLAIN LOGIN CRAM-MD5"]))
    );
    run.send("AUTH CRAM-MD5\r\n");
    // RFC 2195 §2: the challenge is a unique msg-id: <session.millis@hostname>.
    let challenge = format!("<7.{}@mail.example.test>", NOW.0);
    assert_eq!(run.take(), format!("334 {}\r\n", encode(&challenge)));
    let digest = "b913a602c7eda7a495b4e6e7334d3890";
    run.send(&format!(
        "{}\r\n",
        encode(format!("alice@example.test {digest}"))
    ));
    assert_eq!(run.take(), s(&["235 2.7.0 Authentication successful"]));
    assert_eq!(
        run.effects(),
        vec![SmtpEffect::Authenticate {
            credentials: Credentials::CramMd5 {
                user: "alice@example.test".into(),
                challenge,
                digest: digest.into(),
            }
        }]
    );
    assert!(run.kinds().contains(&succeeded("CRAM-MD5")));

    let mut run = over_tls(config(), Backend::default());
    run.send("AUTH CRAM-MD5\r\n");
    assert_eq!(
        run.take(),
        s(&["504 5.5.4 Unrecognized authentication type"])
    );
}

#[test]
fn cancelled_and_malformed_exchanges() {
    let mut run = over_tls(config(), Backend::default());
    let long = "A".repeat(crate::sasl::MAX_RESPONSE + 1);
    run.send(&format!(
        "AUTH LOGIN\r\n*\r\n\
         AUTH PLAIN\r\n%%%\r\n\
         AUTH PLAIN\r\n{long}\r\nNOOP\r\n\
         AUTH PLAIN {}\r\n\
         AUTH PLAIN a b\r\n\
         AUTH DIGEST-MD5\r\n\
         NOOP\r\n",
        encode("bob@example.test\0alice@example.test\0secret")
    ));
    assert_eq!(
        run.take(),
        s(&[
            "334 VXNlcm5hbWU6",
            // RFC 4954 §4: "*" cancels.
            "501 5.0.0 Authentication cancelled",
            "334 ",
            "501 5.5.2 Cannot decode response",
            "334 ",
            "500 5.5.6 Line too long",
            "250 2.0.0 Ok",
            // RFC 4616 §2: acting as someone else is refused like bad credentials.
            BAD_CREDENTIALS,
            "501 5.5.4 Syntax error in parameters or arguments",
            "504 5.5.4 Unrecognized authentication type",
            "250 2.0.0 Ok",
        ])
    );
    assert_eq!(run.effects(), vec![], "nothing reached verification");
    assert!(run.kinds().contains(&EventKind::AuthFailed {
        user: None,
        mechanism: "PLAIN".into()
    }));
    assert!(!run.session.is_closed());
}

#[test]
fn auth_is_refused_out_of_sequence() {
    let mut run = Run::at(config(), Backend::default(), "127.0.0.1:50000", false);
    run.take();
    run.send(
        "AUTH PLAIN\r\nHELO client\r\nAUTH PLAIN\r\nEHLO client.example\r\n\
         MAIL FROM:<a@remote.example>\r\nAUTH PLAIN\r\nRSET\r\n",
    );
    assert_eq!(
        run.take(),
        format!(
            "{}{}{}",
            s(&[
                "503 5.5.1 Bad sequence of commands",
                "250 mail.example.test",
                "503 5.5.1 Bad sequence of commands",
            ]),
            ehlo(&["AUTH PLAIN LOGIN"]),
            s(&[
                "250 2.1.0 Ok",
                "503 5.5.1 Bad sequence of commands",
                "250 2.0.0 Ok",
            ])
        )
    );

    // A listener without AUTH neither offers nor implements it.
    let no_auth = SmtpConfig {
        auth: false,
        ..config()
    };
    let mut run = over_tls(no_auth, Backend::default());
    run.send("EHLO client.example\r\nAUTH PLAIN\r\n");
    assert_eq!(
        run.take(),
        format!("{}{}", ehlo(&[]), s(&["502 5.5.1 Command not implemented"]))
    );
}

#[test]
fn plaintext_auth_only_from_the_local_host() {
    let local_off = SmtpConfig {
        plaintext_auth_localhost: false,
        ..config()
    };
    for (peer, config, allowed) in [
        ("127.0.0.2:50000", config(), false),
        ("192.0.2.7:50000", config(), false),
        ("127.0.0.1:50000", config(), true),
        ("[::1]:50000", config(), true),
        ("[::ffff:127.0.0.1]:50000", config(), true),
        ("127.0.0.1:50000", local_off, false),
    ] {
        let mut run = Run::at(config, Backend::default(), peer, false);
        run.send("EHLO client.example\r\n");
        let offered = run.take().contains("250 AUTH PLAIN LOGIN\r\n");
        assert_eq!(offered, allowed, "{peer}");
        run.send(&format!(
            "AUTH PLAIN {}\r\nAUTH LOGIN\r\n",
            plain("alice@example.test", "secret")
        ));
        let expected = if allowed {
            s(&[
                "235 2.7.0 Authentication successful",
                "503 5.5.1 Already authenticated",
            ])
        } else {
            // RFC 4954 §4, §6: 538 5.7.11, and nothing was verified.
            s(&[
                "538 5.7.11 Encryption required for requested authentication mechanism",
                "538 5.7.11 Encryption required for requested authentication mechanism",
            ])
        };
        assert_eq!(run.take(), expected, "{peer}");
        assert_eq!(run.effects().is_empty(), !allowed, "{peer}");
    }
}

#[test]
fn submission_requires_auth_before_mail_then_relays_as_esmtpsa() {
    let submission = SmtpConfig {
        require_auth: true,
        relay: RelayPolicy::submission_default(),
        ..config()
    };
    let mut run = over_tls(submission, Backend::granting());
    run.send("MAIL FROM:<alice@example.test>\r\nRCPT TO:<x@remote.example>\r\nNOOP\r\n");
    assert_eq!(
        run.take(),
        s(&[
            "530 5.7.0 Authentication required",
            "503 5.5.1 Bad sequence of commands",
            "250 2.0.0 Ok",
        ])
    );
    run.send(&format!(
        "AUTH PLAIN {}\r\n",
        plain("alice@example.test", "secret")
    ));
    run.take();
    run.send(
        "MAIL FROM:<alice@example.test>\r\nRCPT TO:<x@remote.example>\r\nDATA\r\n\
         Subject: submitted\r\n\r\nhi\r\n.\r\n",
    );
    assert_eq!(
        run.take(),
        s(&[
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            &queued(1),
        ])
    );
    assert_eq!(
        run.decisions(),
        vec![(
            "x@remote.example".into(),
            RelayOutcome::Auth {
                user: "alice@example.test".into()
            }
        )]
    );
    assert!(
        !run.effects()
            .iter()
            .any(|e| matches!(e, SmtpEffect::ReserveGrant))
    );
    let delivery = &run.deliveries()[0];
    assert_eq!(delivery.relayed_for.as_deref(), Some("alice@example.test"));
    let received = format!(
        "Received: from client.example ([192.0.2.7])\r\n\
         \tby mail.example.test (popgate) with ESMTPSA id {}\r\n\
         \t(authenticated as alice@example.test)\r\n\
         \tfor <x@remote.example>; {DATE}\r\n",
        id(1)
    );
    assert_eq!(
        String::from_utf8(delivery.message.clone()).expect("utf-8"),
        format!("{received}Subject: submitted\r\n\r\nhi\r\n")
    );
}

#[test]
fn auth_relays_on_the_smtp_listener_without_touching_grants() {
    let mut run = from_localhost(config(), Backend::granting());
    run.send(&format!(
        "AUTH PLAIN {}\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<x@remote.example>\r\n\
         DATA\r\nx\r\n.\r\n",
        plain("alice@example.test", "secret")
    ));
    assert!(run.take().ends_with(&format!("{}\r\n", queued(1))));
    assert_eq!(
        run.effects()
            .iter()
            .filter(|e| !matches!(e, SmtpEffect::Authenticate { .. } | SmtpEffect::Deliver(_)))
            .count(),
        0,
        "no grant reserved or committed: {:?}",
        run.effects()
    );
    let message = String::from_utf8(run.deliveries()[0].message.clone()).expect("utf-8");
    assert!(message.contains("with ESMTPA id"), "{message}");
}

#[test]
fn sender_policy_after_auth() {
    let mut run = over_tls(config(), Backend::default());
    run.send(&format!(
        "AUTH PLAIN {}\r\n",
        plain("alice@example.test", "secret")
    ));
    run.take();
    run.send(
        "MAIL FROM:<bob@example.test>\r\nMAIL FROM:<ALICE@Example.TEST>\r\nRSET\r\n\
         MAIL FROM:<>\r\nRSET\r\nMAIL FROM:<\"alice\"@example.test>\r\nRSET\r\n\
         MAIL FROM:<alice@remote.example>\r\n",
    );
    let refused = "553 5.7.1 <bob@example.test>: Sender address rejected: not owned by the \
                   authenticated user";
    assert_eq!(
        run.take(),
        s(&[
            refused,
            "250 2.1.0 Ok",
            "250 2.0.0 Ok",
            "250 2.1.0 Ok",
            "250 2.0.0 Ok",
            "250 2.1.0 Ok",
            "250 2.0.0 Ok",
            "553 5.7.1 <alice@remote.example>: Sender address rejected: not owned by the \
             authenticated user",
        ])
    );

    // Allow: any sender.
    let allow = SmtpConfig {
        sender_policy: SenderPolicy::Allow,
        ..config()
    };
    let mut run = over_tls(allow, Backend::default());
    run.send(&format!(
        "AUTH PLAIN {}\r\nMAIL FROM:<bob@example.test>\r\n",
        plain("alice@example.test", "secret")
    ));
    assert_eq!(
        run.take(),
        s(&["235 2.7.0 Authentication successful", "250 2.1.0 Ok"])
    );

    // Without AUTH there is no user to compare with (POP before SMTP on port 25).
    let mut run = over_tls(config(), Backend::default());
    run.send("MAIL FROM:<bob@example.test>\r\n");
    assert_eq!(run.take(), s(&["250 2.1.0 Ok"]));

    // A bare login name is that user at the first local domain.
    let mut run = over_tls(
        config(),
        Backend {
            accounts: vec![("alice", "secret")],
            ..Backend::default()
        },
    );
    run.send(&format!(
        "AUTH PLAIN {}\r\nMAIL FROM:<alice@example.test>\r\nRSET\r\nMAIL FROM:<alice@example.org>\r\n",
        plain("alice", "secret")
    ));
    assert_eq!(
        run.take(),
        s(&[
            "235 2.7.0 Authentication successful",
            "250 2.1.0 Ok",
            "250 2.0.0 Ok",
            "553 5.7.1 <alice@example.org>: Sender address rejected: not owned by the \
             authenticated user",
        ])
    );
}

#[test]
fn a_failure_is_answered_after_the_delay_on_the_callers_clock() {
    let delay = Duration::from_secs(2);
    let mut run = over_tls(
        config(),
        Backend {
            auth_delay: delay,
            ..Backend::default()
        },
    );
    run.send(&format!(
        "AUTH PLAIN {}\r\nNOOP\r\n",
        plain("alice@example.test", "wrong")
    ));
    assert_eq!(run.take(), "", "nothing before the delay");
    assert!(run.kinds().contains(&EventKind::AuthFailed {
        user: Some("alice@example.test".into()),
        mechanism: "PLAIN".into()
    }));
    assert!(!run.session.wants_input());
    let until = NOW.saturating_add(delay);
    assert_eq!(run.session.poll_timeout(), Some(until));
    run.session.handle_timeout(Millis(until.0 - 1));
    run.pump();
    assert_eq!(run.take(), "");
    run.session.handle_timeout(until);
    run.pump();
    // The pipelined NOOP is processed only after the 535.
    assert_eq!(run.take(), s(&[BAD_CREDENTIALS, "250 2.0.0 Ok"]));
    assert!(run.session.wants_input());
    assert!(run.events.iter().any(|e| e.at == until
        && e.kind
            == EventKind::ServerLine {
                line: BAD_CREDENTIALS.into()
            }));
    // The idle timer starts again from the reply.
    assert_eq!(
        run.session.poll_timeout(),
        Some(until.saturating_add(Duration::from_secs(300)))
    );
}

#[test]
fn unknown_user_and_wrong_password_get_identical_bytes() {
    let transcript = |user: &str, password: &str| {
        let mut run = over_tls(config(), Backend::default());
        run.send(&format!("AUTH PLAIN {}\r\n", plain(user, password)));
        run.send("AUTH LOGIN\r\n");
        run.send(&format!("{}\r\n", encode(user)));
        run.send(&format!("{}\r\n", encode(password)));
        run.take()
    };
    let wrong_password = transcript("alice@example.test", "wrong");
    let unknown_user = transcript("nobody@example.test", "secret");
    assert_eq!(wrong_password, unknown_user);
    assert!(wrong_password.ends_with(&s(&[BAD_CREDENTIALS])));
}

#[test]
fn too_many_failures_close_the_session() {
    let mut run = over_tls(config(), Backend::default());
    let attempt = format!("AUTH PLAIN {}\r\n", plain("alice@example.test", "wrong"));
    run.send(&attempt);
    run.send(&attempt);
    assert_eq!(run.take(), s(&[BAD_CREDENTIALS, BAD_CREDENTIALS]));
    assert!(!run.session.is_closed());
    run.send(&format!("{attempt}NOOP\r\n"));
    assert_eq!(
        run.take(),
        s(&[
            BAD_CREDENTIALS,
            "421 4.7.0 Too many authentication failures"
        ])
    );
    assert!(run.session.is_closed());
    assert_eq!(
        run.kinds().last(),
        Some(&EventKind::SessionClosed {
            reason: CloseReason::Error
        })
    );

    // A temporary failure is not the client's fault and is not counted.
    let mut run = over_tls(
        config(),
        Backend {
            auth_temp_fails: true,
            ..Backend::default()
        },
    );
    let attempt = format!("AUTH PLAIN {}\r\n", plain("alice@example.test", "secret"));
    run.send(&attempt.repeat(4));
    assert_eq!(
        run.take(),
        s(&["454 4.7.0 Temporary authentication failure"]).repeat(4)
    );
    assert!(!run.session.is_closed());
}

#[test]
fn shutdown_ends_an_exchange_in_progress() {
    let mut run = over_tls(config(), Backend::default());
    run.send("AUTH LOGIN\r\n");
    run.take();
    run.session.handle_shutdown(NOW);
    run.pump();
    assert_eq!(
        run.take(),
        s(&["421 4.3.2 Service shutting down, closing transmission channel"])
    );
    assert!(run.session.is_closed());
}

#[test]
fn secrets_never_reach_events_transmit_or_debug() {
    const PASSWORD: &str = "hunter2-correct-horse";
    const WRONG: &str = "hunter3-battery-staple";
    let mut run = over_tls(
        config(),
        Backend {
            accounts: vec![("alice@example.test", PASSWORD)],
            ..Backend::default()
        },
    );
    let wrong_plain = plain("alice@example.test", WRONG);
    let right_plain = plain("alice@example.test", PASSWORD);
    run.send(&format!("AUTH PLAIN {wrong_plain}\r\nAUTH LOGIN\r\n"));
    run.send(&format!("{}\r\n", encode("alice@example.test")));
    run.send(&format!("{}\r\n", encode(WRONG)));
    run.send(&format!("AUTH PLAIN\r\n{right_plain}\r\n"));
    let transcript = run.take();
    assert!(transcript.ends_with(&s(&["235 2.7.0 Authentication successful"])));
    let events = format!("{:?}", run.events);
    let seen = format!("{:?}", run.seen);
    let session = format!("{:?}", run.session);
    for secret in [
        PASSWORD.to_owned(),
        WRONG.to_owned(),
        encode(PASSWORD),
        encode(WRONG),
        wrong_plain,
        right_plain,
    ] {
        assert!(!events.contains(&secret), "events show {secret}");
        assert!(!seen.contains(&secret), "transmit or effects show {secret}");
        assert!(!transcript.contains(&secret));
        assert!(!session.contains(&secret), "Debug shows {secret}");
    }
}

#[test]
fn an_auth_transcript_in_any_chunking_gives_the_same_result() {
    let transcript = format!(
        "EHLO client.example\r\nAUTH LOGIN\r\n{}\r\n{}\r\n\
         AUTH PLAIN\r\n*\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<x@remote.example>\r\n\
         DATA\r\nSubject: chunks\r\n\r\nhello\r\n.\r\nQUIT\r\n",
        encode("alice@example.test"),
        encode("secret")
    );
    let run_with = |chunk: usize| {
        let mut run = Run::at(config(), Backend::default(), "127.0.0.1:50000", false);
        run.send_bytes(transcript.as_bytes(), chunk);
        assert!(run.session.is_closed(), "chunk {chunk}");
        (run.take(), run.effects(), run.events)
    };
    let whole = run_with(transcript.len());
    assert!(whole.0.contains("235 2.7.0"), "{}", whole.0);
    assert!(whole.0.contains("503 5.5.1 Already authenticated"));
    assert!(whole.0.ends_with(&s(&[&queued(1), "221 2.0.0 Bye"])));
    let mut chunk = 1;
    while chunk <= 512 {
        assert_eq!(run_with(chunk), whole, "chunk {chunk}");
        chunk *= 2;
    }
}
