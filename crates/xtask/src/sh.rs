//! Running commands: every child gets the repository root as its folder and a PATH that
//! holds the tools we install, and a command that fails is named in the error.

use std::{
    env,
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

/// The repository and the environment children run in.
#[derive(Debug)]
pub struct Repo {
    pub root: PathBuf,
    /// `PATH` for children: `.tools/node_modules/.bin` (binaryen from npm), cargo's `bin`
    /// (trunk, wasm-bindgen), then the caller's PATH.
    path: OsString,
}

impl Repo {
    pub fn locate() -> Result<Self> {
        // This crate lives at <root>/crates/xtask.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .context("xtask is not inside the popgate repository")?
            .to_path_buf();
        let mut dirs = vec![root.join(".tools").join("node_modules").join(".bin")];
        if let Some(cargo_home) = cargo_home() {
            dirs.push(cargo_home.join("bin"));
        }
        if let Some(inherited) = env::var_os("PATH") {
            dirs.extend(env::split_paths(&inherited));
        }
        let path = env::join_paths(dirs).context("a PATH entry contains a separator")?;
        Ok(Self { root, path })
    }

    /// A command that runs in the repository root with our PATH. (When PATH is set on a
    /// `Command`, std looks the program up in that PATH.)
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root).env("PATH", &self.path);
        cmd
    }

    /// Runs `cmd` with inherited stdio; an error names the command.
    pub fn run(&self, cmd: &mut Command) -> Result<()> {
        let shown = display(cmd);
        println!("$ {shown}");
        let status = cmd
            .status()
            .with_context(|| format!("could not start `{shown}`"))?;
        if !status.success() {
            bail!("`{shown}` failed ({status})");
        }
        Ok(())
    }

    /// The trimmed stdout of a command that succeeds, or `None` (not installed, failed).
    /// Used for version probes, so stderr is discarded.
    pub fn probe(&self, cmd: &mut Command) -> Option<String> {
        let output = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !output.status.success() {
            return None;
        }
        Some(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Whether `program` is an executable file in one of our PATH folders.
    pub fn has_program(&self, program: &str) -> bool {
        env::split_paths(&self.path).any(|dir| is_executable(&dir.join(program)))
    }

    /// Cargo's output folder: `CARGO_TARGET_DIR` when set (relative to the root), else
    /// `<root>/target`.
    pub fn target_dir(&self) -> PathBuf {
        match env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => self.root.join(dir),
            None => self.root.join("target"),
        }
    }
}

fn cargo_home() -> Option<PathBuf> {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file() || path.with_extension("exe").is_file()
}

/// `program arg arg` as a reader would type it.
pub fn display(cmd: &Command) -> String {
    let mut shown = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        shown.push(' ');
        shown.push_str(&arg.to_string_lossy());
    }
    shown
}
