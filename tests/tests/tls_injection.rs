//! STARTTLS / STLS command injection (CVE-2011-0411 and its POP3 twin): a command
//! pipelined in plaintext after STARTTLS or STLS, in the same send, must be dropped,
//! never executed inside TLS. Each test writes both lines in one `sendall` on a raw
//! socket, completes a verified handshake, and shows from the replies and the session
//! state that the injected command never ran.

use std::path::Path;

use popgate_tests::{HOSTNAME, PyOut, Server, Setup, TestCa, is_event, python, reply, sasl_plain};

const ALICE: &str = "alice@example.test";
const PW: &str = "alice-inject-secret-4";

fn server(ca: &TestCa) -> Server {
    Setup::default()
        .listeners(&["smtp", "submission", "pop3"])
        .user(ALICE, PW)
        .tls_pair(&ca.issue("server"))
        .start()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn lines(out: &PyOut, key: &str) -> Vec<String> {
    out.get(key).split(" | ").map(str::to_string).collect()
}

/// SMTP: EHLO, then `STARTTLS\r\n<injected>\r\n` in one send, then TLS, EHLO, the
/// probe command, QUIT, and whatever else the server sends until it closes.
const SMTP_INJECT: &str = r#"
host, port, cafile, injected, probe = sys.argv[1:]
c = Raw(host, port)
out("GREETING", " | ".join(c.reply()))
out("EHLO1", " | ".join(c.smtp("EHLO client.test")))
c.send("STARTTLS\r\n" + injected + "\r\n")
out("STARTTLS", " | ".join(c.reply()))
c.tls(tls_context(cafile), host)
out("FIRST_IN_TLS", " | ".join(c.smtp("EHLO client.test")))
out("PROBE", " | ".join(c.smtp(probe)))
out("QUIT", " | ".join(c.smtp("QUIT")))
hexout("AFTER_QUIT", c.rest())
"#;

fn smtp_inject(server: &Server, listener: &str, ca: &TestCa, injected: &str, probe: &str) -> PyOut {
    let addr = server.addr(listener);
    python(
        SMTP_INJECT,
        &[
            "127.0.0.1",
            &addr.port().to_string(),
            path(&ca.cert),
            injected,
            probe,
        ],
    )
}

/// The reply to our own EHLO inside TLS: `250-<hostname>` first, no STARTTLS.
fn assert_ehlo_reply(out: &PyOut) {
    let first = lines(out, "FIRST_IN_TLS");
    assert_eq!(
        first[0],
        format!("250-{HOSTNAME}"),
        "the first reply inside TLS must answer our EHLO, not the injected command: {first:?}"
    );
    assert!(
        !first.iter().any(|l| l.contains("STARTTLS")),
        "RFC 3207 §4.2: no STARTTLS offered after TLS: {first:?}"
    );
}

#[test]
fn smtp_rset_pipelined_after_starttls_is_never_answered() {
    let ca = TestCa::new("popgate test CA");
    let server = server(&ca);
    let out = smtp_inject(&server, "smtp", &ca, "RSET", "NOOP");
    assert!(
        lines(&out, "EHLO1").iter().any(|l| l.ends_with("STARTTLS")),
        "STARTTLS offered before TLS: {out:?}"
    );
    let go = lines(&out, "STARTTLS");
    assert_eq!(
        go.len(),
        1,
        "one reply to STARTTLS, nothing for RSET: {go:?}"
    );
    assert!(go[0].starts_with(reply::START_TLS), "{go:?}");
    assert_ehlo_reply(&out);
    assert_eq!(lines(&out, "PROBE"), ["250 2.0.0 Ok"], "NOOP: {out:?}");
    assert!(lines(&out, "QUIT")[0].starts_with("221 "), "QUIT: {out:?}");
    assert_eq!(
        out.bytes("AFTER_QUIT"),
        b"",
        "a stray reply (the injected RSET's) after QUIT: {out:?}"
    );
}

/// The same with a command whose effect would show: valid AUTH PLAIN credentials
/// pipelined after STARTTLS on submission must not authenticate the TLS session.
#[test]
fn smtp_auth_pipelined_after_starttls_does_not_authenticate() {
    let ca = TestCa::new("popgate test CA");
    let server = server(&ca);
    let injected = format!("AUTH PLAIN {}", sasl_plain("", ALICE, PW));
    let out = smtp_inject(
        &server,
        "submission",
        &ca,
        &injected,
        &format!("MAIL FROM:<{ALICE}>"),
    );
    let go = lines(&out, "STARTTLS");
    assert_eq!(go.len(), 1, "one reply to STARTTLS: {go:?}");
    assert!(go[0].starts_with(reply::START_TLS), "{go:?}");
    assert_ehlo_reply(&out);
    let mail = lines(&out, "PROBE");
    assert!(
        mail[0].starts_with(reply::AUTH_REQUIRED),
        "MAIL inside TLS: the pipelined AUTH must not have run, expected {:?}..., got {mail:?}",
        reply::AUTH_REQUIRED
    );
    assert_eq!(
        out.bytes("AFTER_QUIT"),
        b"",
        "stray bytes after QUIT: {out:?}"
    );
    // The session's close is logged after anything it did: wait for it, then look.
    let (closed, _) = server.wait_log_after(0, "event=disconnect of the session", |l| {
        is_event(l, "disconnect")
    });
    assert!(
        !server.log_lines()[..closed]
            .iter()
            .any(|l| is_event(l, "auth_ok")),
        "an auth_ok event for the injected AUTH:\n{}",
        server.stderr_log()
    );
}

/// POP3: `STLS\r\nUSER <user>\r\n` in one send; inside TLS our CAPA is answered first,
/// and PASS with the right password fails because no USER ran inside TLS.
const POP3_INJECT: &str = r#"
host, port, cafile, injected, user, password = sys.argv[1:]
c = Raw(host, port)
out("GREETING", c.line())
c.send("STLS\r\n" + injected + "\r\n")
out("STLS", c.line())
c.tls(tls_context(cafile), host)
out("FIRST_IN_TLS", c.pop("CAPA"))
out("CAPA", " | ".join(c.multiline()))
out("PASS_ALONE", c.pop("PASS " + password))
out("USER", c.pop("USER " + user))
out("PASS", c.pop("PASS " + password))
out("QUIT", c.pop("QUIT"))
hexout("AFTER_QUIT", c.rest())
"#;

fn pop3_inject(server: &Server, ca: &TestCa, injected: &str) -> PyOut {
    python(
        POP3_INJECT,
        &[
            "127.0.0.1",
            &server.pop3().port().to_string(),
            path(&ca.cert),
            injected,
            ALICE,
            PW,
        ],
    )
}

#[test]
fn pop3_user_pipelined_after_stls_never_runs() {
    let ca = TestCa::new("popgate test CA");
    let server = server(&ca);
    for injected in ["USER x", &format!("USER {ALICE}")] {
        let out = pop3_inject(&server, &ca, injected);
        assert_eq!(out.get("STLS"), reply::STLS, "{injected:?}: {out:?}");
        let first = out.get("FIRST_IN_TLS");
        assert!(
            first.starts_with("+OK"),
            "{injected:?}: CAPA inside TLS: {out:?}"
        );
        let caps = lines(&out, "CAPA");
        assert!(
            caps.iter().any(|c| c == "UIDL")
                && !caps
                    .iter()
                    .any(|c| c.starts_with("+OK") || c.starts_with("-ERR")),
            "{injected:?}: the first reply inside TLS must be our CAPA's, whole: {first:?} then {caps:?}"
        );
        assert!(
            !caps.iter().any(|c| c == "STLS"),
            "{injected:?}: STLS offered inside TLS: {caps:?}"
        );
        // Had the injected USER run inside TLS, this PASS would log alice in.
        assert!(
            out.get("PASS_ALONE").starts_with("-ERR"),
            "{injected:?}: PASS without USER inside TLS must fail: {out:?}"
        );
        assert!(out.get("USER").starts_with("+OK"), "{injected:?}: {out:?}");
        assert!(out.get("PASS").starts_with("+OK"), "{injected:?}: {out:?}");
        assert!(out.get("QUIT").starts_with("+OK"), "{injected:?}: {out:?}");
        assert_eq!(
            out.bytes("AFTER_QUIT"),
            b"",
            "{injected:?}: stray bytes: {out:?}"
        );
    }
}
