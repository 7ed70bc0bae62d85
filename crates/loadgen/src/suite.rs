//! The workloads of the benchmark, run against popgate and (when installed) Postfix +
//! Dovecot, and the report: one table of workload, metric, popgate, peer, ratio, plus
//! the raw figures as JSON.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::conn::{self, Conn, connect, message_4k, pop_login, smtp_deliver};
use crate::drive::{Limit, Run, closed_loop, open_loop};
use crate::procfs;
use crate::servers::{self, DOMAIN, PASSWORD, Peers, Popgate};
use crate::stats::{Spread, histogram};

/// What `cargo xtask bench` asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub smoke: bool,
    pub peers: bool,
    pub only: Option<String>,
    pub report: PathBuf,
    pub popgate: PathBuf,
    /// Parent of the temporary folder the servers run in.
    pub work: PathBuf,
    /// criterion's output folder (workload 4), when the grant bench ran.
    pub criterion: Option<PathBuf>,
}

/// Sizes of a run: seconds, repetitions and counts, small in smoke mode.
#[derive(Debug, Clone, Copy)]
struct Scale {
    seconds: f64,
    reps: usize,
    smtp_sessions: &'static [usize],
    retr_users: usize,
    retr_messages: usize,
    pbs_trials: usize,
    pbs_interval_ms: u64,
    idle: usize,
    pairs: usize,
    fsync_messages: usize,
    open_rate: f64,
    smtp_source_messages: usize,
}

const FULL: Scale = Scale {
    seconds: 6.0,
    reps: 3,
    smtp_sessions: &[1, 8, 64],
    retr_users: 32,
    retr_messages: 100,
    pbs_trials: 1000,
    pbs_interval_ms: 50,
    idle: 10_000,
    pairs: 5,
    fsync_messages: 200,
    open_rate: 300.0,
    smtp_source_messages: 3000,
};

const SMOKE: Scale = Scale {
    seconds: 0.4,
    reps: 1,
    smtp_sessions: &[1, 8],
    retr_users: 2,
    retr_messages: 10,
    pbs_trials: 10,
    pbs_interval_ms: 10,
    idle: 100,
    pairs: 1,
    fsync_messages: 10,
    open_rate: 100.0,
    smtp_source_messages: 50,
};

/// Which way is better for a metric; the ratio column is always "how many times
/// better popgate is" (> 1: popgate better).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Better {
    Higher,
    Lower,
}

#[derive(Debug, Serialize)]
struct Row {
    workload: String,
    metric: String,
    better: Better,
    popgate: Option<Spread>,
    peer: Option<Spread>,
    note: String,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        let (p, q) = (self.popgate.as_ref()?.median, self.peer.as_ref()?.median);
        let r = match self.better {
            Better::Higher => p / q,
            Better::Lower => q / p,
        };
        r.is_finite().then_some(r)
    }
}

/// One side's figure of one metric, over its repetitions.
#[derive(Debug)]
struct Figure {
    metric: String,
    better: Better,
    runs: Vec<f64>,
}

#[derive(Default, Debug)]
struct Figures(Vec<Figure>);

impl Figures {
    fn add(&mut self, metric: &str, better: Better, value: f64) {
        match self.0.iter_mut().find(|f| f.metric == metric) {
            Some(f) => f.runs.push(value),
            None => self.0.push(Figure {
                metric: metric.to_string(),
                better,
                runs: vec![value],
            }),
        }
    }

    fn run_latency(&mut self, prefix: &str, run: &Run) {
        let ms = |us: u64| us as f64 / 1000.0;
        self.add(
            &format!("{prefix}p50 latency (ms)"),
            Better::Lower,
            ms(run.latency.p50_us),
        );
        self.add(
            &format!("{prefix}p99 latency (ms)"),
            Better::Lower,
            ms(run.latency.p99_us),
        );
        self.add(
            &format!("{prefix}p99.9 latency (ms)"),
            Better::Lower,
            ms(run.latency.p999_us),
        );
    }
}

/// Where one side listens and which processes are its.
#[derive(Debug, Clone)]
struct Side {
    name: &'static str,
    smtp: SocketAddr,
    relay_smtp: SocketAddr,
    pop3: SocketAddr,
    pop3_pbs: SocketAddr,
    mailbase: PathBuf,
    smtp_root: u32,
    pop_root: u32,
    pbs_root: u32,
    http: Option<SocketAddr>,
    /// The peer writes its mailboxes as another user.
    chown: Option<Arc<PeersRef>>,
}

#[derive(Debug)]
struct PeersRef(PathBuf, String);

impl Side {
    fn fix_owner(&self) -> Result<()> {
        if let Some(p) = &self.chown {
            let status = Command::new("chown")
                .arg("-R")
                .arg(&p.1)
                .arg(&p.0)
                .status()?;
            if !status.success() {
                bail!("chown of the peer's mailboxes failed");
            }
        }
        Ok(())
    }
}

struct Bench {
    scale: Scale,
    opts: Options,
    rows: Vec<Row>,
    raw: serde_json::Map<String, Value>,
    sinks: AtomicU64,
    body: Arc<Vec<u8>>,
}

const SINKS: usize = 32;
const POP_USERS: usize = 16;

fn users() -> Vec<String> {
    let mut u: Vec<String> = (1..=SINKS).map(|i| format!("sink{i}")).collect();
    u.extend((1..=POP_USERS).map(|i| format!("pop{i}")));
    u.extend((1..=FULL.retr_users).map(|i| format!("retr{i}")));
    u.extend((1..=POP_USERS).map(|i| format!("pbs{i}")));
    u
}

fn address(user: &str) -> String {
    format!("{user}@{DOMAIN}")
}

fn uptime() -> String {
    Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn wanted(only: &Option<String>, workload: &str) -> bool {
    only.as_deref().is_none_or(|o| o == workload)
}

pub async fn run(opts: Options) -> Result<()> {
    let scale = if opts.smoke { SMOKE } else { FULL };
    // 10,000 client sockets need more than the usual 1024 open files.
    let _ = rlimit::increase_nofile_limit(65_536);
    std::fs::create_dir_all(&opts.work)?;
    // Postfix wants absolute paths in its configuration.
    let work = std::fs::canonicalize(&opts.work)?;
    let dir = tempfile::Builder::new()
        .prefix("bench-")
        .tempdir_in(&work)?;
    let users = users();
    // One SHA512-CRYPT hash (5000 rounds, the scheme's default and doveadm's) for every
    // user of both sides: login cost is the same work on each.
    let hash = sha_crypt::sha512_simple(
        PASSWORD,
        &sha_crypt::Sha512Params::new(5000).map_err(|e| anyhow::anyhow!("{e:?}"))?,
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let passwd = servers::passwd_file(&users, &hash);
    let (cert, key) = servers::make_certificate(dir.path())?;
    let load_before = uptime();
    println!("load before: {load_before}");

    let pg_dir = dir.path().join("popgate");
    std::fs::create_dir_all(&pg_dir)?;
    let popgate = Popgate::start(&opts.popgate, &pg_dir, &passwd, &cert, &key).await?;
    for u in &users {
        servers::make_maildir(&popgate.mailbase, u)?;
    }
    let pg_side = Side {
        name: "popgate",
        smtp: popgate.smtp,
        relay_smtp: popgate.smtp,
        pop3: popgate.pop3,
        pop3_pbs: popgate.pop3,
        mailbase: popgate.mailbase.clone(),
        smtp_root: popgate.pid,
        pop_root: popgate.pid,
        pbs_root: popgate.pid,
        http: popgate.http,
        chown: None,
    };

    let mut peer_note = String::new();
    let peers = if !opts.peers {
        peer_note = "peers not requested (--peers)".into();
        None
    } else if let Some(missing) = servers::peers_missing() {
        peer_note = missing;
        println!("peers: {peer_note}");
        None
    } else {
        let peer_dir = dir.path().join("peer");
        std::fs::create_dir_all(&peer_dir)?;
        match Peers::start(&peer_dir, &users, &passwd, &cert, &key) {
            Ok(p) => Some(p),
            Err(e) => {
                peer_note = format!("peers failed to start: {e:#}");
                println!("{peer_note}");
                None
            }
        }
    };
    let peer_side = peers.as_ref().map(|p| Side {
        name: "peer",
        smtp: p.smtp,
        relay_smtp: p.relay_smtp,
        pop3: p.pop3,
        pop3_pbs: p.pop3_pbs,
        mailbase: p.mailbase.clone(),
        smtp_root: p.postfix_master,
        pop_root: p.dovecot,
        pbs_root: p.dovecot_pbs,
        http: None,
        chown: Some(Arc::new(PeersRef(
            p.mailbase.clone(),
            owner_of(&p.mailbase),
        ))),
    });

    let mut bench = Bench {
        scale,
        opts: opts.clone(),
        rows: Vec::new(),
        raw: serde_json::Map::new(),
        sinks: AtomicU64::new(0),
        body: Arc::new(message_4k("bench@example.test", "sink@example.test")),
    };
    let outcome = bench.workloads(&pg_side, peer_side.as_ref()).await;

    popgate.stop().await;
    if let Some(p) = &peers {
        p.stop();
    }
    let load_after = uptime();
    println!("load after: {load_after}");
    let meta = json!({
        "smoke": opts.smoke,
        "load_before": load_before,
        "load_after": load_after,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "peer": peers.as_ref().map(|p| p.versions.clone()).unwrap_or(peer_note.clone()),
        "password_scheme": "SHA512-CRYPT, 5000 rounds, the same hash on both sides",
        "smtp_message_bytes": bench.body.len() - 3,
    });
    bench.write_report(meta)?;
    if std::env::var_os("BENCH_KEEP").is_some() {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    outcome
}

/// `uid:gid` of a path, for handing prefilled mail to the peer's mail user.
fn owner_of(path: &Path) -> String {
    Command::new("stat")
        .args(["-c", "%u:%g"])
        .arg(path)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

impl Bench {
    fn sink(&self) -> String {
        let n = self.sinks.fetch_add(1, Ordering::Relaxed) as usize % SINKS;
        format!("sink{}", n + 1)
    }

    fn limit(&self) -> Limit {
        Limit {
            duration: Duration::from_secs_f64(self.scale.seconds),
            max_ops: u64::MAX,
        }
    }

    fn row(&mut self, workload: &str, pg: Figures, peer: Option<Figures>, note: &str) {
        for f in pg.0 {
            let peer_runs = peer
                .as_ref()
                .and_then(|p| p.0.iter().find(|g| g.metric == f.metric))
                .and_then(|g| Spread::of(&g.runs));
            self.rows.push(Row {
                workload: workload.to_string(),
                metric: f.metric,
                better: f.better,
                popgate: Spread::of(&f.runs),
                peer: peer_runs,
                note: note.to_string(),
            });
        }
    }

    async fn workloads(&mut self, pg: &Side, peer: Option<&Side>) -> Result<()> {
        let only = self.opts.only.clone();
        let sides = || std::iter::once(pg).chain(peer);
        if wanted(&only, "1") {
            for &sessions in self.scale.smtp_sessions {
                let name = format!("1 SMTP delivery, {sessions} sessions, 1 msg/connection");
                let mut figs = Vec::new();
                for side in sides() {
                    figs.push(
                        self.smtp_closed(side, sessions, 1)
                            .await
                            .with_context(|| format!("workload {name} on {}", side.name))?,
                    );
                }
                self.push_pair(
                    &name,
                    figs,
                    "closed loop; msg/s counts until every message is in Maildir/new",
                );
            }
            let name = "1 SMTP delivery, 8 sessions, 10 msgs/connection (smtp-source -d)";
            let mut figs = Vec::new();
            for side in sides() {
                figs.push(self.smtp_closed(side, 8, 10).await?);
            }
            self.push_pair(name, figs, "");
            let name = format!(
                "1 SMTP delivery, open loop at {} msg/s",
                self.scale.open_rate
            );
            let mut figs = Vec::new();
            for side in sides() {
                figs.push(self.smtp_open(side).await?);
            }
            self.push_pair(&name, figs, "latency from the intended send time");
            if Path::new("/usr/sbin/smtp-source").exists() {
                let name = "1 SMTP delivery, Postfix's smtp-source -s 8 -l 4096";
                let mut figs = Vec::new();
                for side in sides() {
                    figs.push(self.smtp_source(side).await?);
                }
                self.push_pair(name, figs, "third-party client");
            }
            let name = "1 fsyncs per delivered message";
            let mut figs = Vec::new();
            for side in sides() {
                figs.push(self.fsyncs(side).await?);
            }
            self.push_pair(name, figs, "strace -c -f, every thread/process, 1 session; 2 is the minimum for a durable Maildir delivery");
        }
        if wanted(&only, "2") {
            let mut figs = Vec::new();
            for side in sides() {
                figs.push(self.pop_stat(side, side.pop3, side.pop_root).await?);
            }
            self.push_pair(
                "2 POP3 login+STAT+QUIT, 8 clients",
                figs,
                "empty mailboxes; peer: plain Dovecot",
            );
            let mut figs = Vec::new();
            for side in sides() {
                figs.push(self.pop_stat(side, side.pop3_pbs, side.pbs_root).await?);
            }
            self.push_pair(
                "2 POP3 login+STAT+QUIT, 8 clients, POP-before-SMTP on",
                figs,
                "peer: Dovecot with the post-login script",
            );
            let mut figs = Vec::new();
            for side in sides() {
                figs.push(self.pop_retr(side).await?);
            }
            let name = format!(
                "2 POP3 login+RETR+DELE of {} messages, 8 clients",
                self.scale.retr_messages
            );
            self.push_pair(&name, figs, "4 KB messages");
            let mut f = Figures::default();
            let params =
                sha_crypt::Sha512Params::new(5000).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let hash = sha_crypt::sha512_simple(PASSWORD, &params)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            for _ in 0..self.scale.reps {
                let start = std::time::Instant::now();
                for _ in 0..20 {
                    let _ = sha_crypt::sha512_check(PASSWORD, &hash);
                }
                f.add(
                    "SHA512-CRYPT verify (ms, one core)",
                    Better::Lower,
                    start.elapsed().as_secs_f64() * 1000.0 / 20.0,
                );
            }
            self.row(
                "2 password hash cost",
                f,
                None,
                "measured in the bench process; the same scheme and hash on both sides",
            );
        }
        if wanted(&only, "3") {
            let mut figs = Vec::new();
            for side in sides() {
                figs.push(self.pop_before_smtp(side).await?);
            }
            let name = format!(
                "3 POP before SMTP, {} trials {} ms apart",
                self.scale.pbs_trials, self.scale.pbs_interval_ms
            );
            self.push_pair(&name, figs, "each trial from a fresh 127.0.x.y; a refused relay is retried on a new connection every 100 ms for up to 3 s");
        }
        if wanted(&only, "4") {
            self.grant_table();
        }
        if wanted(&only, "5") {
            let mut figs = Vec::new();
            for side in sides() {
                figs.push(self.idle(side).await?);
            }
            let name = format!("5 {} idle POP3 connections", self.scale.idle);
            self.push_pair(&name, figs, "PSS of every process of the server; peer: Dovecot pop3-login in high-performance mode");
        }
        if wanted(&only, "6") {
            self.dashboard(pg).await?;
        }
        if wanted(&only, "7") {
            let mut figs = Vec::new();
            for side in sides() {
                figs.push(self.starttls(side).await?);
            }
            self.push_pair(
                "7 SMTP STARTTLS handshakes, 8 clients",
                figs,
                "ECDSA P-256, same certificate; no resumption; peer: Postfix smtpd",
            );
        }
        Ok(())
    }

    fn push_pair(&mut self, name: &str, mut figs: Vec<(Figures, Value)>, note: &str) {
        let peer = (figs.len() > 1).then(|| figs.remove(1));
        let (pg, pg_raw) = figs.remove(0);
        let raw = json!({"popgate": pg_raw, "peer": peer.as_ref().map(|p| p.1.clone())});
        self.raw.insert(name.to_string(), raw);
        self.row(name, pg, peer.map(|p| p.0), note);
        self.print_last(name);
    }

    fn print_last(&self, name: &str) {
        for r in self.rows.iter().filter(|r| r.workload == name) {
            println!("{}", table_line(r));
        }
    }

    /// Waits until `user`'s Maildir holds `count` messages; the time it took.
    async fn drained(&self, side: &Side, user: &str, count: usize) -> Result<Duration> {
        let start = Instant::now();
        while servers::count_messages(&side.mailbase, user) < count {
            if start.elapsed() > Duration::from_secs(180) {
                bail!(
                    "{}: {count} messages never reached {user}'s Maildir",
                    side.name
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(start.elapsed())
    }

    async fn smtp_closed(
        &self,
        side: &Side,
        sessions: usize,
        per_conn: usize,
    ) -> Result<(Figures, Value)> {
        let mut f = Figures::default();
        let mut raw = Vec::new();
        for _ in 0..self.scale.reps {
            let sink = self.sink();
            let before = servers::count_messages(&side.mailbase, &sink);
            let to = address(&sink);
            let (addr, body) = (side.smtp, self.body.clone());
            let cpu0 = procfs::cpu_seconds(side.smtp_root);
            let run = closed_loop(sessions, self.limit(), move |_, _| {
                let (to, body) = (to.clone(), body.clone());
                async move {
                    let mut c = Conn::new(connect(None, addr).await?);
                    smtp_deliver(&mut c, "bench@example.test", &to, &body, per_conn).await
                }
            })
            .await;
            let messages = run.ops as usize * per_conn;
            let drain = self.drained(side, &sink, before + messages).await?;
            let cpu = procfs::cpu_seconds(side.smtp_root) - cpu0;
            let total = run.elapsed_s + drain.as_secs_f64();
            check_errors(side, &run)?;
            f.add(
                "messages/s (delivered)",
                Better::Higher,
                messages as f64 / total,
            );
            f.run_latency(
                if per_conn == 1 {
                    "session "
                } else {
                    "session of 10: "
                },
                &run,
            );
            f.add(
                "server CPU s per 1000 messages",
                Better::Lower,
                cpu / messages.max(1) as f64 * 1000.0,
            );
            raw.push(json!({"run": run, "messages": messages, "drain_s": drain.as_secs_f64(), "cpu_s": cpu}));
        }
        Ok((f, json!(raw)))
    }

    async fn smtp_open(&self, side: &Side) -> Result<(Figures, Value)> {
        let mut f = Figures::default();
        let mut raw = Vec::new();
        for _ in 0..self.scale.reps {
            let sink = self.sink();
            let before = servers::count_messages(&side.mailbase, &sink);
            let to = address(&sink);
            let (addr, body) = (side.smtp, self.body.clone());
            let run = open_loop(self.scale.open_rate, 256, self.limit(), move |_| {
                let (to, body) = (to.clone(), body.clone());
                async move {
                    let mut c = Conn::new(connect(None, addr).await?);
                    smtp_deliver(&mut c, "bench@example.test", &to, &body, 1).await
                }
            })
            .await;
            self.drained(side, &sink, before + run.ops as usize).await?;
            check_errors(side, &run)?;
            f.run_latency("", &run);
            raw.push(json!({"run": run}));
        }
        Ok((f, json!(raw)))
    }

    async fn smtp_source(&self, side: &Side) -> Result<(Figures, Value)> {
        let mut f = Figures::default();
        let mut raw = Vec::new();
        for _ in 0..self.scale.reps {
            let sink = self.sink();
            let before = servers::count_messages(&side.mailbase, &sink);
            let n = self.scale.smtp_source_messages;
            let start = Instant::now();
            let status = tokio::process::Command::new("/usr/sbin/smtp-source")
                .args([
                    "-s",
                    "8",
                    "-l",
                    "4096",
                    "-m",
                    &n.to_string(),
                    "-f",
                    "bench@example.test",
                    "-t",
                    &address(&sink),
                ])
                .arg(side.smtp.to_string())
                .stdin(Stdio::null())
                .status()
                .await?;
            if !status.success() {
                bail!("smtp-source against {} failed: {status}", side.name);
            }
            let drain = self.drained(side, &sink, before + n).await?;
            let total = start.elapsed().as_secs_f64();
            f.add("messages/s (delivered)", Better::Higher, n as f64 / total);
            raw.push(json!({"messages": n, "seconds": total, "drain_s": drain.as_secs_f64()}));
        }
        Ok((f, json!(raw)))
    }

    async fn fsyncs(&self, side: &Side) -> Result<(Figures, Value)> {
        let mut f = Figures::default();
        let out = self.opts.work.join(format!("strace-{}.txt", side.name));
        let mut cmd = tokio::process::Command::new("strace");
        cmd.args([
            "-c",
            "-f",
            "-e",
            "trace=fsync,fdatasync,sync_file_range,syncfs,sync",
            "-o",
        ])
        .arg(&out);
        for tid in procfs::threads(side.smtp_root) {
            cmd.arg("-p").arg(tid.to_string());
        }
        let mut strace = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("strace (Debian package strace)")?;
        // strace attaches to each thread before it starts counting.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let sink = self.sink();
        let before = servers::count_messages(&side.mailbase, &sink);
        let n = self.scale.fsync_messages;
        let to = address(&sink);
        let (addr, body) = (side.smtp, self.body.clone());
        let run = closed_loop(
            1,
            Limit {
                duration: Duration::from_secs(120),
                max_ops: n as u64,
            },
            move |_, _| {
                let (to, body) = (to.clone(), body.clone());
                async move {
                    let mut c = Conn::new(connect(None, addr).await?);
                    smtp_deliver(&mut c, "bench@example.test", &to, &body, 1).await
                }
            },
        )
        .await;
        check_errors(side, &run)?;
        self.drained(side, &sink, before + n).await?;
        // Postfix's qmgr may still be finishing the last delivery's queue removal.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if let Some(pid) = strace.id() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), strace.wait()).await;
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let calls = strace_calls(&text);
        let total: u64 = calls.iter().map(|(_, c)| c).sum();
        f.add(
            "fsync-family calls per message",
            Better::Lower,
            total as f64 / n as f64,
        );
        Ok((f, json!({"messages": n, "calls": calls, "strace": text})))
    }

    async fn pop_stat(&self, side: &Side, addr: SocketAddr, root: u32) -> Result<(Figures, Value)> {
        let mut f = Figures::default();
        let mut raw = Vec::new();
        let op = move |worker: usize, _| async move {
            let mut c = Conn::new(connect(None, addr).await?);
            pop_login(
                &mut c,
                &address(&format!("pop{}", worker % POP_USERS + 1)),
                PASSWORD,
            )
            .await?;
            c.pop("STAT\r\n").await?;
            c.pop("QUIT\r\n").await
        };
        // The first logins create index files: warm up before measuring.
        let warm = closed_loop(
            8,
            Limit {
                duration: Duration::from_secs_f64(self.scale.seconds.min(1.0)),
                max_ops: u64::MAX,
            },
            op,
        )
        .await;
        check_errors(side, &warm)?;
        for _ in 0..self.scale.reps {
            let cpu0 = procfs::cpu_seconds(root);
            let run = closed_loop(8, self.limit(), op).await;
            let cpu = procfs::cpu_seconds(root) - cpu0;
            check_errors(side, &run)?;
            f.add("sessions/s", Better::Higher, run.per_second());
            f.run_latency("", &run);
            f.add(
                "server CPU s per 1000 sessions",
                Better::Lower,
                cpu / run.ops.max(1) as f64 * 1000.0,
            );
            raw.push(json!({"run": run, "cpu_s": cpu}));
        }
        Ok((f, json!(raw)))
    }

    async fn pop_retr(&self, side: &Side) -> Result<(Figures, Value)> {
        let mut f = Figures::default();
        let mut raw = Vec::new();
        let (users, per) = (self.scale.retr_users, self.scale.retr_messages);
        for _ in 0..self.scale.reps {
            for u in 1..=users {
                let user = format!("retr{u}");
                servers::prefill(
                    &side.mailbase,
                    &user,
                    per,
                    &self.body[..self.body.len() - 3],
                )?;
            }
            side.fix_owner()?;
            let addr = side.pop3;
            let cpu0 = procfs::cpu_seconds(side.pop_root);
            let run = closed_loop(
                8,
                Limit {
                    duration: Duration::from_secs(300),
                    max_ops: users as u64,
                },
                move |_, seq| async move {
                    let mut c = Conn::new(connect(None, addr).await?);
                    pop_login(&mut c, &address(&format!("retr{}", seq + 1)), PASSWORD).await?;
                    c.pop("STAT\r\n").await?;
                    for i in 1..=per {
                        c.pop_multiline(&format!("RETR {i}\r\n")).await?;
                        c.pop(&format!("DELE {i}\r\n")).await?;
                    }
                    c.pop("QUIT\r\n").await
                },
            )
            .await;
            let cpu = procfs::cpu_seconds(side.pop_root) - cpu0;
            check_errors(side, &run)?;
            f.add("sessions/s", Better::Higher, run.per_second());
            f.add(
                "messages retrieved+deleted/s",
                Better::Higher,
                run.per_second() * per as f64,
            );
            f.run_latency("session ", &run);
            f.add(
                "server CPU s per 1000 messages",
                Better::Lower,
                cpu / (run.ops.max(1) as f64 * per as f64) * 1000.0,
            );
            raw.push(json!({"run": run, "cpu_s": cpu}));
        }
        Ok((f, json!(raw)))
    }

    async fn pop_before_smtp(&self, side: &Side) -> Result<(Figures, Value)> {
        let trials = self.scale.pbs_trials;
        let (pop, smtp) = (side.pop3_pbs, side.relay_smtp);
        let refused_first = Arc::new(AtomicU64::new(0));
        let refused_all = Arc::new(AtomicU64::new(0));
        let never = Arc::new(AtomicU64::new(0));
        let waits = Arc::new(tokio::sync::Mutex::new(histogram()));
        let (rf, ra, nv, w) = (
            refused_first.clone(),
            refused_all.clone(),
            never.clone(),
            waits.clone(),
        );
        let side_name = side.name;
        let run = open_loop(
            1000.0 / self.scale.pbs_interval_ms as f64,
            256,
            Limit {
                duration: Duration::from_secs(3600),
                max_ops: trials as u64,
            },
            move |seq| {
                let (rf, ra, nv, w) = (rf.clone(), ra.clone(), nv.clone(), w.clone());
                async move {
                    // A fresh source address per trial (127.0.k.2 ..= 127.0.k.250), so no
                    // earlier grant or map entry answers for this one.
                    let i = seq as usize;
                    let src = IpAddr::V4(Ipv4Addr::new(
                        127,
                        0,
                        (10 + i / 249) as u8,
                        (2 + i % 249) as u8,
                    ));
                    let mut p = Conn::new(connect(Some(src), pop).await?);
                    pop_login(
                        &mut p,
                        &address(&format!("pbs{}", i % POP_USERS + 1)),
                        PASSWORD,
                    )
                    .await?;
                    let ok_at = Instant::now();
                    let mut first = true;
                    let accepted = loop {
                        let mut s = Conn::new(connect(Some(src), smtp).await?);
                        s.smtp_reply().await?;
                        s.smtp("EHLO client.example.net\r\n", 2).await?;
                        s.smtp("MAIL FROM:<roamer@example.test>\r\n", 2).await?;
                        s.send(b"RCPT TO:<someone@remote.example>\r\n").await?;
                        let code = s.smtp_reply().await?;
                        let _ = s.send(b"QUIT\r\n").await;
                        if code == 250 {
                            break Some(ok_at.elapsed());
                        }
                        ra.fetch_add(1, Ordering::Relaxed);
                        if first {
                            rf.fetch_add(1, Ordering::Relaxed);
                            first = false;
                        }
                        if ok_at.elapsed() > Duration::from_secs(3) {
                            break None;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    };
                    match accepted {
                        Some(d) => {
                            let _ = w
                                .lock()
                                .await
                                .record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1));
                        }
                        None => {
                            nv.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let _ = p.pop("QUIT\r\n").await;
                    Ok(())
                }
            },
        )
        .await;
        if run.errors > 0 {
            bail!(
                "{side_name}: {} trials failed: {}",
                run.errors,
                run.first_error.unwrap_or_default()
            );
        }
        let waits = waits.lock().await.clone();
        let mut f = Figures::default();
        let refused = refused_first.load(Ordering::Relaxed);
        f.add("immediate relays refused", Better::Lower, refused as f64);
        f.add(
            "immediate relays refused (%)",
            Better::Lower,
            refused as f64 * 100.0 / trials as f64,
        );
        f.add(
            "trials never accepted within 3 s",
            Better::Lower,
            never.load(Ordering::Relaxed) as f64,
        );
        // Only trials whose relay was accepted have a time to report.
        if waits.is_empty() {
            return Ok((
                f,
                json!({"trials": trials, "refused_first": refused, "refused_attempts": refused_all.load(Ordering::Relaxed), "never": never.load(Ordering::Relaxed), "trial_latency": run.latency}),
            ));
        }
        let ms = |q: f64| waits.value_at_quantile(q) as f64 / 1000.0;
        f.add(
            "+OK to first accepted relay, p50 (ms)",
            Better::Lower,
            ms(0.5),
        );
        f.add(
            "+OK to first accepted relay, p99 (ms)",
            Better::Lower,
            ms(0.99),
        );
        f.add(
            "+OK to first accepted relay, max (ms)",
            Better::Lower,
            waits.max() as f64 / 1000.0,
        );
        Ok((
            f,
            json!({"trials": trials, "refused_first": refused, "refused_attempts": refused_all.load(Ordering::Relaxed), "never": never.load(Ordering::Relaxed), "trial_latency": run.latency}),
        ))
    }

    /// Workload 4 comes from criterion (`cargo bench -p popgate-core --bench grant`),
    /// which xtask runs before this suite; here its estimates are read back.
    fn grant_table(&mut self) {
        let Some(dir) = self.opts.criterion.clone() else {
            return;
        };
        let mut f = Figures::default();
        let mut raw = serde_json::Map::new();
        for size in ["1k", "100k", "1m"] {
            for (bench, metric) in [
                ("lookup", "lookups/s (lookup: a relay decision's read)"),
                ("view", "lookups/s (get: an owned GrantView for the API)"),
                ("reserve_release", "relay checks/s (reserve+release)"),
            ] {
                let file = dir
                    .join(format!("grant_{bench}"))
                    .join(size)
                    .join("new/estimates.json");
                if let Some(ns) = std::fs::read_to_string(&file)
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                    .and_then(|v| v["median"]["point_estimate"].as_f64())
                {
                    f.add(
                        &format!("{metric} at {size} grants, one core"),
                        Better::Higher,
                        1e9 / ns,
                    );
                    raw.insert(format!("{bench}/{size} ns"), json!(ns));
                }
            }
        }
        let memory = dir.join("grant_memory.json");
        if let Some(v) = std::fs::read_to_string(&memory)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        {
            for size in ["1k", "100k", "1m"] {
                if let Some(b) = v[size].as_f64() {
                    f.add(
                        &format!("bytes per grant at {size} grants"),
                        Better::Lower,
                        b,
                    );
                }
            }
            raw.insert("memory".into(), v);
        }
        self.raw.insert("4 grant table".into(), Value::Object(raw));
        self.row(
            "4 grant table (criterion)",
            f,
            None,
            "no peer equivalent (Postfix reads a hash map file)",
        );
        self.print_last("4 grant table (criterion)");
    }

    async fn idle(&self, side: &Side) -> Result<(Figures, Value)> {
        let n = self.scale.idle;
        let root = side.pop_root;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (pss0, rss0) = (procfs::pss_kb(root), procfs::rss_kb(root));
        let slots = Arc::new(tokio::sync::Semaphore::new(100));
        let mut tasks = tokio::task::JoinSet::new();
        let addr = side.pop3;
        for i in 0..n {
            let slots = slots.clone();
            tasks.spawn(async move {
                let _slot = slots.acquire_owned().await;
                // 40 source addresses, so no per-address cap decides the result.
                let src = IpAddr::V4(Ipv4Addr::new(127, 0, 2, (1 + i % 40) as u8));
                let mut c = Conn::new(connect(Some(src), addr).await?);
                c.pop_ok().await?;
                anyhow::Ok(c)
            });
        }
        let mut held = Vec::with_capacity(n);
        let mut failed = 0;
        let mut first_error = None;
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Ok(c)) => held.push(c),
                Ok(Err(e)) => {
                    failed += 1;
                    first_error.get_or_insert(format!("{e:#}"));
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (pss1, rss1) = (procfs::pss_kb(root), procfs::rss_kb(root));
        let open = held.len();
        drop(held);
        if open == 0 {
            bail!(
                "{}: no idle connection opened: {}",
                side.name,
                first_error.unwrap_or_default()
            );
        }
        let mut f = Figures::default();
        let per = (pss1.saturating_sub(pss0)) as f64 / open as f64;
        f.add("KB per idle connection (PSS)", Better::Lower, per);
        f.add("connections held", Better::Higher, open as f64);
        // Let the server settle before the next workload.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok((
            f,
            json!({"opened": open, "failed": failed, "first_error": first_error, "pss_kb_before": pss0, "pss_kb_after": pss1, "rss_kb_before": rss0, "rss_kb_after": rss1}),
        ))
    }

    async fn starttls(&self, side: &Side) -> Result<(Figures, Value)> {
        let connector = crate::tls::connector()?;
        let mut f = Figures::default();
        let mut raw = Vec::new();
        let addr = side.smtp;
        for _ in 0..self.scale.reps {
            let cpu0 = procfs::cpu_seconds(side.smtp_root);
            let connector = connector.clone();
            let run = closed_loop(8, self.limit(), move |_, _| {
                let connector = connector.clone();
                async move {
                    let mut c = Conn::new(connect(None, addr).await?);
                    c.smtp_reply().await?;
                    c.smtp("EHLO loadgen.example.test\r\n", 2).await?;
                    c.smtp("STARTTLS\r\n", 2).await?;
                    let name = rustls_pki_types::ServerName::try_from("mail.example.test")?;
                    let tls = tokio::time::timeout(
                        conn::IO_TIMEOUT,
                        connector.connect(name, c.into_inner()),
                    )
                    .await??;
                    let mut t = Conn::new(tls);
                    t.smtp("EHLO loadgen.example.test\r\n", 2).await?;
                    t.smtp("QUIT\r\n", 2).await?;
                    Ok(())
                }
            })
            .await;
            let cpu = procfs::cpu_seconds(side.smtp_root) - cpu0;
            check_errors(side, &run)?;
            f.add("handshakes/s", Better::Higher, run.per_second());
            f.run_latency("", &run);
            f.add(
                "server CPU ms per handshake",
                Better::Lower,
                cpu / run.ops.max(1) as f64 * 1000.0,
            );
            raw.push(json!({"run": run, "cpu_s": cpu}));
        }
        Ok((f, json!(raw)))
    }

    /// Workload 6: mixed SMTP + POP3 load with and without a live and a stalled
    /// dashboard WebSocket, in alternating pairs; popgate only.
    async fn dashboard(&mut self, pg: &Side) -> Result<()> {
        let Some(http) = pg.http else {
            bail!("popgate has no http listener");
        };
        let mut without = Vec::new();
        let mut with = Vec::new();
        let (mut cpu_without, mut cpu_with) = (Vec::new(), Vec::new());
        let mut frames_total = 0;
        for pair in 0..self.scale.pairs {
            for attached in if pair % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            } {
                let mut watchers = tokio::task::JoinSet::new();
                let frames = Arc::new(AtomicU64::new(0));
                if attached {
                    let url = format!("ws://{http}/api/events");
                    let (live, _) = tokio_tungstenite::connect_async(&url)
                        .await
                        .context("dashboard WebSocket")?;
                    let count = frames.clone();
                    watchers.spawn(async move {
                        use futures_util::StreamExt;
                        let mut live = live;
                        while let Some(Ok(_)) = live.next().await {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    // The stalled client: a tiny receive buffer and nobody reading.
                    let socket = tokio::net::TcpSocket::new_v4()?;
                    socket.set_recv_buffer_size(4096)?;
                    let stream = socket.connect(http).await?;
                    let (stalled, _) = tokio_tungstenite::client_async(url.as_str(), stream)
                        .await
                        .context("stalled WebSocket")?;
                    watchers.spawn(async move {
                        let _hold = stalled;
                        std::future::pending::<()>().await;
                    });
                }
                let sink = self.sink();
                let cpu0 = procfs::cpu_seconds(pg.smtp_root);
                let run = mixed(pg, &sink, self.body.clone(), self.limit()).await;
                // Server CPU per operation separates the server's cost of the dashboards
                // from the live client's (it decodes every frame on these same cores).
                let cpu_ms =
                    (procfs::cpu_seconds(pg.smtp_root) - cpu0) * 1000.0 / run.ops.max(1) as f64;
                check_errors(pg, &run)?;
                watchers.abort_all();
                frames_total += frames.load(Ordering::Relaxed);
                if attached {
                    with.push(run.per_second());
                    cpu_with.push(cpu_ms);
                } else {
                    without.push(run.per_second());
                    cpu_without.push(cpu_ms);
                }
            }
        }
        let mut f = Figures::default();
        for v in &without {
            f.add("mixed ops/s, no dashboard", Better::Higher, *v);
        }
        for v in &cpu_without {
            f.add("server CPU ms per op, no dashboard", Better::Lower, *v);
        }
        for v in &cpu_with {
            f.add("server CPU ms per op, with dashboards", Better::Lower, *v);
        }
        for v in &with {
            f.add(
                "mixed ops/s, 1 live + 1 stalled WebSocket",
                Better::Higher,
                *v,
            );
        }
        if let (Some(a), Some(b)) = (Spread::of(&without), Spread::of(&with)) {
            f.add(
                "throughput kept with dashboards (%)",
                Better::Higher,
                b.median / a.median * 100.0,
            );
        }
        let name = format!(
            "6 mixed SMTP+POP3 (4+4 clients), {} paired runs",
            self.scale.pairs
        );
        self.raw.insert(
            name.clone(),
            json!({"without": without, "with": with, "cpu_ms_without": cpu_without, "cpu_ms_with": cpu_with, "frames_received": frames_total}),
        );
        self.row(&name, f, None, "popgate only: the peer has no dashboard");
        self.print_last(&name);
        Ok(())
    }

    fn write_report(&self, meta: Value) -> Result<()> {
        let report = &self.opts.report;
        if let Some(parent) = report.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let json_path = report.with_extension("json");
        let md_path = report.with_extension("md");
        let doc = json!({"meta": meta, "rows": self.rows, "raw": self.raw});
        std::fs::write(&json_path, serde_json::to_string_pretty(&doc)?)?;
        let mut md = String::new();
        let _ = writeln!(md, "# popgate vs Postfix + Dovecot\n");
        let _ = writeln!(md, "Peer: {}  ", meta["peer"].as_str().unwrap_or(""));
        let _ = writeln!(
            md,
            "Load before: `{}`  ",
            meta["load_before"].as_str().unwrap_or("")
        );
        let _ = writeln!(
            md,
            "Load after: `{}`\n",
            meta["load_after"].as_str().unwrap_or("")
        );
        let _ = writeln!(
            md,
            "Median [min–max] of the repetitions; ratio > 1 means popgate is better.\n"
        );
        let _ = writeln!(
            md,
            "| workload | metric | popgate | peer | ratio |\n|---|---|---|---|---|"
        );
        for r in &self.rows {
            let _ = writeln!(md, "{}", table_line(r));
        }
        let mut notes: Vec<(String, String)> = Vec::new();
        for r in &self.rows {
            if !r.note.is_empty() && !notes.iter().any(|(w, _)| *w == r.workload) {
                notes.push((r.workload.clone(), r.note.clone()));
            }
        }
        let _ = writeln!(md, "\nNotes:\n");
        for (w, n) in notes {
            let _ = writeln!(md, "* {w}: {n}");
        }
        std::fs::write(&md_path, &md)?;
        println!("\n{md}");
        println!("report: {} and {}", md_path.display(), json_path.display());
        Ok(())
    }
}

/// 4 SMTP delivery clients and 4 POP3 login+STAT clients at once.
async fn mixed(side: &Side, sink: &str, body: Arc<Vec<u8>>, limit: Limit) -> Run {
    let (smtp, pop3, to) = (side.smtp, side.pop3, address(sink));
    closed_loop(8, limit, move |worker, _| {
        let (to, body) = (to.clone(), body.clone());
        async move {
            if worker % 2 == 0 {
                let mut c = Conn::new(connect(None, smtp).await?);
                smtp_deliver(&mut c, "bench@example.test", &to, &body, 1).await
            } else {
                let mut c = Conn::new(connect(None, pop3).await?);
                pop_login(
                    &mut c,
                    &address(&format!("pop{}", worker % POP_USERS + 1)),
                    PASSWORD,
                )
                .await?;
                c.pop("STAT\r\n").await?;
                c.pop("QUIT\r\n").await
            }
        }
    })
    .await
}

fn check_errors(side: &Side, run: &Run) -> Result<()> {
    // A few failures among thousands (a reset under load) are reported in the raw
    // figures; a run that mostly failed measures nothing.
    if run.errors > 0 && run.errors * 100 > run.ops.max(1) {
        bail!(
            "{}: {} of {} operations failed: {}",
            side.name,
            run.errors,
            run.ops + run.errors,
            run.first_error.clone().unwrap_or_default()
        );
    }
    Ok(())
}

fn fmt_spread(s: &Option<Spread>) -> String {
    match s {
        None => "—".into(),
        Some(s) if s.runs.len() == 1 || s.min == s.max => num(s.median),
        Some(s) => format!("{} [{}–{}]", num(s.median), num(s.min), num(s.max)),
    }
}

fn num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn table_line(r: &Row) -> String {
    let ratio = match r.ratio() {
        Some(x) => format!("{x:.2}×"),
        None if r.peer.is_some() && r.popgate.as_ref().is_some_and(|p| p.median == 0.0) => {
            "∞ (popgate 0)".into()
        }
        None => "—".into(),
    };
    format!(
        "| {} | {} | {} | {} | {} |",
        r.workload,
        r.metric,
        fmt_spread(&r.popgate),
        fmt_spread(&r.peer),
        ratio
    )
}

/// `(syscall, calls)` from the summary table `strace -c` writes.
fn strace_calls(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            let name = *t.last()?;
            if !name.contains("sync") || t.len() < 5 {
                return None;
            }
            Some((name.to_string(), t.get(3)?.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strace_summary_is_parsed() {
        let text = "% time     seconds  usecs/call     calls    errors syscall\n------ ----------- ----------- --------- --------- ----------------\n 70.00    0.070000         175       400           fsync\n 30.00    0.030000         150       200        3 fdatasync\n------ ----------- ----------- --------- --------- ----------------\n100.00    0.100000         166       600         3 total\n";
        assert_eq!(
            strace_calls(text),
            vec![("fsync".to_string(), 400), ("fdatasync".to_string(), 200)]
        );
    }

    #[test]
    fn ratio_says_how_many_times_better_popgate_is() {
        let row = |better, p: f64, q: f64| Row {
            workload: String::new(),
            metric: String::new(),
            better,
            popgate: Spread::of(&[p]),
            peer: Spread::of(&[q]),
            note: String::new(),
        };
        assert_eq!(row(Better::Higher, 200.0, 100.0).ratio(), Some(2.0));
        assert_eq!(row(Better::Lower, 1.0, 3.0).ratio(), Some(3.0));
        assert_eq!(row(Better::Lower, 0.0, 3.0).ratio(), None);
    }
}
