//! `cargo xtask fuzz [--seconds N] [--target T]`: every fuzz target in `fuzz/` (or one)
//! under libFuzzer for a bounded time each, then a table of executions and findings.
//!
//! cargo-fuzz builds with sanitizer flags that need nightly features; on a stable
//! toolchain `RUSTC_BOOTSTRAP=1` enables them. cargo-fuzz itself is installed from
//! crates.io when missing. Each target's corpus grows in `fuzz/corpus/<target>` from
//! run to run; a crash leaves its input in `fuzz/artifacts/<target>/` and the
//! libFuzzer log in `target/fuzz-logs/<target>.log`, and makes the command fail.
//! Not part of `cargo xtask test`: it takes minutes.

use std::fs;
use std::process::{ExitCode, Stdio};

use anyhow::{Context, Result, bail};

use crate::sh::Repo;

/// Seconds per target when `--seconds` is not given.
pub const DEFAULT_SECONDS: u64 = 60;

/// Longest a single input may run before libFuzzer reports it as a hang.
const INPUT_TIMEOUT_SECONDS: u64 = 10;

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub seconds: u64,
    pub target: Option<String>,
}

pub fn parse_args(args: &[String]) -> Result<Options> {
    let mut options = Options {
        seconds: DEFAULT_SECONDS,
        target: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().context("--seconds needs a number")?;
                options.seconds =
                    value.parse().ok().filter(|&s| s > 0).with_context(|| {
                        format!("--seconds {value:?}: expected a positive number")
                    })?;
            }
            "--target" => {
                options.target = Some(args.next().context("--target needs a name")?.clone());
            }
            other => bail!("unknown argument {other:?}: expected --seconds N or --target T"),
        }
    }
    Ok(options)
}

/// What one libFuzzer run reported.
#[derive(Debug, Default, PartialEq, Eq)]
struct Report {
    executions: Option<u64>,
    /// The artifact libFuzzer wrote for a crash, leak or hang.
    artifact: Option<String>,
    /// The first line that says what went wrong.
    error: Option<String>,
}

/// Reads libFuzzer's output: `Done N runs in S second(s)` or
/// `stat::number_of_executed_units: N` for executions; `Test unit written to PATH`
/// for an input that crashed; `==N== ERROR:`, `panicked at` or `deadly signal` for why.
fn read_report(log: &str) -> Report {
    let mut report = Report::default();
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("stat::number_of_executed_units:") {
            report.executions = rest.trim().parse().ok().or(report.executions);
        } else if let Some(rest) = line.strip_prefix("Done ") {
            if let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                report.executions = Some(n);
            }
        } else if let Some(path) = line.split("Test unit written to ").nth(1) {
            report.artifact = Some(path.trim().to_owned());
        }
        if report.error.is_none()
            && (line.contains("ERROR: libFuzzer")
                || line.contains("ERROR: AddressSanitizer")
                || line.contains("panicked at")
                || line.contains("deadly signal"))
        {
            report.error = Some(line.trim().to_owned());
        }
    }
    report
}

pub fn run(repo: &Repo, args: &[String]) -> Result<ExitCode> {
    let options = parse_args(args)?;
    ensure_cargo_fuzz(repo)?;
    let listed = repo
        .probe(fuzz_cmd(repo).arg("list"))
        .context("`cargo fuzz list` failed in fuzz/")?;
    let all: Vec<String> = listed.lines().map(str::to_owned).collect();
    let targets: Vec<String> = match &options.target {
        Some(t) if all.contains(t) => vec![t.clone()],
        Some(t) => bail!("no fuzz target {t:?}; there are: {}", all.join(", ")),
        None => all,
    };
    let logs = repo.target_dir().join("fuzz-logs");
    fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;

    let mut rows = Vec::new();
    for target in &targets {
        println!(
            "==> fuzz {target} for {}s (log: {})",
            options.seconds,
            logs.join(format!("{target}.log")).display()
        );
        // Build first with inherited output, so a compile error shows as one.
        repo.run(fuzz_cmd(repo).args(["build", target]))?;
        let output = fuzz_cmd(repo)
            .args(["run", target, "--"])
            .arg(format!("-max_total_time={}", options.seconds))
            .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
            .arg("-print_final_stats=1")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("could not start cargo fuzz run {target}"))?;
        let mut log = String::from_utf8_lossy(&output.stdout).into_owned();
        log.push_str(&String::from_utf8_lossy(&output.stderr));
        let log_file = logs.join(format!("{target}.log"));
        fs::write(&log_file, &log).with_context(|| format!("write {}", log_file.display()))?;
        let mut report = read_report(&log);
        if !output.status.success() && report.error.is_none() {
            report.error = Some(format!("cargo fuzz run exited with {}", output.status));
        }
        rows.push((target.clone(), report));
    }

    println!("\n{:<16} {:>14}  finding", "target", "executions");
    let mut failed = false;
    for (target, report) in &rows {
        let runs = report
            .executions
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        let finding = match (&report.error, &report.artifact) {
            (None, None) => "none".to_owned(),
            (error, artifact) => {
                failed = true;
                format!(
                    "{} {}",
                    error.as_deref().unwrap_or("crash"),
                    artifact.as_deref().unwrap_or("")
                )
            }
        };
        println!("{target:<16} {runs:>14}  {finding}");
    }
    Ok(if failed {
        println!("\nreproduce with: RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact>");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `cargo fuzz` in the repository root (it finds `fuzz/` there), allowed nightly
/// features on a stable toolchain.
fn fuzz_cmd(repo: &Repo) -> std::process::Command {
    let mut cmd = repo.cmd("cargo");
    cmd.arg("fuzz").env("RUSTC_BOOTSTRAP", "1");
    cmd
}

fn ensure_cargo_fuzz(repo: &Repo) -> Result<()> {
    if let Some(version) = repo.probe(repo.cmd("cargo").args(["fuzz", "--version"])) {
        println!("{version} ok");
        return Ok(());
    }
    repo.run(
        repo.cmd("cargo")
            .args(["install", "cargo-fuzz", "--locked"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments() {
        assert_eq!(
            parse_args(&[]).expect("no arguments"),
            Options {
                seconds: DEFAULT_SECONDS,
                target: None
            }
        );
        assert_eq!(
            parse_args(&strings(&["--target", "sasl", "--seconds", "5"])).expect("both"),
            Options {
                seconds: 5,
                target: Some("sasl".into())
            }
        );
        assert!(parse_args(&strings(&["--seconds", "0"])).is_err());
        assert!(parse_args(&strings(&["--seconds"])).is_err());
        assert!(parse_args(&strings(&["sasl"])).is_err());
    }

    #[test]
    fn reads_executions_and_crashes_from_libfuzzer_output() {
        let clean = "#1024\tpulse  cov: 10\nDone 123456 runs in 61 second(s)\n\
                     stat::number_of_executed_units: 123457\n";
        assert_eq!(
            read_report(clean),
            Report {
                executions: Some(123457),
                artifact: None,
                error: None
            }
        );
        let crashed = "thread '<unnamed>' panicked at src/x.rs:1:2:\nboom\n\
                       ==12== ERROR: libFuzzer: deadly signal\n\
                       artifact_prefix='a/'; Test unit written to fuzz/artifacts/sasl/crash-abc\n\
                       stat::number_of_executed_units: 77\n";
        let report = read_report(crashed);
        assert_eq!(report.executions, Some(77));
        assert_eq!(
            report.artifact.as_deref(),
            Some("fuzz/artifacts/sasl/crash-abc")
        );
        assert!(report.error.is_some_and(|e| e.contains("panicked at")));
    }
}
