//! `cargo xtask test`: everything CI checks, in the order that fails cheapest first.
//!
//! Each step stops at its first failing command and names it; the run goes on with the
//! next step, so one report shows every problem. The last line is the summary
//! `N passed, N failed` and the exit code is non-zero when any step failed.

use std::process::ExitCode;

use anyhow::Result;

use crate::{bench, sh::Repo, tools, web};

pub fn run(repo: &Repo) -> Result<ExitCode> {
    // Without the tools no step means anything: a failure here ends the run at once.
    tools::ensure_build_tools(repo)?;
    tools::ensure_node(repo)?;
    tools::ensure_client_programs(repo)?;

    let wasm = tools::WASM_TARGET;
    let cargo = |args: &[&str]| {
        let mut cmd = repo.cmd("cargo");
        cmd.args(args);
        cmd
    };
    let mut steps = Steps::default();
    steps.run("fmt", || repo.run(&mut cargo(&["fmt", "--all", "--check"])));
    steps.run("clippy", || {
        repo.run(&mut cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    });
    steps.run("clippy wasm32", || {
        repo.run(&mut cargo(&[
            "clippy",
            "-p",
            "popgate-core",
            "-p",
            "popgate-web",
            "--target",
            wasm,
            "--",
            "-D",
            "warnings",
        ]))
    });
    // The end-to-end tests run this debug binary.
    steps.run("build popgate-server", || {
        repo.run(&mut cargo(&["build", "-p", "popgate-server"]))
    });
    // Not a timed test: a few seconds of every workload on the debug build, so the
    // benchmark cannot rot.
    steps.run("bench smoke", || {
        bench::run(repo, &["--smoke".to_string()]).map(|_| ())
    });
    // Before the tests: the browser tests load the built app (web/dist), the release
    // build as it ships, which must stay within its size budget.
    steps.run("trunk build --release", || web::build_release(repo));
    steps.run("web size budget", || web::check_budget(repo));
    // Every test binary runs even after one fails, so one run shows every failure.
    steps.run("test", || {
        repo.run(&mut cargo(&["test", "--workspace", "--no-fail-fast"]))
    });
    // The runner (wasm-bindgen-test-runner, under node) is set in .cargo/config.toml.
    steps.run("test wasm32", || {
        repo.run(&mut cargo(&[
            "test",
            "-p",
            "popgate-core",
            "--target",
            wasm,
        ]))
    });
    Ok(steps.finish())
}

#[derive(Debug, Default)]
struct Steps {
    passed: usize,
    failed: Vec<(&'static str, String)>,
}

impl Steps {
    fn run(&mut self, name: &'static str, step: impl FnOnce() -> Result<()>) {
        println!("\n==> {name}");
        match step() {
            Ok(()) => self.passed += 1,
            Err(error) => {
                eprintln!("error: {error:#}");
                self.failed.push((name, format!("{error:#}")));
            }
        }
    }

    fn finish(self) -> ExitCode {
        println!();
        for (name, error) in &self.failed {
            println!("FAILED {name}: {error}");
        }
        println!("{}", summary(self.passed, self.failed.len()));
        if self.failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

fn summary(passed: usize, failed: usize) -> String {
    format!("{passed} passed, {failed} failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_is_counted_and_the_next_still_runs() {
        let mut steps = Steps::default();
        steps.run("one", || Ok(()));
        steps.run("two", || anyhow::bail!("`false` failed (exit status: 1)"));
        let mut ran_after_failure = false;
        steps.run("three", || {
            ran_after_failure = true;
            Ok(())
        });
        assert!(ran_after_failure);
        assert_eq!(
            summary(steps.passed, steps.failed.len()),
            "2 passed, 1 failed"
        );
        assert_eq!(steps.failed[0].0, "two");
    }
}
