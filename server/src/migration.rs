//! The durable migration ledger: who still depends on POP before SMTP.
//!
//! One task subscribes to the event bus and folds every event into core's
//! [`Ledger`] (per-user stats; the rules are core's, in `popgate_core::migration`).
//! Nothing on the mail path calls into this module: it only listens.
//!
//! Durability: the ledger is `data_dir/migration.json`, replaced atomically (write a
//! temporary file, fsync, rename, fsync the folder: [`crate::maildir::write_atomic`]),
//! so a reader (`popgate report migration`, a second process) sees the old or the new
//! file, never a part. It is written when something changed, at most every
//! [`SAVE_INTERVAL`], right after a notice is sent (so a restart never sends it
//! twice), and at shutdown after the last session has ended. A crash loses at most
//! the last [`SAVE_INTERVAL`] of counts. Loading drops what is older than `[migration]
//! window`, and so does every save.
//!
//! The notice: in `warn` mode, a relay on a grant publishes `GrantRelayWarned`; when
//! `[migration.notice] enabled` and the user got none within `period`, the notice
//! (a template, English and Japanese shipped in `server/templates/`) is delivered to the
//! user's own mailbox by the same Maildir delivery SMTP uses, and `MigrationNoticeSent`
//! records it in the ledger, which is saved at once.
//!
//! A subscriber that falls behind the bounded event bus loses events; the loss is
//! logged and counted (`popgate_migration_events_lost_total`), never waited for.

use crate::config::{Config, NoticeLanguage, defaults};
use crate::serve::state::Shared;
use anyhow::Context;
use popgate_core::dashboard::Counters;
use popgate_core::event::EventKind;
use popgate_core::migration::{
    Group, LEDGER_VERSION, Ledger, LedgerFile, MigrationReport, Notice, NoticeValues,
    notice_message, render_notice,
};
use popgate_core::{Event, Millis};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// The longest a changed ledger waits before it is saved.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(2);

/// The shipped templates (the files in `server/templates/`).
const NOTICE_EN: &str = include_str!("../templates/notice.en.txt");
const NOTICE_JA: &str = include_str!("../templates/notice.ja.txt");

/// The port a notice names when no submission listener is configured: RFC 6409's.
const SUBMISSION_PORT: u16 = 587;

/// The ledger and where it is kept.
#[derive(Debug)]
pub struct MigrationStore {
    path: PathBuf,
    ledger: Mutex<Ledger>,
    /// Events a lagging subscription lost.
    lost: AtomicU64,
    notices_failed: AtomicU64,
}

impl MigrationStore {
    /// Load `data_dir/migration.json` (none yet: an empty ledger), forgetting what is
    /// older than the window.
    pub fn open(config: &Config) -> anyhow::Result<MigrationStore> {
        let path = store_path(config);
        let mut ledger = read_ledger(&path)?;
        ledger.prune(wall_now(), config.migration.window);
        Ok(MigrationStore {
            path,
            ledger: Mutex::new(ledger),
            lost: AtomicU64::new(0),
            notices_failed: AtomicU64::new(0),
        })
    }

    /// The report as of `now`.
    pub fn report(&self, config: &Config, now: Millis) -> MigrationReport {
        self.lock()
            .report(now, config.migration.window, &config.grant.modes())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // A panic mid-apply leaves at most one event half-counted.
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write the ledger atomically, after dropping what left the window.
    fn save(&self, now: Millis, window: Duration) -> std::io::Result<()> {
        let json = {
            let mut ledger = self.lock();
            ledger.prune(now, window);
            serde_json::to_vec_pretty(&ledger.to_file()).map_err(std::io::Error::other)?
        };
        crate::maildir::write_atomic(&self.path, &json)
    }
}

/// `data_dir/migration.json`.
pub fn store_path(config: &Config) -> PathBuf {
    config.data_dir.join(defaults::MIGRATION_FILE)
}

fn read_ledger(path: &Path) -> anyhow::Result<Ledger> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ledger::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let file: LedgerFile = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a migration ledger", path.display()))?;
    if file.version != LEDGER_VERSION {
        anyhow::bail!(
            "{} has version {}; this popgate reads version {LEDGER_VERSION}",
            path.display(),
            file.version
        );
    }
    Ok(Ledger::from_users(file.users))
}

/// The report from the file alone, for `popgate report migration` (the server need not
/// run; a running one saves within [`SAVE_INTERVAL`] of a change).
pub fn report_from_file(config: &Config) -> anyhow::Result<MigrationReport> {
    let ledger = read_ledger(&store_path(config))?;
    Ok(ledger.report(wall_now(), config.migration.window, &config.grant.modes()))
}

fn wall_now() -> Millis {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// The running ledger task; [`MigrationTask::finish`] saves and ends it.
#[derive(Debug)]
pub struct MigrationTask {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl MigrationTask {
    /// Call once every session has ended: the task applies the events still queued,
    /// saves, and ends.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.handle.await {
            tracing::error!(error = %e, "the migration ledger task failed");
        }
    }
}

/// Subscribe to the event bus now (before any session can start) and run the ledger.
pub fn spawn(shared: Arc<Shared>) -> MigrationTask {
    let rx = shared.events.subscribe();
    let (stop, stopped) = watch::channel(false);
    let handle = tokio::spawn(run(shared, rx, stopped));
    MigrationTask { stop, handle }
}

async fn run(
    shared: Arc<Shared>,
    mut rx: broadcast::Receiver<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let mut dirty = false;
    let mut tick = tokio::time::interval(SAVE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    enum Next {
        Event(Result<Event, broadcast::error::RecvError>),
        Save,
        Stop,
    }
    loop {
        // Decided first, acted on after: no branch's future lives across the await
        // of handling an event.
        let next = tokio::select! {
            received = rx.recv() => Next::Event(received),
            _ = tick.tick(), if dirty => Next::Save,
            _ = stop.wait_for(|s| *s) => Next::Stop,
        };
        match next {
            Next::Event(Ok(event)) => dirty |= handle(&shared, &event).await,
            Next::Event(Err(broadcast::error::RecvError::Lagged(n))) => {
                shared.migration.lost.fetch_add(n, Ordering::Relaxed);
                tracing::warn!("event=migration_lagged lost={n}");
            }
            Next::Event(Err(broadcast::error::RecvError::Closed)) | Next::Stop => break,
            Next::Save => {
                save(&shared);
                dirty = false;
            }
        }
    }
    // Every session has ended: what they published is queued here already.
    loop {
        match rx.try_recv() {
            Ok(event) => {
                handle(&shared, &event).await;
            }
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                shared.migration.lost.fetch_add(n, Ordering::Relaxed);
            }
            Err(_) => break,
        }
    }
    save(&shared);
}

fn save(shared: &Shared) {
    let now = shared.clock.now();
    match shared.migration.save(now, shared.config.migration.window) {
        Ok(()) => tracing::debug!("event=migration_saved"),
        Err(e) => tracing::error!(error = %e, "event=migration_save_failed"),
    }
}

/// Apply one event; send a notice when one is due. Returns whether the ledger changed.
async fn handle(shared: &Arc<Shared>, event: &Event) -> bool {
    let changed = shared.migration.lock().apply(event);
    if let EventKind::GrantRelayWarned { user, .. } = &event.kind {
        let notice = &shared.config.migration.notice;
        let due = notice.enabled
            && shared
                .migration
                .lock()
                .notice_due(user, event.at, notice.period);
        if due {
            send_notice(shared, user, event.at).await;
        }
        // After the notice decision, so a line per relay also marks that decision.
        tracing::info!("event=grant_relay_warned user={user}");
    }
    if let EventKind::GrantRelayRefused { user, key } = &event.kind {
        tracing::info!("event=grant_relay_refused user={user} key={key}");
    }
    changed
}

/// Deliver the notice to `user`'s mailbox, record it, save at once.
async fn send_notice(shared: &Arc<Shared>, user: &str, at: Millis) {
    if !shared.users().exists(user) {
        return;
    }
    let message = match build_notice(&shared.config, user, at) {
        Ok(m) => m,
        Err(e) => {
            shared
                .migration
                .notices_failed
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %format!("{e:#}"), "event=notice_failed user={user}");
            return;
        }
    };
    let store = shared.store.clone();
    let mailbox = user.to_owned();
    let delivered = tokio::task::spawn_blocking(move || {
        // RFC 3834 §3.3: an automatic message goes out with the null reverse-path.
        let return_path = popgate_core::smtp::return_path_header("");
        store.deliver(&mailbox, &[return_path.as_bytes(), &message])
    })
    .await;
    match delivered {
        Ok(Ok(file)) => {
            let id = file.split(',').next().unwrap_or(&file).to_owned();
            let sent = Event::new(
                at,
                None,
                EventKind::MigrationNoticeSent {
                    user: user.to_owned(),
                },
            );
            // Recorded before the bus echoes it back (applying it twice is harmless:
            // the same time), and saved now, so a restart does not send it again.
            shared.migration.lock().apply(&sent);
            save(shared);
            shared.events.publish(
                Event::new(
                    at,
                    None,
                    EventKind::MessageDelivered {
                        id,
                        mailbox: user.to_owned(),
                    },
                ),
                None,
            );
            tracing::info!("event=notice_sent user={user}");
            shared.events.publish(sent, None);
        }
        Ok(Err(e)) => {
            shared
                .migration
                .notices_failed
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "event=notice_failed user={user}");
        }
        Err(e) => {
            shared
                .migration
                .notices_failed
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "event=notice_failed user={user}");
        }
    }
}

/// The notice for `user`: the configured template (or the shipped one in the
/// configured language) filled in, as a MIME message.
pub fn build_notice(config: &Config, user: &str, at: Millis) -> anyhow::Result<Vec<u8>> {
    let notice = &config.migration.notice;
    let template = match &notice.template {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the notice template {}", path.display()))?,
        None => match notice.language {
            NoticeLanguage::En => NOTICE_EN.to_owned(),
            NoticeLanguage::Ja => NOTICE_JA.to_owned(),
        },
    };
    let submission_port = config
        .listen
        .submission
        .map(|a| a.port())
        .filter(|p| *p != 0)
        .unwrap_or(SUBMISSION_PORT);
    let values = NoticeValues {
        user,
        hostname: &config.hostname,
        submission_port,
    };
    let (subject, body) = render_notice(&template, &values).map_err(|_| {
        anyhow::anyhow!("the notice template must start with a `Subject:` line and a blank line")
    })?;
    let from = if notice.from.is_empty() {
        format!("postmaster@{}", config.primary_domain())
    } else {
        notice.from.clone()
    };
    let message_id = format!(
        "notice.{}.{}@{}",
        at.0,
        user.replace('@', "="),
        config.hostname
    );
    Ok(notice_message(&Notice {
        from: &from,
        to: user,
        subject: &subject,
        body: &body,
        date: at,
        message_id: &message_id,
    }))
}

/// `GET /api/migration`: the report as of the server's clock.
pub async fn api(shared: Arc<Shared>) -> axum::Json<MigrationReport> {
    let now = shared.clock.now();
    axum::Json(shared.migration.report(&shared.config, now))
}

/// The Prometheus lines of the migration: users per group, the stages' counters
/// (from the dashboard's `counters`), notices that failed, events the ledger lost.
pub fn metrics(shared: &Shared, counters: &Counters) -> String {
    let report = shared.migration.report(&shared.config, shared.clock.now());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP popgate_migration_users Users by migration group (see `popgate report migration`)."
    );
    let _ = writeln!(out, "# TYPE popgate_migration_users gauge");
    for group in Group::ALL {
        let _ = writeln!(
            out,
            "popgate_migration_users{{group=\"{}\"}} {}",
            group.id(),
            report.group(group).len()
        );
    }
    let counter = |out: &mut String, name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {value}");
    };
    counter(
        &mut out,
        "popgate_grant_relays_warned_total",
        "Relays on a grant in grant.mode warn (allowed and marked), one per message.",
        counters.grant_relays_warned,
    );
    counter(
        &mut out,
        "popgate_grant_relays_switched_off_total",
        "Relays that would have used a grant, refused by grant.mode off.",
        counters.grant_relays_switched_off,
    );
    counter(
        &mut out,
        "popgate_migration_notices_total",
        "Migration notices delivered to users' mailboxes.",
        counters.migration_notices,
    );
    counter(
        &mut out,
        "popgate_migration_notices_failed_total",
        "Migration notices that could not be built or delivered.",
        shared.migration.notices_failed.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "popgate_migration_events_lost_total",
        "Events the migration ledger lost by falling behind the event bus.",
        shared.migration.lost.load(Ordering::Relaxed),
    );
    out
}

/// `popgate report migration`: one line per user, work left first.
pub fn write_table(out: &mut impl std::io::Write, report: &MigrationReport) -> std::io::Result<()> {
    if report.users.is_empty() {
        return writeln!(out, "no users seen in the last {}", days(report.window_ms));
    }
    let header = [
        "GROUP",
        "USER",
        "MODE",
        "GRANT",
        "AUTH",
        "LOGINS",
        "NO-TLS",
        "LAST LOGIN",
        "ADDRESSES",
    ];
    let rows: Vec<[String; 9]> = report
        .users
        .iter()
        .map(|r| {
            let s = &r.stats;
            let login = match &s.last_login {
                Some(l) => format!(
                    "{} {}{}",
                    date(l.at),
                    l.mechanism,
                    if l.tls { "" } else { " no-TLS" }
                ),
                None => "-".into(),
            };
            let auth: Vec<String> = s
                .auth_relays
                .iter()
                .map(|a| {
                    format!(
                        "{}/{}{}",
                        a.count,
                        a.listener.name(),
                        if a.tls { "+tls" } else { "" }
                    )
                })
                .collect();
            [
                r.group.id().to_owned(),
                s.user.clone(),
                r.mode.name().to_owned(),
                if s.refused_relays > 0 {
                    format!("{} ({} refused)", s.grant_relays, s.refused_relays)
                } else {
                    s.grant_relays.to_string()
                },
                if auth.is_empty() {
                    "0".into()
                } else {
                    auth.join(",")
                },
                s.pop3_logins.to_string(),
                s.plaintext_logins.to_string(),
                login,
                s.addresses
                    .iter()
                    .map(|a| a.address.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    crate::cli::write_table(out, header, &rows)?;
    let summary: Vec<String> = report
        .groups
        .iter()
        .map(|g| format!("{} {}", g.group.id(), g.users.len()))
        .collect();
    writeln!(
        out,
        "\n{} (last {})",
        summary.join(", "),
        days(report.window_ms)
    )
}

fn days(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

fn date(at: Millis) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(at.0)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let dir = std::env::temp_dir();
        Config::parse(
            &format!("hostname = \"mail.example.test\"\ndomains = [\"example.test\"]\n{extra}"),
            &dir,
            None,
        )
        .expect("config")
    }

    #[test]
    fn shipped_templates_render_in_both_languages() {
        for (language, needle) in [
            ("en", "Subject: Action needed"),
            ("ja", "Subject: =?UTF-8?B?"),
        ] {
            let c = config(&format!(
                "[listen]\nsubmission = \"127.0.0.1:587\"\n[migration.notice]\nenabled = true\nlanguage = \"{language}\"\n"
            ));
            let m =
                build_notice(&c, "taro@example.test", Millis(1_795_893_491_000)).expect("notice");
            let text = String::from_utf8(m).expect("utf8");
            assert!(text.contains(needle), "{text}");
            assert!(
                text.contains("From: <postmaster@example.test>\r\n"),
                "{text}"
            );
            assert!(text.contains("Content-Type: text/plain; charset=UTF-8\r\n"));
            assert!(text.contains("587"), "{text}");
            assert!(
                !text.contains("{user}") && !text.contains("{hostname}"),
                "{text}"
            );
        }
    }

    #[test]
    fn grant_modes_and_migration_settings_parse_and_bad_keys_are_named() {
        let c = config(
            "[grant]\nmode = \"warn\"\n[grant.modes]\n\"Example.Test\" = \"on\"\n\"bob@example.test\" = \"off\"\n\
             [migration]\nwindow = \"30d\"\noff_text = \"Use port 587\"\n[migration.notice]\nperiod = \"1h\"\n",
        );
        let modes = c.grant.modes();
        use popgate_core::migration::GrantMode;
        assert_eq!(modes.mode_for("alice@example.test"), GrantMode::On);
        assert_eq!(modes.mode_for("bob@example.test"), GrantMode::Off);
        assert_eq!(modes.mode_for("x@other.test"), GrantMode::Warn);
        assert_eq!(c.migration.window, Duration::from_secs(30 * 86_400));
        assert_eq!(c.migration.off_text, "Use port 587");
        assert_eq!(c.migration.notice.period, Duration::from_secs(3600));
        let e = Config::parse("[grant]\nmode = \"maybe\"\n", &std::env::temp_dir(), None)
            .expect_err("bad mode");
        assert!(format!("{e:#}").contains("grant.mode"), "{e:#}");
        let e = Config::parse(
            "[grant.modes]\n\"a b\" = \"off\"\n",
            &std::env::temp_dir(),
            None,
        )
        .expect_err("bad key");
        assert!(format!("{e:#}").contains("grant.modes"), "{e:#}");
    }
}
