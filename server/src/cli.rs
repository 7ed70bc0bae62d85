//! The command line: DESIGN.md "Configuration and command line".
//!
//! ```text
//! popgate serve [--config FILE]
//! popgate user add ADDRESS [--password-stdin]
//! popgate user list | remove ADDRESS | passwd ADDRESS [--password-stdin]
//! popgate grant list | add ADDRESS [--ttl 30m] [--messages N] [--note TEXT] | revoke KEY | flush
//! popgate queue list | show ID | retry ID | delete ID
//! popgate check-config [--config FILE]
//! popgate report migration [--json]
//! popgate import SOURCE --user ADDRESS [--uidl-format FORMAT]
//! ```
//!
//! `--config` is global, so it goes before or after the subcommand; `popgate` alone
//! is `popgate serve`. Everything but `serve` runs here; `main` runs `serve`. The
//! `grant` commands talk to the running server through its HTTP API (the grant table
//! lives in its memory), at `listen.http` with `[http] admin_token`.

use crate::config::Config;
use crate::queue::Queue;
use crate::serve::http::client::ApiClient;
use crate::serve::http::{GrantList, GrantRow, NewGrant};
use crate::users::UserDb;
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::fmt;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

#[derive(Debug, Parser)]
#[command(
    name = "popgate",
    version,
    about = "POP-before-SMTP mail server: POP3, SMTP with relay grants, SMTP AUTH, a live dashboard"
)]
pub struct Cli {
    /// The configuration file (TOML); without it, the embedded demo defaults.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the mail server (the default).
    Serve,
    /// Manage the users file.
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
    /// Manage relay grants of a running server.
    Grant {
        #[command(subcommand)]
        action: GrantCommand,
    },
    /// Inspect the outbound queue.
    Queue {
        #[command(subcommand)]
        action: QueueCommand,
    },
    /// Check the configuration and print the listeners it would start.
    CheckConfig,
    /// Reports.
    Report {
        #[command(subcommand)]
        what: ReportCommand,
    },
    /// Import a Maildir (keeping its POP3 UIDLs) or an mbox file into a user's Maildir.
    Import {
        /// A Maildir folder (with dovecot-uidlist or courierimapuiddb), or an mbox file.
        source: PathBuf,
        /// The user whose mailbox receives the messages.
        #[arg(long)]
        user: String,
        /// The old server's POP3 UIDL format (Dovecot's pop3_uidl_format syntax: %u
        /// UID, %v UIDVALIDITY, %f file name, %08Xu hex); default: Dovecot's
        /// %08Xu%08Xv, or %v-%u for Courier's uidlist.
        #[arg(long, value_name = "FORMAT")]
        uidl_format: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Who still depends on POP before SMTP: users by group, work left first. Read
    /// from the data folder, so it works whether or not the server runs (a running
    /// server saves its counts within seconds).
    Migration {
        /// The report as JSON (the same document as `GET /api/migration`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; prints a generated password unless --password-stdin.
    Add {
        /// user@domain, or a bare name at the first local domain.
        address: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users and their password schemes.
    List,
    /// Remove a user.
    Remove { address: String },
    /// Set a user's password; prints a generated one unless --password-stdin.
    Passwd {
        address: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// List live grants.
    List,
    /// Grant an address (or CIDR) the right to relay.
    Add {
        address: String,
        /// How long, e.g. 30m, 2h.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        /// How many messages (default: the configured max_messages; 0: no limit).
        #[arg(long)]
        messages: Option<u32>,
        /// A note shown with the grant.
        #[arg(long)]
        note: Option<String>,
    },
    /// Revoke the grant of a key (an address or CIDR).
    Revoke { key: String },
    /// Revoke every grant.
    Flush,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queued messages.
    List,
    /// Print a queued message's envelope and content.
    Show { id: String },
    /// Try a queued message again now.
    Retry { id: String },
    /// Remove a queued message.
    Delete { id: String },
}

/// A command that parses but is not implemented yet: exit code 2, like a usage error,
/// so scripts can tell it from a failure.
#[derive(Debug)]
pub struct NotAvailable(pub &'static str);

impl fmt::Display for NotAvailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not available yet", self.0)
    }
}

impl std::error::Error for NotAvailable {}

/// Run every command but `serve` against `config`, printing to standard output.
pub fn run(command: &Command, config: &Config) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match command {
        Command::Serve => bail!("serve is run by main"),
        Command::CheckConfig => check_config(config, &mut out),
        Command::User { action } => user(action, config, &mut out),
        Command::Grant { action } => grant(action, config, &mut out),
        Command::Queue { action } => queue(action, config, &mut out),
        Command::Report {
            what: ReportCommand::Migration { json },
        } => {
            let report = crate::migration::report_from_file(config)?;
            if *json {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            } else {
                crate::migration::write_table(&mut out, &report)?;
            }
            Ok(())
        }
        Command::Import {
            source,
            user,
            uidl_format,
        } => {
            let user = local_address(config, user)?;
            let db = UserDb::load(&config.users_file, &config.domains)?;
            if !db.exists(&user) {
                bail!("{user} is not a user: add it first (`popgate user add {user}`)");
            }
            let store = crate::maildir::MailStore::new(config.mail_dir());
            let report = crate::import::import(&store, &user, source, uidl_format.as_deref())?;
            write!(out, "{report}")?;
            writeln!(out, "into: {user}")?;
            Ok(())
        }
    }
}

fn check_config(config: &Config, out: &mut impl Write) -> anyhow::Result<()> {
    let file = match &config.source {
        Some(path) => path.display().to_string(),
        None => "(embedded defaults)".to_owned(),
    };
    writeln!(out, "config ok: {file}")?;
    writeln!(
        out,
        "domains {}; data {}; listeners: {}",
        config.domains.join(", "),
        config.data_dir.display(),
        config.listen.summary()
    )?;
    Ok(())
}

fn user(action: &UserCommand, config: &Config, out: &mut impl Write) -> anyhow::Result<()> {
    let path = &config.users_file;
    match action {
        UserCommand::Add {
            address,
            password_stdin,
        } => {
            let address = local_address(config, address)?;
            let (password, generated) = password(*password_stdin)?;
            crate::users::add_user(path, &address, &password)?;
            writeln!(out, "added {address}")?;
            if generated {
                writeln!(out, "password: {password}")?;
            }
        }
        UserCommand::List => {
            let db = UserDb::load(path, &config.domains)?;
            for (address, scheme) in db.list() {
                writeln!(out, "{address} {scheme}")?;
            }
        }
        UserCommand::Remove { address } => {
            let address = canonical(config, address);
            crate::users::remove_user(path, &address)?;
            writeln!(out, "removed {address}")?;
        }
        UserCommand::Passwd {
            address,
            password_stdin,
        } => {
            let address = canonical(config, address);
            let (password, generated) = password(*password_stdin)?;
            crate::users::set_password(path, &address, &password)?;
            writeln!(out, "changed the password of {address}")?;
            if generated {
                writeln!(out, "password: {password}")?;
            }
        }
    }
    Ok(())
}

fn canonical(config: &Config, address: &str) -> String {
    crate::users::canonical(&config.domains, address)
}

/// A user's address must be at a local domain: mail for anything else never reaches
/// a mailbox here.
fn local_address(config: &Config, address: &str) -> anyhow::Result<String> {
    let address = canonical(config, address);
    let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    if !config.domains.iter().any(|d| d == domain) {
        bail!(
            "{address} is not at a local domain (local domains: {})",
            config.domains.join(", ")
        );
    }
    Ok(address)
}

/// The password from the first line of standard input, or a generated one (the bool
/// says which, so it is printed exactly once).
fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((crate::demo::random_password(), true));
    }
    let mut line = String::new();
    io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok((password, false))
}

fn queue(action: &QueueCommand, config: &Config, out: &mut impl Write) -> anyhow::Result<()> {
    let dir = config.queue_dir();
    let open = || Queue::open(&dir).with_context(|| format!("cannot open queue {}", dir.display()));
    match action {
        QueueCommand::List => {
            if !dir.exists() {
                return Ok(());
            }
            for e in open()?.list()? {
                writeln!(
                    out,
                    "{} {} {} <{}> -> {}",
                    e.id,
                    format_time(e.queued_at_unix_ms),
                    e.size,
                    e.from,
                    e.recipients.join(", ")
                )?;
            }
        }
        QueueCommand::Show { id } => {
            let queue = open()?;
            let (Some(entry), Some(message)) = (queue.entry(id)?, queue.read_message(id)?) else {
                bail!("no queued message {id}");
            };
            writeln!(out, "id: {}", entry.id)?;
            writeln!(out, "queued: {}", format_time(entry.queued_at_unix_ms))?;
            writeln!(out, "from: <{}>", entry.from)?;
            writeln!(out, "to: {}", entry.recipients.join(", "))?;
            writeln!(out, "size: {}", entry.size)?;
            writeln!(out)?;
            out.write_all(&message)?;
        }
        // The running server lists the queue every second (delivery::SCAN_INTERVAL)
        // and picks the entry up then.
        QueueCommand::Retry { id } => {
            if !open()?.retry_now(id)? {
                bail!("no queued message {id}");
            }
            writeln!(out, "{id}: due now")?;
        }
        QueueCommand::Delete { id } => {
            if !open()?.delete(id)? {
                bail!("no queued message {id}");
            }
            writeln!(out, "deleted {id}")?;
        }
    }
    Ok(())
}

fn grant(action: &GrantCommand, config: &Config, out: &mut impl Write) -> anyhow::Result<()> {
    let client = ApiClient::from_config(config).map_err(anyhow::Error::msg)?;
    let call = |method: &str, path: &str, body: Option<serde_json::Value>| {
        let response = client.request(method, path, body.as_ref())?;
        match response.status {
            200..=299 => Ok(response.body),
            401 => bail!(
                "the server refused the admin token: set `[http] admin_token` in the config to the server's"
            ),
            status => bail!("{} (HTTP {status})", response.error_message()),
        }
    };
    match action {
        GrantCommand::List => {
            let body = call("GET", "/api/grants", None)?;
            let list: GrantList = serde_json::from_slice(&body)
                .context("the server sent a grant list we cannot read")?;
            write_grant_table(out, &list.grants)?;
        }
        GrantCommand::Add {
            address,
            ttl,
            messages,
            note,
        } => {
            let new = NewGrant {
                address: address.clone(),
                ttl: ttl.map(|d| humantime::format_duration(d).to_string()),
                messages: *messages,
                note: note.clone(),
            };
            let body = call("POST", "/api/grants", Some(serde_json::to_value(&new)?))?;
            let row: GrantRow =
                serde_json::from_slice(&body).context("the server sent a grant we cannot read")?;
            writeln!(
                out,
                "granted {} for {} ({})",
                row.grant.key,
                remaining(row.remaining_ms),
                messages_left(row.grant.messages_left)
            )?;
        }
        GrantCommand::Revoke { key } => {
            let body = call("DELETE", &popgate_core::api::grant_path(key), None)?;
            let answer: serde_json::Value = serde_json::from_slice(&body)?;
            let revoked = answer
                .get("revoked")
                .and_then(|k| k.as_str())
                .unwrap_or(key);
            writeln!(out, "revoked {revoked}")?;
        }
        GrantCommand::Flush => {
            let body = call("DELETE", "/api/grants", None)?;
            let answer: serde_json::Value = serde_json::from_slice(&body)?;
            let n = answer.get("flushed").and_then(|n| n.as_u64()).unwrap_or(0);
            writeln!(out, "flushed {n} grant{}", if n == 1 { "" } else { "s" })?;
        }
    }
    Ok(())
}

fn write_grant_table(out: &mut impl Write, grants: &[GrantRow]) -> io::Result<()> {
    if grants.is_empty() {
        return writeln!(out, "no grants");
    }
    let rows: Vec<[String; 6]> = grants
        .iter()
        .map(|r| {
            let g = &r.grant;
            [
                g.key.to_string(),
                g.user.clone(),
                remaining(r.remaining_ms),
                messages_left(g.messages_left),
                g.session
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                g.note.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = ["KEY", "USER", "EXPIRES IN", "MESSAGES", "SESSION", "NOTE"];
    write_table(out, header, &rows)
}

/// Rows under a header, each column as wide as its widest cell (in characters), two
/// spaces apart; the last column is not padded.
pub fn write_table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> io::Result<()> {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        text
    };
    writeln!(out, "{}", line(header))?;
    for row in rows {
        writeln!(out, "{}", line(row.each_ref().map(String::as_str)))?;
    }
    Ok(())
}

/// Whole seconds left, e.g. `29m 59s` (a grant with 0.4 s left shows `0s`).
fn remaining(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

fn messages_left(left: Option<u32>) -> String {
    match left {
        None => "unlimited".into(),
        Some(1) => "1 message left".into(),
        Some(n) => format!("{n} messages left"),
    }
}

fn format_time(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("popgate").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_is_global_and_serve_is_the_default() {
        let cli = parse(&[]).expect("no args");
        assert!(cli.command.is_none() && cli.config.is_none());
        for args in [
            &["--config", "a.toml", "check-config"][..],
            &["check-config", "--config", "a.toml"],
            &["user", "list", "--config", "a.toml"],
            &["-c", "a.toml", "serve"],
        ] {
            let cli = parse(args).expect("parses");
            assert_eq!(cli.config, Some(PathBuf::from("a.toml")), "{args:?}");
        }
    }

    #[test]
    fn subcommands_parse() {
        let cli = parse(&["user", "add", "taro", "--password-stdin"]).expect("user add");
        assert!(matches!(
            cli.command,
            Some(Command::User {
                action: UserCommand::Add {
                    password_stdin: true,
                    ..
                }
            })
        ));
        let cli = parse(&[
            "grant",
            "add",
            "192.0.2.1",
            "--ttl",
            "1h",
            "--messages",
            "3",
        ])
        .expect("grant add");
        match cli.command {
            Some(Command::Grant {
                action: GrantCommand::Add { ttl, messages, .. },
            }) => {
                assert_eq!(ttl, Some(Duration::from_secs(3600)));
                assert_eq!(messages, Some(3));
            }
            other => panic!("{other:?}"),
        }
        for ok in [
            &["grant", "list"][..],
            &["grant", "revoke", "192.0.2.0/24"],
            &["grant", "flush"],
            &["queue", "list"],
            &["queue", "show", "1"],
            &["queue", "retry", "1"],
            &["queue", "delete", "1"],
            &["user", "remove", "x"],
            &["user", "passwd", "x"],
            &["report", "migration"],
            &["report", "migration", "--json"],
            &["import", "Maildir", "--user", "taro"],
            &["import", "mbox", "--user", "taro", "--uidl-format", "%v-%u"],
        ] {
            assert!(parse(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            &["user"][..],
            &["user", "add"],
            &["grant", "add", "x", "--ttl", "soon"],
            &["frobnicate"],
            &["import", "Maildir"],
            &["report"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn check_config_summary() {
        let mut out = Vec::new();
        check_config(&Config::embedded(), &mut out).expect("check");
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.starts_with("config ok: (embedded defaults)\n"),
            "{text}"
        );
        assert!(text.contains("smtp 127.0.0.1:2525"), "{text}");
        assert!(text.contains("http 127.0.0.1:8025"), "{text}");
    }

    #[test]
    fn format_time_is_rfc3339() {
        assert_eq!(format_time(1_500), "1970-01-01T00:00:01.500Z");
    }
}
