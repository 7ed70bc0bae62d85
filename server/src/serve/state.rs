//! What every connection shares.

use super::clock::Clock;
use super::events::EventBus;
use crate::aliases::Aliases;
use crate::config::Config;
use crate::config::SenderPolicySetting;
use crate::maildir::MailStore;
use crate::queue::Queue;
use crate::tls::Tls;
use crate::users::UserDb;
use anyhow::Context;
use popgate_core::grant::GrantTable;
use popgate_core::policy::PolicyConfig;
use popgate_core::pop3::Pop3Config;
use popgate_core::smtp::{ErrorLimits, SenderPolicy, SmtpConfig};
use popgate_core::throttle::{Throttle, ThrottleConfig};
use popgate_core::{Event, Protocol, SessionId};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::SystemTime;
use tokio::sync::{Notify, watch};

#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub clock: Clock,
    /// Who still depends on POP before SMTP (see [`crate::migration`]).
    pub migration: crate::migration::MigrationStore,
    pub events: EventBus,
    /// A std mutex, never held across an `.await` (mini-redis `db.rs`): every grant
    /// operation is a short, synchronous call into core.
    grants: Mutex<GrantTable>,
    /// Wakes the purge task when a grant may expire sooner than it planned for.
    grants_changed: Notify,
    users: RwLock<UsersState>,
    /// Login-failure delays per client address (std mutex, never held across await).
    throttle: Mutex<Throttle>,
    pub tls: Tls,
    pub aliases: Aliases,
    pub store: MailStore,
    pub queue: Queue,
    pub pop3_config: Arc<Pop3Config>,
    /// The Postfix policy listener's settings.
    pub policy_config: Arc<PolicyConfig>,
    smtp: Arc<SmtpConfig>,
    submission: Arc<SmtpConfig>,
    smtps: Arc<SmtpConfig>,
    next_session: AtomicU64,
}

#[derive(Debug)]
struct UsersState {
    db: Arc<UserDb>,
    /// The users file's modification time and length when `db` was loaded.
    stamp: Option<(SystemTime, u64)>,
}

impl Shared {
    pub async fn open(config: Config, tls: Tls) -> anyhow::Result<Arc<Shared>> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data folder {}", config.data_dir.display()))?;
        let users = UserDb::load(&config.users_file, &config.domains)?;
        let aliases = Aliases::load(&config.aliases_file, &config.domains)?;
        let migration = crate::migration::MigrationStore::open(&config)?;
        let store = MailStore::new(config.data_dir.join("mail"));
        let queue = Queue::open(config.data_dir.join("queue"))
            .with_context(|| format!("opening the queue in {}", config.data_dir.display()))?;
        let grants = GrantTable::new(config.grant.core());
        let events = EventBus::new(config.log.transcripts);
        let stamp = file_stamp(&config.users_file);
        let auth = &config.auth;
        let pop3_config = Arc::new(Pop3Config {
            hostname: config.hostname.clone(),
            idle_timeout: config.limits.pop3_idle_timeout,
            max_line: config.limits.pop3_line_length,
            plaintext_auth: config.pop3.plaintext_auth,
            grant_requires_tls: config.grant.require_tls,
            stls: true,
            apop: config.pop3.apop,
            sasl_cram_md5: auth.cram_md5,
            max_auth_failures: auth.max_failures,
            ..Pop3Config::default()
        });
        let throttle = Throttle::new(ThrottleConfig {
            base: auth.failure_delay,
            max: auth.failure_delay_max,
            block_after: auth.block_after,
            ..ThrottleConfig::default()
        });
        let smtp_config = |protocol| {
            Arc::new(SmtpConfig {
                hostname: config.hostname.clone(),
                local_domains: config.domains.clone(),
                relay: config.relay_policy(protocol),
                max_message_size: config.limits.max_message_size,
                max_recipients: config.limits.max_recipients,
                idle_timeout: config.limits.smtp_idle_timeout,
                max_command_line: config.limits.smtp_line_length,
                max_text_line: config.limits.smtp_text_line_length,
                min_data_rate: config.limits.min_data_rate,
                starttls: protocol != Protocol::Smtps,
                // RFC 6409 §4.3 / RFC 8314: submission listeners require AUTH.
                require_auth: protocol != Protocol::Smtp,
                auth: true,
                plaintext_auth_localhost: auth.plaintext_localhost,
                cram_md5: auth.cram_md5,
                sender_policy: match auth.sender_policy {
                    SenderPolicySetting::Reject => SenderPolicy::Reject,
                    SenderPolicySetting::Allow => SenderPolicy::Allow,
                },
                max_auth_failures: auth.max_failures,
                grant_modes: config.grant.modes(),
                grant_off_text: config.migration.off_text.clone(),
                bare_newline: config.limits.bare_newline,
                greet_pause: config.limits.greet_pause,
                forbid_unauth_pipelining: config.limits.forbid_unauth_pipelining,
                error_limits: ErrorLimits {
                    soft: config.limits.soft_error_limit,
                    hard: config.limits.hard_error_limit,
                    sleep: config.limits.error_sleep_time,
                    junk_commands: config.limits.junk_command_limit,
                },
                ..SmtpConfig::default()
            })
        };
        let (smtp, submission, smtps) = (
            smtp_config(Protocol::Smtp),
            smtp_config(Protocol::Submission),
            smtp_config(Protocol::Smtps),
        );
        let policy_config = Arc::new(PolicyConfig {
            local_domains: config.domains.clone(),
            grant_modes: config.grant.modes(),
            ..PolicyConfig::default()
        });
        Ok(Arc::new(Shared {
            pop3_config,
            policy_config,
            smtp,
            submission,
            smtps,
            clock: Clock::start(),
            events,
            grants: Mutex::new(grants),
            grants_changed: Notify::new(),
            users: RwLock::new(UsersState {
                db: Arc::new(users),
                stamp,
            }),
            throttle: Mutex::new(throttle),
            tls,
            aliases,
            migration,
            store,
            queue,
            next_session: AtomicU64::new(1),
            config,
        }))
    }

    /// The SMTP session settings of one listener (relay policy differs per listener).
    pub fn smtp_config(&self, protocol: Protocol) -> Arc<SmtpConfig> {
        match protocol {
            Protocol::Submission => self.submission.clone(),
            Protocol::Smtps => self.smtps.clone(),
            _ => self.smtp.clone(),
        }
    }

    pub fn next_session_id(&self) -> SessionId {
        SessionId(self.next_session.fetch_add(1, Ordering::Relaxed))
    }

    /// Run `f` on the grant table, then publish the events it made.
    pub fn with_grants<T>(
        &self,
        peer: Option<SocketAddr>,
        f: impl FnOnce(&mut GrantTable) -> T,
    ) -> T {
        let (out, events) = {
            let mut table = self.grant_table();
            let out = f(&mut table);
            let events: Vec<Event> = std::iter::from_fn(|| table.poll_event()).collect();
            (out, events)
        };
        if !events.is_empty() {
            self.grants_changed.notify_one();
        }
        for e in events {
            self.events.publish(e, peer);
        }
        out
    }

    /// DESIGN: a legacy hash is rehashed to the default on a successful login when
    /// `[users] rehash` is set. The rewritten file is loaded here at once, so the next
    /// reload does not take the new hash for a password change and revoke the grant
    /// this very login is making. Call from a blocking thread (hashing is slow).
    pub fn rehash(&self, user: &str, password: &str) -> anyhow::Result<()> {
        let hash = crate::users::hash_password(password)?;
        let mut state = self.users.write().unwrap_or_else(|p| p.into_inner());
        crate::users::set_hash(&self.config.users_file, user, &hash)?;
        state.db = Arc::new(UserDb::load(&self.config.users_file, &self.config.domains)?);
        state.stamp = file_stamp(&self.config.users_file);
        Ok(())
    }

    pub fn with_throttle<T>(&self, f: impl FnOnce(&mut Throttle) -> T) -> T {
        f(&mut self.throttle.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn grant_table(&self) -> MutexGuard<'_, GrantTable> {
        // A panic while holding the lock cannot leave the table half-updated in a way
        // that matters more than losing every grant would.
        self.grants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The user database, re-read when the users file changed on disk (so
    /// `popgate user add/remove/passwd` take effect on a running server). Users that
    /// were removed or whose password changed lose their grants.
    pub fn users(&self) -> Arc<UserDb> {
        let stamp = file_stamp(&self.config.users_file);
        {
            let state = self.users.read().unwrap_or_else(|p| p.into_inner());
            if state.stamp == stamp {
                return state.db.clone();
            }
        }
        let mut state = self.users.write().unwrap_or_else(|p| p.into_inner());
        if state.stamp == stamp {
            return state.db.clone();
        }
        match UserDb::load(&self.config.users_file, &self.config.domains) {
            Ok(db) => {
                let changed: Vec<String> = state
                    .db
                    .list()
                    .into_iter()
                    .map(|(user, _)| user)
                    .filter(|user| db.fingerprint(user) != state.db.fingerprint(user))
                    .collect();
                tracing::info!(users = db.list().len(), "users file reloaded");
                state.db = Arc::new(db);
                state.stamp = stamp;
                let db = state.db.clone();
                drop(state);
                let now = self.clock.now();
                for user in changed {
                    self.with_grants(None, |g| g.revoke_user(now, &user));
                }
                db
            }
            Err(e) => {
                // Keep serving with the users we had; say why the new file was refused.
                tracing::error!(error = %e, "users file could not be reloaded; keeping the previous users");
                state.stamp = stamp;
                state.db.clone()
            }
        }
    }
}

fn file_stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Purge expired grants exactly at their deadlines, so expiry events are on time and
/// the table does not hold dead entries. (Relay decisions never depend on this: core
/// checks expiry against `now` itself.)
pub async fn purge_grants(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let now = shared.clock.now();
        let next = shared.with_grants(None, |g| g.purge(now));
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(shared.clock.instant_at(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = shared.grants_changed.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
