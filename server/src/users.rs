//! The user database: a passwd-file compatible with Dovecot's.
//!
//! Each line is `user@domain:{SCHEME}hash[:more fields]`; the extra fields (uid, gid,
//! home, extra_fields in Dovecot's format) are kept verbatim, and so are `#` comments
//! and blank lines when popgate rewrites the file.
//!
//! Schemes: ARGON2ID (the default for new passwords, a PHC string; ARGON2I is read
//! too), SHA512-CRYPT, SHA256-CRYPT, MD5-CRYPT, BLF-CRYPT, CRYPT (any crypt(3) string),
//! PLAIN (also written CLEARTEXT) and CRAM-MD5. A CRAM-MD5 entry holds HMAC-MD5
//! intermediate state, not the password: it is stored and listed but a plaintext
//! password cannot be verified against it here (such a user cannot log in with
//! USER/PASS). A line with a scheme popgate does not know makes that user unable to log
//! in, with a warning at load; it never stops the server.

use anyhow::{Context, anyhow, bail};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use popgate_core::sasl::Credentials;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The scheme of new passwords.
pub const DEFAULT_SCHEME: &str = "ARGON2ID";

/// The users, loaded from a file. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct UserDb {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    domains: Vec<String>,
    users: HashMap<String, Entry>,
    /// Users in file order, for [`UserDb::list`].
    order: Vec<String>,
}

#[derive(Debug)]
struct Entry {
    scheme: Scheme,
    /// The password field after the `{SCHEME}` prefix.
    secret: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Scheme {
    Argon2,
    Sha512Crypt,
    Sha256Crypt,
    Md5Crypt,
    BlfCrypt,
    Crypt,
    Plain,
    CramMd5,
    Unknown(String),
}

impl Scheme {
    fn parse(name: &str) -> Scheme {
        match name.to_ascii_uppercase().as_str() {
            "ARGON2ID" | "ARGON2I" => Scheme::Argon2,
            "SHA512-CRYPT" => Scheme::Sha512Crypt,
            "SHA256-CRYPT" => Scheme::Sha256Crypt,
            "MD5-CRYPT" => Scheme::Md5Crypt,
            "BLF-CRYPT" => Scheme::BlfCrypt,
            "CRYPT" => Scheme::Crypt,
            "PLAIN" | "CLEARTEXT" => Scheme::Plain,
            "CRAM-MD5" => Scheme::CramMd5,
            other => Scheme::Unknown(other.to_owned()),
        }
    }
}

/// The outcome of a password check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verify {
    /// The credentials are right; `user` is the canonical address.
    Ok { user: String },
    /// Unknown user, wrong password, or a scheme that cannot be verified: callers
    /// answer the same way for all of them.
    Bad,
}

impl UserDb {
    /// Load `path`. A missing file is an empty database; a line that is not
    /// `user:password...` is skipped with a warning.
    pub fn load(path: &Path, domains: &[String]) -> anyhow::Result<UserDb> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read users file {}", path.display()));
            }
        };
        Ok(UserDb::parse(&text, domains, &path.display().to_string()))
    }

    /// Parse passwd-file text; `origin` names it in warnings.
    pub fn parse(text: &str, domains: &[String], origin: &str) -> UserDb {
        let mut inner = Inner {
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            ..Inner::default()
        };
        for (n, line) in text.lines().enumerate() {
            let Some((name, password)) = parse_line(line) else {
                if !is_comment(line) {
                    tracing::warn!(
                        file = origin,
                        line = n + 1,
                        "users: not user:password, skipped"
                    );
                }
                continue;
            };
            let user = canonical(&inner.domains, name);
            let (scheme, secret) = split_scheme(password);
            if let Scheme::Unknown(s) = &scheme {
                tracing::warn!(file = origin, line = n + 1, %user, scheme = %s, "users: unknown password scheme; this user cannot log in");
            }
            if inner.users.contains_key(&user) {
                tracing::warn!(file = origin, line = n + 1, %user, "users: duplicate entry ignored; the first one counts");
                continue;
            }
            inner.order.push(user.clone());
            inner.users.insert(
                user,
                Entry {
                    scheme,
                    secret: secret.to_owned(),
                },
            );
        }
        UserDb {
            inner: Arc::new(inner),
        }
    }

    /// The canonical form of a login name: lowercase; a bare name (`taro`) is that
    /// user at the first local domain.
    pub fn canonical(&self, login: &str) -> String {
        canonical(&self.inner.domains, login)
    }

    /// Case-insensitive; bare names mean the first local domain.
    pub fn exists(&self, address: &str) -> bool {
        self.inner.users.contains_key(&self.canonical(address))
    }

    /// Check a password. CPU-heavy by design: run it on a blocking thread. An unknown
    /// user still costs one hash, so timing does not tell which users exist.
    pub fn verify(&self, login: &str, password: &str) -> Verify {
        let user = self.canonical(login);
        let ok = match self.inner.users.get(&user) {
            Some(entry) if !password.is_empty() => check(entry, password),
            _ => {
                burn_one_hash(password);
                false
            }
        };
        if ok { Verify::Ok { user } } else { Verify::Bad }
    }

    /// Verify what a client sent, whatever the mechanism. CRAM-MD5 (RFC 2195) and APOP
    /// (RFC 1939 §7) need the shared secret itself, so they verify only for users
    /// stored with the PLAIN scheme; for everyone else they fail like a wrong password.
    pub fn verify_credentials(&self, credentials: &Credentials) -> Verify {
        let (user, expected, digest) = match credentials {
            Credentials::Password { user, password, .. } => {
                return self.verify(user, password.expose());
            }
            Credentials::CramMd5 {
                user,
                challenge,
                digest,
            } => (
                user,
                self.plaintext(user)
                    .map(|secret| cram_md5_hex(&secret, challenge)),
                digest,
            ),
            Credentials::Apop {
                user,
                timestamp,
                digest,
            } => (
                user,
                self.plaintext(user)
                    .map(|secret| apop_hex(timestamp, &secret)),
                digest,
            ),
        };
        match expected {
            Some(expected)
                if constant_time_eq(
                    expected.as_bytes(),
                    digest.to_ascii_lowercase().as_bytes(),
                ) =>
            {
                Verify::Ok {
                    user: self.canonical(user),
                }
            }
            _ => Verify::Bad,
        }
    }

    /// True when the user's hash is a legacy crypt scheme that `[users] rehash` replaces
    /// with the default. PLAIN is kept on purpose: APOP and CRAM-MD5 need the secret.
    pub fn needs_rehash(&self, address: &str) -> bool {
        self.inner
            .users
            .get(&self.canonical(address))
            .is_some_and(|e| {
                matches!(
                    e.scheme,
                    Scheme::Sha512Crypt
                        | Scheme::Sha256Crypt
                        | Scheme::Md5Crypt
                        | Scheme::BlfCrypt
                        | Scheme::Crypt
                )
            })
    }

    /// Every user with its scheme name, in file order.
    pub fn list(&self) -> Vec<(String, String)> {
        self.inner
            .order
            .iter()
            .filter_map(|u| {
                self.inner
                    .users
                    .get(u)
                    .map(|e| (u.clone(), scheme_name(&e.scheme)))
            })
            .collect()
    }

    /// A value that changes when the user's password entry changes (and is `None` when
    /// the user is gone): on reload the server revokes grants of users whose
    /// fingerprint changed. Only meaningful within one process.
    pub fn fingerprint(&self, address: &str) -> Option<u64> {
        let entry = self.inner.users.get(&self.canonical(address))?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        scheme_name(&entry.scheme).hash(&mut h);
        entry.secret.hash(&mut h);
        Some(h.finish())
    }

    /// The password of a PLAIN entry, for APOP (RFC 1939 §7), which needs the shared
    /// secret itself. `None` for every other scheme.
    pub fn plaintext(&self, address: &str) -> Option<String> {
        let entry = self.inner.users.get(&self.canonical(address))?;
        (entry.scheme == Scheme::Plain).then(|| entry.secret.clone())
    }

    pub fn len(&self) -> usize {
        self.inner.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.users.is_empty()
    }
}

/// A login name's canonical address (one definition, in core).
pub use popgate_core::relay::canonical_user as canonical;

fn is_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// `user:password[:rest]` into (user, password); `None` for comments, blank and
/// malformed lines.
fn parse_line(line: &str) -> Option<(&str, &str)> {
    if is_comment(line) {
        return None;
    }
    let (name, rest) = line.split_once(':')?;
    let password = rest.split(':').next().unwrap_or("");
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    Some((name, password))
}

/// `{SCHEME}secret` into its parts. Without a prefix, a `$...` string is crypt(3)
/// (Dovecot's default scheme CRYPT); anything else is unknown.
fn split_scheme(password: &str) -> (Scheme, &str) {
    if let Some(rest) = password.strip_prefix('{')
        && let Some((name, secret)) = rest.split_once('}')
    {
        return (Scheme::parse(name), secret);
    }
    if password.starts_with('$') {
        (Scheme::Crypt, password)
    } else {
        (Scheme::Unknown("(none)".to_owned()), password)
    }
}

fn scheme_name(scheme: &Scheme) -> String {
    match scheme {
        Scheme::Argon2 => "ARGON2ID",
        Scheme::Sha512Crypt => "SHA512-CRYPT",
        Scheme::Sha256Crypt => "SHA256-CRYPT",
        Scheme::Md5Crypt => "MD5-CRYPT",
        Scheme::BlfCrypt => "BLF-CRYPT",
        Scheme::Crypt => "CRYPT",
        Scheme::Plain => "PLAIN",
        Scheme::CramMd5 => "CRAM-MD5",
        Scheme::Unknown(s) => return s.clone(),
    }
    .to_owned()
}

fn check(entry: &Entry, password: &str) -> bool {
    let secret = entry.secret.as_str();
    match &entry.scheme {
        Scheme::Argon2 => match PasswordHash::new(secret) {
            Ok(hash) => Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok(),
            Err(_) => {
                burn_one_hash(password);
                false
            }
        },
        // The prefix must match the scheme: a `$1$` string under SHA512-CRYPT is a
        // mistake in the file, not something to accept.
        Scheme::Sha512Crypt => {
            secret.starts_with("$6$") && pwhash::sha512_crypt::verify(password, secret)
        }
        Scheme::Sha256Crypt => {
            secret.starts_with("$5$") && pwhash::sha256_crypt::verify(password, secret)
        }
        Scheme::Md5Crypt => {
            secret.starts_with("$1$") && pwhash::md5_crypt::verify(password, secret)
        }
        Scheme::BlfCrypt => secret.starts_with("$2") && pwhash::bcrypt::verify(password, secret),
        Scheme::Crypt => pwhash::unix::verify(password, secret),
        Scheme::Plain => constant_time_eq(password.as_bytes(), secret.as_bytes()),
        Scheme::CramMd5 | Scheme::Unknown(_) => {
            burn_one_hash(password);
            false
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Spend what verifying one default-scheme password costs, for logins that fail
/// before reaching a real hash.
fn burn_one_hash(password: &str) {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(b"popgate: not a user", &salt)
            .map(|h| h.to_string())
            .ok()
    });
    if let Some(dummy) = dummy
        && let Ok(hash) = PasswordHash::new(dummy)
    {
        let _ = Argon2::default().verify_password(password.as_bytes(), &hash);
    }
}

/// RFC 2195: HMAC-MD5 of the challenge keyed with the secret, as lowercase hex.
pub fn cram_md5_hex(secret: &str, challenge: &str) -> String {
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<md5::Md5>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(challenge.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// RFC 1939 §7: MD5 of the greeting's timestamp followed by the secret, lowercase hex.
pub fn apop_hex(timestamp: &str, secret: &str) -> String {
    use md5::Digest;
    let mut h = md5::Md5::new();
    h.update(timestamp.as_bytes());
    h.update(secret.as_bytes());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new password entry in the default scheme: `{ARGON2ID}$argon2id$v=19$...`.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow!("cannot hash the password: {e}"))?;
    Ok(format!("{{{DEFAULT_SCHEME}}}{hash}"))
}

/// Add a user with `password` (hashed in the default scheme). An error if the user
/// exists. The file is rewritten atomically, mode 0600, comments kept.
pub fn add_user(path: &Path, address: &str, password: &str) -> anyhow::Result<()> {
    let address = check_address(address)?;
    check_password(password)?;
    let mut file = PasswdFile::read(path)?;
    if file.find(&address).is_some() {
        bail!("user {address} already exists in {}", path.display());
    }
    file.lines
        .push(format!("{address}:{}", hash_password(password)?));
    file.write(path)
}

/// Replace a user's password (default scheme), keeping the line's other fields.
pub fn set_password(path: &Path, address: &str, password: &str) -> anyhow::Result<()> {
    check_password(password)?;
    set_hash(path, address, &hash_password(password)?)
}

/// Replace a user's stored hash (`{SCHEME}...`) with one already computed, keeping the
/// line's other fields; an error if there is no such user.
pub fn set_hash(path: &Path, address: &str, hash: &str) -> anyhow::Result<()> {
    let address = check_address(address)?;
    let mut file = PasswdFile::read(path)?;
    let Some(i) = file.find(&address) else {
        bail!("no user {address} in {}", path.display());
    };
    let line = &file.lines[i];
    let (name, rest) = line.split_once(':').unwrap_or((line.as_str(), ""));
    let extra = rest.split_once(':').map(|(_, extra)| extra);
    file.lines[i] = match extra {
        Some(extra) => format!("{name}:{hash}:{extra}"),
        None => format!("{name}:{hash}"),
    };
    file.write(path)
}

/// Remove a user's line; an error if there is none.
pub fn remove_user(path: &Path, address: &str) -> anyhow::Result<()> {
    let address = check_address(address)?;
    let mut file = PasswdFile::read(path)?;
    let Some(i) = file.find(&address) else {
        bail!("no user {address} in {}", path.display());
    };
    file.lines.remove(i);
    file.write(path)
}

/// `local@domain`, lowercased, safe as a passwd-file name and a Maildir path.
fn check_address(address: &str) -> anyhow::Result<String> {
    let address = address.trim().to_ascii_lowercase();
    let Some((local, domain)) = address.rsplit_once('@') else {
        bail!("{address:?} is not an address; expected local@domain");
    };
    if local.contains(':') || local.chars().any(char::is_whitespace) {
        bail!("{address:?}: a local part may not contain ':' or spaces");
    }
    crate::maildir::check_component(local).map_err(|why| anyhow!("{address:?}: {why}"))?;
    if !crate::config::is_domain(domain) {
        bail!("{address:?}: {domain:?} is not a domain name");
    }
    Ok(address)
}

fn check_password(password: &str) -> anyhow::Result<()> {
    if password.is_empty() {
        bail!("the password is empty");
    }
    if password.contains(['\n', '\r', '\0']) {
        bail!("a password may not contain line breaks or NUL");
    }
    Ok(())
}

/// The file as lines, for rewriting with comments and unknown lines kept.
struct PasswdFile {
    lines: Vec<String>,
}

impl PasswdFile {
    fn read(path: &Path) -> anyhow::Result<PasswdFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read users file {}", path.display()));
            }
        };
        Ok(PasswdFile {
            lines: text.lines().map(str::to_owned).collect(),
        })
    }

    /// The line of `address` (already lowercase), compared case-insensitively.
    fn find(&self, address: &str) -> Option<usize> {
        self.lines.iter().position(|line| {
            parse_line(line).is_some_and(|(name, _)| name.eq_ignore_ascii_case(address))
        })
    }

    fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = self.lines.join("\n");
        text.push('\n');
        crate::maildir::write_atomic(path, text.as_bytes())
            .with_context(|| format!("cannot write users file {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<String> {
        vec!["example.test".to_owned(), "other.test".to_owned()]
    }

    /// Reference hashes: the crypt ones from glibc/Drepper's SHA-crypt test vectors
    /// and `openssl passwd`; bcrypt from Openwall's crypt_blowfish tests; argon2i from
    /// the reference implementation's README.
    const KNOWN: &[(&str, &str, &str)] = &[
        (
            "sha512@example.test",
            "{SHA512-CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
            "Hello world!",
        ),
        (
            "sha256@example.test",
            "{SHA256-CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
            "Hello world!",
        ),
        (
            "md5@example.test",
            "{MD5-CRYPT}$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/",
            "password",
        ),
        (
            "blf@example.test",
            "{BLF-CRYPT}$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "U*U",
        ),
        (
            "blf2y@example.test",
            "{BLF-CRYPT}$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "U*U",
        ),
        (
            "argon2i@example.test",
            "{ARGON2I}$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
            "password",
        ),
        (
            "crypt@example.test",
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
            "Hello world!",
        ),
        ("plain@example.test", "{PLAIN}open sesame", "open sesame"),
        ("clear@example.test", "{CLEARTEXT}s3cret", "s3cret"),
    ];

    #[test]
    fn every_scheme_verifies_its_known_hash_and_refuses_a_wrong_password() {
        let text: String = KNOWN
            .iter()
            .map(|(user, hash, _)| format!("{user}:{hash}::::::\n"))
            .collect();
        let db = UserDb::parse(&text, &domains(), "test");
        for (user, _, password) in KNOWN {
            assert_eq!(
                db.verify(user, password),
                Verify::Ok {
                    user: (*user).to_owned()
                },
                "{user}"
            );
            assert_eq!(db.verify(user, "wrong"), Verify::Bad, "{user}");
            assert_eq!(db.verify(user, ""), Verify::Bad, "{user}");
        }
    }

    #[test]
    fn new_hashes_are_argon2id_and_verify() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("{ARGON2ID}$argon2id$v=19$"), "{hash}");
        let db = UserDb::parse(&format!("Taro@Example.TEST:{hash}\n"), &domains(), "test");
        assert_eq!(
            db.verify("taro", "correct horse"),
            Verify::Ok {
                user: "taro@example.test".to_owned()
            }
        );
        assert_eq!(
            db.verify("TARO@example.test", "correct horse").clone(),
            Verify::Ok {
                user: "taro@example.test".to_owned()
            }
        );
        assert_eq!(db.verify("taro@other.test", "correct horse"), Verify::Bad);
        assert_eq!(db.verify("taro", "Correct horse"), Verify::Bad);
        assert_eq!(
            db.list(),
            vec![("taro@example.test".to_owned(), "ARGON2ID".to_owned())]
        );
    }

    #[test]
    fn unknown_schemes_and_cram_md5_cannot_log_in() {
        let text = "\
a@example.test:{SSHA512}abcdef
b@example.test:{CRAM-MD5}e02d374fde0dc75a17a557039a3a5338c7743304777dccd376f332bee68d2cf6
c@example.test:nodollar
this line is junk
";
        let db = UserDb::parse(text, &domains(), "test");
        assert!(db.exists("a@example.test") && db.exists("b@example.test"));
        for user in ["a", "b", "c"] {
            assert_eq!(db.verify(user, "abcdef"), Verify::Bad);
        }
        assert_eq!(db.verify("nobody", "x"), Verify::Bad);
        let schemes: Vec<String> = db.list().into_iter().map(|(_, s)| s).collect();
        assert_eq!(schemes, ["SSHA512", "CRAM-MD5", "(none)"]);
    }

    #[test]
    fn canonical_exists_fingerprint_plaintext() {
        let db = UserDb::parse(
            "# users\n\nTaro@Example.test:{PLAIN}pw\n",
            &domains(),
            "test",
        );
        assert_eq!(db.canonical("Hanako"), "hanako@example.test");
        assert_eq!(db.canonical("X@Y.Test"), "x@y.test");
        assert!(db.exists("TARO") && db.exists("taro@EXAMPLE.test"));
        assert!(!db.exists("taro@other.test"));
        assert_eq!(db.plaintext("taro").as_deref(), Some("pw"));
        let before = db.fingerprint("taro");
        assert!(before.is_some());
        let changed = UserDb::parse("taro@example.test:{PLAIN}pw2\n", &domains(), "test");
        assert_ne!(changed.fingerprint("taro"), before);
        assert_eq!(changed.fingerprint("hanako"), None);
        assert_eq!(db.len(), 1);
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = UserDb::load(&dir.path().join("nope"), &domains()).expect("load");
        assert!(db.is_empty());
    }

    #[test]
    fn add_change_remove_keep_comments_and_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data").join("users");
        std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
        std::fs::write(
            &path,
            "# popgate users\n\nold@example.test:{PLAIN}x:1000:1000::/home/old::userdb_quota=1G\n",
        )
        .expect("seed");
        add_user(&path, "New@Example.test", "pw-one").expect("add");
        let err = add_user(&path, "new@example.test", "pw").expect_err("twice");
        assert!(err.to_string().contains("already exists"), "{err}");
        set_password(&path, "old@example.test", "pw-two").expect("passwd");
        assert!(set_password(&path, "ghost@example.test", "x").is_err());

        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# popgate users");
        assert_eq!(lines[1], "");
        assert!(
            lines[2].starts_with("old@example.test:{ARGON2ID}$argon2id$"),
            "{text}"
        );
        assert!(
            lines[2].ends_with(":1000:1000::/home/old::userdb_quota=1G"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("new@example.test:{ARGON2ID}"),
            "{text}"
        );

        let db = UserDb::load(&path, &domains()).expect("load");
        assert!(matches!(db.verify("new", "pw-one"), Verify::Ok { .. }));
        assert!(matches!(db.verify("old", "pw-two"), Verify::Ok { .. }));

        remove_user(&path, "NEW@example.test").expect("remove");
        assert!(remove_user(&path, "new@example.test").is_err());
        let db = UserDb::load(&path, &domains()).expect("load");
        assert!(!db.exists("new"));
        assert!(
            std::fs::read_to_string(&path)
                .expect("read")
                .starts_with("# popgate users\n\n")
        );

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn bad_addresses_and_passwords_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users");
        for bad in [
            "taro",
            "a:b@example.test",
            "../x@example.test",
            "x@exa mple",
            "x@",
        ] {
            assert!(add_user(&path, bad, "pw").is_err(), "{bad}");
        }
        assert!(add_user(&path, "x@example.test", "").is_err());
        assert!(add_user(&path, "x@example.test", "a\nb").is_err());
        assert!(!path.exists());
    }
}

#[cfg(test)]
mod credential_tests {
    use super::*;
    use popgate_core::Secret;

    fn db() -> UserDb {
        UserDb::parse(
            "tim@example.test:{PLAIN}tanstaaftanstaaf\nmrose@example.test:{PLAIN}tanstaaf\nhashed@example.test:{SHA512-CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1\n",
            &["example.test".to_owned()],
            "test",
        )
    }

    #[test]
    fn cram_md5_matches_rfc2195_example() {
        // RFC 2195 §2: user tim, secret tanstaaftanstaaf.
        let challenge = "<1896.697170952@postoffice.reston.mci.net>";
        assert_eq!(
            cram_md5_hex("tanstaaftanstaaf", challenge),
            "b913a602c7eda7a495b4e6e7334d3890"
        );
        let good = Credentials::CramMd5 {
            user: "tim".into(),
            challenge: challenge.into(),
            digest: "b913a602c7eda7a495b4e6e7334d3890".into(),
        };
        assert_eq!(
            db().verify_credentials(&good),
            Verify::Ok {
                user: "tim@example.test".into()
            }
        );
        let bad = Credentials::CramMd5 {
            user: "tim".into(),
            challenge: challenge.into(),
            digest: "00000000000000000000000000000000".into(),
        };
        assert_eq!(db().verify_credentials(&bad), Verify::Bad);
    }

    #[test]
    fn apop_matches_rfc1939_example() {
        // RFC 1939 §7: mrose, secret tanstaaf.
        let ts = "<1896.697170952@dbc.mtview.ca.us>";
        assert_eq!(apop_hex(ts, "tanstaaf"), "c4c9334bac560ecc979e58001b3e22fb");
        let ok = Credentials::Apop {
            user: "mrose".into(),
            timestamp: ts.into(),
            digest: "c4c9334bac560ecc979e58001b3e22fb".into(),
        };
        assert_eq!(
            db().verify_credentials(&ok),
            Verify::Ok {
                user: "mrose@example.test".into()
            }
        );
    }

    #[test]
    fn shared_secret_mechanisms_need_a_plain_stored_secret() {
        let c = Credentials::Apop {
            user: "hashed".into(),
            timestamp: "<1.2@x>".into(),
            digest: apop_hex("<1.2@x>", "Hello world!"),
        };
        assert_eq!(db().verify_credentials(&c), Verify::Bad);
        let p = Credentials::password("PLAIN", None, "hashed", Secret::new("Hello world!"));
        assert_eq!(
            db().verify_credentials(&p),
            Verify::Ok {
                user: "hashed@example.test".into()
            }
        );
    }
}
