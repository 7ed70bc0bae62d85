//! The `popgate` binary: parse the command line, load the configuration, set up
//! logging, run the command.
//!
//! Exit codes: 0 success; 1 an error (`popgate: error: <message>` on stderr); 2 a
//! usage error or a command that is not available yet.

use clap::Parser;
use popgate_server::cli::{Cli, Command, NotAvailable};
use popgate_server::config::{Config, LogFormat};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Before any file is created: mail, queue, keys and credentials are private.
    popgate_server::privilege::private_umask();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; everything else is a
            // usage error (exit 2).
            if !e.use_stderr() {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.render().to_string();
            if text.starts_with("error:") {
                eprint!("popgate: {text}");
            } else {
                eprint!("{text}");
            }
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("popgate: error: {e:#}");
            if e.downcast_ref::<NotAvailable>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    init_tracing(config.log.format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config),
        command => popgate_server::cli::run(&command, &config),
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(popgate_server::serve::run(config))
}

/// Logs go to stderr: text `key=value` lines (what fail2ban matches) or JSON lines.
/// `RUST_LOG` picks what is logged; the default is `info`.
fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: log files and fail2ban get plain text.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
