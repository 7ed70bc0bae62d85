//! The maildrop lock: one POP3 session per mailbox (RFC 1939 §8: the server should
//! hold an exclusive lock on the maildrop), across every node that shares the Maildir
//! store, without depending on anything but the store itself.
//!
//! The lock is a file in the Maildir folder, [`LOCK_FILE`], made with an exclusive
//! create (`O_EXCL`, atomic on local file systems and on NFS v3 and later). It holds one
//! line, `node=<node> pid=<pid> heartbeat=<unix ms>`, rewritten every quarter of the
//! stale age while the session lives. A lock whose heartbeat is older than
//! `[pop3] lock_stale` belongs to a node that died: it is taken over.
//!
//! Taking over is safe against another node doing the same at the same moment: the
//! stale file is first renamed aside (atomic, and only one node's rename finds it),
//! then compared with what was judged stale; if a fresh lock had been made in between,
//! it is linked back. A holder removes the file on release only while it is still its
//! own (same inode), so a lock that was taken over is never removed by its old holder.
//! Nodes' clocks must agree to well within the stale age (NTP).

use super::create_private;
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The lock file's name inside `<...>/Maildir/`.
pub const LOCK_FILE: &str = "popgate-pop3.lock";

/// Attempts to create the lock after finding a stale one removed.
const ATTEMPTS: usize = 3;
/// The shortest heartbeat interval, whatever the stale age.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// Who holds locks made by this process, and when a lock is stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockSettings {
    pub node: String,
    pub stale_after: Duration,
}

/// Holds a maildrop through its lock file for one POP3 session; released on drop.
#[derive(Debug)]
pub struct FileLock {
    path: PathBuf,
    file: Arc<File>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
        // Remove the file only while it is still ours: after a take-over (this node
        // was presumed dead) it is another session's lock.
        if is_same_file(&self.path, &self.file)
            && let Err(e) = fs::remove_file(&self.path)
        {
            tracing::warn!(file = %self.path.display(), error = %e, "could not remove a maildrop lock");
        }
    }
}

/// Take the lock of the Maildir folder `dir` (which must exist). `None` when a live
/// session, on this node or another, holds it.
pub(super) fn acquire(dir: &Path, settings: &LockSettings) -> io::Result<Option<FileLock>> {
    let path = dir.join(LOCK_FILE);
    for _ in 0..ATTEMPTS {
        match create_private(&path) {
            Ok(file) => {
                let file = Arc::new(file);
                write_holder(&file, settings)?;
                return Ok(Some(FileLock {
                    heartbeat: spawn_heartbeat(file.clone(), settings.clone()),
                    path,
                    file,
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !take_over_if_stale(&path, settings)? {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The holder line a lock file carries.
pub fn holder_line(node: &str, pid: u32, heartbeat_ms: u64) -> String {
    format!("node={node} pid={pid} heartbeat={heartbeat_ms}\n")
}

/// The value of `name=` in a holder line.
fn holder_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(name)?.strip_prefix('='))
}

/// The heartbeat of a holder line, in unix milliseconds.
fn heartbeat_of(line: &str) -> Option<u64> {
    holder_field(line, "heartbeat").and_then(|ms| ms.parse().ok())
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Rewrite the holder line in place, through the descriptor: a file renamed aside
/// (being taken over) is not recreated by a late heartbeat.
fn write_holder(file: &File, settings: &LockSettings) -> io::Result<()> {
    let line = holder_line(
        &settings.node,
        std::process::id(),
        unix_ms(SystemTime::now()),
    );
    let mut f = file;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(line.as_bytes())?;
    f.set_len(line.len() as u64)
}

/// Refresh the heartbeat while the lock lives (needs a tokio runtime; without one, as
/// in unit tests, the lock simply has none).
fn spawn_heartbeat(file: Arc<File>, settings: LockSettings) -> Option<tokio::task::JoinHandle<()>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let every = (settings.stale_after / 4).max(MIN_HEARTBEAT);
    Some(runtime.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = write_holder(&file, &settings) {
                tracing::warn!(error = %e, "could not refresh a maildrop lock's heartbeat");
            }
        }
    }))
}

/// The lock at `path` is someone else's: if its heartbeat is older than the stale age,
/// move it out of the way. True when the caller should try to create the lock again.
fn take_over_if_stale(path: &Path, settings: &LockSettings) -> io::Result<bool> {
    let seen = match fs::read_to_string(path) {
        Ok(text) => text,
        // Released meanwhile.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    // A lock just created has no line yet: its file time stands for the heartbeat.
    let beat = match heartbeat_of(&seen) {
        Some(ms) => ms,
        None => match fs::metadata(path).and_then(|m| m.modified()) {
            Ok(t) => unix_ms(t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(e),
        },
    };
    let age = unix_ms(SystemTime::now()).saturating_sub(beat);
    if u128::from(age) <= settings.stale_after.as_millis() && !holder_died_here(&seen, settings) {
        return Ok(false);
    }
    let aside = path.with_file_name(format!(
        "{LOCK_FILE}.stale.{}.{}.{}",
        sanitize(&settings.node),
        std::process::id(),
        unix_ms(SystemTime::now())
    ));
    match fs::rename(path, &aside) {
        Ok(()) => {}
        // Another node took it over first.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    }
    let moved = fs::read_to_string(&aside).unwrap_or_default();
    if moved != seen {
        // Not the lock judged stale: another node took that one over and locked the
        // maildrop between our read and our rename. Give it back.
        if let Err(e) = fs::hard_link(&aside, path) {
            tracing::error!(file = %path.display(), error = %e, "could not put back a maildrop lock moved by mistake");
        }
        let _ = fs::remove_file(&aside);
        return Ok(false);
    }
    fs::remove_file(&aside)?;
    tracing::warn!(
        file = %path.display(),
        holder = %seen.trim(),
        age_ms = age,
        "took over a stale maildrop lock"
    );
    Ok(true)
}

/// True when the holder line names this node and a process of it that no longer
/// exists: a popgate of this node that crashed or was killed. Its lock is stale at
/// once, so a restart does not leave the maildrop `[IN-USE]` for the stale age. (Node
/// names must be unique among the nodes sharing a store.)
fn holder_died_here(line: &str, settings: &LockSettings) -> bool {
    let Some(pid) = holder_field(line, "pid").and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    holder_field(line, "node") == Some(settings.node.as_str())
        && pid != std::process::id()
        && !process_exists(pid)
}

#[cfg(target_os = "linux")]
fn process_exists(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Without /proc, only the heartbeat says a holder died.
#[cfg(not(target_os = "linux"))]
fn process_exists(_pid: u32) -> bool {
    true
}

/// A node name as it may appear in a file name.
fn sanitize(node: &str) -> String {
    node.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

#[cfg(unix)]
fn is_same_file(path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn is_same_file(path: &Path, _file: &File) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(node: &str) -> LockSettings {
        LockSettings {
            node: node.into(),
            stale_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_held_lock_refuses_another_node_until_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = acquire(dir.path(), &settings("a"))
            .expect("io")
            .expect("first lock");
        let text = fs::read_to_string(dir.path().join(LOCK_FILE)).expect("lock file");
        assert!(text.starts_with("node=a pid="), "{text:?}");
        assert!(heartbeat_of(&text).is_some(), "{text:?}");
        assert!(acquire(dir.path(), &settings("b")).expect("io").is_none());
        drop(held);
        assert!(!dir.path().join(LOCK_FILE).exists(), "released on drop");
        assert!(acquire(dir.path(), &settings("b")).expect("io").is_some());
    }

    #[test]
    fn a_stale_lock_is_taken_over_and_its_old_holder_leaves_it_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = acquire(dir.path(), &settings("dead"))
            .expect("io")
            .expect("lock");
        // The dead node's last heartbeat was long ago.
        fs::write(dir.path().join(LOCK_FILE), holder_line("dead", 1, 1_000)).expect("age it");
        let new = acquire(dir.path(), &settings("b"))
            .expect("io")
            .expect("stale lock taken over");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names, vec![LOCK_FILE], "nothing left aside");
        // fs::write rewrote the dead node's file in place, so `old` holds the file that
        // was taken over and removed, not the new lock.
        drop(old);
        assert!(
            dir.path().join(LOCK_FILE).exists(),
            "the old holder does not remove the new lock"
        );
        drop(new);
        assert!(!dir.path().join(LOCK_FILE).exists());
    }

    #[test]
    fn a_fresh_lock_of_a_dead_process_of_this_node_is_taken_over_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A child that has exited and been reaped: its pid names no process.
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let dead = child.id();
        child.wait().expect("reap");
        let now = unix_ms(SystemTime::now());
        fs::write(dir.path().join(LOCK_FILE), holder_line("a", dead, now)).expect("lock");
        // Another node cannot tell whether that process lives: the heartbeat is fresh.
        assert!(acquire(dir.path(), &settings("b")).expect("io").is_none());
        // This node can.
        assert!(acquire(dir.path(), &settings("a")).expect("io").is_some());
        // A live process of this node (this one) keeps its lock.
        let dir = tempfile::tempdir().expect("tempdir");
        let line = holder_line("a", std::process::id(), now);
        fs::write(dir.path().join(LOCK_FILE), line).expect("lock");
        assert!(acquire(dir.path(), &settings("a")).expect("io").is_none());
    }
}
