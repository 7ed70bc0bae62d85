//! `cargo xtask run`: build the web app and the server, run `popgate serve` from the
//! repository root (data in `./popgate-data`, the web app from `./web/dist`), tell the
//! developer where everything is, and stop it cleanly on Ctrl-C.
//!
//! Readiness comes from popgate's stdout, never from a timer: each listener prints
//! `popgate: listening <name> <addr>` once it is bound, then `popgate: ready`.
//!
//! popgate runs in its own process group, so the terminal's Ctrl-C reaches only us; we
//! forward it as one SIGINT (a second Ctrl-C sends SIGKILL) and wait until popgate has
//! exited and its last output is printed.

use std::{
    fs,
    io::{BufRead, BufReader, Read},
    process::{Command, ExitCode, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver, Sender},
    thread,
};

use anyhow::{Context, Result, bail};

use crate::{
    sh::{Repo, display},
    tools, web,
};

const LISTENING: &str = "popgate: listening ";
const READY: &str = "popgate: ready";
/// Written by popgate on first run (0600), one `address password` per line.
const DEMO_CREDENTIALS: &str = "popgate-data/demo-credentials.txt";

pub fn run(repo: &Repo, popgate_args: &[String]) -> Result<ExitCode> {
    tools::ensure_build_tools(repo)?;

    println!("\n==> trunk build --release");
    web::build_release(repo)?;

    println!("\n==> cargo build --release -p popgate-server");
    repo.run(
        repo.cmd("cargo")
            .args(["build", "--release", "-p", "popgate-server"]),
    )?;

    println!("\n==> popgate serve");
    let (notes, inbox) = mpsc::channel();
    let on_interrupt = notes.clone();
    ctrlc::set_handler(move || {
        let _ = on_interrupt.send(Note::Interrupt);
    })
    .context("could not install the Ctrl-C handler")?;

    let mut cmd = repo.cmd(repo.target_dir().join("release").join("popgate"));
    cmd.arg("serve").args(popgate_args);
    let outcome = supervise(repo, &mut cmd, notes, &inbox, |listeners| {
        print_welcome(repo, listeners)
    })?;
    let status = outcome.status;
    if outcome.interrupts > 0 {
        println!("popgate stopped ({status})");
        return Ok(ExitCode::SUCCESS);
    }
    if !outcome.ready {
        bail!("popgate exited before it was ready ({status})");
    }
    if !status.success() {
        bail!("popgate exited ({status})");
    }
    Ok(ExitCode::SUCCESS)
}

/// How a supervised popgate ended.
#[derive(Debug)]
struct Outcome {
    ready: bool,
    interrupts: u32,
    status: ExitStatus,
}

/// Runs `cmd` (popgate) relaying its stdout, calls `on_ready` with the listeners once it
/// prints the readiness line, forwards each `Note::Interrupt` arriving in `inbox`, and
/// returns once popgate has exited and all its output is relayed. `notes` is the sender
/// side of `inbox`, lent to the threads that watch the child.
fn supervise(
    repo: &Repo,
    cmd: &mut Command,
    notes: Sender<Note>,
    inbox: &Receiver<Note>,
    mut on_ready: impl FnMut(&[Listener]),
) -> Result<Outcome> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let shown = display(cmd);
    println!("$ {shown}");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    let pid = child.id();
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        bail!("the stdout of `{shown}` was not captured");
    };
    spawn_line_reader(stdout, notes.clone());
    // This thread owns the child: it reaps it and reports the exit. We signal by pid,
    // which stays valid until that reap.
    thread::spawn(move || {
        let _ = notes.send(Note::Exited(child.wait()));
    });

    let mut listeners = Vec::new();
    let mut ready = false;
    let mut interrupts = 0;
    let mut stdout_open = true;
    let mut exit: Option<ExitStatus> = None;
    // Finish when popgate has exited AND every line it wrote has been relayed.
    while stdout_open || exit.is_none() {
        let Ok(note) = inbox.recv() else {
            bail!("lost track of `{shown}` (pid {pid})");
        };
        match note {
            Note::Line(line) => {
                println!("{line}");
                if ready {
                    continue;
                }
                if let Some(listener) = parse_listening(&line) {
                    listeners.push(listener);
                } else if line.trim_end() == READY {
                    ready = true;
                    on_ready(&listeners);
                }
            }
            Note::StdoutClosed => stdout_open = false,
            Note::Exited(status) => {
                exit = Some(status.with_context(|| format!("could not wait for `{shown}`"))?);
            }
            Note::Interrupt => {
                interrupts += 1;
                if exit.is_none() {
                    forward_interrupt(repo, pid, interrupts);
                }
            }
        }
    }
    let Some(status) = exit else {
        bail!("lost track of `{shown}` (pid {pid})");
    };
    Ok(Outcome {
        ready,
        interrupts,
        status,
    })
}

#[derive(Debug)]
enum Note {
    Line(String),
    StdoutClosed,
    Exited(std::io::Result<ExitStatus>),
    Interrupt,
}

/// Relays popgate's stdout line by line. Invalid UTF-8 is shown lossily rather than
/// ending the relay (which would close the pipe under popgate).
fn spawn_line_reader(stdout: impl Read + Send + 'static, notes: Sender<Note>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buffer);
                    let line = line.trim_end_matches(['\n', '\r']).to_string();
                    if notes.send(Note::Line(line)).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = notes.send(Note::StdoutClosed);
    });
}

#[cfg(unix)]
fn forward_interrupt(repo: &Repo, pid: u32, interrupts: u32) {
    let signal = if interrupts == 1 {
        println!("\n==> Ctrl-C: asking popgate to shut down (Ctrl-C again kills it)");
        "INT"
    } else {
        println!("\n==> Ctrl-C again: killing popgate");
        "KILL"
    };
    let pid = pid.to_string();
    if let Err(error) = repo.run(repo.cmd("kill").args(["-s", signal, &pid])) {
        eprintln!("error: could not signal popgate: {error:#}");
    }
}

/// Elsewhere the console delivers Ctrl-C to popgate itself; we only wait for it.
#[cfg(not(unix))]
fn forward_interrupt(_repo: &Repo, _pid: u32, _interrupts: u32) {}

#[derive(Debug, PartialEq)]
struct Listener {
    name: String,
    addr: String,
}

/// `popgate: listening pop3 127.0.0.1:2110`.
fn parse_listening(line: &str) -> Option<Listener> {
    let mut words = line.strip_prefix(LISTENING)?.split_whitespace();
    let (name, addr) = (words.next()?, words.next()?);
    if words.next().is_some() {
        return None;
    }
    Some(Listener {
        name: name.to_string(),
        addr: addr.to_string(),
    })
}

/// `address password` pairs; blank lines and `#` comments are skipped.
fn parse_credentials(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (address, password) = line.split_once(char::is_whitespace)?;
            Some((address.to_string(), password.trim().to_string()))
        })
        .collect()
}

fn print_welcome(repo: &Repo, listeners: &[Listener]) {
    let addr_of = |name: &str| {
        listeners
            .iter()
            .find(|listener| listener.name == name)
            .map(|listener| listener.addr.as_str())
    };
    println!("\npopgate is running; Ctrl-C stops it.");
    for listener in listeners {
        println!("  {:<12} {}", listener.name, listener.addr);
    }
    match addr_of("http") {
        Some(addr) => println!("Dashboard: http://{addr}/"),
        None => println!("Dashboard: not started (no http listener configured)"),
    }
    match fs::read_to_string(repo.root.join(DEMO_CREDENTIALS)) {
        Ok(text) => {
            println!("Demo users (address password), from {DEMO_CREDENTIALS}:");
            for (address, password) in parse_credentials(&text) {
                println!("  {address}  {password}");
            }
        }
        Err(_) => println!(
            "No {DEMO_CREDENTIALS} (a --config with its own data_dir?): add a user with \
             `target/release/popgate user add ADDRESS`"
        ),
    }
    if let (Some(pop3), Some(smtp)) = (addr_of("pop3"), addr_of("smtp")) {
        println!(
            "Point a mail client at it: POP3 {pop3} with a demo user, SMTP {smtp}; the POP3 \
             login lets the client's address relay for 30 minutes (the default grant)."
        );
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines_name_a_listener_and_its_address() {
        assert_eq!(
            parse_listening("popgate: listening pop3 127.0.0.1:2110"),
            Some(Listener {
                name: "pop3".into(),
                addr: "127.0.0.1:2110".into()
            })
        );
        assert_eq!(
            parse_listening("popgate: listening http [::1]:8025"),
            Some(Listener {
                name: "http".into(),
                addr: "[::1]:8025".into()
            })
        );
        assert_eq!(parse_listening("popgate: ready"), None);
        assert_eq!(parse_listening("popgate: listening pop3"), None);
        assert_eq!(parse_listening("popgate: listening a b c"), None);
        assert_eq!(parse_listening("INFO popgate: listening pop3 x"), None);
    }

    #[cfg(unix)]
    /// A stand-in for popgate: prints its readiness lines, then either exits with `exit`
    /// or, when `exit` is None, waits for SIGINT and shuts down.
    fn fake_popgate(repo: &Repo, exit: Option<u8>) -> Command {
        let end = match exit {
            Some(code) => format!("sys.exit({code})"),
            None => "signal.pause()".to_string(),
        };
        // Like popgate, it is ready for SIGINT before it says `ready`: the whole script
        // runs inside the try.
        let script = format!(
            "import signal, sys\n\
             try:\n\
             \x20   print('popgate: listening pop3 127.0.0.1:2110')\n\
             \x20   print('popgate: listening http 127.0.0.1:8025')\n\
             \x20   print('popgate: ready', flush=True)\n\
             \x20   {end}\n\
             except KeyboardInterrupt:\n\
             \x20   print('popgate: stopped')\n"
        );
        let mut cmd = repo.cmd("python3");
        cmd.args(["-c", &script]);
        cmd
    }

    #[cfg(unix)]
    /// Supervises the fake; returns how it ended and the listener names seen at ready.
    fn supervise_fake(exit: Option<u8>, interrupt_when_ready: bool) -> (Outcome, Vec<String>) {
        let repo = Repo::locate().expect("the repository root");
        let (notes, inbox) = mpsc::channel();
        let interrupt = notes.clone();
        let mut seen = Vec::new();
        let outcome = supervise(
            &repo,
            &mut fake_popgate(&repo, exit),
            notes,
            &inbox,
            |listeners| {
                seen = listeners.iter().map(|l| l.name.clone()).collect();
                if interrupt_when_ready {
                    interrupt
                        .send(Note::Interrupt)
                        .expect("the supervisor is listening");
                }
            },
        )
        .expect("the fake popgate runs");
        (outcome, seen)
    }

    #[cfg(unix)]
    #[test]
    fn readiness_is_read_from_stdout_with_the_listeners_before_it() {
        let (outcome, listeners) = supervise_fake(Some(0), false);
        assert!(outcome.ready);
        assert!(outcome.status.success());
        assert_eq!(outcome.interrupts, 0);
        assert_eq!(listeners, ["pop3", "http"]);
    }

    #[cfg(unix)]
    #[test]
    fn ctrl_c_is_forwarded_as_sigint_and_the_shutdown_awaited() {
        let (outcome, _) = supervise_fake(None, true);
        assert!(outcome.ready);
        assert_eq!(outcome.interrupts, 1);
        assert!(
            outcome.status.success(),
            "the fake shut down cleanly: {}",
            outcome.status
        );
    }

    #[cfg(unix)]
    #[test]
    fn an_exit_status_is_reported() {
        let (outcome, listeners) = supervise_fake(Some(3), false);
        assert!(outcome.ready);
        assert_eq!(listeners.len(), 2);
        assert_eq!(outcome.status.code(), Some(3));
    }

    #[test]
    fn credentials_are_address_password_lines() {
        let text = "# demo users\nalice@example.test  s3cret\n\nbob@example.test\tp w\nbroken\n";
        assert_eq!(
            parse_credentials(text),
            vec![
                ("alice@example.test".to_string(), "s3cret".to_string()),
                ("bob@example.test".to_string(), "p w".to_string()),
            ]
        );
    }
}
