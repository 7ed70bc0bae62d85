//! The SMTP command parser (RFC 5321 §4.1) on any line: no panic, and trailing
//! spaces never change the result (they are ignored, RFC 5321 §4.1.1).
#![no_main]

use libfuzzer_sys::fuzz_target;
use popgate_core::smtp::fuzzing::parse_command;

fuzz_target!(|line: &[u8]| {
    let parsed = parse_command(line);
    let mut padded = line.to_vec();
    padded.push(b' ');
    assert_eq!(
        parse_command(&padded),
        parsed,
        "trailing space changed {line:?}"
    );
});
