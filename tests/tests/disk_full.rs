//! A full disk: delivery answers `452 4.3.1 Insufficient system storage` (RFC 3463
//! §3.4, DESIGN.md reply table), never 250; no partial file is left in the Maildir;
//! and the server keeps serving (the same connection, the next delivery once there is
//! room again, POP3).
//!
//! Two ways to fill the disk: as root, a 1 MB tmpfs mounted on the mail store and
//! filled up (a real ENOSPC from the kernel); anywhere, the `before-write:enospc` fault
//! point of the `fault-points` build (server/src/fault.rs), which makes the first
//! message write fail with the same error.

use popgate_tests::{Client, Server, Setup, host, message, reply, run, stored};
use std::path::{Path, PathBuf};
use std::process::Command;

const TARO: &str = "taro@example.test";
const PASSWORD: &str = "taro-password";
/// RFC 3463 §3.4 X.3.1 "Mail system full", with the reply table's text.
const DISK_FULL: &str = "452 4.3.1 Insufficient system storage";

/// A tmpfs mounted for the test, unmounted when dropped (also when the test fails).
#[derive(Debug)]
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let out = run(Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path));
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umounted = Command::new("umount").arg(&self.path).status();
        if !umounted.is_ok_and(|s| s.success()) {
            // Still busy (a file the server holds): detach it now, freed when released.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

fn is_root() -> bool {
    run(Command::new("id").arg("-u")).stdout == b"0\n"
}

/// MAIL, RCPT, DATA with `body`; the reply to the end of data. The connection stays
/// open.
fn try_deliver(c: &mut Client, body: &[u8]) -> String {
    assert!(
        c.smtp("MAIL FROM:<sender@elsewhere.test>")
            .starts_with("250 ")
    );
    assert!(c.smtp(&format!("RCPT TO:<{TARO}>")).starts_with("250 "));
    c.smtp_data(body)
}

/// Every file in the user's Maildir (`tmp`, `new`, `cur`).
fn maildir_files(server: &Server) -> Vec<PathBuf> {
    ["tmp", "new", "cur"]
        .iter()
        .flat_map(|sub| server.maildir_files(TARO, sub))
        .collect()
}

/// After a 452: the refusing connection still works, a later delivery is stored, POP3
/// logs in and shows only that one.
fn keeps_serving(server: &Server, mut refused: Client) {
    // C: NOOP / S: 250, C: RSET / S: 250, C: QUIT / S: 221 on the same connection.
    assert!(refused.smtp("NOOP").starts_with("250 "));
    assert!(refused.smtp("RSET").starts_with("250 "));
    assert!(refused.smtp("QUIT").starts_with("221 "));

    let later = message("after the disk emptied");
    let mut c = Client::smtp_from(server.smtp(), host(1));
    let end = try_deliver(&mut c, &later);
    assert!(
        end.starts_with(reply::QUEUED),
        "delivery with room again: {end:?}"
    );
    assert!(c.smtp("QUIT").starts_with("221 "));

    let mut pop = Client::pop3_login(server.pop3(), host(1), TARO, PASSWORD);
    assert!(
        pop.pop("STAT").starts_with("+OK 1 "),
        "only the later message"
    );
    assert!(pop.pop("RETR 1").starts_with("+OK"));
    let mut bytes = Vec::new();
    for line in pop.pop_multiline() {
        bytes.extend_from_slice(&line);
        bytes.extend_from_slice(b"\r\n");
    }
    assert_eq!(stored::split(&bytes).message, later);
    assert!(pop.pop("QUIT").starts_with("+OK"));
}

/// About 200 KB: more than the room left on the full tmpfs.
fn big_message() -> Vec<u8> {
    let mut m = b"Subject: too big for the disk\r\n\r\n".to_vec();
    for n in 0..4000 {
        m.extend_from_slice(format!("line {n:05} {}\r\n", "y".repeat(40)).as_bytes());
    }
    m
}

#[test]
fn a_full_tmpfs_answers_452_and_the_server_keeps_serving() {
    if !is_root() {
        println!(
            "SKIPPED tmpfs disk-full test: needs root to mount a tmpfs (the ENOSPC fault-point test covers the reply)"
        );
        return;
    }
    let server = Setup::default().user(TARO, PASSWORD).start();
    // The mail store (`<data>/mail`) on a 1 MB tmpfs; the Maildir is made on first
    // delivery, so it lands there.
    let tmpfs = match Tmpfs::mount(&server.data_dir().join("mail"), "1m") {
        Ok(t) => t,
        Err(why) => {
            println!("SKIPPED tmpfs disk-full test: {why}");
            return;
        }
    };
    // Fill it, leaving less room than the message needs.
    let filler = tmpfs.path.join("filler");
    std::fs::write(&filler, vec![0u8; 900 * 1024]).expect("write the filler");

    let mut c = Client::smtp_from(server.smtp(), host(1));
    let end = try_deliver(&mut c, &big_message());
    assert_eq!(end, DISK_FULL, "end of data on a full disk");
    assert!(
        maildir_files(&server).is_empty(),
        "a partial file was left: {:?}",
        maildir_files(&server)
    );
    server.wait_log("the disk-full error", |l| l.contains("disk full"));

    std::fs::remove_file(&filler).expect("free the tmpfs");
    keeps_serving(&server, c);
    drop(server);
    drop(tmpfs);
}

#[test]
fn an_enospc_write_answers_452_and_the_server_keeps_serving() {
    // The first message write fails as on a full disk; the next ones succeed.
    let server = Setup::default()
        .user(TARO, PASSWORD)
        .start_with_fault("before-write@1:enospc");
    let mut c = Client::smtp_from(server.smtp(), host(1));
    let end = try_deliver(&mut c, &big_message());
    assert_eq!(
        end, DISK_FULL,
        "end of data when the write fails with ENOSPC"
    );
    assert!(
        maildir_files(&server).is_empty(),
        "a partial file was left: {:?}",
        maildir_files(&server)
    );
    keeps_serving(&server, c);
}
