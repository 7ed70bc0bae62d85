//! A real `redis-server` (Debian's package) for the tests of nodes that share grants:
//! started on a free loopback port in a temporary folder, with persistence off, awaited
//! on its readiness line and a PING, and killed when dropped.

use crate::{IO_TIMEOUT, READY_DEADLINE};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Instant;

/// The program the tests run.
pub const REDIS_SERVER: &str = "redis-server";

/// A running `redis-server`.
#[derive(Debug)]
pub struct Redis {
    dir: tempfile::TempDir,
    port: u16,
    /// `--requirepass`: clients must AUTH.
    password: Option<String>,
    child: Option<Child>,
}

impl Redis {
    /// Start one, or `None` (having printed why) when `redis-server` is not installed
    /// (`cargo xtask test` installs it as root).
    pub fn start() -> Option<Redis> {
        Redis::start_with(None)
    }

    /// [`start`](Redis::start) one that requires AUTH with `password`.
    pub fn start_with_password(password: &str) -> Option<Redis> {
        Redis::start_with(Some(password.to_string()))
    }

    fn start_with(password: Option<String>) -> Option<Redis> {
        if Command::new(REDIS_SERVER)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            eprintln!(
                "skipped: {REDIS_SERVER} is not installed (Debian: apt-get install redis-server)"
            );
            return None;
        }
        // A port the kernel just handed out and released is free for the moment.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut redis = Redis {
            dir: tempfile::tempdir().expect("a temporary folder for redis-server"),
            port,
            password,
            child: None,
        };
        redis.run();
        Some(redis)
    }

    /// `redis://127.0.0.1:PORT/0`, with `:PASSWORD@` when it requires one.
    pub fn url(&self) -> String {
        self.url_with_password(self.password.as_deref())
    }

    /// The URL with another password (or none), to show a wrong one is refused.
    pub fn url_with_password(&self, password: Option<&str>) -> String {
        match password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Kill it (SIGKILL, as a crash or a pulled cable would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port (empty: persistence is off).
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Send one command (inline form) and read one reply line.
    pub fn command(&self, line: &str) -> String {
        let mut stream = TcpStream::connect(self.addr()).expect("connect to redis-server");
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set a read timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
        let mut reply = String::new();
        if let Some(pw) = &self.password {
            stream
                .write_all(format!("AUTH {pw}\r\n").as_bytes())
                .expect("write to redis-server");
            reader.read_line(&mut reply).expect("a reply to AUTH");
            assert_eq!(reply.trim_end(), "+OK", "AUTH");
            reply.clear();
        }
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write to redis-server");
        reader
            .read_line(&mut reply)
            .expect("a reply from redis-server");
        reply.trim_end().to_string()
    }

    fn run(&mut self) {
        let mut child = Command::new(REDIS_SERVER)
            .current_dir(self.dir.path())
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--dir", &self.dir.path().display().to_string()])
            // The log to stdout, where the readiness line is awaited.
            .args(["--logfile", ""])
            .args(
                self.password
                    .iter()
                    .flat_map(|pw| ["--requirepass".to_string(), pw.clone()]),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {REDIS_SERVER}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody waits any more: keep draining so redis never blocks.
                }
            }
        });
        let start = Instant::now();
        let mut seen = Vec::new();
        loop {
            let left = READY_DEADLINE.saturating_sub(start.elapsed());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("Ready to accept connections") => break,
                Ok(line) => seen.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!("{REDIS_SERVER} not ready within {READY_DEADLINE:?}: {seen:#?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = child.kill();
                    panic!("{REDIS_SERVER} exited before it was ready: {seen:#?}")
                }
            }
        }
        self.child = Some(child);
        let pong = self.command("PING");
        assert_eq!(pong, "+PONG", "PING");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
