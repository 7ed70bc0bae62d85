//! Process privilege: a private umask, and dropping root once the listeners are bound.
//!
//! popgate started as root (to bind ports 25, 110, 465, 587, 995) keeps root only for
//! binding: [`drop_to`] switches to `[server] user` (and `group`) before the data
//! folder, the users file or the TLS key is read and before any client is served, as
//! Postfix's and Dovecot's daemons do. The data folder and the TLS pair must therefore
//! belong to (or be readable by) that user; SIGHUP re-reads the certificate as that
//! user too.
//!
//! Files: [`private_umask`] makes everything popgate creates 0600 and every folder
//! 0700 (mail, queue, credentials, keys), whatever the umask it was started with;
//! Maildir delivery also sets those modes explicitly.

use crate::config::ServerSettings;

/// Set the umask to 077 (see the module docs). Call first thing in `main`.
#[cfg(unix)]
pub fn private_umask() {
    use nix::sys::stat::{Mode, umask};
    umask(Mode::from_bits_truncate(0o077));
}

#[cfg(not(unix))]
pub fn private_umask() {}

/// Who the process ended up running as, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `[server] user` is not set.
    Unchanged { root: bool },
    /// Switched from root to this user, uid and gid.
    Dropped { user: String, uid: u32, gid: u32 },
    /// Already running as the configured user (not started as root).
    AlreadyUser { user: String },
}

/// Switch to `[server] user`/`group` when running as root; see the module docs.
/// An unknown user or group, or a configured user when not root (and not that user
/// already), is an error: popgate never serves with privileges other than the ones
/// configured.
#[cfg(unix)]
pub fn drop_to(settings: &ServerSettings) -> anyhow::Result<Outcome> {
    use anyhow::{Context, bail};
    use nix::unistd::{Gid, Group, Uid, User, geteuid, getuid, setgid, setgroups, setuid};

    let root = geteuid().is_root();
    let Some(name) = &settings.user else {
        return Ok(Outcome::Unchanged { root });
    };
    let user = User::from_name(name)
        .with_context(|| format!("key `server.user`: looking up user {name:?}"))?
        .with_context(|| format!("key `server.user`: no user named {name:?}"))?;
    let gid = match &settings.group {
        Some(group) => {
            Group::from_name(group)
                .with_context(|| format!("key `server.group`: looking up group {group:?}"))?
                .with_context(|| format!("key `server.group`: no group named {group:?}"))?
                .gid
        }
        None => user.gid,
    };
    if !root {
        if geteuid() == user.uid {
            return Ok(Outcome::AlreadyUser { user: name.clone() });
        }
        bail!(
            "key `server.user`: cannot switch to {name:?}: not running as root (uid {})",
            getuid()
        );
    }
    // Supplementary groups first (root's would otherwise survive), then the group,
    // then the user: after setuid there is no way back to change the others.
    setgroups(&[gid]).context("dropping supplementary groups")?;
    setgid(gid).with_context(|| format!("switching to group id {gid}"))?;
    setuid(user.uid).with_context(|| format!("switching to user {name:?}"))?;
    // Belt and braces: a process that could become root again has not dropped.
    if user.uid != Uid::from_raw(0) && setuid(Uid::from_raw(0)).is_ok() {
        bail!("still able to regain root after switching to {name:?}");
    }
    Ok(Outcome::Dropped {
        user: name.clone(),
        uid: user.uid.as_raw(),
        gid: Gid::as_raw(gid),
    })
}

#[cfg(not(unix))]
pub fn drop_to(settings: &ServerSettings) -> anyhow::Result<Outcome> {
    match &settings.user {
        Some(_) => anyhow::bail!("key `server.user`: switching users needs a Unix system"),
        None => Ok(Outcome::Unchanged { root: false }),
    }
}
