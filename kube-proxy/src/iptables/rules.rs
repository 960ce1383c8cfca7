//! Renders one Service's iptables rules in upstream's chain layout (pure, no I/O).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::changes::{hash16, Endpoint, ServicePort};
use crate::RuleConfig;

pub const KUBE_SERVICES: &str = "KUBE-SERVICES";
pub const KUBE_EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
pub const KUBE_NODEPORTS: &str = "KUBE-NODEPORTS";
pub const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";
pub const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const KUBE_FORWARD: &str = "KUBE-FORWARD";
pub const KUBE_FIREWALL: &str = "KUBE-FIREWALL";
pub const KUBE_PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";

/// Prefixes of the per-Service chains kube-proxy owns in the nat table.
pub const SERVICE_CHAIN_PREFIXES: &[&str] = &[
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-EXT-",
    "KUBE-SEP-",
    "KUBE-FW-",
];

/// The rules one Service contributes: its own nat chains, plus rules in the shared chains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    /// Per-Service nat chains (KUBE-SVC/SVL/EXT/SEP) and their rules (arguments after
    /// `-A <chain> `).
    pub nat_chains: BTreeMap<String, Vec<String>>,
    pub nat_services: Vec<String>,
    pub nat_nodeports: Vec<String>,
    pub filter_services: Vec<String>,
    pub filter_external: Vec<String>,
}

impl Rendered {
    /// How many rules this Service has in (nat, filter).
    pub fn rule_counts(&self) -> (usize, usize) {
        let nat = self.nat_chains.values().map(Vec::len).sum::<usize>()
            + self.nat_services.len()
            + self.nat_nodeports.len();
        (nat, self.filter_services.len() + self.filter_external.len())
    }
}

/// Quotes an iptables-restore argument when it holds spaces.
fn q(s: &str) -> String {
    if s.contains(' ') {
        format!("\"{s}\"")
    } else {
        s.to_owned()
    }
}

pub fn svc_chain(spn: &str, proto: &str) -> String {
    format!("KUBE-SVC-{}", hash16(&format!("{spn}{proto}")))
}

pub fn svl_chain(spn: &str, proto: &str) -> String {
    format!("KUBE-SVL-{}", hash16(&format!("{spn}{proto}")))
}

pub fn ext_chain(spn: &str, proto: &str) -> String {
    format!("KUBE-EXT-{}", hash16(&format!("{spn}{proto}")))
}

pub fn sep_chain(spn: &str, proto: &str, endpoint: &str) -> String {
    format!("KUBE-SEP-{}", hash16(&format!("{spn}{proto}{endpoint}")))
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
    let spn = p.port_name_string();
    let proto = p.protocol.as_str();
    let svc = svc_chain(&spn, proto);
    let svl = svl_chain(&spn, proto);
    let ext = ext_chain(&spn, proto);
    let cluster = p.cluster_endpoints();
    let local = p.local_endpoints();
    let pm = format!("-p {proto} -m {proto}");
    let cluster_comment = q(&format!("{spn} cluster IP"));

    let internal_chain = if p.internal_local { &svl } else { &svc };
    let internal_has = if p.internal_local {
        !local.is_empty()
    } else {
        !cluster.is_empty()
    };
    let external_has = if p.external_local {
        !local.is_empty()
    } else {
        !cluster.is_empty()
    };

    // Cluster IP.
    if internal_has {
        out.nat_services.push(format!(
            "-m comment --comment {cluster_comment} {pm} -d {}/32 --dport {} -j {internal_chain}",
            p.cluster_ip, p.port
        ));
    } else {
        let (why, verdict) = if cluster.is_empty() {
            ("has no endpoints", "REJECT")
        } else {
            ("has no local endpoints", "DROP")
        };
        out.filter_services.push(format!(
            "-m comment --comment {} {pm} -d {}/32 --dport {} -j {verdict}",
            q(&format!("{spn} {why}")),
            p.cluster_ip,
            p.port
        ));
    }

    // NodePort and external IPs.
    if p.has_external() {
        if external_has {
            let mut rules = Vec::new();
            if p.external_local {
                if !cluster.is_empty() {
                    for (ip, len) in &cfg.cluster_cidrs {
                        rules.push(format!(
                            "-m comment --comment {} -s {ip}/{len} -j {svc}",
                            q(&format!("pod traffic for {spn} external destinations"))
                        ));
                    }
                    rules.push(format!(
                        "-m comment --comment {} -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}",
                        q(&format!(
                            "masquerade LOCAL traffic for {spn} external destinations"
                        ))
                    ));
                    rules.push(format!(
                        "-m comment --comment {} -m addrtype --src-type LOCAL -j {svc}",
                        q(&format!(
                            "route LOCAL traffic for {spn} external destinations"
                        ))
                    ));
                }
                rules.push(format!("-j {svl}"));
            } else {
                rules.push(format!(
                    "-m comment --comment {} -j {KUBE_MARK_MASQ}",
                    q(&format!(
                        "masquerade traffic for {spn} external destinations"
                    ))
                ));
                rules.push(format!("-j {svc}"));
            }
            out.nat_chains.insert(ext.clone(), rules);
            for eip in &p.external_ips {
                out.nat_services.push(format!(
                    "-m comment --comment {} {pm} -d {eip}/32 --dport {} -j {ext}",
                    q(&format!("{spn} external IP")),
                    p.port
                ));
            }
            if let Some(np) = p.node_port {
                out.nat_nodeports.push(format!(
                    "-m comment --comment {} {pm} --dport {np} -j {ext}",
                    q(&spn)
                ));
            }
        } else {
            let (why, verdict) = if cluster.is_empty() {
                ("has no endpoints", "REJECT")
            } else {
                ("has no local endpoints", "DROP")
            };
            let comment = q(&format!("{spn} {why}"));
            for eip in &p.external_ips {
                out.filter_external.push(format!(
                    "-m comment --comment {comment} {pm} -d {eip}/32 --dport {} -j {verdict}",
                    p.port
                ));
            }
            if let Some(np) = p.node_port {
                out.filter_external.push(format!(
                    "-m comment --comment {comment} -m addrtype --dst-type LOCAL {pm} --dport {np} -j {verdict}"
                ));
            }
        }
    }

    // KUBE-SVC: cluster-wide endpoints.
    if !cluster.is_empty() {
        let mut rules = Vec::new();
        if cfg.masquerade_all {
            rules.push(format!(
                "-m comment --comment {cluster_comment} {pm} -d {}/32 --dport {} -j {KUBE_MARK_MASQ}",
                p.cluster_ip, p.port
            ));
        } else {
            for (ip, len) in &cfg.cluster_cidrs {
                rules.push(format!(
                    "-m comment --comment {cluster_comment} {pm} -d {}/32 --dport {} ! -s {ip}/{len} -j {KUBE_MARK_MASQ}",
                    p.cluster_ip, p.port
                ));
            }
        }
        endpoint_jumps(&mut rules, &spn, proto, &cluster, p.affinity_seconds);
        out.nat_chains.insert(svc.clone(), rules);
    }
    // KUBE-SVL: endpoints on this node, for Local policies.
    if (p.internal_local || p.external_local) && !local.is_empty() {
        let mut rules = Vec::new();
        endpoint_jumps(&mut rules, &spn, proto, &local, p.affinity_seconds);
        out.nat_chains.insert(svl.clone(), rules);
    }
    // KUBE-SEP: one per endpoint used by either chain.
    let mut used: Vec<&Endpoint> = cluster.clone();
    if p.internal_local || p.external_local {
        used.extend(local.iter().copied());
    }
    for e in used {
        let addr = e.addr();
        let sep = sep_chain(&spn, proto, &addr);
        if out.nat_chains.contains_key(&sep) {
            continue;
        }
        let comment = q(&spn);
        let mut dnat = format!("-m comment --comment {comment}");
        if p.affinity_seconds.is_some() {
            let _ = write!(dnat, " -m recent --name {sep} --set");
        }
        let _ = write!(dnat, " {pm} -j DNAT --to-destination {addr}");
        out.nat_chains.insert(
            sep,
            vec![
                format!(
                    "-m comment --comment {comment} -s {}/32 -j {KUBE_MARK_MASQ}",
                    e.ip
                ),
                dnat,
            ],
        );
    }
}

/// Affinity checks, then the random spread over `eps` (probability 1/(n-i), the last
/// unconditional), each jumping to the endpoint's chain.
fn endpoint_jumps(
    rules: &mut Vec<String>,
    spn: &str,
    proto: &str,
    eps: &[&Endpoint],
    affinity: Option<u32>,
) {
    if let Some(seconds) = affinity {
        for e in eps {
            let addr = e.addr();
            let sep = sep_chain(spn, proto, &addr);
            rules.push(format!(
                "-m comment --comment {} -m recent --name {sep} --rcheck --seconds {seconds} --reap -j {sep}",
                q(&format!("{spn} -> {addr}"))
            ));
        }
    }
    let n = eps.len();
    for (i, e) in eps.iter().enumerate() {
        let addr = e.addr();
        let sep = sep_chain(spn, proto, &addr);
        let comment = q(&format!("{spn} -> {addr}"));
        if i + 1 < n {
            rules.push(format!(
                "-m comment --comment {comment} -m statistic --mode random --probability {:.10} -j {sep}",
                1.0 / (n - i) as f64
            ));
        } else {
            rules.push(format!("-m comment --comment {comment} -j {sep}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::Protocol;
    use std::net::Ipv4Addr;

    fn ep(ip: [u8; 4], local: bool, ready: bool) -> Endpoint {
        Endpoint {
            ip: Ipv4Addr::from(ip),
            port: 80,
            ready,
            serving: ready,
            terminating: false,
            local,
        }
    }

    fn port(endpoints: Vec<Endpoint>) -> ServicePort {
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
            endpoints,
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
    fn cluster_ip_with_two_endpoints_spreads_randomly() {
        let r = render(
            &[port(vec![
                ep([10, 180, 0, 1], false, true),
                ep([10, 180, 0, 2], false, true),
            ])],
            &cfg(),
        );
        assert_eq!(
            r.nat_services,
            vec!["-m comment --comment \"ns1/svc1:p80 cluster IP\" -p tcp -m tcp -d 172.30.0.41/32 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O"]
        );
        let svc = &r.nat_chains["KUBE-SVC-XPGD46QRK7WJZT7O"];
        assert_eq!(svc.len(), 3);
        assert!(svc[0].ends_with("! -s 10.0.0.0/8 -j KUBE-MARK-MASQ"));
        assert!(svc[1].contains("--probability 0.5000000000 -j KUBE-SEP-"));
        assert!(!svc[2].contains("statistic"));
        assert_eq!(r.nat_chains.len(), 3);
        assert!(r.filter_services.is_empty());
    }

    #[test]
    fn no_ready_endpoints_rejects_in_filter() {
        let r = render(&[port(vec![ep([10, 180, 0, 1], false, false)])], &cfg());
        assert!(r.nat_services.is_empty());
        assert!(r.nat_chains.is_empty());
        assert_eq!(
            r.filter_services,
            vec!["-m comment --comment \"ns1/svc1:p80 has no endpoints\" -p tcp -m tcp -d 172.30.0.41/32 --dport 80 -j REJECT"]
        );
    }

    #[test]
    fn local_external_policy_uses_only_local_endpoints() {
        let mut p = port(vec![
            ep([10, 180, 0, 1], true, true),
            ep([10, 180, 0, 2], false, true),
        ]);
        p.node_port = Some(30080);
        p.external_local = true;
        let r = render(&[p], &cfg());
        let svl = &r.nat_chains[&svl_chain("ns1/svc1:p80", "tcp")];
        assert_eq!(svl.len(), 1);
        assert!(svl[0].contains("10.180.0.1:80"));
        let ext = &r.nat_chains[&ext_chain("ns1/svc1:p80", "tcp")];
        assert_eq!(
            ext.last().map(String::as_str),
            Some("-j KUBE-SVL-XPGD46QRK7WJZT7O")
        );
        assert_eq!(r.nat_nodeports.len(), 1);
    }

    #[test]
    fn client_ip_affinity_checks_recent_before_spreading() {
        let mut p = port(vec![
            ep([10, 180, 0, 1], false, true),
            ep([10, 180, 0, 2], false, true),
        ]);
        p.affinity_seconds = Some(10800);
        let r = render(&[p], &cfg());
        let svc = &r.nat_chains["KUBE-SVC-XPGD46QRK7WJZT7O"];
        assert!(svc[1].contains("--rcheck --seconds 10800 --reap"));
        assert!(svc[2].contains("--rcheck"));
        let sep = sep_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80");
        assert!(r.nat_chains[&sep][1].contains(&format!("-m recent --name {sep} --set")));
    }
}
