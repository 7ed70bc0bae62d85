//! Workload 4 of `cargo xtask bench`: the grant table alone, at 1k, 100k and 1M
//! grants. Targets: at least 5 million lookups/s on one core, at most 128 bytes per
//! grant.
//!
//! * `grant_lookup/<size>`: `GrantTable::lookup` for a granted address: what a relay
//!   decision reads (no allocation).
//! * `grant_view/<size>`: `GrantTable::get`, the same lookup returning an owned
//!   `GrantView` (what the HTTP API and the dashboard read; it copies the user names).
//! * `grant_reserve_release/<size>`: the relay hot path, the first relayed RCPT
//!   reserving one message and RSET releasing it.
//! * Bytes per grant: the growth of this process's resident memory while the table is
//!   filled, divided by the grant count, written as JSON to `$GRANT_MEMORY_OUT` when
//!   set (resident memory rather than an allocator count: `unsafe_code` is forbidden,
//!   so no counting allocator).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use popgate_core::grant::{GrantConfig, GrantTable};
use popgate_core::{Millis, SessionId};

const SIZES: [(&str, u32); 3] = [("1k", 1_000), ("100k", 100_000), ("1m", 1_000_000)];

/// The i-th distinct IPv4 address, spread over 10.0.0.0/8.
fn peer(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | (i & 0x00FF_FFFF)))
}

fn table(size: u32) -> GrantTable {
    let mut table = GrantTable::new(GrantConfig {
        max_entries: 2_000_000,
        ..GrantConfig::default()
    });
    for i in 0..size {
        let _ = table.login(
            Millis(0),
            peer(i),
            "user@example.test",
            SessionId(u64::from(i)),
        );
        // Events are drained by the server as they come; keep the queue empty here too.
        while table.poll_event().is_some() {}
    }
    table
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn memory() {
    let Some(out) = std::env::var_os("GRANT_MEMORY_OUT") else {
        return;
    };
    let mut fields = Vec::new();
    for (name, size) in SIZES {
        let before = rss_kb();
        let t = table(size);
        let after = rss_kb();
        let bytes = (after.saturating_sub(before) * 1024) as f64 / f64::from(size);
        fields.push(format!("\"{name}\": {bytes:.1}"));
        drop(black_box(t));
    }
    let json = format!("{{{}}}\n", fields.join(", "));
    if let Some(parent) = std::path::Path::new(&out).parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Err(e) = std::fs::write(&out, &json) {
        eprintln!("cannot write {}: {e}", out.to_string_lossy());
    }
    println!("grant table bytes per grant: {json}");
}

fn benches(c: &mut Criterion) {
    memory();
    let mut lookup = c.benchmark_group("grant_lookup");
    for (name, size) in SIZES {
        let table = table(size);
        let mut i = 0u32;
        lookup.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                i = (i + 7919) % size;
                black_box(table.lookup(Millis(1), black_box(peer(i))))
            })
        });
    }
    lookup.finish();
    let mut view = c.benchmark_group("grant_view");
    for (name, size) in SIZES {
        let table = table(size);
        let mut i = 0u32;
        view.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                i = (i + 7919) % size;
                black_box(table.get(Millis(1), black_box(peer(i))))
            })
        });
    }
    view.finish();
    let mut relay = c.benchmark_group("grant_reserve_release");
    for (name, size) in SIZES {
        let mut table = table(size);
        let mut i = 0u32;
        relay.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                i = (i + 7919) % size;
                let p = peer(i);
                let key = table.key_for(p);
                let r = table.reserve(Millis(1), black_box(p), SessionId(u64::MAX));
                table.release(Millis(1), key, SessionId(u64::MAX));
                while table.poll_event().is_some() {}
                black_box(r.is_ok())
            })
        });
    }
    relay.finish();
}

criterion_group!(grant, benches);
criterion_main!(grant);
