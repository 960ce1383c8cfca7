//! Service ClusterIPs and NodePorts: each allocation is a key created with a Txn that fails
//! if it exists, so concurrent creates (on any number of apiservers) never share one.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use crate::error::{ApiError, FieldError, Result};
use crate::options::{NodePortRange, ServiceRange};
use crate::storage::Storage;

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// Keys taken by a write and keys it gave up, settled once the write succeeds or fails.
#[derive(Debug, Default)]
pub struct Allocation {
    pub allocated: Vec<String>,
    pub released: Vec<String>,
}

pub struct Allocator {
    storage: Storage,
    range: ServiceRange,
    ports: NodePortRange,
}

fn random_u64() -> u64 {
    let b = uuid::Uuid::new_v4();
    u64::from_le_bytes(b.as_bytes()[..8].try_into().expect("16 bytes"))
}

fn ip_key(ip: Ipv4Addr) -> String {
    format!("{IP_PREFIX}{ip}")
}

fn port_key(p: u16) -> String {
    format!("{PORT_PREFIX}{p}")
}

fn node_port_types(spec: &Value) -> bool {
    matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer"))
}

impl Allocator {
    pub fn new(storage: Storage, range: ServiceRange, ports: NodePortRange) -> Self {
        Self {
            storage,
            range,
            ports,
        }
    }

    fn store_err(e: crate::storage::StorageError) -> ApiError {
        ApiError::internal(format!("allocating: {e}"))
    }

    async fn take(&self, key: &str, dry_run: bool) -> Result<bool> {
        if dry_run {
            return Ok(self
                .storage
                .keys(key)
                .await
                .map_err(Self::store_err)?
                .iter()
                .all(|k| k != key));
        }
        self.storage
            .reserve(key, b"")
            .await
            .map_err(Self::store_err)
    }

    /// A free IP of the range: random start, then linear probing.
    async fn next_ip(&self, dry_run: bool) -> Result<Ipv4Addr> {
        // The first IP (the kubernetes Service) is never a random pick.
        let usable = u64::from(self.range.size().saturating_sub(1).max(1));
        let start = random_u64() % usable;
        for i in 0..usable {
            let n = 1 + ((start + i) % usable) as u32;
            let Some(ip) = self.range.nth(n) else {
                continue;
            };
            if self.take(&ip_key(ip), dry_run).await? {
                return Ok(ip);
            }
        }
        Err(ApiError::internal(
            "failed to allocate a serviceIP: range is full",
        ))
    }

    async fn next_port(&self, dry_run: bool) -> Result<u16> {
        let span = (self.ports.max - self.ports.min) as u64 + 1;
        let start = random_u64() % span;
        for i in 0..span {
            let p = self.ports.min + ((start + i) % span) as u16;
            if self.take(&port_key(p), dry_run).await? {
                return Ok(p);
            }
        }
        Err(ApiError::internal(
            "failed to allocate a nodePort: range is full",
        ))
    }

    /// Fills clusterIP(s) and nodePorts of a Service being created (`old` None) or updated.
    pub async fn allocate(
        &self,
        name: &str,
        svc: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<Allocation> {
        let mut alloc = Allocation::default();
        let result = self
            .allocate_inner(name, svc, old, dry_run, &mut alloc)
            .await;
        if result.is_err() && !dry_run {
            self.release(&alloc.allocated).await;
        }
        result.map(|()| alloc)
    }

    async fn allocate_inner(
        &self,
        name: &str,
        svc: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
        alloc: &mut Allocation,
    ) -> Result<()> {
        let spec = svc.get("spec").cloned().unwrap_or(json!({}));
        let external_name = spec["type"].as_str() == Some("ExternalName");
        let old_ip = old
            .and_then(|o| o["spec"]["clusterIP"].as_str())
            .map(str::to_string);
        let wanted = spec["clusterIP"].as_str().unwrap_or("").to_string();
        if external_name {
            if let Some(ip) = old_ip.filter(|ip| ip != "None" && !ip.is_empty()) {
                alloc.released.push(format!("{IP_PREFIX}{ip}"));
            }
        } else if let Some(ip) = old_ip.clone().filter(|ip| !ip.is_empty()) {
            // Updates keep the IP; clusterIP is immutable and validated elsewhere.
            svc["spec"]["clusterIP"] = json!(ip);
            svc["spec"]["clusterIPs"] = json!([ip]);
        } else if wanted == "None" {
            svc["spec"]["clusterIPs"] = json!(["None"]);
        } else if wanted.is_empty() {
            let ip = self.next_ip(dry_run).await?;
            if !dry_run {
                alloc.allocated.push(ip_key(ip));
            }
            svc["spec"]["clusterIP"] = json!(ip.to_string());
            svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
        } else {
            let ip: Ipv4Addr = wanted.parse().map_err(|_| {
                invalid(
                    name,
                    "spec.clusterIPs[0]",
                    json!(wanted),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )
            })?;
            if !self.range.contains(ip) {
                return Err(invalid(
                    name,
                    "spec.clusterIPs",
                    json!([wanted]),
                    &format!("failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}", self.range),
                ));
            }
            if !self.take(&ip_key(ip), dry_run).await? {
                return Err(invalid(
                    name,
                    "spec.clusterIPs",
                    json!([wanted]),
                    &format!("failed to allocate IP {ip}: provided IP is already allocated"),
                ));
            }
            if !dry_run {
                alloc.allocated.push(ip_key(ip));
            }
            svc["spec"]["clusterIPs"] = json!([wanted]);
        }
        if !external_name
            && svc["spec"]["clusterIP"]
                .as_str()
                .map(|s| s != "None")
                .unwrap_or(false)
        {
            svc["spec"]["ipFamilies"] = json!(["IPv4"]);
            if svc["spec"].get("ipFamilyPolicy").is_none() {
                svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
            }
        }
        // NodePorts.
        let old_ports: Vec<u16> = old.map(node_ports).unwrap_or_default();
        let want_ports = node_port_types(&svc["spec"]);
        let mut kept = Vec::new();
        if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
            for (i, p) in ports.iter_mut().enumerate() {
                if !want_ports {
                    if let Some(m) = p.as_object_mut() {
                        m.remove("nodePort");
                    }
                    continue;
                }
                match p["nodePort"].as_u64() {
                    Some(n) if n > 0 => {
                        let n = n as u16;
                        if old_ports.contains(&n) {
                            kept.push(n);
                            continue;
                        }
                        if n < self.ports.min || n > self.ports.max {
                            return Err(invalid(name, &format!("spec.ports[{i}].nodePort"), json!(n), &format!("provided port is not in the valid range. The range of valid ports is {}-{}", self.ports.min, self.ports.max)));
                        }
                        if !self.take(&port_key(n), dry_run).await? {
                            return Err(invalid(
                                name,
                                &format!("spec.ports[{i}].nodePort"),
                                json!(n),
                                "provided port is already allocated",
                            ));
                        }
                        if !dry_run {
                            alloc.allocated.push(port_key(n));
                        }
                    }
                    _ => {
                        let n = self.next_port(dry_run).await?;
                        if !dry_run {
                            alloc.allocated.push(port_key(n));
                        }
                        p["nodePort"] = json!(n);
                    }
                }
            }
        }
        for p in old_ports {
            if !kept.contains(&p) {
                alloc.released.push(port_key(p));
            }
        }
        Ok(())
    }

    /// Gives keys back (best effort: a leaked key only shrinks the range until repaired).
    pub async fn release(&self, keys: &[String]) {
        for k in keys {
            if let Err(e) = self.storage.release(k).await {
                tracing::warn!(key = %k, error = %e, "releasing an allocation");
            }
        }
    }

    /// Everything a deleted Service held.
    pub async fn release_service(&self, svc: &Value) {
        let mut keys = Vec::new();
        if let Some(ip) = svc["spec"]["clusterIP"].as_str() {
            if ip != "None" && !ip.is_empty() {
                keys.push(format!("{IP_PREFIX}{ip}"));
            }
        }
        keys.extend(node_ports(svc).into_iter().map(port_key));
        self.release(&keys).await;
    }

    /// Reserves a specific IP (the `kubernetes` Service's) without failing if it is taken.
    pub async fn reserve_ip(&self, ip: Ipv4Addr) -> Result<()> {
        self.storage
            .reserve(&ip_key(ip), b"")
            .await
            .map(|_| ())
            .map_err(Self::store_err)
    }
}

fn node_ports(svc: &Value) -> Vec<u16> {
    svc["spec"]["ports"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["nodePort"].as_u64())
                .filter(|n| *n > 0)
                .map(|n| n as u16)
                .collect()
        })
        .unwrap_or_default()
}

fn invalid(name: &str, field: &str, value: Value, detail: &str) -> ApiError {
    ApiError::invalid(
        "",
        "Service",
        name,
        &[FieldError::invalid(field, value, detail)],
    )
}
