//! The `popgate` command line as users and scripts see it: the real binary, real
//! files, exit codes and messages.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A config file in a fresh folder, with data in `<folder>/data`.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("popgate.toml");
        std::fs::write(
            &config,
            "domains = [\"example.test\", \"second.test\"]\ndata_dir = \"data\"\n[listen]\npop3 = \"127.0.0.1:0\"\n",
        )
        .expect("write config");
        Setup { dir, config }
    }

    fn users_file(&self) -> PathBuf {
        self.dir.path().join("data").join("users")
    }

    /// Run `popgate <args> --config <file>` with `stdin`.
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        let config = self.config.to_str().expect("utf-8 temp path");
        all.extend(["--config", config]);
        popgate(&all, stdin, self.dir.path())
    }
}

fn popgate(args: &[&str], stdin: &str, cwd: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_popgate"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn popgate");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait popgate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn user_add_list_remove() {
    let s = Setup::new();
    // C: popgate user add taro --password-stdin   (a bare name: the first domain)
    let o = s.run(&["user", "add", "Taro", "--password-stdin"], "secret pw\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "added taro@example.test\n");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.users_file())
            .expect("users file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(s.users_file()).expect("read users");
    assert!(
        text.starts_with("taro@example.test:{ARGON2ID}$argon2id$"),
        "{text}"
    );
    assert!(!text.contains("secret pw"));

    // Without --password-stdin a password is generated and printed once.
    let o = s.run(&["user", "add", "hanako@second.test"], "");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("generated password printed");
    assert_eq!(password.len(), 16);

    let o = s.run(&["user", "list"], "");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "taro@example.test ARGON2ID\nhanako@second.test ARGON2ID\n"
    );

    // Adding twice is an error, exit 1.
    let o = s.run(
        &["user", "add", "taro@example.test", "--password-stdin"],
        "x\n",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("popgate: error: ") && stderr(&o).contains("already exists"),
        "{}",
        stderr(&o)
    );

    // Not a local domain.
    let o = s.run(&["user", "add", "x@elsewhere.test"], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not at a local domain"),
        "{}",
        stderr(&o)
    );

    let o = s.run(&["user", "passwd", "taro", "--password-stdin"], "new pw\n");
    assert!(o.status.success(), "{}", stderr(&o));

    let o = s.run(&["user", "remove", "TARO@example.test"], "");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "removed taro@example.test\n");
    let o = s.run(&["user", "list"], "");
    assert_eq!(stdout(&o), "hanako@second.test ARGON2ID\n");
    let o = s.run(&["user", "remove", "taro"], "");
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn check_config_good_and_bad() {
    let s = Setup::new();
    // --config before the subcommand works too.
    let config = s.config.to_str().expect("utf-8 temp path");
    let o = popgate(&["--config", config, "check-config"], "", s.dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with(&format!("config ok: {config}\n")), "{out}");
    assert!(out.contains("listeners: pop3 127.0.0.1:0"), "{out}");

    std::fs::write(
        &s.config,
        "domains = [\"example.test\"]\n\n[grant]\nttl = \"30m\"\nttl_jitter = \"1m\"\n",
    )
    .expect("write");
    let o = s.run(&["check-config"], "");
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.starts_with("popgate: error: "), "{err}");
    for needle in [
        "popgate.toml",
        "grant.ttl_jitter",
        "line 5",
        "unknown field",
    ] {
        assert!(err.contains(needle), "{err} lacks {needle}");
    }

    let o = popgate(
        &["check-config", "--config", "missing.toml"],
        "",
        s.dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.toml"), "{}", stderr(&o));
}

#[test]
fn usage_errors_and_unavailable_commands_exit_2() {
    let s = Setup::new();
    let o = s.run(&["frobnicate"], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("popgate: error:"), "{}", stderr(&o));

    // `grant` talks to the running server's HTTP API; this config starts none.
    let o = s.run(&["grant", "list"], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no HTTP listener"), "{}", stderr(&o));

    // `queue retry` works now: a missing entry is an ordinary error.
    let o = s.run(&["queue", "retry", "1"], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no queued message 1"), "{}", stderr(&o));
}

#[test]
fn queue_list_show_delete() {
    let s = Setup::new();
    let o = s.run(&["queue", "list"], "");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");

    let queue = popgate_server::queue::Queue::open(s.dir.path().join("data").join("queue"))
        .expect("open queue");
    let id = queue
        .enqueue(
            "19CCB4B2D38.7.1",
            "taro@example.test",
            &["friend@remote.test".to_owned()],
            b"Subject: hi\r\n\r\nhello\r\n",
        )
        .expect("enqueue");

    let o = s.run(&["queue", "list"], "");
    let out = stdout(&o);
    assert!(out.starts_with(&id), "{out}");
    assert!(
        out.contains("<taro@example.test> -> friend@remote.test"),
        "{out}"
    );

    let o = s.run(&["queue", "show", &id], "");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).ends_with("\n\nSubject: hi\r\n\r\nhello\r\n"),
        "{}",
        stdout(&o)
    );

    let mut e = queue.entry(&id).expect("entry").expect("queued");
    e.next_attempt_at_unix_ms = u64::MAX;
    assert!(queue.update(&e).expect("update"));
    let o = s.run(&["queue", "retry", &id], "");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        queue
            .entry(&id)
            .expect("entry")
            .map(|e| e.next_attempt_at_unix_ms),
        Some(0),
        "due now"
    );

    let o = s.run(&["queue", "delete", &id], "");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = s.run(&["queue", "show", &id], "");
    assert_eq!(o.status.code(), Some(1));
    let o = s.run(&["queue", "show", "../../etc/passwd"], "");
    assert_eq!(o.status.code(), Some(1));
}
