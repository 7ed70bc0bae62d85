//! Reply codes in transcripts, explained on hover.
//!
//! Which replies exist is core's fact (`popgate_core::reply`); what a code means is
//! the RFCs', written in the [`Strings`] tables so it can be translated. The tests
//! below check that every code core sends has an explanation here.

use crate::i18n::{Strings, fill};
use popgate_core::Protocol;
use popgate_core::reply::Pop3Code;

/// A reply code found at the start of a server line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyCode<'a> {
    /// RFC 5321 §4.2: three digits, then (RFC 2034) an optional enhanced status code.
    Smtp { code: u16, status: Option<&'a str> },
    /// RFC 1939 §3: `+OK` or `-ERR`, then (RFC 2449 §8) an optional `[CODE]`.
    Pop3 { ok: bool, code: Option<Pop3Code> },
}

/// The code at the start of `line` and how many bytes of the line it spans (so the
/// view can mark it), or `None` for lines that carry no code (POP3 multi-line data,
/// SASL continuations).
pub fn parse(protocol: Protocol, line: &str) -> Option<(ReplyCode<'_>, usize)> {
    if protocol.is_pop3() {
        parse_pop3(line)
    } else {
        parse_smtp(line)
    }
}

fn parse_smtp(line: &str) -> Option<(ReplyCode<'_>, usize)> {
    let digits = line.get(..3)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // RFC 5321 §4.2: the code is followed by a space, a hyphen (more lines follow) or
    // the end of the line.
    let sep = line.as_bytes().get(3).copied();
    if !matches!(sep, None | Some(b' ') | Some(b'-')) {
        return None;
    }
    let code: u16 = digits.parse().ok()?;
    let rest = line.get(4..).unwrap_or("");
    let token = rest.split(' ').next().unwrap_or("");
    // RFC 3463 §2: class "." subject "." detail, the class matching the reply's.
    if is_enhanced_status(token) && token.as_bytes().first() == digits.as_bytes().first() {
        Some((
            ReplyCode::Smtp {
                code,
                status: Some(token),
            },
            4 + token.len(),
        ))
    } else {
        Some((ReplyCode::Smtp { code, status: None }, 3))
    }
}

fn is_enhanced_status(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[0].len() == 1
        && parts[1..].iter().all(|p| (1..=3).contains(&p.len()))
        && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// Every RFC 2449 / RFC 3206 response code core defines.
const POP3_CODES: [Pop3Code; 5] = [
    Pop3Code::InUse,
    Pop3Code::LoginDelay,
    Pop3Code::Auth,
    Pop3Code::SysTemp,
    Pop3Code::SysPerm,
];

fn parse_pop3(line: &str) -> Option<(ReplyCode<'_>, usize)> {
    let (ok, len) = if line.starts_with("+OK") {
        (true, 3)
    } else if line.starts_with("-ERR") {
        (false, 4)
    } else {
        return None;
    };
    // RFC 2449 §8: the response code follows the status indicator in brackets.
    let bracketed = line
        .get(len..)
        .and_then(|rest| rest.strip_prefix(" ["))
        .and_then(|rest| rest.split_once(']'));
    if let Some((name, _)) = bracketed
        && let Some(code) = POP3_CODES.iter().find(|c| c.as_str() == name)
    {
        return Some((
            ReplyCode::Pop3 {
                ok,
                code: Some(*code),
            },
            len + 3 + name.len(),
        ));
    }
    Some((ReplyCode::Pop3 { ok, code: None }, len))
}

fn pop3_meaning(s: &Strings, code: Pop3Code) -> &'static str {
    // Exhaustive on purpose: a code added to core fails to compile here until it is
    // explained.
    match code {
        Pop3Code::InUse => s.pop3_in_use,
        Pop3Code::LoginDelay => s.pop3_login_delay,
        Pop3Code::Auth => s.pop3_auth,
        Pop3Code::SysTemp => s.pop3_sys_temp,
        Pop3Code::SysPerm => s.pop3_sys_perm,
    }
}

fn lookup<K: PartialEq + Copy, V: Copy>(table: &[(K, V)], key: K) -> Option<V> {
    table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The explanation of a reply code, one fact per line (for a `title` tooltip).
pub fn explain(s: &Strings, code: ReplyCode<'_>) -> String {
    let mut lines = Vec::new();
    match code {
        ReplyCode::Smtp { code, status } => {
            let class = u8::try_from(code / 100).unwrap_or(0);
            match s.smtp_codes.iter().find(|(c, _, _)| *c == code) {
                Some((_, meaning, rfc)) => lines.push(fill(
                    s.code_line,
                    &[
                        ("code", &code.to_string()),
                        ("meaning", meaning),
                        ("rfc", rfc),
                    ],
                )),
                None => {
                    if let Some(meaning) = lookup(s.smtp_classes, class) {
                        lines.push(fill(
                            s.code_line,
                            &[
                                ("code", &code.to_string()),
                                ("meaning", meaning),
                                ("rfc", "RFC 5321 §4.2.1"),
                            ],
                        ));
                    }
                }
            }
            if let Some(status) = status {
                lines.push(explain_status(s, status));
            }
        }
        ReplyCode::Pop3 { ok, code } => {
            lines.push(if ok { s.pop3_ok } else { s.pop3_err }.to_owned());
            if let Some(code) = code {
                lines.push(pop3_meaning(s, code).to_owned());
            }
        }
    }
    lines.join("\n")
}

/// RFC 3463: class, subject and (where known) detail of an enhanced status code.
fn explain_status(s: &Strings, status: &str) -> String {
    let mut parts = status.splitn(3, '.');
    let class = parts.next().and_then(|p| p.parse::<u8>().ok());
    let subject = parts.next().and_then(|p| p.parse::<u8>().ok());
    let detail = status.split_once('.').map(|(_, sd)| sd).unwrap_or("");
    let mut meaning: Vec<&str> = Vec::new();
    if let Some(c) = class.and_then(|c| lookup(s.status_classes, c)) {
        meaning.push(c);
    }
    match lookup(s.status_details, detail) {
        Some(d) => meaning.push(d),
        None => {
            if let Some(sub) = subject.and_then(|n| lookup(s.status_subjects, n)) {
                meaning.push(sub);
            }
        }
    }
    fill(
        s.code_line,
        &[
            ("code", status),
            ("meaning", &meaning.join(", ")),
            ("rfc", "RFC 3463"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::EN;
    use popgate_core::reply::{self, SmtpReply};

    /// The SMTP replies core defines (every one of them must be explained).
    const CORE_SMTP: &[SmtpReply] = &[
        reply::OK,
        reply::SENDER_OK,
        reply::RECIPIENT_OK,
        reply::QUEUED,
        reply::RESET,
        reply::NOOP,
        reply::CANNOT_VRFY,
        reply::HELP,
        reply::BYE,
        reply::START_DATA,
        reply::SHUTTING_DOWN,
        reply::TIMEOUT,
        reply::TOO_MANY_CONNECTIONS,
        reply::STORE_FAILED,
        reply::DISK_FULL,
        reply::TOO_MANY_RECIPIENTS,
        reply::TEMP_AUTH_FAILURE,
        reply::SYNTAX_ERROR,
        reply::LINE_TOO_LONG,
        reply::BAD_ARGUMENT,
        reply::NOT_IMPLEMENTED,
        reply::BAD_SEQUENCE,
        reply::BAD_PARAMETER,
        reply::AUTH_REQUIRED,
        reply::BAD_CREDENTIALS,
        reply::ENCRYPTION_REQUIRED,
        reply::UNKNOWN_USER,
        reply::MESSAGE_TOO_BIG,
        reply::MAIL_LOOP,
        reply::RELAY_DENIED,
        reply::NO_VALID_RECIPIENTS,
        reply::GREETING,
        reply::HELLO,
        reply::TEMP_FAILURE,
        reply::BAD_ADDRESS,
        reply::NEEDS_SMTPUTF8,
        reply::READY_TO_START_TLS,
        reply::TLS_ALREADY_ACTIVE,
        reply::AUTH_SUCCEEDED,
        reply::AUTH_CHALLENGE,
        reply::ALREADY_AUTHENTICATED,
        reply::AUTH_CANCELLED,
        reply::AUTH_BAD_BASE64,
        reply::AUTH_MALFORMED,
        reply::UNKNOWN_MECHANISM,
        reply::TOO_MANY_AUTH_FAILURES,
        reply::SENDER_NOT_OWNED,
    ];

    #[test]
    fn every_core_smtp_reply_is_explained() {
        for r in CORE_SMTP {
            let line = r.line();
            let line = line.trim_end();
            let (code, _) = parse(Protocol::Smtp, line).expect("core reply parses");
            assert!(
                EN.smtp_codes.iter().any(|(c, _, _)| *c == r.code),
                "no meaning for {}",
                r.code
            );
            if !r.status.is_empty() {
                assert_eq!(
                    code,
                    ReplyCode::Smtp {
                        code: r.code,
                        status: Some(r.status)
                    }
                );
                let detail = r.status.split_once('.').map(|(_, d)| d).unwrap_or("");
                assert!(
                    EN.status_details.iter().any(|(d, _)| *d == detail),
                    "no detail meaning for {}",
                    r.status
                );
            }
        }
    }

    #[test]
    fn parses_and_explains_smtp_lines() {
        let (code, len) =
            parse(Protocol::Smtp, "554 5.7.1 Relay access denied").expect("a reply code");
        assert_eq!(len, "554 5.7.1".len());
        assert_eq!(
            explain(&EN, code),
            "554: transaction failed (for a recipient: relay or policy refusal) (RFC 5321 §4.2.3)\n\
             5.7.1: permanent failure, delivery not authorised, message refused (RFC 3463)"
        );
        // A continuation line of a multi-line EHLO reply, no enhanced code.
        let (code, len) = parse(Protocol::Smtp, "250-PIPELINING").expect("a reply code");
        assert_eq!(
            (code, len),
            (
                ReplyCode::Smtp {
                    code: 250,
                    status: None
                },
                3
            )
        );
        assert_eq!(
            parse(Protocol::Submission, "220"),
            Some((
                ReplyCode::Smtp {
                    code: 220,
                    status: None
                },
                3
            ))
        );
        // A version number in the text is not an enhanced status of another class.
        assert_eq!(
            parse(Protocol::Smtp, "220 1.2.3 hello").map(|(c, _)| c),
            Some(ReplyCode::Smtp {
                code: 220,
                status: None
            })
        );
        assert_eq!(parse(Protocol::Smtp, "25O nope"), None);
        assert_eq!(parse(Protocol::Smtp, "2500 nope"), None);
        assert_eq!(parse(Protocol::Smtp, ""), None);
        // An unknown code still gets its class.
        let (code, _) = parse(Protocol::Smtp, "299 odd").expect("a reply code");
        assert_eq!(
            explain(&EN, code),
            "299: positive completion (RFC 5321 §4.2.1)"
        );
    }

    #[test]
    fn parses_and_explains_pop3_lines() {
        let line = reply::POP3_IN_USE.line();
        let (code, len) = parse(Protocol::Pop3, line.trim_end()).expect("a status line");
        assert_eq!(len, "-ERR [IN-USE]".len());
        assert_eq!(
            code,
            ReplyCode::Pop3 {
                ok: false,
                code: Some(Pop3Code::InUse)
            }
        );
        assert!(explain(&EN, code).contains("RFC 2449 §8.1.1"));
        assert_eq!(
            parse(Protocol::Pop3s, "+OK 2 messages"),
            Some((
                ReplyCode::Pop3 {
                    ok: true,
                    code: None
                },
                3
            ))
        );
        assert_eq!(
            parse(Protocol::Pop3, "-ERR [NOPE] x").map(|(c, _)| c),
            Some(ReplyCode::Pop3 {
                ok: false,
                code: None
            })
        );
        // Multi-line data and SASL continuations carry no code.
        assert_eq!(parse(Protocol::Pop3, "1 120"), None);
        assert_eq!(parse(Protocol::Pop3, "+ "), None);
        for code in POP3_CODES {
            let line = format!("-ERR [{}] x", code.as_str());
            assert_eq!(
                parse(Protocol::Pop3, &line).map(|(c, _)| c),
                Some(ReplyCode::Pop3 {
                    ok: false,
                    code: Some(code)
                })
            );
        }
    }
}
