//! Protocol attacks against the real binary, each with the exact reply and what is
//! stored or relayed afterwards: SMTP smuggling (RFC 5321 §2.3.8, §4.1.1.4), pipelining
//! discipline (RFC 2920 §3.1), HTTP and PROXY sent to the mail ports, the error limit,
//! the classic open-relay test addresses against a loopback next hop, and NUL or
//! invalid UTF-8 in every SMTP and POP3 command.

mod delivery_support;

use delivery_support::{ALICE, Sink, relay, relay_session, setup};
use popgate_tests::{Client, Server, Setup, contains, host, log_field, read, reply};

const BOB: &str = "bob@example.test";
const PW: &str = "bob-secret-8";

const SYNC: &str = "554 5.5.0 Error: SMTP protocol synchronization";
const FOREIGN: &str = "554 5.5.0 Error: not an SMTP command, closing";
const POP3_FOREIGN: &str = "-ERR Not a POP3 command, closing";
const BARE_LF: &str = "550 5.5.2 Error: bare <LF> received";
const BARE_CR: &str = "550 5.5.2 Error: bare <CR> received";
const BAD_ADDRESS: &str = "501 5.1.3 Bad address syntax";
const UNSAFE_LOCAL: &str = "553 5.1.3 Recipient address rejected: bad local part";
const TOO_MANY_ERRORS: &str = "421 4.7.0 Error: too many errors";
const SYNTAX_ERROR: &str = "500 5.5.2 Syntax error, command unrecognized";

/// The standard bare-LF / bare-CR "ends of data", each followed by a smuggled
/// transaction; only the final CRLF.CRLF may end the message.
const SMUGGLES: [(&str, &str, &str); 6] = [
    ("LF.LF", "\n.\n", BARE_LF),
    ("CR.CR", "\r.\r", BARE_CR),
    ("CRLF.LF", "\r\n.\n", BARE_LF),
    ("LF.CRLF", "\n.\r\n", BARE_LF),
    ("CR.CRLF", "\r.\r\n", BARE_CR),
    ("CRLF.CR", "\r\n.\r", BARE_CR),
];

fn smuggled_body(name: &str, end: &str) -> Vec<u8> {
    format!(
        "Subject: smuggle {name}\r\n\r\nbefore{end}MAIL FROM:<evil@elsewhere.test>\r\n\
         RCPT TO:<{BOB}>\r\nDATA\r\nSubject: smuggled {name}\r\n\r\nevil\r\n"
    )
    .into_bytes()
}

/// A new SMTP connection still gets the greeting and EHLO: the server is serving.
fn still_serving(server: &Server) {
    let mut c = Client::smtp_from(server.smtp(), host(9));
    let r = c.smtp("QUIT");
    assert!(r.starts_with("221 "), "QUIT: {r:?}");
}

/// After a close the server sent nothing more and closed: `rest` is what followed.
fn closed_after(c: &mut Client, what: &str) {
    let rest = c.wait_closed();
    assert!(
        rest.is_empty(),
        "{what}: bytes after the closing reply: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[test]
fn smuggled_ends_of_data_are_refused_by_default_and_nothing_is_stored() {
    let server = Setup::default().user(BOB, PW).start();
    for (name, end, refusal) in SMUGGLES {
        let mut c = Client::smtp_from(server.smtp(), host(2));
        let r = c.smtp("MAIL FROM:<sender@elsewhere.test>");
        assert!(r.starts_with("250 "), "MAIL: {r:?}");
        let r = c.smtp(&format!("RCPT TO:<{BOB}>"));
        assert!(r.starts_with("250 "), "RCPT: {r:?}");
        let r = c.smtp_data(&smuggled_body(name, end));
        assert_eq!(r, refusal, "{name}: the reply to the one real end of data");
        // A server that ended the message early would now answer the smuggled MAIL,
        // RCPT, DATA and end of data before this QUIT.
        let r = c.smtp("QUIT");
        assert!(r.starts_with("221 "), "{name}: QUIT: {r:?}");
        closed_after(&mut c, name);
    }
    assert_eq!(
        server.maildir_files(BOB, "new"),
        Vec::<std::path::PathBuf>::new(),
        "nothing stored, neither the message nor a smuggled one"
    );
    still_serving(&server);
}

/// `bare_newline = "normalize"`: each variant is one relayed message, and what the
/// next hop receives has no bare CR or LF anywhere.
#[test]
fn normalised_bare_line_endings_make_one_message_and_the_next_hop_sees_only_crlf() {
    let sink = Sink::start();
    let server = setup(&format!("smarthost = \"{}\"\n", sink.addr))
        .toml("[limits]\nbare_newline = \"normalize\"")
        .start();
    let (_pop, mut smtp) = relay_session(&server);
    for (name, end, _) in SMUGGLES {
        relay(
            &mut smtp,
            ALICE,
            &["victim@remote.test"],
            &smuggled_body(name, end),
        );
    }
    smtp.smtp("QUIT");
    let got = sink.wait("one message per variant", |m| m.len() >= SMUGGLES.len());
    assert_eq!(got.len(), SMUGGLES.len(), "nothing smuggled through");
    for (name, _, _) in SMUGGLES {
        let message = got
            .iter()
            .find(|m| contains(&m.data, format!("Subject: smuggle {name}\r\n").as_bytes()))
            .unwrap_or_else(|| panic!("{name}: no relayed message"));
        assert_eq!(message.rcpts, ["victim@remote.test"], "{name}");
        assert!(
            contains(&message.data, b"MAIL FROM:<evil@elsewhere.test>\r\n"),
            "{name}: the smuggled part is inside the one message"
        );
        for (i, &b) in message.data.iter().enumerate() {
            let paired = match b {
                b'\r' => message.data.get(i + 1) == Some(&b'\n'),
                b'\n' => i > 0 && message.data[i - 1] == b'\r',
                _ => true,
            };
            assert!(
                paired,
                "{name}: a bare CR or LF at {i} on the wire to the next hop: {:?}",
                String::from_utf8_lossy(&message.data)
            );
        }
    }
}

/// RFC 5321 §4.3.1: a client that talks before the (held) greeting.
#[test]
fn an_early_talker_gets_554_and_a_close() {
    let server = Setup::default()
        .user(BOB, PW)
        .toml("[limits]\ngreet_pause = \"60s\"")
        .start();
    let mut c = Client::connect_from(server.smtp(), host(2));
    c.send(b"EHLO spammer.test\r\nMAIL FROM:<a@elsewhere.test>\r\n");
    assert_eq!(
        c.read_line(),
        SYNC,
        "no greeting first, and no reply to EHLO"
    );
    closed_after(&mut c, "early talker");

    // A client that waits gets the greeting once the pause is over.
    let server = Setup::default()
        .user(BOB, PW)
        .toml("[limits]\ngreet_pause = \"1s\"")
        .start();
    let mut c = Client::smtp_from(server.smtp(), host(2));
    let r = c.smtp("QUIT");
    assert!(r.starts_with("221 "), "QUIT: {r:?}");
}

#[test]
fn pipelining_where_rfc_2920_forbids_it_gets_554_and_a_close() {
    let server = Setup::default().user(BOB, PW).start();

    // HELO, then MAIL without waiting: PIPELINING was never offered.
    let mut c = Client::connect_from(server.smtp(), host(2));
    assert!(c.read_line().starts_with("220 "));
    c.send(b"HELO client.test\r\nMAIL FROM:<a@elsewhere.test>\r\n");
    assert_eq!(c.read_line(), SYNC);
    closed_after(&mut c, "pipelining after HELO");

    // After EHLO, the message sent with DATA before the 354.
    let mut c = Client::smtp_from(server.smtp(), host(2));
    c.send(
        format!(
            "MAIL FROM:<a@elsewhere.test>\r\nRCPT TO:<{BOB}>\r\nDATA\r\nSubject: early\r\n\r\nx\r\n.\r\n"
        )
        .as_bytes(),
    );
    assert!(c.smtp_last().starts_with("250 2.1.0"), "MAIL");
    assert!(c.smtp_last().starts_with("250 2.1.5"), "RCPT");
    assert_eq!(c.read_line(), SYNC, "instead of 354");
    closed_after(&mut c, "pipelining after DATA");

    // The allowed group: MAIL, RCPT, DATA together, the message after the 354, and
    // QUIT pipelined after the end of data.
    let mut c = Client::smtp_from(server.smtp(), host(2));
    c.send(format!("MAIL FROM:<a@elsewhere.test>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n").as_bytes());
    assert!(c.smtp_last().starts_with("250 "));
    assert!(c.smtp_last().starts_with("250 "));
    assert!(c.smtp_last().starts_with("354 "));
    c.send(b"Subject: allowed\r\n\r\nx\r\n.\r\nQUIT\r\n");
    assert!(c.smtp_last().starts_with(reply::QUEUED));
    assert!(c.smtp_last().starts_with("221 "));

    let files = server.maildir_files(BOB, "new");
    assert_eq!(files.len(), 1, "only the allowed message: {files:?}");
    assert!(contains(&read(&files[0]), b"Subject: allowed\r\n"));
    still_serving(&server);
}

#[test]
fn http_and_proxy_requests_close_at_once() {
    let server = Setup::default().user(BOB, PW).start();
    for request in [
        &b"GET / HTTP/1.1\r\nHost: mail.example.test\r\nUser-Agent: probe\r\n\r\n"[..],
        b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 42\r\n\r\nMAIL FROM:<a@elsewhere.test>\r\n",
        b"CONNECT victim.test:25 HTTP/1.0\r\n\r\n",
        b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 25\r\nEHLO x\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc6\x33\x64\x07\x7f\x00\x00\x01\x9c\x40\x00\x19",
    ] {
        let shown = String::from_utf8_lossy(request);
        let mut c = Client::connect_from(server.smtp(), host(2));
        assert!(c.read_line().starts_with("220 "), "{shown}");
        c.send(request);
        assert_eq!(c.read_line(), FOREIGN, "SMTP: {shown}");
        closed_after(&mut c, &shown);

        let mut p = Client::connect_from(server.pop3(), host(2));
        assert!(p.read_line().starts_with("+OK"), "{shown}");
        p.send(request);
        assert_eq!(p.read_line(), POP3_FOREIGN, "POP3: {shown}");
        closed_after(&mut p, &shown);
    }
    still_serving(&server);
    let p = Client::pop3_login(server.pop3(), host(2), BOB, PW);
    drop(p);
}

#[test]
fn errors_up_to_the_hard_limit_then_421_and_close() {
    let server = Setup::default()
        .user(BOB, PW)
        .toml("[limits]\nsoft_error_limit = 1\nhard_error_limit = 3\nerror_sleep_time = \"0s\"")
        .start();
    let mut c = Client::smtp_from(server.smtp(), host(2));
    assert_eq!(c.smtp("FOO"), SYNTAX_ERROR);
    assert_eq!(c.smtp("DATA"), "503 5.5.1 Bad sequence of commands");
    assert_eq!(c.smtp("BAR"), SYNTAX_ERROR);
    assert_eq!(c.read_line(), TOO_MANY_ERRORS);
    closed_after(&mut c, "the hard error limit");
    still_serving(&server);
}

/// The addresses the old open-relay testers tried, from a host with no grant; a
/// next hop that would receive anything relayed. `None`: a relay refusal.
const RELAY_PROBES: [(&str, Option<&str>); 22] = [
    ("<victim@remote.test>", None),
    ("<victim@remote.test.>", None),
    ("<victim%remote.test@example.test>", None),
    ("<VICTIM%REMOTE.TEST@EXAMPLE.TEST.>", None),
    ("<victim%remote.test@[127.0.0.1]>", None),
    ("<\"victim@remote.test\"@example.test>", None),
    ("<\"victim@remote.test\"@[127.0.0.1]>", None),
    ("<\"victim%remote.test\"@example.test>", None),
    ("<remote.test!victim@example.test>", None),
    ("<remote.test!victim@[127.0.0.1]>", None),
    ("<@example.test:victim@remote.test>", None),
    ("<@[127.0.0.1]:victim@remote.test>", None),
    (
        "<@example.test,@[127.0.0.1]:victim%remote.test@example.test>",
        None,
    ),
    ("<victim@[192.0.2.1]>", None),
    ("<victim@[127.0.0.2]>", None),
    ("<victim@[IPv6:::ffff:127.0.0.2]>", None),
    ("<victim@example.test.remote.test>", None),
    ("<victim@remote.test@example.test>", Some(BAD_ADDRESS)),
    ("<victim@remote.test@[127.0.0.1]>", Some(BAD_ADDRESS)),
    ("<\"victim@remote.test\">", Some(BAD_ADDRESS)),
    ("<remote.test!victim>", Some(BAD_ADDRESS)),
    ("<victim%remote.test>", Some(BAD_ADDRESS)),
];

#[test]
fn the_classic_open_relay_tests_are_all_refused_and_nothing_reaches_the_next_hop() {
    let sink = Sink::start();
    let server = setup(&format!("smarthost = \"{}\"\n", sink.addr))
        .user(BOB, PW)
        .start();
    for (path, refusal) in RELAY_PROBES {
        // One connection per probe, so the error limit never decides the outcome.
        let mut c = Client::smtp_from(server.smtp(), host(3));
        let r = c.smtp("MAIL FROM:<spammer@elsewhere.test>");
        assert!(r.starts_with("250 "), "MAIL: {r:?}");
        let r = c.smtp(&format!("RCPT TO:{path}"));
        assert_eq!(r, refusal.unwrap_or(reply::RELAY_DENIED), "RCPT TO:{path}");
        let r = c.smtp("DATA");
        assert_eq!(r, "554 5.5.1 No valid recipients", "DATA after {path}");
        c.smtp("QUIT");
    }
    // The same local forms do reach the local mailbox: the refusals above are about
    // relaying, not about the syntax.
    let mut c = Client::smtp_from(server.smtp(), host(3));
    for path in [
        "<bob@[127.0.0.1]>",
        "<Bob@EXAMPLE.TEST.>",
        "<\"bob\"@example.test>",
        "<@remote.test:bob@example.test>",
    ] {
        let r = c.smtp("MAIL FROM:<friend@elsewhere.test>");
        assert!(r.starts_with("250 "), "MAIL: {r:?}");
        let r = c.smtp(&format!("RCPT TO:{path}"));
        assert!(r.starts_with("250 2.1.5"), "RCPT TO:{path}: {r:?}");
        let r = c.smtp_data(format!("Subject: local {path}\r\n\r\nhi\r\n").as_bytes());
        assert!(r.starts_with(reply::QUEUED), "{path}: {r:?}");
    }
    assert_eq!(
        server.maildir_files(BOB, "new").len(),
        4,
        "four local deliveries"
    );
    // Local parts that would leave the mailbox folder.
    for path in [
        "<.bob@example.test>",
        "<\"../bob\"@example.test>",
        "<\"a/b\"@example.test>",
    ] {
        let r = c.smtp("MAIL FROM:<friend@elsewhere.test>");
        assert!(r.starts_with("250 "), "MAIL: {r:?}");
        assert_eq!(c.smtp(&format!("RCPT TO:{path}")), UNSAFE_LOCAL, "{path}");
        assert_eq!(c.smtp("RSET"), "250 2.0.0 Ok");
    }
    c.smtp("QUIT");

    // A control through the same next hop: a granted client's relay arrives, so the
    // sink would have seen any probe that got through.
    let (_pop, mut smtp) = relay_session(&server);
    let id = relay(
        &mut smtp,
        ALICE,
        &["friend@remote.test"],
        b"Subject: control\r\n\r\nallowed\r\n",
    );
    smtp.smtp("QUIT");
    let got = sink.wait("the control message", |m| !m.is_empty());
    server.wait_log("the control leaves the queue", |l| {
        l.contains("event=relay_done") && log_field(l, "id") == Some(&id)
    });
    assert_eq!(got.len(), 1, "only the control reached the next hop");
    assert_eq!(got[0].rcpts, ["friend@remote.test"]);
    assert_eq!(
        sink.transactions(),
        1,
        "no other transaction at the next hop"
    );
    let queue = server.queue_list();
    assert!(
        !queue.contains("victim") && !queue.contains(&id),
        "the queue is empty: {queue}"
    );
}

/// Every SMTP verb and every POP3 command with a NUL or invalid UTF-8 in it.
#[test]
fn nul_and_invalid_utf8_in_every_command_get_an_error_and_the_session_goes_on() {
    let server = Setup::default()
        .user(BOB, PW)
        .toml("[limits]\nhard_error_limit = 1000\nerror_sleep_time = \"0s\"")
        .start();
    let bad: [&[u8]; 3] = [b"\0", b"\xff", b"\xc3\x28"];
    let mut c = Client::smtp_from(server.smtp(), host(2));
    for verb in [
        "EHLO client.test",
        "HELO client.test",
        "MAIL FROM:<a@elsewhere.test>",
        &format!("RCPT TO:<{BOB}>"),
        "DATA",
        "RSET",
        "NOOP",
        "QUIT",
        "VRFY bob",
        "EXPN staff",
        "HELP",
        "STARTTLS",
        "AUTH PLAIN",
    ] {
        for b in bad {
            for at in [0, verb.len() / 2, verb.len()] {
                let mut line = verb.as_bytes()[..at].to_vec();
                line.extend_from_slice(b);
                line.extend_from_slice(&verb.as_bytes()[at..]);
                line.extend_from_slice(b"\r\n");
                c.send(&line);
                assert_eq!(
                    c.smtp_last(),
                    SYNTAX_ERROR,
                    "SMTP {:?}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
    }
    assert_eq!(c.smtp("NOOP"), "250 2.0.0 Ok", "the SMTP session goes on");

    let mut p = Client::connect_from(server.pop3(), host(2));
    assert!(p.read_line().starts_with("+OK"));
    let pop_verbs = [
        "USER bob@example.test",
        "PASS x",
        "APOP bob@example.test 0123456789abcdef0123456789abcdef",
        "AUTH PLAIN",
        "CAPA",
        "STLS",
        "STAT",
        "LIST",
        "RETR 1",
        "DELE 1",
        "NOOP",
        "RSET",
        "TOP 1 0",
        "UIDL",
        "QUIT",
    ];
    let pop_bad = |p: &mut Client, state: &str| {
        for verb in pop_verbs {
            for b in bad {
                for at in [0, verb.len() / 2, verb.len()] {
                    let mut line = verb.as_bytes()[..at].to_vec();
                    line.extend_from_slice(b);
                    line.extend_from_slice(&verb.as_bytes()[at..]);
                    line.extend_from_slice(b"\r\n");
                    p.send(&line);
                    let r = p.read_line();
                    assert!(
                        r.starts_with("-ERR"),
                        "POP3 {state} {:?}: {r:?}",
                        String::from_utf8_lossy(&line)
                    );
                }
            }
        }
    };
    pop_bad(&mut p, "AUTHORIZATION");
    let r = p.pop(&format!("USER {BOB}"));
    assert!(r.starts_with("+OK"), "USER after the bad lines: {r:?}");
    let r = p.pop(&format!("PASS {PW}"));
    assert!(r.starts_with("+OK"), "PASS after the bad lines: {r:?}");
    pop_bad(&mut p, "TRANSACTION");
    assert_eq!(p.pop("STAT"), "+OK 0 0", "the POP3 session goes on");
}
