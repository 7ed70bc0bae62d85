//! Start and stop: the readiness lines name every configured listener and nothing
//! else; SIGTERM and SIGINT close idle sessions with their goodbye and exit 0.

use std::net::TcpStream;

use popgate_tests::{Client, Setup, host, reply};

fn graceful(signal: &str) {
    let mut server = Setup::default().start();
    let mut smtp = Client::smtp_from(server.smtp(), host(2));
    let mut pop3 = Client::connect_from(server.pop3(), host(2));
    let r = pop3.read_line();
    assert!(r.starts_with("+OK"), "POP3 greeting: {r:?}");

    server.signal(signal);

    let r = smtp.smtp_last();
    assert!(
        r.starts_with(reply::SHUTTING_DOWN),
        "idle SMTP session on SIG{signal}: expected {:?}..., got {r:?}",
        reply::SHUTTING_DOWN
    );
    assert_eq!(smtp.read_to_eof(), b"", "SMTP: bytes after 421");
    let r = pop3.read_line();
    assert!(
        r.starts_with("-ERR"),
        "idle POP3 session on SIG{signal}: {r:?}"
    );
    assert_eq!(pop3.read_to_eof(), b"", "POP3: bytes after -ERR");

    let status = server.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIG{signal}: {status}"
    );
}

#[test]
fn sigterm_says_421_4_3_2_to_idle_sessions_and_exits_0() {
    graceful("TERM");
}

#[test]
fn sigint_says_421_4_3_2_to_idle_sessions_and_exits_0() {
    graceful("INT");
}

fn check_readiness(names: &[&'static str]) {
    let server = Setup::default().listeners(names).start();
    let all = server.stdout_lines();
    // A first start also announces the generated certificate (its own test checks
    // that line); readiness is the listening lines, then ready.
    let lines: Vec<&String> = all
        .iter()
        .filter(|l| !l.starts_with("popgate: generated "))
        .collect();
    assert_eq!(
        lines.last().map(|l| l.as_str()),
        Some("popgate: ready"),
        "stdout: {all:?}"
    );
    assert_eq!(
        lines.len(),
        names.len() + 1,
        "one line per listener, then ready: {all:?}"
    );
    let mut seen: Vec<&str> = server.listeners().iter().map(|(n, _)| n.as_str()).collect();
    seen.sort_unstable();
    let mut want = names.to_vec();
    want.sort_unstable();
    assert_eq!(seen, want, "listeners named on stdout: {lines:?}");
    for (name, addr) in server.listeners() {
        assert!(
            addr.ip().is_loopback() && addr.port() != 0,
            "{name} at {addr}"
        );
        TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {name} at {addr}: {e}"));
    }
}

#[test]
fn readiness_names_smtp_and_pop3() {
    check_readiness(&["smtp", "pop3"]);
}

#[test]
fn a_listener_left_out_is_not_started() {
    check_readiness(&["pop3"]);
}

#[test]
fn readiness_names_all_six_listeners() {
    check_readiness(&["smtp", "submission", "smtps", "pop3", "pop3s", "http"]);
}
