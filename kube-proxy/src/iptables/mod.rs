//! The iptables proxier: one `iptables-restore --noflush` per sync touching only KUBE-* chains;
//! partial syncs rewrite only the chains of the Services that changed.

pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::{Command, Stdio};

use crate::changes::{ServiceKey, ServicePort};
use crate::{Error, NodePortAddresses, RuleConfig, SyncReport};
use rules::*;

/// The jumps from the built-in chains into ours, as upstream: (table, chain, rule).
const JUMPS: &[(&str, &str, &str)] = &[
    ("filter", "INPUT", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL"),
    ("filter", "INPUT", "-m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS"),
    ("filter", "INPUT", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES"),
    ("filter", "INPUT", "-j KUBE-FIREWALL"),
    ("filter", "FORWARD", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL"),
    ("filter", "FORWARD", "-m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD"),
    ("filter", "FORWARD", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    ("filter", "FORWARD", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES"),
    ("filter", "OUTPUT", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL"),
    ("filter", "OUTPUT", "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    ("filter", "OUTPUT", "-j KUBE-FIREWALL"),
    ("nat", "PREROUTING", "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    ("nat", "OUTPUT", "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
    ("nat", "POSTROUTING", "-m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING"),
];

/// The shared chains kube-proxy owns in each table.
const NAT_CHAINS: &[&str] = &[
    KUBE_SERVICES,
    KUBE_NODEPORTS,
    KUBE_POSTROUTING,
    KUBE_MARK_MASQ,
];
const FILTER_CHAINS: &[&str] = &[
    KUBE_SERVICES,
    KUBE_EXTERNAL_SERVICES,
    KUBE_FORWARD,
    KUBE_NODEPORTS,
    KUBE_PROXY_FIREWALL,
    KUBE_FIREWALL,
];

/// Programs Services through iptables-restore.
pub struct Proxier {
    cfg: RuleConfig,
    nodeport_addresses: NodePortAddresses,
    localhost_node_ports: bool,
    /// What each Service currently has installed.
    installed: BTreeMap<ServiceKey, Rendered>,
}

impl Proxier {
    pub fn new(
        cfg: RuleConfig,
        nodeport_addresses: NodePortAddresses,
        localhost_node_ports: bool,
    ) -> Self {
        Self {
            cfg,
            nodeport_addresses,
            localhost_node_ports,
            installed: BTreeMap::new(),
        }
    }

    /// Programs `changes` (the new ports of each changed Service; empty = gone). With `full`,
    /// `changes` holds every Service and everything is rewritten, stale chains deleted.
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
            self.full_input(&rendered)?
        } else {
            self.partial_input(&rendered)
        };
        if !input.is_empty() {
            restore(&input)?;
        }
        if full {
            if self.wants_localnet() {
                set_route_localnet();
            }
            ensure_jumps()?;
            self.installed.clear();
        }
        for (k, r) in rendered {
            if r == Rendered::default() {
                self.installed.remove(k);
            } else {
                self.installed.insert(k.clone(), r);
            }
        }
        let (mut nat, mut filter) = (0, 0);
        for r in self.installed.values() {
            let (n, f) = r.rule_counts();
            nat += n;
            filter += f;
        }
        Ok(SyncReport {
            rules: vec![("nat", nat), ("filter", filter)],
            bytes: input.len(),
        })
    }

    fn wants_localnet(&self) -> bool {
        self.localhost_node_ports && self.nodeport_addresses.includes_loopback()
    }

    fn base_nat(&self, out: &mut String) {
        let mark = format!("{:#x}", self.cfg.masquerade_mark);
        for c in NAT_CHAINS {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        let _ = writeln!(
            out,
            "-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN\n\
             -A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}\n\
             -A {KUBE_POSTROUTING} -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n\
             -A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}"
        );
    }

    fn nodeports_jump(&self, out: &mut String) {
        let comment =
            "-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\"";
        match &self.nodeport_addresses {
            NodePortAddresses::All => {
                let _ = writeln!(
                    out,
                    "-A {KUBE_SERVICES} {comment} -m addrtype --dst-type LOCAL -j {KUBE_NODEPORTS}"
                );
            }
            NodePortAddresses::Cidrs(cidrs) => {
                for (ip, len) in cidrs {
                    let _ = writeln!(
                        out,
                        "-A {KUBE_SERVICES} {comment} -d {ip}/{len} -m addrtype --dst-type LOCAL -j {KUBE_NODEPORTS}"
                    );
                }
            }
        }
    }

    fn base_filter(&self, out: &mut String) {
        let mark = format!("{:#x}", self.cfg.masquerade_mark);
        for c in FILTER_CHAINS {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        let _ = writeln!(
            out,
            "-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP\n\
             -A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT\n\
             -A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        );
        if self.wants_localnet() {
            let _ = writeln!(
                out,
                "-A {KUBE_FIREWALL} -m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
            );
        }
    }

    fn full_input(&self, rendered: &BTreeMap<&ServiceKey, Rendered>) -> Result<String, Error> {
        let existing = existing_chains("nat")?;
        let mut nat = String::with_capacity(rendered.len() * 1024);
        let mut filter = String::new();
        nat.push_str("*nat\n");
        filter.push_str("*filter\n");
        self.base_nat(&mut nat);
        self.base_filter(&mut filter);
        // iptables-restore needs every chain declared before a rule jumps to it.
        let mut wanted = BTreeSet::new();
        let mut nat_rules = String::with_capacity(rendered.len() * 1024);
        for r in rendered.values() {
            for (chain, rules) in &r.nat_chains {
                wanted.insert(chain.as_str());
                let _ = writeln!(nat, ":{chain} - [0:0]");
                for rule in rules {
                    let _ = writeln!(nat_rules, "-A {chain} {rule}");
                }
            }
        }
        let stale: Vec<&String> = existing
            .iter()
            .filter(|c| {
                SERVICE_CHAIN_PREFIXES.iter().any(|p| c.starts_with(p))
                    && !wanted.contains(c.as_str())
            })
            .collect();
        for c in &stale {
            let _ = writeln!(nat, ":{c} - [0:0]");
        }
        nat.push_str(&nat_rules);
        for r in rendered.values() {
            for rule in &r.nat_services {
                let _ = writeln!(nat, "-A {KUBE_SERVICES} {rule}");
            }
            for rule in &r.nat_nodeports {
                let _ = writeln!(nat, "-A {KUBE_NODEPORTS} {rule}");
            }
            for rule in &r.filter_services {
                let _ = writeln!(filter, "-A {KUBE_SERVICES} {rule}");
            }
            for rule in &r.filter_external {
                let _ = writeln!(filter, "-A {KUBE_EXTERNAL_SERVICES} {rule}");
            }
        }
        self.nodeports_jump(&mut nat);
        // Stale per-Service chains were flushed above; deleted once nothing refers to them.
        for c in &stale {
            let _ = writeln!(nat, "-X {c}");
        }
        nat.push_str("COMMIT\n");
        filter.push_str("COMMIT\n");
        filter.push_str(&nat);
        Ok(filter)
    }

    fn partial_input(&self, rendered: &BTreeMap<&ServiceKey, Rendered>) -> String {
        let mut nat_decl = String::new();
        let mut nat = String::new();
        let mut filter = String::new();
        let mut deleted_chains = Vec::new();
        let empty = Rendered::default();
        for (key, new) in rendered {
            let old = self.installed.get(*key).unwrap_or(&empty);
            if old == new {
                continue;
            }
            for (chain, rules) in &new.nat_chains {
                if old.nat_chains.get(chain) == Some(rules) {
                    continue;
                }
                let _ = writeln!(nat_decl, ":{chain} - [0:0]");
                for rule in rules {
                    let _ = writeln!(nat, "-A {chain} {rule}");
                }
            }
            for chain in old.nat_chains.keys() {
                if !new.nat_chains.contains_key(chain) {
                    let _ = writeln!(nat_decl, ":{chain} - [0:0]");
                    deleted_chains.push(chain.clone());
                }
            }
            // New KUBE-SERVICES rules go first so the KUBE-NODEPORTS jump stays last.
            diff(
                &mut nat,
                KUBE_SERVICES,
                &old.nat_services,
                &new.nat_services,
                true,
            );
            diff(
                &mut nat,
                KUBE_NODEPORTS,
                &old.nat_nodeports,
                &new.nat_nodeports,
                false,
            );
            diff(
                &mut filter,
                KUBE_SERVICES,
                &old.filter_services,
                &new.filter_services,
                false,
            );
            diff(
                &mut filter,
                KUBE_EXTERNAL_SERVICES,
                &old.filter_external,
                &new.filter_external,
                false,
            );
        }
        for chain in deleted_chains {
            let _ = writeln!(nat, "-X {chain}");
        }
        let mut input = String::new();
        if !filter.is_empty() {
            input.push_str("*filter\n");
            input.push_str(&filter);
            input.push_str("COMMIT\n");
        }
        if !nat.is_empty() || !nat_decl.is_empty() {
            input.push_str("*nat\n");
            input.push_str(&nat_decl);
            input.push_str(&nat);
            input.push_str("COMMIT\n");
        }
        input
    }
}

/// `-D` the rules only in `old`, add the rules only in `new`.
fn diff(out: &mut String, chain: &str, old: &[String], new: &[String], insert: bool) {
    for rule in old {
        if !new.contains(rule) {
            let _ = writeln!(out, "-D {chain} {rule}");
        }
    }
    for rule in new {
        if !old.contains(rule) {
            if insert {
                let _ = writeln!(out, "-I {chain} 1 {rule}");
            } else {
                let _ = writeln!(out, "-A {chain} {rule}");
            }
        }
    }
}

/// Feeds `input` to one `iptables-restore --noflush` (atomic per table).
fn restore(input: &str) -> Result<(), Error> {
    crate::feed(
        "iptables-restore",
        &["-w", "5", "-W", "100000", "--noflush", "--counters"],
        input,
    )
}

fn iptables(args: &[&str]) -> Result<std::process::Output, Error> {
    Command::new("iptables")
        .arg("-w")
        .arg("5")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            tool: "iptables",
            source,
        })
}

/// Splits a rule written for iptables-restore into argv (handles the double quotes we emit).
fn split_rule(rule: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in rule.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Adds each jump from a built-in chain unless it is already there (`-C`), as upstream's
/// EnsureRule; other rules in the built-in chains are never touched.
fn ensure_jumps() -> Result<(), Error> {
    for (table, chain, rule) in JUMPS {
        let argv = split_rule(rule);
        let mut check: Vec<&str> = vec!["-t", table, "-C", chain];
        check.extend(argv.iter().map(String::as_str));
        if iptables(&check)?.status.success() {
            continue;
        }
        let mut add: Vec<&str> = vec!["-t", table, "-I", chain, "1"];
        add.extend(argv.iter().map(String::as_str));
        let out = iptables(&add)?;
        if !out.status.success() {
            return Err(Error::Tool {
                tool: "iptables",
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
    }
    Ok(())
}

/// The user-defined chains of `table` (from `iptables-save`).
fn existing_chains(table: &str) -> Result<Vec<String>, Error> {
    let out = Command::new("iptables-save")
        .args(["-t", table])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            tool: "iptables-save",
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: "iptables-save",
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| {
            !matches!(
                *c,
                "PREROUTING" | "INPUT" | "OUTPUT" | "POSTROUTING" | "FORWARD"
            )
        })
        .map(str::to_owned)
        .collect())
}

/// Lets NodePorts answer on 127.0.0.1 (upstream sets the same sysctl).
fn set_route_localnet() {
    let path = "/proc/sys/net/ipv4/conf/all/route_localnet";
    if let Err(e) = std::fs::write(path, "1") {
        tracing::warn!(error = %e, path, "failed to enable route_localnet");
    }
}

/// Removes the jumps and every KUBE-* chain in the nat and filter tables.
pub fn cleanup() -> Result<(), Error> {
    for (table, chain, rule) in JUMPS {
        let argv = split_rule(rule);
        let mut del: Vec<&str> = vec!["-t", table, "-D", chain];
        del.extend(argv.iter().map(String::as_str));
        // Delete every copy; stops once -D fails (rule absent or chain missing).
        for _ in 0..16 {
            if !iptables(&del)?.status.success() {
                break;
            }
        }
    }
    let mut input = String::new();
    for table in ["filter", "nat"] {
        let chains: Vec<String> = existing_chains(table)?
            .into_iter()
            .filter(|c| c.starts_with("KUBE-"))
            .collect();
        if chains.is_empty() {
            continue;
        }
        let _ = writeln!(input, "*{table}");
        for c in &chains {
            let _ = writeln!(input, ":{c} - [0:0]");
        }
        for c in &chains {
            let _ = writeln!(input, "-X {c}");
        }
        input.push_str("COMMIT\n");
    }
    if !input.is_empty() {
        restore(&input)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_rules_split_like_a_shell() {
        assert_eq!(
            split_rule("-m comment --comment \"a b\" -j X"),
            vec!["-m", "comment", "--comment", "a b", "-j", "X"]
        );
    }

    #[test]
    fn diff_deletes_old_and_inserts_new_rules() {
        let mut out = String::new();
        diff(
            &mut out,
            "KUBE-SERVICES",
            &["a".to_owned(), "b".to_owned()],
            &["b".to_owned(), "c".to_owned()],
            true,
        );
        assert_eq!(out, "-D KUBE-SERVICES a\n-I KUBE-SERVICES 1 c\n");
    }
}
