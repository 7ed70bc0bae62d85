//! DATA content as it goes on the wire (RFC 5321 §4.5.2, §2.3.8).

/// The message as DATA content: every line end CRLF (a bare LF or a bare CR becomes
/// CRLF: RFC 5321 §2.3.8 allows no other line end on the wire), a leading `.`
/// doubled (§4.5.2 transparency), a final CRLF if the message lacked one, and the
/// terminating `.` line.
pub fn encode(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 50 + 5);
    let mut at_line_start = true;
    let mut i = 0;
    while i < message.len() {
        let b = message[i];
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if message.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                at_line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                out.push(b);
                at_line_start = false;
            }
        }
        i += 1;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Whether the message has octets above 127 (needs 8BITMIME, RFC 6152).
pub fn is_eight_bit(message: &[u8]) -> bool {
    message.iter().any(|&b| b >= 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    #[test]
    fn encode_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
            (b"a\nb\n", b"a\r\nb\r\n.\r\n"),
            (b"a\rb", b"a\r\nb\r\n.\r\n"),
            (b"no end", b"no end\r\n.\r\n"),
            (b".\r\n", b"..\r\n.\r\n"),
            (
                b"x\r\n.hidden\r\n..two\n",
                b"x\r\n..hidden\r\n...two\r\n.\r\n",
            ),
            (b"mid.dot\r\n", b"mid.dot\r\n.\r\n"),
            (b"a\r\n\r\nbody", b"a\r\n\r\nbody\r\n.\r\n"),
        ];
        for (input, want) in cases {
            assert_eq!(
                String::from_utf8_lossy(&encode(input)),
                String::from_utf8_lossy(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn detects_eight_bit() {
        assert!(!is_eight_bit(b"plain ascii\r\n"));
        assert!(is_eight_bit("caf\u{e9}".as_bytes()));
    }
}
