//! The bounded line reader both protocols read commands with: fed whole and in pieces
//! it yields the same lines, no complete line is longer than the limit, and what it
//! holds between lines is at most the limit and a CR.
//!
//! Input: one byte of settings (limit, piece length), then the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use popgate_core::line::{Line, LineReader};

fn drain(reader: &mut LineReader) -> Vec<Line> {
    std::iter::from_fn(|| reader.next_line()).collect()
}

fuzz_target!(|input: &[u8]| {
    let Some((&settings, data)) = input.split_first() else {
        return;
    };
    let max = usize::from(settings & 0x1f);
    let piece = usize::from(settings >> 5) + 1;

    let mut whole = LineReader::new(max);
    whole.push(data);
    let expected = drain(&mut whole);
    for line in &expected {
        if let Line::Complete(l) = line {
            assert!(l.len() <= max);
        }
    }

    let mut pieces = LineReader::new(max);
    let mut got = Vec::new();
    for chunk in data.chunks(piece) {
        pieces.push(chunk);
        got.extend(drain(&mut pieces));
        assert!(pieces.buffered() <= max + 1, "holds {}", pieces.buffered());
    }
    assert_eq!(got, expected);
});
