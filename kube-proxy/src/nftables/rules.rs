//! Renders one Service's nftables objects in upstream's `kube-proxy` table layout (pure).

use std::collections::BTreeMap;

use crate::changes::{base32, Endpoint, ServicePort};
use crate::RuleConfig;
use sha2::{Digest, Sha256};

pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
pub const CLUSTER_IPS: &str = "cluster-ips";
pub const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
pub const REJECT_CHAIN: &str = "reject-chain";

/// Longest name base (upstream leaves room for the longest prefix in nft's 256-byte limit).
const NAME_BASE_MAX: usize = 256 - "external-".len();

/// Upstream's hashAndTruncate: 8 characters of base32(sha256(name)), `-`, the readable name.
fn hash_and_truncate(name: &str) -> String {
    let hash = base32(&Sha256::digest(name.as_bytes()));
    let mut out = format!("{}-{name}", &hash[..8]);
    if out.len() > NAME_BASE_MAX {
        out.truncate(NAME_BASE_MAX - 3);
        out.push_str("...");
    }
    out
}

fn base(p: &ServicePort) -> String {
    format!(
        "{}/{}/{}/{}",
        p.namespace,
        p.name,
        p.protocol.as_str(),
        p.port_name
    )
}

/// `service-<hash>-ns/name/proto/port`: the cluster-policy chain of a Service port.
pub fn service_chain_of(p: &ServicePort) -> String {
    format!("service-{}", hash_and_truncate(&base(p)))
}

fn local_chain(p: &ServicePort) -> String {
    format!("local-{}", hash_and_truncate(&base(p)))
}

fn external_chain(p: &ServicePort) -> String {
    format!("external-{}", hash_and_truncate(&base(p)))
}

fn endpoint_chain(p: &ServicePort, e: &Endpoint) -> String {
    format!(
        "endpoint-{}",
        hash_and_truncate(&format!("{}__{}/{}", base(p), e.ip, e.port))
    )
}

fn affinity_set(p: &ServicePort, e: &Endpoint) -> String {
    format!(
        "affinity-{}",
        hash_and_truncate(&format!("{}__{}/{}", base(p), e.ip, e.port))
    )
}

/// One Service's objects: chains with their rules, affinity sets, and map/set elements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    pub chains: BTreeMap<String, Vec<String>>,
    /// Set name -> its definition (between the braces).
    pub sets: BTreeMap<String, String>,
    /// (map or set, element text).
    pub elements: Vec<(&'static str, String)>,
}

/// Renders every port of one Service.
pub fn render(ports: &[ServicePort], cfg: &RuleConfig) -> Rendered {
    let mut out = Rendered::default();
    for p in ports {
        render_port(p, cfg, &mut out);
    }
    out
}

fn render_port(p: &ServicePort, cfg: &RuleConfig, out: &mut Rendered) {
    let proto = p.protocol.as_str();
    let svc = service_chain_of(p);
    let local = local_chain(p);
    let ext = external_chain(p);
    let cluster = p.cluster_endpoints();
    let local_eps = p.local_endpoints();
    let internal_has = if p.internal_local {
        !local_eps.is_empty()
    } else {
        !cluster.is_empty()
    };
    let external_has = if p.external_local {
        !local_eps.is_empty()
    } else {
        !cluster.is_empty()
    };
    let no_ep_verdict = |has_cluster: bool| {
        if has_cluster {
            "drop".to_owned()
        } else {
            format!("goto {REJECT_CHAIN}")
        }
    };

    out.elements.push((CLUSTER_IPS, p.cluster_ip.to_string()));
    let internal_chain = if p.internal_local { &local } else { &svc };
    if internal_has {
        out.elements.push((
            SERVICE_IPS,
            format!(
                "{} . {proto} . {} : goto {internal_chain}",
                p.cluster_ip, p.port
            ),
        ));
    } else {
        out.elements.push((
            NO_ENDPOINT_SERVICES,
            format!(
                "{} . {proto} . {} : {}",
                p.cluster_ip,
                p.port,
                no_ep_verdict(!cluster.is_empty())
            ),
        ));
    }

    if p.has_external() {
        if external_has {
            let mut rules = Vec::new();
            if p.external_local {
                if !cluster.is_empty() {
                    for (ip, len) in &cfg.cluster_cidrs {
                        rules.push(format!(
                            "ip saddr {ip}/{len} goto {svc} comment \"short-circuit pod traffic\""
                        ));
                    }
                    rules.push(format!(
                        "fib saddr type local jump {MARK_FOR_MASQUERADE} comment \"masquerade local traffic\""
                    ));
                    rules.push(format!(
                        "fib saddr type local goto {svc} comment \"short-circuit local traffic\""
                    ));
                }
                rules.push(format!("goto {local}"));
            } else {
                rules.push(format!("jump {MARK_FOR_MASQUERADE}"));
                rules.push(format!("goto {svc}"));
            }
            out.chains.insert(ext.clone(), rules);
            for eip in &p.external_ips {
                out.elements.push((
                    SERVICE_IPS,
                    format!("{eip} . {proto} . {} : goto {ext}", p.port),
                ));
            }
            if let Some(np) = p.node_port {
                out.elements
                    .push((SERVICE_NODEPORTS, format!("{proto} . {np} : goto {ext}")));
            }
        } else {
            let v = no_ep_verdict(!cluster.is_empty());
            for eip in &p.external_ips {
                out.elements.push((
                    NO_ENDPOINT_SERVICES,
                    format!("{eip} . {proto} . {} : {v}", p.port),
                ));
            }
            if let Some(np) = p.node_port {
                out.elements
                    .push((NO_ENDPOINT_NODEPORTS, format!("{proto} . {np} : {v}")));
            }
        }
    }

    if !cluster.is_empty() {
        let mut rules = Vec::new();
        if cfg.masquerade_all {
            rules.push(format!(
                "ip daddr {} {proto} dport {} jump {MARK_FOR_MASQUERADE}",
                p.cluster_ip, p.port
            ));
        } else {
            for (ip, len) in &cfg.cluster_cidrs {
                rules.push(format!(
                    "ip daddr {} {proto} dport {} ip saddr != {ip}/{len} jump {MARK_FOR_MASQUERADE}",
                    p.cluster_ip, p.port
                ));
            }
        }
        endpoint_dispatch(&mut rules, p, &cluster);
        out.chains.insert(svc.clone(), rules);
    }
    if (p.internal_local || p.external_local) && !local_eps.is_empty() {
        let mut rules = Vec::new();
        endpoint_dispatch(&mut rules, p, &local_eps);
        out.chains.insert(local.clone(), rules);
    }
    let mut used: Vec<&Endpoint> = cluster.clone();
    if p.internal_local || p.external_local {
        used.extend(local_eps.iter().copied());
    }
    for e in used {
        let chain = endpoint_chain(p, e);
        if out.chains.contains_key(&chain) {
            continue;
        }
        let mut rules = vec![format!("ip saddr {} jump {MARK_FOR_MASQUERADE}", e.ip)];
        if let Some(seconds) = p.affinity_seconds {
            let set = affinity_set(p, e);
            out.sets.insert(
                set.clone(),
                format!("type ipv4_addr ; flags dynamic,timeout ; timeout {seconds}s ;"),
            );
            rules.push(format!("update @{set} {{ ip saddr }}"));
        }
        rules.push(format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port));
        out.chains.insert(chain, rules);
    }
}

/// Affinity lookups, then the random spread over `eps`.
///
/// Upstream writes one `numgen random mod n vmap { ... }`, an anonymous map per Service. This
/// kernel allocates and finds anonymous sets by scanning every set of the table and the whole
/// transaction, which made a 10,000-Service sync take tens of seconds; the same uniform choice
/// is made here without a set: rule i goes to endpoint i when `numgen random mod (n-i)` is 0,
/// the last rule unconditionally (iptables' cascade).
fn endpoint_dispatch(rules: &mut Vec<String>, p: &ServicePort, eps: &[&Endpoint]) {
    if p.affinity_seconds.is_some() {
        for e in eps {
            rules.push(format!(
                "ip saddr @{} goto {}",
                affinity_set(p, e),
                endpoint_chain(p, e)
            ));
        }
    }
    let n = eps.len();
    for (i, e) in eps.iter().enumerate() {
        let chain = endpoint_chain(p, e);
        if i + 1 < n {
            rules.push(format!("numgen random mod {} == 0 goto {chain}", n - i));
        } else {
            rules.push(format!("goto {chain}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::Protocol;
    use std::net::Ipv4Addr;

    fn port() -> ServicePort {
        ServicePort {
            namespace: "ns1".into(),
            name: "svc1".into(),
            port_name: "p80".into(),
            protocol: Protocol::Tcp,
            cluster_ip: Ipv4Addr::new(172, 30, 0, 41),
            port: 80,
            node_port: None,
            external_ips: vec![],
            affinity_seconds: None,
            external_local: false,
            internal_local: false,
            endpoints: vec![Endpoint {
                ip: Ipv4Addr::new(10, 180, 0, 1),
                port: 80,
                ready: true,
                serving: true,
                terminating: false,
                local: false,
            }],
        }
    }

    #[test]
    fn names_match_upstream_fixtures() {
        // From upstream's nftables proxier tests.
        assert_eq!(
            service_chain_of(&port()),
            "service-ULMVA6XW-ns1/svc1/tcp/p80"
        );
        let p = port();
        assert_eq!(
            endpoint_chain(&p, &p.endpoints[0]),
            "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
    }

    #[test]
    fn service_gets_map_elements_and_chains() {
        let cfg = RuleConfig {
            cluster_cidrs: vec![(Ipv4Addr::new(10, 0, 0, 0), 8)],
            masquerade_all: false,
            masquerade_mark: 0x4000,
        };
        let r = render(&[port()], &cfg);
        assert!(r.elements.contains(&(
            SERVICE_IPS,
            "172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80".to_owned()
        )));
        let svc = &r.chains["service-ULMVA6XW-ns1/svc1/tcp/p80"];
        assert_eq!(
            svc[1],
            "goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
        let mut empty = port();
        empty.endpoints.clear();
        let r = render(&[empty], &cfg);
        assert!(r.chains.is_empty());
        assert!(r.elements.contains(&(
            NO_ENDPOINT_SERVICES,
            "172.30.0.41 . tcp . 80 : goto reject-chain".to_owned()
        )));
    }
}
