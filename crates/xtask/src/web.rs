//! The web app's release build, the one `cargo xtask run` serves, the browser tests
//! load and `cargo xtask web` reports, and its size budget: at most 300 KB gzipped for
//! the whole app.
//!
//! The build is `trunk build --release` (Trunk.toml, the `release-web` profile and the
//! wasm-opt options in web/index.html) with the standard library rebuilt for the module
//! with `panic = "immediate-abort"`: a panic becomes a trap, so the panic messages,
//! their locations and most of `core::fmt` are not in the module (about 24 KB of its
//! gzipped size). `{:?}` prints nothing and a `#[track_caller]` location names no file
//! (`-Zfmt-debug=none -Zlocation-detail=none`, 3 KB more): the app shows no Debug
//! output to its reader. These are unstable options; `RUSTC_BOOTSTRAP=1` allows them on
//! the stable toolchain, whose `rust-src` component holds the library's source. They are
//! set for the WebAssembly target only, so the host crates (build scripts, proc macros)
//! build as usual. A plain `trunk build --release` still works, without them (bigger).

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::sh::Repo;

/// Issues #4 and #5: the whole app, gzipped (`gzip -9`), in bytes.
pub const BUDGET_GZIP: u64 = 300_000;

/// Where trunk writes the app (Trunk.toml's `dist`).
const DIST: &str = "web/dist";

/// Files in the dist folder a browser never loads: the embedding example page is
/// documentation (its loader, `embed/popgate-embed.js`, counts).
const NOT_LOADED: &[&str] = &["embed/example.html"];

/// `trunk build --release` with the size settings.
pub fn build_release(repo: &Repo) -> Result<()> {
    let mut cmd = repo.cmd("trunk");
    cmd.args(["build", "--release"])
        .env("TRUNK_SKIP_VERSION_CHECK", "true");
    size_settings(&mut cmd);
    repo.run(&mut cmd)
}

/// The environment that rebuilds the standard library with immediate-abort panics for
/// wasm32 (see the module comment). RUSTFLAGS would replace the target's flags, so the
/// caller's are not passed on.
fn size_settings(cmd: &mut Command) {
    cmd.env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_UNSTABLE_BUILD_STD", "std,panic_abort")
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
            "-Zunstable-options -Cpanic=immediate-abort -Zfmt-debug=none -Zlocation-detail=none",
        )
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
}

/// One file of the built app.
#[derive(Debug, PartialEq, Eq)]
struct Sized {
    /// Relative to the dist folder, `/`-separated.
    name: String,
    raw: u64,
    gzip: u64,
}

/// Prints every file's raw and gzipped size and the total, and fails when the total
/// gzipped size is over [`BUDGET_GZIP`].
pub fn check_budget(repo: &Repo) -> Result<()> {
    let dist = repo.root.join(DIST);
    let mut files = Vec::new();
    collect(&dist, &mut files)?;
    if !files
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "wasm"))
    {
        bail!("{DIST} holds no .wasm: build the app first (cargo xtask web)");
    }
    let mut sized = Vec::new();
    for path in files {
        let name = relative(&dist, &path);
        if NOT_LOADED.contains(&name.as_str()) {
            continue;
        }
        let raw = fs::metadata(&path)
            .with_context(|| format!("could not read {}", path.display()))?
            .len();
        let gzip = gzip_size(repo, &path)?;
        sized.push(Sized { name, raw, gzip });
    }
    sized.sort_by_key(|f| std::cmp::Reverse(f.gzip));
    print!("{}", table(&sized));
    let total: u64 = sized.iter().map(|f| f.gzip).sum();
    if total > BUDGET_GZIP {
        bail!(
            "the web app is {total} B gzipped, over its budget of {BUDGET_GZIP} B \
             (README: The web app's size)"
        );
    }
    Ok(())
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("could not list {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn relative(dist: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(dist).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// `gzip -9` of the file, counted (gzip is on every system that runs the tests).
fn gzip_size(repo: &Repo, path: &Path) -> Result<u64> {
    let mut child = repo
        .cmd("gzip")
        .args(["-9", "-c", "-n"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("could not start gzip")?;
    let mut count = 0u64;
    let mut buf = [0u8; 64 * 1024];
    if let Some(mut stdout) = child.stdout.take() {
        loop {
            let n = stdout
                .read(&mut buf)
                .context("could not read gzip's output")?;
            if n == 0 {
                break;
            }
            count += n as u64;
        }
    }
    let status = child.wait().context("gzip did not finish")?;
    if !status.success() {
        bail!("gzip -9 {} failed ({status})", path.display());
    }
    Ok(count)
}

fn table(files: &[Sized]) -> String {
    let width = files.iter().map(|f| f.name.len()).max().unwrap_or(0).max(5);
    let mut out = format!("{:<width$} {:>9} {:>9}\n", "file", "raw B", "gzip B");
    for f in files {
        out += &format!("{:<width$} {:>9} {:>9}\n", f.name, f.raw, f.gzip);
    }
    let raw: u64 = files.iter().map(|f| f.raw).sum();
    let gzip: u64 = files.iter().map(|f| f.gzip).sum();
    out += &format!("{:<width$} {raw:>9} {gzip:>9}\n", "total");
    out += &format!(
        "budget: {gzip} of {BUDGET_GZIP} B gzipped ({:.1}%)\n",
        gzip as f64 * 100.0 / BUDGET_GZIP as f64
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_each_file_the_total_and_the_budget() {
        let files = [
            Sized {
                name: "app_bg.wasm".into(),
                raw: 700_000,
                gzip: 280_000,
            },
            Sized {
                name: "index.html".into(),
                raw: 1_600,
                gzip: 900,
            },
        ];
        let shown = table(&files);
        assert!(
            shown.contains("app_bg.wasm    700000    280000\n"),
            "{shown}"
        );
        assert!(
            shown.contains("total          701600    280900\n"),
            "{shown}"
        );
        assert!(
            shown.contains("budget: 280900 of 300000 B gzipped (93.6%)"),
            "{shown}"
        );
    }

    #[test]
    fn names_are_relative_and_slash_separated() {
        let dist = Path::new("/x/web/dist");
        assert_eq!(
            relative(dist, &dist.join("embed").join("example.html")),
            "embed/example.html"
        );
        assert_eq!(relative(dist, &dist.join("index.html")), "index.html");
    }
}
