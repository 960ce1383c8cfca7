//! An immutable snapshot of what DNS answers come from: namespaces, Services, ready endpoints
//! and the reverse (IP -> name) map, built from the watch caches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A port of a Service or an EndpointSlice as DNS sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// The port name, lowercase ("" when unnamed).
    pub name: String,
    /// The protocol, lowercase ("tcp", "udp", "sctp").
    pub protocol: String,
    pub port: u16,
}

/// How a Service is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Its cluster IPs (empty while none is allocated).
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: its ready endpoints.
    Headless,
    /// A CNAME to this name (lowercase, without a trailing dot).
    ExternalName(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub kind: Kind,
    pub ports: Vec<Port>,
}

/// One ready address of a Service's endpoints with the ports its slice declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// `hostname` of the endpoint, lowercase.
    pub hostname: Option<String>,
    /// The slice's ports; `None` when the slice declares none (still answers A/AAAA).
    pub ports: Option<Vec<Port>>,
}

impl Endpoint {
    /// The label naming this endpoint under its Service: its hostname, else its IP with dashes
    /// (`10-1-2-3`, `fd00--1`), as CoreDNS names endpoints.
    pub fn label(&self) -> String {
        match &self.hostname {
            Some(h) => h.clone(),
            None => dashed(self.ip),
        }
    }
}

/// An IP with `.` or `:` replaced by `-`.
pub fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// Everything the resolver reads; cheap to share, rebuilt on every change.
#[derive(Debug, Default)]
pub struct Index {
    pub namespaces: BTreeSet<String>,
    /// (namespace, name) -> Service.
    pub services: HashMap<(String, String), ServiceEntry>,
    /// (namespace, service name) -> ready endpoints of all its slices.
    pub endpoints: HashMap<(String, String), Vec<Endpoint>>,
    /// IP -> names relative to the zone (`svc.ns.svc`, `host.svc.ns.svc`), for PTR.
    pub reverse: HashMap<IpAddr, BTreeSet<String>>,
    /// SOA serial: changes whenever the snapshot does.
    pub serial: u32,
}

impl Index {
    /// Builds a snapshot from the cached objects.
    pub fn build(
        namespaces: &[Arc<Namespace>],
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
        serial: u32,
    ) -> Self {
        let mut index = Index {
            serial,
            ..Default::default()
        };
        for ns in namespaces {
            if let Some(name) = &ns.metadata.name {
                index.namespaces.insert(name.clone());
            }
        }
        for svc in services {
            let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
                continue;
            };
            let Some(entry) = service_entry(svc) else {
                continue;
            };
            if let Kind::ClusterIp(ips) = &entry.kind {
                for ip in ips {
                    index
                        .reverse
                        .entry(*ip)
                        .or_default()
                        .insert(format!("{name}.{ns}.svc"));
                }
            }
            index.services.insert((ns.clone(), name.clone()), entry);
        }
        // Slices sorted by name give every rebuild the same answer order.
        let mut by_service: BTreeMap<(String, String, String), &EndpointSlice> = BTreeMap::new();
        for slice in slices {
            let (Some(ns), Some(name)) = (&slice.metadata.namespace, &slice.metadata.name) else {
                continue;
            };
            let Some(svc) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            by_service.insert((ns.clone(), svc.clone(), name.clone()), slice);
        }
        for ((ns, svc, _), slice) in by_service {
            if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
                continue;
            }
            let ports = slice.ports.as_ref().filter(|p| !p.is_empty()).map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| {
                        Some(Port {
                            name: p.name.clone().unwrap_or_default().to_ascii_lowercase(),
                            protocol: p
                                .protocol
                                .clone()
                                .unwrap_or_else(|| "TCP".into())
                                .to_ascii_lowercase(),
                            port: u16::try_from(p.port?).ok()?,
                        })
                    })
                    .collect::<Vec<_>>()
            });
            let list = index
                .endpoints
                .entry((ns.clone(), svc.clone()))
                .or_default();
            for ep in &slice.endpoints {
                // As CoreDNS: an unset ready condition counts as ready.
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready {
                    continue;
                }
                let hostname = ep.hostname.as_ref().map(|h| h.to_ascii_lowercase());
                for addr in &ep.addresses {
                    let Ok(ip) = addr.parse::<IpAddr>() else {
                        continue;
                    };
                    let endpoint = Endpoint {
                        ip,
                        hostname: hostname.clone(),
                        ports: ports.clone(),
                    };
                    index
                        .reverse
                        .entry(ip)
                        .or_default()
                        .insert(format!("{}.{svc}.{ns}.svc", endpoint.label()));
                    list.push(endpoint);
                }
            }
        }
        index
    }

    pub fn has_namespace(&self, ns: &str) -> bool {
        self.namespaces.contains(ns)
    }

    pub fn service(&self, ns: &str, name: &str) -> Option<&ServiceEntry> {
        self.services.get(&(ns.to_owned(), name.to_owned()))
    }

    pub fn service_endpoints(&self, ns: &str, name: &str) -> &[Endpoint] {
        self.endpoints
            .get(&(ns.to_owned(), name.to_owned()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

fn service_entry(svc: &Service) -> Option<ServiceEntry> {
    let spec = svc.spec.as_ref()?;
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(Port {
                name: p.name.clone().unwrap_or_default().to_ascii_lowercase(),
                protocol: p
                    .protocol
                    .clone()
                    .unwrap_or_else(|| "TCP".into())
                    .to_ascii_lowercase(),
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        let target = spec.external_name.as_deref().unwrap_or("");
        let target = target.trim_end_matches('.').to_ascii_lowercase();
        // An IP is not a name to CNAME to; CoreDNS serves nothing for it either.
        if target.is_empty() || target.parse::<IpAddr>().is_ok() {
            return None;
        }
        Kind::ExternalName(target)
    } else if spec.cluster_ip.as_deref() == Some("None") {
        Kind::Headless
    } else {
        let mut ips: Vec<IpAddr> = spec
            .cluster_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        if ips.is_empty() {
            ips.extend(
                spec.cluster_ip
                    .as_deref()
                    .and_then(|ip| ip.parse::<IpAddr>().ok()),
            );
        }
        Kind::ClusterIp(ips)
    };
    Some(ServiceEntry { kind, ports })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn ns(name: &str) -> Arc<Namespace> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace"))
    }

    pub(crate) fn svc(v: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(v).expect("service"))
    }

    pub(crate) fn slice(v: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(v).expect("endpointslice"))
    }

    #[test]
    fn services_are_classified_by_type_and_cluster_ip() {
        let index = Index::build(
            &[ns("default")],
            &[
                svc(json!({"metadata": {"name": "web", "namespace": "default"},
                    "spec": {"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5", "fd00::5"],
                             "ports": [{"name": "HTTP", "port": 80}]}})),
                svc(json!({"metadata": {"name": "db", "namespace": "default"},
                    "spec": {"clusterIP": "None"}})),
                svc(json!({"metadata": {"name": "ext", "namespace": "default"},
                    "spec": {"type": "ExternalName", "externalName": "Example.COM."}})),
                svc(
                    json!({"metadata": {"name": "ipext", "namespace": "default"},
                    "spec": {"type": "ExternalName", "externalName": "1.2.3.4"}}),
                ),
            ],
            &[],
            1,
        );
        let web = index.service("default", "web").expect("web");
        assert_eq!(
            web.kind,
            Kind::ClusterIp(vec![
                "10.96.0.5".parse().expect("ip"),
                "fd00::5".parse().expect("ip")
            ])
        );
        assert_eq!(
            web.ports,
            vec![Port {
                name: "http".into(),
                protocol: "tcp".into(),
                port: 80
            }]
        );
        assert_eq!(
            index.service("default", "db").expect("db").kind,
            Kind::Headless
        );
        assert_eq!(
            index.service("default", "ext").expect("ext").kind,
            Kind::ExternalName("example.com".into())
        );
        assert!(index.service("default", "ipext").is_none());
        assert_eq!(
            index.reverse[&"fd00::5".parse::<IpAddr>().expect("ip")],
            BTreeSet::from(["web.default.svc".to_owned()])
        );
    }

    #[test]
    fn only_ready_endpoints_of_ip_slices_are_indexed() {
        let index = Index::build(
            &[ns("default")],
            &[],
            &[
                slice(json!({"metadata": {"name": "db-1", "namespace": "default",
                                          "labels": {SERVICE_NAME_LABEL: "db"}},
                    "addressType": "IPv4",
                    "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
                    "endpoints": [
                        {"addresses": ["10.1.0.1"], "hostname": "DB-0",
                         "conditions": {"ready": true}},
                        {"addresses": ["10.1.0.2"]},
                        {"addresses": ["10.1.0.3"], "conditions": {"ready": false}}]})),
                slice(
                    json!({"metadata": {"name": "db-fqdn", "namespace": "default",
                                          "labels": {SERVICE_NAME_LABEL: "db"}},
                    "addressType": "FQDN",
                    "endpoints": [{"addresses": ["x.example.com"]}]}),
                ),
                slice(
                    json!({"metadata": {"name": "orphan", "namespace": "default"},
                    "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.0.9"]}]}),
                ),
            ],
            1,
        );
        let eps = index.service_endpoints("default", "db");
        let ips: Vec<String> = eps.iter().map(|e| e.ip.to_string()).collect();
        assert_eq!(ips, ["10.1.0.1", "10.1.0.2"]);
        assert_eq!(eps[0].label(), "db-0");
        assert_eq!(eps[1].label(), "10-1-0-2");
        assert_eq!(eps[0].ports.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            index.reverse[&"10.1.0.2".parse::<IpAddr>().expect("ip")],
            BTreeSet::from(["10-1-0-2.db.default.svc".to_owned()])
        );
        assert!(!index
            .reverse
            .contains_key(&"10.1.0.9".parse::<IpAddr>().expect("ip")));
    }

    #[test]
    fn ipv6_endpoints_are_named_with_dashes() {
        assert_eq!(dashed("fd00::1".parse().expect("ip")), "fd00--1");
        assert_eq!(dashed("10.0.0.1".parse().expect("ip")), "10-0-0-1");
    }
}
