//! The order of system calls in one delivery, watched with strace (Debian's `strace`):
//! the message file is written and fsynced, linked (or renamed) into `new/`, and
//! `new/` is fsynced, all before the `250` is written to the client's socket
//! (DESIGN.md "Storage and delivery"). A kill test cannot show this: the page cache
//! outlives a killed process, so a server that answered before its fsync would pass
//! it; only a power cut would tell, and strace shows the order directly.
//!
//! strace attaches to the running server (`-f -p PID`, every thread), with `-yy` so
//! every descriptor is printed with what it is (a path, or a TCP connection): the
//! descriptors are followed without guessing from numbers. Skipped, with the reason
//! printed, when strace is missing or ptrace is not permitted (a container without
//! CAP_SYS_PTRACE, Yama's ptrace_scope).

use popgate_tests::{Client, IO_TIMEOUT, Setup, host, reply};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Instant;

const TARO: &str = "taro@example.test";

/// The system calls that matter, as the test plan names them.
const TRACE: &str = "trace=write,writev,pwrite64,sendto,sendmsg,fsync,fdatasync,link,linkat,rename,renameat,renameat2,openat";

/// strace, if it is installed and may trace a process here.
fn strace_usable() -> Result<(), String> {
    match Command::new("strace")
        .args(["-f", "-o", "/dev/null", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Err(e) => Err(format!(
            "strace is not installed ({e}); apt-get install strace"
        )),
        Ok(out) if !out.status.success() => Err(format!(
            "strace cannot trace here (ptrace not permitted?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => Ok(()),
    }
}

/// strace attached to every thread of `pid`, writing to `out`; returns once each
/// thread that existed at the start reports `attached`.
fn attach(pid: u32, out: &Path) -> Child {
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(1);
    let mut child = Command::new("strace")
        .args(["-f", "-yy", "-s", "128", "-e", TRACE, "-o"])
        .arg(out)
        .arg("-p")
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start strace");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                // Nobody waits any more: keep draining so strace never blocks.
            }
        }
    });
    let start = Instant::now();
    let mut attached = 0;
    while attached < threads {
        let left = IO_TIMEOUT.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            // With -f, strace attaches every thread and says so once: "Process N
            // attached with M threads"; one thread alone is "Process N attached".
            Ok(line) if line.contains("attached with") => break,
            Ok(line) if line.contains("attached") => attached += 1,
            Ok(_) => {}
            Err(e) => panic!("strace attached to {attached} of {threads} threads: {e}"),
        }
    }
    child
}

/// One system call from strace's output: which thread, the call, its first
/// argument's annotation (the `<...>` after a descriptor), the whole text, and the
/// line indices where it began and where it returned.
#[derive(Debug, Clone)]
struct Call {
    name: String,
    text: String,
    began: usize,
    ended: usize,
}

/// Joins strace's `<unfinished ...>` / `<... NAME resumed>` halves (threads interleave)
/// into whole calls, in the order they began.
fn parse(trace: &str) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    // Per thread id: the index in `calls` of its call in flight.
    let mut open: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, line) in trace.lines().enumerate() {
        let Some((tid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with("<...") {
            if let Some(&at) = open.get(tid) {
                let resumed = rest.split_once("resumed>").map_or("", |(_, r)| r);
                calls[at].text.push_str(resumed);
                calls[at].ended = i;
                open.remove(tid);
            }
            continue;
        }
        let Some(paren) = rest.find('(') else {
            // `+++ exited`, `--- SIGxxx`: not a call.
            continue;
        };
        let name = rest[..paren].to_owned();
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let unfinished = rest.ends_with("<unfinished ...>");
        calls.push(Call {
            name,
            text: rest.trim_end_matches("<unfinished ...>").to_owned(),
            began: i,
            ended: i,
        });
        if unfinished {
            open.insert(tid.to_owned(), calls.len() - 1);
        }
    }
    calls
}

/// The `<...>` annotation of the call's first argument (`-yy`): a path or a socket.
fn first_fd(call: &Call) -> &str {
    let args = &call.text[call.name.len() + 1..];
    match (args.find('<'), args.find(',').or(args.find(')'))) {
        (Some(open), Some(end)) if open < end => {
            // The annotation ends at a '>' followed by the end of the argument (a TCP
            // one holds "->" itself).
            let bytes = args.as_bytes();
            let close = (open + 1..bytes.len())
                .find(|&i| {
                    bytes[i] == b'>' && matches!(bytes.get(i + 1), None | Some(b',' | b')' | b' '))
                })
                .unwrap_or(args.len());
            &args[open + 1..close]
        }
        _ => "",
    }
}

fn succeeded(call: &Call) -> bool {
    call.text
        .rsplit_once(" = ")
        .is_some_and(|(_, ret)| !ret.trim_start().starts_with('-'))
}

#[test]
fn file_fsync_link_and_directory_fsync_come_before_the_250() {
    if let Err(why) = strace_usable() {
        println!("SKIPPED syscall_order: {why}");
        return;
    }
    let server = Setup::default().user(TARO, "taro-password").start();
    // A first delivery creates the Maildir (more fsyncs); the traced one is the
    // ordinary case, into folders that exist.
    popgate_tests::send_local(server.smtp(), TARO, &popgate_tests::message("warm-up"));

    let mut c = Client::smtp_from(server.smtp(), host(1));
    assert!(
        c.smtp("MAIL FROM:<sender@elsewhere.test>")
            .starts_with("250 ")
    );
    assert!(c.smtp(&format!("RCPT TO:<{TARO}>")).starts_with("250 "));
    assert!(c.smtp("DATA").starts_with("354 "));
    let message = popgate_tests::message("traced");

    let dir = tempfile::tempdir().expect("a folder for the trace");
    let out = dir.path().join("trace");
    let mut strace = attach(server.pid(), &out);
    c.send(&message);
    c.send(b".\r\n");
    let end = c.smtp_last();
    assert!(end.starts_with(reply::QUEUED), "end of data: {end:?}");
    // SIGINT: strace detaches from every thread and flushes its output.
    popgate_tests::run_ok(
        Command::new("kill")
            .arg("-INT")
            .arg(strace.id().to_string()),
    );
    let _ = strace.wait();
    let trace = std::fs::read_to_string(&out).expect("read the strace output");
    let calls = parse(&trace);
    let show = || trace.lines().take(400).collect::<Vec<_>>().join("\n");

    // The 250 on the client's socket.
    let reply = calls
        .iter()
        .find(|c| {
            matches!(c.name.as_str(), "write" | "writev" | "sendto" | "sendmsg")
                && first_fd(c).starts_with("TCP:")
                && c.text.contains("250 2.0.0 Ok: queued as ")
        })
        .unwrap_or_else(|| panic!("no write of the 250 in the trace:\n{}", show()));
    // The link (or rename) of tmp/NAME to new/NAME.
    let link = calls
        .iter()
        .find(|c| {
            matches!(
                c.name.as_str(),
                "link" | "linkat" | "rename" | "renameat" | "renameat2"
            ) && c.text.contains("/Maildir/tmp/")
                && c.text.contains("/Maildir/new/")
                && succeeded(c)
        })
        .unwrap_or_else(|| panic!("no link of tmp/ into new/ in the trace:\n{}", show()));
    let name = link
        .text
        .split("/Maildir/tmp/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the file name in the link call")
        .to_owned();
    let tmp_path = format!("/Maildir/tmp/{name}");
    let on_file = |c: &&Call| first_fd(c).ends_with(&tmp_path);
    let writes: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c.name.as_str(), "write" | "writev" | "pwrite64"))
        .filter(on_file)
        .collect();
    let file_sync = calls
        .iter()
        .filter(|c| matches!(c.name.as_str(), "fsync" | "fdatasync"))
        .find(on_file)
        .unwrap_or_else(|| panic!("no fsync of tmp/{name}:\n{}", show()));
    let dir_sync = calls
        .iter()
        .filter(|c| matches!(c.name.as_str(), "fsync" | "fdatasync"))
        .filter(|c| c.began > link.ended)
        .find(|c| first_fd(c).ends_with("/Maildir/new"))
        .unwrap_or_else(|| panic!("no fsync of new/ after the link:\n{}", show()));

    assert!(!writes.is_empty(), "no write to tmp/{name}:\n{}", show());
    for w in &writes {
        assert!(succeeded(w), "a failed write: {}", w.text);
        assert!(w.ended < file_sync.began, "a write after the file's fsync");
    }
    assert!(succeeded(file_sync) && succeeded(dir_sync));
    // write -> fsync(file) -> link -> fsync(new/) -> 250, each finished before the
    // next began.
    assert!(
        file_sync.ended < link.began,
        "link before the file's fsync returned"
    );
    assert!(link.ended < dir_sync.began);
    assert!(
        dir_sync.ended < reply.began,
        "the 250 was written before new/ was fsynced:\n{}",
        show()
    );
    println!(
        "syscall order: {} write(s), fsync(file) line {}, {} line {}, fsync(new/) line {}, 250 line {}",
        writes.len(),
        file_sync.ended,
        link.name,
        link.ended,
        dir_sync.ended,
        reply.began
    );
}

#[test]
fn the_parser_joins_interleaved_threads() {
    let trace = "\
10 fsync(7</d/Maildir/tmp/m1> <unfinished ...>
11 write(9<TCP:[127.0.0.1:25->127.0.0.1:5]>, \"220 x\\r\\n\", 7) = 7
10 <... fsync resumed>) = 0
10 linkat(AT_FDCWD</d>, \"/d/Maildir/tmp/m1\", AT_FDCWD</d>, \"/d/Maildir/new/m1\", 0) = 0
10 +++ exited with 0 +++
";
    let calls = parse(trace);
    assert_eq!(calls.len(), 3);
    assert_eq!(
        (calls[0].name.as_str(), calls[0].began, calls[0].ended),
        ("fsync", 0, 2)
    );
    assert_eq!(first_fd(&calls[0]), "/d/Maildir/tmp/m1");
    assert!(succeeded(&calls[0]));
    assert_eq!(first_fd(&calls[1]), "TCP:[127.0.0.1:25->127.0.0.1:5]");
    assert_eq!(calls[2].name, "linkat");
}
