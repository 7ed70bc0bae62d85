//! The DATA receiver (RFC 5321 §4.1.1.4, §4.5.2, §2.3.8): fed whole and in pieces it
//! finds the same end of data and the same message as the reference model, and never
//! holds more than the size limit.
//!
//! Input: one byte of settings (size limit, bare line ends normalised or refused, piece
//! length), then the data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use popgate_core::smtp::fuzzing::{Unstuffer, reference_unstuff};

fuzz_target!(|input: &[u8]| {
    let Some((&settings, data)) = input.split_first() else {
        return;
    };
    let max = if settings & 0x80 != 0 {
        4096
    } else {
        u64::from(settings & 0x3f)
    };
    let normalize = settings & 0x40 != 0;
    let piece = usize::from(settings % 7) + 1;

    let mut whole = Unstuffer::new(max, normalize);
    let end = whole.push(data);
    assert!(whole.held() as u64 <= max);

    let mut pieces = Unstuffer::new(max, normalize);
    let mut pieces_end = None;
    for (n, chunk) in data.chunks(piece).enumerate() {
        if let Some(used) = pieces.push(chunk) {
            pieces_end = Some(n * piece + used);
            break;
        }
        assert!(pieces.held() as u64 <= max);
    }
    assert_eq!(end, pieces_end);

    let expected = reference_unstuff(data, max, normalize);
    assert_eq!(end, expected.as_ref().map(|(n, _)| *n));
    if let Some((_, outcome)) = expected {
        assert_eq!(whole.finish(), outcome);
        assert_eq!(pieces.finish(), outcome);
    }
});
