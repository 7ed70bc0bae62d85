//! The command line: DESIGN.md "Configuration and command line".
//!
//! ```text
//! popgate serve [--config FILE]
//! popgate user add ADDRESS [--password-stdin]
//! popgate user list | remove ADDRESS | passwd ADDRESS [--password-stdin]
//! popgate grant list | add ADDRESS [--ttl 30m] [--messages N] | revoke KEY | flush
//! popgate queue list | show ID | retry ID | delete ID
//! popgate check-config [--config FILE]
//! ```
//!
//! `--config` is global, so it goes before or after the subcommand; `popgate` alone
//! is `popgate serve`. Everything but `serve` runs here; `main` runs `serve`.

use crate::config::Config;
use crate::queue::Queue;
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
        /// How many messages (default: no count limit).
        #[arg(long)]
        messages: Option<u32>,
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
        Command::Grant { action } => Err(NotAvailable(match action {
            GrantCommand::List => "grant list (it needs the HTTP API)",
            GrantCommand::Add { .. } => "grant add (it needs the HTTP API)",
            GrantCommand::Revoke { .. } => "grant revoke (it needs the HTTP API)",
            GrantCommand::Flush => "grant flush (it needs the HTTP API)",
        })
        .into()),
        Command::Queue { action } => queue(action, config, &mut out),
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
        QueueCommand::Retry { .. } => return Err(NotAvailable("queue retry (delivery)").into()),
        QueueCommand::Delete { id } => {
            if !open()?.delete(id)? {
                bail!("no queued message {id}");
            }
            writeln!(out, "deleted {id}")?;
        }
    }
    Ok(())
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
        ] {
            assert!(parse(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            &["user"][..],
            &["user", "add"],
            &["grant", "add", "x", "--ttl", "soon"],
            &["frobnicate"],
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
