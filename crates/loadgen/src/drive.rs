//! Closed-loop and open-loop drivers.
//!
//! Closed loop: `workers` tasks, each starting its next operation when the previous one
//! finished, until the deadline or the operation count is reached. Open loop:
//! operations start at fixed intended times `t0 + k / rate` whatever the server does;
//! latency counts from the intended time, so queueing in front of a slow server is
//! measured instead of hidden (coordinated omission).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use crate::stats::{Latency, histogram};

/// When a run stops: whichever comes first.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub duration: Duration,
    pub max_ops: u64,
}

/// What a run measured.
#[derive(Debug, Serialize)]
pub struct Run {
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed_s: f64,
    pub latency: Latency,
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

impl Run {
    pub fn per_second(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.ops as f64 / self.elapsed_s
        } else {
            0.0
        }
    }
}

#[derive(Debug)]
struct Shared {
    histogram: Mutex<Histogram<u64>>,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            histogram: Mutex::new(histogram()),
            errors: AtomicU64::new(0),
            first_error: std::sync::Mutex::new(None),
        })
    }

    fn error(&self, error: anyhow::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        // The lock is never held across an await.
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert_with(|| format!("{error:#}"));
    }

    async fn finish(self: Arc<Shared>, ops: u64, elapsed: Duration) -> Run {
        let histogram = self.histogram.lock().await.clone();
        let first_error = self
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Run {
            ops,
            errors: self.errors.load(Ordering::Relaxed),
            first_error,
            elapsed_s: elapsed.as_secs_f64(),
            latency: Latency::of(&histogram),
            histogram,
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// `op(worker, seq)` by `workers` tasks in a closed loop. Counted ops are the ones that
/// succeeded; throughput is ops over the time until the last worker stopped.
pub async fn closed_loop<F, Fut>(workers: usize, limit: Limit, op: F) -> Run
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let shared = Shared::new();
    let op = Arc::new(op);
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + limit.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let (shared, op, issued, done) = (shared.clone(), op.clone(), issued.clone(), done.clone());
        tasks.spawn(async move {
            let mut local = histogram();
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let seq = issued.fetch_add(1, Ordering::Relaxed);
                if seq >= limit.max_ops {
                    break;
                }
                let began = Instant::now();
                match op(worker, seq).await {
                    Ok(()) => {
                        let _ = local.record(micros(began.elapsed()));
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => shared.error(e),
                }
            }
            let _ = shared.histogram.lock().await.add(&local);
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    shared.finish(done.load(Ordering::Relaxed), elapsed).await
}

/// `op(seq)` started at `rate` per second for `limit.duration` (or `limit.max_ops`),
/// at most `max_in_flight` at once; latency from each op's intended start.
pub async fn open_loop<F, Fut>(rate: f64, max_in_flight: usize, limit: Limit, op: F) -> Run
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let shared = Shared::new();
    let op = Arc::new(op);
    let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut tasks = tokio::task::JoinSet::new();
    let mut seq = 0u64;
    loop {
        let intended = start + interval.mul_f64(seq as f64);
        if intended >= start + limit.duration || seq >= limit.max_ops {
            break;
        }
        tokio::time::sleep_until(intended).await;
        let (shared, op, slots, done) = (shared.clone(), op.clone(), slots.clone(), done.clone());
        tasks.spawn(async move {
            // Waiting for a slot counts as latency: the request was due at `intended`.
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            match op(seq).await {
                Ok(()) => {
                    let _ = shared
                        .histogram
                        .lock()
                        .await
                        .record(micros(intended.elapsed()));
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => shared.error(e),
            }
        });
        seq += 1;
        // Reap finished tasks as we go so the set does not grow with the run.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    shared.finish(done.load(Ordering::Relaxed), elapsed).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closed_loop_stops_at_the_operation_count() {
        let limit = Limit {
            duration: Duration::from_secs(60),
            max_ops: 10,
        };
        let run = closed_loop(3, limit, |_, seq| async move {
            if seq == 4 {
                anyhow::bail!("the fifth fails");
            }
            Ok(())
        })
        .await;
        assert_eq!(run.ops, 9);
        assert_eq!(run.errors, 1);
        assert_eq!(run.first_error.as_deref(), Some("the fifth fails"));
        assert_eq!(run.latency.count, 9);
    }

    #[tokio::test]
    async fn open_loop_starts_every_operation() {
        let limit = Limit {
            duration: Duration::from_secs(60),
            max_ops: 20,
        };
        let run = open_loop(1000.0, 4, limit, |_| async { Ok(()) }).await;
        assert_eq!(run.ops, 20);
        assert_eq!(run.errors, 0);
    }
}
