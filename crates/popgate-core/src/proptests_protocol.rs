//! Property tests of the protocol code (native only: proptest does not run under
//! wasm32; the unit tests do). For any client bytes:
//!
//! * nothing panics, and no session stalls with input waiting;
//! * memory is bounded: the line buffer never holds more than its limit plus one
//!   read, a message in DATA never more than the size limit;
//! * output does not depend on how the bytes were split: the DATA receiver and the
//!   line reader agree with themselves fed whole and in any pieces (the DATA receiver
//!   also with a reference model of RFC 5321), and whole sessions give the same
//!   replies, effects, events and messages however each client line is split.
//!
//! Why sessions are split only *inside* lines: a server may legitimately react to
//! when pipelined input arrives. RFC 2920 §3.1 lets it refuse commands sent after
//! DATA before the 354, and bytes pipelined after STARTTLS or STLS are discarded
//! (RFC 3207 §4.2, RFC 2595 §4) so they never execute inside TLS. A client that waits
//! for the server at every line end sees neither; for it, where TCP cut a line must
//! never matter. Pipelined streams in any split are still checked for the first two
//! promises.
//!
//! The same checks run under libFuzzer in `fuzz/` (`cargo xtask fuzz`).

use crate::fuzzing::{self, MAX_MESSAGE, POP3_TOKENS, SMTP_TOKENS, lines, split};
use crate::line::{Line, LineReader};
use crate::smtp::fuzzing::{Unstuffer, reference_unstuff};
use crate::testing::test;
use proptest::prelude::*;

/// Data bytes: mostly the characters that matter to the receiver.
fn data_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => Just(b'\r'),
            4 => Just(b'\n'),
            4 => Just(b'.'),
            2 => Just(b'a'),
            1 => any::<u8>(),
        ],
        0..300,
    )
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(any::<usize>(), 0..12)
}

/// Client lines: the protocol's tokens mostly, some noise, some overlong lines.
fn token(tokens: &'static [&'static str], long: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::sample::select(tokens).prop_map(|t| t.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => proptest::collection::vec(b'x'..=b'z', long..long + 200),
    ]
}

/// A client stream: tokens, each with a line end (usually CRLF, sometimes a bare LF or
/// CR, sometimes none).
fn stream(tokens: &'static [&'static str], long: usize) -> impl Strategy<Value = Vec<u8>> {
    let end = prop_oneof![
        6 => Just(&b"\r\n"[..]),
        1 => Just(&b"\n"[..]),
        1 => Just(&b"\r"[..]),
        1 => Just(&b""[..]),
    ];
    proptest::collection::vec((token(tokens, long), end), 0..60).prop_map(|parts| {
        parts
            .into_iter()
            .flat_map(|(mut t, end)| {
                t.extend_from_slice(end);
                t
            })
            .collect()
    })
}

fn smtp_stream() -> impl Strategy<Value = Vec<u8>> {
    stream(SMTP_TOKENS, fuzzing::SMTP_MAX_LINE - 10)
}

fn pop3_stream() -> impl Strategy<Value = Vec<u8>> {
    stream(POP3_TOKENS, fuzzing::POP3_MAX_LINE - 10)
}

/// Every line of `bytes` cut at `cuts` (rotated per line, so lines are cut unalike).
fn cut_lines<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    lines(bytes)
        .into_iter()
        .enumerate()
        .flat_map(|(n, line)| {
            let rotated: Vec<usize> = cuts.iter().map(|c| c.wrapping_add(n * 7)).collect();
            split(line, &rotated)
        })
        .collect()
}

fn ok(checked: Result<(), String>) -> Result<(), TestCaseError> {
    checked.map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn unstuffer_matches_the_rfc_however_split(
        input in data_bytes(),
        cuts in cuts(),
        max in prop_oneof![Just(MAX_MESSAGE), 0..40u64],
        normalize in any::<bool>(),
    ) {
        let mut whole = Unstuffer::new(max, normalize);
        let end = whole.push(&input);
        let mut pieces = Unstuffer::new(max, normalize);
        let mut pieces_end = None;
        let mut offset = 0;
        for piece in split(&input, &cuts) {
            if let Some(n) = pieces.push(piece) {
                pieces_end = Some(offset + n);
                break;
            }
            offset += piece.len();
            prop_assert!(pieces.held() as u64 <= max);
        }
        prop_assert!(whole.held() as u64 <= max && pieces.held() as u64 <= max);
        prop_assert_eq!(end, pieces_end);
        let expected = reference_unstuff(&input, max, normalize);
        prop_assert_eq!(end, expected.as_ref().map(|(n, _)| *n));
        if let Some((_, outcome)) = expected {
            prop_assert_eq!(whole.finish(), outcome.clone());
            prop_assert_eq!(pieces.finish(), outcome);
        }
    }

    #[test]
    fn line_reader_is_bounded_and_split_independent(
        input in data_bytes(),
        cuts in cuts(),
        max in 0..20usize,
    ) {
        let drain = |r: &mut LineReader| -> Vec<Line> {
            std::iter::from_fn(|| r.next_line()).collect()
        };
        let mut whole = LineReader::new(max);
        whole.push(&input);
        let expected = drain(&mut whole);
        for line in &expected {
            if let Line::Complete(l) = line {
                prop_assert!(l.len() <= max);
            }
        }
        let mut pieces = LineReader::new(max);
        let mut got = Vec::new();
        for piece in split(&input, &cuts) {
            pieces.push(piece);
            got.extend(drain(&mut pieces));
            // What is left is one unfinished line: at most the limit and a CR.
            prop_assert!(pieces.buffered() <= max + 1);
        }
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn smtp_any_stream_is_bounded(bytes in smtp_stream(), cuts in cuts()) {
        ok(fuzzing::check_smtp(&fuzzing::run_smtp(split(&bytes, &cuts))))?;
    }

    #[test]
    fn smtp_random_bytes_are_bounded(
        bytes in proptest::collection::vec(any::<u8>(), 0..4000),
        cuts in cuts(),
    ) {
        ok(fuzzing::check_smtp(&fuzzing::run_smtp(split(&bytes, &cuts))))?;
    }

    #[test]
    fn smtp_output_does_not_depend_on_splits(bytes in smtp_stream(), cuts in cuts()) {
        let whole = fuzzing::run_smtp(lines(&bytes));
        ok(fuzzing::check_smtp(&whole))?;
        let mut cut = fuzzing::run_smtp(cut_lines(&bytes, &cuts));
        // How much the session held at once depends on the pieces, by nature.
        cut.max_buffered = whole.max_buffered;
        prop_assert_eq!(whole, cut);
    }

    #[test]
    fn pop3_any_stream_is_bounded(bytes in pop3_stream(), cuts in cuts()) {
        ok(fuzzing::check_pop3(&fuzzing::run_pop3(split(&bytes, &cuts))))?;
    }

    #[test]
    fn pop3_random_bytes_are_bounded(
        bytes in proptest::collection::vec(any::<u8>(), 0..4000),
        cuts in cuts(),
    ) {
        ok(fuzzing::check_pop3(&fuzzing::run_pop3(split(&bytes, &cuts))))?;
    }

    #[test]
    fn pop3_output_does_not_depend_on_splits(bytes in pop3_stream(), cuts in cuts()) {
        let whole = fuzzing::run_pop3(lines(&bytes));
        ok(fuzzing::check_pop3(&whole))?;
        let mut cut = fuzzing::run_pop3(cut_lines(&bytes, &cuts));
        // How much the session held at once depends on the pieces, by nature.
        cut.max_buffered = whole.max_buffered;
        prop_assert_eq!(whole, cut);
    }
}

/// The harness reaches the states the properties claim to cover: a harness stuck at
/// the greeting would make every property above vacuous.
#[test]
fn harness_reaches_delivery_and_retrieval() {
    let smtp = fuzzing::run_smtp([
        &b"EHLO c\r\n"[..],
        b"MAIL FROM:<a@b.test>\r\n",
        b"RCPT TO:<taro@example.test>\r\n",
        b"DATA\r\n",
        b"Subject: s\r\n\r\n..dot\r\n.\r\n",
        b"QUIT\r\n",
    ]);
    let text = String::from_utf8_lossy(&smtp.transmitted);
    assert_eq!(smtp.deliveries.len(), 1, "{text}");
    assert!(fuzzing::after_received(&smtp.deliveries[0].message).ends_with(b"\r\n.dot\r\n"));
    assert!(smtp.closed_by_server, "{text}");
    let pop3 = fuzzing::run_pop3([
        &b"USER taro@example.test\r\n"[..],
        b"PASS secret\r\n",
        b"RETR 1\r\n",
    ]);
    let text = String::from_utf8_lossy(&pop3.transmitted);
    assert!(text.contains("\r\n..dot first\r\n"), "{text}");
}

/// The reference model itself, on the cases RFC 5321 spells out.
#[test]
fn reference_unstuff_reads_like_the_rfc() {
    let ok = |input: &[u8], normalize| reference_unstuff(input, 100, normalize);
    assert_eq!(ok(b".\r\n", false), Some((3, Ok(Vec::new()))));
    assert_eq!(
        ok(b"a\r\n..b\r\n.\r\nQUIT", false),
        Some((11, Ok(b"a\r\n.b\r\n".to_vec())))
    );
    assert_eq!(ok(b"a\n.\nb", false), None);
    assert_eq!(
        ok(b"a\nb\r\n.\r\n", false).map(|(_, r)| r),
        Some(Err(crate::smtp::fuzzing::Refused::BareLf))
    );
    assert_eq!(
        ok(b"a\nb\r\n.\r\n", true).map(|(_, r)| r),
        Some(Ok(b"a\r\nb\r\n".to_vec()))
    );
}
