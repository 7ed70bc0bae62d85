//! POP3 command parser (RFC 1939 §3, RFC 2449 §5, RFC 2595 §4, RFC 5034 §4).
//!
//! Takes one line as [`crate::line::LineReader`] delivers it (terminator removed) and
//! returns a [`Command`] or a [`ParseError`]. It never looks at session state: whether a
//! command is allowed now is the session's business.

use crate::Secret;

/// One POP3 command, grouped by the RFC 1939 state it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    // RFC 1939 §7: AUTHORIZATION state.
    User {
        name: String,
    },
    /// The password is held as a [`Secret`], so printing a command never shows it.
    Pass {
        password: Secret,
    },
    /// RFC 1939 §7 APOP: a mailbox name and the MD5 digest as 32 hex digits (lowered).
    Apop {
        name: String,
        digest: String,
    },
    /// RFC 5034 §4: `AUTH mechanism [initial-response]`. The initial response is a
    /// [`Secret`]: for PLAIN it holds the password. `AUTH` alone (no mechanism) asks
    /// for the list of mechanisms, as clients of the pre-RFC 5034 drafts do.
    Auth {
        mechanism: Option<String>,
        initial: Option<Secret>,
    },
    /// RFC 2595 §4.
    Stls,

    // RFC 1939 §5 and §7: TRANSACTION state. Message numbers are as the client sent
    // them (1-based); a number too large for `u32` saturates, which names no message.
    Stat,
    List {
        msg: Option<u32>,
    },
    Retr {
        msg: u32,
    },
    Dele {
        msg: u32,
    },
    Noop,
    Rset,
    Top {
        msg: u32,
        lines: u32,
    },
    Uidl {
        msg: Option<u32>,
    },

    // Valid in AUTHORIZATION and TRANSACTION.
    /// RFC 2449 §5.
    Capa,
    /// RFC 1939 §4 (AUTHORIZATION) and §6 (TRANSACTION, enters UPDATE).
    Quit,
}

/// Why a line is not a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A NUL byte or bytes that are not UTF-8.
    InvalidBytes,
    /// An empty line or a keyword this server does not know.
    UnknownCommand,
    /// A known keyword with missing, extra or malformed arguments.
    BadArgument,
}

/// Parse one command line (without its CRLF).
///
/// RFC 1939 §3: a keyword of three or four characters, case-insensitive, then
/// arguments separated by a single space. Trailing spaces are tolerated (some clients
/// send them), except for PASS, whose argument is the rest of the line verbatim: RFC
/// 1939 §7 lets a server treat spaces in the password as part of it.
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    if line.contains(&0) {
        return Err(ParseError::InvalidBytes);
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::InvalidBytes)?;
    let (keyword, rest) = match line.split_once(' ') {
        Some((k, r)) => (k, Some(r)),
        None => (line, None),
    };
    if keyword.eq_ignore_ascii_case("PASS") {
        return match rest {
            Some(password) if !password.is_empty() => Ok(Command::Pass {
                password: Secret::new(password),
            }),
            _ => Err(ParseError::BadArgument),
        };
    }

    let trimmed = line.trim_end_matches([' ', '\t']);
    let (keyword, args) = match trimmed.split_once(' ') {
        Some((k, r)) => (k, r.split(' ').collect::<Vec<_>>()),
        None => (trimmed, Vec::new()),
    };
    let keyword = keyword.to_ascii_uppercase();
    let args = args.as_slice();
    match keyword.as_str() {
        "USER" => match args {
            [name] if !name.is_empty() => Ok(Command::User {
                name: (*name).to_owned(),
            }),
            _ => Err(ParseError::BadArgument),
        },
        "STAT" => no_args(args, Command::Stat),
        "NOOP" => no_args(args, Command::Noop),
        "RSET" => no_args(args, Command::Rset),
        "CAPA" => no_args(args, Command::Capa),
        "STLS" => no_args(args, Command::Stls),
        // RFC 1939 §7: `APOP name digest`, the digest 16 octets in hex.
        "APOP" => match args {
            [name, digest] if !name.is_empty() && crate::sasl::is_md5_hex(digest) => {
                Ok(Command::Apop {
                    name: (*name).to_owned(),
                    digest: digest.to_ascii_lowercase(),
                })
            }
            _ => Err(ParseError::BadArgument),
        },
        "AUTH" => match args {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial: None,
            }),
            [mechanism] if !mechanism.is_empty() => Ok(Command::Auth {
                mechanism: Some((*mechanism).to_owned()),
                initial: None,
            }),
            [mechanism, initial] if !mechanism.is_empty() && !initial.is_empty() => {
                Ok(Command::Auth {
                    mechanism: Some((*mechanism).to_owned()),
                    initial: Some(Secret::new(*initial)),
                })
            }
            _ => Err(ParseError::BadArgument),
        },
        "QUIT" => no_args(args, Command::Quit),
        "LIST" => Ok(Command::List {
            msg: optional_number(args)?,
        }),
        "UIDL" => Ok(Command::Uidl {
            msg: optional_number(args)?,
        }),
        "RETR" => match args {
            [n] => Ok(Command::Retr { msg: number(n)? }),
            _ => Err(ParseError::BadArgument),
        },
        "DELE" => match args {
            [n] => Ok(Command::Dele { msg: number(n)? }),
            _ => Err(ParseError::BadArgument),
        },
        "TOP" => match args {
            [n, m] => Ok(Command::Top {
                msg: number(n)?,
                lines: number(m)?,
            }),
            _ => Err(ParseError::BadArgument),
        },
        _ => Err(ParseError::UnknownCommand),
    }
}

fn no_args(args: &[&str], command: Command) -> Result<Command, ParseError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(ParseError::BadArgument)
    }
}

fn optional_number(args: &[&str]) -> Result<Option<u32>, ParseError> {
    match args {
        [] => Ok(None),
        [n] => number(n).map(Some),
        _ => Err(ParseError::BadArgument),
    }
}

/// A non-negative decimal number: ASCII digits only (no sign, no spaces). Too large
/// for `u32` saturates rather than failing: as a message number it names no message,
/// as TOP's line count it means "all lines", both of which are the honest answer.
fn number(s: &str) -> Result<u32, ParseError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadArgument);
    }
    Ok(s.bytes().fold(0u32, |n, b| {
        n.saturating_mul(10).saturating_add(u32::from(b - b'0'))
    }))
}

/// How a command line appears in events: lossily decoded, with secrets replaced by
/// `****`: the argument of PASS, an AUTH initial response (`AUTH PLAIN ****`) and an
/// APOP digest (`APOP name ****`). Works on the raw bytes so a line that does not
/// parse (bad UTF-8, a NUL, extra arguments) is redacted all the same.
pub fn redact(line: &[u8]) -> String {
    let Some((keyword, rest)) = line.split_at_checked(4) else {
        return String::from_utf8_lossy(line).into_owned();
    };
    let shown = |kept: &[u8]| format!("{} ****", String::from_utf8_lossy(kept));
    // A keyword that merely starts with PASS (e.g. `PASSWORD x`) is no command of
    // ours, but may still carry a secret: hide everything after those four bytes too.
    if keyword.eq_ignore_ascii_case(b"PASS") && !rest.is_empty() {
        return shown(keyword);
    }
    // AUTH and APOP: keep the keyword and the first argument (mechanism, name); hide
    // whatever follows it.
    if (keyword.eq_ignore_ascii_case(b"AUTH") || keyword.eq_ignore_ascii_case(b"APOP"))
        && rest.first() == Some(&b' ')
        && let Some(second) = rest[1..].iter().position(|&b| b == b' ')
        && rest[1 + second..].iter().any(|&b| b != b' ' && b != b'\t')
    {
        return shown(&line[..4 + 1 + second]);
    }
    if crate::sasl::may_be_credentials(line, POP3_VERBS) {
        return "****".to_owned();
    }
    String::from_utf8_lossy(line).into_owned()
}

/// Every POP3 command, so a stray base64 line (credentials sent after a refused AUTH)
/// is told apart from them.
const POP3_VERBS: &[&str] = &[
    "USER", "PASS", "APOP", "AUTH", "CAPA", "STLS", "QUIT", "STAT", "LIST", "RETR", "DELE", "NOOP",
    "RSET", "TOP", "UIDL",
];

/// How a SASL continuation line (RFC 5034 §4) appears in events: always hidden, as
/// it carries a password or a digest, except the `*` that cancels the exchange.
pub fn redact_continuation(line: &[u8]) -> String {
    if line.trim_ascii_end() == b"*" {
        "*".to_owned()
    } else {
        "****".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::{Line, LineReader};
    use crate::testing::test;
    use Command::*;
    use ParseError::*;

    fn pass(p: &str) -> Command {
        Pass {
            password: Secret::new(p),
        }
    }

    fn user(n: &str) -> Command {
        User { name: n.to_owned() }
    }

    fn apop(name: &str, digest: &str) -> Command {
        Apop {
            name: name.to_owned(),
            digest: digest.to_owned(),
        }
    }

    fn auth(mechanism: Option<&str>, initial: Option<&str>) -> Command {
        Auth {
            mechanism: mechanism.map(str::to_owned),
            initial: initial.map(Secret::new),
        }
    }

    /// Successes and errors side by side, in the order of RFC 1939.
    fn cases() -> Vec<(&'static [u8], Result<Command, ParseError>)> {
        vec![
            // RFC 1939 §7 USER / PASS
            (b"USER alice", Ok(user("alice"))),
            (b"user alice@example.test", Ok(user("alice@example.test"))),
            (b"USER", Err(BadArgument)),
            (b"USER a b", Err(BadArgument)),
            (b"USER  alice", Err(BadArgument)),
            (b"PASS secret", Ok(pass("secret"))),
            (b"pass two words", Ok(pass("two words"))),
            (b"PASS  lead", Ok(pass(" lead"))),
            (b"PASS", Err(BadArgument)),
            (b"PASS sec\0ret", Err(InvalidBytes)),
            // RFC 1939 §7 APOP
            (
                b"APOP mrose c4c9334bac560ecc979e58001b3e22fb",
                Ok(apop("mrose", "c4c9334bac560ecc979e58001b3e22fb")),
            ),
            (
                b"apop mrose C4C9334BAC560ECC979E58001B3E22FB",
                Ok(apop("mrose", "c4c9334bac560ecc979e58001b3e22fb")),
            ),
            (b"APOP mrose", Err(BadArgument)),
            (b"APOP mrose c4c9", Err(BadArgument)),
            (
                b"APOP mrose x4c9334bac560ecc979e58001b3e22fb",
                Err(BadArgument),
            ),
            (b"APOP  c4c9334bac560ecc979e58001b3e22fb", Err(BadArgument)),
            (
                b"APOP a b c4c9334bac560ecc979e58001b3e22fb",
                Err(BadArgument),
            ),
            // RFC 5034 §4 AUTH
            (b"AUTH", Ok(auth(None, None))),
            (b"AUTH PLAIN", Ok(auth(Some("PLAIN"), None))),
            (b"auth login", Ok(auth(Some("login"), None))),
            (
                b"AUTH PLAIN AGFsaWNlAHNlY3JldA==",
                Ok(auth(Some("PLAIN"), Some("AGFsaWNlAHNlY3JldA=="))),
            ),
            (b"AUTH PLAIN =", Ok(auth(Some("PLAIN"), Some("=")))),
            (b"AUTH PLAIN a b", Err(BadArgument)),
            (b"AUTH  PLAIN", Err(BadArgument)),
            // RFC 2595 §4 STLS
            (b"STLS", Ok(Stls)),
            (b"stls", Ok(Stls)),
            (b"STLS now", Err(BadArgument)),
            // RFC 1939 §5
            (b"STAT", Ok(Stat)),
            (b"stat", Ok(Stat)),
            (b"StAt", Ok(Stat)),
            (b"STAT 1", Err(BadArgument)),
            (b"LIST", Ok(List { msg: None })),
            (b"LIST 2", Ok(List { msg: Some(2) })),
            (b"LIST 007", Ok(List { msg: Some(7) })),
            (b"LIST 0", Ok(List { msg: Some(0) })),
            (b"LIST 1 2", Err(BadArgument)),
            (b"LIST  1", Err(BadArgument)),
            (b"LIST x", Err(BadArgument)),
            (b"LIST -1", Err(BadArgument)),
            (b"LIST +1", Err(BadArgument)),
            (b"LIST 1.0", Err(BadArgument)),
            (b"LIST \xd9\xa3", Err(BadArgument)), // an Arabic-Indic digit is no digit
            (
                b"LIST 99999999999999999999999",
                Ok(List {
                    msg: Some(u32::MAX),
                }),
            ),
            (b"RETR 1", Ok(Retr { msg: 1 })),
            (b"RETR", Err(BadArgument)),
            (b"RETR 1 2", Err(BadArgument)),
            (b"DELE 3", Ok(Dele { msg: 3 })),
            (b"DELE", Err(BadArgument)),
            (b"NOOP", Ok(Noop)),
            (b"NOOP x", Err(BadArgument)),
            (b"RSET", Ok(Rset)),
            (b"TOP 1 0", Ok(Top { msg: 1, lines: 0 })),
            (b"top 2 10", Ok(Top { msg: 2, lines: 10 })),
            (b"TOP 1", Err(BadArgument)),
            (b"TOP 1 2 3", Err(BadArgument)),
            (b"TOP 1 -2", Err(BadArgument)),
            (b"UIDL", Ok(Uidl { msg: None })),
            (b"UIDL 1", Ok(Uidl { msg: Some(1) })),
            (b"UIDL a", Err(BadArgument)),
            (b"QUIT", Ok(Quit)),
            (b"QUIT now", Err(BadArgument)),
            // RFC 2449 §5
            (b"CAPA", Ok(Capa)),
            (b"CAPA x", Err(BadArgument)),
            // not commands
            (b"", Err(UnknownCommand)),
            (b"HELO there", Err(UnknownCommand)),
            (b"STATS", Err(UnknownCommand)),
            (b" STAT", Err(UnknownCommand)),
            (b"ST\0T", Err(InvalidBytes)),
            (b"STAT \xff", Err(InvalidBytes)),
            (b"\xc3\x28", Err(InvalidBytes)),
        ]
    }

    fn through_reader(bytes: &[u8]) -> Vec<u8> {
        let mut reader = LineReader::new(1024);
        reader.push(bytes);
        match reader.next_line() {
            Some(Line::Complete(line)) => line,
            other => panic!("no line from {bytes:?}: {other:?}"),
        }
    }

    #[test]
    fn parses_the_table_with_crlf_lf_and_trailing_space() {
        for (line, expected) in cases() {
            for (ending, trailing_space) in [("\r\n", false), ("\n", false), (" \r\n", true)] {
                let mut input = line.to_vec();
                input.extend_from_slice(ending.as_bytes());
                let got = parse_command(&through_reader(&input));
                // PASS keeps its argument verbatim, trailing space included.
                let expected = match (&expected, trailing_space) {
                    (Ok(Pass { password }), true) => Ok(pass(&format!("{} ", password.expose()))),
                    // `PASS` alone plus a space is an empty password: still refused.
                    _ => expected.clone(),
                };
                assert_eq!(got, expected, "input {input:?}");
            }
        }
    }

    #[test]
    fn redacts_pass_in_any_shape() {
        assert_eq!(redact(b"PASS secret"), "PASS ****");
        assert_eq!(redact(b"pass two words"), "pass ****");
        assert_eq!(redact(b"PASS sec\xffret"), "PASS ****");
        assert_eq!(redact(b"PASSWORD secret"), "PASS ****");
        assert_eq!(redact(b"PASS"), "PASS");
        assert_eq!(redact(b"USER alice"), "USER alice");
        assert_eq!(redact(b"LIST \xff"), "LIST \u{fffd}");
    }

    #[test]
    fn redacts_auth_initial_responses_and_apop_digests() {
        for (line, shown) in [
            (&b"AUTH PLAIN AGFsaWNlAHNlY3JldA=="[..], "AUTH PLAIN ****"),
            (b"auth plain =", "auth plain ****"),
            (b"AUTH PLAIN a b c", "AUTH PLAIN ****"),
            (b"AUTH PLAIN \xffsecret", "AUTH PLAIN ****"),
            (b"AUTH PLAIN", "AUTH PLAIN"),
            (b"AUTH PLAIN ", "AUTH PLAIN "),
            (b"AUTH", "AUTH"),
            (
                b"APOP mrose c4c9334bac560ecc979e58001b3e22fb",
                "APOP mrose ****",
            ),
            (b"APOP mrose", "APOP mrose"),
            (b"AUTHX y z", "AUTHX y z"),
        ] {
            assert_eq!(redact(line), shown, "{line:?}");
        }
        assert_eq!(redact_continuation(b"dGlt"), "****");
        assert_eq!(redact_continuation(b""), "****");
        assert_eq!(redact_continuation(b"*"), "*");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let shown = format!("{:?}", parse_command(b"PASS hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
        let shown = format!("{:?}", parse_command(b"AUTH PLAIN aHVudGVyMg=="));
        assert!(!shown.contains("aHVudGVyMg=="), "{shown}");
    }
}
