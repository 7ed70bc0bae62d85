//! SMTP commands, paths and MAIL parameters (RFC 5321 §4.1; RFC 1870 SIZE, RFC 6152
//! 8BITMIME, RFC 6531 SMTPUTF8).
//!
//! The parser sees one line without its line ending (the session's `LineReader` strips
//! it) and never decides anything that depends on session state: sequence, limits and
//! whether non-ASCII is allowed are the session's business.

use crate::Secret;
use crate::reply::{self, SmtpReply};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Ehlo(String),
    Helo(String),
    Mail {
        from: ReversePath,
        params: MailParams,
    },
    Rcpt {
        to: ForwardPath,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    /// RFC 3207
    StartTls,
    /// RFC 4954 §4: `AUTH mechanism [initial-response]`, the response kept as a
    /// [`Secret`] (`=` for an empty one is left to the SASL decoder).
    Auth {
        mechanism: String,
        initial: Option<Secret>,
    },
}

/// Why a line is not a valid command; each maps to one reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Unknown verb, a NUL, or not UTF-8: 500 5.5.2.
    Unrecognized,
    /// Arguments that break the command's syntax: 501 5.5.4.
    BadArgument,
    /// A path that breaks RFC 5321 §4.1.2: 501 5.1.3.
    BadAddress,
    /// A MAIL or RCPT parameter (or value) we do not offer: 555 5.5.4.
    UnknownParameter,
}

impl ParseError {
    pub(crate) fn reply(self) -> SmtpReply {
        match self {
            ParseError::Unrecognized => reply::SYNTAX_ERROR,
            ParseError::BadArgument => reply::BAD_ARGUMENT,
            ParseError::BadAddress => reply::BAD_ADDRESS,
            ParseError::UnknownParameter => reply::BAD_PARAMETER,
        }
    }
}

/// RFC 5321 §4.1.2 Reverse-path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReversePath {
    /// `<>`: bounces and other notifications.
    Null,
    Mailbox(Mailbox),
}

impl ReversePath {
    /// The reverse-path as the rest of popgate records it, `""` for `<>`.
    pub(crate) fn address(&self) -> String {
        match self {
            ReversePath::Null => String::new(),
            ReversePath::Mailbox(m) => m.address(),
        }
    }

    pub(crate) fn is_ascii(&self) -> bool {
        match self {
            ReversePath::Null => true,
            ReversePath::Mailbox(m) => m.is_ascii(),
        }
    }
}

/// RFC 5321 §4.1.1.3 Forward-path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ForwardPath {
    /// `<Postmaster>` without a domain (case-insensitive).
    Postmaster,
    Mailbox(Mailbox),
}

/// `local@domain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mailbox {
    /// As the client wrote it, quotes included: it is preserved when relaying.
    pub local: String,
    pub domain: Domain,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Domain {
    /// Lowercased: domains compare case-insensitively.
    Name(String),
    /// An address literal as written, brackets included, e.g. `[IPv6:2001:db8::1]`.
    Literal(String),
}

impl Mailbox {
    pub(crate) fn address(&self) -> String {
        match &self.domain {
            Domain::Name(d) | Domain::Literal(d) => format!("{}@{}", self.local, d),
        }
    }

    pub(crate) fn is_ascii(&self) -> bool {
        self.address().is_ascii()
    }

    /// The local part's meaning: quotes and quoted-pair backslashes removed.
    pub(crate) fn unquoted_local(&self) -> String {
        match self
            .local
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
        {
            None => self.local.clone(),
            Some(inner) => {
                let mut out = String::with_capacity(inner.len());
                let mut escaped = false;
                for c in inner.chars() {
                    if c == '\\' && !escaped {
                        escaped = true;
                    } else {
                        out.push(c);
                        escaped = false;
                    }
                }
                out
            }
        }
    }
}

/// MAIL parameters we offer (RFC 5321 §4.1.1.11 esmtp-param).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MailParams {
    /// RFC 1870: the size the client declares (saturated at `u64::MAX`).
    pub size: Option<u64>,
    /// RFC 6531 §3.4: the transaction may carry non-ASCII addresses and headers.
    pub smtputf8: bool,
    /// Any parameter at all was given (they need EHLO, RFC 5321 §4.1.1.11).
    pub any: bool,
}

/// Parse one command line (without CRLF). Verbs are case-insensitive (RFC 5321
/// §2.4); trailing spaces and tabs are ignored.
pub(crate) fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    if line.contains(&0) {
        return Err(ParseError::Unrecognized);
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::Unrecognized)?;
    let line = line.trim_end_matches([' ', '\t']);
    let (verb, args) = line.split_once(' ').unwrap_or((line, ""));
    let args = args.trim_start_matches(' ');
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" => Ok(Command::Ehlo(client_name(args)?)),
        "HELO" => Ok(Command::Helo(client_name(args)?)),
        "MAIL" => parse_mail(args),
        "RCPT" => parse_rcpt(args),
        "DATA" => no_arguments(args, Command::Data),
        "RSET" => no_arguments(args, Command::Rset),
        "QUIT" => no_arguments(args, Command::Quit),
        // RFC 5321 §4.1.1.9 and §4.1.1.8: NOOP and HELP take an optional string.
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        // RFC 5321 §4.1.1.6, §4.1.1.7: VRFY and EXPN need a string.
        "VRFY" => with_argument(args, Command::Vrfy),
        "EXPN" => with_argument(args, Command::Expn),
        "STARTTLS" => no_arguments(args, Command::StartTls),
        "AUTH" => parse_auth(args),
        _ => Err(ParseError::Unrecognized),
    }
}

fn no_arguments(args: &str, command: Command) -> Result<Command, ParseError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(ParseError::BadArgument)
    }
}

fn with_argument(args: &str, command: Command) -> Result<Command, ParseError> {
    if args.is_empty() {
        Err(ParseError::BadArgument)
    } else {
        Ok(command)
    }
}

/// RFC 4954 §4: `AUTH SP sasl-mech [SP initial-response]`; the mechanism is checked
/// by the session, which knows what it offers.
fn parse_auth(args: &str) -> Result<Command, ParseError> {
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    match (words.next(), words.next(), words.next()) {
        (Some(mechanism), initial, None) => Ok(Command::Auth {
            mechanism: mechanism.to_owned(),
            initial: initial.map(Secret::new),
        }),
        _ => Err(ParseError::BadArgument),
    }
}

/// RFC 5321 §4.1.1.1: `EHLO SP ( Domain / address-literal )`. Not checked further
/// (many clients send a bare or made-up name), but it must be one printable ASCII
/// token, because it is copied into the `Received:` header.
fn client_name(args: &str) -> Result<String, ParseError> {
    if !args.is_empty() && args.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(args.to_owned())
    } else {
        Err(ParseError::BadArgument)
    }
}

/// `MAIL FROM:<reverse-path> [SP params]` (RFC 5321 §4.1.1.2). A space after the
/// colon is tolerated, as most servers do.
fn parse_mail(args: &str) -> Result<Command, ParseError> {
    let rest = strip_keyword(args, "FROM:").ok_or(ParseError::BadArgument)?;
    let (path, rest) = parse_path(rest.trim_start_matches(' '))?;
    let from = match path {
        Path::Null => ReversePath::Null,
        Path::Mailbox(m) => ReversePath::Mailbox(m),
        // `<postmaster>` alone is only a forward-path.
        Path::Postmaster => return Err(ParseError::BadAddress),
    };
    let params = parse_mail_params(rest)?;
    Ok(Command::Mail { from, params })
}

/// `RCPT TO:<forward-path> [SP params]` (RFC 5321 §4.1.1.3). We offer no RCPT
/// parameters (no DSN), so any parameter is 555.
fn parse_rcpt(args: &str) -> Result<Command, ParseError> {
    let rest = strip_keyword(args, "TO:").ok_or(ParseError::BadArgument)?;
    let (path, rest) = parse_path(rest.trim_start_matches(' '))?;
    let to = match path {
        Path::Null => return Err(ParseError::BadAddress),
        Path::Postmaster => ForwardPath::Postmaster,
        Path::Mailbox(m) => ForwardPath::Mailbox(m),
    };
    let params = params_text(rest)?;
    if params.split(' ').any(|p| !p.is_empty()) {
        return Err(ParseError::UnknownParameter);
    }
    Ok(Command::Rcpt { to })
}

fn strip_keyword<'a>(s: &'a str, keyword: &str) -> Option<&'a str> {
    let head = s.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| &s[keyword.len()..])
}

/// What follows the path: nothing, or parameters after a space.
fn params_text(rest: &str) -> Result<&str, ParseError> {
    if rest.is_empty() || rest.starts_with(' ') {
        Ok(rest)
    } else {
        Err(ParseError::BadArgument)
    }
}

fn parse_mail_params(rest: &str) -> Result<MailParams, ParseError> {
    let mut params = MailParams::default();
    let mut body_seen = false;
    for param in params_text(rest)?.split(' ').filter(|p| !p.is_empty()) {
        params.any = true;
        let (keyword, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        // RFC 5321 §4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
        let keyword_ok = keyword
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && keyword
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !keyword_ok {
            return Err(ParseError::BadArgument);
        }
        match keyword.to_ascii_uppercase().as_str() {
            // RFC 1870 §6: SIZE=1*20DIGIT.
            "SIZE" => {
                let value = value.ok_or(ParseError::BadArgument)?;
                if params.size.is_some()
                    || value.is_empty()
                    || value.len() > 20
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(ParseError::BadArgument);
                }
                // 20 digits may exceed u64: it is over any limit anyway.
                params.size = Some(value.parse().unwrap_or(u64::MAX));
            }
            // RFC 6152: BODY=7BIT or 8BITMIME. We store bodies as received, so the
            // declared type changes nothing; BINARYMIME (RFC 3030) is not offered.
            "BODY" => {
                let value = value.ok_or(ParseError::BadArgument)?;
                if body_seen {
                    return Err(ParseError::BadArgument);
                }
                body_seen = true;
                if !(value.eq_ignore_ascii_case("7BIT") || value.eq_ignore_ascii_case("8BITMIME")) {
                    return Err(ParseError::UnknownParameter);
                }
            }
            // RFC 6531 §3.4: SMTPUTF8 takes no value.
            "SMTPUTF8" => {
                if value.is_some() || params.smtputf8 {
                    return Err(ParseError::BadArgument);
                }
                params.smtputf8 = true;
            }
            // RFC 4954 §5: AUTH=<xtext mailbox or "<>">. We are not a trusted relay
            // for the client's claim, so the value is checked for presence and
            // otherwise ignored (never passed on).
            "AUTH" => {
                if value.is_none_or(str::is_empty) {
                    return Err(ParseError::BadArgument);
                }
            }
            _ => return Err(ParseError::UnknownParameter),
        }
    }
    Ok(params)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Path {
    Null,
    Postmaster,
    Mailbox(Mailbox),
}

/// RFC 5321 §4.1.2 `Path = "<" [ A-d-l ":" ] Mailbox ">"`, `<>` and `<postmaster>`,
/// with RFC 6531's UTF-8 in atoms, quoted strings and domains. Returns the path and
/// what follows its `>`.
fn parse_path(s: &str) -> Result<(Path, &str), ParseError> {
    let b = s.as_bytes();
    if b.first() != Some(&b'<') {
        return Err(ParseError::BadAddress);
    }
    let mut i = 1;
    // RFC 5321 §4.1.1.3 and Appendix C: a source route is accepted and ignored.
    let routed = b.get(i) == Some(&b'@');
    if routed {
        loop {
            let start = i + 1;
            let end = start
                + b[start..]
                    .iter()
                    .position(|&c| c == b',' || c == b':')
                    .ok_or(ParseError::BadAddress)?;
            parse_domain(&s[start..end])?;
            i = end + 1;
            if b[end] == b':' {
                break;
            }
            if b.get(i) != Some(&b'@') {
                return Err(ParseError::BadAddress);
            }
        }
    }
    if b.get(i) == Some(&b'>') && !routed {
        return Ok((Path::Null, &s[i + 1..]));
    }
    let local_start = i;
    if b.get(i) == Some(&b'"') {
        // RFC 5321 §4.1.2 Quoted-string: qtextSMTP and quoted-pairSMTP.
        i += 1;
        loop {
            match b.get(i) {
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(b'\\') if b.get(i + 1).is_some_and(|c| (32..=126).contains(c)) => i += 2,
                Some(&c) if c == b' ' || c == b'!' || ((35..=126).contains(&c) && c != b'\\') => {
                    i += 1
                }
                Some(&c) if c >= 0x80 => i += 1,
                _ => return Err(ParseError::BadAddress),
            }
        }
    } else {
        // RFC 5321 Dot-string, except that empty atoms ("a..b", "a.") are accepted and
        // kept as written: such addresses exist (legacy Japanese mobile carriers gave
        // them out), and Postfix and Sendmail accept them too.
        while b.get(i).is_some_and(|&c| is_atext(c) || c == b'.') {
            i += 1;
        }
        if !b[local_start..i].iter().any(|&c| is_atext(c)) {
            return Err(ParseError::BadAddress);
        }
    }
    let local = &s[local_start..i];
    match b.get(i) {
        // RFC 5321 §4.1.1.3: `<Postmaster>` without a domain, case-insensitive.
        Some(b'>') if !routed && local.eq_ignore_ascii_case("postmaster") => {
            return Ok((Path::Postmaster, &s[i + 1..]));
        }
        Some(b'@') => {}
        _ => return Err(ParseError::BadAddress),
    }
    let domain_start = i + 1;
    let domain_end = domain_start
        + b[domain_start..]
            .iter()
            .position(|&c| c == b'>')
            .ok_or(ParseError::BadAddress)?;
    let domain = parse_domain(&s[domain_start..domain_end])?;
    Ok((
        Path::Mailbox(Mailbox {
            local: local.to_owned(),
            domain,
        }),
        &s[domain_end + 1..],
    ))
}

/// RFC 5322 §3.2.3 atext, plus UTF8-non-ascii (RFC 6531 §3.3).
fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c) || c >= 0x80
}

/// RFC 5321 §4.1.2 `Domain / address-literal`; RFC 1035 lengths (labels of at most
/// 63 octets, names of at most 255). One trailing dot (the absolute form,
/// `example.test.`) is the same domain and is dropped, so it cannot make a local
/// domain look remote or the other way round.
fn parse_domain(s: &str) -> Result<Domain, ParseError> {
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(ParseError::BadAddress)?;
        // RFC 5321 §4.1.3: IPv4 literals bare, IPv6 ones tagged; no general literals.
        let valid = match strip_keyword(inner, "IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => inner.parse::<std::net::Ipv4Addr>().is_ok(),
        };
        return if valid {
            Ok(Domain::Literal(s.to_owned()))
        } else {
            Err(ParseError::BadAddress)
        };
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s.len() > 255 {
        return Err(ParseError::BadAddress);
    }
    for label in s.split('.') {
        // sub-domain = Let-dig [Ldh-str], and U-labels under RFC 6531.
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c >= 0x80);
        if !ok {
            return Err(ParseError::BadAddress);
        }
    }
    Ok(Domain::Name(s.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::{Line, LineReader};
    use crate::testing::test;

    use Command as C;
    use ParseError as E;

    fn mailbox(local: &str, domain: &str) -> Mailbox {
        Mailbox {
            local: local.into(),
            domain: if domain.starts_with('[') {
                Domain::Literal(domain.into())
            } else {
                Domain::Name(domain.into())
            },
        }
    }

    fn mail(local: &str, domain: &str, params: MailParams) -> Command {
        C::Mail {
            from: ReversePath::Mailbox(mailbox(local, domain)),
            params,
        }
    }

    fn rcpt(local: &str, domain: &str) -> Command {
        C::Rcpt {
            to: ForwardPath::Mailbox(mailbox(local, domain)),
        }
    }

    fn auth(mechanism: &str, initial: Option<&str>) -> Command {
        C::Auth {
            mechanism: mechanism.into(),
            initial: initial.map(Secret::new),
        }
    }

    fn params(size: Option<u64>, smtputf8: bool) -> MailParams {
        MailParams {
            size,
            smtputf8,
            any: true,
        }
    }

    /// Each case also runs with a bare LF ending and with trailing spaces, through the
    /// same line reader the session uses.
    fn check(cases: &[(&str, Result<Command, ParseError>)]) {
        for (line, expected) in cases {
            for ending in ["\r\n", "\n", " \r\n", "  \t\n"] {
                let mut reader = LineReader::new(512);
                reader.push(format!("{line}{ending}").as_bytes());
                let Some(Line::Complete(bytes)) = reader.next_line() else {
                    panic!("no line from {line:?}");
                };
                assert_eq!(
                    &parse_command(&bytes),
                    expected,
                    "{line:?} ending {ending:?}"
                );
            }
        }
    }

    #[test]
    fn simple_commands() {
        check(&[
            ("EHLO client.example", Ok(C::Ehlo("client.example".into()))),
            ("ehlo [192.0.2.7]", Ok(C::Ehlo("[192.0.2.7]".into()))),
            ("HELO client", Ok(C::Helo("client".into()))),
            ("EHLO", Err(E::BadArgument)),
            ("EHLO two words", Err(E::BadArgument)),
            ("HELO h\u{e9}", Err(E::BadArgument)),
            ("DATA", Ok(C::Data)),
            ("data", Ok(C::Data)),
            ("DATA now", Err(E::BadArgument)),
            ("RSET", Ok(C::Rset)),
            ("rSeT x", Err(E::BadArgument)),
            ("QUIT", Ok(C::Quit)),
            ("NOOP", Ok(C::Noop)),
            ("NOOP anything", Ok(C::Noop)),
            ("HELP", Ok(C::Help)),
            ("HELP MAIL", Ok(C::Help)),
            ("VRFY alice", Ok(C::Vrfy)),
            ("VRFY", Err(E::BadArgument)),
            ("EXPN list", Ok(C::Expn)),
            ("STARTTLS", Ok(C::StartTls)),
            ("STARTTLS now", Err(E::BadArgument)),
            (
                "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
                Ok(auth("PLAIN", Some("AGFsaWNlAHNlY3JldA=="))),
            ),
            ("auth login", Ok(auth("login", None))),
            ("AUTH PLAIN =", Ok(auth("PLAIN", Some("=")))),
            ("AUTH  CRAM-MD5", Ok(auth("CRAM-MD5", None))),
            ("AUTH PLAIN a b", Err(E::BadArgument)),
            ("AUTH", Err(E::BadArgument)),
            ("BDAT 10 LAST", Err(E::Unrecognized)),
            ("", Err(E::Unrecognized)),
            (" NOOP", Err(E::Unrecognized)),
            ("MAILFROM:<a@b.example>", Err(E::Unrecognized)),
            ("GET / HTTP/1.1", Err(E::Unrecognized)),
        ]);
    }

    #[test]
    fn mail_from() {
        let none = MailParams::default();
        check(&[
            (
                "MAIL FROM:<alice@example.test>",
                Ok(mail("alice", "example.test", none.clone())),
            ),
            (
                "mail from:<Alice@EXAMPLE.Test>",
                Ok(mail("Alice", "example.test", none.clone())),
            ),
            (
                "MAIL FROM: <alice@example.test>",
                Ok(mail("alice", "example.test", none.clone())),
            ),
            (
                "MAIL FROM:<>",
                Ok(C::Mail {
                    from: ReversePath::Null,
                    params: none.clone(),
                }),
            ),
            (
                "MAIL FROM:<> SIZE=1000",
                Ok(C::Mail {
                    from: ReversePath::Null,
                    params: params(Some(1000), false),
                }),
            ),
            (
                "MAIL FROM:<a@b.example> SIZE=12 BODY=8BITMIME SMTPUTF8",
                Ok(mail("a", "b.example", params(Some(12), true))),
            ),
            (
                "MAIL FROM:<a@b.example> body=7bit",
                Ok(mail("a", "b.example", params(None, false))),
            ),
            (
                "MAIL FROM:<a@b.example> SIZE=99999999999999999999",
                Ok(mail("a", "b.example", params(Some(u64::MAX), false))),
            ),
            (
                "MAIL FROM:<@relay.example,@r2.example:a@b.example>",
                Ok(mail("a", "b.example", none.clone())),
            ),
            (
                "MAIL FROM:<\u{7530}\u{4e2d}@\u{4f8b}\u{3048}.jp> SMTPUTF8",
                Ok(mail(
                    "\u{7530}\u{4e2d}",
                    "\u{4f8b}\u{3048}.jp",
                    params(None, true),
                )),
            ),
            ("MAIL FROM:a@b.example", Err(E::BadAddress)),
            ("MAIL FROM <a@b.example>", Err(E::BadArgument)),
            ("MAIL TO:<a@b.example>", Err(E::BadArgument)),
            ("MAIL", Err(E::BadArgument)),
            ("MAIL FROM:<a@b.example>SIZE=1", Err(E::BadArgument)),
            ("MAIL FROM:<postmaster>", Err(E::BadAddress)),
            ("MAIL FROM:<a@b.example> SIZE=", Err(E::BadArgument)),
            ("MAIL FROM:<a@b.example> SIZE=12x", Err(E::BadArgument)),
            ("MAIL FROM:<a@b.example> SIZE", Err(E::BadArgument)),
            ("MAIL FROM:<a@b.example> SIZE=1 SIZE=2", Err(E::BadArgument)),
            ("MAIL FROM:<a@b.example> SMTPUTF8=yes", Err(E::BadArgument)),
            (
                "MAIL FROM:<a@b.example> BODY=BINARYMIME",
                Err(E::UnknownParameter),
            ),
            ("MAIL FROM:<a@b.example> RET=HDRS", Err(E::UnknownParameter)),
            (
                "MAIL FROM:<a@b.example> AUTH=<>",
                Ok(mail("a", "b.example", params(None, false))),
            ),
            ("MAIL FROM:<a@b.example> AUTH=", Err(E::BadArgument)),
            ("MAIL FROM:<a@b.example> AUTH", Err(E::BadArgument)),
            ("MAIL FROM:<a@b.example> =x", Err(E::BadArgument)),
        ]);
    }

    #[test]
    fn rcpt_to_and_addresses() {
        check(&[
            (
                "RCPT TO:<bob@example.test>",
                Ok(rcpt("bob", "example.test")),
            ),
            (
                "rcpt to:<Bob@Example.TEST>",
                Ok(rcpt("Bob", "example.test")),
            ),
            (
                "RCPT TO: <bob@example.test>",
                Ok(rcpt("bob", "example.test")),
            ),
            (
                "RCPT TO:<postmaster>",
                Ok(C::Rcpt {
                    to: ForwardPath::Postmaster,
                }),
            ),
            (
                "RCPT TO:<PostMaster>",
                Ok(C::Rcpt {
                    to: ForwardPath::Postmaster,
                }),
            ),
            (
                "RCPT TO:<postmaster@example.test>",
                Ok(rcpt("postmaster", "example.test")),
            ),
            (
                "RCPT TO:<\"john doe\"@example.test>",
                Ok(rcpt("\"john doe\"", "example.test")),
            ),
            (
                "RCPT TO:<\"a>b\\\"c\"@example.test>",
                Ok(rcpt("\"a>b\\\"c\"", "example.test")),
            ),
            (
                "RCPT TO:<first.last+tag@sub.example.test>",
                Ok(rcpt("first.last+tag", "sub.example.test")),
            ),
            (
                "RCPT TO:<a..b@docomo.example>",
                Ok(rcpt("a..b", "docomo.example")),
            ),
            (
                "RCPT TO:<user@[192.0.2.1]>",
                Ok(rcpt("user", "[192.0.2.1]")),
            ),
            (
                "RCPT TO:<user@[IPv6:2001:db8::1]>",
                Ok(rcpt("user", "[IPv6:2001:db8::1]")),
            ),
            (
                "RCPT TO:<a@xn--r8jz45g.jp>",
                Ok(rcpt("a", "xn--r8jz45g.jp")),
            ),
            ("RCPT TO:<>", Err(E::BadAddress)),
            (
                "RCPT TO:<Bob@EXAMPLE.TEST.>",
                Ok(rcpt("Bob", "example.test")),
            ),
            ("RCPT TO:<bob@example.test..>", Err(E::BadAddress)),
            ("RCPT TO:<bob@.>", Err(E::BadAddress)),
            (
                "RCPT TO:<@a.example.,@b.example:bob@example.test.>",
                Ok(rcpt("bob", "example.test")),
            ),
            (
                "RCPT TO:<user%victim.example@example.test>",
                Ok(rcpt("user%victim.example", "example.test")),
            ),
            (
                "RCPT TO:<victim.example!user@example.test>",
                Ok(rcpt("victim.example!user", "example.test")),
            ),
            (
                "RCPT TO:<\"user@victim.example\"@example.test>",
                Ok(rcpt("\"user@victim.example\"", "example.test")),
            ),
            (
                "RCPT TO:<user@victim.example@example.test>",
                Err(E::BadAddress),
            ),
            ("RCPT TO:<\"user@victim.example\">", Err(E::BadAddress)),
            ("RCPT TO:<victim.example!user>", Err(E::BadAddress)),
            ("RCPT TO:<bob@example..test>", Err(E::BadAddress)),
            ("RCPT TO:<bob@-example.test>", Err(E::BadAddress)),
            ("RCPT TO:<bob@exa_mple.test>", Err(E::BadAddress)),
            ("RCPT TO:<bob@>", Err(E::BadAddress)),
            ("RCPT TO:<@example.test>", Err(E::BadAddress)),
            ("RCPT TO:<bob>", Err(E::BadAddress)),
            ("RCPT TO:<bob@example.test", Err(E::BadAddress)),
            ("RCPT TO:<b ob@example.test>", Err(E::BadAddress)),
            ("RCPT TO:<\"unterminated@example.test>", Err(E::BadAddress)),
            ("RCPT TO:<user@[192.0.2.300]>", Err(E::BadAddress)),
            ("RCPT TO:<user@[2001:db8::1]>", Err(E::BadAddress)),
            ("RCPT TO:<user@[x-tag:stuff]>", Err(E::BadAddress)),
            (
                "RCPT TO:<a@b.example> NOTIFY=NEVER",
                Err(E::UnknownParameter),
            ),
            ("RCPT TO:<a@b.example>x", Err(E::BadArgument)),
            ("RCPT FROM:<a@b.example>", Err(E::BadArgument)),
            ("RCPT", Err(E::BadArgument)),
        ]);
        let long_label = format!("RCPT TO:<a@{}.example>", "x".repeat(64));
        assert_eq!(
            parse_command(long_label.as_bytes()),
            Err(E::BadAddress),
            "labels are at most 63 octets"
        );
    }

    #[test]
    fn nul_and_invalid_utf8_are_unrecognized() {
        assert_eq!(parse_command(b"NOOP\0"), Err(E::Unrecognized));
        assert_eq!(
            parse_command(b"RCPT TO:<\xff@example.test>"),
            Err(E::Unrecognized)
        );
    }

    #[test]
    fn unquotes_local_parts() {
        let m = mailbox("\"Post\\master\"", "example.test");
        assert_eq!(m.unquoted_local(), "Postmaster");
        assert_eq!(mailbox("bob", "x.example").unquoted_local(), "bob");
        assert!(!mailbox("\u{7530}", "x.example").is_ascii());
    }
}
