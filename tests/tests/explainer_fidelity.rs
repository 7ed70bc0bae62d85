//! The explainer's fidelity: each scripted scenario's client lines replayed against the
//! real `popgate` binary, and the server's replies compared, step by step and line by
//! line, with what the simulator (core's sessions on an in-memory backend) answers.
//!
//! # How a scenario is replayed
//!
//! * The server is configured like the scenario: its users (through the real
//!   `popgate user add --password-stdin`), domains, hostname, `[grant]` settings, the
//!   listeners its steps connect to, and a certificate from a test CA for STARTTLS,
//!   STLS and POP3S.
//! * Each scenario client address becomes a loopback source address (127.0.0.2 on):
//!   clients that share an address (the NAT scenario) share one, as grants are keyed
//!   by address.
//! * The simulator plays the scenario first; how many lines it answered at each step on
//!   each connection is how many lines are read from the real server there. That count
//!   only decides how far to read: a server that says more shows up as a shifted line
//!   or as bytes before the close at the end, one that says less as a missing line.
//! * `Advance` is not a sleep. Which grants an advance lets expire is worked out from
//!   the scenario's timeline ([`predict_expiries`]) and must be what the simulator's
//!   grant table expired; a scenario where one expires runs against a server with a
//!   short TTL, and the step waits for the server's `event=grant_expired` log line for
//!   the same address. A failed login's delay is a short `[auth] failure_delay`, and
//!   the read simply waits for the delayed reply.
//! * Every grant the simulator creates or refreshes must show as an `event=grant` log
//!   line of the real server for the same address.
//! * The client side is a small python3 line client driven over a pipe (the harness's
//!   Rust client has no TLS), so a connection can upgrade with STARTTLS or STLS
//!   mid-stream and verify the server against the test CA.
//!
//! Only what must differ between two runs is normalised ([`normalise`]): the queue id
//! in `queued as` and an APOP banner. Everything else, greetings included, must be
//! equal.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use popgate_core::event::EventKind;
use popgate_core::net::Cidr;
use popgate_core::sim::{Endpoint, Player, Scenario, ScenarioStep, SimOutput, scenario, scenarios};
use popgate_tests::{Server, Setup, TestCa, host, is_event, log_field, unhex};

/// The TTL of a server whose scenario lets a grant expire: short, so waiting for the
/// expiry costs little, and long enough for the steps before it (a login and QUIT).
const EXPIRY_TTL: &str = "3s";

/// The delay after a failed login on the real server: the simulator waits the
/// server's default; the reply is the same, only later.
const AUTH_TOML: &str = "[auth]\nfailure_delay = \"50ms\"\n";

/// Every shipped scenario has a test here or a reason why not.
const COVERED: &[&str] = &[
    "relay-denied",
    "pop-then-relay",
    "grant-expires",
    "message-limit",
    "failed-login",
    "shared-nat",
    "submission-auth",
    // Free play: the reader types the lines; there are no scripted client lines to
    // replay.
    "free-play",
];

#[test]
fn every_shipped_scenario_is_covered() {
    let ids: Vec<String> = scenarios().into_iter().map(|s| s.id).collect();
    assert_eq!(
        ids, COVERED,
        "a scenario was added or renamed: cover it here"
    );
}

#[test]
fn relay_denied() {
    check("relay-denied");
}

#[test]
fn pop_then_relay() {
    check("pop-then-relay");
}

#[test]
fn grant_expires() {
    check("grant-expires");
}

#[test]
fn message_limit() {
    check("message-limit");
}

#[test]
fn failed_login() {
    check("failed-login");
}

#[test]
fn shared_nat() {
    check("shared-nat");
}

#[test]
fn submission_auth() {
    check("submission-auth");
}

// ---------------------------------------------------------------------------------
// Normalisation

/// A server line with what legitimately differs between the simulator and a real run
/// replaced by a placeholder:
///
/// * `250 2.0.0 Ok: queued as <id>`: the id is made from the clock (virtual or real)
///   and the session number.
/// * A POP3 greeting's APOP banner (RFC 1939 §7, `+OK ... <process.clock@host>`): unique
///   per connection by design. (APOP is off by default, so no shipped scenario has one.)
///
/// Nothing else: the greetings, the capability lists and every refusal must be equal.
fn normalise(line: &str) -> String {
    const QUEUED: &str = "250 2.0.0 Ok: queued as ";
    if let Some(id) = line.strip_prefix(QUEUED)
        && !id.is_empty()
        && !id.contains(' ')
    {
        return format!("{QUEUED}<id>");
    }
    if let Some((greeting, banner)) = line.rsplit_once(' ')
        && line.starts_with("+OK ")
        && banner.starts_with('<')
        && banner.ends_with('>')
        && banner.contains('@')
    {
        return format!("{greeting} <banner>");
    }
    line.to_owned()
}

#[test]
fn normalise_replaces_only_queue_ids_and_apop_banners() {
    assert_eq!(
        normalise("250 2.0.0 Ok: queued as 18E2A4C0F1B2-7"),
        "250 2.0.0 Ok: queued as <id>"
    );
    assert_eq!(
        normalise("250 2.0.0 Ok: queued as 1A2B3C.4.1"),
        "250 2.0.0 Ok: queued as <id>"
    );
    assert_eq!(
        normalise("+OK popgate ready <4242.1718000000000@mail.example.test>"),
        "+OK popgate ready <banner>"
    );
    for same in [
        "220 mail.example.test ESMTP popgate",
        "+OK popgate POP3 server ready",
        "554 5.7.1 Relay access denied",
        "250 2.0.0 Ok: queued as ",
        "250 2.0.0 Ok: queued as two words",
        "250 2.0.0 Ok",
        "+OK popgate ready",
        "-ERR popgate ready <x@y>",
        "+OK message follows <not a banner>",
        "250 2.1.0 <a@b>",
    ] {
        assert_eq!(normalise(same), same);
    }
}

// ---------------------------------------------------------------------------------
// The simulator's side

/// What the simulator did at one step.
#[derive(Debug, Default)]
struct SimStep {
    /// Server lines, `(connection name, line)`, in order.
    lines: Vec<(String, String)>,
    /// Grants created or refreshed by a login during the step: `(key, created)`.
    granted: Vec<(Cidr, bool)>,
    /// Grants that expired during the step (their keys).
    expired: Vec<Cidr>,
}

/// Play the whole scenario; the steps' server lines and expiries, and the connections
/// still open at the end.
fn simulate(scenario: &Scenario) -> (Vec<SimStep>, Vec<String>) {
    let names = conn_names(scenario);
    let mut player = Player::new(scenario.clone());
    let mut steps = Vec::new();
    while !player.at_end() {
        let outputs = player.step_forward();
        let by_id: BTreeMap<_, _> = names
            .iter()
            .filter_map(|n| player.conn(n).map(|id| (id, n.clone())))
            .collect();
        let mut step = SimStep::default();
        for out in outputs {
            match out {
                SimOutput::Wire {
                    conn,
                    from_client: false,
                    text,
                    ..
                } => {
                    let name = by_id.get(&conn).cloned().unwrap_or_default();
                    step.lines.push((name, text));
                }
                SimOutput::Event(e) => match e.kind {
                    EventKind::GrantCreated { grant } => step.granted.push((grant.key, true)),
                    EventKind::GrantRefreshed { grant } => step.granted.push((grant.key, false)),
                    EventKind::GrantExpired { key } => step.expired.push(key),
                    _ => {}
                },
                _ => {}
            }
        }
        steps.push(step);
    }
    let open = names
        .iter()
        .filter(|n| player.conn(n).is_some_and(|id| player.sim().is_open(id)))
        .cloned()
        .collect();
    (steps, open)
}

/// Connection names in the order the scenario opens them.
fn conn_names(scenario: &Scenario) -> Vec<String> {
    scenario
        .steps
        .iter()
        .filter_map(|s| match s {
            ScenarioStep::Connect { conn, .. } => Some(conn.clone()),
            _ => None,
        })
        .collect()
}

/// Which grants each step lets expire, worked out from the scenario's own timeline
/// rather than taken from the simulator's grant table: the virtual clock moves only in
/// `Advance` steps; a login that creates a grant (or refreshes a sliding one) sets its
/// expiry to the clock plus the TTL; a grant is gone once the clock reaches its expiry
/// (a grant is valid while `now < expires`).
fn predict_expiries(scenario: &Scenario, sim: &[SimStep]) -> Vec<Vec<Cidr>> {
    let grant = &scenario.config.grant;
    let mut now = 0u64;
    let mut expires: BTreeMap<Cidr, u64> = BTreeMap::new();
    let mut due_per_step = Vec::new();
    for (step, sim) in scenario.steps.iter().zip(sim) {
        let mut due = Vec::new();
        if let ScenarioStep::Advance { by_ms, .. } = step {
            now += by_ms;
            expires.retain(|key, at| {
                let live = *at > now;
                if !live {
                    due.push(*key);
                }
                live
            });
        }
        for (key, created) in &sim.granted {
            if *created || grant.sliding {
                expires.insert(*key, now + grant.ttl_ms);
            }
        }
        due_per_step.push(due);
    }
    due_per_step
}

// ---------------------------------------------------------------------------------
// The real server's side

/// Scenario client address to loopback source address: distinct addresses to
/// distinct hosts from 127.0.0.2 on (127.0.0.1 is the server's own host, which
/// the server treats specially for plaintext AUTH).
fn address_map(scenario: &Scenario) -> BTreeMap<IpAddr, IpAddr> {
    let mut map = BTreeMap::new();
    for client in &scenario.clients {
        let n = map.len();
        map.entry(client.address)
            .or_insert_with(|| host(u8::try_from(n + 2).expect("fewer than 250 client addresses")));
    }
    map
}

fn listener(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Pop3 => "pop3",
        Endpoint::Pop3s => "pop3s",
        Endpoint::Smtp => "smtp",
        Endpoint::Submission => "submission",
    }
}

/// A server set up like the scenario; `short_ttl` when a grant expires in it.
fn start_server(scenario: &Scenario, ca: &TestCa, short_ttl: bool) -> Server {
    let config = &scenario.config;
    assert_eq!(
        config.hostname,
        popgate_tests::HOSTNAME,
        "the harness names the server {}",
        popgate_tests::HOSTNAME
    );
    assert_eq!(
        config.domains,
        [popgate_tests::DOMAIN],
        "the harness configures one local domain, {}",
        popgate_tests::DOMAIN
    );
    let mut listeners: Vec<&'static str> = Vec::new();
    for step in &scenario.steps {
        if let ScenarioStep::Connect { endpoint, .. } = step {
            let name = listener(*endpoint);
            if !listeners.contains(&name) {
                listeners.push(name);
            }
        }
    }
    let mut setup = Setup::default()
        .listeners(&listeners)
        .max_messages(config.grant.max_messages.unwrap_or(0))
        .grant_setting(&format!("sliding = {}", config.grant.sliding))
        .tls_pair(&ca.issue("server"))
        .toml(AUTH_TOML);
    setup.ttl = if short_ttl {
        EXPIRY_TTL.to_owned()
    } else {
        format!("{}ms", config.grant.ttl_ms)
    };
    for user in &config.users {
        setup = setup.user(&user.address, &user.password);
    }
    setup.start()
}

/// A line client in python3 over a pipe: commands in, hex lines out (see [`DRIVER`]).
struct Driver {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

/// The python3 side of [`Driver`]. One command a line, `op conn args...`; it answers
/// `line <hex>` lines (for `read` and `rest`) and then `ok` or `err <why>`.
///
/// * `connect CONN PORT SOURCE TLS`: connect from SOURCE to 127.0.0.1:PORT (TLS 1:
///   implicit TLS, verified against the CA for the server's hostname).
/// * `send CONN HEX`, `close CONN`, `tls CONN` (the STARTTLS/STLS handshake; nothing
///   may be buffered unread before it).
/// * `read CONN N`: N lines, each of which must end in CRLF.
/// * `rest CONN`: everything until the server closes, as lines.
///
/// A socket timeout guards every read so a missing line fails instead of hanging.
const DRIVER: &str = r#"
import socket, ssl, sys
cafile, hostname, guard = sys.argv[1], sys.argv[2], float(sys.argv[3])
context = ssl.create_default_context(cafile=cafile)
conns = {}
def say(*parts):
    sys.stdout.write(" ".join(parts) + "\n")
    sys.stdout.flush()
class Conn:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""
    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("closed by the server; unterminated %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        if not line.endswith(b"\r"):
            raise ValueError("line not ended by CRLF: %r" % line)
        return line[:-1]
    def rest(self):
        data, self.buf = self.buf, b""
        while True:
            try:
                chunk = self.sock.recv(4096)
            except (ConnectionResetError, ssl.SSLEOFError):
                return data
            if not chunk:
                return data
            data += chunk
for command in sys.stdin:
    op, name, *args = command.split()
    try:
        if op == "connect":
            port, source, tls = args
            sock = socket.create_connection(("127.0.0.1", int(port)), guard, source_address=(source, 0))
            if tls == "1":
                sock = context.wrap_socket(sock, server_hostname=hostname)
            conns[name] = Conn(sock)
        elif op == "send":
            conns[name].sock.sendall(bytes.fromhex(args[0]))
        elif op == "close":
            conns[name].sock.close()
        elif op == "tls":
            c = conns[name]
            if c.buf:
                raise AssertionError("unread plaintext before the handshake: %r" % c.buf)
            c.sock = context.wrap_socket(c.sock, server_hostname=hostname)
        elif op == "read":
            for _ in range(int(args[0])):
                say("line", conns[name].line().hex())
        elif op == "rest":
            for line in conns[name].rest().split(b"\n"):
                if line:
                    say("line", line.hex())
        else:
            raise ValueError("unknown command " + op)
        say("ok")
    except Exception as e:
        say("err", repr(e).replace("\n", " "))
"#;

/// How long the driver waits for a line before it reports it missing.
const READ_GUARD_SECS: &str = "10";

impl Driver {
    fn start(ca: &TestCa) -> Driver {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(DRIVER)
            .arg(&ca.cert)
            .arg(popgate_tests::HOSTNAME)
            .arg(READ_GUARD_SECS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 for the line client");
        let input = child.stdin.take().expect("piped stdin");
        let output = BufReader::new(child.stdout.take().expect("piped stdout"));
        Driver {
            child,
            input,
            output,
        }
    }

    /// Run one command; the lines it returned, and `Err` with the reason if it failed
    /// (lines read before the failure are still returned).
    fn command(&mut self, command: &str) -> (Vec<String>, Result<(), String>) {
        writeln!(self.input, "{command}").expect("write to the line client");
        self.input.flush().expect("flush the line client's input");
        let mut lines = Vec::new();
        loop {
            let mut answer = String::new();
            let n = self
                .output
                .read_line(&mut answer)
                .expect("read the line client's answer");
            assert!(n > 0, "the line client exited at {command:?}");
            let answer = answer.trim_end();
            if let Some(hex) = answer.strip_prefix("line ") {
                lines.push(String::from_utf8_lossy(&unhex(hex)).into_owned());
            } else if answer == "ok" {
                return (lines, Ok(()));
            } else if let Some(why) = answer.strip_prefix("err ") {
                return (lines, Err(why.to_owned()));
            } else {
                panic!("unexpected answer {answer:?} from the line client to {command:?}");
            }
        }
    }

    /// A command that must succeed.
    fn must(&mut self, command: &str) {
        if let (_, Err(why)) = self.command(command) {
            panic!("{command}: {why}");
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A difference: at which step (`None`: after the last, before the close), on which
/// connection, what the simulator and the server said (`None`: nothing).
#[derive(Debug)]
struct Difference {
    step: Option<usize>,
    conn: String,
    sim: Option<String>,
    server: Option<String>,
}

/// Replay `id` on both sides and fail with every difference found.
fn check(id: &str) {
    let scenario = scenario(id).unwrap_or_else(|| panic!("no shipped scenario {id:?}"));
    let (sim, open_at_end) = simulate(&scenario);
    let due = predict_expiries(&scenario, &sim);
    let short_ttl = due.iter().any(|keys| !keys.is_empty());
    let addresses = address_map(&scenario);
    let ca = TestCa::new("explainer fidelity CA");
    let server = start_server(&scenario, &ca, short_ttl);
    let mut driver = Driver::start(&ca);

    let mut differences = Vec::new();
    let mut compared = 0usize;
    // Grant and expiry log lines waited for so far, per key on the real server.
    let mut grants: BTreeMap<String, usize> = BTreeMap::new();
    let mut expiries: BTreeMap<String, usize> = BTreeMap::new();
    let mut endpoints: BTreeMap<String, Endpoint> = BTreeMap::new();

    for (index, (step, expected)) in scenario.steps.iter().zip(&sim).enumerate() {
        // The simulator's grant table expires what the timeline says, no more, no less.
        if expected.expired != due[index] {
            differences.push(Difference {
                step: Some(index),
                conn: "(grant table)".into(),
                sim: Some(format!("expired {}", keys(&expected.expired))),
                server: Some(format!("expected by the TTL {}", keys(&due[index]))),
            });
        }
        let mut upgrade = None;
        match step {
            ScenarioStep::Connect {
                conn,
                client,
                endpoint,
                ..
            } => {
                let spec = scenario
                    .clients
                    .iter()
                    .find(|c| &c.name == client)
                    .expect("validated scenario names its clients");
                let port = server.addr(listener(*endpoint)).port();
                let tls = u8::from(*endpoint == Endpoint::Pop3s);
                driver.must(&format!(
                    "connect {conn} {port} {} {tls}",
                    addresses[&spec.address]
                ));
                endpoints.insert(conn.clone(), *endpoint);
            }
            ScenarioStep::Send { conn, line, .. } => {
                driver.must(&format!(
                    "send {conn} {}",
                    hex(&ScenarioStep::wire_bytes(line))
                ));
                let verb = line.trim().to_ascii_uppercase();
                if verb == "STARTTLS" || verb == "STLS" {
                    upgrade = Some(conn.clone());
                }
            }
            ScenarioStep::Close { conn, .. } => driver.must(&format!("close {conn}")),
            ScenarioStep::Advance { .. } => {
                // The clock jumps past these grants' expiry: the real server's grant
                // (short TTL) expires by itself, announced on stderr.
                for key in &due[index] {
                    let real = real_key(key, &addresses);
                    let n = expiries.entry(real.clone()).or_default();
                    *n += 1;
                    server.wait_logs(&format!("event=grant_expired key={real}"), *n, |l| {
                        is_event(l, "grant_expired") && log_field(l, "key") == Some(real.as_str())
                    });
                }
            }
            ScenarioStep::Note { .. } => {}
        }

        // Read as many lines per connection as the simulator answered at this step.
        let mut counts: Vec<(String, usize)> = Vec::new();
        for (conn, _) in &expected.lines {
            match counts.iter_mut().find(|(c, _)| c == conn) {
                Some((_, n)) => *n += 1,
                None => counts.push((conn.clone(), 1)),
            }
        }
        let mut got: Vec<(String, String)> = Vec::new();
        for (conn, n) in &counts {
            let (lines, result) = driver.command(&format!("read {conn} {n}"));
            got.extend(lines.into_iter().map(|l| (conn.clone(), l)));
            if let Err(why) = result {
                eprintln!("step {index}: reading {n} lines on {conn}: {why}");
            }
        }
        compared += expected.lines.len();
        for (conn, line) in &got {
            eprintln!("{id} step {index} {conn}: {line}");
        }
        diff_lines(Some(index), &expected.lines, &got, &mut differences);

        // A login the simulator granted on was granted by the real server too.
        for (key, _) in &expected.granted {
            let real = real_key(key, &addresses);
            let n = grants.entry(real.clone()).or_default();
            *n += 1;
            server.wait_logs(&format!("event=grant key={real}"), *n, |l| {
                is_event(l, "grant") && log_field(l, "key") == Some(real.as_str())
            });
        }

        // The client upgrades after the server's go-ahead, as a real client does.
        if let Some(conn) = upgrade {
            let go_ahead = got
                .iter()
                .rev()
                .find(|(c, _)| *c == conn)
                .map(|(_, l)| l.as_str());
            let ok = match endpoints.get(&conn) {
                Some(Endpoint::Pop3 | Endpoint::Pop3s) => {
                    go_ahead.is_some_and(|l| l.starts_with("+OK"))
                }
                _ => go_ahead.is_some_and(|l| l.starts_with("220 ")),
            };
            if ok {
                driver.must(&format!("tls {conn}"));
            }
        }
    }

    // After the last step: a connection the simulator closed must be closed by the
    // server with nothing more said; one still open is dropped by the client.
    for conn in conn_names(&scenario) {
        if open_at_end.contains(&conn) {
            driver.must(&format!("close {conn}"));
            continue;
        }
        let (rest, result) = driver.command(&format!("rest {conn}"));
        if let Err(why) = result {
            differences.push(Difference {
                step: None,
                conn: conn.clone(),
                sim: Some("(closed)".into()),
                server: Some(format!("(not closed: {why})")),
            });
        }
        diff_lines(
            None,
            &[],
            &rest
                .into_iter()
                .map(|l| (conn.clone(), l))
                .collect::<Vec<_>>(),
            &mut differences,
        );
    }

    eprintln!(
        "scenario {id}: {} steps, {compared} server lines compared, {} differences",
        scenario.steps.len(),
        differences.len()
    );
    assert!(
        differences.is_empty(),
        "scenario {id}: the simulator and the real server differ:\n{}",
        differences
            .iter()
            .map(|d| format!(
                "  step {} on {}:\n    sim:    {:?}\n    server: {:?}",
                d.step
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "end".into()),
                d.conn,
                d.sim,
                d.server
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn keys(keys: &[Cidr]) -> String {
    let keys: Vec<String> = keys.iter().map(Cidr::to_string).collect();
    format!("[{}]", keys.join(", "))
}

/// The real server's key for a simulated grant key: the same prefix over the client's
/// loopback address.
fn real_key(key: &Cidr, addresses: &BTreeMap<IpAddr, IpAddr>) -> String {
    let (_, real) = addresses
        .iter()
        .find(|(sim, _)| key.contains(**sim))
        .unwrap_or_else(|| panic!("grant key {key} covers no scenario client"));
    Cidr::new(*real, key.prefix()).to_string()
}

/// Compare two sides' lines of one step, normalised, position by position.
fn diff_lines(
    step: Option<usize>,
    sim: &[(String, String)],
    server: &[(String, String)],
    out: &mut Vec<Difference>,
) {
    for i in 0..sim.len().max(server.len()) {
        let a = sim.get(i).map(|(c, l)| (c, normalise(l)));
        let b = server.get(i).map(|(c, l)| (c, normalise(l)));
        if a != b {
            out.push(Difference {
                step,
                conn: a
                    .as_ref()
                    .or(b.as_ref())
                    .map(|(c, _)| (*c).clone())
                    .unwrap_or_default(),
                sim: a.map(|(_, l)| l),
                server: b.map(|(_, l)| l),
            });
        }
    }
}
