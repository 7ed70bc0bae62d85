//! The first-run demo (DESIGN.md "Defaults"): with no config file and no users file,
//! popgate creates two users with random passwords, an alias, and a 0600 file with the
//! credentials in the data folder, so `popgate serve` alone is a working mail server.

use crate::config::Config;
use anyhow::Context;
use rand::Rng;
use rand::distributions::Alphanumeric;
use std::path::{Path, PathBuf};

/// The credentials file in the data folder: one `address password` line per user.
pub const CREDENTIALS_FILE: &str = "demo-credentials.txt";

/// Local parts of the demo users.
pub const DEMO_USERS: [&str; 2] = ["taro", "hanako"];

const PASSWORD_LEN: usize = 16;

pub fn credentials_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CREDENTIALS_FILE)
}

/// Create the demo users when running on the embedded defaults (no config file) and
/// the users file does not exist yet. Returns the `(address, password)` pairs made,
/// or `None` when there was nothing to do.
pub fn ensure_demo_users(config: &Config) -> anyhow::Result<Option<Vec<(String, String)>>> {
    if config.source.is_some() || config.users_file.exists() {
        return Ok(None);
    }
    let domain = config.primary_domain();
    let mut pairs = Vec::new();
    for local in DEMO_USERS {
        let address = format!("{local}@{domain}");
        let password = random_password();
        crate::users::add_user(&config.users_file, &address, &password)?;
        pairs.push((address, password));
    }
    if !config.aliases_file.exists() {
        let text = format!(
            "# alias  target[, target...]\ninfo@{domain}  {}@{domain}\n",
            DEMO_USERS[0]
        );
        crate::maildir::write_atomic(&config.aliases_file, text.as_bytes())
            .with_context(|| format!("cannot write {}", config.aliases_file.display()))?;
    }
    let credentials: String = pairs
        .iter()
        .map(|(address, password)| format!("{address} {password}\n"))
        .collect();
    let path = credentials_path(&config.data_dir);
    crate::maildir::write_atomic(&path, credentials.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some(pairs))
}

/// The demo credentials file's text, if there is one.
pub fn read_demo_credentials(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(credentials_path(data_dir)).ok()
}

/// A random password of letters and digits from the OS's CSPRNG.
pub fn random_password() -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aliases::Aliases;
    use crate::users::{UserDb, Verify};

    fn embedded_in(dir: &Path) -> Config {
        let mut config = Config::embedded();
        config.data_dir = dir.join("popgate-data");
        config.users_file = config.data_dir.join("users");
        config.aliases_file = config.data_dir.join("aliases");
        config
    }

    #[test]
    fn first_run_creates_users_alias_and_credentials_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = embedded_in(dir.path());
        let pairs = ensure_demo_users(&config).expect("demo").expect("created");
        assert_eq!(
            pairs.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
            ["taro@example.test", "hanako@example.test"]
        );
        let db = UserDb::load(&config.users_file, &config.domains).expect("users");
        for (address, password) in &pairs {
            assert_eq!(password.len(), 16);
            assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
            assert_eq!(
                db.verify(address, password),
                Verify::Ok {
                    user: address.clone()
                }
            );
        }
        assert!(db.list().iter().all(|(_, scheme)| scheme == "ARGON2ID"));
        let aliases = Aliases::load(&config.aliases_file, &config.domains).expect("aliases");
        assert_eq!(
            aliases.resolve("info@example.test"),
            Some(vec!["taro@example.test".to_owned()])
        );
        let text = read_demo_credentials(&config.data_dir).expect("credentials");
        assert_eq!(
            text,
            format!(
                "taro@example.test {}\nhanako@example.test {}\n",
                pairs[0].1, pairs[1].1
            )
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(credentials_path(&config.data_dir))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Second run: the users file exists, nothing changes.
        assert_eq!(ensure_demo_users(&config).expect("demo"), None);
    }

    #[test]
    fn a_config_file_means_no_demo() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = embedded_in(dir.path());
        config.source = Some(dir.path().join("popgate.toml"));
        assert_eq!(ensure_demo_users(&config).expect("demo"), None);
        assert!(!config.users_file.exists());
        assert_eq!(read_demo_credentials(&config.data_dir), None);
    }
}
