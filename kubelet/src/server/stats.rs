//! Resource usage: /stats/summary (the Summary API) and /metrics/resource (what metrics-server
//! scrapes for `kubectl top`), from the runtime's container stats and the host's /proc.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{json, Value};

use crate::cri::api;
use crate::pod::spec::{CONTAINER_NAME_LABEL, POD_NAMESPACE_LABEL, POD_NAME_LABEL, POD_UID_LABEL};

/// Clock ticks per second of /proc/stat (USER_HZ, 100 on Linux).
const USER_HZ: u64 = 100;

/// One container's usage.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerUsage {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    /// Unix nanoseconds of the sample.
    pub timestamp: i64,
    pub cpu_core_nanos: u64,
    pub cpu_nano_cores: Option<u64>,
    pub memory_working_set: u64,
    pub memory_usage: Option<u64>,
    pub rootfs_used: Option<u64>,
}

/// The node's usage from /proc.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeUsage {
    pub timestamp: i64,
    pub cpu_core_nanos: u64,
    pub memory_working_set: u64,
    pub memory_available: u64,
}

/// CPU time (all cores) in nanoseconds from the first line of /proc/stat.
pub fn parse_proc_stat(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let busy: u64 = fields
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, v)| *v)
        .sum();
    Some(busy * (1_000_000_000 / USER_HZ))
}

/// (working set, available) bytes from /proc/meminfo: total minus available, and available.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let kib = |key: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|v| v * 1024)
    };
    let total = kib("MemTotal:")?;
    let available = kib("MemAvailable:")?;
    Some((total.saturating_sub(available), available))
}

pub fn node_usage(now_nanos: i64) -> NodeUsage {
    let cpu = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| parse_proc_stat(&t))
        .unwrap_or_default();
    let (ws, available) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo(&t))
        .unwrap_or_default();
    NodeUsage {
        timestamp: now_nanos,
        cpu_core_nanos: cpu,
        memory_working_set: ws,
        memory_available: available,
    }
}

/// The usage of the pods' containers among the runtime's stats (labelled by the kubelet).
pub fn container_usage(stats: &[api::ContainerStats]) -> Vec<ContainerUsage> {
    let mut out: Vec<ContainerUsage> = stats
        .iter()
        .filter_map(|s| {
            let attrs = s.attributes.as_ref()?;
            let label = |k: &str| attrs.labels.get(k).cloned();
            let cpu = s.cpu.as_ref()?;
            Some(ContainerUsage {
                namespace: label(POD_NAMESPACE_LABEL)?,
                pod: label(POD_NAME_LABEL)?,
                pod_uid: label(POD_UID_LABEL).unwrap_or_default(),
                container: label(CONTAINER_NAME_LABEL)?,
                timestamp: cpu.timestamp,
                cpu_core_nanos: cpu.usage_core_nano_seconds.as_ref()?.value,
                cpu_nano_cores: cpu.usage_nano_cores.as_ref().map(|v| v.value),
                memory_working_set: s
                    .memory
                    .as_ref()
                    .and_then(|m| m.working_set_bytes.as_ref())
                    .map_or(0, |v| v.value),
                memory_usage: s
                    .memory
                    .as_ref()
                    .and_then(|m| m.usage_bytes.as_ref())
                    .map(|v| v.value),
                rootfs_used: s
                    .writable_layer
                    .as_ref()
                    .and_then(|w| w.used_bytes.as_ref())
                    .map(|v| v.value),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container))
    });
    out
}

fn rfc3339(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The Summary API document (stats/v1alpha1 Summary), node and pods.
pub fn summary(node_name: &str, node: &NodeUsage, containers: &[ContainerUsage]) -> Value {
    let mut pods: BTreeMap<(String, String), Vec<&ContainerUsage>> = BTreeMap::new();
    for c in containers {
        pods.entry((c.namespace.clone(), c.pod.clone()))
            .or_default()
            .push(c);
    }
    let cpu = |time: i64, core_nanos: u64, nano_cores: Option<u64>| {
        let mut v = json!({"time": rfc3339(time), "usageCoreNanoSeconds": core_nanos});
        if let Some(n) = nano_cores {
            v["usageNanoCores"] = json!(n);
        }
        v
    };
    let pods: Vec<Value> = pods
        .into_iter()
        .map(|((namespace, name), cs)| {
            let time = cs.iter().map(|c| c.timestamp).max().unwrap_or_default();
            let containers: Vec<Value> = cs
                .iter()
                .map(|c| {
                    let mut v = json!({
                        "name": c.container,
                        "cpu": cpu(c.timestamp, c.cpu_core_nanos, c.cpu_nano_cores),
                        "memory": {"time": rfc3339(c.timestamp), "workingSetBytes": c.memory_working_set},
                    });
                    if let Some(u) = c.memory_usage {
                        v["memory"]["usageBytes"] = json!(u);
                    }
                    if let Some(r) = c.rootfs_used {
                        v["rootfs"] = json!({"time": rfc3339(c.timestamp), "usedBytes": r});
                    }
                    v
                })
                .collect();
            let nano_cores = cs
                .iter()
                .map(|c| c.cpu_nano_cores)
                .sum::<Option<u64>>();
            json!({
                "podRef": {"name": name, "namespace": namespace, "uid": cs[0].pod_uid},
                "containers": containers,
                "cpu": cpu(time, cs.iter().map(|c| c.cpu_core_nanos).sum(), nano_cores),
                "memory": {
                    "time": rfc3339(time),
                    "workingSetBytes": cs.iter().map(|c| c.memory_working_set).sum::<u64>(),
                },
            })
        })
        .collect();
    json!({
        "node": {
            "nodeName": node_name,
            "cpu": cpu(node.timestamp, node.cpu_core_nanos, None),
            "memory": {
                "time": rfc3339(node.timestamp),
                "workingSetBytes": node.memory_working_set,
                "availableBytes": node.memory_available,
            },
        },
        "pods": pods,
    })
}

/// /metrics/resource in the Prometheus text format, samples with millisecond timestamps as
/// upstream writes them.
pub fn resource_metrics(node: &NodeUsage, containers: &[ContainerUsage]) -> String {
    let ms = |nanos: i64| nanos / 1_000_000;
    let secs = |nanos: u64| nanos as f64 / 1e9;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String, i64)]| {
        let _ = writeln!(out, "# HELP {name} [STABLE] {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value, at) in samples {
            let _ = writeln!(out, "{name}{labels} {value} {}", ms(*at));
        }
    };
    let labels = |c: &ContainerUsage| {
        format!(
            "{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}}",
            c.container, c.namespace, c.pod
        )
    };
    let pod_labels = |ns: &str, pod: &str| format!("{{namespace=\"{ns}\",pod=\"{pod}\"}}");
    family(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
        &containers
            .iter()
            .map(|c| (labels(c), secs(c.cpu_core_nanos).to_string(), c.timestamp))
            .collect::<Vec<_>>(),
    );
    family(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
        &containers
            .iter()
            .map(|c| (labels(c), c.memory_working_set.to_string(), c.timestamp))
            .collect::<Vec<_>>(),
    );
    family(
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
        &[(
            String::new(),
            secs(node.cpu_core_nanos).to_string(),
            node.timestamp,
        )],
    );
    family(
        "node_memory_working_set_bytes",
        "gauge",
        "Current working set of the node in bytes",
        &[(
            String::new(),
            node.memory_working_set.to_string(),
            node.timestamp,
        )],
    );
    let mut pods: BTreeMap<(&str, &str), (u64, u64, i64)> = BTreeMap::new();
    for c in containers {
        let e = pods.entry((&c.namespace, &c.pod)).or_default();
        e.0 += c.cpu_core_nanos;
        e.1 += c.memory_working_set;
        e.2 = e.2.max(c.timestamp);
    }
    family(
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
        &pods
            .iter()
            .map(|((ns, pod), (cpu, _, at))| (pod_labels(ns, pod), secs(*cpu).to_string(), *at))
            .collect::<Vec<_>>(),
    );
    family(
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
        &pods
            .iter()
            .map(|((ns, pod), (_, mem, at))| (pod_labels(ns, pod), mem.to_string(), *at))
            .collect::<Vec<_>>(),
    );
    let _ = writeln!(
        out,
        "# HELP scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE scrape_error gauge\nscrape_error 0"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(pod: &str, container: &str, cpu: u64, mem: u64) -> ContainerUsage {
        ContainerUsage {
            namespace: "ns".into(),
            pod: pod.into(),
            pod_uid: format!("uid-{pod}"),
            container: container.into(),
            timestamp: 1_700_000_000_000_000_000,
            cpu_core_nanos: cpu,
            cpu_nano_cores: Some(1000),
            memory_working_set: mem,
            memory_usage: None,
            rootfs_used: None,
        }
    }

    #[test]
    fn proc_files_give_busy_cpu_time_and_the_memory_working_set() {
        let stat = "cpu  100 20 30 1000 50 5 5 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_proc_stat(stat), Some(160 * 10_000_000));
        let meminfo = "MemTotal:       2048 kB\nMemFree: 100 kB\nMemAvailable:   1024 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some((1024 * 1024, 1024 * 1024)));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn summary_groups_containers_into_pods() {
        let node = NodeUsage {
            timestamp: 0,
            cpu_core_nanos: 5,
            memory_working_set: 6,
            memory_available: 7,
        };
        let cs = [
            usage("a", "main", 2_000_000_000, 100),
            usage("a", "side", 1_000_000_000, 50),
            usage("b", "main", 0, 10),
        ];
        let s = summary("n1", &node, &cs);
        assert_eq!(s["node"]["nodeName"], "n1");
        assert_eq!(s["node"]["cpu"]["time"], "1970-01-01T00:00:00Z");
        assert_eq!(s["pods"][0]["podRef"]["name"], "a");
        assert_eq!(s["pods"][0]["podRef"]["uid"], "uid-a");
        assert_eq!(s["pods"][0]["memory"]["workingSetBytes"], 150);
        assert_eq!(
            s["pods"][0]["cpu"]["usageCoreNanoSeconds"],
            3_000_000_000u64
        );
        assert_eq!(s["pods"][0]["cpu"]["usageNanoCores"], 2000);
        assert_eq!(s["pods"][0]["containers"][1]["name"], "side");
        assert_eq!(s["pods"][1]["podRef"]["name"], "b");
        assert_eq!(
            s["pods"][1]["containers"][0]["memory"]["time"],
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn resource_metrics_use_upstream_names_labels_and_timestamps() {
        let node = NodeUsage {
            timestamp: 2_000_000,
            cpu_core_nanos: 1_500_000_000,
            memory_working_set: 42,
            memory_available: 0,
        };
        let text = resource_metrics(&node, &[usage("a", "main", 2_500_000_000, 100)]);
        assert!(text.contains(
            "container_cpu_usage_seconds_total{container=\"main\",namespace=\"ns\",pod=\"a\"} 2.5 1700000000000\n"
        ), "{text}");
        assert!(
            text.contains("node_cpu_usage_seconds_total 1.5 2\n"),
            "{text}"
        );
        assert!(
            text.contains("node_memory_working_set_bytes 42 2\n"),
            "{text}"
        );
        assert!(text.contains(
            "pod_memory_working_set_bytes{namespace=\"ns\",pod=\"a\"} 100 1700000000000\n"
        ));
        assert!(text.contains("# TYPE container_memory_working_set_bytes gauge"));
    }
}
