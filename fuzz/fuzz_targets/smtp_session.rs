//! A whole SMTP session (with the simulator's in-memory backend) fed any bytes, mapped
//! into SMTP's alphabet (`popgate_core::fuzzing::expand`) so deep states are reached:
//!
//! * pipelined in reads of any size: no panic, no stall, memory within the limits;
//! * line by line, each line cut into pieces: the same replies, effects, events and
//!   messages as whole lines.
//!
//! Input: one byte of read length, then the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use popgate_core::fuzzing::{SMTP_TOKENS, check_smtp, expand, lines, run_smtp};

fuzz_target!(|input: &[u8]| {
    let Some((&read, rest)) = input.split_first() else {
        return;
    };
    let read = usize::from(read) + 1;
    let stream = expand(rest, SMTP_TOKENS);
    let pipelined = run_smtp(stream.chunks(read));
    if let Err(e) = check_smtp(&pipelined) {
        panic!("{e}");
    }
    let whole = run_smtp(lines(&stream));
    let mut cut = run_smtp(lines(&stream).into_iter().flat_map(|l| l.chunks(read)));
    // How much the session held at once depends on the pieces, by nature.
    cut.max_buffered = whole.max_buffered;
    assert_eq!(whole, cut);
});
