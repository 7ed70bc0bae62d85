//! The server's clock: monotonic, anchored to the wall clock once at start.
//!
//! DESIGN "Time": a wall-clock jump neither extends nor kills a grant, because every
//! `now` handed to core is the start wall time plus monotonic elapsed time.

use popgate_core::Millis;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    wall_at_start: u64,
    start: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        let wall_at_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Clock {
            wall_at_start,
            start: Instant::now(),
        }
    }

    pub fn now(&self) -> Millis {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        Millis(self.wall_at_start.saturating_add(elapsed))
    }

    /// The monotonic instant at which `at` falls, for sleeping until a deadline.
    pub fn instant_at(&self, at: Millis) -> tokio::time::Instant {
        let offset = at.0.saturating_sub(self.wall_at_start);
        tokio::time::Instant::from_std(self.start) + std::time::Duration::from_millis(offset)
    }
}
