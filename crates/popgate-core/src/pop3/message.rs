//! A stored message as POP3 sends it: CRLF line ends, byte-stuffed, dot-terminated.
//!
//! Maildir files usually end lines with a bare LF; POP3 (RFC 1939 §3) speaks CRLF.
//! Sizes that POP3 reports (STAT, LIST, RETR) are of the CRLF form before
//! byte-stuffing, so [`crlf_len`] and [`write_multiline`] share one idea of a line.

/// The lines of a stored message, without their LF or CRLF. A final line without a
/// line end is still a line; an empty message has none.
fn lines(content: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    (!content.is_empty())
        .then(|| body.split(|&b| b == b'\n'))
        .into_iter()
        .flatten()
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

/// The size in octets of `content` in CRLF form: what STAT and LIST report and what
/// [`crate::pop3::MessageMeta::size`] must hold (RFC 1939 §5 STAT, LIST).
pub fn crlf_len(content: &[u8]) -> u64 {
    lines(content).map(|line| line.len() as u64 + 2).sum()
}

/// Append the body of a multi-line reply (RFC 1939 §3): every line CRLF-terminated,
/// lines that begin with `.` byte-stuffed, then the `.` terminator line.
///
/// `top: Some(n)` sends the header, the blank line and the first `n` body lines
/// (RFC 1939 §7 TOP); a message without a blank line is all header.
pub fn write_multiline(out: &mut Vec<u8>, content: &[u8], top: Option<u32>) {
    let mut in_body = false;
    let mut body_lines: u32 = 0;
    for line in lines(content) {
        if in_body {
            if top.is_some_and(|max| body_lines >= max) {
                break;
            }
            body_lines += 1;
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        if line.is_empty() {
            in_body = true;
        }
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    fn multiline(content: &[u8], top: Option<u32>) -> String {
        let mut out = Vec::new();
        write_multiline(&mut out, content, top);
        String::from_utf8(out).expect("test content is UTF-8")
    }

    #[test]
    fn converts_bare_lf_and_stuffs_dots() {
        let content = b"Subject: x\n\n.hidden\n..two\nlast";
        assert_eq!(
            multiline(content, None),
            "Subject: x\r\n\r\n..hidden\r\n...two\r\nlast\r\n.\r\n"
        );
        // Size is of the CRLF form without stuffing or terminator.
        assert_eq!(
            crlf_len(content),
            "Subject: x\r\n\r\n.hidden\r\n..two\r\nlast\r\n".len() as u64
        );
    }

    #[test]
    fn keeps_crlf_and_handles_edges() {
        assert_eq!(multiline(b"a\r\nb\r\n", None), "a\r\nb\r\n.\r\n");
        assert_eq!(crlf_len(b"a\r\nb\r\n"), 6);
        assert_eq!(multiline(b"", None), ".\r\n");
        assert_eq!(crlf_len(b""), 0);
        assert_eq!(multiline(b"\n", None), "\r\n.\r\n");
        assert_eq!(crlf_len(b"\n"), 2);
        // A lone CR inside a line is content, not a line end.
        assert_eq!(multiline(b"a\rb\n", None), "a\rb\r\n.\r\n");
        assert_eq!(multiline(b".\n", None), "..\r\n.\r\n");
    }

    #[test]
    fn top_sends_header_blank_line_and_n_body_lines() {
        let content = b"A: 1\nB: 2\n\none\n.two\nthree\n";
        assert_eq!(multiline(content, Some(0)), "A: 1\r\nB: 2\r\n\r\n.\r\n");
        assert_eq!(
            multiline(content, Some(2)),
            "A: 1\r\nB: 2\r\n\r\none\r\n..two\r\n.\r\n"
        );
        assert_eq!(multiline(content, Some(u32::MAX)), multiline(content, None));
        // An empty body line counts as a body line.
        assert_eq!(
            multiline(b"A: 1\n\n\nx\n", Some(1)),
            "A: 1\r\n\r\n\r\n.\r\n"
        );
        // No blank line: all header.
        assert_eq!(multiline(b"A: 1\nB: 2", Some(0)), "A: 1\r\nB: 2\r\n.\r\n");
    }
}
