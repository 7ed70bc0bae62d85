//! Headless Chromium driven over WebDriver (chromedriver, through fantoccini), for the
//! tests that watch the web app: the live dashboard served by `popgate serve` and the
//! explainer served by a plain static file server.
//!
//! * [`Browser`]: a chromedriver on a free loopback port, one Chromium session with a
//!   fresh profile, and a blocking API over it so the browser tests read like the rest
//!   of the suite. Dropping it ends the session and kills chromedriver by its pid.
//! * [`Browser::wait`]: the one way to wait for the page. A JavaScript expression is
//!   checked inside the page whenever the DOM changes and on every animation frame,
//!   until it is truthy (its value is returned) or [`WAIT_DEADLINE`] passes (the test
//!   fails with a screenshot). Nothing sleeps.
//! * [`StaticServer`]: `python3 -m http.server` over a folder, for pages that need no
//!   backend.
//! * [`web_dist`]: the trunk-built app, or a failure that says how to build it.
//!
//! Screenshots go to `<target>/browser-screenshots/<test>-<label>.png` and each path is
//! printed, so a failed run shows what the browser saw.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// How long one [`Browser::wait`] may take: the app's first load (a few MB of debug
/// wasm) included. A failure guard, never a way to wait.
pub const WAIT_DEADLINE: Duration = Duration::from_secs(30);
/// How long chromedriver or the static server may take to report its port.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Where Debian's `chromium` package puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";

/// The workspace root (tests/ sits in it).
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
}

/// The trunk-built web app (`web/dist`), which must exist: `cargo xtask test` builds it
/// before the tests run.
pub fn web_dist() -> PathBuf {
    let dist = workspace().join("web").join("dist");
    assert!(
        dist.join("index.html").is_file() && dist.join("embed").join("example.html").is_file(),
        "the web app is not built ({} has no index.html or embed/example.html): run \
         `cargo xtask test` (it builds the app before the tests), or `trunk build` from the \
         repository root with the pinned tools (`cargo xtask setup`) on PATH",
        dist.display()
    );
    dist
}

/// `<target>/browser-screenshots`, created on first use.
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let dir = target.join("browser-screenshots");
    fs::create_dir_all(&dir).expect("create the screenshot folder");
    dir
}

/// A free loopback port for a program that takes its port on the command line (the
/// port is released just before the program binds it: a test machine's ephemeral
/// range makes a collision in that moment unlikely, and it fails loudly if it happens).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A child process that is killed (by its pid) and reaped when dropped, and whose
/// stdout lines arrive on a channel.
#[derive(Debug)]
struct Process {
    child: Child,
    what: &'static str,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Process {
    fn spawn(what: &'static str, cmd: &mut Command) -> Process {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        // Reads for ever, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Process {
            child,
            what,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait for the stdout line that says the program is listening.
    fn wait_line(&mut self, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            match self
                .lines
                .recv_timeout(START_DEADLINE.saturating_sub(start.elapsed()))
            {
                Ok(line) if ready(&line) => return line,
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{} did not report its port within {START_DEADLINE:?}; stdout: {:?}",
                    self.what, self.seen
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{} exited before reporting its port ({:?}); stdout: {:?}",
                    self.what,
                    self.child.wait(),
                    self.seen
                ),
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // `Child::kill` signals this child's pid only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `python3 -m http.server` serving one folder on a free loopback port: a plain static
/// host, as a documentation site would be. Stopped when dropped.
#[derive(Debug)]
pub struct StaticServer {
    _process: Process,
    /// `http://127.0.0.1:<port>/`.
    pub url: String,
}

impl StaticServer {
    pub fn start(root: &Path) -> StaticServer {
        // Port 0: the server binds a free port and prints it. `-u`: unbuffered, so the
        // line arrives now and not when the pipe's buffer fills.
        let mut process = Process::spawn(
            "python3 -m http.server",
            Command::new("python3")
                .args([
                    "-u",
                    "-m",
                    "http.server",
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                ])
                .arg(root)
                .arg("0"),
        );
        // `Serving HTTP on 127.0.0.1 port 38303 (http://127.0.0.1:38303/) ...`
        let line = process.wait_line(|l| l.starts_with("Serving HTTP on "));
        let url = line
            .split_once('(')
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(url, _)| url.to_string())
            .unwrap_or_else(|| panic!("no URL in http.server's line {line:?}"));
        StaticServer {
            _process: process,
            url,
        }
    }
}

/// A Chromium session through chromedriver, with a blocking API.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    /// Names the screenshots (`<name>-<label>.png`).
    name: String,
    // Dropped after the session is closed (fields drop in declaration order, and
    // `Drop::drop` closes the session before any of them).
    _driver: Process,
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("name", &self.name).finish()
    }
}

impl Browser {
    /// Start chromedriver and a headless Chromium with a fresh profile; `name` (the
    /// test's) prefixes its screenshots.
    pub fn start(name: &str) -> Browser {
        for (program, package) in [("chromedriver", "chromium-driver"), (CHROMIUM, "chromium")] {
            let found = Command::new(program)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok();
            assert!(
                found,
                "{program} is missing: the browser tests need Debian's `{package}` package \
                 (`sudo apt-get install -y chromium chromium-driver`; `cargo xtask test` \
                 installs it when run as root)"
            );
        }
        let port = free_port();
        let mut driver = Process::spawn(
            "chromedriver",
            Command::new("chromedriver").arg(format!("--port={port}")),
        );
        let ready = format!("ChromeDriver was started successfully on port {port}");
        driver.wait_line(|l| l.starts_with(&ready));

        let profile = tempfile::tempdir().expect("a fresh browser profile folder");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    // Root in a container has no user namespace for the sandbox.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    // Nothing but the page under test may reach the network.
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", profile.path().display()),
                    "--window-size=1280,900",
                ],
            }),
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime for the WebDriver client");
        let client = rt
            .block_on(
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .unwrap_or_else(|e| panic!("cannot start a Chromium session: {e}"));
        // The script timeout is the deadline of every `wait` (an async script).
        rt.block_on(
            client.update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
                Some(WAIT_DEADLINE),
                Some(WAIT_DEADLINE),
                Some(Duration::ZERO),
            )),
        )
        .unwrap_or_else(|e| panic!("cannot set the WebDriver timeouts: {e}"));
        Browser {
            rt,
            client: Some(client),
            name: name.to_string(),
            _driver: driver,
            _profile: profile,
        }
    }

    fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the session is open until drop")
    }

    /// Open `url` in the current tab (and leave any frame).
    pub fn goto(&self, url: &str) {
        self.rt
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// The page's URL (the top-level document's).
    pub fn url(&self) -> String {
        self.rt
            .block_on(self.client().current_url())
            .map(|u| u.to_string())
            .unwrap_or_else(|e| panic!("cannot read the URL: {e}"))
    }

    /// Wait until the JavaScript expression `expr` is truthy in the current frame's
    /// document, and return its value (JSON). `what` names the condition in the failure
    /// message. The expression may use the helpers of [`WAIT_PRELUDE`]: `q(css)`,
    /// `qa(css)`, `attrs(element)`, `text(element)`.
    ///
    /// The page checks the expression itself: whenever the DOM changes (a
    /// MutationObserver) and on every animation frame (what an observer cannot see,
    /// such as a shadow root). The script's WebDriver timeout is the deadline.
    pub fn wait(&self, what: &str, expr: &str) -> Value {
        let script = format!(
            r#"{WAIT_PRELUDE}
const done = arguments[arguments.length - 1];
window.__popgateWaitError = null;
const check = () => {{
    try {{
        const v = ({expr});
        return (v === undefined || v === null || v === false || v === "") ? null : v;
    }} catch (e) {{
        window.__popgateWaitError = String(e);
        return null;
    }}
}};
let finished = false;
let observer = null;
const finish = (v) => {{
    if (finished) return;
    finished = true;
    if (observer) observer.disconnect();
    done(v);
}};
const again = () => {{ if (!finished) {{ const v = check(); if (v !== null) finish(v); }} }};
const first = check();
if (first !== null) {{
    finish(first);
}} else {{
    observer = new MutationObserver(again);
    observer.observe(document, {{ subtree: true, childList: true, attributes: true, characterData: true }});
    const frame = () => {{ again(); if (!finished) requestAnimationFrame(frame); }};
    requestAnimationFrame(frame);
}}
"#
        );
        match self
            .rt
            .block_on(self.client().execute_async(&script, Vec::new()))
        {
            Ok(value) => value,
            Err(e) => {
                let js_error = self
                    .rt
                    .block_on(
                        self.client()
                            .execute("return window.__popgateWaitError;", Vec::new()),
                    )
                    .ok()
                    .filter(|v| !v.is_null());
                let shot = self.save_screenshot("failure");
                panic!(
                    "waited {WAIT_DEADLINE:?} for {what}: {e}\n  expression: {expr}\n  \
                     last JavaScript error in it: {js_error:?}\n  screenshot: {}",
                    shot.display()
                )
            }
        }
    }

    /// Evaluate `expr` once (with the [`WAIT_PRELUDE`] helpers) and return its value.
    pub fn eval(&self, expr: &str) -> Value {
        let script = format!("{WAIT_PRELUDE}\nreturn ({expr});");
        self.rt
            .block_on(self.client().execute(&script, Vec::new()))
            .unwrap_or_else(|e| panic!("cannot evaluate {expr}: {e}"))
    }

    /// Click the first element matching `css` (it must exist: [`Browser::wait`] first).
    pub fn click(&self, css: &str) {
        self.rt
            .block_on(async { self.client().find(Locator::Css(css)).await?.click().await })
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// Choose the option with `value` in the `<select>` matching `css`.
    pub fn select_value(&self, css: &str, value: &str) {
        self.rt
            .block_on(async {
                self.client()
                    .find(Locator::Css(css))
                    .await?
                    .select_by_value(value)
                    .await
            })
            .unwrap_or_else(|e| panic!("cannot choose {value:?} in {css}: {e}"));
    }

    /// Switch into the `<iframe>` matching `css`.
    pub fn enter_frame(&self, css: &str) {
        self.rt
            .block_on(async {
                self.client()
                    .find(Locator::Css(css))
                    .await?
                    .enter_frame()
                    .await
            })
            .unwrap_or_else(|e| panic!("cannot enter the frame {css}: {e}"));
    }

    /// Back to the top-level document.
    pub fn leave_frames(&self) {
        // WebDriver §10.3: switching to frame `null` selects the top-level context.
        self.rt
            .block_on(async {
                loop {
                    let top: Value = self
                        .client()
                        .execute("return window === window.top;", Vec::new())
                        .await?;
                    if top == Value::Bool(true) {
                        return Ok(());
                    }
                    self.client().enter_parent_frame().await?;
                }
            })
            .unwrap_or_else(|e: fantoccini::error::CmdError| {
                panic!("cannot leave the frames: {e}")
            });
    }

    /// Save what the window shows (the whole viewport, whichever frame is current) to
    /// `<target>/browser-screenshots/<name>-<label>.png`, print the path, and return
    /// it. Finite CSS animations of the current frame (a step fading in) end first, so
    /// the picture shows the settled page.
    pub fn screenshot(&self, label: &str) -> PathBuf {
        self.wait(
            "the page's animations to end before a screenshot",
            "document.getAnimations().every((a) => a.playState !== 'running' \
                || a.effect.getComputedTiming().iterations === Infinity)",
        );
        self.save_screenshot(label)
    }

    fn save_screenshot(&self, label: &str) -> PathBuf {
        let path = screenshot_dir().join(format!("{}-{label}.png", self.name));
        match self.rt.block_on(self.client().screenshot()) {
            Ok(png) => {
                fs::write(&path, png).expect("write the screenshot");
                println!("screenshot: {}", path.display());
            }
            Err(e) => println!("no screenshot {}: {e}", path.display()),
        }
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session makes chromedriver quit Chromium; then the driver process
        // itself is killed by pid when `_driver` drops.
        if let Some(client) = self.client.take() {
            let _ = self.rt.block_on(client.close());
        }
    }
}

/// Helpers every [`Browser::wait`] and [`Browser::eval`] expression can use.
pub const WAIT_PRELUDE: &str = r#"
const q = (css, root) => (root || document).querySelector(css);
const qa = (css, root) => Array.from((root || document).querySelectorAll(css));
const attrs = (el) => el ? Object.fromEntries(Array.from(el.attributes).map((a) => [a.name, a.value])) : null;
const text = (el) => el ? el.textContent : null;
"#;

/// `value` as a JavaScript string literal, for building [`Browser::wait`] expressions.
pub fn js(value: &str) -> String {
    Value::String(value.to_string()).to_string()
}
