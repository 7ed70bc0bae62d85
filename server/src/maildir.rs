//! Maildir delivery and POP3 maildrops (DESIGN.md "Storage and delivery").
//!
//! Layout: `<data_dir>/mail/<domain>/<localpart>/Maildir/{tmp,new,cur}`, so mutt,
//! Dovecot and friends read the same mail. A message is delivered by writing
//! `tmp/<name>`, fsyncing it, linking it into `new/` and fsyncing the directories:
//! only then may SMTP answer 250.
//!
//! Names follow Dovecot's convention `<secs>.M<micros>P<pid>Q<n>.<host>,S=<size>,W=<crlf
//! size>`: `W=` is the size in the CRLF form POP3 counts octets in (RFC 1939 §5: the
//! drop listing and scan listings count octets as transmitted), so opening a maildrop
//! reads no message. The UIDL of a message is its base name (before `:2,`), which other
//! programs keep when they move it into `cur/` with flags.
//!
//! This module also holds the durable-file helpers (write a temporary file, fsync,
//! rename, fsync the folder) that the users file, the queue and the demo use.
//!
//! [`lock`]: the maildrop lock, a file in the Maildir itself, so it holds across the
//! nodes that share one store.

pub mod lock;

pub use lock::{FileLock, LockSettings};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

/// RFC 1939 §7 (UIDL): a unique-id is 1 to 70 characters in the range 0x21 to 0x7E.
pub const MAX_UID_LEN: usize = 70;

/// The flag separator of Maildir's "info" part (`name:2,FLAGS`).
const INFO_SEPARATOR: &str = ":2,";

/// Longest host part we put into our own names, so they stay well under
/// [`MAX_UID_LEN`].
const MAX_HOST_PART: usize = 24;

/// The Maildir tree of every local user.
#[derive(Clone, Debug)]
pub struct MailStore {
    root: PathBuf,
    host: String,
    counter: Arc<AtomicU64>,
    locks: LockSettings,
    /// `Some`: maildrops are locked in this process only (`[pop3] maildrop_lock =
    /// "process"`); `None`: by a lock file in the Maildir, which every node sharing
    /// the store sees.
    held: Option<Arc<Mutex<HashSet<PathBuf>>>>,
}

/// Holds a maildrop for one POP3 session; released on drop.
#[derive(Debug)]
pub enum MaildropLock {
    /// A lock file in the Maildir (see [`lock`]).
    File(FileLock),
    /// An entry in this process's set of held maildrops.
    Process(ProcessLock),
}

/// A maildrop held in this process's set; removed from it on drop.
#[derive(Debug)]
pub struct ProcessLock {
    dir: PathBuf,
    held: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Drop for ProcessLock {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.remove(&self.dir);
    }
}

/// One message of a maildrop snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaildropEntry {
    /// The base name before `:2,` (or, when that is longer than 70 characters or has
    /// characters UIDL may not carry, a stable hash of it): stable forever.
    pub uid: String,
    /// Octets in the CRLF form.
    pub size: u64,
    pub path: PathBuf,
}

impl MailStore {
    /// A store rooted at `root` (`<data_dir>/mail`); folders are made on demand.
    /// Maildrop locks name this host and go stale after the default age.
    pub fn new(root: PathBuf) -> MailStore {
        let host = host_part();
        MailStore {
            root,
            locks: LockSettings {
                node: host.clone(),
                stale_after: Duration::from_secs(crate::config::defaults::MAILDROP_LOCK_STALE_SECS),
            },
            host,
            counter: Arc::new(AtomicU64::new(0)),
            held: None,
        }
    }

    /// Lock maildrops in this process only: no lock file is made per POP3 session (an
    /// inode created and removed each time: 17% of the server's CPU in bench workload
    /// 2). Right when no other node or program serves POP3 from this store; Dovecot's
    /// default (`pop3_lock_session = no`) takes no cross-process lock at all.
    pub fn with_process_locks(mut self) -> MailStore {
        self.held = Some(Arc::default());
        self
    }

    /// The node name maildrop locks carry and the age at which they are stale
    /// (`[pop3] lock_stale`).
    pub fn with_lock_settings(mut self, locks: LockSettings) -> MailStore {
        self.locks = locks;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<domain>/<localpart>/Maildir` for `address`, or an `InvalidInput` error
    /// when the address would leave the root.
    pub fn maildir(&self, address: &str) -> io::Result<PathBuf> {
        let (local, domain) = split_address(address)?;
        Ok(self.root.join(domain).join(local).join("Maildir"))
    }

    /// Deliver one message, the concatenation of `parts` (e.g. `Return-Path:` and
    /// `Received:` headers, then the message as received). Returns the file name in
    /// `new/` once the message is on disk. A full disk or quota gives an error of kind
    /// [`io::ErrorKind::StorageFull`] (see [`is_storage_full`]).
    pub fn deliver(&self, address: &str, parts: &[&[u8]]) -> io::Result<String> {
        let dir = self.maildir(address)?;
        self.ensure_maildir(&dir).map_err(storage_full)?;
        let size: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let crlf_size = crlf_size_of_parts(parts);
        let name = self.unique_name(size, crlf_size);
        let tmp = dir.join("tmp").join(&name);
        let new = dir.join("new").join(&name);
        let written = (|| {
            let mut file = create_private(&tmp)?;
            crate::fault::point("before-write")?;
            for part in parts {
                file.write_all(part)?;
            }
            crate::fault::point("after-write-before-fsync")?;
            file.sync_all()?;
            drop(file);
            // Maildir's classic link-then-unlink never overwrites an existing name;
            // file systems without hard links get a rename.
            match fs::hard_link(&tmp, &new) {
                Ok(()) => {
                    // The message is in new/ now; a tmp/ entry left by a failed unlink is
                    // harmless (Maildir readers clean tmp/), so it must not fail delivery.
                    if let Err(e) = fs::remove_file(&tmp) {
                        tracing::warn!(file = %tmp.display(), error = %e, "could not remove delivered tmp file");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
                Err(_) => fs::rename(&tmp, &new)?,
            }
            // Two fsyncs, the minimum for a durable Maildir delivery: the file above and
            // new/ here. tmp/ needs none: losing its unlink in a crash only leaves a stale
            // tmp/ file behind, never loses or duplicates the message in new/.
            sync_dir(&dir.join("new"))
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(storage_full(e));
        }
        Ok(name)
    }

    /// A snapshot of the maildrop: `new/` and `cur/`, oldest first (by the time in the
    /// name, then the name). A missing Maildir is an empty maildrop.
    pub fn open(&self, address: &str) -> io::Result<Vec<MaildropEntry>> {
        let dir = self.maildir(address)?;
        // Messages brought over by `popgate import` keep the UIDL their old server gave.
        let imported = read_uidl_map(&dir)?;
        let mut found: Vec<(u64, String, MaildropEntry)> = Vec::new();
        for sub in ["new", "cur"] {
            let listing = match fs::read_dir(dir.join(sub)) {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for item in listing {
                let item = item?;
                let Ok(name) = item.file_name().into_string() else {
                    // Not UTF-8: not a name any Maildir writer makes; leave it alone.
                    continue;
                };
                if name.starts_with('.') || !item.file_type()?.is_file() {
                    continue;
                }
                let path = item.path();
                let base = base_name(&name).to_owned();
                let size = match size_from_name(&base) {
                    Some(w) => w,
                    None => match crlf_size_of_file(&path) {
                        Ok(s) => s,
                        // Removed by another program while we listed: not in the snapshot.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    },
                };
                found.push((
                    time_from_name(&base),
                    base.clone(),
                    MaildropEntry {
                        uid: imported
                            .get(&base)
                            .cloned()
                            .unwrap_or_else(|| uid_for(&base)),
                        size,
                        path,
                    },
                ));
            }
        }
        found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        // The same base name in new/ and cur/ (a move seen half-way) is one message.
        found.dedup_by(|a, b| a.1 == b.1);
        Ok(found.into_iter().map(|(_, _, e)| e).collect())
    }

    /// The message as stored, or `None` when another program removed it since
    /// [`open`](Self::open). Follows a move into `cur/` under a flagged name.
    pub fn read(&self, entry: &MaildropEntry) -> io::Result<Option<Vec<u8>>> {
        match fs::read(&entry.path) {
            Ok(bytes) => return Ok(Some(bytes)),
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        match relocate(entry)? {
            Some(path) => match fs::read(path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    /// Remove messages (POP3 UPDATE state). Messages already gone are fine.
    pub fn remove(&self, entries: &[&MaildropEntry]) -> io::Result<()> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let removed = match fs::remove_file(&entry.path) {
                Ok(()) => Some(entry.path.clone()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => match relocate(entry)? {
                    Some(path) => match fs::remove_file(&path) {
                        Ok(()) => Some(path),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                        Err(e) => return Err(e),
                    },
                    None => None,
                },
                Err(e) => return Err(e),
            };
            crate::fault::point("during-update")?;
            if let Some(parent) = removed.as_deref().and_then(Path::parent)
                && !dirs.iter().any(|d| d == parent)
            {
                dirs.push(parent.to_path_buf());
            }
        }
        for dir in dirs {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    /// Take the maildrop of `address` for one session (RFC 1939 §8: the server should
    /// hold an exclusive lock): a lock file in its Maildir (see [`lock`]), so sessions
    /// on every node sharing this store exclude each other, or with
    /// [`with_process_locks`](Self::with_process_locks) this process's set. `None` when
    /// another live session holds it.
    pub fn lock(&self, address: &str) -> io::Result<Option<MaildropLock>> {
        let dir = self.maildir(address)?;
        let Some(held) = &self.held else {
            self.ensure_maildir(&dir)?;
            return Ok(lock::acquire(&dir, &self.locks)?.map(MaildropLock::File));
        };
        let mut set = held.lock().unwrap_or_else(PoisonError::into_inner);
        if !set.insert(dir.clone()) {
            return Ok(None);
        }
        Ok(Some(MaildropLock::Process(ProcessLock {
            dir,
            held: held.clone(),
        })))
    }

    /// Make `tmp`, `new` and `cur` on first delivery. Folders made here are fsynced
    /// up to the root's parent, so a delivery acknowledged right after survives a
    /// crash together with the folders that hold it.
    fn ensure_maildir(&self, dir: &Path) -> io::Result<()> {
        let subs = ["tmp", "new", "cur"];
        if subs.iter().all(|s| dir.join(s).is_dir()) {
            return Ok(());
        }
        for sub in subs {
            create_private_dir(&dir.join(sub))?;
        }
        for folder in dir.ancestors() {
            sync_dir(folder)?;
            if folder == self.root {
                // The root itself may be new too.
                if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
                    sync_dir(parent)?;
                }
                break;
            }
        }
        Ok(())
    }

    fn unique_name(&self, size: u64, crlf_size: u64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}.M{}P{}Q{}.{},S={},W={}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            n,
            self.host,
            size,
            crlf_size
        )
    }
}

/// True for a full disk or an exceeded quota: callers answer "452 4.3.1" / `[SYS/TEMP]`
/// rather than a generic failure.
pub fn is_storage_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// ENOSPC and EDQUOT both become [`io::ErrorKind::StorageFull`], so one kind tells a
/// caller the disk (or the user's share of it) is full.
fn storage_full(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::QuotaExceeded {
        io::Error::new(io::ErrorKind::StorageFull, e)
    } else {
        e
    }
}

/// `local@domain`, lowercased, each part safe as one path component.
fn split_address(address: &str) -> io::Result<(String, String)> {
    let lower = address.to_ascii_lowercase();
    let Some((local, domain)) = lower.rsplit_once('@') else {
        return Err(invalid(format!("{address:?} is not local@domain")));
    };
    for part in [local, domain] {
        check_component(part).map_err(|why| invalid(format!("{address:?}: {why}")))?;
    }
    Ok((local.to_owned(), domain.to_owned()))
}

/// Refuses what could leave the root or hide a file: empty, `/`, `\`, NUL, a leading
/// dot (which also covers `.` and `..`).
pub fn check_component(part: &str) -> Result<(), &'static str> {
    if part.is_empty() {
        return Err("empty local part or domain");
    }
    if part.starts_with('.') {
        return Err("a name may not start with a dot");
    }
    if part.contains(['/', '\\', '\0']) || part.chars().any(char::is_control) {
        return Err("a name may not contain a slash or control characters");
    }
    Ok(())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Where a message went when it is no longer at `entry.path`: `cur/<base>:2,<flags>`
/// (another program read or flagged it) or `new/<base>`.
fn relocate(entry: &MaildropEntry) -> io::Result<Option<PathBuf>> {
    let (Some(sub), Some(name)) = (
        entry.path.parent(),
        entry.path.file_name().and_then(|n| n.to_str()),
    ) else {
        return Ok(None);
    };
    let Some(maildir) = sub.parent() else {
        return Ok(None);
    };
    let base = base_name(name);
    for sub in ["cur", "new"] {
        let listing = match fs::read_dir(maildir.join(sub)) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for item in listing {
            let item = item?;
            if let Some(n) = item.file_name().to_str()
                && base_name(n) == base
                && item.path() != entry.path
            {
                return Ok(Some(item.path()));
            }
        }
    }
    Ok(None)
}

/// The UIDLs of imported messages: `<Maildir>/popgate-uidlist`, a first line
/// `popgate-uidlist 1`, then `<base name> <uidl>` per message. The one place POP3 reads
/// a UIDL from other than the name itself (see `crate::import`).
pub const UIDL_FILE: &str = "popgate-uidlist";
const UIDL_HEADER: &str = "popgate-uidlist 1";

/// RFC 1939 §7: a unique-id is 1 to 70 characters in the range 0x21 to 0x7E.
pub fn is_valid_uidl(uidl: &str) -> bool {
    !uidl.is_empty()
        && uidl.len() <= MAX_UID_LEN
        && uidl.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// The imported UIDLs of the Maildir `dir` by base name; none without the file. Lines
/// that are not `<name> <valid uidl>` are ignored (the name's own UIDL is used).
pub fn read_uidl_map(dir: &Path) -> io::Result<std::collections::HashMap<String, String>> {
    let text = match fs::read_to_string(dir.join(UIDL_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, uidl)| is_valid_uidl(uidl))
        .map(|(base, uidl)| (base.to_owned(), uidl.to_owned()))
        .collect())
}

/// Add `entries` (base name, UIDL) to the Maildir's UIDL file, atomically.
pub fn add_uidls(dir: &Path, entries: &[(String, String)]) -> io::Result<()> {
    let mut map: std::collections::BTreeMap<String, String> =
        read_uidl_map(dir)?.into_iter().collect();
    map.extend(entries.iter().cloned());
    let mut text = format!("{UIDL_HEADER}\n");
    for (base, uidl) in &map {
        text.push_str(&format!("{base} {uidl}\n"));
    }
    write_atomic(&dir.join(UIDL_FILE), text.as_bytes())
}

impl MailStore {
    /// Store a message under the name another Maildir gave it, in `new/` or (`cur`)
    /// `cur/` with its flags, as a delivery does (tmp, fsync, link, fsync). An
    /// existing name is an `AlreadyExists` error, never overwritten.
    pub fn import_file(
        &self,
        address: &str,
        cur: bool,
        name: &str,
        contents: &[u8],
    ) -> io::Result<()> {
        if name.is_empty() || name.starts_with('.') || name.contains('/') {
            return Err(invalid(format!("{name:?} is not a Maildir file name")));
        }
        let dir = self.maildir(address)?;
        self.ensure_maildir(&dir).map_err(storage_full)?;
        let tmp = dir.join("tmp").join(format!("{}.import", base_name(name)));
        let dest = dir.join(if cur { "cur" } else { "new" }).join(name);
        let _ = fs::remove_file(&tmp);
        let written = (|| {
            let mut file = create_private(&tmp)?;
            file.write_all(contents)?;
            file.sync_all()?;
            drop(file);
            fs::hard_link(&tmp, &dest)?;
            let _ = fs::remove_file(&tmp);
            sync_dir(dest.parent().unwrap_or(&dir))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(storage_full)
    }
}

/// The name without its info part: `base:2,S` is `base`.
pub fn base_name(name: &str) -> &str {
    match name.find(INFO_SEPARATOR) {
        Some(i) => &name[..i],
        None => name,
    }
}

/// The seconds a Maildir name starts with (0 when it does not), for ordering.
fn time_from_name(base: &str) -> u64 {
    let digits: &str = match base.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => &base[..i],
        None => base,
    };
    digits.parse().unwrap_or(0)
}

/// The `W=` field of a base name (`...,S=120,W=124`).
fn size_from_name(base: &str) -> Option<u64> {
    base.split(',')
        .skip(1)
        .find_map(|field| field.strip_prefix("W="))
        .and_then(|w| w.parse().ok())
}

/// The base name when it can be a UIDL; else "H" and a hash of it (still stable: the
/// hash is of the name, FNV-1a, which never changes between releases).
fn uid_for(base: &str) -> String {
    let fits = !base.is_empty()
        && base.len() <= MAX_UID_LEN
        && base.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if fits {
        return base.to_owned();
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in base.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("H{hash:016x}")
}

/// Octets in the CRLF form: a LF not preceded by CR is sent as CRLF.
fn crlf_size_of_parts(parts: &[&[u8]]) -> u64 {
    let mut counter = CrlfCounter::default();
    for p in parts {
        counter.feed(p);
    }
    counter.size
}

fn crlf_size_of_file(path: &Path) -> io::Result<u64> {
    let mut file = File::open(path)?;
    let mut counter = CrlfCounter::default();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(counter.size);
        }
        counter.feed(&buf[..n]);
    }
}

#[derive(Default)]
struct CrlfCounter {
    size: u64,
    last_was_cr: bool,
}

impl CrlfCounter {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.size += if b == b'\n' && !self.last_was_cr {
                2
            } else {
                1
            };
            self.last_was_cr = b == b'\r';
        }
    }
}

/// The host part of our names: the kernel's host name with the characters Maildir
/// names may not carry replaced (`/` and `:` as Dovecot does, `,` and `.` too since
/// they delimit fields), shortened.
fn host_part() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let mut host = String::new();
    for c in raw.trim().chars() {
        match c {
            '/' => host.push_str("\\057"),
            ':' => host.push_str("\\072"),
            ',' | '.' => host.push('_'),
            c if c.is_ascii_graphic() => host.push(c),
            _ => {}
        }
    }
    if host.is_empty() {
        host.push_str("popgate");
    }
    host.chars().take(MAX_HOST_PART).collect()
}

// ---- durable files ---------------------------------------------------------------

/// Create `dir` and missing parents, mode 0700 (mail and password files are private).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir)
}

/// A new file, mode 0600; fails if it exists.
fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)
}

/// fsync a directory, so a created, renamed or removed entry in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replace `path` with `contents` atomically and durably, mode 0600: write a
/// temporary file beside it, fsync, rename over, fsync the folder. Readers see the old
/// or the new file, never a part; a crash leaves at most a stray temporary file.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        create_private_dir(&dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| invalid(format!("{} is not a file name", path.display())))?;
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file = create_private(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(storage_full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, MailStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MailStore::new(dir.path().join("mail"));
        (dir, store)
    }

    #[test]
    fn deliver_open_read_remove() {
        let (_dir, store) = store();
        let first = store
            .deliver(
                "Taro@Example.TEST",
                &[
                    b"Return-Path: <a@b.test>\r\n",
                    b"Subject: one\r\n\r\nhi\r\n",
                ],
            )
            .expect("deliver");
        let second = store
            .deliver("taro@example.test", &[b"Subject: two\n\nbare lf\n"])
            .expect("deliver");
        let maildir = store.maildir("taro@example.test").expect("maildir");
        assert!(maildir.join("new").join(&first).is_file());
        assert!(!maildir.join("tmp").join(&first).exists());

        let maildrop = store.open("TARO@example.test").expect("open");
        assert_eq!(maildrop.len(), 2);
        assert_eq!(maildrop[0].uid, first);
        assert_eq!(maildrop[1].uid, second);
        assert!(maildrop.iter().all(|e| e.uid.len() <= MAX_UID_LEN));
        let one = store.read(&maildrop[0]).expect("read");
        assert_eq!(
            one.as_deref(),
            Some(&b"Return-Path: <a@b.test>\r\nSubject: one\r\n\r\nhi\r\n"[..])
        );
        store.remove(&[&maildrop[0]]).expect("remove");
        store
            .remove(&[&maildrop[0]])
            .expect("removing twice is fine");
        let left = store.open("taro@example.test").expect("open");
        assert_eq!(left, vec![maildrop[1].clone()]);
    }

    #[test]
    fn w_size_is_the_crlf_form() {
        let (_dir, store) = store();
        // 3 bare LFs, 1 CRLF, a CR split from its LF across parts.
        let parts: [&[u8]; 3] = [b"a\nb\r\nc\n", b"d\r", b"\ne\n"];
        let name = store.deliver("u@d.test", &parts).expect("deliver");
        let raw: u64 = parts.iter().map(|p| p.len() as u64).sum();
        assert!(name.contains(&format!(",S={raw},W={}", raw + 3)), "{name}");
        let maildrop = store.open("u@d.test").expect("open");
        assert_eq!(maildrop[0].size, raw + 3);
        // Without W= the size is computed from the file: the same number.
        assert_eq!(crlf_size_of_file(&maildrop[0].path).expect("size"), raw + 3);
    }

    #[test]
    fn messages_left_by_other_programs() {
        let (_dir, store) = store();
        let maildir = store.maildir("u@d.test").expect("maildir");
        store.ensure_maildir(&maildir).expect("mkdir");
        // Seen and flagged by a mail reader, no W=: computed from the file.
        fs::write(maildir.join("cur").join("1000.abc.host:2,S"), b"x\ny\n").expect("write");
        // Older, in new/, no size fields at all.
        fs::write(maildir.join("new").join("999.zzz.host"), b"z\r\n").expect("write");
        // Hidden and temporary files are not mail.
        fs::write(maildir.join("new").join(".hidden"), b"no").expect("write");
        let long = format!("1001.{}.host", "x".repeat(80));
        fs::write(maildir.join("new").join(&long), b"long\r\n").expect("write");

        let maildrop = store.open("u@d.test").expect("open");
        let uids: Vec<&str> = maildrop.iter().map(|e| e.uid.as_str()).collect();
        assert_eq!(uids[..2], ["999.zzz.host", "1000.abc.host"]);
        assert_eq!(maildrop[0].size, 3);
        assert_eq!(maildrop[1].size, 6);
        assert_eq!(maildrop.len(), 3);
        assert!(maildrop[2].uid.starts_with('H') && maildrop[2].uid.len() == 17);
        assert_eq!(maildrop[2].uid, uid_for(&long), "hash uid is stable");

        // A reader moves the new message into cur/ with flags: still readable and
        // removable under its old entry.
        fs::rename(
            maildir.join("new").join("999.zzz.host"),
            maildir.join("cur").join("999.zzz.host:2,RS"),
        )
        .expect("move");
        assert_eq!(
            store.read(&maildrop[0]).expect("read").as_deref(),
            Some(&b"z\r\n"[..])
        );
        store.remove(&[&maildrop[0]]).expect("remove");
        assert!(!maildir.join("cur").join("999.zzz.host:2,RS").exists());
    }

    #[test]
    fn removed_between_open_and_read_is_none() {
        let (_dir, store) = store();
        store.deliver("u@d.test", &[b"x\r\n"]).expect("deliver");
        let maildrop = store.open("u@d.test").expect("open");
        fs::remove_file(&maildrop[0].path).expect("another program removes it");
        assert_eq!(store.read(&maildrop[0]).expect("read"), None);
        store
            .remove(&[&maildrop[0]])
            .expect("remove of a missing file");
    }

    #[test]
    fn lock_is_exclusive_per_maildrop_and_released_on_drop() {
        let (_files, with_files) = store();
        lock_is_exclusive(&with_files);
        let (_process, in_process) = store();
        lock_is_exclusive(&in_process.with_process_locks());
    }

    fn lock_is_exclusive(store: &MailStore) {
        let held = store.lock("u@d.test").expect("io").expect("first lock");
        assert!(store.lock("U@D.test").expect("io").is_none());
        assert!(
            store.clone().lock("u@d.test").expect("io").is_none(),
            "clones share locks"
        );
        let other = store
            .lock("v@d.test")
            .expect("io")
            .expect("another maildrop");
        drop(held);
        assert!(store.lock("u@d.test").expect("io").is_some());
        drop(other);
    }

    #[test]
    fn traversal_is_refused() {
        let (_dir, store) = store();
        for bad in [
            "../x@d.test",
            "x@..",
            "a/b@d.test",
            "x@d.test/..",
            ".hidden@d.test",
            "x@.d",
            "nul\0@d.test",
            "@d.test",
            "x@",
            "noat",
        ] {
            let err = store.deliver(bad, &[b"x"]).expect_err(bad);
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
            assert!(store.open(bad).is_err(), "{bad:?}");
        }
        assert!(!store.root().exists(), "nothing was created");
    }

    #[cfg(unix)]
    #[test]
    fn folders_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, store) = store();
        let name = store.deliver("u@d.test", &[b"x"]).expect("deliver");
        let maildir = store.maildir("u@d.test").expect("maildir");
        let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&maildir.join("new")), 0o700);
        assert_eq!(mode(&maildir.join("new").join(name)), 0o600);
    }

    #[test]
    fn storage_full_kinds() {
        assert!(is_storage_full(&storage_full(io::Error::from(
            io::ErrorKind::QuotaExceeded
        ))));
        assert_eq!(
            storage_full(io::Error::from(io::ErrorKind::QuotaExceeded)).kind(),
            io::ErrorKind::StorageFull
        );
        assert!(!is_storage_full(&io::Error::from(io::ErrorKind::NotFound)));
    }

    #[test]
    fn write_atomic_replaces_and_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("file");
        write_atomic(&path, b"one").expect("write");
        write_atomic(&path, b"two").expect("rewrite");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let names: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
