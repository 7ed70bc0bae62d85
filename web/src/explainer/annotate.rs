//! What each protocol line means, and the RFC section that defines it.
//!
//! One table here maps a key (`"pop3 PASS"`, `"smtp 554 5.7.1"`, `"smtp ext AUTH"`) to
//! its RFC section, which is the same in every language; each language's [`Strings`]
//! holds the meaning under the same key (`ann`). A line is looked up from the most
//! specific key to the least: a reply with its command (`+OK` after `PASS` is the
//! moment the grant exists), the reply code with its enhanced status, the code alone,
//! and finally the general reply-code tables of [`crate::codes`].
//!
//! A [`LineContext`] per connection remembers what the reader cannot see in one line:
//! the last command (what a reply answers), whether message content is being sent
//! (after `354`), whether a POP3 multi-line response is running, and whether the next
//! server line is the greeting.

use crate::codes;
use crate::i18n::Strings;
use popgate_core::Protocol;

/// Key → RFC section. Every key has a meaning in every language (see the tests).
pub const RFCS: &[(&str, &str)] = &[
    ("pop3 USER", "RFC 1939 §7"),
    ("pop3 PASS", "RFC 1939 §7"),
    ("pop3 APOP", "RFC 1939 §7"),
    ("pop3 AUTH", "RFC 5034 §4"),
    ("pop3 STAT", "RFC 1939 §5"),
    ("pop3 LIST", "RFC 1939 §5"),
    ("pop3 RETR", "RFC 1939 §5"),
    ("pop3 TOP", "RFC 1939 §7"),
    ("pop3 UIDL", "RFC 1939 §7"),
    ("pop3 DELE", "RFC 1939 §5"),
    ("pop3 NOOP", "RFC 1939 §5"),
    ("pop3 RSET", "RFC 1939 §5"),
    ("pop3 QUIT", "RFC 1939 §6"),
    ("pop3 CAPA", "RFC 2449 §5"),
    ("pop3 STLS", "RFC 2595 §4"),
    ("pop3 greeting", "RFC 1939 §4"),
    ("pop3 +OK USER", "RFC 1939 §7"),
    ("pop3 +OK PASS", "RFC 1939 §7"),
    ("pop3 -ERR PASS", "RFC 1939 §7, RFC 3206 §4"),
    ("pop3 +OK QUIT", "RFC 1939 §6"),
    ("pop3 +OK STLS", "RFC 2595 §4"),
    ("pop3 +OK", "RFC 1939 §3"),
    ("pop3 -ERR", "RFC 1939 §3"),
    ("pop3 data", "RFC 1939 §3"),
    ("smtp EHLO", "RFC 5321 §4.1.1.1"),
    ("smtp HELO", "RFC 5321 §4.1.1.1"),
    ("smtp MAIL", "RFC 5321 §4.1.1.2"),
    ("smtp RCPT", "RFC 5321 §4.1.1.3"),
    ("smtp DATA", "RFC 5321 §4.1.1.4"),
    ("smtp .", "RFC 5321 §4.1.1.4"),
    ("smtp data", "RFC 5322 §2.1"),
    ("smtp RSET", "RFC 5321 §4.1.1.5"),
    ("smtp VRFY", "RFC 5321 §4.1.1.6"),
    ("smtp NOOP", "RFC 5321 §4.1.1.9"),
    ("smtp QUIT", "RFC 5321 §4.1.1.10"),
    ("smtp HELP", "RFC 5321 §4.1.1.8"),
    ("smtp STARTTLS", "RFC 3207 §4"),
    ("smtp AUTH", "RFC 4954 §4"),
    ("smtp AUTH PLAIN", "RFC 4954 §4, RFC 4616 §2"),
    ("smtp sasl", "RFC 4954 §4"),
    ("smtp 220", "RFC 5321 §4.2"),
    ("smtp 220 STARTTLS", "RFC 3207 §4"),
    ("smtp 250 EHLO", "RFC 5321 §4.1.1.1"),
    ("smtp ext PIPELINING", "RFC 2920"),
    ("smtp ext SIZE", "RFC 1870"),
    ("smtp ext 8BITMIME", "RFC 6152"),
    ("smtp ext ENHANCEDSTATUSCODES", "RFC 2034"),
    ("smtp ext STARTTLS", "RFC 3207"),
    ("smtp ext AUTH", "RFC 4954 §3"),
    ("smtp ext SMTPUTF8", "RFC 6531"),
    ("smtp ext HELP", "RFC 5321 §4.1.1.8"),
    ("smtp 250 MAIL", "RFC 5321 §4.1.1.2"),
    ("smtp 250 RCPT", "RFC 5321 §4.1.1.3"),
    ("smtp 250 .", "RFC 5321 §4.1.1.4"),
    ("smtp 250", "RFC 5321 §4.2.3"),
    ("smtp 354", "RFC 5321 §4.1.1.4"),
    ("smtp 221", "RFC 5321 §4.1.1.10"),
    ("smtp 235", "RFC 4954 §6"),
    ("smtp 334", "RFC 4954 §4"),
    ("smtp 530", "RFC 4954 §6"),
    ("smtp 535", "RFC 4954 §6"),
    ("smtp 538", "RFC 4954 §6"),
    ("smtp 554 5.7.1", "RFC 5321 §3.6.2, RFC 3463 §3.8"),
    ("smtp 550 5.1.1", "RFC 5321 §4.2.2, RFC 3463 §3.2"),
    ("smtp 503", "RFC 5321 §4.3.2"),
];

/// One line explained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotation {
    /// The table key that matched (stable, for test hooks); `"code"` for the general
    /// reply-code explanation.
    pub key: &'static str,
    pub meaning: String,
    /// Where the rule is defined (empty when the meaning already names it).
    pub rfc: &'static str,
}

fn entry(s: &Strings, key: &str) -> Option<Annotation> {
    let (key, rfc) = RFCS.iter().find(|(k, _)| *k == key)?;
    let (_, meaning) = s.ann.iter().find(|(k, _)| k == key)?;
    Some(Annotation {
        key,
        meaning: (*meaning).to_owned(),
        rfc,
    })
}

/// The first key of `keys` that has an entry.
fn first(s: &Strings, keys: &[&str]) -> Option<Annotation> {
    keys.iter().find_map(|k| entry(s, k))
}

/// What one connection has said so far, as far as the meaning of the next line
/// depends on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineContext {
    /// The last command's verb, upper case (what the next reply answers).
    verb: Option<String>,
    /// SMTP: message content is being sent (after 354, until the lone dot).
    in_data: bool,
    /// SMTP: a SASL exchange is running (after 334).
    in_sasl: bool,
    /// POP3: a multi-line response is running (until the lone dot).
    multiline: bool,
    /// POP3: a server line has been seen (the first one is the greeting).
    greeted: bool,
}

/// POP3 commands whose `+OK` starts a multi-line response (RFC 1939 §5, §7; RFC 2449
/// §5): LIST and UIDL only without an argument.
fn pop3_multiline(verb: &str, has_arg: bool) -> bool {
    match verb {
        "RETR" | "TOP" | "CAPA" => true,
        "LIST" | "UIDL" => !has_arg,
        _ => false,
    }
}

impl LineContext {
    /// Explains `text` (one line without its CRLF) and remembers what it changes.
    pub fn annotate(
        &mut self,
        s: &Strings,
        protocol: Protocol,
        from_client: bool,
        text: &str,
    ) -> Option<Annotation> {
        match (protocol.is_pop3(), from_client) {
            (true, true) => self.pop3_client(s, text),
            (true, false) => self.pop3_server(s, text),
            (false, true) => self.smtp_client(s, text),
            (false, false) => self.smtp_server(s, protocol, text),
        }
    }

    fn command(&mut self, text: &str) -> (String, bool) {
        let mut words = text.split_whitespace();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let has_arg = words.next().is_some();
        self.verb = Some(verb.clone());
        (verb, has_arg)
    }

    fn pop3_client(&mut self, s: &Strings, text: &str) -> Option<Annotation> {
        let (verb, has_arg) = self.command(text);
        // Remembered for the reply: does it start a multi-line response?
        self.multiline = pop3_multiline(&verb, has_arg);
        entry(s, &format!("pop3 {verb}"))
    }

    fn pop3_server(&mut self, s: &Strings, text: &str) -> Option<Annotation> {
        if !std::mem::replace(&mut self.greeted, true) {
            self.multiline = false;
            return entry(s, "pop3 greeting");
        }
        let status = if text.starts_with("+OK") {
            Some("+OK")
        } else if text.starts_with("-ERR") {
            Some("-ERR")
        } else {
            None
        };
        match status {
            // RFC 1939 §3: a multi-line response ends with a line of one dot; until then
            // even a line that starts like a status is data.
            _ if self.multiline && self.verb.is_none() => {
                if text == "." {
                    self.multiline = false;
                }
                entry(s, "pop3 data")
            }
            Some(status) => {
                let verb = self.verb.take().unwrap_or_default();
                // The multi-line body follows only a positive answer.
                self.multiline = self.multiline && status == "+OK";
                // APOP and a completed AUTH log in like PASS does.
                let verb = match verb.as_str() {
                    "APOP" | "AUTH" => "PASS",
                    v => v,
                };
                let specific = first(
                    s,
                    &[&format!("pop3 {status} {verb}"), &format!("pop3 {status}")],
                )?;
                // A response code ([IN-USE], [AUTH]...) says more than the status.
                Some(match codes::parse(Protocol::Pop3, text) {
                    Some((code @ codes::ReplyCode::Pop3 { code: Some(_), .. }, _)) => Annotation {
                        meaning: format!("{}\n{}", specific.meaning, codes::explain(s, code)),
                        ..specific
                    },
                    _ => specific,
                })
            }
            // A SASL continuation (`+ ...`) or data with no command pending.
            None => entry(s, "pop3 data"),
        }
    }

    fn smtp_client(&mut self, s: &Strings, text: &str) -> Option<Annotation> {
        if self.in_data {
            // RFC 5321 §4.1.1.4: only a line of one dot ends the content.
            if text == "." {
                self.in_data = false;
                self.verb = Some(".".to_owned());
                return entry(s, "smtp .");
            }
            return entry(s, "smtp data");
        }
        if self.in_sasl {
            self.verb = Some("AUTH".to_owned());
            return entry(s, "smtp sasl");
        }
        let (verb, _) = self.command(text);
        if verb == "AUTH" {
            let mechanism = text
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_ascii_uppercase();
            return first(s, &[&format!("smtp AUTH {mechanism}"), "smtp AUTH"]);
        }
        entry(s, &format!("smtp {verb}"))
    }

    fn smtp_server(&mut self, s: &Strings, protocol: Protocol, text: &str) -> Option<Annotation> {
        let (code, _) = codes::parse(protocol, text)?;
        let codes::ReplyCode::Smtp { code, status } = code else {
            return None;
        };
        // RFC 5321 §4.2.1: `250-` continues a multi-line reply.
        let last_line = text.as_bytes().get(3) != Some(&b'-');
        let verb = self.verb.clone().unwrap_or_default();
        match verb.as_str() {
            // After the first line of the EHLO reply, each line names one extension
            // (RFC 5321 §4.1.1.1).
            EHLO_EXTENSIONS => {
                if last_line {
                    self.verb = None;
                }
                let keyword = text.get(4..).unwrap_or("").split_whitespace().next();
                let keyword = keyword.unwrap_or("").to_ascii_uppercase();
                return first(s, &[&format!("smtp ext {keyword}"), "smtp 250"]);
            }
            "EHLO" if code == 250 => {
                self.verb = (!last_line).then(|| EHLO_EXTENSIONS.to_owned());
                return entry(s, "smtp 250 EHLO");
            }
            _ => {}
        }
        match code {
            354 => self.in_data = true,
            334 => self.in_sasl = true,
            _ if last_line => self.in_sasl = false,
            _ => {}
        }
        if last_line {
            self.verb = None;
        }
        let mut keys: Vec<String> = Vec::new();
        if let Some(status) = status {
            keys.push(format!("smtp {code} {status}"));
        }
        keys.push(format!("smtp {code} {verb}"));
        keys.push(format!("smtp {code}"));
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        first(s, &keys).or_else(|| {
            // Not in the explainer's table: the general reply-code explanation, which
            // names its RFC itself.
            Some(Annotation {
                key: "code",
                meaning: codes::explain(s, codes::ReplyCode::Smtp { code, status }),
                rfc: "",
            })
        })
    }
}

/// The pending "verb" while the lines after the first of an EHLO reply arrive.
const EHLO_EXTENSIONS: &str = "EHLO+";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::{EN, JA, Lang};

    fn run(
        lang: Lang,
        protocol: Protocol,
        lines: &[&str],
    ) -> Vec<Option<(&'static str, &'static str)>> {
        let mut cx = LineContext::default();
        lines
            .iter()
            .map(|l| {
                let (from_client, text) = match l.split_once(": ") {
                    Some(("C", t)) => (true, t),
                    Some(("S", t)) => (false, t),
                    _ => panic!("test lines start with C: or S:"),
                };
                cx.annotate(lang.strings(), protocol, from_client, text)
                    .map(|a| (a.key, a.rfc))
            })
            .collect()
    }

    #[test]
    fn every_key_has_a_meaning_in_every_language() {
        for lang in Lang::ALL {
            let s = lang.strings();
            for (key, _) in RFCS {
                assert!(
                    s.ann.iter().any(|(k, _)| k == key),
                    "{lang:?}: no meaning for {key}"
                );
            }
            for (key, _) in s.ann {
                assert!(
                    RFCS.iter().any(|(k, _)| k == key),
                    "{lang:?}: {key} has no RFC"
                );
            }
        }
        let en: Vec<_> = EN.ex_grant_calls.iter().map(|(k, _)| k).collect();
        let ja: Vec<_> = JA.ex_grant_calls.iter().map(|(k, _)| k).collect();
        assert_eq!(en, ja);
    }

    #[test]
    fn a_pop3_login_is_explained_and_the_grant_comes_before_ok() {
        let got = run(
            Lang::En,
            Protocol::Pop3,
            &[
                "S: +OK popgate ready",
                "C: USER taro",
                "S: +OK",
                "C: PASS secret",
                "S: +OK taro has 1 message",
                "C: LIST",
                "S: +OK 1 messages",
                "S: 1 120",
                "S: .",
                "C: QUIT",
                "S: +OK bye",
            ],
        );
        let keys: Vec<_> = got.iter().map(|a| a.map(|(k, _)| k)).collect();
        assert_eq!(
            keys,
            [
                Some("pop3 greeting"),
                Some("pop3 USER"),
                Some("pop3 +OK USER"),
                Some("pop3 PASS"),
                Some("pop3 +OK PASS"),
                Some("pop3 LIST"),
                Some("pop3 +OK"),
                Some("pop3 data"),
                Some("pop3 data"),
                Some("pop3 QUIT"),
                Some("pop3 +OK QUIT"),
            ]
        );
        assert_eq!(got[1].map(|(_, r)| r), Some("RFC 1939 §7"));
        let mut cx = LineContext::default();
        let ja = &JA;
        cx.annotate(ja, Protocol::Pop3, false, "+OK ready");
        cx.annotate(ja, Protocol::Pop3, true, "PASS x");
        let ok = cx
            .annotate(ja, Protocol::Pop3, false, "+OK")
            .expect("explained");
        assert!(
            ok.meaning.contains("グラントが作られている"),
            "{}",
            ok.meaning
        );
    }

    #[test]
    fn a_failed_login_names_the_response_code() {
        let mut cx = LineContext::default();
        cx.annotate(&EN, Protocol::Pop3, false, "+OK ready");
        cx.annotate(&EN, Protocol::Pop3, true, "USER taro");
        cx.annotate(&EN, Protocol::Pop3, false, "+OK");
        cx.annotate(&EN, Protocol::Pop3, true, "PASS wrong");
        let a = cx
            .annotate(
                &EN,
                Protocol::Pop3,
                false,
                "-ERR [AUTH] invalid credentials",
            )
            .expect("explained");
        assert_eq!(a.key, "pop3 -ERR PASS");
        assert!(a.meaning.contains("no grant"));
        assert!(a.meaning.contains("RFC 3206 §4"));
    }

    #[test]
    fn an_smtp_relay_session_is_explained() {
        let got = run(
            Lang::En,
            Protocol::Smtp,
            &[
                "S: 220 mail.example.test ESMTP popgate",
                "C: EHLO client.test",
                "S: 250-mail.example.test",
                "S: 250-PIPELINING",
                "S: 250-SIZE 10485760",
                "S: 250 ENHANCEDSTATUSCODES",
                "C: MAIL FROM:<taro@example.test>",
                "S: 250 2.1.0 Ok",
                "C: RCPT TO:<x@remote.test>",
                "S: 554 5.7.1 Relay access denied",
                "C: RCPT TO:<hanako@example.test>",
                "S: 250 2.1.5 Ok",
                "C: DATA",
                "S: 354 End data with <CR><LF>.<CR><LF>",
                "C: Subject: hi",
                "C: ",
                "C: .",
                "S: 250 2.0.0 Ok: queued as X",
                "C: QUIT",
                "S: 221 2.0.0 Bye",
            ],
        );
        let keys: Vec<_> = got.iter().map(|a| a.map(|(k, _)| k)).collect();
        assert_eq!(
            keys,
            [
                Some("smtp 220"),
                Some("smtp EHLO"),
                Some("smtp 250 EHLO"),
                Some("smtp ext PIPELINING"),
                Some("smtp ext SIZE"),
                Some("smtp ext ENHANCEDSTATUSCODES"),
                Some("smtp MAIL"),
                Some("smtp 250 MAIL"),
                Some("smtp RCPT"),
                Some("smtp 554 5.7.1"),
                Some("smtp RCPT"),
                Some("smtp 250 RCPT"),
                Some("smtp DATA"),
                Some("smtp 354"),
                Some("smtp data"),
                Some("smtp data"),
                Some("smtp ."),
                Some("smtp 250 ."),
                Some("smtp QUIT"),
                Some("smtp 221"),
            ]
        );
        assert_eq!(
            got[9].map(|(_, r)| r),
            Some("RFC 5321 §3.6.2, RFC 3463 §3.8")
        );
    }

    #[test]
    fn submission_with_starttls_and_auth_plain() {
        let got = run(
            Lang::Ja,
            Protocol::Submission,
            &[
                "S: 220 mail.example.test ESMTP",
                "C: EHLO c",
                "S: 250-mail.example.test",
                "S: 250 STARTTLS",
                "C: STARTTLS",
                "S: 220 2.0.0 Ready to start TLS",
                "C: AUTH PLAIN AHRhcm8Ac2VjcmV0",
                "S: 235 2.7.0 Authentication successful",
                "C: AUTH LOGIN",
                "S: 334 VXNlcm5hbWU6",
                "C: dGFybw==",
                "S: 999 odd",
            ],
        );
        let keys: Vec<_> = got.iter().map(|a| a.map(|(k, _)| k)).collect();
        assert_eq!(
            keys,
            [
                Some("smtp 220"),
                Some("smtp EHLO"),
                Some("smtp 250 EHLO"),
                Some("smtp ext STARTTLS"),
                Some("smtp STARTTLS"),
                Some("smtp 220 STARTTLS"),
                Some("smtp AUTH PLAIN"),
                Some("smtp 235"),
                Some("smtp AUTH"),
                Some("smtp 334"),
                Some("smtp sasl"),
                Some("code"),
            ]
        );
        assert_eq!(got[6].map(|(_, r)| r), Some("RFC 4954 §4, RFC 4616 §2"));
        assert_eq!(got[7].map(|(_, r)| r), Some("RFC 4954 §6"));
    }
}
