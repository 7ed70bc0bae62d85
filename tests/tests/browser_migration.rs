//! The dashboard's migration view in headless Chromium, served by the real binary:
//! Alice relays on a POP-before-SMTP grant (poplib, then smtplib, from 127.0.0.2) and
//! Bob with SMTP AUTH over STARTTLS (swaks, from 127.0.0.3); the view lists Alice
//! under "relays only on grants" and Bob under "moved to AUTH", in English and in
//! Japanese.

mod migration_support;

use migration_support::{ALICE, BOB, alice_pop_then_relay, bob_swaks_auth, setup};
use popgate_tests::TestCa;
use popgate_tests::browser::{Browser, js, web_dist};

/// A JS expression: the texts of `user`'s entry in `group`, once it is listed.
fn listed(group: &str, user: &str) -> String {
    format!(
        "q({})?.textContent",
        js(&format!(
            "[data-testid=migration-group][data-group={group}] [data-user=\"{user}\"]"
        ))
    )
}

#[test]
fn the_migration_view_lists_both_users_in_their_groups() {
    let ca = TestCa::new("migration browser CA");
    let root = web_dist();
    let root = root.to_str().expect("a UTF-8 path to web/dist");
    let server = setup(&ca, &["smtp", "submission", "pop3", "http"])
        // A JSON string is a valid TOML basic string for a path.
        .toml(&format!("[http]\nweb_root = {}", js(root)))
        .start();
    let out = alice_pop_then_relay(&server, "on the grant");
    assert!(out.get("DATA").starts_with("250 "), "{}", out.0);
    bob_swaks_auth(server.addr("submission"), &ca);

    let browser = Browser::start("migration");
    let base = format!("http://{}/", server.addr("http"));
    browser.goto(&base);
    let alice = browser.wait(
        "Alice under relays-only-on-grants",
        &listed("grant_only", ALICE),
    );
    let alice = alice.as_str().unwrap_or_default().to_owned();
    assert!(
        alice.contains("1 on grants") && alice.contains("0 with AUTH"),
        "{alice}"
    );
    let bob = browser.wait("Bob under moved-to-AUTH", &listed("moved_to_auth", BOB));
    let bob = bob.as_str().unwrap_or_default().to_owned();
    assert!(
        bob.contains("0 on grants") && bob.contains("1 with AUTH"),
        "{bob}"
    );
    // Each user is listed once, in one group.
    let entries = browser.eval(&format!(
        "document.querySelectorAll({}).length",
        js(&format!("[data-testid=migration] [data-user=\"{ALICE}\"]"))
    ));
    assert_eq!(entries, 1, "{alice}");
    browser.screenshot("migration");

    browser.goto(&format!("{base}?lang=ja"));
    browser.wait(
        "the Japanese group heading",
        &format!(
            "(() => {{ const h = q({}); return h && h.textContent.includes('グラントでのみリレー') ? h.textContent : null; }})()",
            js("[data-testid=migration-group][data-group=grant_only] h3")
        ),
    );
}
