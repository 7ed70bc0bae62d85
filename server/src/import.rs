//! `popgate import SOURCE --user ADDRESS`: bring an existing mailbox over without
//! making every POP3 client download everything again.
//!
//! Like `doveadm import` (one source mailbox into one user), run once per user:
//!
//! * A Maildir (a folder with `cur/` and/or `new/`): each message is stored under its
//!   own name, in `new/` or in `cur/` with its flags. With Dovecot's `dovecot-uidlist`
//!   or Courier's `courierimapuiddb` beside it, each message keeps the UIDL the old
//!   server gave: the uidlist's `P` field when it has one (Dovecot's POP3 UIDL
//!   override; empty means the base file name), else the old server's UIDL format
//!   applied to the message's IMAP UID and the folder's UIDVALIDITY. Dovecot's
//!   `pop3_uidl_format` default is `%08Xu%08Xv`; Courier's POP3 server answers
//!   `UIDVALIDITY-UID` (`%v-%u`). `--uidl-format` names another.
//! * An mbox file: split at its `From ` lines (after a blank line, or first), `>From `
//!   lines unquoted one level (mboxrd), each message delivered to the user's Maildir.
//!   A message with an `X-UIDL:` header keeps it as its UIDL (what UW-IMAP and
//!   Dovecot's `pop3_reuse_xuidl` gave).
//!
//! The UIDLs go to the one file POP3 reads them from
//! ([`crate::maildir::UIDL_FILE`]). The report says what was taken and what was
//! skipped, and why. Running it again skips what is already there.

use crate::maildir::{MailStore, add_uidls, base_name, is_valid_uidl};
use anyhow::{Context, bail};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// Dovecot's default `pop3_uidl_format` (Dovecot 2.x).
pub const DOVECOT_UIDL_FORMAT: &str = "%08Xu%08Xv";
/// What Courier's POP3 server answers: UIDVALIDITY-UID.
pub const COURIER_UIDL_FORMAT: &str = "%v-%u";

/// The uidlist file names, in the order they are looked for.
const DOVECOT_UIDLIST: &str = "dovecot-uidlist";
const COURIER_UIDLISTS: [&str; 2] = ["courierimapuiddb", "courierimapuidlist"];

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub source: String,
    /// "maildir with dovecot-uidlist", "mbox", ...
    pub kind: String,
    pub taken: usize,
    /// Of those taken, with the old server's UIDL kept.
    pub uidls_kept: usize,
    /// Skipped messages by reason, and the names (or mbox message numbers) skipped.
    pub skipped: BTreeMap<String, Vec<String>>,
}

impl ImportReport {
    fn skip(&mut self, reason: &str, what: String) {
        self.skipped
            .entry(reason.to_owned())
            .or_default()
            .push(what);
    }

    pub fn skipped_total(&self) -> usize {
        self.skipped.values().map(Vec::len).sum()
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "source: {} ({})", self.source, self.kind)?;
        writeln!(
            f,
            "taken: {} message{} ({} with the old server's UIDL)",
            self.taken,
            if self.taken == 1 { "" } else { "s" },
            self.uidls_kept
        )?;
        writeln!(f, "skipped: {}", self.skipped_total())?;
        for (reason, items) in &self.skipped {
            writeln!(f, "  {} {reason}: {}", items.len(), items.join(", "))?;
        }
        Ok(())
    }
}

/// A uidlist: UIDVALIDITY, and per base file name its UID and `P` field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uidlist {
    pub uid_validity: u32,
    pub entries: HashMap<String, UidEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UidEntry {
    pub uid: u32,
    /// Dovecot's `P` extension: the POP3 UIDL overriding the format; `Some("")`
    /// means the base file name.
    pub pop3_uidl: Option<String>,
}

/// Parse a `dovecot-uidlist` (version 3: `3 V<uidvalidity> N<nextuid> ...` then
/// `<uid> [<key><value> ...] :<filename>`; version 1, also Courier's
/// `courierimapuiddb`: `1 <uidvalidity> <nextuid>` then `<uid> <filename>`).
/// Entries are keyed by base name (before `:2,`).
pub fn parse_uidlist(text: &str) -> anyhow::Result<Uidlist> {
    let mut lines = text.lines();
    let header = lines.next().context("the uidlist is empty")?;
    let mut fields = header.split_ascii_whitespace();
    let version = fields.next().unwrap_or("");
    let mut list = Uidlist::default();
    match version {
        "1" | "2" => {
            list.uid_validity = fields
                .next()
                .and_then(|v| v.parse().ok())
                .context("version 1 uidlist header without UIDVALIDITY")?;
        }
        "3" => {
            list.uid_validity = fields
                .find_map(|f| f.strip_prefix('V'))
                .and_then(|v| v.parse().ok())
                .context("version 3 uidlist header without V<uidvalidity>")?;
        }
        other => bail!("uidlist version {other:?} is not one popgate reads (1 or 3)"),
    }
    for line in lines {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let Some((uid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(uid) = uid.parse::<u32>() else {
            continue;
        };
        let (extensions, name) = if version == "3" {
            match rest.split_once(':') {
                Some((ext, name)) => (ext, name),
                None => continue,
            }
        } else {
            // Version 2 has a flags field before the name.
            let name = rest.rsplit(' ').next().unwrap_or(rest);
            ("", name)
        };
        let pop3_uidl = extensions
            .split_ascii_whitespace()
            .find_map(|f| f.strip_prefix('P'))
            .map(str::to_owned)
            .or_else(|| {
                // `P` with an empty value is a lone "P" token.
                extensions
                    .split_ascii_whitespace()
                    .any(|f| f == "P")
                    .then(String::new)
            });
        list.entries
            .insert(base_name(name).to_owned(), UidEntry { uid, pop3_uidl });
    }
    Ok(list)
}

/// Apply a POP3 UIDL format as Dovecot's `pop3_uidl_format` does: `%u` the UID, `%v`
/// the UIDVALIDITY, `%f` the base file name, `%%` a percent sign; `%X`/`%x` print a
/// number in upper- or lowercase hex and a width with a leading 0 pads it
/// (`%08Xu`).
pub fn format_uidl(
    format: &str,
    uid: u32,
    uid_validity: u32,
    file: &str,
) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut zero = false;
        let mut width = 0usize;
        let mut hex: Option<bool> = None;
        if chars.peek() == Some(&'0') {
            zero = true;
            chars.next();
        }
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            width = width * 10 + d as usize;
            chars.next();
        }
        match chars.peek() {
            Some('X') => {
                hex = Some(true);
                chars.next();
            }
            Some('x') => {
                hex = Some(false);
                chars.next();
            }
            _ => {}
        }
        let value = match chars.next() {
            Some('%') => {
                out.push('%');
                continue;
            }
            Some('u') => uid,
            Some('v') => uid_validity,
            Some('f') => {
                out.push_str(file);
                continue;
            }
            other => bail!(
                "{format:?}: unknown variable %{}",
                other.map(String::from).unwrap_or_default()
            ),
        };
        let text = match hex {
            Some(true) => format!("{value:X}"),
            Some(false) => format!("{value:x}"),
            None => value.to_string(),
        };
        let pad = if zero { '0' } else { ' ' };
        for _ in text.len()..width {
            out.push(pad);
        }
        out.push_str(&text);
    }
    Ok(out)
}

/// Import `source` into `user`'s Maildir in `store`.
pub fn import(
    store: &MailStore,
    user: &str,
    source: &Path,
    uidl_format: Option<&str>,
) -> anyhow::Result<ImportReport> {
    let meta = fs::metadata(source).with_context(|| format!("cannot read {}", source.display()))?;
    if meta.is_dir() {
        import_maildir(store, user, source, uidl_format)
    } else {
        import_mbox(store, user, source)
    }
}

fn import_maildir(
    store: &MailStore,
    user: &str,
    source: &Path,
    uidl_format: Option<&str>,
) -> anyhow::Result<ImportReport> {
    if !source.join("cur").is_dir() && !source.join("new").is_dir() {
        bail!(
            "{} is neither a Maildir (no cur/ or new/) nor an mbox file",
            source.display()
        );
    }
    let mut report = ImportReport {
        source: source.display().to_string(),
        ..ImportReport::default()
    };
    let (uidlist, default_format, kind) =
        if let Ok(text) = fs::read_to_string(source.join(DOVECOT_UIDLIST)) {
            (
                Some(parse_uidlist(&text).context("reading dovecot-uidlist")?),
                DOVECOT_UIDL_FORMAT,
                "maildir with dovecot-uidlist",
            )
        } else if let Some(text) = COURIER_UIDLISTS
            .iter()
            .find_map(|n| fs::read_to_string(source.join(n)).ok())
        {
            (
                Some(parse_uidlist(&text).context("reading courierimapuiddb")?),
                COURIER_UIDL_FORMAT,
                "maildir with courierimapuiddb",
            )
        } else {
            (None, DOVECOT_UIDL_FORMAT, "maildir without a uidlist")
        };
    report.kind = kind.to_owned();
    let format = uidl_format.unwrap_or(default_format);
    // Check the format once, before anything is stored.
    format_uidl(format, 1, 1, "x")?;

    let dest = store.maildir(user)?;
    let present: HashSet<String> = store
        .open(user)?
        .iter()
        .filter_map(|e| {
            e.path
                .file_name()
                .and_then(|n| n.to_str())
                .map(|n| base_name(n).to_owned())
        })
        .collect();
    let mut uidls: Vec<(String, String)> = Vec::new();
    for (sub, cur) in [("new", false), ("cur", true)] {
        let mut names: Vec<(PathBuf, String)> = match fs::read_dir(source.join(sub)) {
            Ok(listing) => listing
                .filter_map(|e| e.ok())
                .map(|e| (e.path(), e.file_name().to_string_lossy().into_owned()))
                .collect(),
            Err(_) => continue,
        };
        names.sort_by(|a, b| a.1.cmp(&b.1));
        for (path, name) in names {
            let shown = format!("{sub}/{name}");
            if name.starts_with('.') {
                report.skip("hidden file", shown);
                continue;
            }
            if !path.is_file() {
                report.skip("not a regular file", shown);
                continue;
            }
            let base = base_name(&name).to_owned();
            if present.contains(&base) {
                report.skip("already present", shown);
                continue;
            }
            let contents = match fs::read(&path) {
                Ok(c) => c,
                Err(e) => {
                    report.skip(&format!("unreadable ({})", e.kind()), shown);
                    continue;
                }
            };
            if contents.is_empty() {
                report.skip("empty file", shown);
                continue;
            }
            let uidl = match uidlist
                .as_ref()
                .and_then(|l| l.entries.get(&base).map(|e| (l, e)))
            {
                Some((
                    _,
                    UidEntry {
                        pop3_uidl: Some(p), ..
                    },
                )) if p.is_empty() => Some(base.clone()),
                Some((
                    _,
                    UidEntry {
                        pop3_uidl: Some(p), ..
                    },
                )) => Some(p.clone()),
                Some((l, e)) => Some(format_uidl(format, e.uid, l.uid_validity, &base)?),
                None => None,
            };
            let uidl = match uidl {
                Some(u) if is_valid_uidl(&u) => Some(u),
                Some(_) => {
                    report.skip(
                        "UIDL not valid in POP3 (RFC 1939 §7); stored, new UIDL",
                        shown.clone(),
                    );
                    None
                }
                None => None,
            };
            match store.import_file(user, cur, &name, &contents) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    report.skip("already present", shown);
                    continue;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("storing {shown} in {}", dest.display()));
                }
            }
            report.taken += 1;
            if let Some(u) = uidl {
                report.uidls_kept += 1;
                uidls.push((base, u));
            }
        }
    }
    if !uidls.is_empty() {
        add_uidls(&dest, &uidls)
            .with_context(|| format!("writing the UIDLs in {}", dest.display()))?;
    }
    Ok(report)
}

/// Split an mbox into messages (mboxrd: `>From ` lines lose one `>`).
pub fn split_mbox(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut previous_blank = true;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") && previous_blank {
            if let Some(m) = current.take() {
                messages.push(m);
            }
            current = Some(Vec::new());
            previous_blank = false;
            continue;
        }
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        previous_blank = content.is_empty();
        let Some(m) = current.as_mut() else {
            // Text before the first From_ line is not a message.
            continue;
        };
        let quoted = line
            .iter()
            .position(|&b| b != b'>')
            .is_some_and(|i| i > 0 && line[i..].starts_with(b"From "));
        m.extend_from_slice(if quoted { &line[1..] } else { line });
    }
    messages.extend(current);
    // The blank line before each From_ line separates; it is not the message's.
    for m in &mut messages {
        if m.ends_with(b"\n\n") {
            m.pop();
        } else if m.ends_with(b"\r\n\r\n") {
            m.truncate(m.len() - 2);
        }
    }
    messages
}

/// The `X-UIDL:` header of a message, when it has a valid one.
fn x_uidl(message: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("X-UIDL")
        {
            let value = value.trim();
            return is_valid_uidl(value).then(|| value.to_owned());
        }
    }
    None
}

fn import_mbox(store: &MailStore, user: &str, source: &Path) -> anyhow::Result<ImportReport> {
    let bytes = fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
    let mut report = ImportReport {
        source: source.display().to_string(),
        kind: "mbox".into(),
        ..ImportReport::default()
    };
    if !bytes.starts_with(b"From ") {
        bail!(
            "{} does not start with a `From ` line: not an mbox file",
            source.display()
        );
    }
    let dest = store.maildir(user)?;
    let mut uidls = Vec::new();
    for (i, message) in split_mbox(&bytes).into_iter().enumerate() {
        let shown = format!("message {}", i + 1);
        if message.iter().all(|b| b.is_ascii_whitespace()) {
            report.skip("empty message", shown);
            continue;
        }
        let name = store
            .deliver(user, &[&message])
            .with_context(|| format!("storing {shown}"))?;
        report.taken += 1;
        if let Some(u) = x_uidl(&message) {
            report.uidls_kept += 1;
            uidls.push((base_name(&name).to_owned(), u));
        }
    }
    if !uidls.is_empty() {
        add_uidls(&dest, &uidls)
            .with_context(|| format!("writing the UIDLs in {}", dest.display()))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_and_courier_uidlists_parse() {
        let list = parse_uidlist(
            "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n\
             25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n\
             25017 W2481 P0000abcd :1276533073.M242911P3632.kurkku:2,F\n\
             25018 G1234 P :1276533074.M1.kurkku\n",
        )
        .expect("v3");
        assert_eq!(list.uid_validity, 1275660208);
        let e = &list.entries["1276528487.M364837P9451.kurkku,S=1355,W=1394"];
        assert_eq!((e.uid, e.pop3_uidl.as_deref()), (25006, None));
        assert_eq!(
            list.entries["1276533073.M242911P3632.kurkku"]
                .pop3_uidl
                .as_deref(),
            Some("0000abcd")
        );
        assert_eq!(
            list.entries["1276533074.M1.kurkku"].pop3_uidl.as_deref(),
            Some("")
        );
        let courier =
            parse_uidlist("1 1100000000 3\n1 1099999999.123.host:2,S\n2 1099999999.124.host\n")
                .expect("v1");
        assert_eq!(courier.uid_validity, 1100000000);
        assert_eq!(courier.entries["1099999999.123.host"].uid, 1);
        assert!(parse_uidlist("9 x\n").is_err());
        assert!(parse_uidlist("").is_err());
    }

    #[test]
    fn uidl_formats_as_dovecot_prints_them() {
        assert_eq!(
            format_uidl(DOVECOT_UIDL_FORMAT, 25006, 1275660208, "f").expect("fmt"),
            "000061AE4C0907B0"
        );
        assert_eq!(
            format_uidl(COURIER_UIDL_FORMAT, 2, 1100000000, "f").expect("fmt"),
            "1100000000-2"
        );
        assert_eq!(format_uidl("%f", 1, 1, "base").expect("fmt"), "base");
        assert_eq!(
            format_uidl("%08xu%%", 255, 1, "f").expect("fmt"),
            "000000ff%"
        );
        assert!(format_uidl("%q", 1, 1, "f").is_err());
    }

    #[test]
    fn mboxrd_splits_at_from_lines_and_unquotes_one_level() {
        let mbox = b"From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\n>From the start\n>>From two levels\nFrom inside a paragraph\n\nFrom b@x Mon Jan  1 00:00:01 2024\nSubject: two\nX-UIDL: old-uidl-2\n\nbody\n";
        let m = split_mbox(mbox);
        assert_eq!(m.len(), 2);
        assert_eq!(
            String::from_utf8_lossy(&m[0]),
            "Subject: one\n\nFrom the start\n>From two levels\nFrom inside a paragraph\n"
        );
        assert_eq!(
            String::from_utf8_lossy(&m[1]),
            "Subject: two\nX-UIDL: old-uidl-2\n\nbody\n"
        );
        assert_eq!(x_uidl(&m[1]).as_deref(), Some("old-uidl-2"));
        assert_eq!(x_uidl(&m[0]), None);
    }

    #[test]
    fn a_maildir_import_keeps_uidls_and_skips_what_is_there() {
        let src = tempfile::tempdir().expect("tmp");
        let data = tempfile::tempdir().expect("tmp");
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(src.path().join(sub)).expect("mkdir");
        }
        fs::write(
            src.path().join("cur/100.M1P1.host,S=20:2,S"),
            "Subject: a\r\n\r\nbody\r\n",
        )
        .expect("w");
        fs::write(
            src.path().join("new/101.M2P1.host"),
            "Subject: b\r\n\r\nbody\r\n",
        )
        .expect("w");
        fs::write(src.path().join("new/102.M3P1.host"), "").expect("w");
        fs::write(
            src.path().join("dovecot-uidlist"),
            "3 V1700000000 N3\n1 :100.M1P1.host,S=20:2,S\n2 :101.M2P1.host\n",
        )
        .expect("w");
        let store = MailStore::new(data.path().join("mail"));
        let user = "taro@example.test";
        let r = import(&store, user, src.path(), None).expect("import");
        assert_eq!((r.taken, r.uidls_kept), (2, 2), "{r}");
        assert_eq!(r.skipped["empty file"], ["new/102.M3P1.host"]);
        let uids: Vec<String> = store
            .open(user)
            .expect("open")
            .into_iter()
            .map(|e| e.uid)
            .collect();
        assert_eq!(uids, ["000000016553F100", "000000026553F100"]);
        let again = import(&store, user, src.path(), None).expect("again");
        assert_eq!(again.taken, 0);
        assert_eq!(again.skipped["already present"].len(), 2, "{again}");
    }
}
