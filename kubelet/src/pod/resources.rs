//! Resource quantities, QoS classes and the Linux cgroup settings derived from them.

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// CFS period the kubelet uses (100 ms, in µs).
pub const CPU_PERIOD: i64 = 100_000;
const MIN_SHARES: i64 = 2;
const MIN_QUOTA: i64 = 1_000;

/// Parses a quantity into its value scaled by `scale` (1000 for milli-units), rounding up as
/// upstream's `MilliValue`/`Value` do. `None` for malformed input.
pub fn parse_quantity(q: &str, scale: f64) -> Option<i64> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    let value = (number * multiplier * scale).ceil();
    value.is_finite().then_some(value as i64)
}

fn get<'a>(
    list: Option<&'a std::collections::BTreeMap<String, Quantity>>,
    name: &str,
) -> Option<&'a Quantity> {
    list.and_then(|m| m.get(name))
}

/// A container's request of `name`, defaulting to its limit as the apiserver does.
fn request(res: Option<&ResourceRequirements>, name: &str, scale: f64) -> Option<i64> {
    let res = res?;
    get(res.requests.as_ref(), name)
        .or_else(|| get(res.limits.as_ref(), name))
        .and_then(|q| parse_quantity(&q.0, scale))
}

fn limit(res: Option<&ResourceRequirements>, name: &str, scale: f64) -> Option<i64> {
    get(res?.limits.as_ref(), name).and_then(|q| parse_quantity(&q.0, scale))
}

/// Upstream's QoS class: Guaranteed, Burstable or BestEffort.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let all: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .collect();
    let mut any_set = false;
    let mut guaranteed = true;
    for c in &all {
        let res = c.resources.as_ref();
        for name in ["cpu", "memory"] {
            let req = get(res.and_then(|r| r.requests.as_ref()), name);
            let lim = get(res.and_then(|r| r.limits.as_ref()), name);
            if req.is_some() || lim.is_some() {
                any_set = true;
            }
            let scale = if name == "cpu" { 1000.0 } else { 1.0 };
            match (req, lim) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) => {
                    if parse_quantity(&r.0, scale) != parse_quantity(&l.0, scale) {
                        guaranteed = false;
                    }
                }
                (None, Some(_)) => {}
            }
        }
    }
    if !any_set {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The pod's cgroup under the cgroupfs driver: `<root>/kubepods[/burstable|/besteffort]/pod<uid>`.
pub fn pod_cgroup_parent(cgroup_root: &str, qos: &str, uid: &str) -> String {
    let root = cgroup_root.trim_end_matches('/');
    match qos {
        "Guaranteed" => format!("{root}/kubepods/pod{uid}"),
        "Burstable" => format!("{root}/kubepods/burstable/pod{uid}"),
        _ => format!("{root}/kubepods/besteffort/pod{uid}"),
    }
}

/// Removes the (empty) cgroups of pod `uid` in every cgroup v1 hierarchy and the unified one,
/// once its containers are gone; runc removes the containers' cgroups but not their parent.
pub fn remove_pod_cgroups(cgroup_root: &str, uid: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let hierarchies: Vec<std::path::PathBuf> = hierarchies.flatten().map(|e| e.path()).collect();
    for qos in ["Guaranteed", "Burstable", "BestEffort"] {
        let relative = pod_cgroup_parent(cgroup_root, qos, uid);
        for h in &hierarchies {
            let dir = h.join(relative.trim_start_matches('/'));
            if dir.is_dir() {
                if let Err(e) = std::fs::remove_dir(&dir) {
                    tracing::debug!(dir = %dir.display(), error = %e, "remove pod cgroup");
                }
            }
        }
    }
}

/// The CRI's Linux resources for a container: cpu shares from the request, CFS quota from the
/// limit, the memory limit, and the OOM score adjustment of the pod's QoS class.
pub fn linux_resources(
    container: &Container,
    qos: &str,
    memory_capacity: i64,
) -> crate::cri::api::LinuxContainerResources {
    let res = container.resources.as_ref();
    let cpu_request = request(res, "cpu", 1000.0);
    let cpu_limit = limit(res, "cpu", 1000.0);
    let memory_limit = limit(res, "memory", 1.0).unwrap_or(0);
    let cpu_shares = cpu_request
        .map(|milli| (milli * 1024 / 1000).max(MIN_SHARES))
        .unwrap_or(MIN_SHARES);
    let (cpu_quota, cpu_period) = match cpu_limit {
        Some(milli) => ((milli * CPU_PERIOD / 1000).max(MIN_QUOTA), CPU_PERIOD),
        None => (0, 0),
    };
    let oom_score_adj = match qos {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let mem_request = request(res, "memory", 1.0).unwrap_or(0);
            let adj = if memory_capacity > 0 {
                1000 - (1000 * mem_request) / memory_capacity
            } else {
                1000
            };
            adj.clamp(2, 999)
        }
    };
    crate::cri::api::LinuxContainerResources {
        cpu_period,
        cpu_quota,
        cpu_shares,
        memory_limit_in_bytes: memory_limit,
        oom_score_adj,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use std::collections::BTreeMap;

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let map = |kv: &[(&str, &str)]| {
            (!kv.is_empty()).then(|| {
                kv.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: map(requests),
                limits: map(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn quantities_parse_like_upstream() {
        let cases = [
            ("100m", 1000.0, Some(100)),
            ("1", 1000.0, Some(1000)),
            ("0.5", 1000.0, Some(500)),
            ("2.5", 1.0, Some(3)),
            ("64Mi", 1.0, Some(64 * 1024 * 1024)),
            ("1G", 1.0, Some(1_000_000_000)),
            ("1e3", 1.0, Some(1000)),
            ("128974848", 1.0, Some(128_974_848)),
            ("12Zi", 1.0, None),
            ("", 1.0, None),
            ("abc", 1.0, None),
        ];
        for (q, scale, want) in cases {
            assert_eq!(parse_quantity(q, scale), want, "{q}");
        }
    }

    #[test]
    fn qos_classes() {
        let cases = [
            ("no resources", pod(vec![container(&[], &[])]), "BestEffort"),
            (
                "limits only imply equal requests",
                pod(vec![container(&[], &[("cpu", "1"), ("memory", "1Gi")])]),
                "Guaranteed",
            ),
            (
                "requests equal limits",
                pod(vec![container(
                    &[("cpu", "1000m"), ("memory", "1Gi")],
                    &[("cpu", "1"), ("memory", "1Gi")],
                )]),
                "Guaranteed",
            ),
            (
                "memory limit only",
                pod(vec![container(&[], &[("memory", "1Gi")])]),
                "Burstable",
            ),
            (
                "one container without",
                pod(vec![
                    container(&[], &[("cpu", "1"), ("memory", "1Gi")]),
                    container(&[], &[]),
                ]),
                "Burstable",
            ),
        ];
        for (name, pod, want) in cases {
            assert_eq!(qos_class(&pod), want, "{name}");
        }
    }

    #[test]
    fn linux_resources_follow_requests_and_limits() {
        let c = container(&[("cpu", "250m")], &[("cpu", "500m"), ("memory", "64Mi")]);
        let r = linux_resources(&c, "Burstable", 1 << 30);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_period, CPU_PERIOD);
        assert_eq!(r.memory_limit_in_bytes, 64 * 1024 * 1024);
        // memory request defaults to the limit: 1000 - 1000 * 64Mi / 1Gi.
        assert_eq!(r.oom_score_adj, 938);
        let none = linux_resources(&container(&[], &[]), "BestEffort", 1 << 30);
        assert_eq!(
            (none.cpu_shares, none.cpu_quota, none.memory_limit_in_bytes),
            (2, 0, 0)
        );
        assert_eq!(none.oom_score_adj, 1000);
    }

    #[test]
    fn cgroup_parent_per_qos() {
        assert_eq!(pod_cgroup_parent("", "Guaranteed", "u"), "/kubepods/podu");
        assert_eq!(
            pod_cgroup_parent("/", "Burstable", "u"),
            "/kubepods/burstable/podu"
        );
        assert_eq!(
            pod_cgroup_parent("/x", "BestEffort", "u"),
            "/x/kubepods/besteffort/podu"
        );
    }
}
