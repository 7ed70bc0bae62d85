//! The SMTP command parser and the DATA receiver, opened up for the fuzz targets
//! (`fuzz/`, feature `fuzzing`) and the property tests. Not an API: the session is
//! the only real caller of both.

use super::data::{BareNewline, DataError, DataReceiver, is_mail_loop};

/// Pipelined command bytes a session buffers at most before it stops reading.
pub const PIPELINE_BUFFER: usize = super::session::PIPELINE_BUFFER;

/// Parses one command line (without its line ending) as the session does; `Ok` holds
/// the command's `Debug` form, `Err` the reply the session would send.
pub fn parse_command(line: &[u8]) -> Result<String, String> {
    match super::parse::parse_command(line) {
        Ok(command) => Ok(format!("{command:?}")),
        Err(e) => Err(e.reply().line()),
    }
}

/// Why a message was refused at the end of data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    TooBig,
    Loop,
    BareCr,
    BareLf,
}

/// The DATA receiver: end-of-data detection and dot-unstuffing (RFC 5321 §4.5.2).
#[derive(Debug)]
pub struct Unstuffer(DataReceiver);

impl Unstuffer {
    /// `max`: the size limit in octets after unstuffing; `normalize`: store a bare CR
    /// or LF as CRLF rather than refuse the message.
    pub fn new(max: u64, normalize: bool) -> Unstuffer {
        let bare = if normalize {
            BareNewline::Normalize
        } else {
            BareNewline::Reject
        };
        Unstuffer(DataReceiver::with_bare_newline(max, bare))
    }

    /// Feeds bytes; `Some(n)` once the end of data was found in the first `n`.
    pub fn push(&mut self, bytes: &[u8]) -> Option<usize> {
        self.0.push(bytes)
    }

    /// Message bytes held so far.
    pub fn held(&self) -> usize {
        self.0.held()
    }

    /// The message, after the end of data.
    pub fn finish(self) -> Result<Vec<u8>, Refused> {
        self.0.finish().map_err(|e| match e {
            DataError::TooBig => Refused::TooBig,
            DataError::Loop => Refused::Loop,
            DataError::BareCr => Refused::BareCr,
            DataError::BareLf => Refused::BareLf,
        })
    }
}

/// The receiver's contract as plainly as RFC 5321 reads, for the fuzz targets and
/// property tests to hold [`Unstuffer`] to: the data ends at the first CRLF "." CRLF,
/// counting the CRLF that ended the DATA command (§4.1.1.4); a dot that starts a line
/// is removed (§4.5.2); CR and LF are allowed only together (§2.3.8), a bare one is
/// stored as CRLF when normalising and refuses the message otherwise. Returns how many
/// input bytes the data took, and the outcome; `None` when the data has not ended.
pub fn reference_unstuff(
    input: &[u8],
    max: u64,
    normalize: bool,
) -> Option<(usize, Result<Vec<u8>, Refused>)> {
    let mut prefixed = b"\r\n".to_vec();
    prefixed.extend_from_slice(input);
    let p = prefixed.windows(5).position(|w| w == b"\r\n.\r\n")?;
    // In `input`, the body is everything up to and including the CRLF before ".".
    let body = &input[..p];
    let mut message = Vec::new();
    let mut bare = None;
    let mut line_start = true;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if line_start && b == b'.' {
            line_start = false;
            i += 1;
            continue;
        }
        line_start = false;
        match b {
            b'\r' if body.get(i + 1) == Some(&b'\n') => {
                message.extend_from_slice(b"\r\n");
                line_start = true;
                i += 1;
            }
            b'\r' | b'\n' => {
                bare.get_or_insert(if b == b'\r' {
                    Refused::BareCr
                } else {
                    Refused::BareLf
                });
                if normalize {
                    message.extend_from_slice(b"\r\n");
                } else {
                    message.push(b);
                }
            }
            _ => message.push(b),
        }
        i += 1;
    }
    let outcome = if message.len() as u64 > max {
        Err(Refused::TooBig)
    } else if let (false, Some(bare)) = (normalize, bare) {
        Err(bare)
    } else if is_mail_loop(&message) {
        Err(Refused::Loop)
    } else {
        Ok(message)
    };
    Some((p + 3, outcome))
}
