//! Disk latency histograms under etcd's names, observed where the disk work happens (the Raft
//! log, the MVCC backend) and exposed by the server's registry.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus::{Histogram, HistogramOpts};

pub fn buckets_disk() -> Vec<f64> {
    // etcd's: 1 ms doubling to ~4 s.
    prometheus::exponential_buckets(0.001, 2.0, 13).expect("static bucket layout is valid")
}

/// `etcd_disk_wal_fsync_duration_seconds`: the Raft log's flush before acknowledging.
pub static WAL_FSYNC: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::with_opts(
        HistogramOpts::new(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
        )
        .buckets(buckets_disk()),
    )
    .expect("static histogram options are valid")
});

/// `etcd_disk_backend_commit_duration_seconds`: applying a batch to the MVCC backend.
pub static BACKEND_COMMIT: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::with_opts(
        HistogramOpts::new(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
        )
        .buckets(buckets_disk()),
    )
    .expect("static histogram options are valid")
});

/// `etcd_disk_backend_snapshot_duration_seconds`: building a state machine snapshot.
pub static BACKEND_SNAPSHOT: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::with_opts(
        HistogramOpts::new(
            "etcd_disk_backend_snapshot_duration_seconds",
            "The latency distribution of backend snapshots.",
        )
        .buckets(prometheus::exponential_buckets(0.01, 2.0, 17).expect("valid buckets")),
    )
    .expect("static histogram options are valid")
});

/// Runs `f` and records how long it took in `h`.
pub(crate) fn timed<T>(h: &Histogram, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    h.observe(start.elapsed().as_secs_f64());
    out
}
