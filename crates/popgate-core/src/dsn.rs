//! Delivery status notifications: the bounce sent to the envelope sender when a
//! relayed message finally fails (RFC 3464 `message/delivery-status` inside an RFC
//! 6522 `multipart/report`, status codes from RFC 3463 as RFC 3461 uses them).
//!
//! Pure text in, pure text out: the queue runner decides when to bounce and where the
//! bounce goes (a local Maildir or the queue, with the null reverse-path).

use crate::time::Millis;

/// RFC 3464 §2.3.3: what happened to a recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Given up: the message will not be delivered.
    Failed,
    /// Still trying (a "delay" warning); the message stays queued.
    Delayed,
}

impl Action {
    fn as_str(&self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
        }
    }
}

/// One recipient's line in the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DsnRecipient {
    pub rcpt: String,
    pub action: Action,
    /// RFC 3463 status, e.g. `5.1.1`.
    pub status: String,
    /// The next hop's reply as one line (`Diagnostic-Code: smtp; ...`), when it gave one.
    pub reply: Option<String>,
    /// The host that answered (`Remote-MTA: dns; ...`), when one did.
    pub remote_mta: Option<String>,
    /// What happened, in words, for the human-readable part.
    pub text: String,
}

/// Everything a bounce is built from.
#[derive(Clone, Debug)]
pub struct Report<'a> {
    /// Our host name (`Reporting-MTA`, the `From:` domain, the Message-ID's right side).
    pub reporting_mta: &'a str,
    /// The queue id of the failed message; names the bounce's Message-ID.
    pub queue_id: &'a str,
    /// The failed message's reverse-path: the bounce's recipient.
    pub sender: &'a str,
    pub arrival: Millis,
    pub now: Millis,
    pub recipients: &'a [DsnRecipient],
    /// The failed message (only its header section is returned).
    pub original: &'a [u8],
}

/// The bounce message, CRLF line ends; `None` for a null sender: RFC 3461 §6.2 and
/// RFC 5321 §4.5.5 forbid a bounce of a bounce (it would loop).
pub fn bounce(report: &Report<'_>) -> Option<Vec<u8>> {
    if report.sender.is_empty() || report.recipients.is_empty() {
        return None;
    }
    let headers = original_headers(report.original);
    let mut boundary = format!("popgate-report-{}-{}", clean(report.queue_id), report.now.0);
    while contains(headers, boundary.as_bytes()) {
        boundary.push('x');
    }
    let mta = clean(report.reporting_mta);
    let failed = report.recipients.iter().any(|r| r.action == Action::Failed);
    let subject = if failed {
        "Undelivered Mail Returned to Sender"
    } else {
        "Delayed Mail (still being retried)"
    };

    let mut human = String::new();
    human.push_str(&format!("This is the mail system at host {mta}.\r\n\r\n"));
    if failed {
        human.push_str(
            "Your message could not be delivered to one or more recipients.\r\n\
             It has been given up on; the reasons are below.\r\n\r\n",
        );
    } else {
        human.push_str(
            "Your message has not been delivered yet to one or more recipients.\r\n\
             The mail system will keep trying; no action is needed.\r\n\r\n",
        );
    }
    for r in report.recipients {
        human.push_str(&format!("<{}>: {}\r\n", clean(&r.rcpt), clean(&r.text)));
    }

    // RFC 3464 §2.2: per-message fields, a blank line, then per-recipient groups.
    let mut status = format!(
        "Reporting-MTA: dns; {mta}\r\nArrival-Date: {}\r\n",
        report.arrival.rfc5322()
    );
    for r in report.recipients {
        // RFC 6533 §3: a non-ASCII address uses the utf-8 address type.
        let kind = if r.rcpt.is_ascii() { "rfc822" } else { "utf-8" };
        status.push_str(&format!(
            "\r\nFinal-Recipient: {kind}; {}\r\nAction: {}\r\nStatus: {}\r\n",
            clean(&r.rcpt),
            r.action.as_str(),
            clean(&r.status)
        ));
        if let Some(host) = &r.remote_mta {
            status.push_str(&format!("Remote-MTA: dns; {}\r\n", clean(host)));
        }
        if let Some(reply) = &r.reply {
            status.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", clean(reply)));
        }
        if r.action == Action::Failed {
            status.push_str(&format!("Last-Attempt-Date: {}\r\n", report.now.rfc5322()));
        }
    }

    let mut out = Vec::new();
    let push = |out: &mut Vec<u8>, s: &str| out.extend_from_slice(s.as_bytes());
    push(
        &mut out,
        &format!(
            "From: Mail Delivery System <MAILER-DAEMON@{mta}>\r\n\
             To: <{}>\r\n\
             Subject: {subject}\r\n\
             Date: {}\r\n\
             Message-ID: <{}.{}.dsn@{mta}>\r\n\
             Auto-Submitted: auto-replied\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status;\r\n\
             \tboundary=\"{boundary}\"\r\n\
             \r\n\
             This is a MIME-encapsulated message.\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Description: Notification\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             \r\n\
             {human}\r\n\
             --{boundary}\r\n\
             Content-Description: Delivery report\r\n\
             Content-Type: message/delivery-status\r\n\
             \r\n\
             {status}\r\n\
             --{boundary}\r\n\
             Content-Description: Undelivered Message Headers\r\n\
             Content-Type: text/rfc822-headers\r\n\
             \r\n",
            clean(report.sender),
            report.now.rfc5322(),
            clean(report.queue_id),
            report.now.0,
        ),
    );
    for line in headers.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    push(&mut out, &format!("\r\n--{boundary}--\r\n"));
    Some(out)
}

/// The header section of a message: everything before the first empty line (RFC
/// 5322 §2.1), or the whole message when it has no body.
pub fn original_headers(message: &[u8]) -> &[u8] {
    let mut start = 0;
    while start < message.len() {
        let end = message[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| start + i + 1);
        let line = &message[start..end];
        if line == b"\r\n" || line == b"\n" {
            return &message[..start];
        }
        start = end;
    }
    message
}

/// Text put into a header-like field: no CR or LF can end it early.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    fn recipient() -> DsnRecipient {
        DsnRecipient {
            rcpt: "nobody@remote.test".into(),
            action: Action::Failed,
            status: "5.1.1".into(),
            reply: Some("550 5.1.1 <nobody@remote.test>: unknown".into()),
            remote_mta: Some("mx.remote.test".into()),
            text: "next hop answered RCPT TO with 550 5.1.1 unknown".into(),
        }
    }

    fn report<'a>(sender: &'a str, rcpts: &'a [DsnRecipient], original: &'a [u8]) -> Report<'a> {
        Report {
            reporting_mta: "mail.example.test",
            queue_id: "19CCB4B2D38.7.1",
            sender,
            arrival: Millis(1_795_893_491_000),
            now: Millis(1_795_893_591_000),
            recipients: rcpts,
            original,
        }
    }

    const ORIGINAL: &[u8] =
        b"Received: from x\r\nSubject: hello\r\nFrom: taro@example.test\r\n\r\nsecret body\r\n";

    #[test]
    fn a_bounce_is_a_multipart_report() {
        let rcpts = [recipient()];
        let dsn = bounce(&report("taro@example.test", &rcpts, ORIGINAL)).expect("a bounce");
        let text = String::from_utf8(dsn).expect("utf-8");
        for want in [
            "From: Mail Delivery System <MAILER-DAEMON@mail.example.test>\r\n",
            "To: <taro@example.test>\r\n",
            "Auto-Submitted: auto-replied\r\n",
            "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"popgate-report-19CCB4B2D38.7.1-1795893591000\"\r\n",
            "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mail.example.test\r\nArrival-Date: Sat, 28 Nov 2026 19:18:11 +0000\r\n\r\n",
            "Final-Recipient: rfc822; nobody@remote.test\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.remote.test\r\nDiagnostic-Code: smtp; 550 5.1.1 <nobody@remote.test>: unknown\r\n",
            "Content-Type: text/rfc822-headers\r\n\r\nReceived: from x\r\nSubject: hello\r\nFrom: taro@example.test\r\n\r\n--popgate-report-19CCB4B2D38.7.1-1795893591000--\r\n",
            "<nobody@remote.test>: next hop answered RCPT TO",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("secret body"), "only the headers come back");
        assert!(
            !text.contains("\n\n") && !text.replace("\r\n", "").contains('\n'),
            "CRLF only"
        );
    }

    #[test]
    fn never_a_bounce_for_a_null_sender() {
        let rcpts = [recipient()];
        assert_eq!(bounce(&report("", &rcpts, ORIGINAL)), None);
        assert_eq!(bounce(&report("a@b.test", &[], ORIGINAL)), None);
    }

    #[test]
    fn injected_line_ends_and_boundaries_are_defused() {
        let mut r = recipient();
        r.reply = Some("550 evil\r\nSubject: injected".into());
        let original = b"Subject: --popgate-report-19CCB4B2D38.7.1-1795893591000\r\n\r\nx";
        let rcpts = [r];
        let text =
            String::from_utf8(bounce(&report("a@b.test", &rcpts, original)).expect("bounce"))
                .expect("utf-8");
        assert!(text.contains("Diagnostic-Code: smtp; 550 evil  Subject: injected\r\n"));
        assert!(text.contains("boundary=\"popgate-report-19CCB4B2D38.7.1-1795893591000x\""));
    }

    #[test]
    fn header_sections_and_received_counts() {
        assert_eq!(
            original_headers(b"A: 1\r\nB: 2\r\n\r\nbody"),
            b"A: 1\r\nB: 2\r\n"
        );
        assert_eq!(original_headers(b"A: 1\nB: 2\n\nbody"), b"A: 1\nB: 2\n");
        assert_eq!(original_headers(b"A: 1\r\n"), b"A: 1\r\n");
        assert_eq!(original_headers(b"\r\nbody"), b"");
        let mut m = "Received: x\r\n".repeat(101);
        m.push_str("RECEIVED: y\r\n\r\nReceived: in the body\r\n");
        assert_eq!(crate::smtp::received_headers(m.as_bytes()), 102);
    }
}
