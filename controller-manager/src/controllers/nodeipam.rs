//! node-ipam: gives each node spec.podCIDR(s) out of --cluster-cidr (one per IP family), never
//! twice, keeping the ones nodes already have and freeing a deleted node's.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::ResourceExt;

use super::nodeutil::{node_ref, record_event};
use crate::context::ControllerContext;
use crate::options::Config;

/// The events' source component, as upstream.
const COMPONENT: &str = "cidrAllocator";
/// Upstream's limit on node mask minus cluster mask (65536 node CIDRs per cluster CIDR).
const MAX_SUBNET_BITS: u8 = 16;
/// Resync when nothing changes (retries nodes that could not get a CIDR).
const RESYNC: Duration = Duration::from_secs(30);

/// What is wrong with the CIDR flags.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("invalid cidr {0:?}")]
    Invalid(String),
    #[error("cidr {cidr:?} with node mask /{mask}: {why}")]
    Mask {
        cidr: String,
        mask: u8,
        why: &'static str,
    },
    #[error("usage of --node-cidr-mask-size is not allowed with dual-stack clusters")]
    DualStackMaskSize,
    #[error("--cluster-cidr may hold at most one IPv4 and one IPv6 cidr")]
    TooMany,
}

/// One parsed CIDR: base address as an integer, prefix length and family width (32 or 128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    base: u128,
    prefix: u8,
    bits: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::/n`; host bits are masked off as upstream's ParseCIDR does.
    pub fn parse(s: &str) -> Result<Self, CidrError> {
        let bad = || CidrError::Invalid(s.to_owned());
        let (ip, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let (value, bits) = match ip.parse::<IpAddr>().map_err(|_| bad())? {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        if prefix > bits {
            return Err(bad());
        }
        Ok(Self {
            base: value & mask(prefix, bits),
            prefix,
            bits,
        })
    }

    /// Whether this is an IPv6 CIDR.
    pub fn is_v6(&self) -> bool {
        self.bits == 128
    }

    fn contains(&self, other: &Cidr) -> bool {
        self.bits == other.bits
            && other.prefix >= self.prefix
            && other.base & mask(self.prefix, self.bits) == self.base
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip: IpAddr = if self.is_v6() {
            std::net::Ipv6Addr::from(self.base).into()
        } else {
            // The value came from a u32.
            std::net::Ipv4Addr::from(self.base as u32).into()
        };
        write!(f, "{ip}/{}", self.prefix)
    }
}

fn mask(prefix: u8, bits: u8) -> u128 {
    let all = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    if prefix == 0 {
        0
    } else {
        all & !((1u128 << (bits - prefix)) - 1)
    }
}

/// The node CIDRs of one cluster CIDR, as upstream's CidrSet: a bitmap of used subnets.
#[derive(Debug, Clone)]
pub struct CidrSet {
    cluster: Cidr,
    node_prefix: u8,
    used: BTreeSet<u32>,
    size: u32,
}

impl CidrSet {
    /// The subnets of `/node_prefix` in `cluster`.
    pub fn new(cluster: Cidr, node_prefix: u8) -> Result<Self, CidrError> {
        let err = |why| CidrError::Mask {
            cidr: cluster.to_string(),
            mask: node_prefix,
            why,
        };
        if node_prefix < cluster.prefix || node_prefix > cluster.bits {
            return Err(err("node mask must be within the cluster cidr"));
        }
        if node_prefix - cluster.prefix > MAX_SUBNET_BITS {
            return Err(err(
                "node mask is more than 16 bits longer than the cluster mask",
            ));
        }
        Ok(Self {
            cluster,
            node_prefix,
            used: BTreeSet::new(),
            size: 1u32 << (node_prefix - cluster.prefix),
        })
    }

    fn subnet(&self, index: u32) -> Cidr {
        Cidr {
            base: self.cluster.base | (u128::from(index) << (self.cluster.bits - self.node_prefix)),
            prefix: self.node_prefix,
            bits: self.cluster.bits,
        }
    }

    fn index_of(&self, cidr: &Cidr) -> Option<u32> {
        if !self.cluster.contains(cidr) || cidr.prefix != self.node_prefix {
            return None;
        }
        let index = (cidr.base - self.cluster.base) >> (self.cluster.bits - self.node_prefix);
        u32::try_from(index).ok()
    }

    /// The lowest free subnet, now marked used; `None` when the set is exhausted.
    pub fn allocate(&mut self) -> Option<Cidr> {
        let index = (0..self.size).find(|i| !self.used.contains(i))?;
        self.used.insert(index);
        Some(self.subnet(index))
    }

    /// Marks `cidr` used (a node already has it); false if it is not a subnet of this set.
    pub fn occupy(&mut self, cidr: &Cidr) -> bool {
        match self.index_of(cidr) {
            Some(i) => {
                self.used.insert(i);
                true
            }
            None => false,
        }
    }

    /// Frees `cidr`.
    pub fn release(&mut self, cidr: &Cidr) {
        if let Some(i) = self.index_of(cidr) {
            self.used.remove(&i);
        }
    }
}

/// The CIDR sets from --cluster-cidr and the mask-size flags, as upstream's setNodeCIDRMaskSizes.
pub fn cidr_sets(config: &Config) -> Result<Vec<CidrSet>, CidrError> {
    let cidrs: Vec<Cidr> = config
        .cluster_cidr
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|c| !c.trim().is_empty())
        .map(Cidr::parse)
        .collect::<Result<_, _>>()?;
    let v4 = cidrs.iter().filter(|c| !c.is_v6()).count();
    let v6 = cidrs.len() - v4;
    if v4 > 1 || v6 > 1 {
        return Err(CidrError::TooMany);
    }
    let dual = v4 == 1 && v6 == 1;
    if dual && config.node_cidr_mask_size != 0 {
        return Err(CidrError::DualStackMaskSize);
    }
    cidrs
        .into_iter()
        .map(|c| {
            let (family_flag, default) = if c.is_v6() {
                (config.node_cidr_mask_size_ipv6, 64)
            } else {
                (config.node_cidr_mask_size_ipv4, 24)
            };
            let mask = [config.node_cidr_mask_size, family_flag]
                .into_iter()
                .find(|m| *m != 0)
                .unwrap_or(default);
            CidrSet::new(c, mask)
        })
        .collect()
}

struct Allocator {
    client: kube::Client,
    nodes: Store<Node>,
    sets: Vec<CidrSet>,
    /// What we believe each node holds (what it has, or what we just patched).
    assigned: HashMap<String, Vec<Cidr>>,
    /// Nodes we already told about exhaustion (one event per node until it gets a CIDR).
    reported: BTreeSet<String>,
}

/// Builds the controller (a no-op unless --allocate-node-cidrs).
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    if !ctx.config.allocate_node_cidrs {
        tracing::info!("--allocate-node-cidrs is false; node-ipam does nothing");
        return Ok(async {}.boxed());
    }
    let sets = match cidr_sets(&ctx.config) {
        Ok(sets) if !sets.is_empty() => sets,
        Ok(_) => {
            tracing::error!("--allocate-node-cidrs needs --cluster-cidr; node-ipam not started");
            return Ok(async {}.boxed());
        }
        Err(e) => {
            tracing::error!(error = %e, "node-ipam not started");
            return Ok(async {}.boxed());
        }
    };
    let nodes = ctx.informers.get::<Node>();
    let mut allocator = Allocator {
        client: ctx.client.clone(),
        nodes: nodes.store(),
        sets,
        assigned: HashMap::new(),
        reported: BTreeSet::new(),
    };
    let shutdown = ctx.shutdown.clone();
    let mut changes = nodes.subscribe().boxed();
    Ok(async move {
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = changes.next() => {
                    while let Some(Some(_)) = changes.next().now_or_never() {}
                }
                _ = tokio::time::sleep(RESYNC) => {}
            }
            if nodes.has_synced() {
                allocator.pass().await;
            }
        }
    }
    .boxed())
}

fn node_cidrs(node: &Node) -> Vec<Cidr> {
    let spec = node.spec.as_ref();
    let mut list: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if list.is_empty() {
        list.extend(spec.and_then(|s| s.pod_cidr.clone()));
    }
    list.iter().filter_map(|c| Cidr::parse(c).ok()).collect()
}

impl Allocator {
    async fn pass(&mut self) {
        let nodes = self.nodes.state();
        // Forget (and free) nodes that are gone.
        let present: BTreeSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        let gone: Vec<String> = self
            .assigned
            .keys()
            .filter(|n| !present.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            for cidr in self.assigned.remove(&name).unwrap_or_default() {
                tracing::info!(node = %name, cidr = %cidr, "released node cidr");
                for set in &mut self.sets {
                    set.release(&cidr);
                }
            }
        }
        self.reported.retain(|n| present.contains(n));
        // First take note of every CIDR nodes already hold, so none is handed out twice.
        for node in &nodes {
            let have = node_cidrs(node);
            if have.is_empty() {
                continue;
            }
            for cidr in &have {
                if !self.sets.iter_mut().any(|s| s.occupy(cidr)) {
                    tracing::debug!(node = %node.name_any(), cidr = %cidr, "node cidr is outside the cluster cidr");
                }
            }
            self.assigned.insert(node.name_any(), have);
        }
        let mut waiting: Vec<_> = nodes
            .iter()
            .filter(|n| node_cidrs(n).is_empty() && n.metadata.deletion_timestamp.is_none())
            .collect();
        waiting.sort_by_key(|n| n.name_any());
        for node in waiting {
            let name = node.name_any();
            if self.assigned.contains_key(&name) {
                // Patched already; the cache has not caught up.
                continue;
            }
            self.allocate(&name).await;
        }
    }

    async fn allocate(&mut self, name: &str) {
        let mut got = Vec::new();
        for i in 0..self.sets.len() {
            match self.sets[i].allocate() {
                Some(c) => got.push(c),
                None => {
                    for (set, c) in self.sets.iter_mut().zip(&got) {
                        set.release(c);
                    }
                    if self.reported.insert(name.to_owned()) {
                        tracing::warn!(node = %name, "no node cidr available");
                        record_event(
                            &self.client,
                            COMPONENT,
                            node_ref(name),
                            "Normal",
                            "CIDRNotAvailable",
                            format!("Node {name} status is now: CIDRNotAvailable"),
                        )
                        .await;
                    }
                    return;
                }
            }
        }
        let strings: Vec<String> = got.iter().map(ToString::to_string).collect();
        let patch = serde_json::json!({"spec": {"podCIDR": strings[0], "podCIDRs": strings}});
        let api: Api<Node> = Api::all(self.client.clone());
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {
                tracing::info!(node = %name, cidrs = ?strings, "assigned node cidrs");
                self.reported.remove(name);
                self.assigned.insert(name.to_owned(), got);
            }
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "failed to set node cidrs");
                for (set, c) in self.sets.iter_mut().zip(&got) {
                    set.release(c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> Config {
        let mut all = vec!["kube-controller-manager"];
        all.extend(args);
        crate::Options::try_parse_from(all)
            .expect("flags parse")
            .into_config()
            .expect("valid")
    }

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).expect(s)
    }

    #[test]
    fn allocates_distinct_subnets_until_exhausted() {
        let mut set = CidrSet::new(cidr("10.244.0.0/22"), 24).expect("valid");
        let got: Vec<String> = (0..4)
            .map(|_| set.allocate().expect("free").to_string())
            .collect();
        assert_eq!(
            got,
            [
                "10.244.0.0/24",
                "10.244.1.0/24",
                "10.244.2.0/24",
                "10.244.3.0/24"
            ]
        );
        assert_eq!(set.allocate(), None);
        set.release(&cidr("10.244.2.0/24"));
        assert_eq!(set.allocate(), Some(cidr("10.244.2.0/24")));
    }

    #[test]
    fn cidrs_nodes_already_hold_are_skipped() {
        let mut set = CidrSet::new(cidr("10.244.0.0/16"), 24).expect("valid");
        assert!(set.occupy(&cidr("10.244.0.0/24")));
        assert!(set.occupy(&cidr("10.244.1.0/24")));
        assert!(
            !set.occupy(&cidr("10.99.0.0/24")),
            "outside the cluster cidr"
        );
        assert!(!set.occupy(&cidr("10.244.2.0/25")), "other mask");
        assert_eq!(set.allocate(), Some(cidr("10.244.2.0/24")));
    }

    #[test]
    fn ipv6_subnets_and_host_bits() {
        let mut set = CidrSet::new(cidr("fd00:10:244::/56"), 64).expect("valid");
        assert_eq!(
            set.allocate().map(|c| c.to_string()).as_deref(),
            Some("fd00:10:244::/64")
        );
        assert_eq!(
            set.allocate().map(|c| c.to_string()).as_deref(),
            Some("fd00:10:244:1::/64")
        );
        assert_eq!(cidr("10.244.7.9/16").to_string(), "10.244.0.0/16");
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope/8").is_err());
    }

    #[test]
    fn masks_follow_upstream_flag_rules() {
        let sets = cidr_sets(&config(&["--cluster-cidr=10.244.0.0/16,fd00::/48"])).expect("ok");
        assert_eq!((sets[0].node_prefix, sets[1].node_prefix), (24, 64));
        let sets = cidr_sets(&config(&[
            "--cluster-cidr=10.244.0.0/16,fd00::/48",
            "--node-cidr-mask-size-ipv4=25",
            "--node-cidr-mask-size-ipv6=60",
        ]))
        .expect("ok");
        assert_eq!((sets[0].node_prefix, sets[1].node_prefix), (25, 60));
        assert_eq!(
            cidr_sets(&config(&[
                "--cluster-cidr=10.244.0.0/16,fd00::/48",
                "--node-cidr-mask-size=24"
            ]))
            .err(),
            Some(CidrError::DualStackMaskSize)
        );
        let sets = cidr_sets(&config(&[
            "--cluster-cidr=10.0.0.0/8",
            "--node-cidr-mask-size=20",
        ]))
        .expect("ok");
        assert_eq!(sets[0].node_prefix, 20);
        assert!(cidr_sets(&config(&["--cluster-cidr=10.0.0.0/8"])).is_ok());
        assert!(
            cidr_sets(&config(&["--cluster-cidr=10.0.0.0/7"])).is_err(),
            "2^16 limit"
        );
        assert!(cidr_sets(&config(&["--cluster-cidr=10.244.0.0/16,10.245.0.0/16"])).is_err());
    }
}
