//! CPU time and memory of a server's processes, read from `/proc`.
//!
//! A multi-process server (Postfix, Dovecot) is the master and its descendants. CPU of
//! children that exited is not lost: the master reaps them, and the kernel adds their
//! time to the master's `cutime`/`cstime`. So the total is the live tree's
//! `utime + stime` plus the master's `cutime + cstime`, and a before/after difference
//! is exact as long as the master lives.

use std::fs;

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`); 100 on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// Fields of `/proc/<pid>/stat` after the command name: (ppid, utime, stime, cutime, cstime).
fn stat(pid: u32) -> Option<(u32, u64, u64, u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // proc(5): state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17)
    let num = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok());
    Some((
        u32::try_from(num(4)?).ok()?,
        num(14)?,
        num(15)?,
        num(16)?,
        num(17)?,
    ))
}

/// `root` and every process below it.
pub fn tree(root: u32) -> Vec<u32> {
    let mut parent = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            if let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
                && let Some((ppid, ..)) = stat(pid)
            {
                parent.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(
            parent
                .iter()
                .filter(|(_, pp)| *pp == p)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found
}

/// CPU seconds used so far by `root`'s tree, reaped children included.
pub fn cpu_seconds(root: u32) -> f64 {
    let mut ticks = 0;
    for pid in tree(root) {
        if let Some((_, utime, stime, cutime, cstime)) = stat(pid) {
            ticks += utime + stime;
            if pid == root {
                ticks += cutime + cstime;
            }
        }
    }
    ticks as f64 / TICKS_PER_SECOND
}

fn status_kb(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `VmRSS` of one process, in KiB.
pub fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "status", "VmRSS:").unwrap_or(0)
}

/// Proportional set size of the whole tree, in KiB: shared pages are divided among the
/// processes sharing them, so a multi-process server is not counted several times.
pub fn pss_kb(root: u32) -> u64 {
    tree(root)
        .into_iter()
        .filter_map(|pid| status_kb(pid, "smaps_rollup", "Pss:"))
        .sum()
}

/// Every thread of every process of `root`'s tree (strace attaches per thread).
pub fn threads(root: u32) -> Vec<u32> {
    let mut tids = Vec::new();
    for pid in tree(root) {
        if let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) {
            tids.extend(
                dir.flatten()
                    .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())),
            );
        }
    }
    tids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let me = std::process::id();
        let spin: u64 = (0..2_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert!(spin > 0);
        assert!(rss_kb(me) > 0);
        assert!(pss_kb(me) > 0);
        assert!(tree(me).contains(&me));
        assert!(cpu_seconds(me) >= 0.0);
        assert!(!threads(me).is_empty());
    }
}
