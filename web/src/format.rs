//! Small pure formatting helpers shared by the views (durations, clock times, URL
//! path segments). Pure functions, so they are tested natively.

use popgate_core::Millis;

/// A countdown: `m:ss` under an hour, `h:mm:ss` above; whole seconds rounded up, so a
/// grant shows `0:00` only once it has actually expired (valid while `now < expires`).
pub fn countdown(remaining_ms: u64) -> String {
    let secs = remaining_ms.div_ceil(1000);
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// An age in the largest whole unit that fits: `12s`, `3m`, `2h`, `4d` with English
/// `units` (seconds, minutes, hours, days; from the strings of the language).
pub fn age(elapsed_ms: u64, units: [&str; 4]) -> String {
    let secs = elapsed_ms / 1000;
    match secs {
        0..60 => format!("{secs}{}", units[0]),
        60..3600 => format!("{}{}", secs / 60, units[1]),
        3600..86_400 => format!("{}{}", secs / 3600, units[2]),
        _ => format!("{}{}", secs / 86_400, units[3]),
    }
}

/// The UTC time of day with milliseconds, `19:18:11.042`: how the timeline and the
/// exact expiry are shown (the server's milliseconds, not the browser's clock).
pub fn clock_time(at: Millis) -> String {
    let ms = at.0 % 1000;
    let secs = at.0 / 1000;
    format!(
        "{:02}:{:02}:{:02}.{ms:03}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_down_rounding_up() {
        assert_eq!(countdown(0), "0:00");
        assert_eq!(countdown(1), "0:01");
        assert_eq!(countdown(1000), "0:01");
        assert_eq!(countdown(1001), "0:02");
        assert_eq!(countdown(30 * 60 * 1000), "30:00");
        assert_eq!(countdown(3_600_000 + 61_000), "1:01:01");
    }

    #[test]
    fn ages() {
        let units = ["s", "m", "h", "d"];
        assert_eq!(age(999, units), "0s");
        assert_eq!(age(59_999, units), "59s");
        assert_eq!(age(60_000, units), "1m");
        assert_eq!(age(7_200_000, units), "2h");
        assert_eq!(age(90_000_000, units), "1d");
    }

    #[test]
    fn clock_times_are_utc_with_millis() {
        // 2026-11-28T19:18:11.042Z
        assert_eq!(clock_time(Millis(1_795_893_491_042)), "19:18:11.042");
        assert_eq!(clock_time(Millis(0)), "00:00:00.000");
    }
}
