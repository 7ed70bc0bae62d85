//! Load generator and the side-by-side benchmark driver behind `cargo xtask bench`.
//!
//! # Layout
//!
//! * [`conn`]: a line client over any byte stream (plain TCP from a chosen source
//!   address, or rustls), with the SMTP and POP3 exchanges the workloads need.
//! * [`drive`]: closed-loop (N workers, each sends its next request when the last one
//!   is answered) and open-loop (requests start at fixed intended times) drivers;
//!   latency is recorded from the *intended* start in an HDR histogram, so a stalled
//!   server cannot hide its stall by slowing the client down (coordinated omission).
//! * [`stats`]: percentiles and median/min/max over repeated runs.
//! * [`procfs`]: CPU seconds and memory of a server's processes, from `/proc`.
//! * [`servers`]: popgate and the peers (Postfix + Dovecot), configured from the pinned
//!   templates in the repository's `bench/` folder, started and stopped.
//! * [`suite`]: the workloads of the benchmark and the report.

pub mod conn;
pub mod drive;
pub mod procfs;
pub mod servers;
pub mod stats;
pub mod suite;
pub mod tls;
