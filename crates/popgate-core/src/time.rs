//! Time as core sees it: milliseconds passed in by the caller, never read from a clock.
//!
//! The server anchors a monotonic clock to the wall clock once at start, so a
//! [`Millis`] is "milliseconds since the Unix epoch" that never jumps; the browser
//! simulator passes a virtual clock. `std::time::Instant::now()` panics on wasm32 and
//! must never be reached from this crate.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// An instant: milliseconds since the Unix epoch, as anchored by the driver.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    pub fn saturating_add(self, d: Duration) -> Millis {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Millis(self.0.saturating_add(ms))
    }

    /// Time from `self` until `later`, zero when `later` is not after `self`.
    pub fn until(self, later: Millis) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }

    /// RFC 5322 §3.3 date-time in UTC, e.g. `Sat, 28 Nov 2026 19:18:11 +0000`.
    pub fn rfc5322(self) -> String {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let secs = self.0 / 1000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        format!(
            "{}, {} {} {} {:02}:{:02}:{:02} +0000",
            DAYS[(days % 7) as usize],
            d,
            MONTHS[(m - 1) as usize],
            y,
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's civil_from_days.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    #[test]
    fn formats_rfc5322_dates() {
        assert_eq!(Millis(0).rfc5322(), "Thu, 1 Jan 1970 00:00:00 +0000");
        // 2026-11-28T19:18:11Z
        assert_eq!(
            Millis(1_795_893_491_000).rfc5322(),
            "Sat, 28 Nov 2026 19:18:11 +0000"
        );
        // leap day
        assert_eq!(
            Millis(951_782_400_000).rfc5322(),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
    }

    #[test]
    fn saturates() {
        assert_eq!(
            Millis(u64::MAX - 1).saturating_add(Duration::from_secs(5)),
            Millis(u64::MAX)
        );
        assert_eq!(Millis(10).until(Millis(5)), Duration::ZERO);
        assert_eq!(Millis(5).until(Millis(10)), Duration::from_millis(5));
    }
}
