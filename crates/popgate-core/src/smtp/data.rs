//! The DATA receiver (RFC 5321 §4.1.1.4, §4.5.2).
//!
//! Only `CRLF "." CRLF` ends the data. A bare LF or a bare CR never forms a line
//! boundary here, so `"\n.\n"`, `"\r.\r"` or `"\n.\r\n"` are never an end of data:
//! a server that ended data on them could be made to accept a second, smuggled
//! message that an upstream server saw as part of the first. The data starts at a line
//! boundary (just after the CRLF of the DATA command), so `".\r\n"` alone is an
//! empty message. A line that starts with '.' loses that dot (dot-unstuffing).
//!
//! RFC 5321 §2.3.8 allows CR and LF only together as CRLF. What a bare one becomes is
//! [`BareNewline`]: by default the message is refused at its end (so nothing with a
//! bare LF is ever stored or relayed, where another server could read it as a line
//! end); `Normalize` stores it as CRLF instead. Either way it never ends the data.
//!
//! Memory is bounded: past the size limit the receiver stops storing, keeps reading
//! to the end of data, and reports [`DataError::TooBig`].

/// RFC 5321 §6.3: more `Received:` headers than this is a mail loop.
pub const MAX_RECEIVED_HEADERS: usize = 100;

/// What a bare CR or LF inside DATA does (RFC 5321 §2.3.8). Postfix calls this
/// `smtpd_forbid_bare_newline`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BareNewline {
    /// The message is refused at its end: 550 5.5.2 (the default).
    #[default]
    Reject,
    /// Stored as CRLF (for old clients that write bare LF); it still never ends DATA.
    Normalize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DataError {
    /// Larger than the limit: 552 5.3.4.
    TooBig,
    /// More than [`MAX_RECEIVED_HEADERS`] `Received:` headers: 554 5.4.6.
    Loop,
    /// A bare LF with [`BareNewline::Reject`]: 550 5.5.2.
    BareLf,
    /// A bare CR with [`BareNewline::Reject`]: 550 5.5.2.
    BareCr,
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
    /// Inside a line, just after a CR (held back): an LF now ends the line.
    Cr,
}

#[derive(Debug)]
pub(crate) struct DataReceiver {
    state: State,
    message: Vec<u8>,
    /// Octets after dot-unstuffing, counted even past the limit.
    size: u64,
    max: u64,
    bare_newline: BareNewline,
    /// The first bare line ending seen.
    bare: Option<DataError>,
}

impl DataReceiver {
    /// A receiver that refuses bare line endings ([`BareNewline::Reject`]).
    // The session always names the mode; the tests and the fuzz entry points use this.
    #[allow(dead_code)]
    pub(crate) fn new(max: u64) -> DataReceiver {
        DataReceiver::with_bare_newline(max, BareNewline::Reject)
    }

    pub(crate) fn with_bare_newline(max: u64, bare_newline: BareNewline) -> DataReceiver {
        DataReceiver {
            state: State::LineStart,
            message: Vec::new(),
            size: 0,
            max,
            bare_newline,
            bare: None,
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
                    // Fast path: copy the run of bytes up to the next CR or LF.
                    let run = bytes[i..]
                        .iter()
                        .position(|&c| c == b'\r' || c == b'\n')
                        .unwrap_or(bytes.len() - i);
                    self.store(&bytes[i..i + run]);
                    i += run;
                    match bytes.get(i) {
                        Some(b'\r') => self.state = State::Cr,
                        Some(_) => self.bare(DataError::BareLf),
                        None => {}
                    }
                    i += 1;
                    continue;
                }
                State::Cr => {
                    if b == b'\n' {
                        self.store(b"\r\n");
                        self.state = State::LineStart;
                    } else {
                        // RFC 5321 §2.3.8: a CR not followed by LF.
                        self.bare(DataError::BareCr);
                        self.state = State::Middle;
                        continue;
                    }
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
                    // ".\r" and then not LF: the dot is stuffing, the CR is bare.
                    self.bare(DataError::BareCr);
                    self.state = State::Middle;
                    continue;
                }
            }
            i += 1;
        }
        None
    }

    /// A bare CR or LF (RFC 5321 §2.3.8): remembered, and stored as CRLF when
    /// normalising, as itself otherwise (the message is refused at its end then).
    fn bare(&mut self, which: DataError) {
        self.bare.get_or_insert(which);
        match (self.bare_newline, which) {
            (BareNewline::Normalize, _) => self.store(b"\r\n"),
            (BareNewline::Reject, DataError::BareCr) => self.store(b"\r"),
            (BareNewline::Reject, _) => self.store(b"\n"),
        }
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

    /// Message bytes held so far (at most the size limit).
    pub(crate) fn held(&self) -> usize {
        self.message.len()
    }

    /// The message, once [`push`](Self::push) has found the end.
    pub(crate) fn finish(self) -> Result<Vec<u8>, DataError> {
        if self.size > self.max {
            return Err(DataError::TooBig);
        }
        if let (BareNewline::Reject, Some(bare)) = (self.bare_newline, self.bare) {
            return Err(bare);
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
        receive_with(input, max, BareNewline::Reject)
    }

    fn receive_with(
        input: &[u8],
        max: u64,
        mode: BareNewline,
    ) -> (Option<usize>, Result<Vec<u8>, DataError>) {
        let mut whole = DataReceiver::with_bare_newline(max, mode);
        let end = whole.push(input);
        let mut bytewise = DataReceiver::with_bare_newline(max, mode);
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
    fn bare_line_endings_are_refused_or_normalised_and_unstuff_only_after_crlf() {
        let input = b"x\n.y\r.z\r\n.\rw\r\n.\n\r\n.\r\n";
        let (end, message) = receive(input, 1000);
        assert_eq!(end, Some(input.len()));
        assert_eq!(
            message,
            Err(DataError::BareLf),
            "the first bare ending is named"
        );
        let (end, message) = receive_with(input, 1000, BareNewline::Normalize);
        assert_eq!(end, Some(input.len()));
        assert_eq!(
            message.as_deref(),
            Ok(&b"x\r\n.y\r\n.z\r\n\r\nw\r\n\r\n\r\n"[..])
        );
        let (_, message) = receive(b"a\rb\r\n.\r\n", 1000);
        assert_eq!(message, Err(DataError::BareCr));
        let (_, message) = receive(b"a\r\r\n.\r\n", 1000);
        assert_eq!(
            message,
            Err(DataError::BareCr),
            "CR CR LF: the first CR is bare"
        );
        let (_, message) = receive_with(b"a\r\r\nb\n\r\n.\r\n", 1000, BareNewline::Normalize);
        assert_eq!(message.as_deref(), Ok(&b"a\r\n\r\nb\r\n\r\n"[..]));
        // CRLF only: nothing to refuse.
        let (_, message) = receive(b"a\r\n\r\nb\r\n.\r\n", 1000);
        assert_eq!(message.as_deref(), Ok(&b"a\r\n\r\nb\r\n"[..]));
    }

    /// RFC 5321 §2.3.8 and the SMTP smuggling variants: each bare ending followed by a
    /// smuggled transaction is one message (refused by default, one normalised message
    /// otherwise), never two, and a normalised message holds no bare CR or LF.
    #[test]
    fn smuggling_variants_make_at_most_one_message() {
        for end in [
            &b"\n.\n"[..],
            b"\r.\r",
            b"\r\n.\n",
            b"\n.\r\n",
            b"\r.\r\n",
            b"\r\n.\r",
            b"\n.\r",
        ] {
            let mut input = b"Subject: a\r\n\r\nbefore".to_vec();
            input.extend_from_slice(end);
            input.extend_from_slice(
                b"MAIL FROM:<e@x.test>\r\nRCPT TO:<v@x.test>\r\nDATA\r\nevil\r\n.\r\nQUIT\r\n",
            );
            let real_end = input.len() - b"QUIT\r\n".len();
            let (got, message) = receive(&input, 1000);
            assert_eq!(
                got,
                Some(real_end),
                "{end:?}: the end is the last CRLF.CRLF"
            );
            assert!(
                matches!(message, Err(DataError::BareLf | DataError::BareCr)),
                "{end:?}: refused by default: {message:?}"
            );
            let (got, message) = receive_with(&input, 1000, BareNewline::Normalize);
            assert_eq!(got, Some(real_end), "{end:?}");
            let message = message.expect("normalised");
            for (i, &b) in message.iter().enumerate() {
                let crlf = match b {
                    b'\r' => message.get(i + 1) == Some(&b'\n'),
                    b'\n' => i > 0 && message[i - 1] == b'\r',
                    _ => true,
                };
                assert!(crlf, "{end:?}: bare line ending at {i} in {message:?}");
            }
        }
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
