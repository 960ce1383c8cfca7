//! Routes to the other nodes' podCIDRs (host-gw style, as flannel's host-gw backend or the
//! cloud route controller would set them up): for every other Node with an IPv4 podCIDR and an
//! InternalIP on a subnet of this host, the main table holds `<podCIDR> via <InternalIP>`.
//!
//! The routes carry their own routing protocol number, [`ROUTE_PROTOCOL`] (`ip route show proto
//! 75`), so the kubelet replaces and deletes only its own routes; a route of anybody else with
//! the same destination wins and is left alone. On start the first full list of Nodes is
//! reconciled against the kernel, which deletes the routes of nodes that went away meanwhile.
//!
//! Not upstream: upstream's kubelet leaves routes to the network plugin. This kubelet provides the
//! pod network itself (the bridge CNI config in [`crate::cni`]), so it routes too; turn it off
//! with `--pod-network-routes=false` when a CNI add-on owns the routes. Each reconcile also
//! keeps the masquerade rule of [`crate::masquerade`] (no NAT between pods).

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use component_base::Shutdown;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};

/// The routing protocol number (`rtm_protocol`) of the kubelet's routes: 75 (0x4b, 'K'), unused
/// by the protocols iproute2 names (rt_protos) and by the common CNI plugins (calico uses 80).
pub const ROUTE_PROTOCOL: u8 = 75;

/// Routes of ours in the kernel after the last reconcile, for `kubelet_pod_network_routes`.
static PROGRAMMED: AtomicI64 = AtomicI64::new(0);

/// The number of pod network routes the kubelet keeps (as of its last reconcile).
pub fn programmed() -> i64 {
    PROGRAMMED.load(Ordering::Relaxed)
}

/// How often the kernel is reconciled without a Node event: repairs routes someone deleted and
/// picks up next hops that became on-link after an address change.
const RESYNC: Duration = Duration::from_secs(30);

/// Why the routes could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("open a netlink socket")]
    Socket(#[source] std::io::Error),
    #[error("list the host's addresses")]
    Addresses(#[source] rtnetlink::Error),
    #[error("list routes")]
    List(#[source] rtnetlink::Error),
}

/// An IPv4 network: the address with its host bits cleared, and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub len: u8,
}

fn mask(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

impl Cidr {
    pub fn new(addr: Ipv4Addr, len: u8) -> Self {
        let len = len.min(32);
        Self {
            network: Ipv4Addr::from(u32::from(addr) & mask(len)),
            len,
        }
    }

    /// Parses `a.b.c.d/len`; IPv6 and malformed text give `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, len) = text.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let len: u8 = len.parse().ok()?;
        (len <= 32).then(|| Self::new(addr, len))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.len) == u32::from(self.network)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

/// What routing needs of a Node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// spec.podCIDR, else the first IPv4 entry of spec.podCIDRs.
    pub pod_cidr: Option<String>,
    /// The first IPv4 InternalIP of status.addresses.
    pub internal_ip: Option<Ipv4Addr>,
}

impl NodeFacts {
    pub fn of(node: &Node) -> Self {
        let spec = node.spec.as_ref();
        let pod_cidr = spec
            .and_then(|s| s.pod_cidr.clone())
            .filter(|c| !c.is_empty())
            .or_else(|| {
                spec.and_then(|s| s.pod_cidrs.as_ref())
                    .and_then(|cidrs| cidrs.iter().find(|c| Cidr::parse(c).is_some()).cloned())
            });
        let internal_ip = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|addresses| {
                addresses
                    .iter()
                    .filter(|a| a.type_ == "InternalIP")
                    .find_map(|a| a.address.parse::<Ipv4Addr>().ok())
            });
        Self {
            pod_cidr,
            internal_ip,
        }
    }
}

/// A route this kubelet wants, and the node it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub node: String,
    pub via: Ipv4Addr,
}

/// Why a node gets no route; logged once per node and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    /// Its podCIDR is IPv6 or malformed.
    BadPodCidr,
    /// Its podCIDR overlaps this node's own podCIDR.
    OverlapsOwn,
    /// Another node (first by name) has the same podCIDR.
    Duplicate,
    /// The next hop is not on a subnet of this host's addresses.
    OffLink,
    /// The next hop is one of this host's own (or a loopback) addresses.
    Local,
    /// A route of another owner (protocol) has the same destination.
    Foreign,
}

/// The routes wanted for `nodes` (by name) seen from node `own` with podCIDR `own_cidr`:
/// each other node with a podCIDR and an InternalIP, not overlapping our own range; the next
/// hop is checked separately ([`next_hop`]). Skipped nodes come back with the reason.
pub fn desired_routes(
    own: &str,
    own_cidr: Option<Cidr>,
    nodes: &BTreeMap<String, NodeFacts>,
) -> (BTreeMap<Cidr, Wanted>, Vec<(String, Skip)>) {
    let mut wanted: BTreeMap<Cidr, Wanted> = BTreeMap::new();
    let mut skipped = Vec::new();
    for (name, facts) in nodes {
        if name == own {
            continue;
        }
        let (Some(cidr), Some(via)) = (&facts.pod_cidr, facts.internal_ip) else {
            continue;
        };
        let Some(cidr) = Cidr::parse(cidr) else {
            skipped.push((name.clone(), Skip::BadPodCidr));
            continue;
        };
        if own_cidr.is_some_and(|own| own.overlaps(&cidr)) {
            skipped.push((name.clone(), Skip::OverlapsOwn));
            continue;
        }
        // BTreeMap order: the first node by name keeps a contested range.
        if wanted.contains_key(&cidr) {
            skipped.push((name.clone(), Skip::Duplicate));
            continue;
        }
        wanted.insert(
            cidr,
            Wanted {
                node: name.clone(),
                via,
            },
        );
    }
    (wanted, skipped)
}

/// Whether `via` can be a next hop: on a subnet of one of the host's addresses (`(address,
/// prefix length)`), and not the host itself or loopback.
pub fn next_hop(via: Ipv4Addr, host: &[(Ipv4Addr, u8)]) -> Result<(), Skip> {
    if via.is_loopback() || via.is_unspecified() || host.iter().any(|(a, _)| *a == via) {
        return Err(Skip::Local);
    }
    let on_link = host
        .iter()
        .any(|(a, len)| !a.is_loopback() && *len < 32 && Cidr::new(*a, *len).contains(via));
    if on_link {
        Ok(())
    } else {
        Err(Skip::OffLink)
    }
}

/// What to change in the kernel: routes to add (`replace` when ours already holds the
/// destination) and our routes to delete.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub add: Vec<(Cidr, Ipv4Addr, bool)>,
    pub delete: Vec<Cidr>,
}

/// Compares the wanted routes (already filtered to usable next hops) with ours in the kernel
/// (destination -> gateway).
pub fn plan(wanted: &BTreeMap<Cidr, Ipv4Addr>, ours: &BTreeMap<Cidr, Option<Ipv4Addr>>) -> Plan {
    let mut plan = Plan::default();
    for (cidr, via) in wanted {
        match ours.get(cidr) {
            Some(Some(current)) if current == via => {}
            Some(_) => plan.add.push((*cidr, *via, true)),
            None => plan.add.push((*cidr, *via, false)),
        }
    }
    plan.delete = ours
        .keys()
        .filter(|c| !wanted.contains_key(c))
        .copied()
        .collect();
    plan
}

/// The IPv4 routes of the main table: ours (destination -> gateway, and the message to delete
/// it with) and the destinations of everybody else's.
struct KernelRoutes {
    ours: BTreeMap<Cidr, (Option<Ipv4Addr>, RouteMessage)>,
    foreign: HashSet<Cidr>,
}

fn route_table(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

fn inet(addr: &RouteAddress) -> Option<Ipv4Addr> {
    match addr {
        RouteAddress::Inet(a) => Some(*a),
        _ => None,
    }
}

async fn kernel_routes(handle: &Handle) -> Result<KernelRoutes, rtnetlink::Error> {
    let mut routes = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut out = KernelRoutes {
        ours: BTreeMap::new(),
        foreign: HashSet::new(),
    };
    while let Some(route) = routes.try_next().await? {
        if route.header.address_family != AddressFamily::Inet
            || route_table(&route) != u32::from(RouteHeader::RT_TABLE_MAIN)
        {
            continue;
        }
        let dst = route
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Destination(d) => inet(d),
                _ => None,
            })
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let cidr = Cidr::new(dst, route.header.destination_prefix_length);
        if u8::from(route.header.protocol) == ROUTE_PROTOCOL {
            let via = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(g) => inet(g),
                _ => None,
            });
            out.ours.insert(cidr, (via, route));
        } else {
            out.foreign.insert(cidr);
        }
    }
    Ok(out)
}

async fn host_addresses(handle: &Handle) -> Result<Vec<(Ipv4Addr, u8)>, rtnetlink::Error> {
    let mut addresses = handle.address().get().execute();
    let mut out = Vec::new();
    while let Some(msg) = addresses.try_next().await? {
        if msg.header.family != AddressFamily::Inet {
            continue;
        }
        // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on point-to-point).
        let local = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                AddressAttribute::Local(std::net::IpAddr::V4(v4)) => Some(*v4),
                _ => None,
            })
            .or_else(|| {
                msg.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(std::net::IpAddr::V4(v4)) => Some(*v4),
                    _ => None,
                })
            });
        if let Some(addr) = local {
            out.push((addr, msg.header.prefix_len));
        }
    }
    Ok(out)
}

/// The route task's state between reconciles.
pub struct Routes {
    client: kube::Client,
    node_name: String,
    /// --pod-cidr / podCIDR of the config file, used while the Node has none.
    configured_pod_cidr: Option<String>,
    /// (node, reason) pairs already logged, so a skip is logged once and not every resync.
    logged: HashSet<(String, Skip)>,
}

impl Routes {
    pub fn new(
        client: kube::Client,
        node_name: String,
        configured_pod_cidr: Option<String>,
    ) -> Self {
        Self {
            client,
            node_name,
            configured_pod_cidr,
            logged: HashSet::new(),
        }
    }

    /// Watches all Nodes and keeps the routes until `shutdown`; the routes stay in place after
    /// (pods keep running across a kubelet restart, and so does their traffic).
    pub async fn run(mut self, shutdown: Shutdown) {
        let (connection, handle, _) = match rtnetlink::new_connection() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %RoutesError::Socket(e), "pod network routes disabled");
                return;
            }
        };
        let connection = tokio::spawn(connection);
        let api: Api<Node> = Api::all(self.client.clone());
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut nodes: BTreeMap<String, NodeFacts> = BTreeMap::new();
        let mut listing: BTreeMap<String, NodeFacts> = BTreeMap::new();
        let mut synced = false;
        let mut denied_logged = false;
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let changed = tokio::select! {
                _ = shutdown.wait() => break,
                _ = resync.tick() => true,
                event = events.next() => match event {
                    None => break,
                    Some(Ok(watcher::Event::Init)) => {
                        listing.clear();
                        false
                    }
                    Some(Ok(watcher::Event::InitApply(node))) => {
                        if let Some(name) = node.metadata.name.clone() {
                            listing.insert(name, NodeFacts::of(&node));
                        }
                        false
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        nodes = std::mem::take(&mut listing);
                        synced = true;
                        true
                    }
                    Some(Ok(watcher::Event::Apply(node))) => {
                        let Some(name) = node.metadata.name.clone() else { continue };
                        let facts = NodeFacts::of(&node);
                        nodes.insert(name, facts.clone()).as_ref() != Some(&facts)
                    }
                    Some(Ok(watcher::Event::Delete(node))) => {
                        node.metadata.name.as_ref().is_some_and(|n| nodes.remove(n).is_some())
                    }
                    Some(Err(e)) => {
                        let forbidden = matches!(&e, watcher::Error::InitialListFailed(kube::Error::Api(s))
                            | watcher::Error::WatchStartFailed(kube::Error::Api(s)) if s.code == 403);
                        if forbidden && !denied_logged {
                            denied_logged = true;
                            tracing::warn!(
                                error = %e,
                                "cannot list Nodes for the pod network routes: the Node authorizer lets a \
                                 node read only its own Node; bind a ClusterRole with get/list/watch on \
                                 nodes to the group system:nodes (kubeadm init creates \
                                 kubeadm:kubelet-pod-network-routes) or run with --pod-network-routes=false"
                            );
                        } else {
                            tracing::debug!(error = %e, "watch nodes for pod network routes");
                        }
                        false
                    }
                },
            };
            if changed && synced {
                self.reconcile(&handle, &nodes).await;
            }
        }
        connection.abort();
    }

    /// Brings the kernel's routes of ours in line with `nodes`.
    async fn reconcile(&mut self, handle: &Handle, nodes: &BTreeMap<String, NodeFacts>) {
        let own = nodes.get(&self.node_name);
        let own_cidr_text = own
            .and_then(|f| f.pod_cidr.clone())
            .or_else(|| self.configured_pod_cidr.clone());
        // Without a podCIDR of its own the kubelet writes no CNI config and so does not manage
        // the pod network: it routes nothing then (and removes what it had routed).
        let (candidates, skipped) = match &own_cidr_text {
            Some(text) => desired_routes(&self.node_name, Cidr::parse(text), nodes),
            None => (BTreeMap::new(), Vec::new()),
        };
        // Pod traffic leaving the pod network is masqueraded; pod to pod is not.
        crate::masquerade::reconcile(own_cidr_text.as_deref().and_then(Cidr::parse), nodes).await;
        for (node, reason) in skipped {
            self.log_skip(&node, reason, None);
        }
        let kernel = match kernel_routes(handle).await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %RoutesError::List(e), "pod network routes");
                return;
            }
        };
        let host = match host_addresses(handle).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %RoutesError::Addresses(e), "pod network routes");
                return;
            }
        };
        let mut wanted = BTreeMap::new();
        for (cidr, w) in candidates {
            let check = if kernel.foreign.contains(&cidr) {
                Err(Skip::Foreign)
            } else {
                next_hop(w.via, &host)
            };
            match check {
                Ok(()) => {
                    // A node that was skipped before and is fine now may be logged again later.
                    self.logged.retain(|(n, _)| n != &w.node);
                    wanted.insert(cidr, w.via);
                }
                Err(reason) => self.log_skip(&w.node, reason, Some((cidr, w.via))),
            }
        }
        let ours: BTreeMap<Cidr, Option<Ipv4Addr>> = kernel
            .ours
            .iter()
            .map(|(cidr, (via, _))| (*cidr, *via))
            .collect();
        let plan = plan(&wanted, &ours);
        let mut kept = ours.len() as i64;
        for cidr in &plan.delete {
            let Some((_, msg)) = kernel.ours.get(cidr) else {
                continue;
            };
            match handle.route().del(msg.clone()).execute().await {
                Ok(()) => {
                    kept -= 1;
                    tracing::info!(destination = %cidr, "deleted pod network route")
                }
                Err(e) => {
                    tracing::warn!(destination = %cidr, error = %e, "delete pod network route")
                }
            }
        }
        for (cidr, via, replace) in plan.add {
            let mut message = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(cidr.network, cidr.len)
                .gateway(via)
                .protocol(RouteProtocol::from(ROUTE_PROTOCOL))
                .kind(RouteType::Unicast)
                .build();
            message.header.table = RouteHeader::RT_TABLE_MAIN;
            let mut request = handle.route().add(message);
            if replace {
                request = request.replace();
            }
            match request.execute().await {
                Ok(()) => {
                    kept += i64::from(!replace);
                    tracing::info!(destination = %cidr, via = %via, "programmed pod network route")
                }
                Err(e) => {
                    tracing::warn!(destination = %cidr, via = %via, error = %e, "add pod network route")
                }
            }
        }
        PROGRAMMED.store(kept, Ordering::Relaxed);
    }

    fn log_skip(&mut self, node: &str, reason: Skip, route: Option<(Cidr, Ipv4Addr)>) {
        if !self.logged.insert((node.to_string(), reason)) {
            return;
        }
        let (destination, via) = route
            .map(|(c, v)| (c.to_string(), v.to_string()))
            .unwrap_or_default();
        let why = match reason {
            Skip::BadPodCidr => "its podCIDR is not an IPv4 CIDR",
            Skip::OverlapsOwn => "its podCIDR overlaps this node's",
            Skip::Duplicate => "another node has the same podCIDR",
            Skip::OffLink => "its InternalIP is not on a subnet of this host",
            Skip::Local => "its InternalIP is an address of this host",
            Skip::Foreign => "a route of another owner has that destination",
        };
        tracing::warn!(
            node,
            destination,
            via,
            "no pod network route to node: {why}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(cidr: &str, ip: &str) -> NodeFacts {
        NodeFacts {
            pod_cidr: (!cidr.is_empty()).then(|| cidr.to_string()),
            internal_ip: ip.parse().ok(),
        }
    }

    fn cidr(text: &str) -> Cidr {
        Cidr::parse(text).expect("test CIDR")
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().expect("test IP")
    }

    #[test]
    fn cidrs_parse_normalize_and_contain() {
        assert_eq!(cidr("10.244.1.7/24"), Cidr::new(ip("10.244.1.0"), 24));
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert!(Cidr::parse("fd00::/64").is_none());
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("10.0.0.0").is_none());
        assert!(cidr("10.1.0.0/16").contains(ip("10.1.200.3")));
        assert!(!cidr("10.1.0.0/16").contains(ip("10.2.0.1")));
        assert!(cidr("10.1.0.0/16").overlaps(&cidr("10.1.5.0/24")));
        assert!(!cidr("10.1.4.0/24").overlaps(&cidr("10.1.5.0/24")));
    }

    #[test]
    fn node_facts_take_the_ipv4_pod_cidr_and_internal_ip() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"},
            "spec": {"podCIDRs": ["fd00:1::/64", "10.244.3.0/24"]},
            "status": {"addresses": [
                {"type": "Hostname", "address": "a"},
                {"type": "ExternalIP", "address": "203.0.113.9"},
                {"type": "InternalIP", "address": "fd00::5"},
                {"type": "InternalIP", "address": "192.168.5.4"},
            ]},
        }))
        .expect("node");
        assert_eq!(NodeFacts::of(&node), facts("10.244.3.0/24", "192.168.5.4"));
        assert_eq!(NodeFacts::of(&Node::default()), NodeFacts::default());
    }

    #[test]
    fn desired_routes_cover_other_nodes_with_a_range_and_an_address() {
        let nodes: BTreeMap<String, NodeFacts> = [
            ("me", facts("10.244.0.0/24", "192.168.5.1")),
            ("b", facts("10.244.1.0/24", "192.168.5.2")),
            ("c", facts("", "192.168.5.3")),
            ("d", facts("10.244.4.0/24", "")),
            ("e", facts("fd00::/64", "192.168.5.5")),
            ("f", facts("10.244.0.0/16", "192.168.5.6")),
            ("g", facts("10.244.1.0/24", "192.168.5.7")),
            ("h", facts("10.244.8.0/24", "10.9.9.9")),
        ]
        .into_iter()
        .map(|(n, f)| (n.to_string(), f))
        .collect();
        let (wanted, skipped) = desired_routes("me", Some(cidr("10.244.0.0/24")), &nodes);
        let got: Vec<(String, String, Ipv4Addr)> = wanted
            .iter()
            .map(|(c, w)| (c.to_string(), w.node.clone(), w.via))
            .collect();
        assert_eq!(
            got,
            vec![
                ("10.244.1.0/24".into(), "b".into(), ip("192.168.5.2")),
                ("10.244.8.0/24".into(), "h".into(), ip("10.9.9.9")),
            ]
        );
        assert_eq!(
            skipped,
            vec![
                ("e".to_string(), Skip::BadPodCidr),
                ("f".to_string(), Skip::OverlapsOwn),
                ("g".to_string(), Skip::Duplicate),
            ]
        );
    }

    #[test]
    fn next_hops_must_be_on_link_and_not_local() {
        let host = [
            (ip("127.0.0.1"), 8),
            (ip("192.168.5.1"), 24),
            (ip("10.0.0.7"), 32),
        ];
        let cases = [
            ("on the /24", "192.168.5.2", Ok(())),
            ("off link", "192.168.6.2", Err(Skip::OffLink)),
            ("host's own address", "192.168.5.1", Err(Skip::Local)),
            ("loopback", "127.0.0.2", Err(Skip::Local)),
            ("a /32 has no neighbours", "10.0.0.8", Err(Skip::OffLink)),
            ("unspecified", "0.0.0.0", Err(Skip::Local)),
        ];
        for (name, via, want) in cases {
            assert_eq!(next_hop(ip(via), &host), want, "{name}");
        }
    }

    #[test]
    fn plan_adds_replaces_and_deletes_only_what_differs() {
        let wanted: BTreeMap<Cidr, Ipv4Addr> = [
            (cidr("10.244.1.0/24"), ip("192.168.5.2")),
            (cidr("10.244.2.0/24"), ip("192.168.5.3")),
            (cidr("10.244.3.0/24"), ip("192.168.5.4")),
        ]
        .into_iter()
        .collect();
        let ours: BTreeMap<Cidr, Option<Ipv4Addr>> = [
            (cidr("10.244.1.0/24"), Some(ip("192.168.5.2"))),
            (cidr("10.244.2.0/24"), Some(ip("192.168.5.9"))),
            (cidr("10.244.9.0/24"), Some(ip("192.168.5.10"))),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            plan(&wanted, &ours),
            Plan {
                add: vec![
                    (cidr("10.244.2.0/24"), ip("192.168.5.3"), true),
                    (cidr("10.244.3.0/24"), ip("192.168.5.4"), false),
                ],
                delete: vec![cidr("10.244.9.0/24")],
            }
        );
        assert_eq!(plan(&wanted, &ours).add.len(), 2);
        assert_eq!(plan(&BTreeMap::new(), &BTreeMap::new()), Plan::default());
    }
}
