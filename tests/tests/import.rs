//! `popgate import`: mailboxes from the old server keep what POP3 clients remember.
//!
//! A Dovecot Maildir with its `dovecot-uidlist`, a Courier Maildir with its
//! `courierimapuiddb` and an mbox file are imported with the real CLI while the server
//! runs; python3's poplib then sees the UIDLs the old servers gave (Dovecot's default
//! `%08Xu%08Xv`, a `P` override, Courier's `UIDVALIDITY-UID`, an mbox `X-UIDL:`), the
//! messages byte for byte, and mboxrd's `>From ` unquoted. The report names what was
//! skipped and why, and a second run takes nothing twice.

use popgate_tests::{Server, Setup, python};
use std::fs;
use std::path::Path;

const TARO: &str = "taro@example.test";
const HANAKO: &str = "hanako@example.test";
const JIRO: &str = "jiro@example.test";
const PW: &str = "import-secret-9";

/// C: USER, PASS, UIDL, RETR each message, QUIT; prints `UIDL n uid` and `MSG n hex`.
const LIST_ALL: &str = r#"
host, port, user, password = sys.argv[1:]
p = poplib.POP3(host, int(port), timeout=30)
p.user(user)
p.pass_(password)
resp, lines, _ = p.uidl()
for line in lines:
    out("UIDL", line)
for n in range(1, len(lines) + 1):
    resp, body, _ = p.retr(n)
    hexout("MSG" + str(n), b"\r\n".join(body) + b"\r\n")
p.quit()
"#;

fn pop_all(server: &Server, user: &str) -> popgate_tests::PyOut {
    let pop = server.pop3();
    python(
        LIST_ALL,
        &[&pop.ip().to_string(), &pop.port().to_string(), user, PW],
    )
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).expect("create the source folder");
    }
    fs::write(path, text).expect("write a source file");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[test]
fn maildirs_keep_their_uidls_and_mbox_is_converted() {
    let server = Setup::default()
        .user(TARO, PW)
        .user(HANAKO, PW)
        .user(JIRO, PW)
        .start();
    let src = tempfile::tempdir().expect("a folder for the old server's mail");

    // Dovecot: two messages it knows (one with a POP3 UIDL override), an empty file.
    let dovecot = src.path().join("dovecot/Maildir");
    let first = "From: a@old.test\r\nSubject: one\r\n\r\nfirst body\r\n";
    let second = "From: b@old.test\r\nSubject: two\r\n\r\nsecond body\r\n";
    write(&dovecot.join("cur/1700000001.M1P10.old,S=47:2,S"), first);
    write(&dovecot.join("new/1700000002.M2P10.old,S=48"), second);
    write(&dovecot.join("new/1700000003.M3P10.old"), "");
    fs::create_dir_all(dovecot.join("tmp")).expect("tmp");
    write(
        &dovecot.join("dovecot-uidlist"),
        "3 V1700000000 N8 G3085f01b7f11094c501100008c4a11c1\n\
         5 W49 :1700000001.M1P10.old,S=47:2,S\n\
         7 Plegacy-7 :1700000002.M2P10.old,S=48\n",
    );
    let out = server.cli(&["import", path(&dovecot), "--user", TARO]);
    assert!(
        out.contains("taken: 2 messages (2 with the old server's UIDL)"),
        "{out}"
    );
    assert!(
        out.contains("skipped: 1") && out.contains("1 empty file: new/1700000003.M3P10.old"),
        "{out}"
    );

    let taro = pop_all(&server, TARO);
    // Dovecot's default pop3_uidl_format %08Xu%08Xv: UID then UIDVALIDITY, hex.
    assert_eq!(
        taro.all("UIDL"),
        ["1 000000056553F100", "2 legacy-7"],
        "{}",
        taro.0
    );
    assert_eq!(taro.bytes("MSG1"), first.as_bytes());
    assert_eq!(taro.bytes("MSG2"), second.as_bytes());

    // A second run takes nothing twice.
    let again = server.cli(&["import", path(&dovecot), "--user", TARO]);
    assert!(
        again.contains("taken: 0 messages") && again.contains("2 already present"),
        "{again}"
    );
    assert_eq!(pop_all(&server, TARO).all("UIDL").len(), 2);

    // Courier: UIDVALIDITY-UID.
    let courier = src.path().join("courier/Maildir");
    write(&courier.join("cur/1100000001.123.old:2,S"), first);
    fs::create_dir_all(courier.join("new")).expect("new");
    write(
        &courier.join("courierimapuiddb"),
        "1 1100000000 3\n2 1100000001.123.old:2,S\n",
    );
    let out = server.cli(&["import", path(&courier), "--user", JIRO]);
    assert!(
        out.contains("courierimapuiddb") && out.contains("taken: 1 message "),
        "{out}"
    );
    assert_eq!(pop_all(&server, JIRO).all("UIDL"), ["1 1100000000-2"]);

    // mbox (mboxrd): split at From_ lines, one level of > unquoted, X-UIDL kept.
    let mbox = src.path().join("hanako.mbox");
    write(
        &mbox,
        "From a@old.test Mon Jan  1 00:00:00 2024\n\
         Subject: quoted\n\
         \n\
         >From the start of a line\n\
         >>From two levels\n\
         \n\
         From b@old.test Mon Jan  1 00:00:01 2024\n\
         Subject: kept uidl\n\
         X-UIDL: uw-imap-0042\n\
         \n\
         body\n",
    );
    let out = server.cli(&["import", path(&mbox), "--user", HANAKO]);
    assert!(
        out.contains("(mbox)") && out.contains("taken: 2 messages (1 with"),
        "{out}"
    );
    let hanako = pop_all(&server, HANAKO);
    let uidls = hanako.all("UIDL");
    assert_eq!(uidls.len(), 2, "{}", hanako.0);
    assert_eq!(uidls[1], "2 uw-imap-0042");
    assert_eq!(
        String::from_utf8_lossy(&hanako.bytes("MSG1")),
        "Subject: quoted\r\n\r\nFrom the start of a line\r\n>From two levels\r\n"
    );
}

#[test]
fn import_refuses_unknown_users_and_things_that_are_no_mailbox() {
    let server = Setup::default().user(TARO, PW).start();
    let src = tempfile::tempdir().expect("tmp");
    let not_mbox = src.path().join("notes.txt");
    write(&not_mbox, "just text\n");
    let run = |args: &[&str]| {
        popgate_tests::run(
            std::process::Command::new(popgate_tests::popgate_bin())
                .arg("--config")
                .arg(server.config_path())
                .args(args),
        )
    };
    let out = run(&["import", path(&not_mbox), "--user", TARO]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an mbox file"));
    let out = run(&["import", path(src.path()), "--user", TARO]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither a Maildir"));
    let out = run(&["import", path(&not_mbox), "--user", "nobody@example.test"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a user"));
}
