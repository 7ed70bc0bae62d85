//! MX routing for real: popgate asks a DNS responder on loopback, and the message
//! reaches the host its MX record names; a null MX bounces at once.

mod delivery_support;

use delivery_support::{ALICE, Sink, Zone, dns_server, relay, relay_session, setup};
use popgate_tests::log_field;
use std::net::Ipv4Addr;

#[test]
fn the_message_reaches_the_host_named_by_the_mx_record() {
    let sink = Sink::start();
    let dns = dns_server(
        Zone::default()
            .mx("mx-routed.test", 10, "inbound.mx-routed.test")
            .a("inbound.mx-routed.test", Ipv4Addr::LOCALHOST),
    );
    let server = setup(&format!(
        "resolver = \"{dns}\"\nmx_port = {}\n",
        sink.addr.port()
    ))
    .start();
    let (_pop, mut smtp) = relay_session(&server);
    let id = relay(
        &mut smtp,
        ALICE,
        &["someone@mx-routed.test"],
        b"Subject: via MX\r\n\r\nbody\r\n",
    );
    let got = sink.wait("the MX-routed message", |m| !m.is_empty());
    assert_eq!(got[0].rcpts, ["someone@mx-routed.test"]);
    let delivered = server.wait_log("the delivery", |l| {
        l.contains("event=relay_delivered") && log_field(l, "id") == Some(&id)
    });
    assert_eq!(
        log_field(&delivered, "host"),
        Some("inbound.mx-routed.test")
    );
}

#[test]
fn a_null_mx_bounces_at_once() {
    let sink = Sink::start();
    let dns = dns_server(Zone::default().mx("nomail.test", 0, "."));
    let server = setup(&format!(
        "resolver = \"{dns}\"\nmx_port = {}\n",
        sink.addr.port()
    ))
    .start();
    let (_pop, mut smtp) = relay_session(&server);
    let id = relay(
        &mut smtp,
        ALICE,
        &["someone@nomail.test"],
        b"Subject: to nowhere\r\n\r\nbody\r\n",
    );
    server.wait_log("the bounce", |l| {
        l.contains("event=relay_bounced") && log_field(l, "id") == Some(&id)
    });
    let dsns = server.maildir_files(ALICE, "new");
    assert_eq!(dsns.len(), 1, "{dsns:?}");
    let dsn = std::fs::read_to_string(&dsns[0]).expect("read the DSN");
    assert!(dsn.contains("Status: 5.1.10\r\n"), "{dsn}");
    assert!(dsn.contains("RFC 7505"), "{dsn}");
    assert_eq!(sink.transactions(), 0);
}
