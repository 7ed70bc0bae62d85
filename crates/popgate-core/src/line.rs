//! A bounded line receiver, shared by the POP3 and SMTP sessions.
//!
//! Like tokio-util's `LinesCodec`: "need more bytes" is a normal result, the buffer
//! has a named maximum, and after an overlong line everything up to the next LF is
//! discarded so one bad line never desynchronises the stream (the caller answers it
//! with a "line too long" reply and reads on).

use crate::proxy::V2_SIGNATURE;

/// What [`LineReader::next_line`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its CRLF (or bare LF).
    Complete(Vec<u8>),
    /// A line longer than the limit; its bytes are dropped up to the next LF.
    TooLong,
}

#[derive(Debug)]
pub struct LineReader {
    buf: Vec<u8>,
    max: usize,
    /// Inside an overlong line already reported: drop bytes until LF.
    discarding: bool,
    /// Octets of the overlong line dropped so far.
    overlong: usize,
    /// An overlong line ran past [`MAX_OVERLONG_LINE`]: the peer is not speaking
    /// a line protocol, and the session closes (sticky).
    runaway: bool,
}

/// An overlong line is answered once and skipped up to its LF, so a client's single
/// bad line does not end its session; a "line" that runs on past this many octets
/// (10 MB without a CRLF) is not a mistake but a flood, and the session closes
/// instead of reading it forever. Counted the same however the bytes are chunked.
pub const MAX_OVERLONG_LINE: usize = 64 * 1024;

impl LineReader {
    /// `max` counts the line's own bytes, without its terminator.
    pub fn new(max: usize) -> LineReader {
        LineReader {
            buf: Vec::new(),
            max,
            discarding: false,
            overlong: 0,
            runaway: false,
        }
    }

    /// Whether an overlong line ran past [`MAX_OVERLONG_LINE`] (see there).
    pub fn is_runaway(&self) -> bool {
        self.runaway
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Append bytes read from the peer. The driver bounds memory by only reading
    /// while the session wants input (see each session's `wants_input`).
    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.discarding {
            let end = bytes.iter().position(|&b| b == b'\n');
            self.note_overlong(end.unwrap_or(bytes.len()));
            match end {
                Some(i) => {
                    self.discarding = false;
                    bytes = &bytes[i + 1..];
                }
                None => return,
            }
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next line, `None` when more bytes are needed.
    pub fn next_line(&mut self) -> Option<Line> {
        match self.buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > self.max {
                    // `i` includes a CR, as the discarding path counts it.
                    self.overlong = 0;
                    self.note_overlong(i);
                    Some(Line::TooLong)
                } else {
                    Some(Line::Complete(line))
                }
            }
            None if self.buf.len() > self.max + 1 => {
                // +1: the CR of a CRLF may sit at the end waiting for its LF.
                self.overlong = 0;
                self.note_overlong(self.buf.len());
                self.buf.clear();
                self.discarding = true;
                Some(Line::TooLong)
            }
            None => None,
        }
    }

    fn note_overlong(&mut self, n: usize) {
        self.overlong = self.overlong.saturating_add(n);
        if self.overlong > MAX_OVERLONG_LINE {
            self.runaway = true;
        }
    }

    /// Bytes received but not yet consumed as lines.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Take every buffered byte (entering DATA, or discarding plaintext that was
    /// pipelined after STARTTLS/STLS).
    pub fn take_buffer(&mut self) -> Vec<u8> {
        self.discarding = false;
        std::mem::take(&mut self.buf)
    }

    /// Put bytes back at the front (left over after the end of DATA).
    pub fn unread(&mut self, bytes: &[u8]) {
        let mut v = bytes.to_vec();
        v.extend_from_slice(&self.buf);
        self.buf = v;
    }
}

/// HTTP methods (RFC 9110 §9, and WebDAV's common ones): a line that starts with one
/// of these and a space is a browser or a proxy speaking HTTP to a mail port.
const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// HTTP header fields a cross-protocol request carries in its first lines.
const HTTP_FIELDS: &[&str] = &[
    "host:",
    "user-agent:",
    "accept:",
    "content-type:",
    "content-length:",
    "connection:",
    "origin:",
    "referer:",
    "cookie:",
];

/// Whether a command line is really another protocol: an HTTP request line or header
/// (a browser form posted to the mail port, an open-proxy probe), or a PROXY protocol
/// v1 header (`PROXY TCP4 ...`) on a listener not configured for PROXY. Postfix does
/// the same with `smtpd_forbidden_commands = CONNECT GET POST ...`; a mail client
/// never sends any of these, so the session closes at once instead of answering each
/// header line and then executing the commands in an HTTP body.
pub fn is_foreign_protocol(line: &[u8]) -> bool {
    let word_then_space = |word: &str| {
        line.len() > word.len()
            && line[..word.len()].eq_ignore_ascii_case(word.as_bytes())
            && line[word.len()] == b' '
    };
    HTTP_METHODS.iter().any(|m| word_then_space(m))
        || word_then_space("PROXY")
        || HTTP_FIELDS
            .iter()
            .any(|f| line.len() >= f.len() && line[..f.len()].eq_ignore_ascii_case(f.as_bytes()))
}

/// Whether `buf` (the first bytes of a connection) starts like a PROXY v2 header:
/// a prefix of [`crate::proxy::V2_SIGNATURE`] long enough not to be an empty line typed by a
/// person (two empty lines then a NUL).
pub fn starts_with_proxy_v2(buf: &[u8]) -> bool {
    let n = buf.len().min(V2_SIGNATURE.len());
    n >= 5 && buf[..n] == V2_SIGNATURE[..n]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    fn lines(r: &mut LineReader) -> Vec<Line> {
        std::iter::from_fn(|| r.next_line()).collect()
    }

    #[test]
    fn splits_crlf_and_lf() {
        let mut r = LineReader::new(10);
        r.push(b"USER a\r\nNOOP\nQU");
        assert_eq!(
            lines(&mut r),
            vec![
                Line::Complete(b"USER a".to_vec()),
                Line::Complete(b"NOOP".to_vec())
            ]
        );
        r.push(b"IT\r\n");
        assert_eq!(lines(&mut r), vec![Line::Complete(b"QUIT".to_vec())]);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn overlong_line_is_reported_once_and_skipped() {
        let mut r = LineReader::new(4);
        r.push(b"ABCDEFGH");
        assert_eq!(lines(&mut r), vec![Line::TooLong]);
        r.push(b"IJKL\r\nNOOP\r\n");
        assert_eq!(lines(&mut r), vec![Line::Complete(b"NOOP".to_vec())]);
        // overlong but complete in one push
        r.push(b"TOOLONG\r\nOK\r\n");
        assert_eq!(
            lines(&mut r),
            vec![Line::TooLong, Line::Complete(b"OK".to_vec())]
        );
    }

    #[test]
    fn foreign_protocols_are_recognised() {
        for line in [
            &b"GET / HTTP/1.1"[..],
            b"get /index.html HTTP/1.0",
            b"POST /cgi-bin/form HTTP/1.1",
            b"CONNECT mail.example.test:25 HTTP/1.0",
            b"OPTIONS * HTTP/1.1",
            b"Host: mail.example.test",
            b"User-Agent: curl/8.0",
            b"USER-AGENT:x",
            b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 25",
            b"PROXY UNKNOWN",
        ] {
            assert!(
                is_foreign_protocol(line),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        for line in [
            &b"GETX / HTTP/1.1"[..],
            b"GET",
            b"EHLO get.example",
            b"HELO post",
            b"MAIL FROM:<get@example.test>",
            b"USER host",
            b"NOOP GET / HTTP/1.1",
            b"PROXYX",
            b"",
        ] {
            assert!(
                !is_foreign_protocol(line),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn proxy_v2_signature_prefix() {
        assert!(starts_with_proxy_v2(&V2_SIGNATURE));
        assert!(starts_with_proxy_v2(b"\r\n\r\n\0\r\nQUIT\n\x21\x11"));
        assert!(starts_with_proxy_v2(b"\r\n\r\n\0"));
        assert!(!starts_with_proxy_v2(b"\r\n\r\n"));
        assert!(!starts_with_proxy_v2(b"\r\nNOOP\r\n"));
        assert!(!starts_with_proxy_v2(b"EHLO x\r\n"));
    }

    #[test]
    fn a_runaway_line_is_flagged_however_it_is_chunked() {
        let mut long = vec![b'x'; MAX_OVERLONG_LINE + 1];
        long.extend_from_slice(b"\r\nNOOP\r\n");
        for chunk in [1usize, 7, 4096, long.len()] {
            let mut r = LineReader::new(512);
            let mut seen = Vec::new();
            for part in long.chunks(chunk) {
                r.push(part);
                seen.extend(lines(&mut r));
            }
            assert!(r.is_runaway(), "chunks of {chunk}");
            assert_eq!(seen[0], Line::TooLong, "chunks of {chunk}");
        }
        // Overlong but within the bound: answered and skipped, not a runaway.
        let mut r = LineReader::new(512);
        r.push(&vec![b'x'; MAX_OVERLONG_LINE - 2]);
        r.push(b"\r\nNOOP\r\n");
        assert_eq!(
            lines(&mut r),
            vec![Line::TooLong, Line::Complete(b"NOOP".to_vec())]
        );
        assert!(!r.is_runaway());
    }

    #[test]
    fn exact_limit_with_crlf_split_is_accepted() {
        let mut r = LineReader::new(4);
        r.push(b"ABCD\r");
        assert_eq!(r.next_line(), None);
        r.push(b"\n");
        assert_eq!(r.next_line(), Some(Line::Complete(b"ABCD".to_vec())));
    }
}
