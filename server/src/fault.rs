//! Fault points for crash and disk-full tests, compiled in only with the
//! `fault-points` feature (off by default; the end-to-end tests build a separate
//! binary with it, into `target/fault-points`).
//!
//! A fault point is one line where the store makes a message durable:
//! `fault::point("after-write-before-fsync")?;`. Without the feature it is an empty
//! function the compiler removes. With it, `POPGATE_FAULT` (read once, at the first
//! point reached) arms one point:
//!
//! * `POPGATE_FAULT=<point>`: the process aborts there (`std::process::abort`, no
//!   unwinding, no destructors, like a power cut as far as this process goes);
//! * `POPGATE_FAULT=<point>:enospc`: the point returns the disk-full error instead
//!   (ENOSPC, [`std::io::ErrorKind::StorageFull`]);
//! * `<point>@<n>` (either form): only the n-th time the point is reached acts, so a
//!   test can have a first message acknowledged and crash on the second.
//!
//! The points, in the order a delivery reaches them:
//!
//! * `before-write`: the message file in `tmp/` is created, nothing written yet;
//! * `after-write-before-fsync`: its bytes are written, not yet fsynced;
//! * `after-fsync-before-reply`: every copy is in `new/` (or the queue) and fsynced,
//!   the 250 not yet written;
//! * `during-update`: POP3 UPDATE removed one marked message and not the others.

use std::io;

/// Whether the binary was built with fault points.
pub const ENABLED: bool = cfg!(feature = "fault-points");

/// The environment variable that arms a point.
pub const VARIABLE: &str = "POPGATE_FAULT";

/// Act out the armed fault if `name` is the armed point.
#[cfg(not(feature = "fault-points"))]
#[inline(always)]
pub fn point(_name: &str) -> io::Result<()> {
    Ok(())
}

#[cfg(feature = "fault-points")]
pub fn point(name: &str) -> io::Result<()> {
    match armed() {
        Some(Fault {
            point,
            hit,
            action,
            reached,
        }) if point == name => {
            let n = reached.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if hit.is_some_and(|hit| hit != n) {
                return Ok(());
            }
            match action {
                Action::Abort => {
                    eprintln!("popgate: fault point {name}: abort");
                    std::process::abort()
                }
                Action::NoSpace => Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!("fault point {name}: no space left on device"),
                )),
            }
        }
        _ => Ok(()),
    }
}

#[cfg(feature = "fault-points")]
#[derive(Debug)]
struct Fault {
    point: String,
    /// Act only the n-th time the point is reached (1-based); `None`: every time.
    hit: Option<u32>,
    action: Action,
    reached: std::sync::atomic::AtomicU32,
}

#[cfg(feature = "fault-points")]
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Abort,
    NoSpace,
}

#[cfg(feature = "fault-points")]
fn armed() -> Option<&'static Fault> {
    static ARMED: std::sync::OnceLock<Option<Fault>> = std::sync::OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var(VARIABLE).ok()?;
            let fault = parse(&value);
            eprintln!("popgate: fault point armed: {value}");
            fault
        })
        .as_ref()
}

#[cfg(feature = "fault-points")]
fn parse(value: &str) -> Option<Fault> {
    let (point, action) = match value.split_once(':') {
        Some((point, "enospc")) => (point, Action::NoSpace),
        Some(_) => return None,
        None => (value, Action::Abort),
    };
    let (point, hit) = match point.split_once('@') {
        Some((point, n)) => (point, Some(n.parse().ok().filter(|&n| n > 0)?)),
        None => (point, None),
    };
    (!point.is_empty()).then(|| Fault {
        point: point.to_owned(),
        hit,
        action,
        reached: std::sync::atomic::AtomicU32::new(0),
    })
}

#[cfg(all(test, feature = "fault-points"))]
mod tests {
    use super::*;

    #[test]
    fn parses_abort_and_enospc() {
        let f = parse("after-write-before-fsync").expect("a point");
        assert_eq!(
            (f.point.as_str(), f.hit, f.action),
            ("after-write-before-fsync", None, Action::Abort)
        );
        let f = parse("before-write@2:enospc").expect("a point");
        assert_eq!(
            (f.point.as_str(), f.hit, f.action),
            ("before-write", Some(2), Action::NoSpace)
        );
        assert!(parse("before-write:explode").is_none());
        assert!(parse("before-write@0").is_none());
        assert!(parse("before-write@x").is_none());
        assert!(parse("").is_none());
    }
}
