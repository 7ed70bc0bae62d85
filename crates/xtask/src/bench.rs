//! `cargo xtask bench`: popgate side by side with Postfix + Dovecot.
//!
//! This builds the server and the load generator, runs the grant-table criterion bench
//! (workload 4), then hands over to `loadgen suite`, which starts the servers in a
//! temporary folder under `target/bench/`, runs the workloads and writes the report.
//! `--peers` installs Debian's postfix, dovecot-core and dovecot-pop3d first (as root;
//! the packages' daemons are not started, and the peers' pinned configurations in
//! `bench/` never listen on port 25).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::sh::Repo;

pub const USAGE: &str = "\
usage: cargo xtask bench [--smoke] [--peers] [--only WORKLOAD] [--report FILE]

  --smoke          debug build, tiny runs (seconds): checks that the bench still works
  --peers          also measure Postfix + Dovecot (installs the Debian packages as root)
  --only N         one workload, 1..7
  --report FILE    report path without extension (default target/bench/report,
                   with --smoke target/bench/smoke):
                   FILE.md (the table) and FILE.json (table and raw figures)
";

/// The Debian packages of the peers and the programs that tell they are installed.
const PEER_PACKAGES: &[&str] = &["postfix", "dovecot-core", "dovecot-pop3d", "strace"];

#[derive(Debug, Default, PartialEq)]
struct Args {
    smoke: bool,
    peers: bool,
    only: Option<String>,
    report: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut out = Args::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--smoke" => out.smoke = true,
            "--peers" => out.peers = true,
            "--only" => {
                let w = it.next().context("--only needs a workload number")?;
                if !matches!(w.as_str(), "1" | "2" | "3" | "4" | "5" | "6" | "7") {
                    bail!("--only takes a workload 1..7, not {w:?}");
                }
                out.only = Some(w.clone());
            }
            "--report" => out.report = Some(it.next().context("--report needs a file")?.into()),
            other => bail!("unknown bench argument {other:?}\n{USAGE}"),
        }
    }
    Ok(out)
}

pub fn run(repo: &Repo, args: &[String]) -> Result<ExitCode> {
    let args = parse(args)?;
    if args.peers {
        install_peers(repo)?;
    }
    let profile = if args.smoke { "debug" } else { "release" };
    let mut build = repo.cmd("cargo");
    build.args(["build", "-p", "popgate-server", "-p", "loadgen"]);
    if !args.smoke {
        build.arg("--release");
    }
    repo.run(&mut build)?;

    let target = repo.root.join("target");
    let criterion = target.join("criterion");
    let grant_bench = !args.smoke && args.only.as_deref().is_none_or(|w| w == "4");
    if grant_bench {
        repo.run(
            repo.cmd("cargo")
                .args(["bench", "-p", "popgate-core", "--bench", "grant", "--"])
                .args(["--warm-up-time", "1", "--measurement-time", "3", "--noplot"])
                .env("GRANT_MEMORY_OUT", criterion.join("grant_memory.json")),
        )?;
    }

    let bin = target.join(profile);
    // A smoke run (part of `cargo xtask test`) must not overwrite a measured report.
    let default_report = if args.smoke { "smoke" } else { "report" };
    let report = args
        .report
        .clone()
        .unwrap_or_else(|| target.join("bench").join(default_report));
    let mut suite = repo.cmd(bin.join("loadgen"));
    suite
        .arg("suite")
        .arg("--popgate")
        .arg(bin.join("popgate"))
        .arg("--report")
        .arg(&report)
        .arg("--work")
        .arg(target.join("bench").join("work"));
    if args.smoke {
        suite.arg("--smoke");
    }
    if args.peers {
        suite.arg("--peers");
    }
    if let Some(w) = &args.only {
        suite.args(["--only", w]);
    }
    if grant_bench {
        suite.arg("--criterion").arg(&criterion);
    }
    let outcome = repo.run(&mut suite);
    warn_port_25(repo);
    outcome.map(|()| ExitCode::SUCCESS)
}

/// Installs the peers' packages non-interactively. Postfix's debconf question is
/// preseeded to "No configuration": the bench writes its own configuration, and the
/// packages' daemons are never started by the install here.
fn install_peers(repo: &Repo) -> Result<()> {
    let missing = [
        "/usr/sbin/postfix",
        "/usr/sbin/dovecot",
        "/usr/lib/dovecot/pop3",
        "/usr/bin/strace",
    ]
    .iter()
    .any(|p| !std::path::Path::new(p).exists());
    if !missing {
        return Ok(());
    }
    let uid = repo.probe(repo.cmd("id").arg("-u")).unwrap_or_default();
    if uid != "0" {
        bail!(
            "the peers are not installed and this is not root: install the Debian packages {} (or run without --peers)",
            PEER_PACKAGES.join(" ")
        );
    }
    let mut preseed = repo.cmd("sh");
    preseed.args([
        "-c",
        "echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections",
    ]);
    repo.run(&mut preseed)?;
    repo.run(
        repo.cmd("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(PEER_PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The bench never listens on port 25; say so loudly if something does afterwards.
fn warn_port_25(repo: &Repo) {
    if let Some(out) = repo.probe(repo.cmd("ss").args(["-Hltn", "sport = :25"]))
        && !out.is_empty()
    {
        eprintln!("warning: something listens on port 25 after the bench:\n{out}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_are_parsed() {
        let args = parse(&strings(&["--smoke", "--only", "3", "--report", "r"])).expect("valid");
        assert_eq!(
            args,
            Args {
                smoke: true,
                peers: false,
                only: Some("3".into()),
                report: Some("r".into()),
            }
        );
        assert!(parse(&strings(&["--only", "9"])).is_err());
        assert!(parse(&strings(&["--only"])).is_err());
        assert!(parse(&strings(&["--fast"])).is_err());
    }
}
