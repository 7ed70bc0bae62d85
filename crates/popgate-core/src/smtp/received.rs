//! The `Received:` trace header (RFC 5321 §4.4) with the protocol names of RFC 3848
//! and RFC 6531 §3.7.3.

use crate::time::Millis;
use std::net::IpAddr;

/// What one `Received:` header records.
#[derive(Debug)]
pub(crate) struct Stamp<'a> {
    /// The EHLO/HELO argument (printable ASCII, checked by the parser).
    pub helo: &'a str,
    pub peer: IpAddr,
    pub hostname: &'a str,
    pub with: &'static str,
    pub id: &'a str,
    /// The user whose POP-before-SMTP grant relayed this message.
    pub grant_user: Option<&'a str>,
    /// Grants are in `warn` mode for that user: the header says so.
    pub grant_warn: bool,
    /// The user who authenticated with SMTP AUTH, recorded so that abuse can be
    /// traced to an account (the protocol name already says ESMTPA, RFC 3848 §2).
    pub auth_user: Option<&'a str>,
    /// RFC 5321 §4.4: `for` names the recipient only when there is exactly one, so a
    /// Bcc recipient is not disclosed to the others.
    pub single_recipient: Option<&'a str>,
    pub now: Millis,
}

/// What a message relayed on a grant in `warn` mode carries in its `Received:` header
/// comment, so the recipient's side (and a filter) can see the sender has to move to
/// authenticated submission before grants are switched off.
pub const WARN_MARKER: &str = "grant.mode=warn: POP before SMTP is being switched off";

/// RFC 3848 §2 (and RFC 6531 §3.7.3 when SMTPUTF8 is used): the WITH protocol.
pub(crate) fn with_protocol(esmtp: bool, smtputf8: bool, tls: bool, auth: bool) -> &'static str {
    match (esmtp, smtputf8, tls, auth) {
        (false, ..) => "SMTP",
        (true, false, false, false) => "ESMTP",
        (true, false, true, false) => "ESMTPS",
        (true, false, false, true) => "ESMTPA",
        (true, false, true, true) => "ESMTPSA",
        (true, true, false, false) => "UTF8SMTP",
        (true, true, true, false) => "UTF8SMTPS",
        (true, true, false, true) => "UTF8SMTPA",
        (true, true, true, true) => "UTF8SMTPSA",
    }
}

/// The header, folded over several lines, ending in CRLF.
pub(crate) fn received_header(stamp: &Stamp<'_>) -> String {
    // RFC 5321 §4.1.3: an IPv6 address literal carries the "IPv6:" tag.
    let peer = match crate::net::canonical(stamp.peer) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("IPv6:{v6}"),
    };
    let mut header = format!(
        "Received: from {} ([{}])\r\n\tby {} (popgate) with {} id {}",
        stamp.helo, peer, stamp.hostname, stamp.with, stamp.id
    );
    if let Some(user) = stamp.grant_user {
        header.push_str(&format!(
            "\r\n\t(relayed on a POP-before-SMTP grant for {})",
            comment_text(user)
        ));
        // A line of its own keeps the header within RFC 5322 §2.1.1's 78 characters.
        if stamp.grant_warn {
            header.push_str(&format!("\r\n\t({WARN_MARKER})"));
        }
    }
    if let Some(user) = stamp.auth_user {
        header.push_str(&format!("\r\n\t(authenticated as {})", comment_text(user)));
    }
    match stamp.single_recipient {
        Some(rcpt) => header.push_str(&format!("\r\n\tfor <{rcpt}>; ")),
        None => header.push_str(";\r\n\t"),
    }
    header.push_str(&stamp.now.rfc5322());
    header.push_str("\r\n");
    header
}

/// Text safe inside an RFC 5322 comment on one line: no controls, no parentheses or
/// backslashes that would end or escape it.
fn comment_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '(' | ')' | '\\') {
                '?'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    fn stamp<'a>(grant_user: Option<&'a str>, rcpt: Option<&'a str>) -> Stamp<'a> {
        Stamp {
            helo: "client.example",
            peer: "::ffff:192.0.2.7".parse().expect("ip"),
            hostname: "mail.example.test",
            with: "ESMTP",
            id: "A1.7.1",
            grant_user,
            grant_warn: false,
            auth_user: None,
            single_recipient: rcpt,
            now: Millis(1_795_893_491_000),
        }
    }

    #[test]
    fn one_recipient_without_grant() {
        assert_eq!(
            received_header(&stamp(None, Some("bob@example.test"))),
            "Received: from client.example ([192.0.2.7])\r\n\
             \tby mail.example.test (popgate) with ESMTP id A1.7.1\r\n\
             \tfor <bob@example.test>; Sat, 28 Nov 2026 19:18:11 +0000\r\n"
        );
    }

    #[test]
    fn relayed_on_a_grant_to_several_recipients() {
        let mut s = stamp(Some("alice(x)@example.test"), None);
        s.peer = "2001:db8::7".parse().expect("ip");
        assert_eq!(
            received_header(&s),
            "Received: from client.example ([IPv6:2001:db8::7])\r\n\
             \tby mail.example.test (popgate) with ESMTP id A1.7.1\r\n\
             \t(relayed on a POP-before-SMTP grant for alice?x?@example.test);\r\n\
             \tSat, 28 Nov 2026 19:18:11 +0000\r\n"
        );
    }

    #[test]
    fn a_warned_grant_relay_is_marked() {
        let mut s = stamp(Some("alice@example.test"), Some("x@remote.example"));
        s.grant_warn = true;
        assert_eq!(
            received_header(&s),
            "Received: from client.example ([192.0.2.7])\r\n\
             \tby mail.example.test (popgate) with ESMTP id A1.7.1\r\n\
             \t(relayed on a POP-before-SMTP grant for alice@example.test)\r\n\
             \t(grant.mode=warn: POP before SMTP is being switched off)\r\n\
             \tfor <x@remote.example>; Sat, 28 Nov 2026 19:18:11 +0000\r\n"
        );
    }

    #[test]
    fn names_the_authenticated_user() {
        let mut s = stamp(None, Some("x@remote.example"));
        s.with = "ESMTPSA";
        s.auth_user = Some("alice@example.test");
        assert_eq!(
            received_header(&s),
            "Received: from client.example ([192.0.2.7])\r\n\
             \tby mail.example.test (popgate) with ESMTPSA id A1.7.1\r\n\
             \t(authenticated as alice@example.test)\r\n\
             \tfor <x@remote.example>; Sat, 28 Nov 2026 19:18:11 +0000\r\n"
        );
    }

    #[test]
    fn names_the_protocol() {
        assert_eq!(with_protocol(false, false, true, false), "SMTP");
        assert_eq!(with_protocol(true, false, false, false), "ESMTP");
        assert_eq!(with_protocol(true, false, true, true), "ESMTPSA");
        assert_eq!(with_protocol(true, true, true, false), "UTF8SMTPS");
    }
}
