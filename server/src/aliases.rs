//! The aliases file: `alias@domain  target[, target...]` lines (`alias@domain: target`
//! works too), `#` comments. Targets may be local or remote addresses; a bare target
//! name means that user at the first local domain, and a bare alias name applies at
//! every local domain (as `/etc/aliases` does for a single-domain host).
//!
//! `postmaster` exists even when not listed (RFC 5321 §4.5.1): bare or at any local
//! domain it resolves to its configured targets, else to `postmaster@<that domain>`.

use anyhow::Context;
use std::collections::HashMap;
use std::io;
use std::path::Path;

/// Expansion stops this deep; a target reached deeper is delivered as it is.
pub const MAX_DEPTH: usize = 8;

/// RFC 5321 §4.5.1: the reserved mailbox, matched case-insensitively.
const POSTMASTER: &str = "postmaster";

#[derive(Clone, Debug, Default)]
pub struct Aliases {
    domains: Vec<String>,
    /// Lowercased alias address to its targets, in file order.
    map: HashMap<String, Vec<String>>,
}

impl Aliases {
    /// Load `path`; a missing file is no aliases. Malformed lines are skipped with a
    /// warning.
    pub fn load(path: &Path, domains: &[String]) -> anyhow::Result<Aliases> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read aliases file {}", path.display()));
            }
        };
        Ok(Aliases::parse(&text, domains, &path.display().to_string()))
    }

    /// Parse aliases text; `origin` names it in warnings.
    pub fn parse(text: &str, domains: &[String], origin: &str) -> Aliases {
        let mut aliases = Aliases {
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            map: HashMap::new(),
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let split = line
                .find(|c: char| c == ':' || c.is_whitespace())
                .unwrap_or(line.len());
            let (name, rest) = line.split_at(split);
            let rest = rest.trim_start().strip_prefix(':').unwrap_or(rest);
            let targets: Vec<String> = rest
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|t| !t.is_empty())
                .map(|t| aliases.target(t))
                .collect();
            if name.is_empty() || targets.is_empty() {
                tracing::warn!(
                    file = origin,
                    line = n + 1,
                    "aliases: expected `alias@domain target[, target...]`, skipped"
                );
                continue;
            }
            let keys: Vec<String> = if name.contains('@') {
                vec![name.to_ascii_lowercase()]
            } else {
                let local = name.to_ascii_lowercase();
                aliases
                    .domains
                    .iter()
                    .map(|d| format!("{local}@{d}"))
                    .collect()
            };
            for key in keys {
                // Two lines for one alias: their targets add up, as in Postfix.
                let entry = aliases.map.entry(key).or_default();
                for t in &targets {
                    if !entry.contains(t) {
                        entry.push(t.clone());
                    }
                }
            }
        }
        aliases
    }

    /// Where mail for `address` goes, or `None` when it is not an alias. Targets that
    /// are aliases themselves are expanded up to [`MAX_DEPTH`] levels; a target that
    /// loops back (`taro: taro, backup`) is delivered as it is.
    pub fn resolve(&self, address: &str) -> Option<Vec<String>> {
        let key = self.key(address);
        if !self.map.contains_key(&key) {
            return self
                .postmaster_domain(&key)
                .map(|d| vec![format!("{POSTMASTER}@{d}")]);
        }
        let mut out = Vec::new();
        let mut path = vec![key.clone()];
        self.expand(&key, &mut path, &mut out);
        Some(out)
    }

    /// True for aliases and for postmaster at any local domain.
    pub fn contains(&self, address: &str) -> bool {
        let key = self.key(address);
        self.map.contains_key(&key) || self.postmaster_domain(&key).is_some()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn expand(&self, key: &str, path: &mut Vec<String>, out: &mut Vec<String>) {
        let Some(targets) = self.map.get(key) else {
            return;
        };
        for target in targets {
            let t = target.to_ascii_lowercase();
            let is_alias = self.map.contains_key(&t);
            if !is_alias || path.contains(&t) || path.len() >= MAX_DEPTH {
                if is_alias && !path.contains(&t) {
                    tracing::warn!(alias = %key, target = %t, "aliases: nested too deep; delivering to the target as it is");
                }
                if !out.iter().any(|o: &String| o.eq_ignore_ascii_case(target)) {
                    out.push(target.clone());
                }
                continue;
            }
            path.push(t.clone());
            self.expand(&t, path, out);
            path.pop();
        }
    }

    /// The lookup key: lowercased; a bare name is at the first local domain.
    fn key(&self, address: &str) -> String {
        let lower = address.trim().to_ascii_lowercase();
        match (lower.contains('@'), self.domains.first()) {
            (false, Some(d)) => format!("{lower}@{d}"),
            _ => lower,
        }
    }

    /// A target as written, with a bare name at the first local domain and the domain
    /// lowercased (local parts are kept for remote mailboxes).
    fn target(&self, t: &str) -> String {
        match t.rsplit_once('@') {
            Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
            None => match self.domains.first() {
                Some(d) => format!("{}@{d}", t.to_ascii_lowercase()),
                None => t.to_ascii_lowercase(),
            },
        }
    }

    /// The local domain of `postmaster@<domain>`, if `key` is that.
    fn postmaster_domain(&self, key: &str) -> Option<&str> {
        let (local, domain) = key.rsplit_once('@')?;
        if local != POSTMASTER {
            return None;
        }
        self.domains
            .iter()
            .find(|d| d.as_str() == domain)
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<String> {
        vec!["example.test".to_owned(), "second.test".to_owned()]
    }

    fn resolve(a: &Aliases, address: &str) -> Option<Vec<String>> {
        a.resolve(address)
    }

    fn list(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn lines_and_resolution() {
        let text = "\
# aliases
info@example.test   taro@example.test
Sales@Example.TEST: hanako, Partner@Remote.TEST
team@example.test  info@example.test,sales@example.test  taro@example.test
abuse  taro

broken@example.test
";
        let a = Aliases::parse(text, &domains(), "test");
        let cases: &[(&str, Option<Vec<String>>)] = &[
            ("info@example.test", list(&["taro@example.test"])),
            ("INFO@Example.Test", list(&["taro@example.test"])),
            ("info", list(&["taro@example.test"])),
            (
                "sales@example.test",
                list(&["hanako@example.test", "Partner@remote.test"]),
            ),
            (
                "team@example.test",
                list(&[
                    "taro@example.test",
                    "hanako@example.test",
                    "Partner@remote.test",
                ]),
            ),
            ("abuse@second.test", list(&["taro@example.test"])),
            ("broken@example.test", None),
            ("taro@example.test", None),
            ("info@second.test", None),
        ];
        for (address, want) in cases {
            assert_eq!(&resolve(&a, address), want, "{address}");
            assert_eq!(a.contains(address), want.is_some(), "{address}");
        }
    }

    #[test]
    fn postmaster_always_exists() {
        let a = Aliases::parse("", &domains(), "test");
        assert_eq!(
            resolve(&a, "postmaster"),
            list(&["postmaster@example.test"])
        );
        assert_eq!(
            resolve(&a, "PostMaster@Second.Test"),
            list(&["postmaster@second.test"])
        );
        assert!(a.contains("POSTMASTER@example.test"));
        assert_eq!(resolve(&a, "postmaster@remote.test"), None);
        assert!(!a.contains("postmaster@remote.test"));

        let a = Aliases::parse("postmaster taro@example.test\n", &domains(), "test");
        assert_eq!(
            resolve(&a, "postmaster@second.test"),
            list(&["taro@example.test"])
        );
    }

    #[test]
    fn loops_and_depth_are_bounded() {
        let text = "\
a@example.test b@example.test
b@example.test a@example.test, real@example.test
self@example.test self@example.test, backup@remote.test
";
        let a = Aliases::parse(text, &domains(), "test");
        assert_eq!(
            resolve(&a, "a@example.test"),
            list(&["a@example.test", "real@example.test"])
        );
        assert_eq!(
            resolve(&a, "self@example.test"),
            list(&["self@example.test", "backup@remote.test"])
        );

        // A chain longer than MAX_DEPTH stops at the target reached there.
        let chain: String = (0..20)
            .map(|i| format!("l{i}@example.test l{}@example.test\n", i + 1))
            .collect();
        let a = Aliases::parse(&chain, &domains(), "test");
        let got = resolve(&a, "l0@example.test").expect("alias");
        assert_eq!(got, vec![format!("l{MAX_DEPTH}@example.test")]);
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Aliases::load(&dir.path().join("aliases"), &domains()).expect("load");
        assert!(a.is_empty());
        assert!(a.contains("postmaster"));
    }
}
