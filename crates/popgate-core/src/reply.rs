//! Replies that users and scripts match on, each defined once (DESIGN.md reply table).
//!
//! SMTP replies carry an RFC 3463 enhanced status code (RFC 2034); POP3 replies carry
//! an RFC 2449 / RFC 3206 response code where one applies.

/// An SMTP reply: basic code, enhanced status code and default text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmtpReply {
    pub code: u16,
    /// RFC 3463 class.subject.detail; empty for replies that carry none (greeting,
    /// EHLO, 354, 334).
    pub status: &'static str,
    pub text: &'static str,
}

impl SmtpReply {
    /// One reply line with the default text, CRLF included.
    pub fn line(&self) -> String {
        self.line_with(self.text)
    }

    /// One reply line with other text (e.g. naming the recipient), CRLF included.
    pub fn line_with(&self, text: &str) -> String {
        if self.status.is_empty() {
            format!("{} {}\r\n", self.code, text)
        } else {
            format!("{} {} {}\r\n", self.code, self.status, text)
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
}

macro_rules! smtp_replies {
    ($($(#[$doc:meta])* $name:ident = $code:literal $status:literal $text:literal;)*) => {
        $($(#[$doc])* pub const $name: SmtpReply = SmtpReply { code: $code, status: $status, text: $text };)*
    };
}

smtp_replies! {
    OK = 250 "2.0.0" "Ok";
    /// RFC 5321 §4.1.1.1 (HELO/EHLO reply lines are built by the session).
    SENDER_OK = 250 "2.1.0" "Ok";
    RECIPIENT_OK = 250 "2.1.5" "Ok";
    /// RFC 5321 §4.1.1.4: the reply to end of data, sent only once the message is durable.
    QUEUED = 250 "2.0.0" "Ok: queued";
    RESET = 250 "2.0.0" "Ok";
    NOOP = 250 "2.0.0" "Ok";
    /// RFC 5321 §3.5.3: VRFY is answered 252 (cannot verify, will accept and try).
    CANNOT_VRFY = 252 "2.0.0" "Cannot VRFY user, but will accept message and attempt delivery";
    HELP = 214 "2.0.0" "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP";
    BYE = 221 "2.0.0" "Bye";
    START_DATA = 354 "" "End data with <CR><LF>.<CR><LF>";
    SHUTTING_DOWN = 421 "4.3.2" "Service shutting down, closing transmission channel";
    /// RFC 5321 §4.5.3.2: an idle client, or one below `min_data_rate` in DATA.
    /// Postfix's text, so filters written for Postfix match.
    TIMEOUT = 421 "4.4.2" "Error: timeout exceeded";
    TOO_MANY_CONNECTIONS = 421 "4.7.0" "Too many connections, try again later";
    /// Postfix `smtpd_client_connection_count_limit`, with its text; the server writes
    /// the client address after it.
    TOO_MANY_CONNECTIONS_FROM = 421 "4.7.0" "Error: too many connections from";
    STORE_FAILED = 451 "4.3.0" "Temporary failure storing the message, try again later";
    DISK_FULL = 452 "4.3.1" "Insufficient system storage";
    TOO_MANY_RECIPIENTS = 452 "4.5.3" "Too many recipients";
    TEMP_AUTH_FAILURE = 454 "4.7.0" "Temporary authentication failure";
    SYNTAX_ERROR = 500 "5.5.2" "Syntax error, command unrecognized";
    LINE_TOO_LONG = 500 "5.5.6" "Line too long";
    BAD_ARGUMENT = 501 "5.5.4" "Syntax error in parameters or arguments";
    NOT_IMPLEMENTED = 502 "5.5.1" "Command not implemented";
    BAD_SEQUENCE = 503 "5.5.1" "Bad sequence of commands";
    BAD_PARAMETER = 555 "5.5.4" "Unsupported MAIL or RCPT parameter";
    AUTH_REQUIRED = 530 "5.7.0" "Authentication required";
    BAD_CREDENTIALS = 535 "5.7.8" "Authentication credentials invalid";
    ENCRYPTION_REQUIRED = 538 "5.7.11" "Encryption required for requested authentication mechanism";
    UNKNOWN_USER = 550 "5.1.1" "Recipient address rejected: User unknown";
    MESSAGE_TOO_BIG = 552 "5.3.4" "Message size exceeds fixed limit";
    /// RFC 5321 §6.3: a message with more than 100 Received headers is a loop.
    MAIL_LOOP = 554 "5.4.6" "Too many Received headers: mail loop detected";
    RELAY_DENIED = 554 "5.7.1" "Relay access denied";
    /// `grant.mode = "off"`: a relay that would have used a POP-before-SMTP grant; the
    /// text is configurable (`[migration] off_text`), this is its default.
    GRANT_SWITCHED_OFF = 554 "5.7.1" "POP before SMTP is switched off: use authenticated submission (SMTP AUTH) on port 587";
    NO_VALID_RECIPIENTS = 554 "5.5.1" "No valid recipients";
    /// RFC 5321 §4.2: the greeting; the session writes its hostname before this text.
    GREETING = 220 "" "ESMTP popgate";
    /// RFC 5321 §4.1.1.1: HELO/EHLO; the session writes its hostname (and EHLO keywords).
    HELLO = 250 "" "";
    /// A temporary failure looking up a recipient or a grant (not storing).
    TEMP_FAILURE = 451 "4.3.0" "Temporary failure, try again later";
    /// RFC 5321 §4.1.2 path syntax (RFC 3463 §3.2: X.1.3 bad destination syntax).
    BAD_ADDRESS = 501 "5.1.3" "Bad address syntax";
    /// RFC 6531 §3.5: a non-ASCII address in a transaction without SMTPUTF8.
    NEEDS_SMTPUTF8 = 553 "5.6.7" "Non-ASCII address requires SMTPUTF8";
    /// RFC 3207 §4: the client starts the TLS handshake after this.
    READY_TO_START_TLS = 220 "2.0.0" "Ready to start TLS";
    /// RFC 3207 §4: STARTTLS on a session that already has TLS.
    TLS_ALREADY_ACTIVE = 503 "5.5.1" "TLS already active";
    /// RFC 4954 §6
    AUTH_SUCCEEDED = 235 "2.7.0" "Authentication successful";
    /// RFC 4954 §4: a SASL challenge; the session writes the base64 text.
    AUTH_CHALLENGE = 334 "" "";
    /// RFC 4954 §4: after a successful AUTH, AUTH again gets 503.
    ALREADY_AUTHENTICATED = 503 "5.5.1" "Already authenticated";
    /// RFC 4954 §4: the client answered a challenge with "*".
    AUTH_CANCELLED = 501 "5.0.0" "Authentication cancelled";
    /// RFC 4954 §4: a response that is not base64 gets 501 5.5.2.
    AUTH_BAD_BASE64 = 501 "5.5.2" "Cannot decode response";
    /// A decodable response that the mechanism cannot parse.
    AUTH_MALFORMED = 501 "5.5.2" "Malformed authentication response";
    /// RFC 4954 §4: a mechanism we do not offer gets 504.
    UNKNOWN_MECHANISM = 504 "5.5.4" "Unrecognized authentication type";
    /// The per-session limit of failed AUTH attempts; the connection closes.
    TOO_MANY_AUTH_FAILURES = 421 "4.7.0" "Too many authentication failures";
    /// RFC 6409 §6.1: MAIL FROM that the authenticated user may not use; the session
    /// writes the address before this text.
    SENDER_NOT_OWNED = 553 "5.7.1" "Sender address rejected: not owned by the authenticated user";
    /// RFC 5321 §2.3.8, §4.1.1.4: a bare LF in DATA (SMTP smuggling). The code and
    /// text are Postfix's `smtpd_forbid_bare_newline = reject` ones, so filters
    /// written for Postfix match: 5.5.2 because it is a syntax error of the line
    /// ending, not a media (5.6.x) problem of the content.
    BARE_LF = 550 "5.5.2" "Error: bare <LF> received";
    /// The same for a CR not followed by LF (RFC 5321 §2.3.8).
    BARE_CR = 550 "5.5.2" "Error: bare <CR> received";
    /// RFC 2920 §3.1, RFC 5321 §4.3.1: input before the greeting, a command
    /// pipelined after DATA, or pipelining that was never offered; the connection
    /// closes. Postfix's text for the same violation.
    PROTOCOL_SYNC = 554 "5.5.0" "Error: SMTP protocol synchronization";
    /// An HTTP request or a PROXY header sent to the SMTP port (a cross-protocol
    /// attack, or a load balancer not configured for PROXY); the connection closes.
    FOREIGN_PROTOCOL = 554 "5.5.0" "Error: not an SMTP command, closing";
    /// Postfix's `smtpd_hard_error_limit`: after too many errors the connection closes.
    TOO_MANY_ERRORS = 421 "4.7.0" "Error: too many errors";
    /// A local part that could name something outside the mailbox store (`/`, a
    /// leading dot, a control character).
    UNSAFE_LOCAL_PART = 553 "5.1.3" "Recipient address rejected: bad local part";
}

/// POP3 response codes (RFC 2449 §8, RFC 3206), written in brackets after `-ERR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pop3Code {
    /// RFC 2449 §8.1.1: the maildrop is locked by another session.
    InUse,
    /// RFC 2449 §8.1.2: logins are coming too fast.
    LoginDelay,
    /// RFC 3206 §4: the credentials are wrong (or the mechanism needs TLS).
    Auth,
    /// RFC 3206 §5: a temporary system problem.
    SysTemp,
    /// RFC 3206 §5: a permanent system problem.
    SysPerm,
}

impl Pop3Code {
    pub fn as_str(&self) -> &'static str {
        match self {
            Pop3Code::InUse => "IN-USE",
            Pop3Code::LoginDelay => "LOGIN-DELAY",
            Pop3Code::Auth => "AUTH",
            Pop3Code::SysTemp => "SYS/TEMP",
            Pop3Code::SysPerm => "SYS/PERM",
        }
    }
}

/// A POP3 status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pop3Reply {
    pub ok: bool,
    pub code: Option<Pop3Code>,
    pub text: &'static str,
}

impl Pop3Reply {
    pub fn line(&self) -> String {
        self.line_with(self.text)
    }

    pub fn line_with(&self, text: &str) -> String {
        let status = if self.ok { "+OK" } else { "-ERR" };
        match self.code {
            Some(code) => format!("{status} [{}] {text}\r\n", code.as_str()),
            None => format!("{status} {text}\r\n"),
        }
    }
}

macro_rules! pop3_replies {
    ($($(#[$doc:meta])* $name:ident = $ok:literal $code:expr, $text:literal;)*) => {
        $($(#[$doc])* pub const $name: Pop3Reply = Pop3Reply { ok: $ok, code: $code, text: $text };)*
    };
}

pop3_replies! {
    POP3_BAD_SEQUENCE = false None, "Command not valid in this state";
    POP3_UNKNOWN_COMMAND = false None, "Unknown command";
    POP3_BAD_ARGUMENT = false None, "Invalid argument";
    POP3_LINE_TOO_LONG = false None, "Line too long";
    POP3_NO_SUCH_MESSAGE = false None, "No such message";
    POP3_ALREADY_DELETED = false None, "Message already deleted";
    /// RFC 3206 §4: the same text for an unknown user and a wrong password.
    POP3_BAD_CREDENTIALS = false Some(Pop3Code::Auth), "Authentication failed";
    POP3_ENCRYPTION_REQUIRED = false Some(Pop3Code::Auth), "Plaintext authentication disallowed on non-secure connections";
    /// The per-session limit of failed logins; the connection closes after it.
    POP3_TOO_MANY_AUTH_FAILURES = false Some(Pop3Code::Auth), "Too many authentication failures";
    POP3_IN_USE = false Some(Pop3Code::InUse), "Maildrop is locked by another session";
    POP3_TEMP_FAILURE = false Some(Pop3Code::SysTemp), "Temporary server failure, try again later";
    POP3_TOO_MANY_CONNECTIONS = false Some(Pop3Code::SysTemp), "Too many connections";
    POP3_SHUTTING_DOWN = false None, "Server shutting down";
    POP3_TIMEOUT = false None, "Autologout; idle for too long";
    /// An HTTP request or a PROXY header sent to the POP3 port; the connection closes.
    POP3_FOREIGN_PROTOCOL = false None, "Not a POP3 command, closing";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    #[test]
    fn renders_the_table() {
        assert_eq!(RELAY_DENIED.line(), "554 5.7.1 Relay access denied\r\n");
        assert_eq!(START_DATA.line(), "354 End data with <CR><LF>.<CR><LF>\r\n");
        assert_eq!(
            UNKNOWN_USER.line_with("<x@example.test>: Recipient address rejected: User unknown"),
            "550 5.1.1 <x@example.test>: Recipient address rejected: User unknown\r\n"
        );
        assert_eq!(
            POP3_IN_USE.line(),
            "-ERR [IN-USE] Maildrop is locked by another session\r\n"
        );
        assert_eq!(
            POP3_BAD_SEQUENCE.line(),
            "-ERR Command not valid in this state\r\n"
        );
        assert!(QUEUED.is_positive() && STORE_FAILED.is_transient());
    }
}
