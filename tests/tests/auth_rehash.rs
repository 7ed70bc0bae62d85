//! `[users] rehash = true`: a successful login with a legacy hash (here Dovecot's
//! SHA512-CRYPT, as `doveadm pw` writes it) rewrites the entry as ARGON2ID, the password
//! keeps working, and the grant that login made is not mistaken for a password change.

use popgate_tests::{Client, Setup, relay_rcpt};
use std::net::IpAddr;

const USER: &str = "legacy@example.test";
/// `doveadm pw -s SHA512-CRYPT -p doveadm-secret` (Dovecot 2.3, Debian).
const SHA512: &str = "{SHA512-CRYPT}$6$cZag1Ea0o.j3A1aH$kStgu95WorzJbBPuZd31Otu893xbSREED4QrIt.RWUewOJIdMa2RR87HhIekV333hMfHSWOJjq7NpWAHZ3L0i1";
const PASSWORD: &str = "doveadm-secret";

fn host(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

fn users_line(server: &popgate_tests::Server) -> String {
    let text = std::fs::read_to_string(server.data_dir().join("users")).expect("users file");
    text.lines()
        .find(|l| l.starts_with(USER))
        .expect("the user's line")
        .to_owned()
}

#[test]
fn a_legacy_hash_becomes_argon2id_on_login_and_the_grant_stays() {
    let server = Setup::default()
        .toml("[users]\nrehash = true\n")
        .user_line(&format!("{USER}:{SHA512}"))
        .start();
    assert!(users_line(&server).contains("{SHA512-CRYPT}"));

    let mut pop = Client::pop3_login(server.pop3(), host(2), USER, PASSWORD);
    server.wait_log("the rehash", |l| {
        l.contains("event=rehash ") && l.contains(USER)
    });
    assert!(pop.pop("QUIT").starts_with("+OK"));
    let line = users_line(&server);
    assert!(
        line.starts_with(&format!("{USER}:{{ARGON2ID}}$argon2id$")),
        "{line}"
    );

    // The grant made by that login still relays: the rewrite was not a password change.
    let mut smtp = Client::smtp_from(server.smtp(), host(2));
    assert!(relay_rcpt(&mut smtp, "friend@remote.test").starts_with("250 "));

    // And the same password logs in against the new hash.
    let mut again = Client::pop3_login(server.pop3(), host(3), USER, PASSWORD);
    assert!(again.pop("QUIT").starts_with("+OK"));
}

#[test]
fn without_the_setting_the_hash_is_left_alone() {
    let server = Setup::default()
        .user_line(&format!("{USER}:{SHA512}"))
        .start();
    let mut pop = Client::pop3_login(server.pop3(), host(2), USER, PASSWORD);
    assert!(pop.pop("QUIT").starts_with("+OK"));
    assert_eq!(users_line(&server), format!("{USER}:{SHA512}"));
}
