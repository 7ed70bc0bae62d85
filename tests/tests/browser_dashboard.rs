//! The live dashboard in headless Chromium, served by the real binary, while real
//! clients (python3's poplib and smtplib) act as the host 127.0.0.2: the POP3 login's
//! grant appears with a countdown that runs, a relayed message takes one of its three
//! messages and the timeline ties the SMTP session to the POP3 session that granted it,
//! and after a revoke clicked on the page the next relay is denied for want of a grant.

use popgate_tests::browser::{Browser, js, web_dist};
use popgate_tests::{PyOut, Server, Setup, python};

const ALICE: &str = "alice@example.test";
const PW: &str = "alice-secret-4";
const SOURCE: &str = "127.0.0.2";
/// Grants are keyed by the client's address, masked to the IPv4 default /32.
const KEY: &str = "127.0.0.2/32";
const SENDER: &str = "alice@example.test";
const REMOTE: &str = "friend@remote.test";

/// C: USER, PASS, QUIT over poplib from `source`.
const POP3_LOGIN: &str = r#"
host, port, source, user, password = sys.argv[1:]
p = POP3From(host, int(port), source)
out("USER", p.user(user))
out("PASS", p.pass_(password))
out("QUIT", p.quit())
"#;

/// MAIL, RCPT to a remote address and, when the RCPT is accepted, DATA, over smtplib
/// from `source`.
const RELAY: &str = r#"
host, port, source, sender, rcpt, subject = sys.argv[1:]
s = smtp_from(host, port, source)
out("MAIL", *s.mail(sender))
code, reply = s.rcpt(rcpt)
out("RCPT", code, reply)
if code == 250:
    msg = ("From: " + sender + "\r\nTo: " + rcpt + "\r\nSubject: " + subject + "\r\n\r\nvia the grant\r\n").encode()
    out("DATA", *s.data(msg))
s.quit()
"#;

fn server() -> Server {
    let root = web_dist();
    let root = root.to_str().expect("a UTF-8 path to web/dist");
    Setup::default()
        .listeners(&["smtp", "pop3", "http"])
        .max_messages(3)
        .user(ALICE, PW)
        // A JSON string is a valid TOML basic string for a path.
        .toml(&format!("[http]\nweb_root = {}", js(root)))
        .start()
}

fn pop3_login(server: &Server) -> PyOut {
    let pop3 = server.pop3();
    python(
        POP3_LOGIN,
        &[
            &pop3.ip().to_string(),
            &pop3.port().to_string(),
            SOURCE,
            ALICE,
            PW,
        ],
    )
}

fn relay(server: &Server, subject: &str) -> PyOut {
    let smtp = server.smtp();
    python(
        RELAY,
        &[
            &smtp.ip().to_string(),
            &smtp.port().to_string(),
            SOURCE,
            SENDER,
            REMOTE,
            subject,
        ],
    )
}

/// The grant row of [`KEY`], as a CSS selector.
fn grant_row() -> String {
    format!("[data-testid=grant-row][data-key=\"{KEY}\"]")
}

/// A JS expression: the grant row's attributes and its parts' when the row exists
/// and `cond` (over `row`, `countdown`, `left`, `session`) holds.
fn grant_where(cond: &str) -> String {
    format!(
        r#"(() => {{
            const row = q({row});
            if (!row) return null;
            const countdown = attrs(q("[data-testid=grant-countdown]", row));
            const left = attrs(q("[data-testid=grant-messages-left]", row));
            const session = attrs(q("[data-testid=grant-session]", row));
            if (!countdown || !left || !({cond})) return null;
            return {{ row: attrs(row), countdown, left, session }};
        }})()"#,
        row = js(&grant_row())
    )
}

fn str_at<'a>(v: &'a serde_json::Value, path: &[&str]) -> &'a str {
    let mut at = v;
    for p in path {
        at = &at[*p];
    }
    at.as_str()
        .unwrap_or_else(|| panic!("no string at {path:?} in {v}"))
}

#[test]
fn the_dashboard_shows_a_grant_counting_down_used_and_revoked() {
    let server = server();
    let browser = Browser::start("dashboard");
    let base = format!("http://{}/", server.addr("http"));
    browser.goto(&base);
    browser.wait(
        "the dashboard's WebSocket to be live",
        r#"q("[data-testid=connection-state][data-state=live]")"#,
    );

    // C: USER / PASS / QUIT from 127.0.0.2: the grant is made before +OK.
    let login = pop3_login(&server);
    assert!(login.get("PASS").starts_with("+OK"), "{login:?}");
    let first = browser.wait(
        "the grant row of 127.0.0.2/32 with its countdown",
        &grant_where("true"),
    );
    assert_eq!(str_at(&first, &["row", "data-user"]), ALICE, "{first}");
    assert_eq!(str_at(&first, &["left", "data-value"]), "3", "{first}");
    let pop_session = str_at(&first, &["session", "data-session"]).to_string();
    let remaining: u64 = str_at(&first, &["countdown", "data-remaining-ms"])
        .parse()
        .expect("data-remaining-ms is a number");
    let expires: u64 = str_at(&first, &["countdown", "data-expires"])
        .parse()
        .expect("data-expires is a number");
    assert!(
        remaining > 0 && remaining <= 30 * 60 * 1000,
        "a fresh 30 minute grant: {remaining} ms left"
    );
    // The countdown runs: it is re-read until it shows less, the expiry unchanged.
    let later = browser.wait(
        "the countdown to go down",
        &grant_where(&format!(
            "Number(countdown['data-remaining-ms']) < {remaining}"
        )),
    );
    assert_eq!(
        str_at(&later, &["countdown", "data-expires"]),
        expires.to_string(),
        "the expiry stays what the server sent"
    );
    // The login that made it is on the timeline, from the same POP3 session.
    browser.wait(
        "the timeline's grant entry from the POP3 session",
        &format!(
            "q({})",
            js(&format!(
                "[data-testid=timeline-entry][data-kind=grant_created][data-key=\"{KEY}\"][data-session=\"{pop_session}\"]"
            ))
        ),
    );

    // A relayed message spends one of the grant's three messages.
    let sent = relay(&server, "through the grant");
    assert_eq!(sent.get("RCPT").split(' ').next(), Some("250"), "{sent:?}");
    assert!(sent.get("DATA").starts_with("250 "), "{sent:?}");
    browser.wait(
        "messages left to drop from 3 to 2",
        &grant_where("left['data-value'] === '2' && left['data-reserved'] === '0'"),
    );
    // The timeline names the POP3 session that granted the SMTP session's relay.
    let allowed = browser.wait(
        "a relay_allowed entry linked to the granting POP3 session",
        &format!(
            "attrs(q({}))",
            js(&format!(
                "[data-testid=timeline-entry][data-kind=relay_allowed][data-granting-session=\"{pop_session}\"]"
            ))
        ),
    );
    let smtp_session = str_at(&allowed, &["data-session"]).to_string();
    assert_ne!(smtp_session, pop_session, "{allowed}");
    assert_eq!(str_at(&allowed, &["data-key"]), KEY, "{allowed}");
    let protocol = browser.wait(
        "the relaying session's row",
        &format!(
            "q({})?.dataset.protocol",
            js(&format!(
                "[data-testid=session-row][data-session=\"{smtp_session}\"]"
            ))
        ),
    );
    assert_eq!(protocol, "smtp", "session #{smtp_session}");
    browser.screenshot("granted");

    // Revoke from the page: the row goes, and the next relay is refused for want of a
    // grant.
    browser.click(&format!("{} [data-testid=grant-revoke]", grant_row()));
    browser.wait(
        "the grant row to go and a grant_revoked entry",
        &format!(
            "!q({}) && q({})",
            js(&grant_row()),
            js(&format!(
                "[data-testid=timeline-entry][data-kind=grant_revoked][data-key=\"{KEY}\"]"
            ))
        ),
    );
    let refused = relay(&server, "after the revoke");
    assert_eq!(
        refused.get("RCPT"),
        "554 5.7.1 Relay access denied",
        "{refused:?}"
    );
    let denied = browser.wait(
        "a relay_denied entry with reason no_grant",
        r#"(() => {
            const e = q("[data-testid=timeline-entry][data-kind=relay_denied][data-reason=no_grant]");
            if (!e) return null;
            return { entry: attrs(e), chip: text(q("[data-testid=timeline-session]", e)) };
        })()"#,
    );
    let denied_session = str_at(&denied, &["entry", "data-session"]);
    assert!(
        denied_session != smtp_session && denied_session != pop_session,
        "a new SMTP session: {denied}"
    );
    assert!(
        str_at(&denied, &["chip"]).contains(SOURCE),
        "the denied session is 127.0.0.2's: {denied}"
    );
    // The refused address is its key, as on every other entry about an address: the
    // revoked grant's.
    assert_eq!(str_at(&denied, &["entry", "data-key"]), KEY, "{denied}");
    let shot = browser.screenshot("revoked");
    assert!(shot.is_file(), "{} was written", shot.display());
}
