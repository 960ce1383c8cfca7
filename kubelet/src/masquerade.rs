//! The pod network's masquerade rule: pods reach each other without NAT, and their traffic that
//! leaves the pod network (to the internet, to other nodes' own addresses) is masqueraded to
//! the node's address, as before.
//!
//! The bridge CNI config ([`crate::cni`]) has `ipMasq: false`, because the bridge plugin would
//! masquerade everything leaving this node's podCIDR, pod-to-pod traffic to other nodes
//! included: the receiving pod would see this node's address instead of the sender's pod IP,
//! which breaks Kubernetes' network model (no NAT between pods). Instead the kubelet keeps the
//! nat chain [`CHAIN`]:
//!
//! ```text
//! -A KUBELET-POD-MASQUERADE -d <every node's podCIDR, this one's included> -j RETURN
//! -A KUBELET-POD-MASQUERADE -d 224.0.0.0/4 -j RETURN
//! -A KUBELET-POD-MASQUERADE -s <this node's podCIDR> -j MASQUERADE
//! ```
//!
//! and one jump to it from nat POSTROUTING ([`JUMP_COMMENT`]). The chain is rewritten in one
//! `iptables-restore --noflush` transaction when it differs from what the Nodes ask for; the
//! routes task ([`crate::routes`]) calls [`reconcile`] on every reconcile of its own (the first
//! full list of Nodes, every change, every 30 s), so the same `--pod-network-routes` switch and
//! podCIDR condition apply. The name does not start with `KUBE-`: `kube-proxy --cleanup`
//! deletes every `KUBE-*` chain and would fail on one POSTROUTING still jumps to.
//!
//! Not upstream: upstream's kubelet leaves this to the network plugin (kubenet had the same
//! rule with the cluster CIDR; here the union of the Nodes' podCIDRs stands in for it).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output, Stdio};

use crate::routes::{Cidr, NodeFacts};

/// The kubelet's nat chain.
pub const CHAIN: &str = "KUBELET-POD-MASQUERADE";

/// The comment on the jump from nat POSTROUTING to [`CHAIN`].
pub const JUMP_COMMENT: &str = "kubelet: masquerade pod traffic leaving the pod network";

/// Multicast stays unmasqueraded (as the bridge plugin's own masquerade rule had it).
const MULTICAST: &str = "224.0.0.0/4";

/// Why the rules could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MasqueradeError {
    #[error("run {tool}")]
    Spawn {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} failed: {stderr}")]
    Tool { tool: &'static str, stderr: String },
}

/// The IPv4 podCIDRs of `nodes` (each once, sorted).
pub fn pod_cidrs(nodes: &BTreeMap<String, NodeFacts>) -> BTreeSet<Cidr> {
    nodes
        .values()
        .filter_map(|f| f.pod_cidr.as_deref().and_then(Cidr::parse))
        .collect()
}

/// The rules of [`CHAIN`] for this node's podCIDR `own` and all nodes' `pod_cidrs`, as
/// `iptables -S` prints them (so the kernel's copy compares equal when nothing changed).
pub fn render(own: Cidr, pod_cidrs: &BTreeSet<Cidr>) -> Vec<String> {
    let mut destinations = pod_cidrs.clone();
    destinations.insert(own);
    let mut rules: Vec<String> = destinations
        .iter()
        .map(|c| format!("-A {CHAIN} -d {c} -j RETURN"))
        .collect();
    rules.push(format!("-A {CHAIN} -d {MULTICAST} -j RETURN"));
    rules.push(format!("-A {CHAIN} -s {own} -j MASQUERADE"));
    rules
}

/// The `iptables-restore --noflush` input that replaces [`CHAIN`]'s rules with `rules` (the
/// chain line creates the chain or flushes it; nothing else in the table is touched).
pub fn restore_input(rules: &[String]) -> String {
    let mut input = format!("*nat\n:{CHAIN} - [0:0]\n");
    for rule in rules {
        input.push_str(rule);
        input.push('\n');
    }
    input.push_str("COMMIT\n");
    input
}

/// The rule spec of the jump, after `-t nat -A|-C|-D POSTROUTING`.
pub fn jump_spec() -> [&'static str; 6] {
    ["-m", "comment", "--comment", JUMP_COMMENT, "-j", CHAIN]
}

fn run(tool: &'static str, args: &[&str], stdin: Option<&str>) -> Result<Output, MasqueradeError> {
    use std::io::Write;
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| MasqueradeError::Spawn { tool, source })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|source| MasqueradeError::Spawn { tool, source })?;
    }
    child
        .wait_with_output()
        .map_err(|source| MasqueradeError::Spawn { tool, source })
}

fn check(tool: &'static str, out: Output) -> Result<Output, MasqueradeError> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(MasqueradeError::Tool {
            tool,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The rules of [`CHAIN`] in the kernel, `None` when the chain does not exist.
fn current_rules() -> Result<Option<Vec<String>>, MasqueradeError> {
    let out = run("iptables", &["-w", "-t", "nat", "-S", CHAIN], None)?;
    if !out.status.success() {
        // "No chain/target/match by that name."
        return Ok(None);
    }
    Ok(Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(str::to_string)
            .collect(),
    ))
}

fn jump(op: &str) -> Result<Output, MasqueradeError> {
    let mut args = vec!["-w", "-t", "nat", op, "POSTROUTING"];
    args.extend(jump_spec());
    run("iptables", &args, None)
}

/// What [`sync`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Synced {
    /// The chain was (re)written.
    pub rewritten: bool,
    /// The jump from POSTROUTING was added.
    pub jump_added: bool,
}

/// Makes [`CHAIN`] hold `rules` (one restore, only when it differs) and POSTROUTING jump to it
/// once. Blocking: runs iptables.
pub fn sync(rules: &[String]) -> Result<Synced, MasqueradeError> {
    let mut synced = Synced::default();
    if current_rules()?.as_deref() != Some(rules) {
        let input = restore_input(rules);
        check(
            "iptables-restore",
            run("iptables-restore", &["--noflush", "-w"], Some(&input))?,
        )?;
        synced.rewritten = true;
    }
    if !jump("-C")?.status.success() {
        check("iptables", jump("-A")?)?;
        synced.jump_added = true;
    }
    Ok(synced)
}

/// Deletes the jump(s) and [`CHAIN`] if present (`kubeadm reset`, and a kubelet that stops
/// managing the pod network). Returns whether there was anything to delete. Blocking.
pub fn remove() -> Result<bool, MasqueradeError> {
    let mut removed = false;
    // One -D deletes one copy; a hand-added duplicate goes too.
    for _ in 0..16 {
        if !jump("-D")?.status.success() {
            break;
        }
        removed = true;
    }
    if current_rules()?.is_some() {
        check(
            "iptables",
            run("iptables", &["-w", "-t", "nat", "-F", CHAIN], None)?,
        )?;
        check(
            "iptables",
            run("iptables", &["-w", "-t", "nat", "-X", CHAIN], None)?,
        )?;
        removed = true;
    }
    Ok(removed)
}

/// Brings the masquerade rules in line with `nodes`: with this node's podCIDR `own` the chain
/// and jump are kept; without one the kubelet does not manage the pod network and removes them.
pub async fn reconcile(own: Option<Cidr>, nodes: &BTreeMap<String, NodeFacts>) {
    let rules = own.map(|own| render(own, &pod_cidrs(nodes)));
    let result = tokio::task::spawn_blocking(move || match rules {
        Some(rules) => sync(&rules).map(|s| (Some(rules.len()), s)),
        None => remove().map(|removed| {
            (
                None,
                Synced {
                    rewritten: removed,
                    jump_added: false,
                },
            )
        }),
    })
    .await;
    match result {
        Ok(Ok((Some(rules), synced))) => {
            if synced.rewritten {
                tracing::info!(chain = CHAIN, rules, "wrote the pod masquerade rules");
            }
            if synced.jump_added {
                tracing::info!(chain = CHAIN, "added the jump from nat POSTROUTING");
            }
        }
        Ok(Ok((None, synced))) => {
            if synced.rewritten {
                tracing::info!(
                    chain = CHAIN,
                    "no podCIDR: removed the pod masquerade rules"
                );
            }
        }
        Ok(Err(e)) => tracing::warn!(chain = CHAIN, error = %e, "pod masquerade rules"),
        Err(e) => tracing::warn!(chain = CHAIN, error = %e, "pod masquerade rules task"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        Cidr::parse(text).expect("test CIDR")
    }

    fn facts(pod_cidr: &str) -> NodeFacts {
        NodeFacts {
            pod_cidr: (!pod_cidr.is_empty()).then(|| pod_cidr.to_string()),
            internal_ip: None,
        }
    }

    #[test]
    fn pod_cidrs_are_the_nodes_ipv4_ranges_once_each() {
        let nodes: BTreeMap<String, NodeFacts> = [
            ("a", facts("10.244.1.0/24")),
            ("b", facts("10.244.0.7/24")),
            ("c", facts("")),
            ("d", facts("fd00::/64")),
            ("e", facts("10.244.1.0/24")),
            ("f", facts("not a cidr")),
        ]
        .into_iter()
        .map(|(n, f)| (n.to_string(), f))
        .collect();
        let got: Vec<String> = pod_cidrs(&nodes).iter().map(Cidr::to_string).collect();
        assert_eq!(got, vec!["10.244.0.0/24", "10.244.1.0/24"]);
    }

    #[test]
    fn rules_return_for_every_pod_range_and_masquerade_the_own_range_last() {
        let nodes: BTreeSet<Cidr> = [cidr("10.244.2.0/24"), cidr("10.244.1.0/24")]
            .into_iter()
            .collect();
        assert_eq!(
            render(cidr("10.244.0.0/24"), &nodes),
            vec![
                "-A KUBELET-POD-MASQUERADE -d 10.244.0.0/24 -j RETURN",
                "-A KUBELET-POD-MASQUERADE -d 10.244.1.0/24 -j RETURN",
                "-A KUBELET-POD-MASQUERADE -d 10.244.2.0/24 -j RETURN",
                "-A KUBELET-POD-MASQUERADE -d 224.0.0.0/4 -j RETURN",
                "-A KUBELET-POD-MASQUERADE -s 10.244.0.0/24 -j MASQUERADE",
            ]
        );
        // The own range is returned once even when its Node lists it too; alone it still
        // masquerades what leaves the pod network.
        let own_only: BTreeSet<Cidr> = [cidr("10.244.0.0/24")].into_iter().collect();
        assert_eq!(
            render(cidr("10.244.0.0/24"), &own_only),
            render(cidr("10.244.0.0/24"), &BTreeSet::new())
        );
        assert_eq!(render(cidr("10.244.0.0/24"), &own_only).len(), 3);
    }

    #[test]
    fn restore_input_declares_only_the_chain() {
        let rules = render(cidr("10.1.0.0/24"), &BTreeSet::new());
        assert_eq!(
            restore_input(&rules),
            "*nat\n:KUBELET-POD-MASQUERADE - [0:0]\n\
             -A KUBELET-POD-MASQUERADE -d 10.1.0.0/24 -j RETURN\n\
             -A KUBELET-POD-MASQUERADE -d 224.0.0.0/4 -j RETURN\n\
             -A KUBELET-POD-MASQUERADE -s 10.1.0.0/24 -j MASQUERADE\n\
             COMMIT\n"
        );
    }

    #[test]
    fn the_chain_name_survives_kube_proxy_cleanup() {
        // kube-proxy --cleanup deletes every KUBE-* chain; one still jumped to would fail it.
        assert!(!CHAIN.starts_with("KUBE-"));
        assert!(!CHAIN.contains("KUBE-") && !JUMP_COMMENT.contains("KUBE-"));
    }
}
