//! Hardening on the connection side, against the real binary: line floods, the cap
//! on connections per client address, whole-command and DATA-rate timeouts, PROXY
//! protocol from a trusted load balancer only, dropping root, private file modes,
//! fail2ban-matchable log lines and the grant table's size cap.
//!
//! Timeouts are configured short (1-2 s) and every wait is for the server's own close
//! (read until EOF); the only sleeps pace a deliberately slow client.

use popgate_tests::{
    Client, Server, Setup, host, is_event, log_field, message, relay_rcpt, reply, send_local,
};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

const BOB: &str = "bob@example.test";
const PW: &str = "bob-secret-7";
const REMOTE: &str = "someone@remote.test";

/// The exact replies these tests expect (DESIGN.md reply table; Postfix's texts).
const LINE_TOO_LONG: &str = "500 5.5.6 Line too long";
const POP3_LINE_TOO_LONG: &str = "-ERR Line too long";
const TIMEOUT: &str = "421 4.4.2 Error: timeout exceeded";
const POP3_TIMEOUT: &str = "-ERR Autologout; idle for too long";
const POP3_TOO_MANY_CONNECTIONS: &str = "-ERR [SYS/TEMP] Too many connections";

fn setup() -> Setup {
    Setup::default().user(BOB, PW)
}

/// 10 MB without a line end.
const FLOOD: usize = 10 * 1024 * 1024;

/// Write `FLOOD` octets of `x` from another thread, ignoring the error the server's
/// close causes, while the caller reads.
fn flood(c: &Client) -> thread::JoinHandle<()> {
    let mut w = c.writer();
    thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..FLOOD / chunk.len() {
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
    })
}

/// Write `bytes` over and over, one octet every `every`, until the server closes: a
/// client that never completes a line.
fn trickle(c: &Client, bytes: &'static [u8], every: Duration) {
    let mut w: TcpStream = c.writer();
    thread::spawn(move || {
        for b in bytes.iter().cycle() {
            if w.write_all(&[*b]).is_err() {
                return;
            }
            thread::sleep(every);
        }
    });
}

/// The server still greets and answers a new client from another address.
fn still_serving(server: &Server) {
    let mut c = Client::smtp_from(server.smtp(), host(9));
    assert_eq!(c.smtp("NOOP"), "250 2.0.0 Ok", "NOOP on a new connection");
    let mut p = Client::connect_from(server.pop3(), host(9));
    let greeting = p.read_line();
    assert!(greeting.starts_with("+OK"), "POP3 greeting: {greeting:?}");
}

// ---------------------------------------------------------------------------------
// 1. Line lengths

#[test]
fn a_10_mb_smtp_command_line_gets_500_at_the_limit_and_a_close() {
    let server = setup().start();
    let mut c = Client::smtp_from(server.smtp(), host(2));
    let writer = flood(&c);
    assert_eq!(c.read_line(), LINE_TOO_LONG);
    assert_eq!(
        c.wait_closed(),
        b"",
        "bytes after the 500, before the close"
    );
    writer.join().expect("the flooding thread");
    still_serving(&server);
}

#[test]
fn a_10_mb_data_line_gets_500_at_the_text_line_limit_and_a_close() {
    let server = setup()
        .toml("[limits]\nsmtp_text_line_length = 998\nmax_message_size = 20000000\n")
        .start();
    let mut c = Client::smtp_from(server.smtp(), host(2));
    assert!(
        c.smtp("MAIL FROM:<sender@elsewhere.test>")
            .starts_with("250 ")
    );
    assert!(c.smtp(&format!("RCPT TO:<{BOB}>")).starts_with("250 "));
    assert!(c.smtp("DATA").starts_with("354 "));
    // RFC 5321 §4.5.3.1.6: 998 octets and the CRLF are fine...
    let mut line = vec![b'a'; 998];
    line.extend_from_slice(b"\r\n");
    c.send(&line);
    // ...one line of 10 MB is not.
    let writer = flood(&c);
    assert_eq!(c.read_line(), LINE_TOO_LONG);
    assert_eq!(
        c.wait_closed(),
        b"",
        "bytes after the 500, before the close"
    );
    writer.join().expect("the flooding thread");
    assert!(
        server.maildir_files(BOB, "new").is_empty(),
        "a message was stored"
    );
    still_serving(&server);
}

#[test]
fn a_10_mb_pop3_line_gets_err_at_the_limit_and_a_close() {
    // RFC 2449 §4: 255 octets with the CRLF.
    let server = setup().toml("[limits]\npop3_line_length = 253\n").start();
    let mut c = Client::connect_from(server.pop3(), host(2));
    assert!(c.read_line().starts_with("+OK"));
    // 254 octets: over the configured limit, answered, and the session goes on.
    let r = c.pop(&format!("USER {}", "u".repeat(249)));
    assert_eq!(r, POP3_LINE_TOO_LONG, "a 254-octet command");
    assert!(c.pop("NOOP").starts_with("-ERR"), "NOOP before login");
    let writer = flood(&c);
    assert_eq!(c.read_line(), POP3_LINE_TOO_LONG);
    assert_eq!(
        c.wait_closed(),
        b"",
        "bytes after the -ERR, before the close"
    );
    writer.join().expect("the flooding thread");
    still_serving(&server);
}

// ---------------------------------------------------------------------------------
// 2. Connections per client address

#[test]
fn two_hundred_connections_from_one_address_get_20_sessions_and_180_refusals() {
    let server = setup()
        .toml("[limits]\nmax_connections_per_address = 20\n")
        .start();
    let mut clients: Vec<Client> = (0..200)
        .map(|_| Client::connect_from(server.smtp(), host(2)))
        .collect();
    let refusal = "421 4.7.0 Error: too many connections from 127.0.0.2";
    let (mut served, mut refused) = (Vec::new(), 0);
    for mut c in clients.drain(..) {
        let first = c.read_line();
        if first.starts_with("220 ") {
            served.push(c);
        } else {
            assert_eq!(first, refusal);
            assert_eq!(c.wait_closed(), b"", "bytes after the 421");
            refused += 1;
        }
    }
    assert_eq!((served.len(), refused), (20, 180));

    // The cap is per client, over every listener: POP3 from 127.0.0.2 is refused too...
    let mut p = Client::connect_from(server.pop3(), host(2));
    assert_eq!(p.read_line(), POP3_TOO_MANY_CONNECTIONS);
    assert_eq!(p.wait_closed(), b"");
    // ...while 127.0.0.3 is served and delivers.
    let mut c = Client::smtp_from(server.smtp(), host(3));
    assert!(
        c.smtp("MAIL FROM:<sender@elsewhere.test>")
            .starts_with("250 ")
    );
    assert!(c.smtp(&format!("RCPT TO:<{BOB}>")).starts_with("250 "));
    let r = c.smtp_data(&message("from 127.0.0.3"));
    assert!(r.starts_with(reply::QUEUED), "end of data: {r:?}");
    assert_eq!(server.maildir_files(BOB, "new").len(), 1);
    // The 20 sessions are whole sessions.
    for c in &mut served {
        assert_eq!(c.smtp("NOOP"), "250 2.0.0 Ok");
    }
    let line = server.wait_log("refusing 127.0.0.2", |l| {
        is_event(l, "refused") && log_field(l, "peer") == Some("127.0.0.2")
    });
    assert_eq!(
        log_field(&line, "reason"),
        Some("too_many_connections_from_address")
    );
}

// ---------------------------------------------------------------------------------
// 3. Timeouts

#[test]
fn a_client_trickling_one_byte_at_a_time_is_closed_at_the_command_timeout() {
    let server = setup()
        .toml("[limits]\nsmtp_idle_timeout = \"1s\"\npop3_idle_timeout = \"1s\"\n")
        .start();
    // RFC 5321 §4.5.3.2.7: the timeout is for the whole command, not each byte.
    let mut c = Client::smtp_from(server.smtp(), host(2));
    trickle(&c, b"NOOP", Duration::from_millis(100));
    assert_eq!(c.smtp_last(), TIMEOUT);
    assert_eq!(c.wait_closed(), b"", "bytes after the 421");

    let mut p = Client::connect_from(server.pop3(), host(2));
    assert!(p.read_line().starts_with("+OK"));
    trickle(&p, b"USER bob", Duration::from_millis(100));
    assert_eq!(p.read_line(), POP3_TIMEOUT);
    assert_eq!(p.wait_closed(), b"", "bytes after the -ERR");
}

#[test]
fn a_client_below_the_minimum_data_rate_gets_421_4_4_2() {
    // Postfix smtpd_min_data_rate: each octet buys 1/rate s; 20 octets/s at a rate of
    // 100000 earns nothing worth mentioning, so DATA ends at the 2 s timeout.
    let server = setup()
        .toml("[limits]\nsmtp_idle_timeout = \"2s\"\nmin_data_rate = 100000\n")
        .start();
    let mut c = Client::smtp_from(server.smtp(), host(2));
    assert!(
        c.smtp("MAIL FROM:<sender@elsewhere.test>")
            .starts_with("250 ")
    );
    assert!(c.smtp(&format!("RCPT TO:<{BOB}>")).starts_with("250 "));
    assert!(c.smtp("DATA").starts_with("354 "));
    trickle(
        &c,
        b"Subject: slow\r\n\r\nbody\r\n",
        Duration::from_millis(50),
    );
    assert_eq!(c.smtp_last(), TIMEOUT);
    assert_eq!(c.wait_closed(), b"", "bytes after the 421");
    assert!(server.maildir_files(BOB, "new").is_empty());
    // A client at full speed on the same server is not affected.
    send_local(server.smtp(), BOB, &message("fast"));
    assert_eq!(server.maildir_files(BOB, "new").len(), 1);
}

// ---------------------------------------------------------------------------------
// 4. PROXY protocol

const PROXY: u8 = 5;

fn behind_proxy() -> Server {
    setup()
        .listen_setting("proxy = [\"pop3\"]")
        .listen_setting(&format!("proxy_from = [\"{}/32\"]", host(PROXY)))
        .start()
}

/// proxy-protocol.txt §2.2, spelled out: signature, v2 PROXY, TCP over IPv4, 12
/// octets of addresses and ports.
fn v2_header(client: IpAddr, port: u16, to: SocketAddr) -> Vec<u8> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (client, to.ip()) else {
        panic!("IPv4 only here");
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&to.port().to_be_bytes());
    h
}

/// Log in over POP3 through the proxy, the connection having started with `header`.
fn login_through_proxy(server: &Server, header: &[u8]) {
    let mut c = Client::connect_from(server.pop3(), host(PROXY));
    c.send(header);
    let greeting = c.read_line();
    assert!(
        greeting.starts_with("+OK"),
        "greeting after the header: {greeting:?}"
    );
    assert!(c.pop(&format!("USER {BOB}")).starts_with("+OK"));
    assert!(c.pop(&format!("PASS {PW}")).starts_with("+OK"));
    assert!(c.pop("QUIT").starts_with("+OK"));
}

#[test]
fn a_trusted_proxy_names_the_client_that_gets_the_grant() {
    let server = behind_proxy();
    let v1 = format!(
        "PROXY TCP4 127.0.0.2 127.0.0.1 40000 {}\r\n",
        server.pop3().port()
    );
    login_through_proxy(&server, v1.as_bytes());
    let opened = server.wait_log("the POP3 session of 127.0.0.2", |l| {
        is_event(l, "connect") && log_field(l, "protocol") == Some("pop3")
    });
    assert_eq!(log_field(&opened, "peer"), Some("127.0.0.2:40000"));
    // The grant is the client's, not the proxy's.
    let mut c = Client::smtp_from(server.smtp(), host(2));
    assert_eq!(
        relay_rcpt(&mut c, REMOTE),
        "250 2.1.5 Ok",
        "relay from 127.0.0.2"
    );
    let mut c = Client::smtp_from(server.smtp(), host(PROXY));
    assert_eq!(
        relay_rcpt(&mut c, REMOTE),
        reply::RELAY_DENIED,
        "relay from the proxy"
    );

    // Version 2 works too.
    login_through_proxy(&server, &v2_header(host(3), 40001, server.pop3()));
    let mut c = Client::smtp_from(server.smtp(), host(3));
    assert_eq!(
        relay_rcpt(&mut c, REMOTE),
        "250 2.1.5 Ok",
        "relay from 127.0.0.3"
    );
}

#[test]
fn a_proxy_header_from_anyone_else_or_a_missing_or_bad_one_closes() {
    let server = behind_proxy();
    let v1 = format!(
        "PROXY TCP4 127.0.0.2 127.0.0.1 40000 {}\r\n",
        server.pop3().port()
    );
    let cases: [(&str, u8, Vec<u8>, &str); 5] = [
        (
            "a v1 header from 127.0.0.6",
            6,
            v1.clone().into_bytes(),
            "untrusted_proxy",
        ),
        (
            "a v2 header from 127.0.0.6",
            6,
            v2_header(host(2), 1, server.pop3()),
            "untrusted_proxy",
        ),
        (
            "no header from the proxy",
            PROXY,
            b"USER bob@example.test\r\n".to_vec(),
            "proxy_header_missing",
        ),
        (
            "a malformed v1 header",
            PROXY,
            b"PROXY TCP4 127.0.0.2 40000\r\n".to_vec(),
            "proxy_header_malformed",
        ),
        (
            "a v2 header with version 1",
            PROXY,
            {
                let mut h = v2_header(host(2), 1, server.pop3());
                h[12] = 0x11;
                h
            },
            "proxy_header_malformed",
        ),
    ];
    for (what, from, header, reason) in cases {
        let mark = server.log_len();
        let mut c = Client::connect_from(server.pop3(), host(from));
        c.send(&header);
        assert_eq!(c.wait_closed(), b"", "{what}: the server said something");
        let (_, line) = server.wait_log_after(mark, what, |l| {
            is_event(l, "refused") && log_field(l, "peer") == Some(&host(from).to_string())
        });
        assert_eq!(log_field(&line, "reason"), Some(reason), "{what}");
    }
    // Nobody got a grant from any of that.
    let mut c = Client::smtp_from(server.smtp(), host(2));
    assert_eq!(relay_rcpt(&mut c, REMOTE), reply::RELAY_DENIED);
}

// ---------------------------------------------------------------------------------
// 5. Privilege and file modes

/// `(uid, gid)` of a user in /etc/passwd.
fn passwd_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name) && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

/// The four ids of a `Uid:` or `Gid:` line of /proc/<pid>/status.
fn proc_ids(pid: u32, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} line in /proc/{pid}/status"));
    line[key.len()..]
        .split_whitespace()
        .map(|n| n.parse().expect("an id"))
        .collect()
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    if path.is_dir() && !path.is_symlink() {
        for entry in std::fs::read_dir(path).expect("read_dir") {
            chown_tree(&entry.expect("entry").path(), uid, gid);
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn started_as_root_it_serves_as_the_configured_user() {
    if proc_ids(std::process::id(), "Uid:").first() != Some(&0) {
        eprintln!("skipped: dropping privileges is tested only when run as root");
        return;
    }
    let Some((uid, gid)) = passwd_ids("nobody") else {
        eprintln!("skipped: no user `nobody` in /etc/passwd");
        return;
    };
    let prepared = setup().toml("[server]\nuser = \"nobody\"\n").prepare();
    // The data folder belongs to the service user, as an operator sets it up; the
    // temporary folder above it must let that user through.
    std::fs::set_permissions(prepared.dir(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod the temporary folder");
    chown_tree(prepared.data_dir(), uid, gid);
    let server = prepared.start();

    // Real, effective, saved and filesystem ids are all nobody's: no way back.
    assert_eq!(proc_ids(server.pid(), "Uid:"), vec![uid; 4]);
    assert_eq!(proc_ids(server.pid(), "Gid:"), vec![gid; 4]);
    let groups = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .expect("status")
        .lines()
        .find(|l| l.starts_with("Groups:"))
        .map(|l| l["Groups:".len()..].trim().to_string());
    assert_eq!(
        groups.as_deref(),
        Some(gid.to_string().as_str()),
        "root's groups kept"
    );
    server.wait_log("the drop logged", |l| {
        is_event(l, "privileges_dropped") && log_field(l, "user") == Some("nobody")
    });

    send_local(server.smtp(), BOB, &message("delivered by nobody"));
    let files = server.maildir_files(BOB, "new");
    assert_eq!(files.len(), 1);
    let meta = std::fs::metadata(&files[0]).expect("metadata");
    assert_eq!(meta.uid(), uid, "the message file's owner");
    assert_eq!(mode(&files[0]), 0o600, "the message file's mode");
    assert_eq!(mode(&server.maildir(BOB).join("new")), 0o700);
}

#[test]
fn every_file_and_folder_popgate_creates_is_private() {
    // The umask is 077 whatever the caller's: a relayed message in the queue, the
    // generated TLS pair, Maildir, the users file.
    let server = setup().start();
    let mut pop = Client::pop3_login(server.pop3(), host(2), BOB, PW);
    assert!(pop.pop("QUIT").starts_with("+OK"));
    let mut c = Client::smtp_from(server.smtp(), host(2));
    assert_eq!(relay_rcpt(&mut c, REMOTE), "250 2.1.5 Ok");
    let r = c.smtp_data(&message("queued"));
    assert!(r.starts_with(reply::QUEUED), "end of data: {r:?}");
    send_local(server.smtp(), BOB, &message("local"));

    let mut checked = 0;
    let mut stack = vec![server.data_dir().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let m = mode(&path);
            assert_eq!(m & 0o077, 0, "{} is {m:o}", path.display());
            checked += 1;
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    assert!(
        server.files_under("queue").len() >= 2,
        "the relayed message is queued"
    );
    assert!(checked > 10, "only {checked} paths under the data folder");
}

// ---------------------------------------------------------------------------------
// 6. fail2ban

/// The filter the README documents, word for word.
const FAIL2BAN_FILTER: &str = r#"[Definition]
failregex = ^.*\bevent=auth_failed session=\d+ peer=<HOST> .*$
            ^.*\bevent=relay session=\d+ peer=<HOST> .*\bdecision=denied\b.*$
ignoreregex =
"#;

#[test]
fn one_log_line_per_failed_login_and_refused_relay_with_the_address() {
    let server = setup()
        .toml("[auth]\nfailure_delay = \"10ms\"\nfailure_delay_max = \"20ms\"\n")
        .start();
    let wrong = "not-the-password-8231";
    let mark = server.log_len();
    for n in 2..=3 {
        let mut c = Client::connect_from(server.pop3(), host(n));
        assert!(c.read_line().starts_with("+OK"));
        assert!(c.pop(&format!("USER {BOB}")).starts_with("+OK"));
        assert!(
            c.pop(&format!("PASS {wrong}"))
                .starts_with(reply::POP3_AUTH)
        );
        assert!(c.pop("QUIT").starts_with("+OK"));
    }
    let mut c = Client::smtp_from(server.smtp(), host(4));
    assert_eq!(relay_rcpt(&mut c, REMOTE), reply::RELAY_DENIED);
    assert!(c.smtp("QUIT").starts_with("221 "));
    server.wait_log_after(mark, "the refused relay", |l| is_event(l, "relay"));

    let lines: Vec<String> = server.log_lines().split_off(mark);
    let failed: Vec<&String> = lines
        .iter()
        .filter(|l| is_event(l, "auth_failed"))
        .collect();
    let peers: Vec<Option<&str>> = failed.iter().map(|l| log_field(l, "peer")).collect();
    assert_eq!(
        peers,
        vec![Some("127.0.0.2"), Some("127.0.0.3")],
        "{failed:#?}"
    );
    assert!(failed.iter().all(|l| log_field(l, "user") == Some(BOB)));
    let denied: Vec<&String> = lines
        .iter()
        .filter(|l| is_event(l, "relay") && l.contains("decision=denied"))
        .collect();
    assert_eq!(denied.len(), 1, "{denied:#?}");
    assert_eq!(log_field(denied[0], "peer"), Some("127.0.0.4"));
    let all = server.stderr_log();
    assert!(!all.contains(wrong), "the password is in the log");

    // fail2ban itself, on the same lines, finds exactly those three.
    if Command::new("fail2ban-regex")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!(
            "skipped the fail2ban-regex check: fail2ban is not installed (apt-get install fail2ban)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("popgate.log");
    std::fs::write(&log, lines.join("\n") + "\n").expect("write the log");
    let filter = dir.path().join("popgate.conf");
    std::fs::write(&filter, FAIL2BAN_FILTER).expect("write the filter");
    let out = Command::new("fail2ban-regex")
        .arg("--print-all-matched")
        .arg(&log)
        .arg(&filter)
        .output()
        .expect("run fail2ban-regex");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "fail2ban-regex failed:\n{text}");
    let summary = text
        .lines()
        .find(|l| l.starts_with("Lines:"))
        .unwrap_or_else(|| panic!("no summary from fail2ban-regex:\n{text}"));
    assert!(summary.contains(", 3 matched"), "{summary}\n{text}");
    for n in 2..=4 {
        assert!(
            text.contains(&format!("{}", host(n))),
            "fail2ban did not find {}:\n{text}",
            host(n)
        );
    }
}

// ---------------------------------------------------------------------------------
// 7. The grant table's size

#[test]
fn a_full_grant_table_evicts_the_oldest_grant_and_keeps_serving() {
    let server = setup().grant_setting("max_entries = 2").start();
    for n in 2..=4 {
        let mut c = Client::pop3_login(server.pop3(), host(n), BOB, PW);
        assert!(c.pop("QUIT").starts_with("+OK"));
    }
    let relay = |n: u8| {
        let mut c = Client::smtp_from(server.smtp(), host(n));
        relay_rcpt(&mut c, REMOTE)
    };
    assert_eq!(
        relay(2),
        reply::RELAY_DENIED,
        "the oldest grant (127.0.0.2)"
    );
    assert_eq!(relay(3), "250 2.1.5 Ok");
    assert_eq!(relay(4), "250 2.1.5 Ok");
    still_serving(&server);
}
