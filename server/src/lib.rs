//! popgate-server: the `popgate` binary's IO around popgate-core.
//!
//! # Layout
//!
//! * [`config`]: the TOML configuration over embedded defaults.
//! * [`cli`]: the command line (`serve`, `user`, `grant`, `check-config`).
//! * [`users`]: the Dovecot-compatible passwd-file and password schemes.
//! * [`aliases`]: the aliases file.
//! * [`maildir`]: Maildir delivery and POP3 maildrops, with per-maildrop locks.
//! * [`queue`]: the durable outbound queue for relayed mail.
//! * [`migration`]: the durable per-user migration ledger, the report, the notice mail.
//! * [`delivery`]: the queue runner: routing, the SMTP client's IO, retries, bounces.
//! * [`demo`]: first-run demo users and their credentials file.
//! * [`import`]: `popgate import`: Maildir (UIDLs kept) and mbox into a user's Maildir.
//! * [`fault`]: fault points for crash and disk-full tests (feature `fault-points`).
//! * [`grants`]: the grant store: core's table in memory, or Redis shared by nodes.
//! * [`privilege`]: the private umask, dropping root after binding.
//! * [`tls`]: certificates (configured or generated), the rustls acceptor, reload.
//! * [`serve`]: listeners, the per-connection drivers of core sessions, shutdown.

pub mod aliases;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod fault;
pub mod grants;
pub mod import;
pub mod maildir;
pub mod migration;
pub mod privilege;
pub mod queue;
pub mod serve;
pub mod tls;
pub mod users;
