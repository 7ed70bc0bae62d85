//! popgate and the peers (Postfix + Dovecot), configured from the pinned templates in
//! the repository's `bench/` folder with ports and paths filled in, started, and
//! stopped by the process ids we started (never by name).

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};

pub const DOMAIN: &str = "example.test";
pub const PASSWORD: &str = "benchpass";

const POPGATE_TOML: &str = include_str!("../../../bench/popgate.toml");
const MAIN_CF: &str = include_str!("../../../bench/postfix/main.cf");
const MASTER_CF: &str = include_str!("../../../bench/postfix/master.cf");
const DOVECOT_CONF: &str = include_str!("../../../bench/dovecot/dovecot.conf");
const POSTLOGIN_CONF: &str = include_str!("../../../bench/dovecot/postlogin.conf");
const POPBSMTP_SH: &str = include_str!("../../../bench/dovecot/popbsmtp.sh");

/// The mail user of the peers' mailboxes (virtual(8), Dovecot's mail processes).
const PEER_USER: &str = "popbench";
/// Open files for every server: 10,000 idle connections plus everything else. As many
/// as this process may have (the hard limit: raising it needs CAP_SYS_RESOURCE).
fn nofile() -> String {
    let hard = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(65_536, |(_, hard)| hard);
    format!("--nofile={hard}:{hard}")
}
const START_DEADLINE: Duration = Duration::from_secs(60);

/// `{{NAME}}` placeholders replaced; a placeholder left over is an error.
pub fn fill(template: &str, vars: &[(&str, String)]) -> Result<String> {
    let mut text = template.to_string();
    for (name, value) in vars {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    if let Some(at) = text.find("{{") {
        let end = text[at..].find("}}").map_or(text.len(), |e| at + e + 2);
        bail!("template placeholder {} is not filled in", &text[at..end]);
    }
    Ok(text)
}

/// A passwd-file (Dovecot's format, which popgate reads too) giving every user the
/// same `{SHA512-CRYPT}` hash, so both sides verify exactly the same way.
pub fn passwd_file(users: &[String], hash: &str) -> String {
    users
        .iter()
        .map(|u| format!("{u}@{DOMAIN}:{{SHA512-CRYPT}}{hash}\n"))
        .collect()
}

/// `<base>/<domain>/<user>/Maildir`: popgate's layout and the one configured for
/// Postfix's virtual(8) and Dovecot.
pub fn maildir(base: &Path, user: &str) -> PathBuf {
    base.join(DOMAIN).join(user).join("Maildir")
}

pub fn make_maildir(base: &Path, user: &str) -> Result<()> {
    let dir = maildir(base, user);
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(dir.join(sub)).with_context(|| format!("create {}", dir.display()))?;
    }
    Ok(())
}

/// Messages in `new/` and `cur/`.
pub fn count_messages(base: &Path, user: &str) -> usize {
    let dir = maildir(base, user);
    ["new", "cur"]
        .iter()
        .filter_map(|sub| fs::read_dir(dir.join(sub)).ok())
        .map(|d| d.count())
        .sum()
}

/// Writes `count` 4 KB messages straight into `new/` (as a delivery agent would).
pub fn prefill(base: &Path, user: &str, count: usize, body: &[u8]) -> Result<()> {
    let new = maildir(base, user).join("new");
    for i in 0..count {
        let name = format!(
            "{}.M{i}P{}.bench,S={}",
            1_700_000_000 + i,
            std::process::id(),
            body.len()
        );
        fs::write(new.join(name), body)?;
    }
    Ok(())
}

/// A free loopback port (bound and released: another process could take it between,
/// which on a bench machine does not happen in practice).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Starts a daemon that forks into the background. Its stdio goes to /dev/null: a
/// daemon's children would otherwise hold our pipes open and `output()` would wait for
/// them for ever.
fn start_daemon(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status}); see its log in the bench folder");
    }
    Ok(())
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

fn wait_gone(pid: u32, deadline: Duration) -> bool {
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn wait_port(addr: SocketAddr) -> Result<()> {
    let start = Instant::now();
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        if start.elapsed() > START_DEADLINE {
            bail!("nothing listens on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A self-signed ECDSA P-256 certificate both sides serve.
pub fn make_certificate(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=mail.example.test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert))?;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644))?;
    Ok((cert, key))
}

/// A running `popgate serve`.
#[derive(Debug)]
pub struct Popgate {
    pub pid: u32,
    pub smtp: SocketAddr,
    pub pop3: SocketAddr,
    pub http: Option<SocketAddr>,
    pub mailbase: PathBuf,
    child: tokio::process::Child,
}

impl Popgate {
    pub async fn start(
        bin: &Path,
        dir: &Path,
        users: &str,
        cert: &Path,
        key: &Path,
    ) -> Result<Popgate> {
        let data = dir.join("popgate-data");
        fs::create_dir_all(&data)?;
        let config = dir.join("popgate.toml");
        fs::write(
            &config,
            fill(
                POPGATE_TOML,
                &[
                    ("DATA", data.display().to_string()),
                    ("CERT", cert.display().to_string()),
                    ("KEY", key.display().to_string()),
                ],
            )?,
        )?;
        fs::write(data.join("users"), users)?;
        let stderr = fs::File::create(dir.join("popgate.log"))?;
        // prlimit execs popgate with the raised open-file limit: the pid is popgate's.
        let mut child = tokio::process::Command::new("prlimit")
            .arg(nofile())
            .arg("--")
            .arg(bin)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let pid = child.id().context("popgate exited at once")?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut smtp, mut pop3, mut http) = (None, None, None);
        let ready = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.strip_prefix("popgate: listening ") {
                    let mut parts = rest.split_whitespace();
                    let (name, addr) = (parts.next(), parts.next().and_then(|a| a.parse().ok()));
                    match name {
                        Some("smtp") => smtp = addr,
                        Some("pop3") => pop3 = addr,
                        Some("http") => http = addr,
                        _ => {}
                    }
                } else if line == "popgate: ready" {
                    return Ok(());
                }
            }
            bail!("popgate exited before it was ready")
        };
        let outcome = tokio::time::timeout(START_DEADLINE, ready)
            .await
            .context("popgate did not get ready")
            .and_then(|r| r);
        if let Err(e) = outcome {
            let log = fs::read_to_string(dir.join("popgate.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(e.context(tail.join("\n")));
        }
        // Keep draining stdout so popgate never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Popgate {
            pid,
            smtp: smtp.context("no smtp listener line")?,
            pop3: pop3.context("no pop3 listener line")?,
            http,
            mailbase: data.join("mail"),
            child,
        })
    }

    pub async fn stop(mut self) {
        signal(self.pid, "-TERM");
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Postfix (SMTP) and two Dovecot instances (POP3 plain, and POP3 with the
/// POP-before-SMTP post-login script), all in `dir`.
#[derive(Debug)]
pub struct Peers {
    pub smtp: SocketAddr,
    /// The smtpd with `in_flow_delay = 0` for relay probes.
    pub relay_smtp: SocketAddr,
    pub pop3: SocketAddr,
    pub pop3_pbs: SocketAddr,
    pub mailbase: PathBuf,
    pub postfix_master: u32,
    pub dovecot: u32,
    pub dovecot_pbs: u32,
    pub versions: String,
    dir: PathBuf,
    owner: String,
    stopped: std::cell::Cell<bool>,
}

/// What is missing for the peers, or `None` when all is installed.
pub fn peers_missing() -> Option<String> {
    let missing: Vec<&str> = [
        "/usr/sbin/postfix",
        "/usr/sbin/postmap",
        "/usr/sbin/dovecot",
        "/usr/bin/doveadm",
        "/usr/lib/dovecot/pop3",
    ]
    .into_iter()
    .filter(|p| !Path::new(p).exists())
    .collect();
    (!missing.is_empty()).then(|| format!("not installed: {} (Debian packages postfix, dovecot-core, dovecot-pop3d; `cargo xtask bench --peers` installs them as root)", missing.join(", ")))
}

impl Peers {
    pub fn start(
        dir: &Path,
        users: &[String],
        passwd: &str,
        cert: &Path,
        key: &Path,
    ) -> Result<Peers> {
        if run(Command::new("id").args(["-u", PEER_USER])).is_err() {
            run(Command::new("useradd").args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PEER_USER,
            ]))?;
        }
        let uid = run(Command::new("id").args(["-u", PEER_USER]))?;
        let gid = run(Command::new("id").args(["-g", PEER_USER]))?;
        let owner = format!("{uid}:{gid}");
        // Postfix and Dovecot drop privileges: every folder on the way must be searchable.
        for p in dir.ancestors() {
            if p == Path::new("/") {
                break;
            }
            let mode = fs::metadata(p)?.permissions().mode();
            if mode & 0o005 != 0o005 {
                fs::set_permissions(p, fs::Permissions::from_mode(mode | 0o005))?;
            }
        }
        let mailbase = dir.join("vmail");
        for u in users {
            make_maildir(&mailbase, u)?;
        }
        let postfix_dir = dir.join("postfix");
        let access = dir.join("access");
        fs::create_dir_all(&postfix_dir)?;
        fs::create_dir_all(&access)?;
        let (smtp_port, relay_port, pop3_port, pbs_port) =
            (free_port()?, free_port()?, free_port()?, free_port()?);
        let d = dir.display().to_string();
        let vars = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
            let mut v = vec![
                ("DIR", d.clone()),
                ("MAILBASE", mailbase.display().to_string()),
                ("UID", uid.clone()),
                ("GID", gid.clone()),
                ("CERT", cert.display().to_string()),
                ("KEY", key.display().to_string()),
            ];
            v.extend(extra.iter().cloned());
            v
        };
        fs::write(postfix_dir.join("main.cf"), fill(MAIN_CF, &vars(&[]))?)?;
        fs::write(
            postfix_dir.join("master.cf"),
            fill(
                MASTER_CF,
                &vars(&[
                    ("SMTP_ADDR", format!("127.0.0.1:{smtp_port}")),
                    ("RELAY_ADDR", format!("127.0.0.1:{relay_port}")),
                ]),
            )?,
        )?;
        let vmailbox: String = users
            .iter()
            .map(|u| format!("{u}@{DOMAIN} {DOMAIN}/{u}/Maildir/\n"))
            .collect();
        fs::write(postfix_dir.join("vmailbox"), vmailbox)?;
        run(Command::new("postmap")
            .arg("-c")
            .arg(&postfix_dir)
            .arg(format!("hash:{}/vmailbox", postfix_dir.display())))?;
        fs::write(access.join("popbsmtp"), "")?;
        run(Command::new("postmap")
            .arg("-c")
            .arg(&postfix_dir)
            .arg(format!("hash:{}/popbsmtp", access.display())))?;
        let script = dir.join("popbsmtp.sh");
        fs::write(&script, fill(POPBSMTP_SH, &vars(&[]))?)?;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
        fs::write(dir.join("dovecot-users"), passwd)?;
        run(Command::new("chown").arg("-R").arg(&owner).arg(&mailbase))?;
        // The post-login script runs as Dovecot's internal user (the recipe's
        // `user = $default_internal_user`): the access map is its to rewrite.
        run(Command::new("chown").arg("-R").arg("dovecot").arg(&access))?;

        let dovecot_conf = |name: &str, port: u16, postlogin: String| -> Result<PathBuf> {
            let file = dir.join(format!("{name}.conf"));
            fs::write(
                &file,
                fill(
                    DOVECOT_CONF,
                    &vars(&[
                        ("RUN", dir.join(format!("{name}-run")).display().to_string()),
                        (
                            "STATE",
                            dir.join(format!("{name}-state")).display().to_string(),
                        ),
                        ("LOG", dir.join(format!("{name}.log")).display().to_string()),
                        ("USERS", dir.join("dovecot-users").display().to_string()),
                        ("POP3_PORT", port.to_string()),
                        ("POSTLOGIN", postlogin),
                    ]),
                )?,
            )?;
            fs::create_dir_all(dir.join(format!("{name}-state")))?;
            Ok(file)
        };
        let plain_conf = dovecot_conf("dovecot", pop3_port, String::new())?;
        let pbs_conf = dovecot_conf(
            "dovecot-pbs",
            pbs_port,
            fill(POSTLOGIN_CONF, &[("SCRIPT", script.display().to_string())])?,
        )?;

        let mut peers = Peers {
            smtp: SocketAddr::from(([127, 0, 0, 1], smtp_port)),
            relay_smtp: SocketAddr::from(([127, 0, 0, 1], relay_port)),
            pop3: SocketAddr::from(([127, 0, 0, 1], pop3_port)),
            pop3_pbs: SocketAddr::from(([127, 0, 0, 1], pbs_port)),
            mailbase,
            postfix_master: 0,
            dovecot: 0,
            dovecot_pbs: 0,
            versions: String::new(),
            dir: dir.to_path_buf(),
            owner,
            stopped: std::cell::Cell::new(false),
        };
        peers.versions = format!(
            "postfix {}, dovecot {}",
            run(Command::new("postconf").args(["-d", "-h", "mail_version"])).unwrap_or_default(),
            run(Command::new("dovecot").arg("--version")).unwrap_or_default()
        );
        // Whatever started is stopped again when a later step fails.
        if let Err(e) = peers.launch(dir, &postfix_dir, &plain_conf, &pbs_conf) {
            peers.stop();
            return Err(e);
        }
        Ok(peers)
    }

    fn launch(
        &mut self,
        dir: &Path,
        postfix_dir: &Path,
        plain_conf: &Path,
        pbs_conf: &Path,
    ) -> Result<()> {
        let peers = self;
        // `postfix check` makes the queue's subfolders, but not the queue folder itself.
        fs::create_dir_all(dir.join("postfix-queue"))?;
        fs::create_dir_all(dir.join("postfix-data"))?;
        run(Command::new("chown")
            .arg("postfix")
            .arg(dir.join("postfix-data")))?;
        run(Command::new("prlimit")
            .arg(nofile())
            .arg("--")
            .arg("postfix")
            .arg("-c")
            .arg(postfix_dir)
            .arg("check"))?;
        start_daemon(
            Command::new("prlimit")
                .arg(nofile())
                .arg("--")
                .arg("postfix")
                .arg("-c")
                .arg(postfix_dir)
                .arg("start"),
        )?;
        let pidfile = dir.join("postfix-queue/pid/master.pid");
        peers.postfix_master = read_pid(&pidfile)?;
        for (conf, slot) in [(plain_conf, 0), (pbs_conf, 1)] {
            start_daemon(
                Command::new("prlimit")
                    .arg(nofile())
                    .arg("--")
                    .arg("dovecot")
                    .arg("-c")
                    .arg(conf),
            )?;
            let name = if slot == 0 { "dovecot" } else { "dovecot-pbs" };
            let pid = read_pid(&dir.join(format!("{name}-run/master.pid")))?;
            if slot == 0 {
                peers.dovecot = pid;
            } else {
                peers.dovecot_pbs = pid;
            }
        }
        for addr in [peers.smtp, peers.relay_smtp, peers.pop3, peers.pop3_pbs] {
            wait_port(addr)?;
        }
        Ok(())
    }

    /// `chown` what the bench wrote into the peers' mailboxes to their mail user.
    pub fn give_mailboxes(&self) -> Result<()> {
        run(Command::new("chown")
            .arg("-R")
            .arg(&self.owner)
            .arg(&self.mailbase))
        .map(|_| ())
    }

    /// `postfix -c DIR stop`, `doveadm -c FILE stop`, then the pids if they linger.
    pub fn stop(&self) {
        if self.stopped.replace(true) {
            return;
        }
        let _ = run(Command::new("postfix")
            .arg("-c")
            .arg(self.dir.join("postfix"))
            .arg("stop"));
        for name in ["dovecot", "dovecot-pbs"] {
            let _ = run(Command::new("doveadm")
                .arg("-c")
                .arg(self.dir.join(format!("{name}.conf")))
                .arg("stop"));
        }
        for pid in [self.postfix_master, self.dovecot, self.dovecot_pbs] {
            if pid != 0 && !wait_gone(pid, Duration::from_secs(15)) {
                signal(pid, "-KILL");
            }
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_pid(file: &Path) -> Result<u32> {
    let start = Instant::now();
    loop {
        if let Ok(text) = fs::read_to_string(file)
            && let Ok(pid) = text.trim().parse()
        {
            return Ok(pid);
        }
        if start.elapsed() > START_DEADLINE {
            bail!("no pid in {}", file.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_must_be_filled() {
        assert_eq!(
            fill("a {{X}} b", &[("X", "1".into())]).expect("filled"),
            "a 1 b"
        );
        let error = fill("a {{X}} {{Y}}", &[("X", "1".into())]).expect_err("Y is left");
        assert!(error.to_string().contains("{{Y}}"));
    }

    #[test]
    fn the_pinned_templates_name_only_known_placeholders() {
        let vars: Vec<(&str, String)> = [
            "DIR",
            "MAILBASE",
            "UID",
            "GID",
            "CERT",
            "KEY",
            "SMTP_ADDR",
            "RELAY_ADDR",
            "RUN",
            "STATE",
            "LOG",
            "USERS",
            "POP3_PORT",
            "POSTLOGIN",
            "DATA",
            "SCRIPT",
        ]
        .iter()
        .map(|n| (*n, "x".to_string()))
        .collect();
        for t in [
            POPGATE_TOML,
            MAIN_CF,
            MASTER_CF,
            DOVECOT_CONF,
            POSTLOGIN_CONF,
            POPBSMTP_SH,
        ] {
            fill(t, &vars).expect("all placeholders known");
        }
    }
}
