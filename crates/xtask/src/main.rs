//! `cargo xtask`: the developer and CI entry points of popgate.
//!
//! * `sh`: the repository root, the PATH every child process gets, running a command
//!   with inherited stdio and naming it when it fails.
//! * `tools`: idempotent installs of the pinned tools (trunk, wasm-bindgen-cli, binaryen,
//!   the wasm32 target) and of the client programs the end-to-end tests drive.
//! * `serve`: `cargo xtask run`, which builds everything and runs the demo server.
//! * `check`: `cargo xtask test`, the CI pipeline.
//! * `bench`: `cargo xtask bench`, popgate side by side with Postfix + Dovecot.
//! * `fuzz`: `cargo xtask fuzz`, the libFuzzer targets in `fuzz/` for a bounded time.
//! * `web`: the web app's release build and its size budget (`cargo xtask web`).

mod bench;
mod check;
mod fuzz;
mod serve;
mod sh;
mod tools;
mod web;

use std::process::ExitCode;

use sh::Repo;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  run [-- ARGS]   build the web app and the server (release), run `popgate serve ARGS`
                  from the repository root and print the ports and demo users;
                  Ctrl-C stops it
  test            formatting, clippy (host and wasm32), the web app's release build
                  and size budget, unit and end-to-end tests, core tests on wasm32
                  under node
  web             build the web app as released (web/dist) and print its size
                  against the budget (300 KB gzipped); fails over it
  bench [--smoke] [--peers] [--only N] [--report FILE]
                  workloads against popgate and, with --peers, Postfix + Dovecot;
                  a table on stdout and FILE.md / FILE.json (default target/bench/report)
  fuzz [--seconds N] [--target T]
                  each fuzz target in fuzz/ (or T) under libFuzzer for N seconds
                  (default 60); executions and findings; fails on a crash
  setup           install the pinned tools only (trunk, wasm-bindgen-cli, binaryen)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let outcome = match command.as_str() {
        "run" => Repo::locate().and_then(|repo| serve::run(&repo, serve_args(rest))),
        "test" if rest.is_empty() => Repo::locate().and_then(|repo| check::run(&repo)),
        "bench" => Repo::locate().and_then(|repo| bench::run(&repo, rest)),
        "fuzz" => Repo::locate().and_then(|repo| fuzz::run(&repo, rest)),
        "web" if rest.is_empty() => Repo::locate().and_then(|repo| {
            tools::ensure_build_tools(&repo)?;
            web::build_release(&repo)?;
            web::check_budget(&repo)?;
            Ok(ExitCode::SUCCESS)
        }),
        "setup" if rest.is_empty() => Repo::locate()
            .and_then(|repo| tools::ensure_build_tools(&repo))
            .map(|()| ExitCode::SUCCESS),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprintln!("unknown command: {}", args.join(" "));
            eprint!("{USAGE}");
            Ok(ExitCode::from(2))
        }
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask run -- --config x.toml` reaches us as `run -- --config x.toml`: the `--`
/// only separates our arguments from popgate's.
fn serve_args(rest: &[String]) -> &[String] {
    match rest.split_first() {
        Some((first, tail)) if first == "--" => tail,
        _ => rest,
    }
}

#[cfg(test)]
mod tests {
    use super::serve_args;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_leading_double_dash_is_dropped_once() {
        assert_eq!(
            serve_args(&strings(&["--", "--config", "a.toml"])),
            strings(&["--config", "a.toml"])
        );
        assert_eq!(
            serve_args(&strings(&["--config", "a.toml"])),
            strings(&["--config", "a.toml"])
        );
        assert_eq!(serve_args(&strings(&["--", "--"])), strings(&["--"]));
        assert!(serve_args(&[]).is_empty());
    }
}
