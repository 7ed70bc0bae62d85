//! A passwd-file written by Dovecot's own `doveadm pw` (fixtures/doveadm-users, made
//! with the Debian package): popgate reads every scheme the way Dovecot does.

use popgate_server::users::{UserDb, Verify};
use std::path::Path;

const SECRET: &str = "doveadm-secret";

fn db() -> UserDb {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/doveadm-users");
    UserDb::load(&path, &["example.test".to_owned()]).expect("the fixture loads")
}

#[test]
fn every_password_scheme_doveadm_writes_verifies() {
    let db = db();
    for scheme in [
        "sha512-crypt",
        "sha256-crypt",
        "md5-crypt",
        "blf-crypt",
        "plain",
        "argon2id",
        "argon2i",
    ] {
        let user = format!("{scheme}@example.test");
        assert_eq!(
            db.verify(&user, SECRET),
            Verify::Ok { user: user.clone() },
            "{scheme}"
        );
        assert_eq!(
            db.verify(&user, "wrong"),
            Verify::Bad,
            "{scheme} with a wrong password"
        );
        // A bare login name means the first local domain.
        assert_eq!(
            db.verify(scheme, SECRET),
            Verify::Ok { user: user.clone() },
            "{scheme} bare"
        );
    }
}

#[test]
fn a_cram_md5_entry_is_listed_but_verifies_no_plaintext_password() {
    let db = db();
    let listed: Vec<(String, String)> = db.list();
    assert!(
        listed
            .iter()
            .any(|(u, s)| u == "cram-md5@example.test" && s == "CRAM-MD5"),
        "{listed:?}"
    );
    assert_eq!(listed.len(), 8, "one user per scheme: {listed:?}");
    assert_eq!(db.verify("cram-md5@example.test", SECRET), Verify::Bad);
}
