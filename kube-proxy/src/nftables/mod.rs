//! The nftables proxier: one `ip kube-proxy` table with verdict maps, programmed by one
//! `nft -f -` transaction per sync; partial syncs touch only changed chains and elements.

pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::{Command, Stdio};

use crate::changes::{ServiceKey, ServicePort};
use crate::{Error, NodePortAddresses, RuleConfig, SyncReport};
use rules::*;

/// The table every object lives in.
pub const TABLE: &str = "kube-proxy";
const T: &str = "ip kube-proxy";

/// The cluster-policy chain name of a Service port (for tests and tools).
pub fn service_chain(spn: &str, proto: &str) -> String {
    // spn is "ns/name:port" or "ns/name".
    let (nsname, port) = spn.split_once(':').unwrap_or((spn, ""));
    let (ns, name) = nsname.split_once('/').unwrap_or(("", nsname));
    let p = ServicePort {
        namespace: ns.into(),
        name: name.into(),
        port_name: port.into(),
        protocol: match proto {
            "udp" => crate::changes::Protocol::Udp,
            "sctp" => crate::changes::Protocol::Sctp,
            _ => crate::changes::Protocol::Tcp,
        },
        cluster_ip: std::net::Ipv4Addr::UNSPECIFIED,
        port: 0,
        node_port: None,
        external_ips: vec![],
        affinity_seconds: None,
        external_local: false,
        internal_local: false,
        endpoints: vec![],
    };
    service_chain_of(&p)
}

/// Programs Services through nft.
pub struct Proxier {
    cfg: RuleConfig,
    nodeport_addresses: NodePortAddresses,
    installed: BTreeMap<ServiceKey, Rendered>,
}

impl Proxier {
    pub fn new(cfg: RuleConfig, nodeport_addresses: NodePortAddresses) -> Self {
        Self {
            cfg,
            nodeport_addresses,
            installed: BTreeMap::new(),
        }
    }

    /// Programs `changes` (see the iptables proxier's `sync` for the contract).
    pub fn sync(
        &mut self,
        changes: &BTreeMap<ServiceKey, Vec<ServicePort>>,
        full: bool,
    ) -> Result<SyncReport, Error> {
        let rendered: BTreeMap<&ServiceKey, Rendered> = changes
            .iter()
            .map(|(k, ports)| (k, render(ports, &self.cfg)))
            .collect();
        let input = if full {
            let (create, fill) = self.full_inputs(&rendered)?;
            nft(&create)?;
            fill
        } else {
            self.partial_input(&rendered)
        };
        if !input.is_empty() {
            nft(&input)?;
        }
        if full {
            self.installed.clear();
        }
        for (k, r) in rendered {
            if r == Rendered::default() {
                self.installed.remove(k);
            } else {
                self.installed.insert(k.clone(), r);
            }
        }
        // kubeproxy_sync_proxy_rules_iptables is iptables-only, as upstream.
        Ok(SyncReport {
            rules: Vec::new(),
            bytes: input.len(),
        })
    }

    /// The table skeleton: hooks, shared chains, maps and sets.
    fn base(&self, out: &mut String) {
        let mark = format!("{:#x}", self.cfg.masquerade_mark);
        let _ = writeln!(
            out,
            "add table {T} {{ comment \"rules for kube-proxy\" ; }}"
        );
        let chains: &[(&str, &str)] = &[
            ("filter-input", "type filter hook input priority -10 ;"),
            ("filter-forward", "type filter hook forward priority -10 ;"),
            ("filter-output", "type filter hook output priority -10 ;"),
            (
                "filter-output-post-dnat",
                "type filter hook output priority -90 ;",
            ),
            ("nat-prerouting", "type nat hook prerouting priority -100 ;"),
            ("nat-output", "type nat hook output priority -100 ;"),
            (
                "nat-postrouting",
                "type nat hook postrouting priority 100 ;",
            ),
        ];
        for (name, hook) in chains {
            let _ = writeln!(out, "add chain {T} {name} {{ {hook} }}");
        }
        for name in [
            "services",
            "masquerading",
            MARK_FOR_MASQUERADE,
            REJECT_CHAIN,
            "service-endpoints-check",
            "nodeport-endpoints-check",
            "cluster-ips-check",
        ] {
            let _ = writeln!(out, "add chain {T} {name}");
        }
        let _ = writeln!(
            out,
            "add map {T} {SERVICE_IPS} {{ type ipv4_addr . inet_proto . inet_service : verdict ; comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\" ; }}\n\
             add map {T} {SERVICE_NODEPORTS} {{ type inet_proto . inet_service : verdict ; comment \"NodePort traffic\" ; }}\n\
             add map {T} {NO_ENDPOINT_SERVICES} {{ type ipv4_addr . inet_proto . inet_service : verdict ; comment \"vmap to drop or reject packets to services with no endpoints\" ; }}\n\
             add map {T} {NO_ENDPOINT_NODEPORTS} {{ type inet_proto . inet_service : verdict ; comment \"vmap to drop or reject packets to service nodeports with no endpoints\" ; }}\n\
             add set {T} {CLUSTER_IPS} {{ type ipv4_addr ; comment \"Active ClusterIPs\" ; }}"
        );
        let nodeport_match: Vec<String> = match &self.nodeport_addresses {
            NodePortAddresses::All => {
                vec!["fib daddr type local ip daddr != 127.0.0.0/8".to_owned()]
            }
            NodePortAddresses::Cidrs(c) => c
                .iter()
                .map(|(ip, len)| format!("ip daddr {ip}/{len} fib daddr type local"))
                .collect(),
        };
        let mut rules = vec![
            ("filter-input", "ct state new jump nodeport-endpoints-check".to_owned()),
            ("filter-input", "ct state new jump service-endpoints-check".to_owned()),
            ("filter-forward", "ct state new jump service-endpoints-check".to_owned()),
            ("filter-forward", "ct state new jump cluster-ips-check".to_owned()),
            ("filter-output", "ct state new jump service-endpoints-check".to_owned()),
            ("filter-output-post-dnat", "ct state new jump cluster-ips-check".to_owned()),
            ("nat-prerouting", "jump services".to_owned()),
            ("nat-output", "jump services".to_owned()),
            ("nat-postrouting", "jump masquerading".to_owned()),
            ("masquerading", format!("meta mark & {mark} == 0 return")),
            ("masquerading", format!("meta mark set meta mark ^ {mark}")),
            ("masquerading", "masquerade fully-random".to_owned()),
            (MARK_FOR_MASQUERADE, format!("meta mark set meta mark | {mark}")),
            (REJECT_CHAIN, "reject".to_owned()),
            (
                "service-endpoints-check",
                format!("ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"),
            ),
            (
                "cluster-ips-check",
                format!("ip daddr @{CLUSTER_IPS} reject comment \"Reject traffic to invalid ports of ClusterIPs\""),
            ),
            (
                "services",
                format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"),
            ),
        ];
        for m in &nodeport_match {
            rules.push((
                "services",
                format!("{m} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"),
            ));
            rules.push((
                "nodeport-endpoints-check",
                format!("{m} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"),
            ));
        }
        for (chain, rule) in rules {
            let _ = writeln!(out, "add rule {T} {chain} {rule}");
        }
    }

    /// A full sync in two transactions. The first only adds the table, base objects and every
    /// wanted chain, empty (a no-op for what exists; no packet sees a difference). The second,
    /// atomic one flushes and refills every chain, map and set and deletes stale chains and
    /// sets. Splitting matters at scale: rules added to a chain created in the same transaction
    /// are resolved by scanning the whole transaction, which is quadratic in its size.
    fn full_inputs(
        &self,
        rendered: &BTreeMap<&ServiceKey, Rendered>,
    ) -> Result<(String, String), Error> {
        let existing = existing_objects()?;
        let mut create = String::with_capacity(rendered.len() * 256);
        let _ = writeln!(
            create,
            "add table {T} {{ comment \"rules for kube-proxy\" ; }}"
        );
        let mut fill = String::with_capacity(rendered.len() * 1024);
        let mut base = String::new();
        self.base(&mut base);
        // Base objects: their `add` lines go to both; the rules are rewritten in `fill`.
        for line in base.lines() {
            if line.starts_with("add rule ") {
                continue;
            }
            let _ = writeln!(create, "{line}");
        }
        let mut wanted_chains = BTreeSet::new();
        let mut wanted_sets = BTreeSet::new();
        for line in base.lines() {
            if let Some(rest) = line.strip_prefix(&format!("add chain {T} ")) {
                let name = rest.split_whitespace().next().unwrap_or_default();
                wanted_chains.insert(name.to_owned());
                let _ = writeln!(fill, "flush chain {T} {name}");
            } else if let Some(rest) = line.strip_prefix(&format!("add map {T} ")) {
                let name = rest.split_whitespace().next().unwrap_or_default();
                wanted_sets.insert(name.to_owned());
                let _ = writeln!(fill, "flush map {T} {name}");
            } else if let Some(rest) = line.strip_prefix(&format!("add set {T} ")) {
                let name = rest.split_whitespace().next().unwrap_or_default();
                wanted_sets.insert(name.to_owned());
                let _ = writeln!(fill, "flush set {T} {name}");
            }
        }
        for line in base.lines().filter(|l| l.starts_with("add rule ")) {
            let _ = writeln!(fill, "{line}");
        }
        for r in rendered.values() {
            for (set, def) in &r.sets {
                // An existing set keeps its definition (and its affinity entries) here; a
                // changed timeout is applied by the partial sync that saw the change.
                if !existing.sets.contains(set) {
                    let _ = writeln!(create, "add set {T} {set} {{ {def} }}");
                }
                wanted_sets.insert(set.clone());
            }
            for (chain, body) in &r.chains {
                let _ = writeln!(create, "add chain {T} {chain}");
                if existing.chains.contains(chain) {
                    let _ = writeln!(fill, "flush chain {T} {chain}");
                }
                wanted_chains.insert(chain.clone());
                for rule in body {
                    let _ = writeln!(fill, "add rule {T} {chain} {rule}");
                }
            }
            for (map, el) in &r.elements {
                let _ = writeln!(fill, "add element {T} {map} {{ {el} }}");
            }
        }
        let stale_chains: Vec<&String> = existing
            .chains
            .iter()
            .filter(|c| !wanted_chains.contains(*c))
            .collect();
        let mut tail = String::new();
        for c in &stale_chains {
            let _ = writeln!(fill, "flush chain {T} {c}");
            let _ = writeln!(tail, "delete chain {T} {c}");
        }
        for s in existing.sets.iter().filter(|s| !wanted_sets.contains(*s)) {
            let _ = writeln!(tail, "delete set {T} {s}");
        }
        fill.push_str(&tail);
        Ok((create, fill))
    }

    fn partial_input(&self, rendered: &BTreeMap<&ServiceKey, Rendered>) -> String {
        let mut decl = String::new();
        let mut body = String::new();
        let mut deletes = String::new();
        let empty = Rendered::default();
        for (key, new) in rendered {
            let old = self.installed.get(*key).unwrap_or(&empty);
            if old == new {
                continue;
            }
            // Elements first out, so nothing points at a chain about to go.
            let new_el: BTreeSet<&(&str, String)> = new.elements.iter().collect();
            let old_el: BTreeSet<&(&str, String)> = old.elements.iter().collect();
            for (map, el) in old_el.difference(&new_el) {
                let _ = writeln!(decl, "delete element {T} {map} {{ {el} }}");
            }
            for chain in old.chains.keys() {
                if !new.chains.contains_key(chain) {
                    let _ = writeln!(decl, "flush chain {T} {chain}");
                    let _ = writeln!(deletes, "delete chain {T} {chain}");
                }
            }
            write_changed(&mut decl, &mut body, new, old);
            for (map, el) in new_el.difference(&old_el) {
                let _ = writeln!(body, "add element {T} {map} {{ {el} }}");
            }
            for set in old.sets.keys() {
                if !new.sets.contains_key(set) {
                    let _ = writeln!(deletes, "delete set {T} {set}");
                }
            }
        }
        decl.push_str(&body);
        decl.push_str(&deletes);
        decl
    }
}

/// Writes what differs between `old` and `new` of one Service: changed chains are declared and
/// flushed in `decl` and refilled in `rules`; sets are added, or replaced when their definition
/// (the affinity timeout) changed, after every chain using them was flushed.
fn write_changed(decl: &mut String, rules: &mut String, new: &Rendered, old: &Rendered) {
    let replaced: Vec<&String> = new
        .sets
        .iter()
        .filter(|(set, def)| old.sets.get(*set).is_some_and(|o| o != *def))
        .map(|(set, _)| set)
        .collect();
    for (chain, body) in &new.chains {
        let uses_replaced = replaced
            .iter()
            .any(|set| body.iter().any(|r| r.contains(&format!("@{set} "))));
        if old.chains.get(chain) == Some(body) && !uses_replaced {
            continue;
        }
        let _ = writeln!(decl, "add chain {T} {chain}");
        let _ = writeln!(decl, "flush chain {T} {chain}");
        for rule in body {
            let _ = writeln!(rules, "add rule {T} {chain} {rule}");
        }
    }
    for (set, def) in &new.sets {
        match old.sets.get(set) {
            Some(d) if d == def => continue,
            Some(_) => {
                let _ = writeln!(decl, "delete set {T} {set}");
            }
            None => {}
        }
        let _ = writeln!(decl, "add set {T} {set} {{ {def} }}");
    }
}

/// Runs one `nft -f -` transaction.
fn nft(input: &str) -> Result<(), Error> {
    crate::feed("nft", &["-f", "-"], input)
}

/// The chains and sets (maps included) currently in the table; empty when it does not exist.
#[derive(Default)]
struct Existing {
    chains: BTreeSet<String>,
    sets: BTreeSet<String>,
}

fn existing_objects() -> Result<Existing, Error> {
    let mut out = Existing::default();
    for what in ["chains", "sets", "maps"] {
        let o = Command::new("nft")
            .args(["-t", "list", what, "ip"])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::Spawn {
                tool: "nft",
                source,
            })?;
        // `nft list chains ip` prints every ip table's chains; keep ours (terse: no elements).
        let text = String::from_utf8_lossy(&o.stdout);
        let mut ours = false;
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["table", "ip", name, ..] => ours = *name == TABLE,
                ["chain", name, ..] if ours => {
                    out.chains.insert((*name).to_owned());
                }
                ["set" | "map", name, ..] if ours => {
                    out.sets.insert((*name).to_owned());
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// Deletes the `kube-proxy` tables (ip and ip6) if present.
pub fn cleanup() -> Result<(), Error> {
    let out = match Command::new("nft")
        .args(["list", "tables"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) => o,
        // No nft binary: nothing of ours can exist.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Spawn {
                tool: "nft",
                source,
            })
        }
    };
    let mut input = String::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["table", family @ ("ip" | "ip6"), TABLE] = words.as_slice() {
            let _ = writeln!(input, "delete table {family} {TABLE}");
        }
    }
    if input.is_empty() {
        return Ok(());
    }
    nft(&input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_affinity_timeout_replaces_the_set_after_flushing_its_users() {
        let mut old = Rendered::default();
        old.sets.insert(
            "affinity-X".into(),
            "type ipv4_addr ; flags dynamic,timeout ; timeout 10s ;".into(),
        );
        old.chains.insert(
            "endpoint-X".into(),
            vec!["update @affinity-X { ip saddr }".into()],
        );
        old.chains
            .insert("service-Y".into(), vec!["goto endpoint-X".into()]);
        let mut new = old.clone();
        new.sets.insert(
            "affinity-X".into(),
            "type ipv4_addr ; flags dynamic,timeout ; timeout 20s ;".into(),
        );
        let (mut decl, mut rules) = (String::new(), String::new());
        write_changed(&mut decl, &mut rules, &new, &old);
        assert_eq!(
            decl,
            "add chain ip kube-proxy endpoint-X\nflush chain ip kube-proxy endpoint-X\n\
             delete set ip kube-proxy affinity-X\n\
             add set ip kube-proxy affinity-X { type ipv4_addr ; flags dynamic,timeout ; timeout 20s ; }\n"
        );
        assert_eq!(
            rules,
            "add rule ip kube-proxy endpoint-X update @affinity-X { ip saddr }\n"
        );
    }
}
