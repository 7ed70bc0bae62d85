//! The POP3 command parser (RFC 1939, 2449, 5034) on any line: no panic, and a line
//! that parses as PASS never shows its password in the event form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use popgate_core::pop3::parse::{Command, parse_command, redact};

fuzz_target!(|line: &[u8]| {
    let shown = redact(line);
    if let Ok(Command::Pass { .. }) = parse_command(line) {
        let keyword = String::from_utf8_lossy(&line[..4]);
        assert_eq!(
            shown,
            format!("{keyword} ****"),
            "PASS line shown as {shown:?}"
        );
    }
});
