//! Transcript tests for the connection limits the session enforces itself: the
//! command timeout runs per command line (not per byte), the minimum data rate in
//! DATA, the DATA text line length, and a runaway line that never ends.

use super::*;
use crate::line::MAX_OVERLONG_LINE;
use crate::testing::test;

const TIMEOUT: &str = "421 4.4.2 Error: timeout exceeded\r\n";
const LINE_TOO_LONG: &str = "500 5.5.6 Line too long\r\n";

fn at(ms: u64) -> Millis {
    Millis(NOW.0 + ms)
}

fn limited(idle_secs: u64, min_data_rate: u64) -> SmtpConfig {
    SmtpConfig {
        idle_timeout: Duration::from_secs(idle_secs),
        min_data_rate,
        ..config()
    }
}

fn closed_with(run: &Run, reason: CloseReason) {
    assert!(run.session.is_closed());
    assert_eq!(
        run.kinds().last(),
        Some(&EventKind::SessionClosed { reason })
    );
}

#[test]
fn a_trickling_client_does_not_restart_the_command_timeout() {
    // RFC 5321 §4.5.3.2.7: the timeout is for the whole command.
    let mut run = Run::greeted(limited(10, 0), Backend::default());
    let deadline = NOW.saturating_add(Duration::from_secs(10));
    for (i, byte) in b"NOOP".iter().enumerate() {
        run.session
            .handle_input(at(2000 * (i as u64 + 1)), &[*byte]);
        run.pump();
        assert_eq!(run.session.poll_timeout(), Some(deadline), "after byte {i}");
    }
    run.session.handle_timeout(deadline);
    run.pump();
    assert_eq!(run.take(), TIMEOUT);
    closed_with(&run, CloseReason::Timeout);

    // A complete line does restart it.
    let mut run = Run::greeted(limited(10, 0), Backend::default());
    run.session.handle_input(at(9000), b"NOOP\r\n");
    run.pump();
    assert_eq!(
        run.session.poll_timeout(),
        Some(at(9000).saturating_add(Duration::from_secs(10)))
    );
}

/// Into DATA for a local recipient, at `NOW`.
fn in_data(config: SmtpConfig) -> Run {
    let mut run = Run::greeted(config, Backend::default());
    run.send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<postmaster@example.test>\r\nDATA\r\n");
    assert!(
        run.take()
            .ends_with("354 End data with <CR><LF>.<CR><LF>\r\n")
    );
    run
}

#[test]
fn a_client_below_the_minimum_data_rate_is_cut() {
    // Postfix smtpd_min_data_rate: 100 octets/s buys 10 ms per octet.
    let mut run = in_data(limited(10, 100));
    let start = NOW.saturating_add(Duration::from_secs(10));
    assert_eq!(run.session.poll_timeout(), Some(start));
    // 50 octets each second: 500 ms earned per second spent.
    for s in 1..=5 {
        run.session.handle_input(at(1000 * s), &[b'x'; 50]);
        run.pump();
    }
    let deadline = start.saturating_add(Duration::from_millis(2500));
    assert_eq!(run.session.poll_timeout(), Some(deadline));
    run.session.handle_timeout(deadline);
    run.pump();
    assert_eq!(run.take(), TIMEOUT);
    closed_with(&run, CloseReason::Timeout);
    assert!(run.deliveries().is_empty());
}

#[test]
fn a_fast_client_earns_at_most_the_idle_timeout_ahead() {
    let mut run = in_data(limited(10, 100));
    let lines = b"0123456789012345678901234567890123456789012345678\r\n".repeat(2000);
    run.session.handle_input(at(1000), &lines);
    run.pump();
    assert_eq!(
        run.session.poll_timeout(),
        Some(at(1000).saturating_add(Duration::from_secs(10)))
    );
    // Without a rate, each read restarts the timeout.
    let mut run = in_data(limited(10, 0));
    run.session.handle_input(at(7000), b"x");
    run.pump();
    assert_eq!(
        run.session.poll_timeout(),
        Some(at(7000).saturating_add(Duration::from_secs(10)))
    );
    // After the message, the command timeout runs from the 250 (which this test's
    // backend answers at NOW), no longer from DATA's deadline.
    run.session.handle_input(at(8000), b"\r\n.\r\n");
    run.pump();
    assert!(run.take().starts_with("250 2.0.0 Ok: queued"));
    assert_eq!(
        run.session.poll_timeout(),
        Some(NOW.saturating_add(Duration::from_secs(10)))
    );
}

#[test]
fn an_overlong_text_line_in_data_closes_however_it_is_chunked() {
    // RFC 5321 §4.5.3.1.6: 998 octets plus CRLF is the floor; set exactly that.
    let config = SmtpConfig {
        max_text_line: 998,
        ..config()
    };
    let mut ok = b"Subject: x\r\n\r\n".to_vec();
    ok.extend_from_slice(&[b'a'; 998]);
    ok.extend_from_slice(b"\r\n.\r\n");
    let mut run = in_data(config.clone());
    run.send_bytes(&ok, ok.len());
    assert!(
        run.take().starts_with("250 2.0.0 Ok: queued"),
        "998 octets fit"
    );

    let mut long = b"Subject: x\r\n\r\n".to_vec();
    long.extend_from_slice(&[b'a'; 999]);
    long.extend_from_slice(b"\r\n.\r\n");
    for chunk in [1, 3, 1000, long.len()] {
        let mut run = in_data(config.clone());
        run.send_bytes(&long, chunk);
        assert_eq!(run.take(), LINE_TOO_LONG, "chunks of {chunk}");
        closed_with(&run, CloseReason::Error);
        assert!(run.deliveries().is_empty());
    }
}

#[test]
fn a_command_line_that_never_ends_closes_after_one_reply() {
    let mut flood = vec![b'x'; MAX_OVERLONG_LINE * 2];
    flood.extend_from_slice(b"\r\nNOOP\r\n");
    for chunk in [512, 4096, 16 * 1024] {
        let mut run = Run::greeted(config(), Backend::default());
        run.send_bytes(&flood, chunk);
        assert_eq!(run.take(), LINE_TOO_LONG, "chunks of {chunk}");
        closed_with(&run, CloseReason::Error);
    }
    // One overlong line that does end is answered, and the session goes on.
    let mut run = Run::greeted(config(), Backend::default());
    let mut line = vec![b'x'; 20_000];
    line.extend_from_slice(b"\r\nNOOP\r\n");
    run.send_bytes(&line, 4096);
    assert_eq!(run.take(), format!("{LINE_TOO_LONG}250 2.0.0 Ok\r\n"));
}
