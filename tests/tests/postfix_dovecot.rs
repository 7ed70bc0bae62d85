//! popgate as the grant engine of Debian's Postfix and Dovecot, end to end.
//!
//! Postfix asks popgate at RCPT through policy delegation (`check_policy_service`) and
//! commits at END-OF-MESSAGE; Dovecot reports its logins, IMAP and POP3, to popgate's
//! auth policy endpoint. Both run from configuration written into a temporary folder,
//! on loopback ports picked for the run (never port 25), started and stopped here.
//!
//! Needs root (Postfix's master starts as root) and the Debian packages postfix,
//! dovecot-core, dovecot-pop3d and dovecot-imapd; as root, missing packages are
//! installed with Postfix's debconf question preseeded to "No configuration".

use popgate_tests::{Client, Server, Setup, host, message, run};
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const USER: &str = "taro@example.test";
const PASSWORD: &str = "taro-secret-9";
const REMOTE: &str = "friend@remote.test";
const PACKAGES: &str = "postfix dovecot-core dovecot-pop3d dovecot-imapd";
/// What each package provides that the test runs.
const PROGRAMS: &[&str] = &[
    "/usr/sbin/postfix",
    "/usr/sbin/postconf",
    "/usr/sbin/dovecot",
    "/usr/bin/doveadm",
    "/usr/lib/dovecot/imap",
    "/usr/lib/dovecot/pop3",
];
/// How long a daemon gets to open its port or exit.
const DAEMON_DEADLINE: Duration = Duration::from_secs(30);
/// The user Dovecot stores mail as: an existing unprivileged account, so the test
/// creates none.
const MAIL_USER: &str = "nobody";

fn is_root() -> bool {
    run(Command::new("id").arg("-u")).stdout.trim_ascii() == b"0"
}

/// Install the packages when root and missing; otherwise fail saying how.
fn ensure_packages() {
    let missing: Vec<&str> = PROGRAMS
        .iter()
        .copied()
        .filter(|p| !Path::new(p).exists())
        .collect();
    let root = is_root();
    if !missing.is_empty() {
        assert!(
            root,
            "missing {}; install them as root with:\n  echo 'postfix postfix/main_mailer_type \
             select No configuration' | debconf-set-selections && \
             DEBIAN_FRONTEND=noninteractive apt-get install -y {PACKAGES}",
            missing.join(", ")
        );
        let preseed = run(Command::new("sh").args([
            "-c",
            "echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections",
        ]));
        assert!(preseed.status.success(), "debconf-set-selections failed");
        let install = run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(PACKAGES.split(' '))
            .env("DEBIAN_FRONTEND", "noninteractive"));
        assert!(
            install.status.success(),
            "apt-get install -y {PACKAGES} failed:\n{}",
            String::from_utf8_lossy(&install.stderr)
        );
    }
    assert!(
        root,
        "Postfix's master process must be started as root: run this test as root"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Poll until `addr` accepts a connection, or fail naming `what` and its log.
fn wait_listening(addr: SocketAddr, what: &str, log: &Path) {
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < DAEMON_DEADLINE,
            "{what} is not listening on {addr}; its log:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::yield_now();
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

fn pid_in(file: &Path) -> Option<u32> {
    fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Postfix and Dovecot configured for popgate, running until dropped.
struct Peers {
    dir: tempfile::TempDir,
    smtp: SocketAddr,
    imap: SocketAddr,
    pop3: SocketAddr,
    postfix_pid: Option<u32>,
    dovecot_pid: Option<u32>,
}

impl Peers {
    fn start(popgate: &Server) -> Peers {
        let dir = tempfile::tempdir().expect("a temporary folder for the peers");
        // Postfix and Dovecot drop privileges: the folder must be searchable by them.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("chmod the peers folder");
        let d = dir.path().display().to_string();
        let policy = popgate.addr("policy");
        let http = popgate.addr("http");
        let (smtp_port, imap_port, pop3_port) = (free_port(), free_port(), free_port());
        let mut peers = Peers {
            smtp: SocketAddr::from(([127, 0, 0, 1], smtp_port)),
            imap: SocketAddr::from(([127, 0, 0, 1], imap_port)),
            pop3: SocketAddr::from(([127, 0, 0, 1], pop3_port)),
            dir,
            postfix_pid: None,
            dovecot_pid: None,
        };

        let postfix = peers.dir.path().join("postfix");
        fs::create_dir_all(&postfix).expect("mkdir postfix");
        write(
            &postfix.join("main.cf"),
            &format!(
                "compatibility_level = 3.6
config_directory = {d}/postfix
queue_directory = {d}/postfix-queue
data_directory = {d}/postfix-data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = peer.example.test
mydomain = example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
biff = no
in_flow_delay = 0
default_transport = discard:
relay_transport = discard:
local_transport = discard:
# popgate decides relaying for clients that logged in (see README: Postfix and Dovecot).
smtpd_relay_restrictions = permit_mynetworks, check_policy_service inet:{policy}, reject_unauth_destination
smtpd_end_of_data_restrictions = check_policy_service inet:{policy}
"
            ),
        );
        write(
            &postfix.join("master.cf"),
            &format!(
                "127.0.0.1:{smtp_port} inet n - n - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"
            ),
        );
        fs::create_dir_all(peers.dir.path().join("postfix-queue")).expect("mkdir queue");
        let data = peers.dir.path().join("postfix-data");
        fs::create_dir_all(&data).expect("mkdir postfix data");
        peers.must(Command::new("chown").arg("postfix").arg(&data));
        peers.must(Command::new("postfix").arg("-c").arg(&postfix).arg("check"));

        let vmail = peers.dir.path().join("vmail");
        fs::create_dir_all(&vmail).expect("mkdir vmail");
        peers.must(Command::new("chown").arg(MAIL_USER).arg(&vmail));
        let users = peers.dir.path().join("dovecot-users");
        write(&users, &format!("{USER}:{{PLAIN}}{PASSWORD}::::::\n"));
        let state = peers.dir.path().join("dovecot-state");
        fs::create_dir_all(&state).expect("mkdir dovecot state");
        write(
            &peers.dovecot_conf(),
            &format!(
                "base_dir = {d}/dovecot-run
state_dir = {d}/dovecot-state
log_path = {d}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = {users}
}}
userdb {{
  driver = static
  args = uid={MAIL_USER} gid=nogroup home={vmail}/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
# popgate grants on Dovecot's login reports (see README: Postfix and Dovecot).
auth_policy_server_url = http://{http}/api/dovecot/policy
auth_policy_hash_nonce = popgate-test-nonce
auth_policy_check_before_auth = no
auth_policy_check_after_auth = no
auth_policy_report_after_auth = yes
auth_policy_request_attributes = login=%{{requested_username}} remote=%{{rip}} protocol=%s secured=%{{secured}}
",
                users = users.display(),
                vmail = vmail.display(),
            ),
        );

        peers.daemon(Command::new("postfix").arg("-c").arg(&postfix).arg("start"));
        peers.postfix_pid = pid_in(&peers.dir.path().join("postfix-queue/pid/master.pid"));
        peers.daemon(Command::new("dovecot").arg("-c").arg(peers.dovecot_conf()));
        peers.dovecot_pid = pid_in(&peers.dir.path().join("dovecot-run/master.pid"));
        wait_listening(peers.smtp, "Postfix", &peers.dir.path().join("postfix.log"));
        let dovecot_log = peers.dir.path().join("dovecot.log");
        wait_listening(peers.imap, "Dovecot IMAP", &dovecot_log);
        wait_listening(peers.pop3, "Dovecot POP3", &dovecot_log);
        peers
    }

    fn dovecot_conf(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    /// Run a setup command that must succeed; on failure stop what started and fail.
    fn must(&self, cmd: &mut Command) {
        let out = run(cmd);
        assert!(
            out.status.success(),
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start a daemon that detaches: its stdio goes nowhere (a pipe would stay open in
    /// the daemon), what it says goes to its log file.
    fn daemon(&self, cmd: &mut Command) {
        let status = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        assert!(
            status.success(),
            "{cmd:?} failed ({status}):\n{}",
            self.logs()
        );
    }

    fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "---- postfix.log ----\n{}---- dovecot.log ----\n{}",
            read("postfix.log"),
            read("dovecot.log")
        )
    }

    fn stop(&mut self) {
        let _ = run(Command::new("postfix")
            .arg("-c")
            .arg(self.dir.path().join("postfix"))
            .arg("stop"));
        let _ = run(Command::new("doveadm")
            .arg("-c")
            .arg(self.dovecot_conf())
            .arg("stop"));
        for pid in [self.postfix_pid.take(), self.dovecot_pid.take()]
            .into_iter()
            .flatten()
        {
            let start = Instant::now();
            while alive(pid) && start.elapsed() < DAEMON_DEADLINE {
                std::thread::park_timeout(Duration::from_millis(50));
            }
            if alive(pid) {
                let _ = run(Command::new("kill").arg("-KILL").arg(pid.to_string()));
            }
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.stop();
    }
}

/// Log in to Dovecot over `mode` (`imap`, `pop3` or `none`) from `source`, then at once
/// relay one message through Postfix from the same address, in one python process: no
/// pause and no retry between the login's OK and the SMTP connection. Prints
/// `LOGIN <reply>`, `RCPT <code>` and, when RCPT was accepted, `DATA <code>`.
const LOGIN_THEN_RELAY: &str = r#"
import imaplib, poplib, smtplib, socket, sys
mode, source, login_port, smtp_port, user, password, rcpt = sys.argv[1:8]
src = (source, 0)

class IMAP(imaplib.IMAP4):
    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=src)

class POP(poplib.POP3):
    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=src)

session = None
if mode == "imap":
    session = IMAP("127.0.0.1", int(login_port), timeout=30)
    typ, data = session.login(user, password)
    print("LOGIN", typ)
elif mode == "pop3":
    session = POP("127.0.0.1", int(login_port), timeout=30)
    session.user(user)
    print("LOGIN", session.pass_(password).decode().split()[0])

smtp = smtplib.SMTP("127.0.0.1", int(smtp_port), source_address=src, timeout=30)
smtp.ehlo("client.test")
smtp.mail("taro@example.test")
code, text = smtp.rcpt(rcpt)
print("RCPT", code, text.decode())
if code == 250:
    code, text = smtp.data(b"Subject: via postfix\r\n\r\nhello\r\n")
    print("DATA", code)
smtp.quit()
if mode == "imap":
    session.logout()
elif mode == "pop3":
    session.quit()
"#;

struct Relay {
    login: Option<String>,
    rcpt: u16,
    data: Option<u16>,
}

fn login_then_relay(peers: &Peers, mode: &str, source: u8) -> Relay {
    let login_port = match mode {
        "imap" => peers.imap.port(),
        "pop3" => peers.pop3.port(),
        _ => 0,
    };
    let out = run(Command::new("python3")
        .arg("-c")
        .arg(LOGIN_THEN_RELAY)
        .arg(mode)
        .arg(host(source).to_string())
        .arg(login_port.to_string())
        .arg(peers.smtp.port().to_string())
        .args([USER, PASSWORD, REMOTE]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python ({mode} from 127.0.0.{source}) failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|rest| rest.trim().to_owned())
    };
    let code = |key: &str| {
        field(key).map(|v| {
            v.split(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("{key}: not a reply code in {text:?}"))
        })
    };
    Relay {
        login: field("LOGIN "),
        rcpt: code("RCPT ").unwrap_or_else(|| panic!("no RCPT line in {text:?}")),
        data: code("DATA "),
    }
}

fn assert_relayed(r: &Relay, what: &str) {
    assert_eq!(r.rcpt, 250, "{what}: RCPT");
    assert_eq!(r.data, Some(250), "{what}: end of data");
}

fn assert_refused(r: &Relay, what: &str) {
    assert_eq!(
        r.rcpt, 554,
        "{what}: RCPT (Postfix's reject_unauth_destination)"
    );
    assert_eq!(r.data, None, "{what}: no DATA");
}

/// Relay from `source` with a raw SMTP client; the RCPT reply line.
fn rcpt_from(peers: &Peers, source: u8) -> String {
    let mut c = Client::smtp_from(peers.smtp, host(source));
    let mail = c.smtp("MAIL FROM:<taro@example.test>");
    assert!(mail.starts_with("250 "), "MAIL: {mail:?}");
    let rcpt = c.smtp(&format!("RCPT TO:<{REMOTE}>"));
    if rcpt.starts_with("250 ") {
        let end = c.smtp_data(&message("via postfix"));
        assert!(end.starts_with("250 "), "end of data: {end:?}");
    }
    c.smtp("QUIT");
    rcpt
}

fn curl(args: &[&str]) -> String {
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args));
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn snapshot(popgate: &Server) -> serde_json::Value {
    let body = curl(&[&format!("http://{}/api/snapshot", popgate.addr("http"))]);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("snapshot JSON: {e}\n{body}"))
}

fn counter(snapshot: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = &snapshot["counters"];
    for key in path {
        v = &v[*key];
    }
    v.as_u64().unwrap_or(0)
}

#[test]
fn postfix_and_dovecot_use_popgate_as_their_grant_engine() {
    ensure_packages();
    // Every login grant lasts two messages, so one grant shows "one message left".
    let popgate = Setup::default()
        .listeners(&["http", "policy"])
        .max_messages(2)
        .start();
    let mut peers = Peers::start(&popgate);

    // Nobody logged in from 127.0.0.3: Postfix refuses to relay for it.
    let stranger = login_then_relay(&peers, "none", 3);
    assert_refused(&stranger, "127.0.0.3 without a login");

    // An IMAP login to Dovecot from 127.0.0.2 lets it relay through Postfix at once.
    let imap = login_then_relay(&peers, "imap", 2);
    assert_eq!(imap.login.as_deref(), Some("OK"), "IMAP LOGIN");
    assert_relayed(&imap, "127.0.0.2 right after its IMAP login");
    // The grant names the user and the protocol.
    let grants = curl(&[&format!("http://{}/api/grants", popgate.addr("http"))]);
    assert!(
        grants.contains(USER) && grants.contains("dovecot imap"),
        "grant after the IMAP login: {grants}"
    );

    // That grant has one message left: exactly one more relays, then Postfix refuses.
    assert!(
        rcpt_from(&peers, 2).starts_with("250 "),
        "the grant's last message"
    );
    let spent = rcpt_from(&peers, 2);
    assert!(
        spent.starts_with("554 5.7.1") && spent.contains("Relay access denied"),
        "a spent grant: {spent:?}"
    );

    // A POP3 login through Dovecot from 127.0.0.4 does the same.
    let pop3 = login_then_relay(&peers, "pop3", 4);
    assert_eq!(pop3.login.as_deref(), Some("+OK"), "POP3 PASS");
    assert_relayed(&pop3, "127.0.0.4 right after its POP3 login");

    // A revoke in popgate refuses the next relay at once.
    let revoked = curl(&[
        "-X",
        "DELETE",
        &format!("http://{}/api/grants/127.0.0.4", popgate.addr("http")),
    ]);
    assert!(revoked.contains("127.0.0.4"), "revoke: {revoked}");
    let after = rcpt_from(&peers, 4);
    assert!(
        after.starts_with("554 5.7.1"),
        "after the revoke: {after:?}"
    );

    // Postfix's decisions and Dovecot's logins are in the dashboard's snapshot.
    let snap = snapshot(&popgate);
    let sessions = &["sessions_by_protocol"];
    assert!(
        counter(&snap, &[sessions[0], "policy"]) >= 1,
        "policy sessions: {}",
        snap["counters"]
    );
    assert_eq!(
        counter(&snap, &[sessions[0], "dovecot"]),
        2,
        "dovecot logins: {}",
        snap["counters"]
    );
    assert_eq!(
        counter(&snap, &["grants_created"]),
        2,
        "{}",
        snap["counters"]
    );
    assert_eq!(counter(&snap, &["grants_used"]), 3, "{}", snap["counters"]);
    assert_eq!(
        counter(&snap, &["grants_revoked"]),
        1,
        "{}",
        snap["counters"]
    );
    assert!(
        counter(&snap, &["relay_by_grant"]) >= 3,
        "{}",
        snap["counters"]
    );
    assert!(
        counter(&snap, &["relay_denied"]) >= 3,
        "{}",
        snap["counters"]
    );
    let timeline = snap["timeline"].to_string();
    // The relay links to the Dovecot login that made its grant.
    assert!(
        timeline.contains("\"mechanism\":\"dovecot imap\"")
            && timeline.contains("\"mechanism\":\"dovecot pop3\""),
        "Dovecot logins in the timeline: {timeline}"
    );
    for kind in [
        "login",
        "grant_created",
        "relay_allowed",
        "relay_denied",
        "grant_used",
    ] {
        assert!(
            timeline.contains(&format!("{{\"{kind}\":")),
            "no {kind} in the timeline: {timeline}"
        );
    }

    // Everything started here stops, and nothing is left listening.
    let ports = [peers.smtp, peers.imap, peers.pop3];
    peers.stop();
    drop(peers);
    for addr in ports {
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
            "{addr} still listening after the peers stopped"
        );
    }
    let port25 = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], 25)),
        Duration::from_secs(1),
    );
    assert!(port25.is_err(), "something listens on port 25");
}
