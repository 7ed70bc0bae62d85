use super::*;
use crate::dashboard::DashboardState;
use crate::event::{CloseReason, RelayOutcome};
use crate::testing::test;
use base64::Engine as _;

const START: Millis = scenario::DEFAULT_START;
const TTL_MS: u64 = 30 * 60 * 1000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn shipped(id: &str) -> Scenario {
    scenario::scenario(id).expect("shipped scenario")
}

fn play(id: &str) -> Vec<SimOutput> {
    let mut player = Player::new(shipped(id));
    player.seek(player.len())
}

/// The wire as a transcript: `C: line` / `S: line`, with the connection number.
fn wire(out: &[SimOutput]) -> Vec<(u32, String)> {
    out.iter()
        .filter_map(|o| match o {
            SimOutput::Wire {
                conn,
                from_client,
                text,
                ..
            } => Some((
                conn.0,
                format!("{}{text}", if *from_client { "C: " } else { "S: " }),
            )),
            _ => None,
        })
        .collect()
}

/// The server's first line after the client line `sent` on `conn`.
fn reply_to(out: &[SimOutput], conn: u32, sent: &str) -> String {
    let lines = wire(out);
    let at = lines
        .iter()
        .position(|(c, l)| *c == conn && *l == format!("C: {sent}"))
        .unwrap_or_else(|| panic!("{sent:?} was never sent on #{conn}"));
    lines[at + 1..]
        .iter()
        .find(|(c, l)| *c == conn && l.starts_with("S: "))
        .map(|(_, l)| l["S: ".len()..].to_owned())
        .unwrap_or_else(|| panic!("no reply to {sent:?}"))
}

fn events(out: &[SimOutput]) -> Vec<&Event> {
    out.iter()
        .filter_map(|o| match o {
            SimOutput::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn grant_calls(out: &[SimOutput]) -> Vec<&GrantCall> {
    out.iter()
        .filter_map(|o| match o {
            SimOutput::GrantCall { call, .. } => Some(call),
            _ => None,
        })
        .collect()
}

fn decisions(out: &[SimOutput]) -> Vec<(String, RelayOutcome)> {
    events(out)
        .into_iter()
        .filter_map(|e| match &e.kind {
            EventKind::RelayDecision { rcpt, decision } => Some((rcpt.clone(), decision.clone())),
            _ => None,
        })
        .collect()
}

fn user_sim() -> Simulator {
    Simulator::new(SimConfig {
        users: vec![
            ("taro@example.test".into(), "kitsune-7".into()),
            ("hanako@example.test".into(), "tanuki-3".into()),
        ],
        ..SimConfig::default()
    })
}

fn send(sim: &mut Simulator, conn: ConnId, line: &str) {
    sim.send(conn, format!("{line}\r\n").as_bytes());
}

/// A POP3 login from `client` that ends with QUIT.
fn pop_login(sim: &mut Simulator, client: IpAddr) {
    let pop = sim.connect(client, Endpoint::Pop3);
    send(sim, pop, "USER taro@example.test");
    send(sim, pop, "PASS kitsune-7");
    send(sim, pop, "QUIT");
}

fn smtp_to(sim: &mut Simulator, client: IpAddr, rcpt: &str) -> ConnId {
    let smtp = sim.connect(client, Endpoint::Smtp);
    send(sim, smtp, "EHLO client.example.net");
    send(sim, smtp, "MAIL FROM:<taro@example.test>");
    send(sim, smtp, &format!("RCPT TO:<{rcpt}>"));
    smtp
}

#[test]
fn every_shipped_scenario_parses_and_plays_to_the_end() {
    let all = scenarios();
    assert_eq!(all.len(), scenario::shipped().len());
    let mut ids = std::collections::BTreeSet::new();
    for json in scenario::shipped() {
        let s = Scenario::from_json(json).expect("a shipped scenario parses");
        assert!(ids.insert(s.id.clone()), "duplicate id {}", s.id);
        // Round trip: what the dashboard would export reads back the same.
        let again = Scenario::from_json(&s.to_json().expect("serialise")).expect("reparse");
        assert_eq!(again, s);
        let mut player = Player::new(s);
        let mut steps = 0;
        while !player.at_end() {
            player.step_forward();
            steps += 1;
        }
        assert_eq!(steps, player.len());
        assert_eq!(player.position(), player.len());
        assert!(player.step_forward().is_empty(), "nothing past the end");
    }
    assert_eq!(ids.len(), 8);
}

#[test]
fn relay_is_refused_without_pop() {
    let out = play("relay-denied");
    assert_eq!(
        reply_to(&out, 1, "RCPT TO:<friend@example.net>"),
        "554 5.7.1 Relay access denied"
    );
    assert_eq!(
        reply_to(&out, 1, "RCPT TO:<hanako@example.test>"),
        "250 2.1.5 Ok"
    );
    assert_eq!(
        grant_calls(&out),
        vec![&GrantCall::Reserve {
            answer: ReserveAnswer::Refused {
                reason: RelayRefusal::NoGrant
            }
        }]
    );
    assert_eq!(
        decisions(&out)[1],
        (
            "friend@example.net".into(),
            RelayOutcome::Denied {
                reason: RelayRefusal::NoGrant
            }
        )
    );
}

#[test]
fn pop_login_grants_and_the_relay_is_accepted() {
    let mut player = Player::new(shipped("pop-then-relay"));
    let out = player.seek(player.len());
    assert_eq!(
        reply_to(&out, 2, "RCPT TO:<friend@example.net>"),
        "250 2.1.5 Ok"
    );
    let queued = player.sim().queued();
    assert_eq!(queued.len(), 1);
    let (from, rcpts, message) = &queued[0];
    assert_eq!(from, "taro@example.test");
    assert_eq!(rcpts, &vec!["friend@example.net".to_owned()]);
    let text = String::from_utf8_lossy(message);
    assert!(text.starts_with("Received: from laptop.example.net ([198.51.100.23])"));
    assert!(text.contains("(relayed on a POP-before-SMTP grant for taro@example.test)"));
    assert!(text.contains("Subject: Hello\r\n\r\nHi! Sent through popgate.\r\n"));

    let calls = grant_calls(&out);
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(matches!(
        calls[0],
        GrantCall::Login { user, answer: LoginAnswer::Created { grant } }
            if user == "taro@example.test" && grant.expires == Millis(START.0 + TTL_MS)
    ));
    let key: Cidr = "198.51.100.23/32".parse().expect("cidr");
    assert_eq!(
        calls[1],
        &GrantCall::Reserve {
            answer: ReserveAnswer::Reserved {
                key,
                user: "taro@example.test".into()
            }
        }
    );
    assert_eq!(calls[2], &GrantCall::Commit { key });
    // The grant stays, with no reservation left, for the rest of its time.
    let grants = player.sim().grants();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].reserved, 0);
    assert!(matches!(
        &decisions(&out)[0].1,
        RelayOutcome::Grant { granting_session, .. } if *granting_session == SessionId(1)
    ));
}

#[test]
fn the_grant_expires_at_exactly_its_ttl() {
    let out = play("grant-expires");
    let expired: Vec<&Event> = events(&out)
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::GrantExpired { .. }))
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].at, Millis(START.0 + TTL_MS));
    assert_eq!(
        reply_to(&out, 2, "RCPT TO:<friend@example.net>"),
        "554 5.7.1 Relay access denied"
    );
}

#[test]
fn a_grant_still_relays_one_millisecond_before_its_ttl() {
    let mut sim = user_sim();
    let laptop = ip("198.51.100.23");
    pop_login(&mut sim, laptop);
    sim.advance(Duration::from_millis(TTL_MS - 1));
    let smtp = smtp_to(&mut sim, laptop, "friend@example.net");
    send(&mut sim, smtp, "RSET");
    let out = sim.drain();
    assert_eq!(
        reply_to(&out, 2, "RCPT TO:<friend@example.net>"),
        "250 2.1.5 Ok"
    );
    assert!(
        grant_calls(&out).contains(&&GrantCall::Release {
            key: "198.51.100.23/32".parse().expect("cidr")
        }),
        "RSET gives the reservation back"
    );
    assert!(
        !events(&out)
            .iter()
            .any(|e| matches!(e.kind, EventKind::GrantExpired { .. }))
    );

    // One more millisecond: the grant is gone, to the millisecond.
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.now(), Millis(START.0 + TTL_MS));
    assert!(sim.grants().is_empty());
    send(&mut sim, smtp, "MAIL FROM:<taro@example.test>");
    send(&mut sim, smtp, "RCPT TO:<friend@example.net>");
    let out = sim.drain();
    assert!(matches!(
        events(&out)[0],
        Event { at, kind: EventKind::GrantExpired { .. }, .. } if *at == Millis(START.0 + TTL_MS)
    ));
    assert_eq!(
        reply_to(&out, 2, "RCPT TO:<friend@example.net>"),
        "554 5.7.1 Relay access denied"
    );
}

#[test]
fn the_message_limit_is_used_up() {
    let mut player = Player::new(shipped("message-limit"));
    let out = player.seek(player.len());
    let d = decisions(&out);
    assert_eq!(d.len(), 2);
    assert!(matches!(d[0].1, RelayOutcome::Grant { .. }));
    assert_eq!(
        d[1].1,
        RelayOutcome::Denied {
            reason: RelayRefusal::UsedUp
        }
    );
    assert!(events(&out).iter().any(|e| matches!(
        e.kind,
        EventKind::GrantUsed {
            messages_left: Some(0),
            ..
        }
    )));
    assert_eq!(player.sim().queued().len(), 1);
    assert_eq!(player.sim().grants()[0].messages_left, Some(0));
}

#[test]
fn a_failed_login_grants_nothing() {
    let mut player = Player::new(shipped("failed-login"));
    let out = player.seek(player.len());
    assert!(
        !grant_calls(&out)
            .iter()
            .any(|c| matches!(c, GrantCall::Login { .. }))
    );
    assert!(!events(&out).iter().any(|e| matches!(
        e.kind,
        EventKind::GrantCreated { .. } | EventKind::GrantRefreshed { .. }
    )));
    assert!(player.sim().grants().is_empty());
    assert!(events(&out).iter().any(|e| e.kind
        == EventKind::LoginDelayed {
            delay_ms: 2000,
            failures: 1
        }));
    // The -ERR is held back for exactly the delay.
    let err = out
        .iter()
        .find_map(|o| match o {
            SimOutput::Wire { at, text, .. } if text.starts_with("-ERR") => Some((*at, text)),
            _ => None,
        })
        .expect("an -ERR");
    assert_eq!(err.0, Millis(START.0 + 2000));
    assert_eq!(err.1, "-ERR [AUTH] Authentication failed");
    assert_eq!(
        reply_to(&out, 2, "RCPT TO:<friend@example.net>"),
        "554 5.7.1 Relay access denied"
    );
}

#[test]
fn behind_one_nat_address_another_host_relays_on_the_grant() {
    let s = shipped("shared-nat");
    assert_eq!(s.clients.len(), 2);
    assert_eq!(s.clients[0].address, s.clients[1].address);
    assert_ne!(s.clients[0].label, s.clients[1].label);
    let mut player = Player::new(s);
    let out = player.seek(player.len());
    let pop = player.conn("pop").expect("pop opened");
    let smtp = player.conn("smtp").expect("smtp opened");
    assert_eq!(
        reply_to(&out, smtp.0, "RCPT TO:<friend@example.net>"),
        "250 2.1.5 Ok"
    );
    assert!(matches!(
        &decisions(&out)[0].1,
        RelayOutcome::Grant { user, granting_session, .. }
            if user == "taro@example.test" && *granting_session == pop.session()
    ));
    let queued = player.sim().queued();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].0, "visitor@example.org");
    assert!(
        String::from_utf8_lossy(&queued[0].2)
            .contains("(relayed on a POP-before-SMTP grant for taro@example.test)")
    );
}

#[test]
fn submission_relays_after_starttls_and_auth_without_a_grant() {
    let s = shipped("submission-auth");
    // The AUTH PLAIN payload written in the scenario is the scenario's own user.
    let payload = s
        .steps
        .iter()
        .find_map(|step| match step {
            ScenarioStep::Send { line, .. } => line.strip_prefix("AUTH PLAIN "),
            _ => None,
        })
        .expect("an AUTH PLAIN step");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .expect("base64");
    let user = &s.config.users[0];
    assert_eq!(
        decoded,
        format!("\0{}\0{}", user.address, user.password).into_bytes()
    );

    let mut player = Player::new(s);
    let out = player.seek(player.len());
    let lines = wire(&out);
    let starttls = lines
        .iter()
        .position(|(_, l)| l == "S: 220 2.0.0 Ready to start TLS")
        .expect("STARTTLS accepted");
    let authed = lines
        .iter()
        .position(|(_, l)| l == "S: 235 2.7.0 Authentication successful")
        .expect("AUTH accepted");
    let queued = lines
        .iter()
        .position(|(_, l)| l.starts_with("S: 250 2.0.0 Ok: queued as "))
        .expect("message accepted");
    assert!(starttls < authed && authed < queued);
    // The go-ahead is on the wire before TLS starts; AUTH comes only inside TLS.
    let order: Vec<&EventKind> = events(&out)
        .into_iter()
        .map(|e| &e.kind)
        .filter(|k| {
            matches!(
                k,
                EventKind::TlsStarted { .. } | EventKind::AuthSucceeded { .. }
            )
        })
        .collect();
    assert_eq!(
        order,
        vec![
            &EventKind::TlsStarted {
                version: TLS_VERSION.into(),
                cipher: TLS_CIPHER.into()
            },
            &EventKind::AuthSucceeded {
                user: "taro@example.test".into(),
                mechanism: "PLAIN".into()
            }
        ]
    );
    assert_eq!(
        decisions(&out),
        vec![(
            "friend@example.net".into(),
            RelayOutcome::Auth {
                user: "taro@example.test".into()
            }
        )]
    );
    assert!(grant_calls(&out).is_empty(), "no grant table involved");
    assert!(player.sim().grants().is_empty());
    assert_eq!(player.sim().queued().len(), 1);
}

#[test]
fn free_play_opens_both_protocols_and_takes_typed_lines() {
    let mut player = Player::new(shipped("free-play"));
    let out = player.seek(player.len());
    assert_eq!(
        wire(&out),
        vec![
            (1, "S: +OK popgate ready".into()),
            (2, "S: 220 mail.example.test ESMTP popgate".into())
        ]
    );
    let typed = |line: &str| ScenarioStep::Send {
        conn: "pop".into(),
        line: line.into(),
        note: None,
    };
    let out = player.push_step(typed("USER hanako")).expect("valid step");
    assert_eq!(wire(&out)[1].1, "S: +OK send PASS");
    player
        .push_step(typed("PASS tanuki-3"))
        .expect("valid step");
    assert_eq!(player.sim().grants()[0].user, "hanako@example.test");
    // Typed steps are part of the scenario now: stepping back replays them.
    let before = player.output().to_vec();
    player.step_back();
    assert!(player.sim().grants().is_empty());
    player.step_forward();
    assert_eq!(player.output(), &before[..]);
    // A step that names no open connection is refused, and changes nothing.
    let bad = ScenarioStep::Close {
        conn: "nope".into(),
        note: None,
    };
    assert!(matches!(
        player.push_step(bad),
        Err(ScenarioError::UnknownConn { .. })
    ));
    assert_eq!(player.output(), &before[..]);
}

#[test]
fn step_back_and_seek_equal_a_fresh_replay() {
    for s in scenarios() {
        let mut forward = Player::new(s.clone());
        let mut prefixes = vec![Vec::new()];
        while !forward.at_end() {
            forward.step_forward();
            prefixes.push(forward.output().to_vec());
        }
        let mut player = Player::new(s.clone());
        for (k, prefix) in prefixes.iter().enumerate() {
            assert_eq!(&player.seek(k), prefix, "{} seek({k})", s.id);
            assert_eq!(player.position(), k);
        }
        player.seek(player.len());
        for k in (0..player.len()).rev() {
            assert_eq!(&player.step_back(), &prefixes[k], "{} back to {k}", s.id);
            assert_eq!(player.position(), k);
        }
        assert_eq!(player.step_back(), Vec::new(), "back from the start");
        player.restart();
        assert_eq!(player.position(), 0);
        assert!(player.output().is_empty());
    }
}

#[test]
fn events_are_numbered_from_one_without_gaps() {
    for s in scenarios() {
        let out = Player::new(s.clone()).seek(usize::MAX);
        let seqs: Vec<u64> = events(&out).iter().map(|e| e.seq).collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "{}", s.id);
    }
}

#[test]
fn time_is_the_virtual_clock_alone() {
    for s in scenarios() {
        let advanced: u64 = s
            .steps
            .iter()
            .map(|step| match step {
                ScenarioStep::Advance { by_ms, .. } => *by_ms,
                _ => 0,
            })
            .sum();
        let mut player = Player::new(s.clone());
        let out = player.seek(usize::MAX);
        let start = Millis(s.config.start_ms);
        assert_eq!(player.sim().now(), Millis(start.0 + advanced), "{}", s.id);
        let mut last = start;
        for o in &out {
            assert!(o.at() >= last, "{}: time went back at {o:?}", s.id);
            last = o.at();
        }
        assert!(last <= player.sim().now());
        // The same steps give the same outputs, byte for byte.
        assert_eq!(Player::new(s.clone()).seek(usize::MAX), out, "{}", s.id);
    }
    // And the clock starts where the configuration says.
    let sim = Simulator::new(SimConfig {
        start: Millis(42),
        ..SimConfig::default()
    });
    assert_eq!(sim.now(), Millis(42));
}

#[test]
fn the_dashboard_reducer_renders_the_simulation() {
    let out = play("pop-then-relay");
    let mut state = DashboardState::default();
    for e in events(&out) {
        state.apply(e);
    }
    assert_eq!(state.seq, events(&out).len() as u64);
    assert_eq!(state.grants.len(), 1);
    assert_eq!(state.sessions.len(), 2);
}

#[test]
fn implicit_tls_is_announced_after_the_session_opens() {
    let mut sim = user_sim();
    let c = sim.connect(ip("198.51.100.23"), Endpoint::Pop3s);
    let out = sim.drain();
    let kinds: Vec<&EventKind> = events(&out).into_iter().map(|e| &e.kind).collect();
    assert!(matches!(
        kinds[0],
        EventKind::SessionOpened {
            tls: true,
            protocol: Protocol::Pop3s,
            ..
        }
    ));
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, EventKind::TlsStarted { .. }))
    );
    assert!(sim.is_open(c));
    assert_eq!(
        sim.connection(c),
        Some((ip("198.51.100.23"), Endpoint::Pop3s))
    );
}

#[test]
fn a_dropped_connection_releases_its_reservation() {
    let mut sim = user_sim();
    let laptop = ip("198.51.100.23");
    pop_login(&mut sim, laptop);
    let smtp = smtp_to(&mut sim, laptop, "friend@example.net");
    assert_eq!(sim.grants()[0].reserved, 1);
    sim.drain();
    sim.close(smtp);
    assert!(!sim.is_open(smtp));
    let out = sim.drain();
    assert_eq!(
        grant_calls(&out),
        vec![&GrantCall::Release {
            key: "198.51.100.23/32".parse().expect("cidr")
        }]
    );
    assert!(
        wire(&out).is_empty(),
        "nothing is written to a dropped client"
    );
    assert_eq!(sim.grants()[0].reserved, 0);
    // Bytes to a closed connection go nowhere.
    send(&mut sim, smtp, "NOOP");
    assert!(sim.drain().is_empty());
}

#[test]
fn an_idle_session_times_out_on_the_virtual_clock() {
    let mut sim = user_sim();
    let pop = sim.connect(ip("198.51.100.23"), Endpoint::Pop3);
    let smtp = sim.connect(ip("198.51.100.23"), Endpoint::Smtp);
    sim.drain();
    // RFC 5321 §4.5.3.2.7: SMTP waits 5 minutes; RFC 1939 §3: POP3 at least 10.
    sim.advance(Duration::from_secs(60 * 60));
    let out = sim.drain();
    let closed: Vec<(Option<SessionId>, Millis)> = events(&out)
        .into_iter()
        .filter(|e| {
            e.kind
                == EventKind::SessionClosed {
                    reason: CloseReason::Timeout,
                }
        })
        .map(|e| (e.session, e.at))
        .collect();
    assert_eq!(
        closed,
        vec![
            (Some(smtp.session()), Millis(START.0 + 5 * 60 * 1000)),
            (Some(pop.session()), Millis(START.0 + 10 * 60 * 1000)),
        ]
    );
    assert!(!sim.is_open(pop) && !sim.is_open(smtp));
    assert_eq!(sim.now(), Millis(START.0 + 60 * 60 * 1000));
}

#[test]
fn local_mail_is_delivered_and_read_back_over_pop3() {
    let mut sim = user_sim();
    let laptop = ip("198.51.100.23");
    let smtp = smtp_to(&mut sim, laptop, "Hanako@Example.test");
    send(&mut sim, smtp, "DATA");
    send(&mut sim, smtp, "Subject: hi\r\n\r\nlunch?\r\n.");
    assert_eq!(sim.maildrop("hanako").len(), 1);
    assert!(sim.queued().is_empty());
    let pop = sim.connect(laptop, Endpoint::Pop3);
    send(&mut sim, pop, "USER hanako");
    send(&mut sim, pop, "PASS tanuki-3");
    send(&mut sim, pop, "RETR 1");
    send(&mut sim, pop, "DELE 1");
    send(&mut sim, pop, "QUIT");
    let out = sim.drain();
    let lines: Vec<String> = wire(&out).into_iter().map(|(_, l)| l).collect();
    assert!(lines.contains(&"S: Return-Path: <taro@example.test>".to_owned()));
    assert!(lines.contains(&"S: lunch?".to_owned()));
    assert!(
        sim.maildrop("hanako@example.test").is_empty(),
        "removed in UPDATE"
    );
}

#[test]
fn wire_lines_wait_for_their_line_end() {
    let mut sim = user_sim();
    let pop = sim.connect(ip("198.51.100.23"), Endpoint::Pop3);
    sim.drain();
    sim.send(pop, b"NO");
    assert!(sim.drain().is_empty());
    sim.send(pop, b"OP\r\n");
    let out = sim.drain();
    assert_eq!(wire(&out)[0], (1, "C: NOOP".into()));
}

#[test]
fn bad_scenarios_are_errors_not_panics() {
    let good = scenario::shipped()[1];
    let mut value: serde_json::Value = serde_json::from_str(good).expect("json");
    // (JSON pointer, new value, the error it makes)
    let cases = [
        ("/version", serde_json::json!(2), ScenarioError::Version(2)),
        (
            "/steps/0/client",
            serde_json::json!("ghost"),
            ScenarioError::UnknownClient {
                step: 0,
                client: "ghost".into(),
            },
        ),
        (
            "/steps/1/conn",
            serde_json::json!("never"),
            ScenarioError::UnknownConn {
                step: 1,
                conn: "never".into(),
            },
        ),
        (
            "/title/ja",
            serde_json::json!(""),
            ScenarioError::MissingText {
                what: "title".into(),
            },
        ),
    ];
    for (pointer, new, expected) in cases {
        let mut v = value.clone();
        *v.pointer_mut(pointer).expect("field exists") = new;
        assert_eq!(Scenario::from_json(&v.to_string()), Err(expected));
    }
    value["steps"][0]["typo"] = true.into();
    assert!(matches!(
        Scenario::from_json(&value.to_string()),
        Err(ScenarioError::Json(_))
    ));
    assert!(matches!(
        Scenario::from_json("{"),
        Err(ScenarioError::Json(_))
    ));
    assert!(matches!(
        Scenario::from_json(r#"{"version": 1}"#),
        Err(ScenarioError::Json(_))
    ));
}

#[test]
fn text_picks_the_language() {
    let t = Text {
        en: "hello".into(),
        ja: "こんにちは".into(),
    };
    assert_eq!(t.get("ja-JP"), "こんにちは");
    assert_eq!(t.get("en-GB"), "hello");
    assert_eq!(t.get("fr"), "hello");
    assert_eq!(t.get(""), "hello");
}

#[test]
fn send_steps_end_every_line_with_crlf() {
    assert_eq!(ScenarioStep::wire_bytes("QUIT"), b"QUIT\r\n");
    assert_eq!(
        ScenarioStep::wire_bytes("a\n\nb\r\n."),
        b"a\r\n\r\nb\r\n.\r\n"
    );
}

#[test]
fn lines_sent_during_a_login_delay_wait_their_turn() {
    let mut sim = user_sim();
    let pop = sim.connect(ip("198.51.100.23"), Endpoint::Pop3);
    send(&mut sim, pop, "USER taro@example.test");
    send(&mut sim, pop, "PASS wrong");
    send(&mut sim, pop, "QUIT");
    let out = sim.drain();
    assert_eq!(wire(&out).last(), Some(&(1, "C: QUIT".to_owned())));
    assert!(sim.is_open(pop));
    sim.advance(Duration::from_millis(1999));
    assert!(sim.drain().is_empty(), "the delay is not over");
    sim.advance(Duration::from_millis(1));
    let out = sim.drain();
    assert_eq!(
        wire(&out),
        vec![
            (1, "S: -ERR [AUTH] Authentication failed".into()),
            (1, "S: +OK popgate signing off".into()),
        ]
    );
    assert!(!sim.is_open(pop));
}

#[test]
fn plaintext_pipelined_after_starttls_is_never_executed() {
    let mut sim = user_sim();
    let sub = sim.connect(ip("198.51.100.23"), Endpoint::Submission);
    send(&mut sim, sub, "EHLO laptop.example.net");
    // RFC 3207 §4 / CVE-2011-0411: the AUTH rides in the same packet as STARTTLS.
    sim.send(
        sub,
        b"STARTTLS\r\nAUTH PLAIN AHRhcm9AZXhhbXBsZS50ZXN0AGtpdHN1bmUtNw==\r\n",
    );
    let out = sim.drain();
    let kinds: Vec<&EventKind> = events(&out).into_iter().map(|e| &e.kind).collect();
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, EventKind::TlsStarted { .. }))
    );
    assert!(
        !kinds
            .iter()
            .any(|k| matches!(k, EventKind::AuthSucceeded { .. }))
    );
    // Inside TLS the session starts over: MAIL before EHLO and AUTH is refused.
    send(&mut sim, sub, "EHLO laptop.example.net");
    send(&mut sim, sub, "MAIL FROM:<taro@example.test>");
    let out = sim.drain();
    assert!(reply_to(&out, 1, "MAIL FROM:<taro@example.test>").starts_with("530 5.7.0"));
}

#[test]
fn a_scenario_without_translations_still_takes_free_play_steps() {
    let mut s = shipped("free-play");
    s.title = Text::default();
    s.steps.clear();
    let mut player = Player::new(s);
    player
        .push_step(ScenarioStep::Connect {
            conn: "c".into(),
            client: "laptop".into(),
            endpoint: Endpoint::Smtp,
            note: None,
        })
        .expect("names check out");
    let out = player
        .push_step(ScenarioStep::Send {
            conn: "c".into(),
            line: "NOOP".into(),
            note: None,
        })
        .expect("names check out");
    assert_eq!(wire(&out)[1].1, "S: 250 2.0.0 Ok");
}
