//! Resource quantities: parsing, per-pod effective requests and node sums.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Upstream's request assumed for a container without a cpu request when scoring (100m).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Upstream's request assumed for a container without a memory request when scoring (200Mi).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A set of resource amounts: cpu in millicores, the rest in base units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    /// cpu in millicores.
    pub milli_cpu: i64,
    /// memory in bytes.
    pub memory: i64,
    /// ephemeral-storage in bytes.
    pub ephemeral_storage: i64,
    /// pods (allocatable) or pod count (requested).
    pub allowed_pod_number: i64,
    /// Extended and hugepages resources by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    /// Parses a resource list (`requests`, `allocatable`).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        let mut r = Self::default();
        for (name, q) in list {
            match name.as_str() {
                "cpu" => r.milli_cpu = parse_milli(&q.0).unwrap_or(0),
                "memory" => r.memory = parse_value(&q.0).unwrap_or(0),
                "ephemeral-storage" => r.ephemeral_storage = parse_value(&q.0).unwrap_or(0),
                "pods" => r.allowed_pod_number = parse_value(&q.0).unwrap_or(0),
                other => {
                    r.scalar
                        .insert(other.to_string(), parse_value(&q.0).unwrap_or(0));
                }
            }
        }
        r
    }

    /// Adds `other` (pod counts excluded).
    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    /// Subtracts `other` (pod counts excluded).
    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Per resource maximum of `self` and `other`.
    pub fn set_max(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    /// The amount of resource `name` (`cpu` in millicores).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            "pods" => self.allowed_pod_number,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }
}

fn container_requests(c: &Container, non_zero: bool) -> Resource {
    let requests = c.resources.as_ref().and_then(|r| {
        // Limits stand in for requests when only limits are set (the apiserver defaults this,
        // but objects from other sources may not have been defaulted).
        r.requests.clone().or_else(|| r.limits.clone())
    });
    let mut r = requests
        .as_ref()
        .map(Resource::from_list)
        .unwrap_or_default();
    if non_zero {
        let has = |name: &str| requests.as_ref().is_some_and(|m| m.contains_key(name));
        if !has("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has("memory") {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

fn requests(pod: &Pod, non_zero: bool) -> Resource {
    let Some(spec) = pod.spec.as_ref() else {
        return Resource::default();
    };
    let mut sum = Resource::default();
    for c in &spec.containers {
        sum.add(&container_requests(c, non_zero));
    }
    // Sidecars (restartable init containers) run alongside everything after them; plain init
    // containers run one at a time next to the sidecars started before them.
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            init_max.set_max(&sidecars);
        } else {
            let mut during = sidecars.clone();
            during.add(&r);
            init_max.set_max(&during);
        }
    }
    sum.add(&sidecars);
    sum.set_max(&init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        sum.add(&Resource::from_list(overhead));
    }
    sum
}

/// A pod's effective requests and the same with non-zero defaults for scoring.
pub fn pod_requests(pod: &Pod) -> (Resource, Resource) {
    (requests(pod, false), requests(pod, true))
}

/// Splits a quantity into its numeric part and its suffix.
fn split(q: &str) -> (&str, &str) {
    let q = q.trim();
    let idx = q
        .char_indices()
        .find(|(i, c)| {
            !(c.is_ascii_digit()
                || *c == '.'
                || ((*c == '+' || *c == '-') && *i == 0)
                || ((*c == 'e' || *c == 'E')
                    && q[i + 1..]
                        .chars()
                        .next()
                        .is_some_and(|n| n.is_ascii_digit() || n == '-' || n == '+')))
        })
        .map(|(i, _)| i)
        .unwrap_or(q.len());
    (&q[..idx], &q[idx..])
}

fn multiplier(suffix: &str) -> Option<f64> {
    Some(match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    })
}

fn parse_scaled(q: &str, scale: f64) -> Option<i64> {
    let (num, suffix) = split(q);
    let value: f64 = num.parse().ok()?;
    let v = value * multiplier(suffix)? * scale;
    // Round up as upstream's Value()/MilliValue() do, tolerating float noise.
    let rounded = v.round();
    let result = if (v - rounded).abs() < 1e-6 {
        rounded
    } else {
        v.ceil()
    };
    Some(result as i64)
}

/// The quantity in thousandths (cpu millicores), rounded up.
pub fn parse_milli(q: &str) -> Option<i64> {
    parse_scaled(q, 1000.0)
}

/// The quantity in base units, rounded up.
pub fn parse_value(q: &str) -> Option<i64> {
    parse_scaled(q, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_parse_as_upstream() {
        let cases = [
            ("100m", 100, 1),
            ("1", 1000, 1),
            ("0.5", 500, 1),
            ("2k", 2_000_000, 2000),
            ("1Gi", 1024 * 1024 * 1024 * 1000, 1024 * 1024 * 1024),
            ("128974848", 128_974_848_000, 128_974_848),
            ("1e3", 1_000_000, 1000),
        ];
        for (q, milli, value) in cases {
            assert_eq!(parse_milli(q), Some(milli), "{q}");
            assert_eq!(parse_value(q), Some(value), "{q}");
        }
        assert_eq!(parse_value("1x"), None);
    }

    #[test]
    fn pod_requests_take_init_containers_sidecars_and_overhead_into_account() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {
                "overhead": {"cpu": "10m"},
                "initContainers": [
                    {"name": "init", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}},
                    {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
                ],
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "100Mi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "500m"}}},
                ],
            }
        }))
        .expect("pod");
        let (req, non_zero) = pod_requests(&pod);
        // max(1000 + 100 sidecar, 2000 init) + 10 overhead
        assert_eq!(req.milli_cpu, 2010);
        assert_eq!(req.memory, 1024 * 1024 * 1024);
        // b gets the 200Mi default; the sidecar too.
        assert_eq!(non_zero.memory, 1024 * 1024 * 1024);
        assert_eq!(non_zero.milli_cpu, 2010);
    }
}
