//! Transcript tests: the client against a scripted next hop.

use super::*;
use crate::testing::test;
use crate::time::Millis;

const T0: Millis = Millis(1_000_000);

fn config() -> ClientConfig {
    ClientConfig::new("mail.example.test")
}

fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope {
        from: "taro@example.test".into(),
        recipients: rcpts.iter().map(|r| (*r).to_owned()).collect(),
    }
}

/// Drives a client: `S:` lines are fed as the next hop's bytes (one reply per step),
/// and everything the client writes is collected as `C:` text.
struct Script {
    c: SmtpClient,
    sent: String,
}

impl Script {
    fn new(config: ClientConfig, envelope: Envelope, message: &[u8]) -> Script {
        Script {
            c: SmtpClient::new(config, envelope, message, T0),
            sent: String::new(),
        }
    }

    /// Feed a reply, return what the client wrote in answer.
    fn server(&mut self, reply: &str) -> String {
        self.c.handle_input(T0, reply.as_bytes());
        self.take()
    }

    fn take(&mut self) -> String {
        let mut out = String::new();
        while let Some(bytes) = self.c.poll_transmit() {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
        self.sent.push_str(&out);
        out
    }

    fn outcome(&mut self) -> Outcome {
        self.c.take_outcome().expect("an outcome")
    }
}

const EHLO_FULL: &str =
    "250-mx.remote.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n";

fn delivered(o: &RcptOutcome) -> bool {
    matches!(o, RcptOutcome::Delivered { .. })
}

fn failure(o: &RcptOutcome) -> &Failure {
    match o {
        RcptOutcome::Failed(f) => f,
        RcptOutcome::Delivered { .. } => panic!("expected a failure, got {o:?}"),
    }
}

#[test]
fn pipelined_transaction_with_per_recipient_outcomes() {
    let mut s = Script::new(
        config(),
        envelope(&["a@remote.test", "b@remote.test"]),
        b"Subject: hi\r\n\r\n.dot line\r\nbare\nend",
    );
    assert_eq!(s.take(), "", "the client waits for the greeting");
    assert_eq!(
        s.server("220 mx.remote.test ESMTP\r\n"),
        "EHLO mail.example.test\r\n"
    );
    // RFC 2920: MAIL and every RCPT in one write.
    assert_eq!(
        s.server(EHLO_FULL),
        "MAIL FROM:<taro@example.test> SIZE=34\r\nRCPT TO:<a@remote.test>\r\nRCPT TO:<b@remote.test>\r\n"
    );
    assert_eq!(s.server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"), "");
    assert_eq!(
        s.server("550 5.1.1 <b@remote.test>: unknown\r\n"),
        "DATA\r\n"
    );
    assert!(s.c.outcome().is_none());
    assert_eq!(
        s.server("354 go ahead\r\n"),
        "Subject: hi\r\n\r\n..dot line\r\nbare\r\nend\r\n.\r\n",
        "dot-stuffed, CRLF only, terminated"
    );
    assert_eq!(s.server("250 2.0.0 Ok: queued as X1\r\n"), "QUIT\r\n");
    let o = s.outcome();
    assert!(!o.tls);
    assert_eq!(o.recipients[0].0, "a@remote.test");
    assert_eq!(
        o.recipients[0].1,
        RcptOutcome::Delivered {
            reply: "250 2.0.0 Ok: queued as X1".into()
        }
    );
    let f = failure(&o.recipients[1].1);
    assert!(f.permanent);
    assert_eq!(f.status, "5.1.1");
    assert_eq!(
        f.reply.as_deref(),
        Some("550 5.1.1 <b@remote.test>: unknown")
    );
    assert!(!s.c.is_closed(), "waiting for the 221");
    s.server("221 bye\r\n");
    assert!(s.c.is_closed());
}

#[test]
fn without_pipelining_one_command_at_a_time() {
    let mut s = Script::new(config(), envelope(&["a@r.test", "b@r.test"]), b"x\r\n");
    s.server("220 r.test\r\n");
    assert_eq!(
        s.server("250-r.test\r\n250 8BITMIME\r\n"),
        "MAIL FROM:<taro@example.test>\r\n"
    );
    assert_eq!(s.server("250 ok\r\n"), "RCPT TO:<a@r.test>\r\n");
    assert_eq!(
        s.server("451 4.3.0 try later\r\n"),
        "RCPT TO:<b@r.test>\r\n"
    );
    assert_eq!(s.server("250 ok\r\n"), "DATA\r\n");
    assert_eq!(s.server("354 go\r\n"), "x\r\n.\r\n");
    assert_eq!(s.server("250 ok\r\n"), "QUIT\r\n");
    let o = s.outcome();
    let f = failure(&o.recipients[0].1);
    assert!(!f.permanent, "4xx is temporary");
    assert_eq!(f.status, "4.3.0");
    assert!(delivered(&o.recipients[1].1));
}

#[test]
fn helo_fallback_and_eight_bit_without_8bitmime_fails_permanently() {
    let message = "Subject: caf\u{e9}\r\n\r\nbody\r\n".as_bytes();
    let mut s = Script::new(config(), envelope(&["a@r.test"]), message);
    s.server("220 old.r.test\r\n");
    assert_eq!(
        s.server("502 5.5.1 what\r\n"),
        "HELO mail.example.test\r\n",
        "RFC 5321 §3.2: EHLO refused, HELO"
    );
    assert_eq!(s.server("250 old.r.test\r\n"), "", "no MAIL is sent");
    assert!(s.c.is_closed());
    let f = failure(&s.outcome().recipients[0].1).clone();
    assert!(f.permanent);
    assert_eq!(f.status, "5.6.3");
    assert!(
        f.text.contains("8BITMIME") && f.text.contains("RFC 6152"),
        "{f:?}"
    );

    // Offered: BODY=8BITMIME is declared.
    let mut s = Script::new(config(), envelope(&["a@r.test"]), message);
    s.server("220 r.test\r\n");
    assert_eq!(
        s.server(EHLO_FULL),
        "MAIL FROM:<taro@example.test> SIZE=24 BODY=8BITMIME\r\nRCPT TO:<a@r.test>\r\n"
    );
}

#[test]
fn smtputf8_only_where_offered() {
    let env = Envelope {
        from: "taro@example.test".into(),
        recipients: vec!["\u{7530}\u{4e2d}@r.test".into()],
    };
    let mut s = Script::new(config(), env.clone(), b"x\r\n");
    s.server("220 r.test\r\n");
    assert_eq!(s.server("250-r.test\r\n250 8BITMIME\r\n"), "");
    let f = failure(&s.outcome().recipients[0].1).clone();
    assert!(
        f.permanent && f.status == "5.6.7" && f.text.contains("RFC 6531"),
        "{f:?}"
    );

    let mut s = Script::new(config(), env, b"x\r\n");
    s.server("220 r.test\r\n");
    assert!(
        s.server(EHLO_FULL)
            .starts_with("MAIL FROM:<taro@example.test> SIZE=3 SMTPUTF8\r\n")
    );
}

#[test]
fn size_over_the_advertised_limit_fails_permanently() {
    let mut s = Script::new(config(), envelope(&["a@r.test"]), &[b'x'; 100]);
    s.server("220 r.test\r\n");
    assert_eq!(s.server("250-r.test\r\n250 SIZE 50\r\n"), "");
    let f = failure(&s.outcome().recipients[0].1).clone();
    assert!(f.permanent && f.status == "5.3.4", "{f:?}");
    // SIZE 0: no fixed limit (RFC 1870 §4).
    let mut s = Script::new(config(), envelope(&["a@r.test"]), &[b'x'; 100]);
    s.server("220 r.test\r\n");
    assert!(s.server("250-r.test\r\n250 SIZE 0\r\n").starts_with("MAIL"));
}

#[test]
fn starttls_when_offered_then_ehlo_again() {
    let mut s = Script::new(config(), envelope(&["a@r.test"]), b"x\r\n");
    s.server("220 r.test\r\n");
    assert_eq!(
        s.server("250-r.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"),
        "STARTTLS\r\n"
    );
    assert_eq!(s.server("220 2.0.0 go\r\n"), "");
    assert_eq!(s.c.poll_effect(), Some(ClientEffect::StartTls));
    s.c.handle_tls_established(T0);
    assert_eq!(s.take(), "EHLO mail.example.test\r\n");
    assert_eq!(
        s.server("250-r.test\r\n250 PIPELINING\r\n"),
        "MAIL FROM:<taro@example.test>\r\nRCPT TO:<a@r.test>\r\n"
    );
    s.server("250 ok\r\n250 ok\r\n");
    s.server("354 go\r\n");
    s.server("250 ok\r\n");
    assert!(s.outcome().tls);
}

#[test]
fn plaintext_after_the_starttls_go_ahead_is_not_a_reply() {
    let mut s = Script::new(config(), envelope(&["a@r.test"]), b"x\r\n");
    s.server("220 r.test\r\n");
    s.server("250-r.test\r\n250 STARTTLS\r\n");
    // The go-ahead and an injected reply in one packet: the injection is dropped.
    s.server("220 go\r\n250 injected\r\n");
    assert_eq!(s.c.poll_effect(), Some(ClientEffect::StartTls));
    s.c.handle_tls_established(T0);
    assert_eq!(s.take(), "EHLO mail.example.test\r\n");
    assert!(!s.c.is_closed());
}

#[test]
fn required_tls_not_offered_is_temporary() {
    let mut cfg = config();
    cfg.tls = TlsMode::Required;
    let mut s = Script::new(cfg, envelope(&["a@r.test"]), b"x\r\n");
    s.server("220 r.test\r\n");
    assert_eq!(s.server("250 r.test\r\n"), "");
    assert!(s.c.is_closed());
    let f = failure(&s.outcome().recipients[0].1).clone();
    assert!(!f.permanent && f.status == "4.7.10", "{f:?}");
}

#[test]
fn credentials_only_inside_tls() {
    let mut cfg = config();
    cfg.tls = TlsMode::Disabled;
    cfg.auth = Some(Credentials {
        user: "u".into(),
        password: crate::Secret::new("p"),
    });
    let mut s = Script::new(cfg.clone(), envelope(&["a@r.test"]), b"x\r\n");
    s.server("220 r.test\r\n");
    assert_eq!(s.server("250-r.test\r\n250 AUTH PLAIN\r\n"), "");
    assert!(!failure(&s.outcome().recipients[0].1).permanent);

    cfg.tls = TlsMode::Opportunistic;
    let mut s = Script::new(cfg, envelope(&["a@r.test"]), b"x\r\n");
    s.server("220 r.test\r\n");
    s.server("250-r.test\r\n250 STARTTLS\r\n");
    s.server("220 go\r\n");
    assert_eq!(s.c.poll_effect(), Some(ClientEffect::StartTls));
    s.c.handle_tls_established(T0);
    s.take();
    // RFC 4616: base64("\0u\0p") is "AHUAcA==".
    assert_eq!(
        s.server("250-r.test\r\n250 AUTH LOGIN PLAIN\r\n"),
        "AUTH PLAIN AHUAcA==\r\n"
    );
    assert_eq!(
        s.server("235 2.7.0 ok\r\n"),
        "MAIL FROM:<taro@example.test>\r\n"
    );
}

#[test]
fn mail_refused_while_pipelining_fails_everyone_and_reads_the_rcpt_replies() {
    let mut s = Script::new(config(), envelope(&["a@r.test", "b@r.test"]), b"x\r\n");
    s.server("220 r.test\r\n");
    s.server(EHLO_FULL);
    assert_eq!(s.server("553 5.7.1 sender refused\r\n"), "");
    assert_eq!(s.server("503 5.5.1 no MAIL\r\n"), "");
    assert_eq!(s.server("503 5.5.1 no MAIL\r\n"), "QUIT\r\n");
    let o = s.outcome();
    for (_, r) in &o.recipients {
        assert_eq!(failure(r).status, "5.7.1");
    }
}

#[test]
fn garbage_unexpected_codes_closes_and_silence_are_temporary() {
    type Break = fn(&mut Script);
    let cases: &[(&str, Break)] = &[
        ("garbage", |s| {
            s.server("hello there\r\n");
        }),
        ("unexpected code", |s| {
            s.server("354 not now\r\n250 ok\r\n");
        }),
        ("close mid-reply", |s| {
            s.server("250-ok\r\n");
            s.c.handle_disconnect(T0);
        }),
        ("silence", |s| {
            let at = s.c.poll_timeout().expect("a deadline");
            s.c.handle_timeout(Millis(at.0 - 1));
            assert!(!s.c.is_closed(), "not before the deadline");
            s.c.handle_timeout(at);
        }),
        ("overlong line", |s| {
            s.server(&format!("250 {}\r\n", "x".repeat(5000)));
        }),
    ];
    for (name, breaks) in cases {
        let mut s = Script::new(config(), envelope(&["a@r.test"]), b"x\r\n");
        s.server("220 r.test\r\n");
        s.server(EHLO_FULL);
        breaks(&mut s);
        assert!(s.c.is_closed(), "{name}: closed");
        assert_eq!(s.c.poll_timeout(), None, "{name}: no timer left");
        let f = failure(&s.outcome().recipients[0].1).clone();
        assert!(!f.permanent, "{name}: temporary, got {f:?}");
    }
}

#[test]
fn data_refused_and_final_reply_failures() {
    let mut s = Script::new(config(), envelope(&["a@r.test"]), b"x\r\n");
    s.server("220 r.test\r\n");
    s.server(EHLO_FULL);
    s.server("250 ok\r\n250 ok\r\n");
    assert_eq!(s.server("554 5.3.0 no data for you\r\n"), "QUIT\r\n");
    assert!(failure(&s.outcome().recipients[0].1).permanent);

    let mut s = Script::new(config(), envelope(&["a@r.test"]), b"x\r\n");
    s.server("220 r.test\r\n");
    s.server(EHLO_FULL);
    s.server("250 ok\r\n250 ok\r\n");
    s.server("354 go\r\n");
    assert_eq!(s.server("452 4.3.1 full\r\n"), "QUIT\r\n");
    let f = failure(&s.outcome().recipients[0].1).clone();
    assert!(!f.permanent && f.status == "4.3.1");
    // A lost connection after the outcome was decided changes nothing.
    s.c.handle_disconnect(T0);
    assert!(s.c.is_closed());
}

#[test]
fn greeting_refusal_is_temporary() {
    let mut s = Script::new(config(), envelope(&["a@r.test"]), b"x\r\n");
    assert_eq!(s.server("554 5.7.1 go away\r\n"), "");
    let f = failure(&s.outcome().recipients[0].1).clone();
    assert!(!f.permanent, "another attempt or MX may work: {f:?}");
}

#[test]
fn same_outcome_whatever_the_chunking() {
    let replies = format!(
        "220 r.test\r\n{EHLO_FULL}250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n250 done\r\n221 bye\r\n"
    );
    let run = |chunk: usize| {
        let mut c = SmtpClient::new(config(), envelope(&["a@r.test", "b@r.test"]), b"m\r\n", T0);
        let mut sent = Vec::new();
        for piece in replies.as_bytes().chunks(chunk) {
            c.handle_input(T0, piece);
            while let Some(b) = c.poll_transmit() {
                sent.extend(b);
            }
        }
        (c.is_closed(), c.take_outcome(), sent)
    };
    let whole = run(replies.len());
    assert!(whole.0);
    for chunk in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] {
        assert_eq!(run(chunk), whole, "chunks of {chunk}");
    }
}
