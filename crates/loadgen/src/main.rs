//! `loadgen`: the benchmark driver (`loadgen suite`, run by `cargo xtask bench`) and a
//! stand-alone SMTP load generator for manual runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use loadgen::conn::{Conn, connect, message_4k, smtp_deliver};
use loadgen::drive::{Limit, closed_loop, open_loop};
use loadgen::suite::{self, Options};

#[derive(Debug, Parser)]
#[command(about = "load generator and side-by-side benchmark driver")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the benchmark workloads against popgate and, with --peers, Postfix + Dovecot.
    Suite {
        #[arg(long)]
        smoke: bool,
        #[arg(long)]
        peers: bool,
        /// One workload: 1..7.
        #[arg(long)]
        only: Option<String>,
        #[arg(long)]
        report: PathBuf,
        /// The `popgate` binary.
        #[arg(long)]
        popgate: PathBuf,
        /// Where the servers' temporary folder goes.
        #[arg(long)]
        work: PathBuf,
        /// criterion's output folder holding the grant-table results.
        #[arg(long)]
        criterion: Option<PathBuf>,
    },
    /// SMTP delivery of 4 KB messages: closed loop with --sessions, or open loop at --rate.
    Smtp {
        addr: SocketAddr,
        #[arg(long, default_value_t = 8)]
        sessions: usize,
        /// Messages per connection (1 is `smtp-source` without -d).
        #[arg(long, default_value_t = 1)]
        per_connection: usize,
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value = "bench@example.test")]
        from: String,
        #[arg(long)]
        to: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Cmd::Suite {
            smoke,
            peers,
            only,
            report,
            popgate,
            work,
            criterion,
        } => {
            suite::run(Options {
                smoke,
                peers,
                only,
                report,
                popgate,
                work,
                criterion,
            })
            .await
        }
        Cmd::Smtp {
            addr,
            sessions,
            per_connection,
            rate,
            seconds,
            from,
            to,
        } => {
            let body = Arc::new(message_4k(&from, &to));
            let limit = Limit {
                duration: Duration::from_secs_f64(seconds),
                max_ops: u64::MAX,
            };
            let (from, to) = (Arc::new(from), Arc::new(to));
            let op = move || {
                let (from, to, body) = (from.clone(), to.clone(), body.clone());
                async move {
                    let mut c = Conn::new(connect(None, addr).await?);
                    smtp_deliver(&mut c, &from, &to, &body, per_connection).await
                }
            };
            let run = match rate {
                Some(rate) => open_loop(rate, 1024, limit, move |_| op()).await,
                None => closed_loop(sessions, limit, move |_, _| op()).await,
            };
            println!(
                "{} connections ({} messages) in {:.2} s: {:.1} messages/s; latency p50 {} µs, p99 {} µs, p99.9 {} µs; {} errors{}",
                run.ops,
                run.ops as usize * per_connection,
                run.elapsed_s,
                run.per_second() * per_connection as f64,
                run.latency.p50_us,
                run.latency.p99_us,
                run.latency.p999_us,
                run.errors,
                run.first_error
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            );
            Ok(())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
