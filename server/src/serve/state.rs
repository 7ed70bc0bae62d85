//! What every connection shares.

use super::clock::Clock;
use super::events::EventBus;
use crate::aliases::Aliases;
use crate::config::Config;
use crate::config::MaildropLockKind;
use crate::config::SenderPolicySetting;
use crate::grants::Grants;
use crate::maildir::{LockSettings, MailStore};
use crate::queue::Queue;
use crate::tls::Tls;
use crate::users::UserDb;
use anyhow::Context;
use popgate_core::policy::PolicyConfig;
use popgate_core::pop3::Pop3Config;
use popgate_core::smtp::{ErrorLimits, SenderPolicy, SmtpConfig};
use popgate_core::throttle::{Throttle, ThrottleConfig};
use popgate_core::{Protocol, SessionId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;
use tokio::sync::watch;

#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub clock: Clock,
    /// Who still depends on POP before SMTP (see [`crate::migration`]).
    pub migration: crate::migration::MigrationStore,
    pub events: Arc<EventBus>,
    /// The grant store (in memory, or shared through Redis): see [`crate::grants`].
    pub grants: Arc<Grants>,
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
        let store = MailStore::new(config.data_dir.join("mail")).with_lock_settings(LockSettings {
            node: crate::grants::node_name(&config),
            stale_after: config.pop3.lock_stale,
        });
        let store = match config.maildrop_lock() {
            MaildropLockKind::File => store,
            MaildropLockKind::Process => store.with_process_locks(),
        };
        let queue = Queue::open(config.data_dir.join("queue"))
            .with_context(|| format!("opening the queue in {}", config.data_dir.display()))?;
        let clock = Clock::start();
        let grants = Grants::open(&config, clock)?;
        let events = grants.events().clone();
        let first_session = crate::grants::first_session_id(
            grants.is_shared(),
            &crate::grants::node_name(&config),
            clock.now(),
        );
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
            clock,
            events,
            grants,
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
            next_session: AtomicU64::new(first_session),
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
                for user in changed {
                    self.grants
                        .revoke_user_soon(user, popgate_core::grant::reason::USER_REMOVED);
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

/// Report grant expiry exactly at the deadlines (see [`Grants::run_expiry`]), and
/// with a shared store carry events to and from the other nodes.
pub async fn purge_grants(shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    shared.grants.spawn_cluster(shutdown.clone());
    shared.grants.clone().run_expiry(shutdown).await;
}
