//! Local recipients: aliases resolve to their targets, `postmaster` always exists
//! (RFC 5321 §4.5.1), bare or at a local domain, and an unknown local user is refused
//! with 550 5.1.1.

use std::path::PathBuf;

use popgate_tests::{PyOut, Server, Setup, contains, python, read, reply};

const BOB: &str = "bob@example.test";
const CAROL: &str = "carol@example.test";

/// One smtplib session per recipient from 127.0.0.2; a message whose subject names
/// the recipient is sent when the RCPT is accepted.
const SEND_EACH: &str = r#"
host, port = sys.argv[1:3]
for i, rcpt in enumerate(sys.argv[3:]):
    s = smtp_from(host, port, "127.0.0.2")
    out("MAIL%d" % i, *s.mail("sender@elsewhere.test"))
    code, msg = s.rcpt(rcpt)
    out("RCPT%d" % i, code, msg)
    if code == 250:
        out("DATA%d" % i, *s.data(("Subject: to " + rcpt + "\r\n\r\nhello\r\n").encode()))
    s.quit()
"#;

fn send_each(server: &Server, rcpts: &[&str]) -> PyOut {
    let smtp = server.smtp();
    let mut args = vec![smtp.ip().to_string(), smtp.port().to_string()];
    args.extend(rcpts.iter().map(|r| r.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    python(SEND_EACH, &args)
}

/// The subjects of the messages in a Maildir's new/, sorted.
fn subjects(files: &[PathBuf]) -> Vec<String> {
    let mut subjects: Vec<String> = files
        .iter()
        .map(|f| {
            let text = String::from_utf8_lossy(&read(f)).into_owned();
            text.lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or_else(|| panic!("no Subject in {}:\n{text}", f.display()))
                .trim_end()
                .to_string()
        })
        .collect();
    subjects.sort();
    subjects
}

fn assert_accepted(out: &PyOut, i: usize, rcpt: &str) {
    let r = out.get(&format!("RCPT{i}"));
    assert!(r.starts_with("250 "), "RCPT TO:<{rcpt}>: {r:?}");
    let d = out.get(&format!("DATA{i}"));
    assert!(
        d.starts_with(reply::QUEUED),
        "end of data for {rcpt}: {d:?}"
    );
}

#[test]
fn aliases_and_postmaster_reach_their_maildirs() {
    let server = Setup::default()
        .user(BOB, "bob-secret-5")
        .user(CAROL, "carol-secret-5")
        .alias("postmaster@example.test", CAROL)
        .alias("info@example.test", BOB)
        .start();
    let rcpts = [
        "postmaster@example.test",
        "postmaster",
        "info@example.test",
        "Info@EXAMPLE.test",
    ];
    let out = send_each(&server, &rcpts);
    for (i, rcpt) in rcpts.iter().enumerate() {
        assert_accepted(&out, i, rcpt);
    }
    assert_eq!(
        subjects(&server.maildir_files(CAROL, "new")),
        vec!["to postmaster", "to postmaster@example.test"],
        "carol (postmaster's target) got"
    );
    assert_eq!(
        subjects(&server.maildir_files(BOB, "new")),
        vec!["to Info@EXAMPLE.test", "to info@example.test"],
        "bob (info's target) got"
    );
    // Nothing was delivered anywhere else.
    assert_eq!(
        server
            .files_under("mail")
            .iter()
            .filter(|p| is_message(p))
            .count(),
        4
    );
}

#[test]
fn postmaster_exists_without_an_alias() {
    let server = Setup::default().user(BOB, "bob-secret-6").start();
    let rcpts = [
        "postmaster@example.test",
        "postmaster",
        "PostMaster@Example.Test",
    ];
    let out = send_each(&server, &rcpts);
    for (i, rcpt) in rcpts.iter().enumerate() {
        assert_accepted(&out, i, rcpt);
    }
    // Delivered somewhere under the mail store, each exactly once.
    let delivered: Vec<PathBuf> = server
        .files_under("mail")
        .into_iter()
        .filter(|p| is_message(p))
        .collect();
    for rcpt in rcpts {
        let subject = format!("Subject: to {rcpt}\r\n");
        let n = delivered
            .iter()
            .filter(|f| contains(&read(f), subject.as_bytes()))
            .count();
        assert_eq!(n, 1, "messages to {rcpt} under data/mail: {delivered:?}");
    }
}

#[test]
fn unknown_local_user_is_refused_with_550_5_1_1() {
    let server = Setup::default()
        .user(BOB, "bob-secret-7")
        .alias("info@example.test", BOB)
        .start();
    let rcpts = ["nobody@example.test", "bob@example.test"];
    let out = send_each(&server, &rcpts);
    let r = out.get("RCPT0");
    assert!(
        r.starts_with(reply::UNKNOWN_USER),
        "RCPT TO:<nobody@example.test>: expected {:?}..., got {r:?}",
        reply::UNKNOWN_USER
    );
    assert!(out.all("DATA0").is_empty());
    assert_accepted(&out, 1, "bob@example.test");
    assert_eq!(server.maildir_files(BOB, "new").len(), 1);
    assert!(
        !server.maildir("nobody@example.test").exists(),
        "a Maildir was made for an unknown user"
    );
}

/// A delivered message file (in a Maildir's new/ or cur/), not an index or lock file.
fn is_message(p: &std::path::Path) -> bool {
    p.parent()
        .and_then(|d| d.file_name())
        .is_some_and(|d| d == "new" || d == "cur")
}
