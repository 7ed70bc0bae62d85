//! The durable outbound queue for relayed mail: `<data_dir>/queue/`.
//!
//! An entry is two files: `<id>.msg` (the message) and `<id>.json` (the envelope).
//! Each is written to a temporary name, fsynced and renamed, then the folder is
//! fsynced; the message goes first, so the envelope's presence commits the entry. A
//! crash in between leaves a message without an envelope, which [`Queue::list`] does
//! not show. Deleting removes the envelope first for the same reason.

use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const ENVELOPE: &str = "json";
const MESSAGE: &str = "msg";

#[derive(Clone, Debug)]
pub struct Queue {
    dir: PathBuf,
}

/// One queued message's envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub id: String,
    pub from: String,
    pub recipients: Vec<String>,
    /// Octets of the stored message.
    pub size: u64,
    pub queued_at_unix_ms: u64,
    /// Delivery attempts so far, oldest first (at most [`MAX_ATTEMPTS_KEPT`]).
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Delivery rounds so far (the history in `attempts` is bounded; this is not).
    #[serde(default)]
    pub attempt_count: u32,
    /// When the queue runner tries again; 0: as soon as it sees the entry.
    #[serde(default)]
    pub next_attempt_at_unix_ms: u64,
    /// Per-recipient state, in `recipients` order; empty: every recipient pending.
    #[serde(default)]
    pub states: Vec<RecipientState>,
}

/// Attempts kept in an envelope; older ones are dropped (their count stays in
/// `QueueEntry::attempt_count`).
pub const MAX_ATTEMPTS_KEPT: usize = 20;

/// One delivery attempt, as shown by `popgate queue show` and `/api/queue`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at_unix_ms: u64,
    /// The next hop tried (`host:port`), or the route that failed before connecting.
    pub host: String,
    /// What happened, one line.
    pub result: String,
}

/// Where one recipient stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientStatus {
    /// Not delivered yet; tried again at `next_attempt_at_unix_ms`.
    #[default]
    Pending,
    /// The next hop answered the end of data with 250.
    Delivered,
    /// Given up on; the bounce is not durable yet.
    Failed,
    /// Given up on and the bounce is durable (or none was due: a null sender).
    Bounced,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientState {
    pub rcpt: String,
    pub status: RecipientStatus,
    /// RFC 3463 status of the last result (empty before any).
    #[serde(default)]
    pub status_code: String,
    /// The last result in words (the next hop's reply when it gave one).
    #[serde(default)]
    pub detail: String,
    /// The next hop's reply, for the DSN's Diagnostic-Code.
    #[serde(default)]
    pub reply: Option<String>,
    /// The host that answered, for the DSN's Remote-MTA.
    #[serde(default)]
    pub remote_mta: Option<String>,
}

impl QueueEntry {
    /// Every recipient's state, pending ones filled in for an envelope that has none.
    pub fn recipient_states(&self) -> Vec<RecipientState> {
        self.recipients
            .iter()
            .enumerate()
            .map(|(i, rcpt)| match self.states.get(i) {
                Some(state) if state.rcpt == *rcpt => state.clone(),
                _ => RecipientState {
                    rcpt: rcpt.clone(),
                    status: RecipientStatus::Pending,
                    status_code: String::new(),
                    detail: String::new(),
                    reply: None,
                    remote_mta: None,
                },
            })
            .collect()
    }

    /// Record an attempt, keeping the newest [`MAX_ATTEMPTS_KEPT`].
    pub fn push_attempt(&mut self, attempt: Attempt) {
        self.attempts.push(attempt);
        if self.attempts.len() > MAX_ATTEMPTS_KEPT {
            let extra = self.attempts.len() - MAX_ATTEMPTS_KEPT;
            self.attempts.drain(..extra);
        }
    }
}

impl Queue {
    /// Open (and create, mode 0700) the queue folder.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Queue> {
        let dir = dir.into();
        crate::maildir::create_private_dir(&dir)?;
        Ok(Queue { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Store a message for relaying under `id` (the id the SMTP session named in its
    /// `250 ... queued as <id>`, so an operator finds the entry by what the client was
    /// told); when this returns `Ok` the entry survives a crash. A full disk gives
    /// [`io::ErrorKind::StorageFull`]; an id already queued gives `AlreadyExists`.
    pub fn enqueue(
        &self,
        id: &str,
        from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> io::Result<String> {
        check_id(id)?;
        if self.path(id, ENVELOPE).exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("queue id {id} exists"),
            ));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let queued_at_unix_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        let id = id.to_owned();
        let entry = QueueEntry {
            id: id.clone(),
            from: from.to_owned(),
            recipients: recipients.to_vec(),
            size: message.len() as u64,
            queued_at_unix_ms,
            attempts: Vec::new(),
            attempt_count: 0,
            next_attempt_at_unix_ms: 0,
            states: Vec::new(),
        };
        let envelope = serde_json::to_vec_pretty(&entry).map_err(io::Error::other)?;
        crate::maildir::write_atomic(&self.path(&id, MESSAGE), message)?;
        if let Err(e) = crate::maildir::write_atomic(&self.path(&id, ENVELOPE), &envelope) {
            let _ = fs::remove_file(self.path(&id, MESSAGE));
            return Err(e);
        }
        Ok(id)
    }

    /// Every committed entry, oldest first. An unreadable envelope is skipped with a
    /// warning rather than hiding the rest of the queue.
    pub fn list(&self) -> io::Result<Vec<QueueEntry>> {
        let mut entries = Vec::new();
        for item in fs::read_dir(&self.dir)? {
            let item = item?;
            let path = item.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') || path.extension().and_then(|e| e.to_str()) != Some(ENVELOPE)
            {
                continue;
            }
            match fs::read(&path) {
                Ok(bytes) => match serde_json::from_slice::<QueueEntry>(&bytes) {
                    Ok(entry) => entries.push(entry),
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "queue: unreadable envelope skipped");
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        entries.sort_by(|a, b| (a.queued_at_unix_ms, &a.id).cmp(&(b.queued_at_unix_ms, &b.id)));
        Ok(entries)
    }

    /// The envelope of `id`, or `None`.
    pub fn entry(&self, id: &str) -> io::Result<Option<QueueEntry>> {
        check_id(id)?;
        match fs::read(self.path(id, ENVELOPE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The message of a committed entry, or `None`.
    pub fn read_message(&self, id: &str) -> io::Result<Option<Vec<u8>>> {
        check_id(id)?;
        if !self.path(id, ENVELOPE).exists() {
            return Ok(None);
        }
        match fs::read(self.path(id, MESSAGE)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Rewrite the envelope of an existing entry (attempts, schedule, recipient
    /// states), atomically; `Ok(false)` when the entry is gone (deleted meanwhile),
    /// so a delivery never brings back an entry an operator removed.
    pub fn update(&self, entry: &QueueEntry) -> io::Result<bool> {
        check_id(&entry.id)?;
        let path = self.path(&entry.id, ENVELOPE);
        if !path.exists() {
            return Ok(false);
        }
        let envelope = serde_json::to_vec_pretty(entry).map_err(io::Error::other)?;
        crate::maildir::write_atomic(&path, &envelope)?;
        Ok(true)
    }

    /// Make an entry due now (`popgate queue retry`); `Ok(false)` when there is none.
    pub fn retry_now(&self, id: &str) -> io::Result<bool> {
        let Some(mut entry) = self.entry(id)? else {
            return Ok(false);
        };
        entry.next_attempt_at_unix_ms = 0;
        self.update(&entry)
    }

    /// Remove an entry; `Ok(false)` when there was none.
    pub fn delete(&self, id: &str) -> io::Result<bool> {
        check_id(id)?;
        let existed = match fs::remove_file(self.path(id, ENVELOPE)) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        match fs::remove_file(self.path(id, MESSAGE)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        crate::maildir::sync_dir(&self.dir)?;
        Ok(existed)
    }

    fn path(&self, id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ext}"))
    }
}

/// Ids are ours (letters, digits, `-` and `.`, starting with a letter or digit);
/// anything else, from a user or an API request, must not name another file.
fn check_id(id: &str) -> io::Result<()> {
    let ok = id.len() <= 64
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{id:?} is not a queue id"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enqueue_list_read_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = Queue::open(dir.path().join("queue")).expect("open");
        let rcpts = vec!["a@remote.test".to_owned(), "b@remote.test".to_owned()];
        let first = q
            .enqueue("A1.1.1", "taro@example.test", &rcpts, b"one\r\n")
            .expect("enqueue");
        let second = q
            .enqueue("A1.1.2", "", &rcpts[..1], b"two!\r\n")
            .expect("enqueue");
        assert_ne!(first, second);

        // A reopened queue (a restart) sees the same entries.
        let q = Queue::open(dir.path().join("queue")).expect("reopen");
        let list = q.list().expect("list");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].id, first);
        assert_eq!(list[0].from, "taro@example.test");
        assert_eq!(list[0].recipients, rcpts);
        assert_eq!(list[0].size, 5);
        assert_eq!(list[1].from, "", "null reverse-path (bounces) is kept");
        assert_eq!(q.entry(&second).expect("entry"), Some(list[1].clone()));
        assert_eq!(
            q.read_message(&second).expect("read"),
            Some(b"two!\r\n".to_vec())
        );

        assert!(q.delete(&first).expect("delete"));
        assert!(!q.delete(&first).expect("delete again"));
        assert_eq!(q.read_message(&first).expect("read"), None);
        assert_eq!(q.list().expect("list").len(), 1);
    }

    #[test]
    fn a_message_without_envelope_is_not_queued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = Queue::open(dir.path()).expect("open");
        let id = q
            .enqueue("A1.2.1", "a@b.test", &["c@d.test".to_owned()], b"x")
            .expect("enqueue");
        fs::remove_file(dir.path().join(format!("{id}.json"))).expect("crash before commit");
        assert!(q.list().expect("list").is_empty());
        assert_eq!(q.read_message(&id).expect("read"), None);
        fs::write(dir.path().join("junk.json"), b"{").expect("junk");
        assert!(
            q.list().expect("list").is_empty(),
            "unreadable envelope skipped"
        );
    }

    #[test]
    fn update_and_retry_keep_the_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = Queue::open(dir.path()).expect("open");
        let id = q
            .enqueue("A1.3.1", "a@b.test", &["c@d.test".to_owned()], b"x")
            .expect("enqueue");
        let mut e = q.entry(&id).expect("entry").expect("exists");
        assert_eq!(e.recipient_states()[0].status, RecipientStatus::Pending);
        for n in 0..25 {
            e.push_attempt(Attempt {
                at_unix_ms: n,
                host: "h:25".into(),
                result: "451".into(),
            });
        }
        assert_eq!(e.attempts.len(), MAX_ATTEMPTS_KEPT);
        assert_eq!(e.attempts[0].at_unix_ms, 5);
        e.next_attempt_at_unix_ms = 99;
        assert!(q.update(&e).expect("update"));
        assert_eq!(q.entry(&id).expect("entry"), Some(e.clone()));
        assert!(q.retry_now(&id).expect("retry"));
        assert_eq!(
            q.entry(&id)
                .expect("entry")
                .map(|e| e.next_attempt_at_unix_ms),
            Some(0)
        );
        assert!(q.delete(&id).expect("delete"));
        assert!(
            !q.update(&e).expect("update"),
            "a deleted entry stays deleted"
        );
        assert!(!q.retry_now(&id).expect("retry"));
        // An envelope written before these fields existed still reads.
        fs::write(
            dir.path().join("OLD.1.1.json"),
            br#"{"id":"OLD.1.1","from":"","recipients":["x@y.test"],"size":1,"queued_at_unix_ms":5}"#,
        )
        .expect("old envelope");
        assert_eq!(q.list().expect("list").len(), 1);
    }

    #[test]
    fn ids_cannot_name_other_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = Queue::open(dir.path()).expect("open");
        for bad in ["../x", "a/b", "", ".hidden", "-x"] {
            assert_eq!(
                q.read_message(bad).expect_err(bad).kind(),
                io::ErrorKind::InvalidInput
            );
            assert!(q.delete(bad).is_err());
        }
    }
}
