//! The dashboard's HTTP API, event WebSocket, metrics and the `popgate grant`
//! commands, against the real binary: every route's status codes and JSON shape, the
//! admin token, the Origin check, a live stream that agrees with the snapshot, and a
//! stalled WebSocket client that never slows the mail path.

use futures_util::StreamExt;
use popgate_core::dashboard::{DashboardState, StreamMessage};
use popgate_core::event::EventKind;
use popgate_server::serve::http::client::{ApiClient, ApiResponse};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

const USER: &str = "taro@example.test";
const PASSWORD: &str = "correct horse battery";
const TOKEN: &str = "s3cret-token";

/// A running `popgate serve` in its own folder.
struct Server {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    dir: tempfile::TempDir,
    config: PathBuf,
    smtp: SocketAddr,
    pop3: SocketAddr,
    http: SocketAddr,
    token: Option<String>,
}

#[derive(Default)]
struct Options {
    token: Option<&'static str>,
    /// A fixed HTTP port (the CLI finds the server through the config); else 0.
    http_port: u16,
}

impl Server {
    fn start(options: Options) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("popgate.toml");
        let mut toml = format!(
            "hostname = \"mail.example.test\"\ndomains = [\"example.test\"]\ndata_dir = \"data\"\n\
             [listen]\nsmtp = \"127.0.0.1:0\"\npop3 = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:{}\"\n\
             [relay]\nmode = \"capture\"\n",
            options.http_port
        );
        if let Some(token) = options.token {
            toml.push_str(&format!("[http]\nadmin_token = \"{token}\"\n"));
        }
        std::fs::write(&config, toml).expect("write config");
        let added = popgate(
            &["user", "add", USER, "--password-stdin"],
            &config,
            &format!("{PASSWORD}\n"),
        );
        assert!(added.status.success(), "user add: {added:?}");

        let log = std::fs::File::create(dir.path().join("stderr.log")).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_popgate"))
            .args(["serve", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn popgate");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (mut smtp, mut pop3, mut http) = (None, None, None);
        loop {
            let mut line = String::new();
            let n = stdout.read_line(&mut line).expect("read stdout");
            assert!(n > 0, "popgate exited before it was ready: {}", {
                let _ = child.wait();
                std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default()
            });
            let line = line.trim();
            if line == "popgate: ready" {
                break;
            }
            if let Some(rest) = line.strip_prefix("popgate: listening ") {
                let (name, addr) = rest.split_once(' ').expect("name and address");
                let addr: SocketAddr = addr.parse().expect("listener address");
                match name {
                    "smtp" => smtp = Some(addr),
                    "pop3" => pop3 = Some(addr),
                    "http" => http = Some(addr),
                    _ => {}
                }
            }
        }
        Server {
            child,
            _stdout: stdout,
            dir,
            config,
            smtp: smtp.expect("smtp listener"),
            pop3: pop3.expect("pop3 listener"),
            http: http.expect("http listener"),
            token: options.token.map(str::to_owned),
        }
    }

    fn api(&self) -> ApiClient {
        ApiClient::new(self.http, self.token.clone())
    }

    fn anonymous(&self) -> ApiClient {
        ApiClient::new(self.http, None)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let r = self
            .api()
            .request(method, path, body.as_ref())
            .expect("request");
        (r.status, json_of(&r))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    fn ws_url(&self) -> String {
        format!("ws://{}/api/events", self.http)
    }

    fn grant_cli(&self, args: &[&str]) -> Output {
        let mut all = vec!["grant"];
        all.extend_from_slice(args);
        popgate(&all, &self.config, "")
    }

    /// Stop the server, keeping its folder.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Resident memory of the server process, in KiB (Linux).
    fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
            eprintln!("--- popgate stderr ---\n{log}");
        }
    }
}

fn popgate(args: &[&str], config: &Path, stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_popgate"))
        .args(args)
        .arg("--config")
        .arg(config)
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

fn json_of(r: &ApiResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// A line-oriented client for POP3 and SMTP.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        Conn {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read line");
        line.trim_end().to_owned()
    }

    /// An SMTP reply, multi-line ones joined; returns the last line.
    fn reply(&mut self) -> String {
        loop {
            let line = self.line();
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return line;
            }
        }
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write");
    }

    fn expect(&mut self, command: &str, prefix: &str) -> String {
        self.send(command);
        let reply = if prefix.starts_with(['+', '-']) {
            self.line()
        } else {
            self.reply()
        };
        assert!(reply.starts_with(prefix), "C: {command}\nS: {reply}");
        reply
    }

    fn finish(mut self) {
        let mut rest = Vec::new();
        let _ = self.reader.read_to_end(&mut rest);
    }
}

/// USER/PASS and QUIT: the login that grants 127.0.0.1 the right to relay.
fn pop3_login(addr: SocketAddr) {
    let mut c = Conn::open(addr);
    assert!(c.line().starts_with("+OK"));
    c.expect(&format!("USER {USER}"), "+OK");
    c.expect(&format!("PASS {PASSWORD}"), "+OK");
    c.expect("QUIT", "+OK");
    c.finish();
}

/// Send `count` messages over one SMTP session; the ids the 250s named.
fn smtp_send(addr: SocketAddr, rcpt: &str, count: usize) -> Vec<String> {
    let mut c = Conn::open(addr);
    assert!(c.reply().starts_with("220"));
    c.expect("EHLO client.example", "250");
    let mut ids = Vec::new();
    for n in 0..count {
        c.expect(&format!("MAIL FROM:<{USER}>"), "250");
        c.expect(&format!("RCPT TO:<{rcpt}>"), "250");
        c.expect("DATA", "354");
        c.send(&format!(
            "Subject: test {n}\r\nFrom: <{USER}>\r\n\r\nHello number {n}.\r\n."
        ));
        let reply = c.reply();
        assert!(reply.starts_with("250"), "message {n}: {reply}");
        ids.push(reply.rsplit(' ').next().expect("id").to_owned());
    }
    c.expect("QUIT", "221");
    c.finish();
    ids
}

/// Parse `/metrics`: every line a comment or `name{labels} value`, every sample's
/// metric declared by `# TYPE`; returns (series, value).
fn parse_metrics(body: &str) -> Vec<(String, f64)> {
    let mut typed = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().expect("name");
            let kind = parts.next().expect("kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let value: f64 = value.parse().expect("numeric value");
        let name = series.split('{').next().expect("name");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name:?}"
        );
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .expect("labels in braces");
            for pair in inner.split(',') {
                let (k, v) = pair.split_once('=').expect("label=value");
                assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                assert!(v.starts_with('"') && v.ends_with('"'), "{pair}");
            }
        }
        assert!(typed.contains(name), "{name} has no # TYPE before it");
        samples.push((series.to_owned(), value));
    }
    samples
}

fn metric(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no series {series}"))
}

fn metrics(server: &Server) -> Vec<(String, f64)> {
    let r = server
        .api()
        .request("GET", "/metrics", None)
        .expect("metrics");
    assert_eq!(r.status, 200);
    parse_metrics(&text(&r.body))
}

#[test]
fn every_route_answers_with_its_status_and_json_shape() {
    let server = Server::start(Options::default());
    assert_eq!(server.get("/api/health"), (200, json!({"status": "ok"})));

    let (status, snapshot) = server.get("/api/snapshot");
    assert_eq!(status, 200);
    for field in [
        "seq", "now", "limits", "sessions", "grants", "timeline", "counters", "messages",
    ] {
        assert!(
            snapshot.get(field).is_some(),
            "snapshot lacks {field}: {snapshot}"
        );
    }
    let state: DashboardState = serde_json::from_value(snapshot).expect("a DashboardState");
    assert!(state.now.0 > 0, "now is the server's clock");

    pop3_login(server.pop3);

    // Grants: the login's, with the time left.
    let (status, grants) = server.get("/api/grants");
    assert_eq!(status, 200);
    let row = &grants["grants"][0];
    assert_eq!(row["key"], "127.0.0.1/32");
    assert_eq!(row["user"], USER);
    assert!(row["remaining_ms"].as_u64().expect("remaining_ms") > 0);
    assert!(row["expires"].as_u64() > grants["now"].as_u64());

    // Sessions: listed without transcripts; one by id with it, PASS redacted.
    let (status, list) = server.get("/api/sessions");
    assert_eq!(status, 200);
    let pop = list["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["protocol"] == "pop3")
        .expect("the POP3 session")
        .clone();
    assert!(pop.get("transcript").is_none(), "{pop}");
    assert_eq!(pop["user"], USER);
    assert_eq!(pop["grant_made"], "127.0.0.1/32");
    assert_eq!(pop["closed"]["reason"], "quit");
    let id = pop["id"].as_u64().expect("id");
    let (status, one) = server.get(&format!("/api/sessions/{id}"));
    assert_eq!(status, 200);
    let transcript = one["transcript"].as_array().expect("transcript");
    assert!(transcript.iter().any(|l| l["from_client"] == true));
    let all = one["transcript"].to_string();
    assert!(!all.contains(PASSWORD), "a password in a transcript: {all}");
    let (status, missing) = server.get("/api/sessions/999999");
    assert_eq!(status, 404);
    assert!(
        missing["error"]
            .as_str()
            .is_some_and(|e| e.contains("999999"))
    );
    let (status, bad) = server.get("/api/sessions/abc");
    assert_eq!((status, bad["field"].as_str()), (400, Some("id")));

    // POST validation names the field.
    for (body, field) in [
        (json!({"ttl": "1h"}), "address"),
        (json!({"address": "not-an-ip"}), "address"),
        (json!({"address": "10.0.0.0/33"}), "address"),
        (json!({"address": "10.0.0.1", "ttl": "soon"}), "ttl"),
        (json!({"address": "10.0.0.1", "ttl": "0s"}), "ttl"),
        (json!({"address": "10.0.0.1", "messages": -1}), "messages"),
        (
            json!({"address": "10.0.0.1", "note": "x".repeat(501)}),
            "note",
        ),
    ] {
        let (status, error) = server.call("POST", "/api/grants", Some(body.clone()));
        assert_eq!(status, 400, "{body}");
        assert_eq!(error["field"], field, "{body}: {error}");
        assert!(error["error"].is_string());
    }
    let (status, created) = server.call(
        "POST",
        "/api/grants",
        Some(json!({"address": "10.9.8.7/24", "ttl": "2h", "messages": 3, "note": "lab"})),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["key"], "10.9.8.0/24");
    assert_eq!(created["user"], "operator");
    assert_eq!(created["messages_left"], 3);
    assert_eq!(created["note"], "lab");
    assert_eq!(created["session"], Value::Null);
    let remaining = created["remaining_ms"].as_u64().expect("remaining_ms");
    assert!(
        remaining > 7_000_000 && remaining <= 7_200_000,
        "{remaining}"
    );
    let (status, _) = server.call("POST", "/api/grants", Some(json!({"address": "192.0.2.5"})));
    assert_eq!(status, 201);

    // DELETE one by its URL-encoded key, by a bare address; 404 when absent.
    assert_eq!(
        server.call("DELETE", "/api/grants/10.9.8.0%2F24", None),
        (200, json!({"revoked": "10.9.8.0/24"}))
    );
    let (status, gone) = server.call("DELETE", "/api/grants/10.9.8.0%2F24", None);
    assert_eq!(status, 404);
    assert!(gone["error"].is_string());
    assert_eq!(
        server.call("DELETE", "/api/grants/192.0.2.5", None),
        (200, json!({"revoked": "192.0.2.5/32"}))
    );
    let (status, bad) = server.call("DELETE", "/api/grants/nonsense", None);
    assert_eq!((status, bad["field"].as_str()), (400, Some("key")));

    // Mail: one relayed on the grant (queued), one local (Maildir).
    let relayed = smtp_send(server.smtp, "friend@remote.test", 1);
    let local = smtp_send(server.smtp, USER, 1);
    let r = server
        .api()
        .request("GET", &format!("/api/messages/{}", relayed[0]), None)
        .expect("message");
    assert_eq!(r.status, 200);
    assert!(
        text(&r.body).contains("Subject: test 0"),
        "{}",
        text(&r.body)
    );
    let r = server
        .api()
        .request("GET", &format!("/api/messages/{}", local[0]), None)
        .expect("message");
    assert_eq!(r.status, 200, "{}", text(&r.body));
    let body = text(&r.body);
    assert!(body.starts_with("Return-Path: "), "{body}");
    assert!(body.contains(&format!(" id {}", local[0])), "{body}");
    let (status, _) = server.get("/api/messages/NOPE123");
    assert_eq!(status, 404);

    // The snapshot's timeline links the relay to the POP3 session that granted it.
    let (_, snapshot) = server.get("/api/snapshot");
    let state: DashboardState = serde_json::from_value(snapshot).expect("state");
    let allowed = state
        .timeline
        .iter()
        .find_map(|t| match &t.kind {
            popgate_core::dashboard::TimelineKind::RelayAllowed { via, .. } => Some(via.clone()),
            _ => None,
        })
        .expect("a RelayAllowed entry");
    assert_eq!(
        allowed,
        popgate_core::dashboard::RelayVia::Grant {
            key: "127.0.0.1/32".parse().expect("cidr"),
            user: USER.into(),
            granting_session: popgate_core::SessionId(id),
        }
    );
    assert_eq!(state.messages.len(), 2);

    // Flush counts what it revoked; unknown API paths are JSON 404s.
    assert_eq!(
        server.call("DELETE", "/api/grants", None),
        (200, json!({"flushed": 1}))
    );
    let (status, error) = server.get("/api/nothing/here");
    assert_eq!(status, 404);
    assert!(error["error"].is_string());
    // The web app (or its placeholder) is at `/`.
    let r = server.api().request("GET", "/", None).expect("index");
    assert_eq!(r.status, 200);
}

#[test]
fn metrics_are_prometheus_text() {
    let server = Server::start(Options::default());
    pop3_login(server.pop3);
    smtp_send(server.smtp, "friend@remote.test", 2);
    let r = server
        .api()
        .request("GET", "/metrics", None)
        .expect("metrics");
    assert_eq!(r.status, 200);
    let body = text(&r.body);
    let samples = parse_metrics(&body);
    assert_eq!(
        metric(&samples, "popgate_sessions_total{protocol=\"pop3\"}"),
        1.0
    );
    assert_eq!(
        metric(&samples, "popgate_sessions_total{protocol=\"smtp\"}"),
        1.0
    );
    assert_eq!(metric(&samples, "popgate_auth_total{result=\"ok\"}"), 1.0);
    assert_eq!(
        metric(&samples, "popgate_auth_total{result=\"failed\"}"),
        0.0
    );
    assert_eq!(metric(&samples, "popgate_grants_live"), 1.0);
    assert_eq!(metric(&samples, "popgate_grants_created_total"), 1.0);
    assert_eq!(metric(&samples, "popgate_grants_used_total"), 2.0);
    assert_eq!(metric(&samples, "popgate_grants_expired_total"), 0.0);
    assert_eq!(
        metric(&samples, "popgate_relay_decisions_total{outcome=\"grant\"}"),
        2.0
    );
    assert_eq!(metric(&samples, "popgate_messages_accepted_total"), 2.0);
    assert_eq!(metric(&samples, "popgate_messages_delivered_total"), 0.0);
    assert_eq!(metric(&samples, "popgate_queue_depth"), 2.0);
    assert_eq!(metric(&samples, "popgate_ws_clients"), 0.0);
    assert_eq!(metric(&samples, "popgate_ws_lagged_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_required_when_set() {
    let server = tokio::task::spawn_blocking(|| {
        Server::start(Options {
            token: Some(TOKEN),
            ..Options::default()
        })
    })
    .await
    .expect("start");
    for path in [
        "/api/health",
        "/api/snapshot",
        "/api/grants",
        "/metrics",
        "/api/nothing",
    ] {
        let r = server
            .anonymous()
            .request("GET", path, None)
            .expect("request");
        assert_eq!(r.status, 401, "{path}");
        assert!(json_of(&r)["error"].is_string(), "{path}");
        let r = ApiClient::new(server.http, Some("wrong".into()))
            .request("GET", path, None)
            .expect("request");
        assert_eq!(r.status, 401, "{path} with a wrong token");
    }
    let r = server
        .anonymous()
        .request("POST", "/api/grants", Some(&json!({"address": "10.0.0.1"})))
        .expect("request");
    assert_eq!(r.status, 401);
    assert_eq!(server.get("/api/health").0, 200);
    assert_eq!(server.get("/api/grants").0, 200);
    let r = server
        .api()
        .request("GET", "/metrics", None)
        .expect("metrics");
    assert_eq!(r.status, 200);
    // The web app's files need no token: the page asks for it.
    let r = server.anonymous().request("GET", "/", None).expect("index");
    assert_eq!(r.status, 200);

    // The WebSocket: refused without the token, accepted with it as a bearer header,
    // a cookie or a subprotocol.
    let refused = tokio_tungstenite::connect_async(server.ws_url()).await;
    match refused {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    for (name, value) in [
        ("authorization", format!("Bearer {TOKEN}")),
        ("cookie", format!("popgate_token={TOKEN}")),
        ("sec-websocket-protocol", format!("popgate.token.{TOKEN}")),
    ] {
        let mut request = server.ws_url().into_client_request().expect("request");
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(&value).expect("header"));
        let (mut ws, response) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if name == "sec-websocket-protocol" {
            assert_eq!(
                response.headers().get("sec-websocket-protocol"),
                Some(&HeaderValue::from_str(&value).expect("header"))
            );
        }
        let first = ws.next().await.expect("a frame").expect("ok");
        let frame: StreamMessage =
            serde_json::from_str(first.to_text().expect("text")).expect("frame");
        assert!(matches!(frame, StreamMessage::Snapshot(_)), "{name}");
    }
    // A cookie is not enough on the other routes (cross-site request forgery).
    let mut s = TcpStream::connect(server.http).expect("connect");
    s.write_all(
        format!(
            "GET /api/grants HTTP/1.1\r\nHost: {}\r\nCookie: popgate_token={TOKEN}\r\nConnection: close\r\n\r\n",
            server.http
        )
        .as_bytes(),
    )
    .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    assert!(text(&raw).starts_with("HTTP/1.1 401"), "{}", text(&raw));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_websocket_refuses_other_origins() {
    let server = tokio::task::spawn_blocking(|| Server::start(Options::default()))
        .await
        .expect("start");
    for origin in ["http://evil.example", "http://127.0.0.1:1", "null"] {
        let mut request = server.ws_url().into_client_request().expect("request");
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).expect("header"));
        match tokio_tungstenite::connect_async(request).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{origin}")
            }
            other => panic!("{origin}: expected 403, got {:?}", other.map(|_| ())),
        }
    }
    let mut request = server.ws_url().into_client_request().expect("request");
    let same = format!("http://{}", server.http);
    request
        .headers_mut()
        .insert("origin", HeaderValue::from_str(&same).expect("header"));
    tokio_tungstenite::connect_async(request)
        .await
        .expect("same origin is allowed");
}

/// Apply frames to a client-side state the way the web app does.
fn apply(state: &mut Option<DashboardState>, frame: StreamMessage) -> Option<popgate_core::Event> {
    match frame {
        StreamMessage::Snapshot(s) => {
            *state = Some(s);
            None
        }
        StreamMessage::Event(e) => {
            let s = state.as_mut().expect("a snapshot first");
            assert!(e.seq > s.seq, "events in order after the snapshot");
            assert_eq!(e.seq, s.seq + 1, "no gap without a fresh snapshot");
            s.apply(&e);
            Some(e)
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_websocket_sends_a_snapshot_then_live_events_that_agree_with_the_server() {
    let server = tokio::task::spawn_blocking(|| Server::start(Options::default()))
        .await
        .expect("start");
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("connect");
    let mut state = None;
    let first = ws.next().await.expect("frame").expect("ok");
    let frame: StreamMessage = serde_json::from_str(first.to_text().expect("text")).expect("json");
    assert!(matches!(frame, StreamMessage::Snapshot(_)));
    apply(&mut state, frame);

    let pop3 = server.pop3;
    let smtp = server.smtp;
    tokio::task::spawn_blocking(move || {
        pop3_login(pop3);
        smtp_send(smtp, "friend@remote.test", 1);
    })
    .await
    .expect("mail");
    // Read until the SMTP session's close: everything the two sessions made.
    let mut closed = 0;
    let mut saw_grant = false;
    while closed < 2 {
        let message = ws.next().await.expect("frame").expect("ok");
        let Message::Text(body) = message else {
            continue;
        };
        let frame: StreamMessage = serde_json::from_str(body.as_str()).expect("json");
        if let Some(e) = apply(&mut state, frame) {
            match e.kind {
                EventKind::SessionClosed { .. } => closed += 1,
                EventKind::GrantCreated { .. } => saw_grant = true,
                _ => {}
            }
        }
    }
    assert!(saw_grant);
    let mut client = state.expect("state");
    let (_, snapshot) = tokio::task::spawn_blocking(move || {
        let r = server.get("/api/snapshot");
        drop(server);
        r
    })
    .await
    .expect("snapshot");
    let server_state: DashboardState = serde_json::from_value(snapshot).expect("state");
    // The server's `now` is its clock at the request; everything else must agree.
    client.now = server_state.now;
    assert_eq!(client, server_state);
    let _ = ws.close(None).await;
}

/// A client that connects with a tiny receive buffer and never reads while 1,000
/// messages go through SMTP: every message is accepted, the stalled client is
/// resynchronised with a fresh snapshot (or dropped) and that is counted, and the
/// server's memory stays bounded.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_websocket_client_never_slows_the_mail_path() {
    const MESSAGES: usize = 1000;
    let server = tokio::task::spawn_blocking(|| Server::start(Options::default()))
        .await
        .expect("start");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(2048).expect("tiny buffer");
    let stream = socket.connect(server.http).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async(server.ws_url(), stream)
        .await
        .expect("handshake");
    let rss_before = server.rss_kib();

    let smtp = server.smtp;
    let ids = tokio::task::spawn_blocking(move || smtp_send(smtp, USER, MESSAGES))
        .await
        .expect("mail");
    assert_eq!(ids.len(), MESSAGES, "every message accepted");
    let rss_after = server.rss_kib();

    // Now read: the frames the socket held, then a fresh snapshot (the client fell
    // behind the broadcast), or the end if the server dropped the stalled client.
    let mut snapshots = 0;
    let mut frames = 0;
    while snapshots < 2 {
        // A safety net, not a wait: frames are due at once, and a hang here would
        // mean the lag path was never taken.
        let next = tokio::time::timeout(std::time::Duration::from_secs(30), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no fresh snapshot after {frames} frames"));
        match next {
            Some(Ok(Message::Text(body))) => {
                frames += 1;
                let frame: StreamMessage = serde_json::from_str(body.as_str()).expect("json");
                if matches!(frame, StreamMessage::Snapshot(_)) {
                    snapshots += 1;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    let samples = tokio::task::spawn_blocking(move || {
        let m = metrics(&server);
        drop(server);
        m
    })
    .await
    .expect("metrics");
    let lagged = metric(&samples, "popgate_ws_lagged_total");
    let dropped = metric(&samples, "popgate_ws_dropped_total");
    assert!(
        lagged + dropped >= 1.0,
        "lagged {lagged}, dropped {dropped}"
    );
    assert_eq!(
        metric(&samples, "popgate_messages_accepted_total"),
        MESSAGES as f64
    );
    let events = metric(&samples, "popgate_events_total");
    assert!(
        (frames as f64) < events,
        "the client got {frames} frames of {events} events: it skipped the ones it missed"
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        // The stalled client holds its place in the shared ring and one socket
        // buffer; the dashboard state is bounded. Generous: unbounded buffering of
        // ~12,000 frames would still fit, so this is a guard, the frame count above
        // is the proof.
        assert!(
            after < before + 64 * 1024,
            "RSS grew from {before} KiB to {after} KiB"
        );
        eprintln!("server RSS {before} KiB -> {after} KiB over {MESSAGES} messages");
    }
    let _ = ws.close(None).await;
}

/// A free port for a server whose address the CLI reads from the config.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn grant_commands_talk_to_the_running_server() {
    let server = Server::start(Options {
        token: Some(TOKEN),
        http_port: free_port(),
    });
    let out = server.grant_cli(&["list"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "no grants\n");

    let out = server.grant_cli(&[
        "add",
        "192.0.2.0/24",
        "--ttl",
        "1h",
        "--messages",
        "3",
        "--note",
        "lab printer",
    ]);
    assert!(out.status.success(), "{out:?}");
    let said = text(&out.stdout);
    assert!(said.starts_with("granted 192.0.2.0/24 for "), "{said}");
    assert!(said.ends_with("(3 messages left)\n"), "{said}");

    pop3_login(server.pop3);
    let out = server.grant_cli(&["list"]);
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("KEY"), "{table}");
    let login = lines
        .iter()
        .find(|l| l.starts_with("127.0.0.1/32"))
        .expect("login grant");
    assert!(
        login.contains(USER) && login.contains("unlimited"),
        "{login}"
    );
    let added = lines
        .iter()
        .find(|l| l.starts_with("192.0.2.0/24"))
        .expect("added grant");
    assert!(
        added.contains("operator") && added.contains("3 messages left"),
        "{added}"
    );
    assert!(added.ends_with("lab printer"), "{added}");

    let out = server.grant_cli(&["revoke", "192.0.2.0/24"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "revoked 192.0.2.0/24\n");
    let out = server.grant_cli(&["revoke", "192.0.2.0/24"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no grant for 192.0.2.0/24"),
        "{out:?}"
    );
    let out = server.grant_cli(&["revoke", "127.0.0.1"]);
    assert_eq!(text(&out.stdout), "revoked 127.0.0.1/32\n", "{out:?}");
    let out = server.grant_cli(&["add", "not-an-address"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not-an-address"), "{out:?}");
    server.grant_cli(&["add", "198.51.100.7"]);
    let out = server.grant_cli(&["flush"]);
    assert_eq!(text(&out.stdout), "flushed 1 grant\n", "{out:?}");

    // A config whose token differs from the server's.
    let other = server.dir.path().join("other.toml");
    let mine = std::fs::read_to_string(&server.config).expect("config");
    std::fs::write(&other, mine.replace(TOKEN, "not-the-token")).expect("write");
    let out = popgate(&["grant", "list"], &other, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("admin token"), "{out:?}");

    let mut server = server;
    server.kill();
    let out = popgate(&["grant", "list"], &server.config, "");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let error = text(&out.stderr);
    assert!(error.contains("cannot reach popgate"), "{error}");
}

#[test]
fn grant_commands_explain_a_config_without_a_reachable_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("popgate.toml");
    std::fs::write(
        &config,
        "domains = [\"example.test\"]\n[listen]\nhttp = \"127.0.0.1:0\"\n",
    )
    .expect("write");
    let out = popgate(&["grant", "list"], &config, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("port 0"), "{out:?}");
    std::fs::write(
        &config,
        "domains = [\"example.test\"]\n[listen]\npop3 = \"127.0.0.1:0\"\n",
    )
    .expect("write");
    let out = popgate(&["grant", "flush"], &config, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no HTTP listener"), "{out:?}");
}
