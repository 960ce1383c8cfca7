//! Prometheus text exposition of a registry, plus basic process metrics read from /proc.

use std::path::Path;

use http::StatusCode;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Encoder, Gauge, Opts, Registry, TextEncoder};

use crate::http::Reply;
use crate::Error;

/// The content type of the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `/metrics` answer for `registry`.
pub fn reply(registry: &Registry) -> Reply {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut body) {
        Ok(()) => Reply::new(StatusCode::OK, TEXT_CONTENT_TYPE, body),
        Err(e) => {
            tracing::warn!(error = %e, "failed to encode metrics");
            Reply::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to encode metrics: {e}\n"),
            )
        }
    }
}

/// Registers [`ProcessCollector`] with `registry`.
pub fn register_process_collector(registry: &Registry) -> Result<(), Error> {
    registry
        .register(Box::new(ProcessCollector::new()?))
        .map_err(Error::RegisterCollector)
}

/// The usual `process_*` metrics of this process, read from /proc/self on every scrape.
///
/// Metrics that cannot be read (e.g. off Linux) are left out of the scrape.
pub struct ProcessCollector {
    cpu_seconds: Counter,
    resident_memory: Gauge,
    virtual_memory: Gauge,
    start_time: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
}

/// USER_HZ, which the kernel fixes at 100 for /proc on every architecture Kubernetes runs on.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

impl ProcessCollector {
    /// A collector for the current process.
    pub fn new() -> Result<Self, Error> {
        let gauge = |name: &str, help: &str| {
            Gauge::with_opts(Opts::new(name, help)).map_err(Error::RegisterCollector)
        };
        Ok(Self {
            cpu_seconds: Counter::with_opts(Opts::new(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
            ))
            .map_err(Error::RegisterCollector)?,
            resident_memory: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            )?,
            virtual_memory: gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            )?,
            start_time: gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            )?,
            open_fds: gauge("process_open_fds", "Number of open file descriptors.")?,
            max_fds: gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            )?,
        })
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        [
            self.cpu_seconds.desc(),
            self.resident_memory.desc(),
            self.virtual_memory.desc(),
            self.start_time.desc(),
            self.open_fds.desc(),
            self.max_fds.desc(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = Vec::new();
        if let Some(stat) = read_stat() {
            let cpu = (stat.utime_ticks + stat.stime_ticks) / CLOCK_TICKS_PER_SECOND;
            let delta = cpu - self.cpu_seconds.get();
            if delta > 0.0 {
                self.cpu_seconds.inc_by(delta);
            }
            families.extend(self.cpu_seconds.collect());
            self.virtual_memory.set(stat.vsize_bytes);
            families.extend(self.virtual_memory.collect());
            if let Some(boot) = boot_time_seconds() {
                self.start_time
                    .set(boot + stat.start_ticks / CLOCK_TICKS_PER_SECOND);
                families.extend(self.start_time.collect());
            }
        }
        if let Some(rss) = resident_memory_bytes() {
            self.resident_memory.set(rss);
            families.extend(self.resident_memory.collect());
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of the entries; upstream counts it too.
            self.open_fds.set(dir.count() as f64);
            families.extend(self.open_fds.collect());
        }
        if let Some(max) = max_open_files() {
            self.max_fds.set(max);
            families.extend(self.max_fds.collect());
        }
        families
    }
}

struct Stat {
    utime_ticks: f64,
    stime_ticks: f64,
    start_ticks: f64,
    vsize_bytes: f64,
}

fn read_to_string(path: &str) -> Option<String> {
    std::fs::read_to_string(Path::new(path)).ok()
}

fn read_stat() -> Option<Stat> {
    parse_stat(&read_to_string("/proc/self/stat")?)
}

/// Parses /proc/<pid>/stat; the command name may hold spaces and parentheses, so fields are
/// counted from the last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let (_, rest) = stat.rsplit_once(')')?;
    // rest starts at field 3 (state); field n is at index n - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    Some(Stat {
        utime_ticks: field(14)?,
        stime_ticks: field(15)?,
        start_ticks: field(22)?,
        vsize_bytes: field(23)?,
    })
}

fn boot_time_seconds() -> Option<f64> {
    read_to_string("/proc/stat")?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// VmRSS from /proc/self/status, which is in kB whatever the page size.
fn resident_memory_bytes() -> Option<f64> {
    let status = read_to_string("/proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024.0)
}

fn max_open_files() -> Option<f64> {
    let limits = read_to_string("/proc/self/limits")?;
    let soft = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?;
    // "unlimited" has no number; leave the metric out then.
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "42 (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 \
                    12345 1048576 300 18446744073709551615";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(stat.utime_ticks, 250.0);
        assert_eq!(stat.stime_ticks, 50.0);
        assert_eq!(stat.start_ticks, 12345.0);
        assert_eq!(stat.vsize_bytes, 1048576.0);
    }

    #[test]
    fn process_metrics_are_exposed_in_text_format() {
        let registry = Registry::new();
        register_process_collector(&registry).expect("registers");
        let reply = reply(&registry);
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.content_type, TEXT_CONTENT_TYPE);
        let text = String::from_utf8(reply.body.to_vec()).expect("utf-8");
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_open_fds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing:\n{text}"
            );
        }
    }
}
