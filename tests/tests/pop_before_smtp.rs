//! POP before SMTP with real clients: a relay is refused until a POP3 login from the
//! same address, then accepted on the first try, queued, and traced to the granting
//! user. Other addresses and failed logins gain nothing.

use std::net::SocketAddr;
use std::process::{Command, Output};

use popgate_tests::stored::unfold;
use popgate_tests::{Client, Server, Setup, host, python, relay_rcpt, reply, run, swaks};

const ALICE: &str = "alice@example.test";
const PW: &str = "alice-secret-3";
const REMOTE: &str = "someone@remote.test";
const SENDER: &str = "sender@elsewhere.test";

fn server() -> Server {
    Setup::default().user(ALICE, PW).start()
}

/// RCPT to a remote address from `source` on a fresh SMTP session: the RCPT reply.
fn probe(server: &Server, source: u8) -> String {
    let mut c = Client::smtp_from(server.smtp(), host(source));
    let r = relay_rcpt(&mut c, REMOTE);
    c.smtp("QUIT");
    r
}

/// Before the grant: refused; POP3 login; then, with the POP3 session still open and
/// without any retry, relayed and queued. All from 127.0.0.2, all python.
const REFUSE_LOGIN_RELAY: &str = r#"
host, sport, pport, source, user, password, sender, rcpt, subject = sys.argv[1:]
s = smtp_from(host, sport, source)
out("MAIL1", *s.mail(sender))
out("RCPT1", *s.rcpt(rcpt))
s.quit()
p = POP3From(host, int(pport), source)
out("USER", p.user(user))
out("PASS", p.pass_(password))
s = smtp_from(host, sport, source)
out("MAIL2", *s.mail(sender))
out("RCPT2", *s.rcpt(rcpt))
msg = ("From: " + sender + "\r\nTo: " + rcpt + "\r\nSubject: " + subject + "\r\n\r\nrelayed\r\n").encode()
out("DATA2", *s.data(msg))
s.quit()
out("QUIT", p.quit())
"#;

fn refuse_login_relay(server: &Server, source: &str, subject: &str) -> popgate_tests::PyOut {
    let (smtp, pop3) = (server.smtp(), server.pop3());
    python(
        REFUSE_LOGIN_RELAY,
        &[
            &smtp.ip().to_string(),
            &smtp.port().to_string(),
            &pop3.port().to_string(),
            source,
            ALICE,
            PW,
            SENDER,
            REMOTE,
            subject,
        ],
    )
}

#[test]
fn pop3_login_grants_relay_to_that_address_only() {
    let server = server();
    let out = refuse_login_relay(&server, "127.0.0.2", "granted relay");
    assert!(out.get("MAIL1").starts_with("250 "), "{out:?}");
    assert_eq!(
        out.get("RCPT1"),
        reply::RELAY_DENIED,
        "relay before any POP3 login"
    );
    assert!(out.get("PASS").starts_with("+OK"), "{out:?}");
    assert!(out.get("MAIL2").starts_with("250 "), "{out:?}");
    assert!(
        out.get("RCPT2").starts_with("250 "),
        "relay right after the POP3 login, first try: {out:?}"
    );
    let data = out.get("DATA2");
    assert!(
        data.starts_with(reply::QUEUED),
        "end of data: expected {:?}<id>, got {data:?}",
        reply::QUEUED
    );
    assert!(out.get("QUIT").starts_with("+OK"), "{out:?}");

    let queue = server.queue_list();
    assert!(
        queue.contains(REMOTE),
        "popgate queue list does not show {REMOTE}:\n{queue}"
    );

    // Another host gained nothing.
    assert_eq!(
        probe(&server, 3),
        reply::RELAY_DENIED,
        "relay from 127.0.0.3"
    );
    // The granted host still relays.
    assert!(
        probe(&server, 2).starts_with("250 "),
        "relay from 127.0.0.2 again"
    );
}

#[test]
fn failed_pop3_login_grants_nothing() {
    let server = server();
    let mut c = Client::connect_from(server.pop3(), host(4));
    let greeting = c.read_line();
    assert!(greeting.starts_with("+OK"), "greeting: {greeting:?}");
    let r = c.pop(&format!("USER {ALICE}"));
    assert!(r.starts_with("+OK"), "USER: {r:?}");
    let r = c.pop("PASS wrong-password");
    assert!(
        r.starts_with(reply::POP3_AUTH),
        "bad password: expected {:?}..., got {r:?}",
        reply::POP3_AUTH
    );
    assert_eq!(
        probe(&server, 4),
        reply::RELAY_DENIED,
        "relay after a failed login"
    );
    // USER alone is not a login either.
    let r = c.pop(&format!("USER {ALICE}"));
    assert!(r.starts_with("+OK"), "USER: {r:?}");
    assert_eq!(
        probe(&server, 4),
        reply::RELAY_DENIED,
        "relay after USER alone"
    );
    let r = c.pop("QUIT");
    assert!(r.starts_with("+OK"), "QUIT: {r:?}");
}

#[test]
fn relayed_message_names_the_granting_user_in_received() {
    let server = server();
    let subject = "trace of the grant";
    let out = refuse_login_relay(&server, "127.0.0.2", subject);
    assert!(out.get("DATA2").starts_with(reply::QUEUED), "{out:?}");

    // The queued message as `popgate queue show ID` prints it, ID from `queue list`.
    let id = queue_id_for(&server, REMOTE);
    let shown = server.cli(&["queue", "show", &id]);
    assert!(
        shown.contains(subject),
        "queue show {id} does not show the message:\n{shown}"
    );
    let received = first_received(&shown)
        .unwrap_or_else(|| panic!("no Received: header in queue show {id}:\n{shown}"));
    // The envelope sender and the headers name someone else: only the grant can have
    // put alice into the trace.
    assert!(
        received.contains(ALICE),
        "the Received header does not name the granting user {ALICE}: {received:?}"
    );
}

#[test]
fn queued_as_id_is_the_queue_entry_id() {
    let server = server();
    let out = refuse_login_relay(&server, "127.0.0.2", "which id");
    let data = out.get("DATA2");
    let said = data
        .strip_prefix(reply::QUEUED)
        .unwrap_or_else(|| {
            panic!(
                "end of data: expected {:?}<id>, got {data:?}",
                reply::QUEUED
            )
        })
        .trim()
        .to_string();
    let listed = queue_id_for(&server, REMOTE);
    assert_eq!(
        said, listed,
        "the id in `250 2.0.0 Ok: queued as <id>` is not the id `popgate queue list` shows \
         (so `popgate queue show <id>` cannot find it)"
    );
}

/// The id (first field) of the one `popgate queue list` line that names `rcpt`.
fn queue_id_for(server: &Server, rcpt: &str) -> String {
    let list = server.queue_list();
    let lines: Vec<&str> = list.lines().filter(|l| l.contains(rcpt)).collect();
    assert_eq!(lines.len(), 1, "queue list lines naming {rcpt}:\n{list}");
    lines[0]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The first `Received:` header in `text`, unfolded.
fn first_received(text: &str) -> Option<String> {
    let start = text
        .find("\nReceived: ")
        .map(|i| i + 1)
        .or_else(|| text.strip_prefix("Received: ").map(|_| 0))?;
    let mut header = String::new();
    for (i, line) in text[start..].split_inclusive('\n').enumerate() {
        if i > 0 && !(line.starts_with(' ') || line.starts_with('\t')) {
            break;
        }
        header.push_str(line);
    }
    Some(unfold(header.as_bytes()))
}

fn curl_smtp(smtp: SocketAddr, source: &str, file: &std::path::Path) -> Output {
    run(Command::new("curl")
        .args(["-sS", "-v", "--max-time", "60", "--interface", source])
        .arg(format!("smtp://{smtp}/client.test"))
        .args(["--mail-from", SENDER, "--mail-rcpt", REMOTE, "-T"])
        .arg(file))
}

#[test]
fn curl_smtp_relays_only_after_curl_pop3_login() {
    let server = server();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("message.eml");
    std::fs::write(
        &file,
        format!("From: {SENDER}\r\nTo: {REMOTE}\r\nSubject: curl\r\n\r\nvia curl\r\n"),
    )
    .expect("write the message");

    let before = curl_smtp(server.smtp(), "127.0.0.2", &file);
    let log = String::from_utf8_lossy(&before.stderr);
    assert!(
        !before.status.success(),
        "curl smtp relayed without a grant:\n{log}"
    );
    assert!(
        log.contains(&format!("< {}", reply::RELAY_DENIED)),
        "curl smtp without a grant: expected `< {}` in:\n{log}",
        reply::RELAY_DENIED
    );

    // curl logs in over POP3 (LIST) from the same address.
    let login = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            "--interface",
            "127.0.0.2",
            "--user",
        ])
        .arg(format!("{ALICE}:{PW}"))
        .arg(format!("pop3://{}/", server.pop3())));
    assert!(
        login.status.success(),
        "curl pop3 login failed ({}): {}",
        login.status,
        String::from_utf8_lossy(&login.stderr)
    );

    let after = curl_smtp(server.smtp(), "127.0.0.2", &file);
    let log = String::from_utf8_lossy(&after.stderr);
    assert!(
        after.status.success(),
        "curl smtp after the POP3 login failed ({}):\n{log}",
        after.status
    );
    assert!(
        log.contains(&format!("< {}", reply::QUEUED)),
        "expected `< {}` in:\n{log}",
        reply::QUEUED
    );
    let queue = server.queue_list();
    assert!(
        queue.contains(REMOTE),
        "popgate queue list does not show {REMOTE}:\n{queue}"
    );

    let elsewhere = curl_smtp(server.smtp(), "127.0.0.3", &file);
    let log = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(
        !elsewhere.status.success() && log.contains(&format!("< {}", reply::RELAY_DENIED)),
        "curl smtp from 127.0.0.3 must be refused:\n{log}"
    );
}

fn swaks_relay(smtp: SocketAddr, source: &str) -> Output {
    run(swaks()
        .args([
            "--server",
            &smtp.ip().to_string(),
            "--port",
            &smtp.port().to_string(),
        ])
        .args([
            "--local-interface",
            source,
            "--ehlo",
            "client.test",
            "--timeout",
            "30",
        ])
        .args(["--from", SENDER, "--to", REMOTE])
        .args(["--header", "Subject: swaks", "--body", "via swaks"]))
}

#[test]
fn swaks_relays_only_after_pop3_login() {
    let server = server();
    let before = swaks_relay(server.smtp(), "127.0.0.2");
    let log = String::from_utf8_lossy(&before.stdout);
    assert!(
        !before.status.success(),
        "swaks relayed without a grant:\n{log}"
    );
    assert!(
        log.contains(&format!("<** {}", reply::RELAY_DENIED)),
        "swaks without a grant: expected `<** {}` in:\n{log}",
        reply::RELAY_DENIED
    );

    let pop3 = server.pop3();
    let out = python(
        r#"
host, port, source, user, password = sys.argv[1:]
p = POP3From(host, int(port), source)
out("USER", p.user(user))
out("PASS", p.pass_(password))
out("QUIT", p.quit())
"#,
        &[
            &pop3.ip().to_string(),
            &pop3.port().to_string(),
            "127.0.0.2",
            ALICE,
            PW,
        ],
    );
    assert!(out.get("PASS").starts_with("+OK"), "{out:?}");

    let after = swaks_relay(server.smtp(), "127.0.0.2");
    let log = String::from_utf8_lossy(&after.stdout);
    assert!(
        after.status.success(),
        "swaks after the POP3 login failed ({}):\n{log}",
        after.status
    );
    assert!(
        log.contains(&format!("<-  {}", reply::QUEUED)),
        "expected `<-  {}` in:\n{log}",
        reply::QUEUED
    );
    let queue = server.queue_list();
    assert!(
        queue.contains(REMOTE),
        "popgate queue list does not show {REMOTE}:\n{queue}"
    );
}

/// `popgate user add` while the server runs: the new user can log in at once (the
/// server re-reads the users file when it changes) and the login grants relay.
#[test]
fn user_added_while_running_logs_in_and_gains_a_grant() {
    let server = Setup::default().start();
    server.add_user("dave@example.test", "dave-secret-3");
    let mut pop = Client::pop3_login(server.pop3(), host(5), "dave@example.test", "dave-secret-3");
    assert!(
        probe(&server, 5).starts_with("250 "),
        "relay from 127.0.0.5 after dave's login"
    );
    let r = pop.pop("QUIT");
    assert!(r.starts_with("+OK"), "QUIT: {r:?}");
}

/// DESIGN: verified credentials grant even when the maildrop is then refused with
/// `-ERR [IN-USE]` (the user proved who they are).
#[test]
fn login_refused_in_use_still_grants() {
    let server = server();
    let mut holder = Client::pop3_login(server.pop3(), host(2), ALICE, PW);
    let mut c = Client::connect_from(server.pop3(), host(6));
    let greeting = c.read_line();
    assert!(greeting.starts_with("+OK"), "greeting: {greeting:?}");
    let r = c.pop(&format!("USER {ALICE}"));
    assert!(r.starts_with("+OK"), "USER: {r:?}");
    let r = c.pop(&format!("PASS {PW}"));
    assert!(r.starts_with(reply::POP3_IN_USE), "second login: {r:?}");
    assert!(
        probe(&server, 6).starts_with("250 "),
        "relay from 127.0.0.6 after an [IN-USE] login"
    );
    let r = holder.pop("QUIT");
    assert!(r.starts_with("+OK"), "QUIT: {r:?}");
}
