//! Service and EndpointSlice caches, the per-Service view the proxiers render, and which
//! Services changed since the last sync.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use sha2::{Digest, Sha256};

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The annotation the EndpointSlice controller stamps with the time of the triggering change.
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Upstream's label selector for both watches: objects another proxy or nobody handles.
pub const WATCH_LABEL_SELECTOR: &str =
    "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";

/// `namespace/name` of a Service.
pub type ServiceKey = (String, String);

/// Transport protocol of a Service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(s: Option<&str>) -> Option<Self> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// Lowercase name, as iptables, nft and the chain-name hashes use it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

/// One backend of a Service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On this node (EndpointSlice nodeName equals the proxy's hostname).
    pub local: bool,
}

impl Endpoint {
    /// `ip:port`, as upstream's endpoint strings.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// One port of a Service with what the proxiers need of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub node_port: Option<u16>,
    pub external_ips: Vec<Ipv4Addr>,
    /// sessionAffinity ClientIP timeout in seconds.
    pub affinity_seconds: Option<u32>,
    pub external_local: bool,
    pub internal_local: bool,
    /// Ready (or, when none is, serving-terminating) endpoints, sorted.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// Upstream's ServicePortName string: `ns/name` plus `:port` when the port is named.
    pub fn port_name_string(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, self.port_name)
        }
    }

    /// Endpoints serving cluster traffic (upstream's CategorizeEndpoints: ready ones, else
    /// serving-terminating ones).
    pub fn cluster_endpoints(&self) -> Vec<&Endpoint> {
        let ready: Vec<&Endpoint> = self.endpoints.iter().filter(|e| e.ready).collect();
        if !ready.is_empty() {
            return ready;
        }
        self.endpoints
            .iter()
            .filter(|e| e.serving && e.terminating)
            .collect()
    }

    /// Cluster endpoints on this node.
    pub fn local_endpoints(&self) -> Vec<&Endpoint> {
        let ready: Vec<&Endpoint> = self
            .endpoints
            .iter()
            .filter(|e| e.ready && e.local)
            .collect();
        if !ready.is_empty() {
            return ready;
        }
        self.endpoints
            .iter()
            .filter(|e| e.serving && e.terminating && e.local)
            .collect()
    }

    /// Whether NodePort/externalIP traffic is externally reachable through this port.
    pub fn has_external(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty()
    }
}

/// base32 (RFC 4648 alphabet, with padding) as Go's `base32.StdEncoding`.
pub fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    for chunk in data.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let bits = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < chars {
                let idx = ((bits >> (35 - i * 5)) & 0x1f) as usize;
                out.push(ALPHABET[idx] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// First 16 characters of base32(sha256(s)), upstream's chain-name hash.
pub fn hash16(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    base32(&digest)[..16].to_owned()
}

/// What the watches have delivered, plus the Services changed since the last sync.
#[derive(Default)]
pub struct Tracker {
    services: BTreeMap<ServiceKey, Service>,
    /// EndpointSlices by Service, then by slice name.
    slices: BTreeMap<ServiceKey, BTreeMap<String, EndpointSlice>>,
    /// Slice name to the Service it was filed under (the label can change).
    slice_owner: BTreeMap<ServiceKey, ServiceKey>,
    dirty: BTreeSet<ServiceKey>,
    /// Trigger times of EndpointSlice changes not yet programmed.
    pending_triggers: Vec<SystemTime>,
    pub services_synced: bool,
    pub slices_synced: bool,
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ServiceKey {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl Tracker {
    pub fn apply_service(&mut self, svc: Service) {
        let key = key_of(&svc.metadata);
        if self.services.get(&key).map(|s| &s.spec) != Some(&svc.spec) {
            self.dirty.insert(key.clone());
        }
        self.services.insert(key, svc);
    }

    pub fn delete_service(&mut self, svc: &Service) {
        let key = key_of(&svc.metadata);
        if self.services.remove(&key).is_some() {
            self.dirty.insert(key);
        }
    }

    /// Replaces every Service (a watch (re)list).
    pub fn replace_services(&mut self, all: Vec<Service>) {
        let old: Vec<ServiceKey> = self.services.keys().cloned().collect();
        let mut fresh = BTreeMap::new();
        for s in all {
            fresh.insert(key_of(&s.metadata), s);
        }
        for k in old {
            if !fresh.contains_key(&k) {
                self.dirty.insert(k);
            }
        }
        for s in fresh.into_values() {
            self.apply_service(s);
        }
        self.services_synced = true;
    }

    pub fn apply_slice(&mut self, slice: EndpointSlice) {
        let slice_key = key_of(&slice.metadata);
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .cloned()
        else {
            self.delete_slice_key(&slice_key);
            return;
        };
        let svc_key = (slice_key.0.clone(), service);
        if let Some(old_owner) = self.slice_owner.get(&slice_key) {
            if *old_owner != svc_key {
                self.delete_slice_key(&slice_key);
            }
        }
        let slices = self.slices.entry(svc_key.clone()).or_default();
        let changed = slices
            .get(&slice_key.1)
            .map(|old| old.endpoints != slice.endpoints || old.ports != slice.ports)
            .unwrap_or(true);
        if changed {
            if let Some(t) = slice
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LAST_CHANGE_TRIGGER_TIME))
                .and_then(|t| parse_rfc3339(t))
            {
                self.pending_triggers.push(t);
            }
            self.dirty.insert(svc_key.clone());
        }
        slices.insert(slice_key.1.clone(), slice);
        self.slice_owner.insert(slice_key, svc_key);
    }

    pub fn delete_slice(&mut self, slice: &EndpointSlice) {
        self.delete_slice_key(&key_of(&slice.metadata));
    }

    fn delete_slice_key(&mut self, slice_key: &ServiceKey) {
        if let Some(owner) = self.slice_owner.remove(slice_key) {
            if let Some(slices) = self.slices.get_mut(&owner) {
                slices.remove(&slice_key.1);
                if slices.is_empty() {
                    self.slices.remove(&owner);
                }
            }
            self.dirty.insert(owner);
        }
    }

    /// Replaces every EndpointSlice (a watch (re)list).
    pub fn replace_slices(&mut self, all: Vec<EndpointSlice>) {
        let fresh: BTreeSet<ServiceKey> = all.iter().map(|s| key_of(&s.metadata)).collect();
        let stale: Vec<ServiceKey> = self
            .slice_owner
            .keys()
            .filter(|k| !fresh.contains(*k))
            .cloned()
            .collect();
        for k in stale {
            self.delete_slice_key(&k);
        }
        for s in all {
            self.apply_slice(s);
        }
        self.slices_synced = true;
    }

    /// Whether both initial lists have arrived.
    pub fn synced(&self) -> bool {
        self.services_synced && self.slices_synced
    }

    /// Takes the set of changed Services and the pending trigger times.
    pub fn take_dirty(&mut self) -> (BTreeSet<ServiceKey>, Vec<SystemTime>) {
        (
            std::mem::take(&mut self.dirty),
            std::mem::take(&mut self.pending_triggers),
        )
    }

    pub fn has_changes(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Every known Service.
    pub fn all_keys(&self) -> BTreeSet<ServiceKey> {
        self.services.keys().cloned().collect()
    }

    /// The proxied ports of one Service (empty when it is gone or not proxied).
    pub fn service_ports(&self, key: &ServiceKey, hostname: &str) -> Vec<ServicePort> {
        let Some(svc) = self.services.get(key) else {
            return Vec::new();
        };
        let slices = self.slices.get(key);
        build_ports(svc, slices, hostname)
    }
}

/// The ports of `svc` with their endpoints from `slices`.
pub fn build_ports(
    svc: &Service,
    slices: Option<&BTreeMap<String, EndpointSlice>>,
    hostname: &str,
) -> Vec<ServicePort> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let Some(cluster_ip) = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .find_map(|ip| ip.parse::<Ipv4Addr>().ok())
    else {
        // Headless ("None") or IPv6-only: nothing to program in the IPv4 family.
        return Vec::new();
    };
    let external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .map(|t| t.max(1) as u32)
            .unwrap_or(10800)
    });
    let node_port_type = matches!(
        spec.type_.as_deref(),
        Some("NodePort") | Some("LoadBalancer")
    );
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local")
        && (node_port_type || !external_ips.is_empty());
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let namespace = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();

    let mut ports = Vec::new();
    for p in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
            continue;
        };
        let Ok(port) = u16::try_from(p.port) else {
            continue;
        };
        let port_name = p.name.clone().unwrap_or_default();
        let mut endpoints: BTreeMap<(Ipv4Addr, u16), Endpoint> = BTreeMap::new();
        for slice in slices.into_iter().flat_map(|s| s.values()) {
            if slice.address_type != "IPv4" {
                continue;
            }
            let Some(target) = slice.ports.iter().flatten().find(|sp| {
                sp.name.clone().unwrap_or_default() == port_name
                    && Protocol::parse(sp.protocol.as_deref()) == Some(protocol)
            }) else {
                continue;
            };
            let Some(target_port) = target.port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            for ep in &slice.endpoints {
                let Some(ip) = ep
                    .addresses
                    .first()
                    .and_then(|a| a.parse::<Ipv4Addr>().ok())
                else {
                    continue;
                };
                let cond = ep.conditions.as_ref();
                let ready = cond.and_then(|c| c.ready).unwrap_or(true);
                let serving = cond.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
                let node = ep.node_name.clone().or_else(|| {
                    ep.deprecated_topology
                        .as_ref()
                        .and_then(|t| t.get("kubernetes.io/hostname").cloned())
                });
                let local = node.as_deref() == Some(hostname);
                let e = Endpoint {
                    ip,
                    port: target_port,
                    ready,
                    serving,
                    terminating,
                    local,
                };
                // The same address in two slices: keep the ready one.
                endpoints
                    .entry((ip, target_port))
                    .and_modify(|old| {
                        if !old.ready && e.ready {
                            *old = e.clone();
                        }
                    })
                    .or_insert(e);
            }
        }
        ports.push(ServicePort {
            namespace: namespace.clone(),
            name: name.clone(),
            port_name,
            protocol,
            cluster_ip,
            port,
            node_port: if node_port_type {
                p.node_port.and_then(|n| u16::try_from(n).ok())
            } else {
                None
            },
            external_ips: external_ips.clone(),
            affinity_seconds,
            external_local,
            internal_local,
            endpoints: endpoints.into_values().collect(),
        });
    }
    ports
}

/// Parses the RFC 3339 timestamps the apiserver writes (`2024-01-02T03:04:05Z`, optional
/// fraction and offset).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (date, rest) = s.split_once('T')?;
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let mo: i64 = d.next()?.parse().ok()?;
    let da: i64 = d.next()?.parse().ok()?;
    let (time, offset_secs) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0i64)
    } else {
        let idx = rest.rfind(['+', '-'])?;
        let (t, off) = rest.split_at(idx);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        (
            t,
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60),
        )
    };
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, b),
        None => (time, ""),
    };
    let mut t = hms.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let se: i64 = t.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + h * 3600 + mi * 60 + se - offset_secs;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        let n: u32 = digits.parse().ok()?;
        n * 10u32.pow(9 - digits.len() as u32)
    };
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_go_std_encoding() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY======");
        assert_eq!(base32(b"fo"), "MZXQ====");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI======");
    }

    #[test]
    fn chain_hash_matches_upstream_fixture() {
        // From upstream's iptables proxier tests: ns1/svc1:p80 tcp -> KUBE-SVC-XPGD46QRK7WJZT7O.
        assert_eq!(hash16("ns1/svc1:p80tcp"), "XPGD46QRK7WJZT7O");
    }

    #[test]
    fn rfc3339_timestamps_parse() {
        let t = parse_rfc3339("1970-01-02T00:00:01Z").expect("parses");
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .expect("after")
                .as_secs(),
            86401
        );
        let t = parse_rfc3339("2024-03-01T10:00:00.5+01:00").expect("parses");
        let s = t.duration_since(SystemTime::UNIX_EPOCH).expect("after");
        assert_eq!(s.as_secs(), 1709283600);
        assert_eq!(s.subsec_millis(), 500);
        assert!(parse_rfc3339("yesterday").is_none());
    }

    fn service(yaml: &str) -> Service {
        serde_yaml_ng::from_str(yaml).expect("service yaml")
    }

    fn slice(yaml: &str) -> EndpointSlice {
        serde_yaml_ng::from_str(yaml).expect("slice yaml")
    }

    #[test]
    fn ports_pick_ready_endpoints_and_mark_local_ones() {
        let mut t = Tracker::default();
        t.apply_service(service(
            "metadata: {namespace: ns, name: web}\nspec:\n  clusterIP: 10.96.0.10\n  ports: [{name: http, port: 80, protocol: TCP}]\n",
        ));
        t.apply_slice(slice(
            "metadata: {namespace: ns, name: web-abc, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints:\n- addresses: [10.244.1.2]\n  nodeName: n1\n- addresses: [10.244.2.2]\n  nodeName: n2\n- addresses: [10.244.3.2]\n  conditions: {ready: false}\n",
        ));
        let (dirty, _) = t.take_dirty();
        assert_eq!(dirty.len(), 1);
        let ports = t.service_ports(&("ns".into(), "web".into()), "n1");
        assert_eq!(ports.len(), 1);
        let p = &ports[0];
        assert_eq!(p.port_name_string(), "ns/web:http");
        assert_eq!(p.cluster_endpoints().len(), 2);
        let local = p.local_endpoints();
        assert_eq!(local.len(), 1);
        assert_eq!(local[0].addr(), "10.244.1.2:8080");

        // An unchanged re-delivery does not make the Service dirty again.
        t.apply_service(service(
            "metadata: {namespace: ns, name: web}\nspec:\n  clusterIP: 10.96.0.10\n  ports: [{name: http, port: 80, protocol: TCP}]\n",
        ));
        assert!(!t.has_changes());
    }
}
