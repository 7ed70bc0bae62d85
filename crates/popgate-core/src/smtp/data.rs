//! The DATA receiver (RFC 5321 §4.1.1.4, §4.5.2).
//!
//! Only `CRLF "." CRLF` ends the data. A bare LF or a bare CR never forms a line
//! boundary here, so `"\n.\n"`, `"\r.\r"` or `"\n.\r\n"` are ordinary message bytes:
//! a server that ended data on them could be made to accept a second, smuggled
//! message that an upstream server saw as part of the first. The data starts at a line
//! boundary (just after the CRLF of the DATA command), so `".\r\n"` alone is an
//! empty message. A line that starts with '.' loses that dot (dot-unstuffing);
//! every other byte is kept exactly as received.
//!
//! Memory is bounded: past the size limit the receiver stops storing, keeps reading
//! to the end of data, and reports [`DataError::TooBig`].

/// RFC 5321 §6.3: more `Received:` headers than this is a mail loop.
pub const MAX_RECEIVED_HEADERS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DataError {
    /// Larger than the limit: 552 5.3.4.
    TooBig,
    /// More than [`MAX_RECEIVED_HEADERS`] `Received:` headers: 554 5.4.6.
    Loop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Just after CRLF (or at the start of the data).
    LineStart,
    /// A '.' at the start of a line, held back.
    Dot,
    /// ".\r" at the start of a line: an LF now ends the data.
    DotCr,
    /// Inside a line.
    Middle,
    /// Inside a line, just after a CR: an LF now ends the line.
    Cr,
}

#[derive(Debug)]
pub(crate) struct DataReceiver {
    state: State,
    message: Vec<u8>,
    /// Octets after dot-unstuffing, counted even past the limit.
    size: u64,
    max: u64,
}

impl DataReceiver {
    pub(crate) fn new(max: u64) -> DataReceiver {
        DataReceiver {
            state: State::LineStart,
            message: Vec::new(),
            size: 0,
            max,
        }
    }

    /// Feed bytes; `Some(n)` once the end of data was found, `n` being how many bytes
    /// of `bytes` belonged to the data (the rest are commands).
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                State::Middle => {
                    // Fast path: copy the run of bytes up to the next CR.
                    let run = bytes[i..]
                        .iter()
                        .position(|&c| c == b'\r')
                        .unwrap_or(bytes.len() - i);
                    self.store(&bytes[i..i + run]);
                    i += run;
                    if i < bytes.len() {
                        self.store(b"\r");
                        self.state = State::Cr;
                        i += 1;
                    }
                    continue;
                }
                State::Cr => {
                    self.store(&[b]);
                    self.state = match b {
                        b'\n' => State::LineStart,
                        b'\r' => State::Cr,
                        _ => State::Middle,
                    };
                }
                State::LineStart => match b {
                    b'.' => self.state = State::Dot,
                    _ => {
                        self.state = State::Middle;
                        continue;
                    }
                },
                // RFC 5321 §4.5.2: the first dot of the line is dropped.
                State::Dot => match b {
                    b'\r' => self.state = State::DotCr,
                    _ => {
                        self.state = State::Middle;
                        continue;
                    }
                },
                State::DotCr => {
                    if b == b'\n' {
                        return Some(i + 1);
                    }
                    // ".\r" and then not LF: the dot is stuffing, the CR is data.
                    self.store(b"\r");
                    self.state = State::Cr;
                    continue;
                }
            }
            i += 1;
        }
        None
    }

    fn store(&mut self, bytes: &[u8]) {
        self.size = self.size.saturating_add(bytes.len() as u64);
        if self.size > self.max {
            // Free what we hold: the message is refused at the end of data anyway.
            self.message = Vec::new();
        } else {
            self.message.extend_from_slice(bytes);
        }
    }

    /// The message, once [`push`](Self::push) has found the end.
    pub(crate) fn finish(self) -> Result<Vec<u8>, DataError> {
        if self.size > self.max {
            return Err(DataError::TooBig);
        }
        if is_mail_loop(&self.message) {
            return Err(DataError::Loop);
        }
        Ok(self.message)
    }
}

/// `Received:` fields in the header section (up to the first empty line); field
/// names are case-insensitive (RFC 5322 §1.2.2), folded lines start with WSP.
/// RFC 5321 §6.3: more than [`MAX_RECEIVED_HEADERS`] `Received:` fields is a loop, at
/// DATA (554 5.4.6) and again before relaying a queued message (a bounce).
pub fn is_mail_loop(message: &[u8]) -> bool {
    received_headers(message) > MAX_RECEIVED_HEADERS
}

/// `Received:` fields in the message's header section (the body is not counted).
pub fn received_headers(message: &[u8]) -> usize {
    message
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .take_while(|line| !line.is_empty())
        .filter(|line| {
            line.get(..9)
                .is_some_and(|name| name.eq_ignore_ascii_case(b"received:"))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    /// Feeds `input` whole and byte by byte; both must agree.
    fn receive(input: &[u8], max: u64) -> (Option<usize>, Result<Vec<u8>, DataError>) {
        let mut whole = DataReceiver::new(max);
        let end = whole.push(input);
        let mut bytewise = DataReceiver::new(max);
        let mut bytewise_end = None;
        for (i, b) in input.iter().enumerate() {
            if let Some(n) = bytewise.push(std::slice::from_ref(b)) {
                bytewise_end = Some(i + n);
                break;
            }
        }
        assert_eq!(end, bytewise_end, "end of {input:?}");
        let result = whole.finish();
        assert_eq!(result, bytewise.finish(), "result of {input:?}");
        (end, result)
    }

    #[test]
    fn ends_only_on_crlf_dot_crlf() {
        let cases: &[(&[u8], Option<usize>, &[u8])] = &[
            (b".\r\n", Some(3), b""),
            (b"a\r\n.\r\nNOOP\r\n", Some(6), b"a\r\n"),
            (b"a\r\n..b\r\n.\r\n", Some(11), b"a\r\n.b\r\n"),
            (b"..\r\n.\r\n", Some(7), b".\r\n"),
            // smuggling attempts: none of these ends the data
            (b"a\n.\nb", None, b""),
            (b"a\r.\rb", None, b""),
            (b"a\n.\r\nb", None, b""),
            (b"a\r\n.\nb", None, b""),
            (b"a\r\n.\rb", None, b""),
            (b"a\r.\r\nb", None, b""),
        ];
        for (input, end, message) in cases {
            let (got_end, result) = receive(input, 1000);
            assert_eq!(got_end, *end, "{input:?}");
            if end.is_some() {
                assert_eq!(result.as_deref(), Ok(*message), "{input:?}");
            }
        }
    }

    #[test]
    fn keeps_bare_line_endings_and_unstuffs_only_after_crlf() {
        let input = b"x\n.y\r.z\r\n.\rw\r\n.\n\r\n.\r\n";
        let (end, message) = receive(input, 1000);
        assert_eq!(end, Some(input.len()));
        assert_eq!(message.as_deref(), Ok(&b"x\n.y\r.z\r\n\rw\r\n\n\r\n"[..]));
    }

    #[test]
    fn too_big_is_read_to_the_end() {
        let input = b"0123456789\r\n.\r\nQUIT\r\n";
        let (end, message) = receive(input, 11);
        assert_eq!(end, Some(15));
        assert_eq!(message, Err(DataError::TooBig));
        let (_, message) = receive(input, 12);
        assert_eq!(message.as_deref(), Ok(&b"0123456789\r\n"[..]));
    }

    #[test]
    fn counts_received_headers_in_the_header_section_only() {
        let mut message = "Received: from a\r\n\tby b\r\n".repeat(MAX_RECEIVED_HEADERS);
        message.push_str("Subject: x\r\n\r\nReceived: in the body\r\n.\r\n");
        assert!(receive(message.as_bytes(), 1 << 20).1.is_ok());
        let looped = format!("RECEIVED: from c\r\n{message}");
        assert_eq!(receive(looped.as_bytes(), 1 << 20).1, Err(DataError::Loop));
    }
}
