//! The tools popgate's build needs, installed only when the right version is missing, so
//! every command here is cheap to repeat (CI can cache `~/.cargo/bin` and `.tools/`).
//!
//! Why each one comes from where it does:
//! * trunk: `cargo install --locked`; 0.21 is the last series that builds with our rustc.
//! * wasm-bindgen-cli: must be exactly the wasm-bindgen version in Cargo.lock (trunk and
//!   the wasm test runner refuse anything else) and trunk cannot download it here.
//! * wasm-opt: trunk cannot download binaryen here and distribution packages are too old
//!   to read what rustc now emits; the npm package `binaryen` works, kept in `.tools/`.

use std::fs;

use anyhow::{Context, Result, bail};

use crate::sh::Repo;

pub const TRUNK_VERSION: &str = "0.21.14";
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Programs the end-to-end tests drive, with the Debian package that provides each.
const CLIENT_PROGRAMS: &[(&str, &str)] = &[
    ("curl", "curl"),
    ("swaks", "swaks"),
    ("fetchmail", "fetchmail"),
    ("python3", "python3"),
    // The syscall-order test of one delivery (tests/tests/syscall_order.rs).
    ("strace", "strace"),
    // The fail2ban filter in the README, checked against popgate's log lines
    // (tests/tests/adversarial_connections.rs).
    ("fail2ban-regex", "fail2ban"),
    // The browser tests drive headless Chromium through chromedriver.
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
    // Nodes sharing grants: the cluster tests start their own redis-server.
    ("redis-server", "redis-server"),
];

/// The mail servers the Postfix and Dovecot end-to-end test configures (files, since
/// Dovecot's protocol binaries are not on PATH), with the Debian package of each.
const MAIL_PEERS: &[(&str, &str)] = &[
    ("/usr/sbin/postfix", "postfix"),
    ("/usr/sbin/dovecot", "dovecot-core"),
    ("/usr/lib/dovecot/pop3", "dovecot-pop3d"),
    ("/usr/lib/dovecot/imap", "dovecot-imapd"),
];

/// The Rust target and components, trunk, wasm-bindgen-cli and wasm-opt.
pub fn ensure_build_tools(repo: &Repo) -> Result<()> {
    println!("==> tools");
    ensure_rust_parts(repo)?;
    ensure_trunk(repo)?;
    ensure_wasm_bindgen(repo)?;
    ensure_wasm_opt(repo)?;
    Ok(())
}

fn ensure_rust_parts(repo: &Repo) -> Result<()> {
    let Some(targets) = repo.probe(repo.cmd("rustup").args(["target", "list", "--installed"]))
    else {
        println!(
            "rustup not found: assuming the toolchain has {WASM_TARGET}, rustfmt, clippy and rust-src"
        );
        return Ok(());
    };
    if !targets.lines().any(|target| target.trim() == WASM_TARGET) {
        repo.run(repo.cmd("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    let components = repo
        .probe(
            repo.cmd("rustup")
                .args(["component", "list", "--installed"]),
        )
        .unwrap_or_default();
    // rust-src: the web app's release build rebuilds the standard library (crate::web).
    for component in ["rustfmt", "clippy", "rust-src"] {
        let installed = components
            .lines()
            .any(|line| line.trim() == component || line.starts_with(&format!("{component}-")));
        if !installed {
            repo.run(repo.cmd("rustup").args(["component", "add", component]))?;
        }
    }
    println!("rust: {WASM_TARGET}, rustfmt, clippy, rust-src ok");
    Ok(())
}

fn ensure_trunk(repo: &Repo) -> Result<()> {
    // `trunk --version` prints `trunk 0.21.14`.
    let found = repo.probe(repo.cmd("trunk").arg("--version"));
    if word(found.as_deref(), 1) == Some(TRUNK_VERSION) {
        println!("trunk {TRUNK_VERSION} ok");
        return Ok(());
    }
    println!(
        "installing trunk {TRUNK_VERSION} (found: {}); this takes minutes",
        shown(&found)
    );
    // --force: replaces another version, or a trunk binary cargo did not install.
    repo.run(repo.cmd("cargo").args([
        "install",
        "--locked",
        "--force",
        &format!("trunk@{TRUNK_VERSION}"),
    ]))
}

fn ensure_wasm_bindgen(repo: &Repo) -> Result<()> {
    let lock_path = repo.root.join("Cargo.lock");
    let lock = fs::read_to_string(&lock_path)
        .with_context(|| format!("could not read {}", lock_path.display()))?;
    let version = locked_version(&lock, "wasm-bindgen")
        .context("Cargo.lock names no wasm-bindgen version (is popgate-web a member?)")?;
    // `wasm-bindgen --version` prints `wasm-bindgen 0.2.130`; the test runner comes from
    // the same package, so a matching CLI means a matching runner.
    let found = repo.probe(repo.cmd("wasm-bindgen").arg("--version"));
    if word(found.as_deref(), 1) == Some(version) && repo.has_program("wasm-bindgen-test-runner") {
        println!("wasm-bindgen {version} ok");
        return Ok(());
    }
    println!(
        "installing wasm-bindgen-cli {version} (found: {})",
        shown(&found)
    );
    // No --locked: the CLI's own lock file names a crate version the registry no longer
    // has, while a fresh resolution builds.
    repo.run(repo.cmd("cargo").args([
        "install",
        "--force",
        "wasm-bindgen-cli",
        "--version",
        version,
    ]))
}

fn ensure_wasm_opt(repo: &Repo) -> Result<()> {
    let trunk_toml_path = repo.root.join("Trunk.toml");
    let trunk_toml = fs::read_to_string(&trunk_toml_path)
        .with_context(|| format!("could not read {}", trunk_toml_path.display()))?;
    let version = wasm_opt_version(&trunk_toml)
        .context("Trunk.toml has no `wasm_opt = \"version_N\"` under [tools]")?;
    // `wasm-opt --version` prints `wasm-opt version 132 (version_132)`: trunk compares the
    // third word, and so do we.
    let found = repo.probe(repo.cmd("wasm-opt").arg("--version"));
    if word(found.as_deref(), 2) == Some(version) {
        println!("wasm-opt {version} ok");
        return Ok(());
    }
    if !repo.has_program("npm") {
        bail!(
            "wasm-opt {version} is missing and npm, which installs it, is not on PATH: \
             install Node.js and npm (Debian: apt-get install -y nodejs npm)"
        );
    }
    println!(
        "installing binaryen {version} from npm into .tools/ (found: {})",
        shown(&found)
    );
    let tools = repo.root.join(".tools");
    fs::create_dir_all(&tools).with_context(|| format!("could not create {}", tools.display()))?;
    repo.run(repo.cmd("npm").args([
        "install",
        "--prefix",
        ".tools",
        "--no-audit",
        "--no-fund",
        &format!("binaryen@{version}"),
    ]))?;
    let found = repo.probe(repo.cmd("wasm-opt").arg("--version"));
    if word(found.as_deref(), 2) != Some(version) {
        bail!(
            "after the install, wasm-opt reports {}, not {version}",
            shown(&found)
        );
    }
    Ok(())
}

/// Node.js runs the core tests built for wasm32.
pub fn ensure_node(repo: &Repo) -> Result<()> {
    if repo.has_program("node") {
        return Ok(());
    }
    bail!(
        "node is not on PATH; the wasm32 tests run under it: install Node.js (Debian: apt-get install -y nodejs)"
    )
}

/// The real clients the end-to-end tests drive. As root they are installed with apt-get;
/// otherwise we say what is missing and carry on (the tests that need them will say so).
pub fn ensure_client_programs(repo: &Repo) -> Result<()> {
    let mut missing: Vec<(&str, &str)> = CLIENT_PROGRAMS
        .iter()
        .copied()
        .filter(|(program, _)| !repo.has_program(program))
        .collect();
    missing.extend(
        MAIL_PEERS
            .iter()
            .copied()
            .filter(|(file, _)| !std::path::Path::new(file).exists()),
    );
    if missing.is_empty() {
        println!(
            "clients: {} ok",
            names(CLIENT_PROGRAMS.iter().map(|(program, _)| *program))
        );
        return Ok(());
    }
    let programs = names(missing.iter().map(|(program, _)| *program));
    let packages = names(missing.iter().map(|(_, package)| *package));
    let is_root = repo.probe(repo.cmd("id").arg("-u")).as_deref() == Some("0");
    if !is_root || !repo.has_program("apt-get") {
        println!(
            "warning: missing {programs}, which the end-to-end tests drive; install them with \
             `sudo apt-get install -y {packages}` (or your system's equivalent)"
        );
        return Ok(());
    }
    println!("installing {packages} with apt-get");
    if missing.iter().any(|(_, package)| *package == "postfix") {
        // The test writes its own configuration: no site setup, no daemon on port 25.
        repo.run(repo.cmd("sh").args([
            "-c",
            "echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections",
        ]))?;
    }
    repo.run(
        repo.cmd("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    repo.run(
        repo.cmd("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(missing.iter().map(|(_, package)| *package))
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn names<'a>(list: impl Iterator<Item = &'a str>) -> String {
    list.collect::<Vec<_>>().join(" ")
}

fn shown(found: &Option<String>) -> &str {
    match found {
        Some(text) if !text.is_empty() => text,
        _ => "none",
    }
}

/// The `n`th whitespace-separated word of a version probe.
fn word(text: Option<&str>, n: usize) -> Option<&str> {
    text?.split_whitespace().nth(n)
}

/// The version Cargo.lock records for package `name` (the first entry of that name).
fn locked_version<'a>(lock: &'a str, name: &str) -> Option<&'a str> {
    let name_line = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == name_line {
            let version = lines.next()?.trim().strip_prefix("version = ")?;
            return version.strip_prefix('"')?.strip_suffix('"');
        }
    }
    None
}

/// `132` from Trunk.toml's `wasm_opt = "version_132"`.
fn wasm_opt_version(trunk_toml: &str) -> Option<&str> {
    trunk_toml.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        if key.trim() != "wasm_opt" {
            return None;
        }
        value.trim().strip_prefix("\"version_")?.strip_suffix('"')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_probe_words() {
        assert_eq!(word(Some("trunk 0.21.14"), 1), Some("0.21.14"));
        assert_eq!(
            word(Some("wasm-opt version 132 (version_132)"), 2),
            Some("132")
        );
        assert_eq!(word(Some("trunk"), 1), None);
        assert_eq!(word(None, 0), None);
    }

    #[test]
    fn the_locked_version_is_the_line_after_the_exact_name() {
        let lock = "\
[[package]]
name = \"wasm-bindgen-backend\"
version = \"0.2.99\"

[[package]]
name = \"wasm-bindgen\"
version = \"0.2.130\"
source = \"registry+https://github.com/rust-lang/crates.io-index\"
";
        assert_eq!(locked_version(lock, "wasm-bindgen"), Some("0.2.130"));
        assert_eq!(locked_version(lock, "wasm-bindgen-backend"), Some("0.2.99"));
        assert_eq!(locked_version(lock, "yew"), None);
    }

    #[test]
    fn the_wasm_opt_version_comes_from_trunk_toml() {
        let trunk_toml =
            "[build]\ntarget = \"web/index.html\"\n\n[tools]\nwasm_opt = \"version_132\"\n";
        assert_eq!(wasm_opt_version(trunk_toml), Some("132"));
        assert_eq!(
            wasm_opt_version("[tools]\n# wasm_opt = \"version_1\"\n"),
            None
        );
        assert_eq!(wasm_opt_version("[tools]\nwasm_opt = \"latest\"\n"), None);
    }
}
