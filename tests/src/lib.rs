//! Harness for the end-to-end tests: the real `popgate` binary on loopback, driven by
//! clients that popgate's authors did not write (python3's smtplib and poplib, curl,
//! swaks) and by a raw line client for what those clients refuse to send.
//!
//! # Layout
//!
//! * [`Setup`] / [`Server`]: a config in a fresh temporary folder, users added with the
//!   real `popgate user add`, then `popgate serve` started and awaited on its readiness
//!   lines (never by sleeping). Dropping the [`Server`] stops it (SIGTERM, then SIGKILL).
//! * [`Client`]: a raw `std::net` line client that can bind its source address, so a
//!   test can act as several hosts (127.0.0.2, 127.0.0.3, ...): grants are keyed by the
//!   client's address.
//! * [`python`], [`PyOut`], [`PY_PRELUDE`]: small inline python3 scripts that print
//!   `KEY value` lines for the Rust test to assert on.
//! * [`reply`]: the reply prefixes users and scripts match on (DESIGN.md reply table).
//! * [`stored`]: parsing a delivered file into its trace headers and the message.
//! * [`browser`]: headless Chromium over WebDriver, for the tests of the web app.
//! * [`redis`]: a real `redis-server` on a loopback port, for nodes sharing grants.
//!
//! Every wait has a deadline ([`READY_DEADLINE`], [`IO_TIMEOUT`]) so a broken server
//! fails the test instead of hanging it.

pub mod browser;
pub mod redis;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the server may take to print `popgate: ready` or to exit after a signal.
pub const READY_DEADLINE: Duration = Duration::from_secs(60);
/// Read timeout of every client socket: a failure guard, never a way to wait.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The local domain every test configures.
pub const DOMAIN: &str = "example.test";
/// The server's configured hostname.
pub const HOSTNAME: &str = "mail.example.test";

/// Reply prefixes that users and scripts match on, as the DESIGN.md reply table states
/// them. The end-to-end suite spells them out itself instead of importing core's
/// constants: it checks the wire contract, so a change in core must show up here.
pub mod reply {
    pub const RELAY_DENIED: &str = "554 5.7.1 Relay access denied";
    pub const UNKNOWN_USER: &str = "550 5.1.1 ";
    pub const QUEUED: &str = "250 2.0.0 Ok: queued as ";
    pub const BAD_SEQUENCE: &str = "503 5.5.1 ";
    pub const LINE_TOO_LONG: &str = "500 5.5.6 ";
    pub const SHUTTING_DOWN: &str = "421 4.3.2 ";
    pub const POP3_AUTH: &str = "-ERR [AUTH] ";
    pub const POP3_IN_USE: &str = "-ERR [IN-USE] ";
    /// A store (e.g. a shared grant store) did not answer: try again later.
    pub const TEMP_FAILURE: &str = "451 4.3.0 ";
    /// RFC 4954 §6.
    pub const AUTH_OK: &str = "235 2.7.0 ";
    pub const BAD_CREDENTIALS: &str = "535 5.7.8 ";
    pub const ENCRYPTION_REQUIRED: &str = "538 5.7.11 ";
    /// RFC 6409 §4.3 / DESIGN: the submission listener wants AUTH before MAIL.
    pub const AUTH_REQUIRED: &str = "530 5.7.0 ";
    pub const UNKNOWN_MECHANISM: &str = "504 ";
    /// RFC 4954 §4: a response that is not base64, or `*`.
    pub const AUTH_SYNTAX: &str = "501 ";
    /// After the per-session limit of failed AUTH attempts, before the close.
    pub const TOO_MANY_AUTH_FAILURES: &str = "421 4.7.0 ";
    /// RFC 6409 §6.1: MAIL FROM not owned by the authenticated user.
    pub const SENDER_NOT_OWNED: &str = "553 5.7.1 ";
    /// RFC 3207 §4: the go-ahead for the handshake.
    pub const START_TLS: &str = "220 2.0.0 ";
    /// RFC 2595 §4: the POP3 go-ahead, whole.
    pub const STLS: &str = "+OK Begin TLS negotiation";
}

// ---------------------------------------------------------------------------------
// The binary

/// The `popgate` binary under test: `$POPGATE_BIN`, else `target/<profile>/popgate`
/// beside this test executable, built once per test process with
/// `cargo build -p popgate-server --bin popgate`. The build runs even when the file
/// exists: `cargo test -p popgate-tests` does not rebuild the server by itself, and a
/// stale binary would test old code. A no-op build costs a fraction of a second.
pub fn popgate_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("POPGATE_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("the test executable's path");
        // target/debug/deps/<test> -> target/debug/popgate
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable lives in target/<profile>/deps")
            .join("popgate");
        build_popgate(&[], &bin);
        bin
    })
}

/// `cargo build -p popgate-server --bin popgate <extra>` in the workspace; `bin` must
/// exist afterwards.
fn build_popgate(extra: &[&std::ffi::OsStr], bin: &Path) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "-p", "popgate-server", "--bin", "popgate"])
        .args(extra);
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
    assert!(
        bin.is_file(),
        "{} is missing after cargo build",
        bin.display()
    );
}

/// The `popgate` binary built with the `fault-points` feature (server/src/fault.rs),
/// for the crash and disk-full tests: `cargo build -p popgate-server --bin popgate
/// --features fault-points` into its own target folder, `target/fault-points`, so the
/// normal binary every other test runs is never replaced by a fault build. Built once
/// per test process, like [`popgate_bin`].
pub fn popgate_fault_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable's path");
        // target/debug/deps/<test> -> target/fault-points
        let target_dir = exe
            .ancestors()
            .nth(3)
            .expect("the test executable lives in target/<profile>/deps")
            .join("fault-points");
        let bin = target_dir.join("debug").join("popgate");
        build_popgate(
            &[
                "--features".as_ref(),
                "fault-points".as_ref(),
                "--target-dir".as_ref(),
                target_dir.as_os_str(),
            ],
            &bin,
        );
        bin
    })
}

/// Run a command to completion, with a panic message that shows what it printed.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Like [`run`], and the command must exit 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

// ---------------------------------------------------------------------------------
// Server setup

/// A server's configuration before it starts. `Setup::default()` has the SMTP and POP3
/// listeners on ephemeral loopback ports, a 30 minute grant and no message limit.
#[derive(Debug)]
pub struct Setup {
    /// Listener names (`smtp`, `submission`, `smtps`, `pop3`, `pop3s`, `http`), each on
    /// 127.0.0.1:0.
    pub listeners: Vec<&'static str>,
    pub ttl: String,
    pub max_messages: u32,
    /// `(address, password)` added with `popgate user add` before the start.
    pub users: Vec<(String, String)>,
    /// `(alias, target)` lines of `<data_dir>/aliases`.
    pub aliases: Vec<(String, String)>,
    /// TOML appended to the generated config, for settings a test needs.
    pub extra_toml: String,
    /// Lines added inside the generated `[grant]` table (e.g. `require_tls = true`);
    /// TOML allows a table only once, so they cannot go in `extra_toml`.
    pub grant_toml: String,
    /// Raw passwd-file lines appended to `<data_dir>/users` after the users above
    /// (e.g. `user@example.test:{PLAIN}secret` for APOP).
    pub user_lines: Vec<String>,
    /// Lines added inside the generated `[listen]` table (e.g. `proxy = ["pop3"]`).
    pub listen_toml: String,
    /// Lines added inside the generated `[relay]` table. Without a `mode` line the
    /// harness writes `mode = "capture"`, so suites that only check what was queued
    /// never depend on DNS or a next hop.
    pub relay_toml: String,
    /// Another server's `<data_dir>/mail` this one uses as its own (a symbolic link),
    /// as nodes sharing one Maildir store do.
    pub shared_mail: Option<PathBuf>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            listeners: vec!["smtp", "pop3"],
            ttl: "30m".into(),
            max_messages: 0,
            users: Vec::new(),
            aliases: Vec::new(),
            extra_toml: String::new(),
            grant_toml: String::new(),
            user_lines: Vec::new(),
            listen_toml: String::new(),
            relay_toml: String::new(),
            shared_mail: None,
        }
    }
}

impl Setup {
    pub fn user(mut self, address: &str, password: &str) -> Self {
        self.users.push((address.into(), password.into()));
        self
    }

    pub fn alias(mut self, alias: &str, target: &str) -> Self {
        self.aliases.push((alias.into(), target.into()));
        self
    }

    pub fn max_messages(mut self, n: u32) -> Self {
        self.max_messages = n;
        self
    }

    pub fn listeners(mut self, names: &[&'static str]) -> Self {
        self.listeners = names.to_vec();
        self
    }

    /// Append TOML (whole tables such as `[auth]`, `[pop3]`, `[limits]`, `[tls]`).
    pub fn toml(mut self, text: &str) -> Self {
        self.extra_toml.push('\n');
        self.extra_toml.push_str(text);
        self.extra_toml.push('\n');
        self
    }

    /// A line inside the `[grant]` table, e.g. `require_tls = true`.
    pub fn grant_setting(mut self, line: &str) -> Self {
        self.grant_toml.push_str(line);
        self.grant_toml.push('\n');
        self
    }

    /// A line inside the `[listen]` table, e.g. `proxy_from = ["127.0.0.5/32"]`.
    pub fn listen_setting(mut self, line: &str) -> Self {
        self.listen_toml.push_str(line);
        self.listen_toml.push('\n');
        self
    }

    /// Lines inside the `[relay]` table, e.g. `mode = "deliver"`.
    pub fn relay_settings(mut self, lines: &str) -> Self {
        self.relay_toml.push_str(lines);
        self.relay_toml.push('\n');
        self
    }

    /// Use `mail` (another server's [`Server::mail_dir`]) as this server's Maildir
    /// store: two nodes on one store.
    pub fn share_mail(mut self, mail: &Path) -> Self {
        self.shared_mail = Some(mail.to_path_buf());
        self
    }

    /// A raw line of the users file, written as is.
    pub fn user_line(mut self, line: &str) -> Self {
        self.user_lines.push(line.into());
        self
    }

    /// `[tls]` pointing at this certificate chain and key (absolute paths).
    pub fn tls_pair(self, pair: &CertPair) -> Self {
        let text = format!(
            "[tls]\ncert = {}\nkey = {}\n",
            toml_string(&pair.cert),
            toml_string(&pair.key)
        );
        self.toml(&text)
    }

    /// The config file's text.
    pub fn config_toml(&self) -> String {
        let mut toml = format!(
            "hostname = \"{HOSTNAME}\"\ndomains = [\"{DOMAIN}\"]\ndata_dir = \"data\"\n\n[listen]\n"
        );
        for name in &self.listeners {
            toml.push_str(&format!("{name} = \"127.0.0.1:0\"\n"));
        }
        toml.push_str(&self.listen_toml);
        toml.push_str(&format!(
            "\n[grant]\nttl = \"{}\"\nmax_messages = {}\n{}\n[relay]\ntrusted_networks = []\n",
            self.ttl, self.max_messages, self.grant_toml
        ));
        if !self
            .relay_toml
            .lines()
            .any(|l| l.trim_start().starts_with("mode"))
        {
            toml.push_str("mode = \"capture\"\n");
        }
        toml.push_str(&self.relay_toml);
        toml.push_str(&self.extra_toml);
        toml
    }

    /// Write the config, the aliases and the users, then start `popgate serve` and
    /// wait for `popgate: ready`.
    pub fn start(self) -> Server {
        self.prepare().start()
    }

    /// Like [`Setup::start`], with the [`popgate_fault_bin`] build and one fault point
    /// armed (`POPGATE_FAULT`, e.g. `after-write-before-fsync@2` or
    /// `before-write:enospc`; see server/src/fault.rs).
    pub fn start_with_fault(self, fault: &str) -> Server {
        let prepared = self.prepare();
        Server::spawn_with(
            popgate_fault_bin(),
            &[("POPGATE_FAULT", fault)],
            prepared.dir,
            prepared.config,
            prepared.data,
        )
    }

    /// Write the config, the aliases and the users without starting the server, for
    /// a test that changes the folder first (ownership, modes).
    pub fn prepare(self) -> Prepared {
        let dir = tempfile::tempdir().expect("a temporary folder for the server");
        let config = dir.path().join("popgate.toml");
        let data = dir.path().join("data");
        fs::create_dir_all(&data).expect("create the data folder");
        if let Some(mail) = &self.shared_mail {
            std::os::unix::fs::symlink(mail, data.join("mail"))
                .expect("link the shared mail store");
        }
        fs::write(&config, self.config_toml()).expect("write the config");
        if !self.aliases.is_empty() {
            let lines: String = self
                .aliases
                .iter()
                .map(|(alias, target)| format!("{alias}  {target}\n"))
                .collect();
            fs::write(data.join("aliases"), lines).expect("write the aliases file");
        }
        for (address, password) in &self.users {
            add_user(&config, address, password);
        }
        if !self.user_lines.is_empty() {
            let users = data.join("users");
            let mut text = fs::read_to_string(&users).unwrap_or_default();
            for line in &self.user_lines {
                text.push_str(line);
                text.push('\n');
            }
            fs::write(&users, text).expect("write the users file");
        }
        Prepared { dir, config, data }
    }
}

/// A server's folder written by [`Setup::prepare`], not yet started.
#[derive(Debug)]
pub struct Prepared {
    dir: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
}

impl Prepared {
    /// The temporary folder holding the config file and `data/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Start `popgate serve` and wait for `popgate: ready`.
    pub fn start(self) -> Server {
        Server::spawn(self.dir, self.config, self.data)
    }
}

/// `popgate --config FILE user add ADDRESS --password-stdin`.
fn add_user(config: &Path, address: &str, password: &str) {
    let mut child = Command::new(popgate_bin())
        .arg("--config")
        .arg(config)
        .args(["user", "add", address, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run popgate user add");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password to popgate user add");
    let out = child.wait_with_output().expect("wait for popgate user add");
    assert!(
        out.status.success(),
        "popgate user add {address} --password-stdin failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `popgate serve`, stopped when dropped.
#[derive(Debug)]
pub struct Server {
    dir: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
    pid: u32,
    exited: Receiver<ExitStatus>,
    status: Option<ExitStatus>,
    listeners: Vec<(String, SocketAddr)>,
    stdout_lines: Vec<String>,
    log: Arc<LogLines>,
}

/// The server's stderr lines as they arrive, for tests that wait on a log line.
#[derive(Debug, Default)]
struct LogLines {
    state: Mutex<LogState>,
    grew: Condvar,
}

#[derive(Debug, Default)]
struct LogState {
    lines: Vec<String>,
    /// stderr reached EOF: the server has exited, no more lines will come.
    closed: bool,
}

impl LogLines {
    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Server {
    fn spawn(dir: tempfile::TempDir, config: PathBuf, data: PathBuf) -> Server {
        Server::spawn_with(popgate_bin(), &[], dir, config, data)
    }

    /// `bin serve` with `env` added to its environment.
    fn spawn_with(
        bin: &Path,
        env: &[(&str, &str)],
        dir: tempfile::TempDir,
        config: PathBuf,
        data: PathBuf,
    ) -> Server {
        let mut stderr_file =
            fs::File::create(dir.path().join("stderr.log")).expect("create stderr.log");
        let mut child: Child = Command::new(bin)
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start popgate serve");
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");

        // stderr is copied line by line to stderr.log and into `log`, where
        // [`Server::wait_log`] waits for a line on a condition variable.
        let log = Arc::new(LogLines::default());
        let tee = log.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let _ = stderr_file.write_all(&raw);
                        let _ = stderr_file.flush();
                        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
                        tee.lock().lines.push(line);
                        tee.grew.notify_all();
                    }
                }
            }
            tee.lock().closed = true;
            tee.grew.notify_all();
        });

        // One thread reads stdout for ever (so the child never blocks on a full pipe),
        // another owns the child and reports its exit: both feed channels the test
        // waits on with a deadline.
        let (line_tx, line_rx) = channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) => {
                        if line_tx.send(line).is_err() {
                            // Nobody listens any more: keep draining.
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let (exit_tx, exit_rx) = channel::<ExitStatus>();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        });

        let mut server = Server {
            dir,
            config,
            data,
            pid,
            exited: exit_rx,
            status: None,
            listeners: Vec::new(),
            stdout_lines: Vec::new(),
            log,
        };
        let start = Instant::now();
        loop {
            let left = READY_DEADLINE.saturating_sub(start.elapsed());
            match line_rx.recv_timeout(left) {
                Ok(line) => {
                    server.stdout_lines.push(line.clone());
                    if line == "popgate: ready" {
                        break;
                    }
                    if let Some(rest) = line.strip_prefix("popgate: listening ") {
                        let (name, addr) = rest
                            .split_once(' ')
                            .unwrap_or_else(|| panic!("malformed readiness line {line:?}"));
                        let addr: SocketAddr = addr
                            .parse()
                            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
                        server.listeners.push((name.to_string(), addr));
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "popgate printed no `popgate: ready` within {READY_DEADLINE:?}; stdout so far: {:?}\nstderr:\n{}",
                    server.stdout_lines,
                    server.stderr_log()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = server.wait_exit();
                    panic!(
                        "popgate serve exited ({status}) before `popgate: ready`; stdout: {:?}\nstderr:\n{}",
                        server.stdout_lines,
                        server.stderr_log()
                    )
                }
            }
        }
        server
    }

    /// The address a listener reported in its readiness line.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| {
                panic!(
                    "no `popgate: listening {name} ...` line; got {:?}",
                    self.stdout_lines
                )
            })
    }

    pub fn smtp(&self) -> SocketAddr {
        self.addr("smtp")
    }

    pub fn pop3(&self) -> SocketAddr {
        self.addr("pop3")
    }

    /// `(name, address)` of every readiness line, in the order printed.
    pub fn listeners(&self) -> &[(String, SocketAddr)] {
        &self.listeners
    }

    /// Every stdout line up to and including `popgate: ready`.
    pub fn stdout_lines(&self) -> &[String] {
        &self.stdout_lines
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// What the server logged so far.
    pub fn stderr_log(&self) -> String {
        if self.status.is_some() {
            // The process is gone: let the copier reach EOF so nothing is missing.
            let state = self.log.lock();
            let _ = self
                .log
                .grew
                .wait_timeout_while(state, IO_TIMEOUT, |s| !s.closed);
        }
        fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Every stderr line so far (without line ends).
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().lines.clone()
    }

    /// How many stderr lines there are so far: a mark for [`Server::wait_log_after`].
    pub fn log_len(&self) -> usize {
        self.log.lock().lines.len()
    }

    /// The first stderr line that satisfies `pred`, waiting for it up to [`IO_TIMEOUT`];
    /// panics (showing the log) if none comes or the server exits. `what` names the
    /// line in the failure message.
    pub fn wait_log(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_log_after(0, what, pred).1
    }

    /// Like [`Server::wait_log`], among the lines from index `from` on; returns the
    /// line's index and the line.
    pub fn wait_log_after(
        &self,
        from: usize,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> (usize, String) {
        let found = |s: &LogState| {
            s.lines
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, l)| pred(l))
                .map(|(i, l)| (i, l.clone()))
        };
        let state = self.log.lock();
        let (state, _) = self
            .log
            .grew
            .wait_timeout_while(state, IO_TIMEOUT, |s| found(s).is_none() && !s.closed)
            .unwrap_or_else(|p| p.into_inner());
        match found(&state) {
            Some(hit) => hit,
            None => panic!(
                "no stderr line {what} within {IO_TIMEOUT:?}{}; stderr:\n{}",
                if state.closed {
                    " (the server exited)"
                } else {
                    ""
                },
                state.lines.join("\n")
            ),
        }
    }

    /// Wait until at least `n` stderr lines satisfy `pred` (up to [`IO_TIMEOUT`]);
    /// returns every matching line at that moment.
    pub fn wait_logs(&self, what: &str, n: usize, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let matching =
            |s: &LogState| -> Vec<String> { s.lines.iter().filter(|l| pred(l)).cloned().collect() };
        let state = self.log.lock();
        let (state, _) = self
            .log
            .grew
            .wait_timeout_while(state, IO_TIMEOUT, |s| matching(s).len() < n && !s.closed)
            .unwrap_or_else(|p| p.into_inner());
        let lines = matching(&state);
        assert!(
            lines.len() >= n,
            "expected {n} stderr lines {what} within {IO_TIMEOUT:?}, got {}{}; stderr:\n{}",
            lines.len(),
            if state.closed {
                " (the server exited)"
            } else {
                ""
            },
            state.lines.join("\n")
        );
        lines
    }

    /// `popgate --config FILE ARGS...`, which must exit 0; returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = run_ok(
            Command::new(popgate_bin())
                .arg("--config")
                .arg(&self.config)
                .args(args),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `popgate user add` while the server runs (it re-reads the users file).
    pub fn add_user(&self, address: &str, password: &str) {
        add_user(&self.config, address, password);
    }

    /// `popgate queue list`'s output.
    pub fn queue_list(&self) -> String {
        self.cli(&["queue", "list"])
    }

    /// `<data_dir>/mail`: the Maildir store.
    pub fn mail_dir(&self) -> PathBuf {
        self.data.join("mail")
    }

    /// `<data_dir>/mail/<domain>/<localpart>/Maildir`.
    pub fn maildir(&self, address: &str) -> PathBuf {
        let (local, domain) = address.split_once('@').expect("an address with @");
        self.data
            .join("mail")
            .join(domain)
            .join(local)
            .join("Maildir")
    }

    /// The files in one Maildir subfolder (`new`, `cur`, `tmp`), sorted; none when the
    /// folder does not exist.
    pub fn maildir_files(&self, address: &str, sub: &str) -> Vec<PathBuf> {
        files_in(&self.maildir(address).join(sub))
    }

    /// Every file under `<data_dir>/mail` and `<data_dir>/queue`, recursively.
    pub fn files_under(&self, sub: &str) -> Vec<PathBuf> {
        let mut found = Vec::new();
        walk(&self.data.join(sub), &mut found);
        found.sort();
        found
    }

    /// Send a signal with the `kill` command (no `unsafe` libc call needed).
    pub fn signal(&self, signal: &str) {
        run_ok(
            Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(self.pid.to_string()),
        );
    }

    /// SIGKILL popgate (no shutdown of any kind) and start it again on the same
    /// config and data folder; listeners get new ports.
    pub fn crash_and_restart(&mut self) {
        self.signal("KILL");
        self.restart();
    }

    /// Once the process has exited (a fault point aborted it, or a signal), start the
    /// normal binary again on the same config and data folder; listeners get new
    /// ports.
    pub fn restart(&mut self) {
        self.wait_exit();
        let dir = std::mem::replace(
            &mut self.dir,
            tempfile::tempdir().expect("a placeholder folder"),
        );
        let fresh = Server::spawn(dir, self.config.clone(), self.data.clone());
        // The old value has exited, so dropping it only removes the placeholder.
        drop(std::mem::replace(self, fresh));
    }

    /// Wait for the process to exit, at most [`READY_DEADLINE`]; panics if it does not.
    pub fn wait_exit(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        match self.exited.recv_timeout(READY_DEADLINE) {
            Ok(status) => {
                self.status = Some(status);
                status
            }
            Err(e) => panic!(
                "popgate (pid {}) did not exit within {READY_DEADLINE:?}: {e}\nstderr:\n{}",
                self.pid,
                self.stderr_log()
            ),
        }
    }

    fn try_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.exited.recv_timeout(within).ok();
        }
        self.status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- popgate stderr ----\n{}---- end ----",
                self.stderr_log()
            );
        }
        if self.try_exit(Duration::ZERO).is_some() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        if self.try_exit(Duration::from_secs(10)).is_some() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(self.pid.to_string())
            .status();
        let _ = self.try_exit(Duration::from_secs(10));
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else {
                found.push(path);
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Raw line client

/// A loopback source address to act as another host: `host(2)` is 127.0.0.2.
pub fn host(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A raw protocol client over `std::net`. Every read has [`IO_TIMEOUT`] as a guard.
/// Lines the server sends must end in CRLF: a bare LF fails the test.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

impl Client {
    /// Connect from 127.0.0.1.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::connect_from(addr, host(1))
    }

    /// Connect with the source address bound to `source` (std cannot bind before
    /// connecting; socket2 can).
    pub fn connect_from(addr: SocketAddr, source: IpAddr) -> Client {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .expect("a TCP socket");
        socket
            .bind(&SockAddr::from(SocketAddr::new(source, 0)))
            .unwrap_or_else(|e| panic!("bind the client to {source}: {e}"));
        socket
            .connect_timeout(&SockAddr::from(addr), IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect from {source} to {addr}: {e}"));
        let stream: TcpStream = socket.into();
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set a read timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set a write timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone the stream"));
        Client { reader, stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the server");
    }

    /// Another handle on the connection, for a test that writes from a second thread
    /// while this one reads (a flood or a trickle the server cuts off).
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("clone the stream")
    }

    /// Send `line` and CRLF.
    pub fn send_line(&mut self, line: &str) {
        self.send(format!("{line}\r\n").as_bytes());
    }

    /// One line without its CRLF, as raw bytes. Panics at EOF or on a bare LF.
    pub fn read_line_bytes(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => panic!("the server closed the connection where a line was expected"),
            Ok(_) => {}
            Err(e) => panic!("no line from the server within {IO_TIMEOUT:?}: {e}"),
        }
        assert!(
            line.ends_with(b"\r\n"),
            "the server sent a line not ended by CRLF: {:?}",
            String::from_utf8_lossy(&line)
        );
        line.truncate(line.len() - 2);
        line
    }

    /// One line without its CRLF.
    pub fn read_line(&mut self) -> String {
        String::from_utf8_lossy(&self.read_line_bytes()).into_owned()
    }

    /// Read until the server closes; what came before the close.
    pub fn read_to_eof(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        self.reader
            .read_to_end(&mut rest)
            .unwrap_or_else(|e| panic!("the server did not close within {IO_TIMEOUT:?}: {e}"));
        rest
    }

    /// Read until the server closes the connection, a reset counting as a close (a
    /// server that drops a connection with unread input resets it); what came before.
    /// Panics if the server keeps it open past [`IO_TIMEOUT`].
    pub fn wait_closed(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match self.reader.read(&mut chunk) {
                Ok(0) => return rest,
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return rest,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!(
                    "the server did not close within {IO_TIMEOUT:?}: {e}; got {:?}",
                    String::from_utf8_lossy(&rest)
                ),
            }
        }
    }

    /// Close our sending side, as a client that goes away does.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    // --- SMTP

    /// One SMTP reply, every line (`250-...` continuations and the final `250 ...`).
    pub fn smtp_reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line();
            let last = line.len() < 4 || line.as_bytes()[3] != b'-';
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    /// Send a command line; the final line of its reply.
    pub fn smtp(&mut self, command: &str) -> String {
        self.send_line(command);
        self.smtp_last()
    }

    /// The final line of the next reply.
    pub fn smtp_last(&mut self) -> String {
        self.smtp_reply().pop().expect("a reply has a line")
    }

    /// Connect from `source`, read the 220 greeting and say EHLO.
    pub fn smtp_from(addr: SocketAddr, source: IpAddr) -> Client {
        let mut c = Client::connect_from(addr, source);
        let greeting = c.smtp_last();
        assert!(greeting.starts_with("220 "), "greeting: {greeting:?}");
        let ehlo = c.smtp("EHLO client.test");
        assert!(ehlo.starts_with("250 "), "EHLO: {ehlo:?}");
        c
    }

    /// DATA, the message (CRLF lines, already dot-stuffed by the caller where needed)
    /// and the final dot; the reply to end of data.
    pub fn smtp_data(&mut self, message: &[u8]) -> String {
        let go = self.smtp("DATA");
        assert!(go.starts_with("354 "), "DATA: {go:?}");
        self.send(message);
        self.send(b".\r\n");
        self.smtp_last()
    }

    // --- POP3

    /// Send a command line; the status line of its reply.
    pub fn pop(&mut self, command: &str) -> String {
        self.send_line(command);
        self.read_line()
    }

    /// The lines of a multi-line POP3 response up to (not including) the final `.`,
    /// with the byte-stuffing removed (RFC 1939 §3).
    pub fn pop_multiline(&mut self) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line_bytes();
            if line == b"." {
                return lines;
            }
            match line.strip_prefix(b".") {
                Some(rest) => lines.push(rest.to_vec()),
                None => lines.push(line),
            }
        }
    }

    /// Connect from `source`, read the greeting, USER and PASS, asserting `+OK`.
    pub fn pop3_login(addr: SocketAddr, source: IpAddr, user: &str, password: &str) -> Client {
        let mut c = Client::connect_from(addr, source);
        let greeting = c.read_line();
        assert!(greeting.starts_with("+OK"), "POP3 greeting: {greeting:?}");
        let r = c.pop(&format!("USER {user}"));
        assert!(r.starts_with("+OK"), "USER {user}: {r:?}");
        let r = c.pop(&format!("PASS {password}"));
        assert!(r.starts_with("+OK"), "PASS for {user} from {source}: {r:?}");
        c
    }
}

/// A local relay probe: MAIL FROM an outside sender, RCPT TO a remote address, from
/// `source`; returns the RCPT reply's last line (the session is left open).
pub fn relay_rcpt(c: &mut Client, rcpt: &str) -> String {
    let mail = c.smtp("MAIL FROM:<sender@elsewhere.test>");
    assert!(mail.starts_with("250 "), "MAIL: {mail:?}");
    c.smtp(&format!("RCPT TO:<{rcpt}>"))
}

// ---------------------------------------------------------------------------------
// python3

/// Helpers every python snippet starts with: a POP3 client that binds its source
/// address (poplib has no `source_address`), and `out(key, value)`/`hexout(key, bytes)`
/// that print one `KEY value` line for the Rust side.
pub const PY_PRELUDE: &str = r#"
import binascii, poplib, smtplib, socket, sys
class POP3From(poplib.POP3):
    def __init__(self, host, port, source):
        self.source = source
        poplib.POP3.__init__(self, host, port, timeout=30)
    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))
def text(v):
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
def out(key, *values):
    print(key, *[text(v) for v in values], flush=True)
def hexout(key, data):
    print(key, binascii.hexlify(data).decode(), flush=True)
def smtp_from(host, port, source):
    s = smtplib.SMTP(host, int(port), source_address=(source, 0), timeout=30)
    s.ehlo("client.test")
    return s
import base64, hashlib, ssl
def tls_context(cafile):
    # Verifies the chain against `cafile` and the name (or IP address) connected to.
    return ssl.create_default_context(cafile=cafile)
def b64(text):
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()
def peer_sha256(sock):
    return hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest()
class Raw:
    """A line client over one socket that can switch to TLS mid-session."""
    def __init__(self, host, port, source="127.0.0.1"):
        self.sock = socket.create_connection((host, int(port)), 30, source_address=(source, 0))
        self.buf = b""
    def tls(self, context, name):
        # Everything the server sent in plaintext has been read as lines: nothing
        # buffered may be mistaken for a reply inside TLS.
        if self.buf:
            raise AssertionError("unread plaintext before the handshake: %r" % self.buf)
        self.sock = context.wrap_socket(self.sock, server_hostname=name)
    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)
    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("the server closed; unterminated %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")
    def reply(self):
        lines = [self.line()]
        while len(lines[-1]) >= 4 and lines[-1][3] == "-":
            lines.append(self.line())
        return lines
    def smtp(self, command):
        self.send(command + "\r\n")
        return self.reply()
    def pop(self, command):
        self.send(command + "\r\n")
        return self.line()
    def multiline(self):
        lines = []
        while True:
            line = self.line()
            if line == ".":
                return lines
            lines.append(line)
    def rest(self):
        """What the server sends until it closes."""
        data, self.buf = self.buf, b""
        while True:
            try:
                chunk = self.sock.recv(4096)
            except (ConnectionResetError, ssl.SSLEOFError):
                return data
            if not chunk:
                return data
            data += chunk
"#;

/// Run `python3 -c PY_PRELUDE+script args...`; it must exit 0. Returns its output.
pub fn python(script: &str, args: &[&str]) -> PyOut {
    let program = format!("{PY_PRELUDE}{script}");
    let out = run_ok(Command::new("python3").arg("-c").arg(&program).args(args));
    PyOut(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A python snippet's `KEY value` lines.
#[derive(Debug)]
pub struct PyOut(pub String);

impl PyOut {
    /// Every value printed under `key`, in order.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .lines()
            .filter_map(|line| {
                let (k, v) = line.split_once(' ').unwrap_or((line, ""));
                (k == key).then(|| v.to_string())
            })
            .collect()
    }

    /// The one value printed under `key`.
    pub fn get(&self, key: &str) -> String {
        let all = self.all(key);
        assert_eq!(
            all.len(),
            1,
            "expected one {key} line in python's output:\n{}",
            self.0
        );
        all.into_iter().next().unwrap_or_default()
    }

    /// The one value printed under `key` with `hexout`, decoded.
    pub fn bytes(&self, key: &str) -> Vec<u8> {
        unhex(&self.get(key))
    }
}

/// Decode lowercase or uppercase hex.
pub fn unhex(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd-length hex {hex:?}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
        .collect()
}

/// Standard base64 with padding (RFC 4648 §4), for SASL responses the raw client sends.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The SASL PLAIN response `authzid NUL authcid NUL password` (RFC 4616 §2), base64.
pub fn sasl_plain(authzid: &str, user: &str, password: &str) -> String {
    base64(format!("{authzid}\0{user}\0{password}").as_bytes())
}

// ---------------------------------------------------------------------------------
// Log lines

/// The value of `key=value` in a log line (`event=login_delayed ... delay_ms=20`).
pub fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|token| token.strip_prefix(key)?.strip_prefix('='))
}

/// Whether `line` is the log line of `event` (`event=NAME`).
pub fn is_event(line: &str, event: &str) -> bool {
    log_field(line, "event") == Some(event)
}

// ---------------------------------------------------------------------------------
// Certificates

/// A PEM certificate (chain) and its private key.
#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A throwaway certificate authority made with the `openssl` command line, so clients
/// verify the server for real (chain and name) against a CA the test created.
#[derive(Debug)]
pub struct TestCa {
    dir: tempfile::TempDir,
    /// The CA certificate clients trust.
    pub cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    /// A new CA (`CN=<name>`), EC P-256, valid for two days.
    pub fn new(name: &str) -> TestCa {
        let dir = tempfile::tempdir().expect("a temporary folder for the CA");
        let cert = dir.path().join("ca.pem");
        let key = dir.path().join("ca.key");
        run_ok(
            Command::new("openssl")
                .args(["req", "-x509", "-new", "-newkey", "ec"])
                .args([
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "2",
                ])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .args(["-subj", &format!("/CN={name}")])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        );
        TestCa { dir, cert, key }
    }

    /// A server certificate signed by this CA for `localhost`, the test hostname,
    /// 127.0.0.1 and ::1, written as `<file_stem>.pem` / `<file_stem>.key` in the
    /// CA's folder.
    pub fn issue(&self, file_stem: &str) -> CertPair {
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        let at = |ext: &str| self.dir.path().join(format!("{file_stem}.{ext}"));
        let (cert, key, csr, ext) = (at("pem"), at("key"), at("csr"), at("ext"));
        fs::write(
            &ext,
            format!(
                "subjectAltName=DNS:localhost,DNS:{HOSTNAME},IP:127.0.0.1,IP:::1\n\
                 basicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=serverAuth\n\
                 subjectKeyIdentifier=hash\n\
                 authorityKeyIdentifier=keyid\n"
            ),
        )
        .expect("write the extensions file");
        run_ok(
            Command::new("openssl")
                .args(["req", "-new", "-newkey", "ec"])
                .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&csr)
                .args(["-subj", "/CN=localhost"]),
        );
        let serial = format!(
            "{}",
            u64::from(std::process::id()) * 1000 + SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        run_ok(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-set_serial", &serial])
                .arg("-in")
                .arg(&csr)
                .arg("-CA")
                .arg(&self.cert)
                .arg("-CAkey")
                .arg(&self.key)
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&cert),
        );
        CertPair { cert, key }
    }
}

/// `openssl x509 -noout -fingerprint -sha256` of a PEM certificate: `AA:BB:...`.
pub fn openssl_fingerprint(cert: &Path) -> String {
    let out = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(cert),
    );
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // "sha256 Fingerprint=AA:BB:..." (the label's case differs between versions).
    text.split_once('=')
        .map(|(_, f)| f.to_string())
        .unwrap_or_else(|| panic!("unexpected openssl fingerprint output {text:?}"))
}

/// A path as a TOML basic string.
fn toml_string(path: &Path) -> String {
    let text = path.to_str().expect("a UTF-8 path");
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

// ---------------------------------------------------------------------------------
// Other clients

/// `swaks` on PATH, or a failure that says how to get it.
pub fn swaks() -> Command {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("swaks").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "swaks is not on PATH: install it with `apt-get install swaks` \
         (`cargo xtask test` installs it)"
    );
    Command::new("swaks")
}

// ---------------------------------------------------------------------------------
// Stored messages

/// A delivered file: the trace headers final delivery prepends, and the rest.
pub mod stored {
    /// A delivered message split as RFC 5321 §4.4 says final delivery writes it.
    #[derive(Debug)]
    pub struct Delivered {
        /// The whole `Return-Path:` line with its CRLF.
        pub return_path: Vec<u8>,
        /// The `Received:` header: its first line and folded continuation lines,
        /// each with its CRLF.
        pub received: Vec<u8>,
        /// Everything after the `Received:` header: the message as the client sent it.
        pub message: Vec<u8>,
    }

    /// Split a delivered file; panics with the file's start if it is not
    /// `Return-Path:` then one `Received:` header.
    pub fn split(file: &[u8]) -> Delivered {
        let show = || String::from_utf8_lossy(&file[..file.len().min(600)]).into_owned();
        let mut lines = file.split_inclusive(|&b| b == b'\n');
        let return_path = lines.next().unwrap_or_default().to_vec();
        assert!(
            return_path.starts_with(b"Return-Path: "),
            "first line is not Return-Path:\n{}",
            show()
        );
        let mut at = return_path.len();
        let first = lines.next().unwrap_or_default();
        assert!(
            first.starts_with(b"Received: "),
            "second line is not Received:\n{}",
            show()
        );
        at += first.len();
        for line in lines {
            if line.starts_with(b" ") || line.starts_with(b"\t") {
                at += line.len();
            } else {
                break;
            }
        }
        let received = file[return_path.len()..at].to_vec();
        Delivered {
            return_path,
            received,
            message: file[at..].to_vec(),
        }
    }

    /// A header with its folding removed (RFC 5322 §2.2.3).
    pub fn unfold(header: &[u8]) -> String {
        String::from_utf8_lossy(header)
            .replace("\r\n", "")
            .replace('\n', "")
    }

    /// Octets of the message in CRLF form: a bare LF counts as two.
    pub fn crlf_octets(bytes: &[u8]) -> usize {
        let mut n = 0;
        let mut prev = 0u8;
        for &b in bytes {
            n += if b == b'\n' && prev != b'\r' { 2 } else { 1 };
            prev = b;
        }
        n
    }
}

/// Does `haystack` contain `needle`?
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Read a file the test expects to exist.
pub fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Deliver `message` (CRLF lines, no line starting with a dot) to a local `rcpt`
/// over the raw client from 127.0.0.1; asserts every reply and returns the queue id.
pub fn send_local(smtp: SocketAddr, rcpt: &str, message: &[u8]) -> String {
    let mut c = Client::smtp_from(smtp, host(1));
    let mail = c.smtp("MAIL FROM:<sender@elsewhere.test>");
    assert!(mail.starts_with("250 "), "MAIL: {mail:?}");
    let r = c.smtp(&format!("RCPT TO:<{rcpt}>"));
    assert!(r.starts_with("250 "), "RCPT TO:<{rcpt}>: {r:?}");
    let end = c.smtp_data(message);
    let id = end
        .strip_prefix(reply::QUEUED)
        .unwrap_or_else(|| panic!("end of data: expected {:?}<id>, got {end:?}", reply::QUEUED));
    let bye = c.smtp("QUIT");
    assert!(bye.starts_with("221 "), "QUIT: {bye:?}");
    id.to_string()
}

/// A small message with the given subject.
pub fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: sender@elsewhere.test\r\nTo: someone@example.test\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        // RFC 4648 §10.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(
            sasl_plain("", "tim", "tanstaaftanstaaf"),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
    }

    #[test]
    fn log_fields_are_found_by_key() {
        let line = "2025-01-01T00:00:00Z  WARN popgate::serve::events: event=login_delayed session=3 peer=127.0.0.2 failures=1 delay_ms=20";
        assert!(is_event(line, "login_delayed"));
        assert_eq!(log_field(line, "peer"), Some("127.0.0.2"));
        assert_eq!(log_field(line, "delay_ms"), Some("20"));
        assert_eq!(log_field(line, "ms"), None);
    }
}
