//! Parsing the next hop's replies (RFC 5321 §4.2), strictly and with bounded memory.
//!
//! A reply is one or more lines `ddd-text` ending with `ddd text` (or a bare `ddd`);
//! every line carries the same code. Anything else (letters where the code belongs, a
//! code that changes mid-reply, a line or a reply past its bound) is an error the
//! client turns into a temporary failure: a confused next hop never loses mail.

use crate::line::{Line, LineReader};

/// RFC 5321 §4.5.3.1.5 sets 512 octets for a reply line including CRLF; real servers
/// write longer texts (long EHLO keyword lists, policy URLs), so we allow twice that
/// before calling the peer broken.
pub const MAX_REPLY_LINE: usize = 1024;
/// Lines of one multi-line reply, at most (an EHLO reply is a dozen lines).
pub const MAX_REPLY_LINES: usize = 100;

/// One complete reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line, after the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx (and 3xx: the go-ahead for DATA).
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// RFC 5321 §4.2.1: 4yz is a transient negative completion.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The reply as one line, e.g. `550 5.1.1 <x@y>: unknown`, for logs and DSNs.
    pub fn summary(&self) -> String {
        let text = self.lines.join(" ");
        let text = text.trim();
        if text.is_empty() {
            self.code.to_string()
        } else {
            format!("{} {}", self.code, text)
        }
    }

    /// The RFC 3463 enhanced status code at the start of the first line (RFC 2034
    /// §4), if the next hop sent one whose class matches the basic code.
    pub fn enhanced_status(&self) -> Option<String> {
        let first = self.lines.first()?;
        let word = first.split(' ').next()?;
        let mut parts = word.split('.');
        let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
        let ok = parts.next().is_none()
            && class.len() == 1
            && u16::from(class.as_bytes()[0].wrapping_sub(b'0')) == self.code / 100
            && matches!(class, "2" | "4" | "5")
            && (1..=3).contains(&subject.len())
            && (1..=3).contains(&detail.len())
            && subject
                .bytes()
                .chain(detail.bytes())
                .all(|b| b.is_ascii_digit());
        ok.then(|| word.to_owned())
    }
}

/// Why a reply could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// A line longer than [`MAX_REPLY_LINE`].
    LineTooLong,
    /// More than [`MAX_REPLY_LINES`] lines in one reply.
    TooManyLines,
    /// A line that does not start with a reply code and a separator.
    Malformed(String),
    /// RFC 5321 §4.2.1: the lines of a multi-line reply must carry the same code.
    CodeChanged { first: u16, then: u16 },
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::LineTooLong => write!(f, "reply line longer than {MAX_REPLY_LINE} octets"),
            ReplyError::TooManyLines => write!(f, "reply of more than {MAX_REPLY_LINES} lines"),
            ReplyError::Malformed(line) => write!(f, "malformed reply line {line:?}"),
            ReplyError::CodeChanged { first, then } => {
                write!(
                    f,
                    "multi-line reply changed its code from {first} to {then}"
                )
            }
        }
    }
}

/// Reads replies from the bytes a next hop sends.
#[derive(Debug)]
pub struct ReplyParser {
    reader: LineReader,
    partial: Option<Reply>,
}

impl Default for ReplyParser {
    fn default() -> Self {
        ReplyParser {
            reader: LineReader::new(MAX_REPLY_LINE),
            partial: None,
        }
    }
}

impl ReplyParser {
    pub fn push(&mut self, bytes: &[u8]) {
        self.reader.push(bytes);
    }

    /// The next complete reply; `None` when more bytes are needed.
    pub fn next_reply(&mut self) -> Option<Result<Reply, ReplyError>> {
        loop {
            let line = match self.reader.next_line()? {
                Line::Complete(line) => line,
                Line::TooLong => return Some(Err(ReplyError::LineTooLong)),
            };
            let (code, last, text) = match parse_line(&line) {
                Ok(parts) => parts,
                Err(e) => return Some(Err(e)),
            };
            let reply = self.partial.get_or_insert_with(|| Reply {
                code,
                lines: Vec::new(),
            });
            if reply.code != code {
                let first = reply.code;
                self.partial = None;
                return Some(Err(ReplyError::CodeChanged { first, then: code }));
            }
            if reply.lines.len() >= MAX_REPLY_LINES {
                self.partial = None;
                return Some(Err(ReplyError::TooManyLines));
            }
            reply.lines.push(text);
            if last {
                return self.partial.take().map(Ok);
            }
        }
    }

    /// Bytes received but not yet part of a complete reply.
    pub fn buffered(&self) -> usize {
        self.reader.buffered()
    }

    /// Drop everything buffered: after STARTTLS, plaintext sent before the handshake
    /// must never be read as a reply inside TLS (RFC 3207 §4.2, CVE-2011-0411 mirrored).
    pub fn clear(&mut self) {
        self.reader.take_buffer();
        self.partial = None;
    }
}

/// `ddd-text`, `ddd text` or `ddd`: (code, is the last line, text).
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let malformed = || ReplyError::Malformed(String::from_utf8_lossy(line).into_owned());
    // RFC 5321 §4.2: the first digit is 2-5, the second 0-5 (§4.2.1), the third any.
    let code = match line {
        [a @ b'2'..=b'5', b @ b'0'..=b'5', c @ b'0'..=b'9', ..] => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(malformed()),
    };
    let (last, rest) = match line.get(3) {
        None => (true, &line[3..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(malformed()),
    };
    Ok((code, last, String::from_utf8_lossy(rest).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    fn parse_all(input: &[u8]) -> Vec<Result<Reply, ReplyError>> {
        let mut p = ReplyParser::default();
        p.push(input);
        std::iter::from_fn(|| p.next_reply()).collect()
    }

    fn reply(code: u16, lines: &[&str]) -> Result<Reply, ReplyError> {
        Ok(Reply {
            code,
            lines: lines.iter().map(|l| (*l).to_owned()).collect(),
        })
    }

    /// Each case runs with CRLF and bare LF line ends, as smtp-proto's tables do.
    #[test]
    fn reply_table() {
        let cases: Vec<(&str, Vec<Result<Reply, ReplyError>>)> = vec![
            ("220 mx.test ESMTP\n", vec![reply(220, &["mx.test ESMTP"])]),
            ("250\n", vec![reply(250, &[""])]),
            ("250 \n", vec![reply(250, &[""])]),
            (
                "250-mx.test\n250-PIPELINING\n250 SIZE 1000\n",
                vec![reply(250, &["mx.test", "PIPELINING", "SIZE 1000"])],
            ),
            (
                "250 2.1.0 Ok\n550 5.1.1 no\n",
                vec![reply(250, &["2.1.0 Ok"]), reply(550, &["5.1.1 no"])],
            ),
            (
                "250-a\n251 b\n",
                vec![Err(ReplyError::CodeChanged {
                    first: 250,
                    then: 251,
                })],
            ),
            ("hello\n", vec![Err(ReplyError::Malformed("hello".into()))]),
            ("25\n", vec![Err(ReplyError::Malformed("25".into()))]),
            ("160 x\n", vec![Err(ReplyError::Malformed("160 x".into()))]),
            ("270 x\n", vec![Err(ReplyError::Malformed("270 x".into()))]),
            ("250x\n", vec![Err(ReplyError::Malformed("250x".into()))]),
            (
                "-250 x\n",
                vec![Err(ReplyError::Malformed("-250 x".into()))],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_all(input.as_bytes()), want, "LF: {input:?}");
            let crlf = input.replace('\n', "\r\n");
            assert_eq!(parse_all(crlf.as_bytes()), want, "CRLF: {crlf:?}");
        }
    }

    #[test]
    fn incomplete_replies_wait_for_more() {
        let mut p = ReplyParser::default();
        p.push(b"250-mx.test\r\n250-SIZE");
        assert_eq!(p.next_reply(), None);
        p.push(b" 10\r\n250 8BITMIME\r");
        assert_eq!(p.next_reply(), None);
        p.push(b"\n");
        assert_eq!(
            p.next_reply(),
            Some(reply(250, &["mx.test", "SIZE 10", "8BITMIME"]))
        );
    }

    #[test]
    fn bounds_lines_and_replies() {
        let long = format!("250 {}\r\n", "x".repeat(MAX_REPLY_LINE));
        assert_eq!(
            parse_all(long.as_bytes()),
            vec![Err(ReplyError::LineTooLong)]
        );
        // Without a line end, the bound still holds.
        let mut p = ReplyParser::default();
        p.push("x".repeat(MAX_REPLY_LINE + 10).as_bytes());
        assert_eq!(p.next_reply(), Some(Err(ReplyError::LineTooLong)));
        let many = "250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert_eq!(
            parse_all(many.as_bytes()),
            vec![Err(ReplyError::TooManyLines)]
        );
    }

    #[test]
    fn enhanced_status_codes() {
        let r = |code, line: &str| Reply {
            code,
            lines: vec![line.to_owned()],
        };
        assert_eq!(
            r(550, "5.1.1 unknown").enhanced_status().as_deref(),
            Some("5.1.1")
        );
        assert_eq!(r(451, "4.3.0").enhanced_status().as_deref(), Some("4.3.0"));
        assert_eq!(r(550, "4.1.1 class mismatch").enhanced_status(), None);
        assert_eq!(r(550, "unknown user").enhanced_status(), None);
        assert_eq!(r(550, "5.1 short").enhanced_status(), None);
        assert_eq!(r(550, "5.1.1.1 long").enhanced_status(), None);
        assert_eq!(r(550, "5.1.1 x").summary(), "550 5.1.1 x");
        assert_eq!(r(250, "").summary(), "250");
    }
}
