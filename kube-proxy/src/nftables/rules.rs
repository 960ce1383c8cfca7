//! Renders one Service's nftables objects in upstream's `kube-proxy` table layout (pure).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

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
/// `ip . ip` of every endpoint: a connection DNATed back to its own source (hairpin) is
/// masqueraded, checked once in nat-postrouting.
pub const HAIRPIN: &str = "hairpin-endpoints";

/// How many dispatching chains share one endpoint range map. The kernel checks a new map
/// element against every rule bound to the map and walks every element of a map when a rule
/// binds to it, so one map for 10,000 chains made a full sync quadratic (2 s of kernel time);
/// shards of 128 keep both small while a Service's rollout still touches one map.
pub const IDS_PER_MAP: u16 = 128;

/// The endpoint range map of dispatch id `id` for `proto` ("tcp", "udp" or "sctp"): one per
/// protocol and block of ids (nft 1.0.6 cannot use a map declared with `th dport` from a rule
/// that matched a protocol). Elements: `(id << 16) + r : endpoint address . port`.
pub fn endpoint_ranges(proto: &str, id: u16) -> String {
    format!("endpoint-ranges-{proto}-{}", id / IDS_PER_MAP)
}

/// The definition of an endpoint range map (see [`endpoint_ranges`]).
pub fn endpoint_ranges_def(proto: &str) -> String {
    format!(
        "typeof numgen random mod {SPREAD} : ip daddr . {proto} dport ; flags interval ; comment \"{proto} endpoint per range of random numbers, per dispatching chain\" ;"
    )
}

/// The endpoint choice draws `numgen random mod SPREAD offset (id << 16)`: each dispatching
/// chain owns the slice `[id << 16, (id + 1) << 16)` of its interval map (see
/// [`endpoint_ranges`]), in which each of its n endpoints has a contiguous range (see
/// [`ranges`]).
pub const SPREAD: u32 = 65536;
/// Dispatch ids are 0..MAX_IDS (the last slice ends at 0xffff0000, inside a u32).
pub const MAX_IDS: u32 = 65535;

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

/// One Service's objects: chains with their rules, sets and maps, and elements of the shared
/// maps and sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    pub chains: BTreeMap<String, Vec<String>>,
    /// Set name -> its definition (between the braces): affinity sets.
    pub sets: BTreeMap<String, String>,
    /// Chain -> the endpoints it spreads connections over through an endpoint range map.
    pub dispatch: BTreeMap<String, Dispatch>,
    /// (shared map or set, element text).
    pub elements: Vec<(&'static str, String)>,
    /// Endpoint IPs in the shared hairpin set.
    pub hairpin: BTreeSet<Ipv4Addr>,
}

impl Rendered {
    /// Whether `self` and `other` differ in more than their endpoint ranges.
    pub fn structure_differs(&self, other: &Rendered) -> bool {
        self.chains != other.chains || self.sets != other.sets || self.elements != other.elements
    }
}

/// One chain's slice of an endpoint range map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatch {
    pub proto: &'static str,
    pub id: u16,
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

impl Dispatch {
    /// The map holding this slice.
    pub fn map(&self) -> String {
        endpoint_ranges(self.proto, self.id)
    }

    /// The first key of this chain's slice.
    pub fn offset(&self) -> u32 {
        u32::from(self.id) << 16
    }

    /// `[start, end)` keys and endpoint of each range.
    pub fn ranges(&self) -> impl Iterator<Item = (u32, u32, Ipv4Addr, u16)> + '_ {
        let base = self.offset();
        ranges(self.endpoints.len())
            .into_iter()
            .zip(&self.endpoints)
            .map(move |((a, b), (ip, port))| (base + a, base + b, *ip, *port))
    }

    /// The ranges as nft element text (`65536-98303 : 10.0.0.1 . 80, ...`).
    pub fn text(&self) -> String {
        let mut out = String::with_capacity(self.endpoints.len() * 40);
        for (start, end, ip, port) in self.ranges() {
            if !out.is_empty() {
                out.push_str(", ");
            }
            if end - start == 1 {
                let _ = write!(out, "{start} : {ip} . {port}");
            } else {
                let _ = write!(out, "{start}-{} : {ip} . {port}", end - 1);
            }
        }
        out
    }
}

/// The ranges `[start, end)` of [0, SPREAD) for `n` endpoints, in order: endpoint i gets
/// `[i*SPREAD/n, (i+1)*SPREAD/n)`, so each endpoint is chosen with probability
/// floor(SPREAD/n)/SPREAD or ceil(SPREAD/n)/SPREAD (the ranges differ by at most one value:
/// under 0.002 % of the traffic). Beyond SPREAD endpoints the rest get no range.
pub fn ranges(n: usize) -> Vec<(u32, u32)> {
    let n = n.min(SPREAD as usize) as u64;
    let spread = u64::from(SPREAD);
    (0..n)
        .map(|i| ((i * spread / n) as u32, ((i + 1) * spread / n) as u32))
        .collect()
}

/// The rule that picks an endpoint from the chain's slice of its endpoint range map and DNATs to
/// it. It does not change when the endpoints do: a rollout only replaces elements of a data
/// map, which (unlike a rule or a verdict) does not make the kernel re-validate the table.
fn dnat_rule(proto: &str, id: u16) -> String {
    format!(
        "meta l4proto {proto} dnat ip addr . port to numgen random mod {SPREAD} offset {} map @{}",
        u32::from(id) << 16,
        endpoint_ranges(proto, id)
    )
}

/// Gives a dispatching chain its id, or None when every id is taken.
pub type IdOf<'a> = dyn FnMut(&str) -> Option<u16> + 'a;

/// Renders every port of one Service; `id_of` names each dispatching chain's id.
pub fn render(ports: &[ServicePort], cfg: &RuleConfig, id_of: &mut IdOf<'_>) -> Rendered {
    let mut out = Rendered::default();
    for p in ports {
        render_port(p, cfg, id_of, &mut out);
    }
    out
}

fn render_port(p: &ServicePort, cfg: &RuleConfig, id_of: &mut IdOf<'_>, out: &mut Rendered) {
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
        endpoint_dispatch(&mut rules, p, &cluster, &svc, id_of, out);
        out.chains.insert(svc.clone(), rules);
    }
    if (p.internal_local || p.external_local) && !local_eps.is_empty() {
        let mut rules = Vec::new();
        endpoint_dispatch(&mut rules, p, &local_eps, &local, id_of, out);
        out.chains.insert(local.clone(), rules);
    }
}

/// Chooses one of `eps` and DNATs to it, from the chain `chain`.
///
/// Without session affinity the chain's one rule draws a random number in its slice of the
/// shared endpoint range map (see [`ranges`]); upstream writes `numgen random mod n vmap { 0 : goto
/// endpoint-A, ... }` instead, which changes the rule and adds verdicts on every endpoint
/// change. With ClientIP affinity (or when no id is left) each endpoint keeps its chain: the
/// affinity lookups first, then the random spread as a cascade (rule i goes to endpoint i when
/// `numgen random mod (n-i)` is 0, the last unconditionally, as iptables does); the endpoint
/// chain records the client in its affinity set and DNATs.
fn endpoint_dispatch(
    rules: &mut Vec<String>,
    p: &ServicePort,
    eps: &[&Endpoint],
    chain: &str,
    id_of: &mut IdOf<'_>,
    out: &mut Rendered,
) {
    let proto = p.protocol.as_str();
    out.hairpin.extend(eps.iter().map(|e| e.ip));
    if p.affinity_seconds.is_none() {
        if let Some(id) = id_of(chain) {
            out.dispatch.insert(
                chain.to_owned(),
                Dispatch {
                    proto: p.protocol.as_str(),
                    id,
                    endpoints: eps.iter().map(|e| (e.ip, e.port)).collect(),
                },
            );
            rules.push(dnat_rule(proto, id));
            return;
        }
    }
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
        if out.chains.contains_key(&chain) {
            continue;
        }
        let mut body = Vec::new();
        if let Some(seconds) = p.affinity_seconds {
            let set = affinity_set(p, e);
            out.sets.insert(
                set.clone(),
                format!("type ipv4_addr ; flags dynamic,timeout ; timeout {seconds}s ;"),
            );
            body.push(format!("update @{set} {{ ip saddr }}"));
        }
        body.push(format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port));
        out.chains.insert(chain, body);
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

    /// Ids 7, 8, ... in the order chains ask for them.
    fn ids() -> impl FnMut(&str) -> Option<u16> {
        let mut next = 7;
        let mut given = BTreeMap::new();
        move |chain: &str| {
            let id = *given.entry(chain.to_owned()).or_insert_with(|| {
                next += 1;
                next - 1
            });
            Some(id)
        }
    }

    fn cfg() -> RuleConfig {
        RuleConfig {
            cluster_cidrs: vec![(Ipv4Addr::new(10, 0, 0, 0), 8)],
            masquerade_all: false,
            masquerade_mark: 0x4000,
        }
    }

    #[test]
    fn service_gets_map_elements_and_chains() {
        let r = render(&[port()], &cfg(), &mut ids());
        assert!(r.elements.contains(&(
            SERVICE_IPS,
            "172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80".to_owned()
        )));
        let name = "service-ULMVA6XW-ns1/svc1/tcp/p80";
        let svc = &r.chains[name];
        assert_eq!(
            svc[1],
            "meta l4proto tcp dnat ip addr . port to numgen random mod 65536 offset 458752 map @endpoint-ranges-tcp-0"
        );
        assert_eq!(svc.len(), 2, "{svc:?}");
        assert_eq!(
            r.dispatch[name],
            Dispatch {
                proto: "tcp",
                id: 7,
                endpoints: vec![(Ipv4Addr::new(10, 180, 0, 1), 80)]
            }
        );
        assert_eq!(r.dispatch[name].text(), "458752-524287 : 10.180.0.1 . 80");
        assert_eq!(r.hairpin, BTreeSet::from([Ipv4Addr::new(10, 180, 0, 1)]));
        // No per-endpoint chains and no per-Service sets without session affinity.
        assert_eq!(r.chains.len(), 1, "{:?}", r.chains.keys());
        assert!(r.sets.is_empty());
        let mut empty = port();
        empty.endpoints.clear();
        let r = render(&[empty], &cfg(), &mut ids());
        assert!(r.chains.is_empty() && r.dispatch.is_empty());
        assert!(r.elements.contains(&(
            NO_ENDPOINT_SERVICES,
            "172.30.0.41 . tcp . 80 : goto reject-chain".to_owned()
        )));
    }

    #[test]
    fn a_rollout_changes_only_the_endpoint_ranges() {
        let mut p = port();
        p.endpoints.push(Endpoint {
            ip: Ipv4Addr::new(10, 180, 0, 2),
            ..p.endpoints[0].clone()
        });
        let before = render(std::slice::from_ref(&p), &cfg(), &mut ids());
        for e in &mut p.endpoints {
            e.port = 8080;
        }
        p.endpoints.push(Endpoint {
            ip: Ipv4Addr::new(10, 180, 0, 3),
            ..p.endpoints[0].clone()
        });
        let after = render(&[p], &cfg(), &mut ids());
        assert!(!before.structure_differs(&after));
        assert_ne!(before.dispatch, after.dispatch);
    }

    #[test]
    fn without_an_id_the_endpoints_get_chains() {
        let r = render(&[port()], &cfg(), &mut |_: &str| None);
        let p = port();
        let ep = endpoint_chain(&p, &p.endpoints[0]);
        assert_eq!(r.chains[&service_chain_of(&p)][1], format!("goto {ep}"));
        assert_eq!(r.chains[&ep], ["meta l4proto tcp dnat to 10.180.0.1:80"]);
        assert!(r.dispatch.is_empty());
    }

    #[test]
    fn session_affinity_keeps_endpoint_chains_and_sets() {
        let mut p = port();
        p.affinity_seconds = Some(10800);
        let r = render(std::slice::from_ref(&p), &cfg(), &mut ids());
        let ep = endpoint_chain(&p, &p.endpoints[0]);
        assert_eq!(
            r.chains[&ep],
            [
                format!(
                    "update @{} {{ ip saddr }}",
                    affinity_set(&p, &p.endpoints[0])
                ),
                "meta l4proto tcp dnat to 10.180.0.1:80".to_owned()
            ]
        );
        assert!(r.dispatch.is_empty());
        assert_eq!(r.hairpin, BTreeSet::from([Ipv4Addr::new(10, 180, 0, 1)]));
    }

    #[test]
    fn ranges_cover_the_spread_contiguously_and_evenly() {
        for n in [1usize, 2, 3, 7, 1000, 65535, 65536] {
            let r = ranges(n);
            assert_eq!(r.len(), n);
            assert_eq!(r[0].0, 0);
            assert_eq!(r[n - 1].1, SPREAD);
            let sizes: BTreeSet<u32> = r.iter().map(|(a, b)| b - a).collect();
            let (min, max) = (sizes.first().copied(), sizes.last().copied());
            assert!(
                max.zip(min).is_some_and(|(a, b)| a - b <= 1),
                "n={n}: sizes {sizes:?}"
            );
            assert!(r.windows(2).all(|w| w[0].1 == w[1].0), "n={n}: gap");
        }
        assert_eq!(ranges(70000).len(), 65536);
        let d = Dispatch {
            proto: "tcp",
            id: 0,
            endpoints: vec![
                (Ipv4Addr::new(10, 0, 0, 1), 80),
                (Ipv4Addr::new(10, 0, 0, 2), 81),
                (Ipv4Addr::new(10, 0, 0, 3), 82),
            ],
        };
        assert_eq!(
            d.text(),
            "0-21844 : 10.0.0.1 . 80, 21845-43689 : 10.0.0.2 . 81, 43690-65535 : 10.0.0.3 . 82"
        );
        // The last id's slice ends inside a u32.
        let last = Dispatch {
            proto: "tcp",
            id: (MAX_IDS - 1) as u16,
            endpoints: vec![(Ipv4Addr::new(10, 0, 0, 1), 80)],
        };
        assert_eq!(last.ranges().last().map(|r| r.1), Some(0xffff_0000));
    }
}
