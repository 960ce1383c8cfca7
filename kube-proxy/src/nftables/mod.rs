//! The nftables proxier: one `ip kube-proxy` table with verdict maps; partial syncs touch only
//! changed chains and elements. A sync that changes only data elements (endpoint ranges and the
//! hairpin set: a rollout) is one netlink transaction sent from the process; anything structural
//! is one `nft -f -` transaction, framed by netlink batches that write ranges no rule uses yet
//! and delete ranges no rule uses any more (see `apply_partial`), so each Service still switches
//! in one transaction.

pub mod netlink;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
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

/// Programs Services through nft and netlink.
pub struct Proxier {
    cfg: RuleConfig,
    nodeport_addresses: NodePortAddresses,
    installed: BTreeMap<ServiceKey, Rendered>,
    /// How many installed Services use each endpoint IP (its hairpin element stays while > 0).
    hairpin: BTreeMap<Ipv4Addr, usize>,
    /// Dispatch ids of installed chains (their slices of the endpoint-ranges map).
    ids_in_use: BTreeSet<u16>,
    /// Where the search for a free id starts (ids are not reused at once).
    next_id: u32,
    /// The endpoint range maps that exist.
    range_maps: BTreeSet<String>,
    conn: Option<netlink::Conn>,
}

/// Hands out dispatch ids during one sync: a chain keeps its installed id unless told to
/// move, a new (or moving) chain gets a free one.
struct Ids<'a> {
    in_use: &'a BTreeSet<u16>,
    fresh: BTreeMap<String, u16>,
    taken: BTreeSet<u16>,
    next: u32,
}

impl Ids<'_> {
    fn fresh_for(&mut self, chain: &str) -> Option<u16> {
        if let Some(id) = self.fresh.get(chain) {
            return Some(*id);
        }
        for _ in 0..MAX_IDS {
            let id = (self.next % MAX_IDS) as u16;
            self.next = u32::from(id) + 1;
            if !self.in_use.contains(&id) && !self.taken.contains(&id) {
                self.taken.insert(id);
                self.fresh.insert(chain.to_owned(), id);
                return Some(id);
            }
        }
        None
    }
}

/// The endpoint-range and hairpin changes of a partial sync, in the order they must be
/// applied around the structural nft transaction (if any): `before` replaces ranges in place
/// and adds the ranges of new ids (no rule uses them yet); `after` deletes the ranges of ids no
/// rule uses any more. Without structural changes both go in one netlink batch.
#[derive(Debug, Default, PartialEq, Eq)]
struct ElementChanges {
    /// Slices replaced in place (same id): deleted before `add`.
    replace: Vec<Dispatch>,
    add: Vec<Dispatch>,
    hairpin_add: Vec<Ipv4Addr>,
    /// Slices of chains that moved to another id or went away.
    release: Vec<Dispatch>,
    hairpin_delete: Vec<Ipv4Addr>,
}

fn range_elements(d: &Dispatch, with_data: bool) -> Vec<netlink::Element> {
    let mut out = Vec::with_capacity(d.endpoints.len() * 2);
    for (start, end, ip, port) in d.ranges() {
        let mut s = netlink::Element::range_start(start, ip, port);
        if !with_data {
            s.data = None;
        }
        out.push(s);
        out.push(netlink::Element::range_end(end));
    }
    out
}

fn pairs(ips: &[Ipv4Addr]) -> Vec<netlink::Element> {
    ips.iter()
        .map(|ip| netlink::Element::addr_pair(*ip, *ip))
        .collect()
}

/// `a-b, c` for the keys of `d`'s ranges.
fn range_keys_text(d: &Dispatch) -> String {
    let keys: Vec<String> = d
        .ranges()
        .map(|(a, b, _, _)| {
            if b - a == 1 {
                a.to_string()
            } else {
                format!("{a}-{}", b - 1)
            }
        })
        .collect();
    keys.join(", ")
}

/// `slices`' range elements grouped by the map each belongs to (with endpoint data to add,
/// keys only to delete).
fn ranges_per_map<'a>(
    slices: impl Iterator<Item = &'a Dispatch>,
    with_data: bool,
) -> BTreeMap<String, Vec<netlink::Element>> {
    let mut per_map: BTreeMap<String, Vec<netlink::Element>> = BTreeMap::new();
    for d in slices {
        per_map
            .entry(d.map())
            .or_default()
            .extend(range_elements(d, with_data));
    }
    per_map
}

impl ElementChanges {
    fn deletes<'a>(&self, slices: impl Iterator<Item = &'a Dispatch>, b: &mut netlink::Batch) {
        for (map, els) in ranges_per_map(slices, false) {
            b.delete(&map, &els);
        }
    }

    fn adds(&self, b: &mut netlink::Batch) {
        for (map, els) in ranges_per_map(self.add.iter(), true) {
            b.add(&map, &els);
        }
        if !self.hairpin_add.is_empty() {
            b.add(HAIRPIN, &pairs(&self.hairpin_add));
        }
    }

    fn releases(&self, b: &mut netlink::Batch) {
        self.deletes(self.release.iter(), b);
        if !self.hairpin_delete.is_empty() {
            b.delete(HAIRPIN, &pairs(&self.hairpin_delete));
        }
    }

    /// Everything in one batch (no structural change).
    fn batch(&self) -> netlink::Batch {
        let mut b = netlink::Batch::new(TABLE);
        self.deletes(self.replace.iter().chain(&self.release), &mut b);
        if !self.hairpin_delete.is_empty() {
            b.delete(HAIRPIN, &pairs(&self.hairpin_delete));
        }
        self.adds(&mut b);
        b
    }

    /// What goes before the structural transaction.
    fn before(&self) -> netlink::Batch {
        let mut b = netlink::Batch::new(TABLE);
        self.deletes(self.replace.iter(), &mut b);
        self.adds(&mut b);
        b
    }

    /// What goes after it.
    fn after(&self) -> netlink::Batch {
        let mut b = netlink::Batch::new(TABLE);
        self.releases(&mut b);
        b
    }

    /// Element deletes and adds as nft input, for one nft transaction with the rest (when the
    /// changes are too big for a netlink batch).
    fn text(&self) -> (String, String) {
        let (mut first, mut last) = (String::new(), String::new());
        for d in self.replace.iter().chain(&self.release) {
            let _ = writeln!(
                first,
                "delete element {T} {} {{ {} }}",
                d.map(),
                range_keys_text(d)
            );
        }
        for ip in &self.hairpin_delete {
            let _ = writeln!(first, "delete element {T} {HAIRPIN} {{ {ip} . {ip} }}");
        }
        for d in &self.add {
            let _ = writeln!(last, "add element {T} {} {{ {} }}", d.map(), d.text());
        }
        for ip in &self.hairpin_add {
            let _ = writeln!(last, "add element {T} {HAIRPIN} {{ {ip} . {ip} }}");
        }
        (first, last)
    }
}

impl Proxier {
    pub fn new(cfg: RuleConfig, nodeport_addresses: NodePortAddresses) -> Self {
        Self {
            cfg,
            nodeport_addresses,
            installed: BTreeMap::new(),
            hairpin: BTreeMap::new(),
            ids_in_use: BTreeSet::new(),
            next_id: 0,
            range_maps: BTreeSet::new(),
            conn: None,
        }
    }

    /// Renders one Service. Chains keep their dispatch ids; in a partial sync, a Service whose
    /// structure changes moves every chain whose endpoints also change to a fresh id, so that
    /// the new ranges can be written before the structural transaction without being seen
    /// (the old ones are deleted after it): the Service switches in that one transaction.
    fn render_service(
        &self,
        ids: &mut Ids<'_>,
        old: &Rendered,
        ports: &[ServicePort],
        full: bool,
    ) -> Rendered {
        let mut moving: BTreeSet<String> = BTreeSet::new();
        loop {
            let mut id_of = |chain: &str| match old.dispatch.get(chain) {
                Some(d) if !moving.contains(chain) => Some(d.id),
                _ => ids.fresh_for(chain),
            };
            let new = render(ports, &self.cfg, &mut id_of);
            if full || !moving.is_empty() || !new.structure_differs(old) {
                return new;
            }
            moving = new
                .dispatch
                .iter()
                .filter(|(chain, d)| {
                    old.dispatch
                        .get(*chain)
                        .is_some_and(|o| o.id == d.id && o.endpoints != d.endpoints)
                })
                .map(|(chain, _)| chain.clone())
                .collect();
            if moving.is_empty() {
                return new;
            }
        }
    }

    /// Programs `changes` (see the iptables proxier's `sync` for the contract).
    pub fn sync(
        &mut self,
        changes: &BTreeMap<ServiceKey, Vec<ServicePort>>,
        full: bool,
    ) -> Result<SyncReport, Error> {
        let empty = Rendered::default();
        let mut ids = Ids {
            in_use: &self.ids_in_use,
            fresh: BTreeMap::new(),
            taken: BTreeSet::new(),
            next: self.next_id,
        };
        let rendered: BTreeMap<&ServiceKey, Rendered> = changes
            .iter()
            .map(|(k, ports)| {
                let old = self.installed.get(k).unwrap_or(&empty);
                (k, self.render_service(&mut ids, old, ports, full))
            })
            .collect();
        let next_id = ids.next;
        // Hairpin use counts: rebuilt by a full sync, changed by the Services of a partial one.
        let mut hairpin_delta: BTreeMap<Ipv4Addr, isize> = BTreeMap::new();
        for (k, new) in &rendered {
            if !full {
                for ip in &self.installed.get(*k).unwrap_or(&empty).hairpin {
                    *hairpin_delta.entry(*ip).or_default() -= 1;
                }
            }
            for ip in &new.hairpin {
                *hairpin_delta.entry(*ip).or_default() += 1;
            }
        }
        // (ip, count after the sync, whether it had an element before).
        let hairpin_counts: Vec<(Ipv4Addr, usize, bool)> = hairpin_delta
            .iter()
            .map(|(ip, delta)| {
                let before = if full {
                    0
                } else {
                    self.hairpin.get(ip).copied().unwrap_or(0)
                };
                (*ip, before.saturating_add_signed(*delta), before > 0)
            })
            .collect();
        // The endpoint range maps used after the sync (those created by it, in a partial one).
        let range_maps: BTreeSet<String> = rendered
            .values()
            .flat_map(|r| r.dispatch.values().map(Dispatch::map))
            .filter(|m| full || !self.range_maps.contains(m))
            .collect();
        let result = if full {
            let hairpin: BTreeSet<Ipv4Addr> = hairpin_counts
                .iter()
                .filter(|(_, n, _)| *n > 0)
                .map(|(ip, _, _)| *ip)
                .collect();
            self.full_inputs(&rendered, &hairpin)
                .and_then(|(create, fill)| {
                    nft(&create)?;
                    nft(&fill)?;
                    Ok(fill.len())
                })
        } else {
            let (text, mut elements) = self.partial_input(&rendered);
            for (ip, n, had) in &hairpin_counts {
                if *n > 0 && !had {
                    elements.hairpin_add.push(*ip);
                } else if *had && *n == 0 {
                    elements.hairpin_delete.push(*ip);
                }
            }
            self.apply_partial(text, &elements)
        };
        let bytes = match result {
            Ok(b) => b,
            Err(e) => {
                // Start over with a fresh socket next time.
                self.conn = None;
                return Err(e);
            }
        };
        if full {
            self.installed.clear();
            self.ids_in_use.clear();
        }
        if full {
            self.hairpin.clear();
        }
        for (ip, n, _) in hairpin_counts {
            if n == 0 {
                self.hairpin.remove(&ip);
            } else {
                self.hairpin.insert(ip, n);
            }
        }
        self.next_id = next_id;
        if full {
            self.range_maps.clear();
        }
        self.range_maps.extend(range_maps);
        for k in rendered.keys() {
            if let Some(old) = self.installed.get(*k) {
                for d in old.dispatch.values() {
                    self.ids_in_use.remove(&d.id);
                }
            }
        }
        for (k, r) in rendered {
            self.ids_in_use.extend(r.dispatch.values().map(|d| d.id));
            if r == Rendered::default() {
                self.installed.remove(k);
            } else {
                self.installed.insert(k.clone(), r);
            }
        }
        // kubeproxy_sync_proxy_rules_iptables is iptables-only, as upstream.
        Ok(SyncReport {
            rules: Vec::new(),
            bytes,
        })
    }

    /// Applies a partial sync: element changes over netlink (around the structural nft
    /// transaction, if any); everything through nft when a batch would be too big.
    fn apply_partial(&mut self, text: String, elements: &ElementChanges) -> Result<usize, Error> {
        // A new endpoint range map (the first chain of a block of ids) is created with the
        // structural changes, so the ranges go in the same nft transaction.
        let mut new_maps = String::new();
        for d in &elements.add {
            let map = d.map();
            if !self.range_maps.contains(&map) && !new_maps.contains(&format!(" {map} {{")) {
                let _ = writeln!(
                    new_maps,
                    "add map {T} {map} {{ {} }}",
                    endpoint_ranges_def(d.proto)
                );
            }
        }
        let (single, before, after) = if text.is_empty() {
            (Some(elements.batch()), None, None)
        } else {
            (None, Some(elements.before()), Some(elements.after()))
        };
        let fits = [&single, &before, &after]
            .iter()
            .all(|b| b.as_ref().is_none_or(|b| b.len() <= netlink::MAX_BATCH));
        if !fits || !new_maps.is_empty() {
            let (first, last) = elements.text();
            let input = format!("{new_maps}{first}{text}{last}");
            nft(&input)?;
            return Ok(input.len());
        }
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(netlink::Conn::open()?),
        };
        if let Some(b) = single {
            // Data only: no rule or verdict changes, so no table validation either.
            return conn.commit(&b);
        }
        let mut bytes = 0;
        if let Some(b) = before {
            bytes += conn.commit(&b)?;
        }
        nft(&text)?;
        if let Some(b) = after {
            bytes += conn.commit(&b)?;
        }
        Ok(bytes + text.len())
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
             add set {T} {CLUSTER_IPS} {{ type ipv4_addr ; comment \"Active ClusterIPs\" ; }}\n\
             add set {T} {HAIRPIN} {{ type ipv4_addr . ipv4_addr ; comment \"Endpoint IPs: connections DNATed back to their source\" ; }}"
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
            (
                "nat-postrouting",
                format!("ct status dnat ip saddr . ip daddr @{HAIRPIN} jump {MARK_FOR_MASQUERADE} comment \"hairpin\""),
            ),
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
        hairpin: &BTreeSet<Ipv4Addr>,
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
        let mut ranges_text: BTreeMap<String, (&str, Vec<String>)> = BTreeMap::new();
        for r in rendered.values() {
            for (set, def) in &r.sets {
                // An existing set keeps its definition (and its affinity entries) here; a
                // changed timeout is applied by the partial sync that saw the change.
                if !existing.sets.contains_key(set) {
                    let _ = writeln!(create, "add {} {T} {set} {{ {def} }}", keyword(def));
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
            for d in r.dispatch.values() {
                ranges_text
                    .entry(d.map())
                    .or_insert_with(|| (d.proto, Vec::new()))
                    .1
                    .push(d.text());
            }
        }
        for (map, (proto, ranges)) in &ranges_text {
            if existing.sets.contains_key(map) {
                let _ = writeln!(fill, "flush map {T} {map}");
            } else {
                let _ = writeln!(
                    create,
                    "add map {T} {map} {{ {} }}",
                    endpoint_ranges_def(proto)
                );
            }
            wanted_sets.insert(map.clone());
            let _ = writeln!(fill, "add element {T} {map} {{ {} }}", ranges.join(", "));
        }
        if !hairpin.is_empty() {
            let elements: Vec<String> = hairpin.iter().map(|ip| format!("{ip} . {ip}")).collect();
            let _ = writeln!(
                fill,
                "add element {T} {HAIRPIN} {{ {} }}",
                elements.join(", ")
            );
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
        for (s, kind) in existing
            .sets
            .iter()
            .filter(|(s, _)| !wanted_sets.contains(*s))
        {
            let _ = writeln!(tail, "delete {kind} {T} {s}");
        }
        fill.push_str(&tail);
        Ok((create, fill))
    }

    /// The structural part of a partial sync as nft input (empty when there is none) and its
    /// endpoint-range changes (the caller adds the hairpin set changes).
    fn partial_input(
        &self,
        rendered: &BTreeMap<&ServiceKey, Rendered>,
    ) -> (String, ElementChanges) {
        let mut decl = String::new();
        let mut body = String::new();
        let mut deletes = String::new();
        let mut elements = ElementChanges::default();
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
            for (chain, d) in &new.dispatch {
                match old.dispatch.get(chain) {
                    Some(o) if o == d => {}
                    Some(o) if o.id == d.id => {
                        elements.replace.push(o.clone());
                        elements.add.push(d.clone());
                    }
                    Some(o) => {
                        elements.release.push(o.clone());
                        elements.add.push(d.clone());
                    }
                    None => elements.add.push(d.clone()),
                }
            }
            for (chain, o) in &old.dispatch {
                if !new.dispatch.contains_key(chain) {
                    elements.release.push(o.clone());
                }
            }
            for (set, def) in &old.sets {
                if !new.sets.contains_key(set) {
                    let _ = writeln!(deletes, "delete {} {T} {set}", keyword(def));
                }
            }
        }
        decl.push_str(&body);
        decl.push_str(&deletes);
        (decl, elements)
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
            .any(|set| body.iter().any(|r| refers_to(r, set)));
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
            Some(old) => {
                let _ = writeln!(decl, "delete {} {T} {set}", keyword(old));
            }
            None => {}
        }
        let _ = writeln!(decl, "add {} {T} {set} {{ {def} }}", keyword(def));
    }
}

/// `map` for a map's definition (`key : data`), else `set`.
fn keyword(def: &str) -> &'static str {
    if def.contains(" : ") {
        "map"
    } else {
        "set"
    }
}

/// Whether `rule` names the set or map `set` (`@set` as a whole word).
fn refers_to(rule: &str, set: &str) -> bool {
    let pat = format!("@{set}");
    rule.match_indices(&pat).any(|(i, _)| {
        rule[i + pat.len()..]
            .chars()
            .next()
            .is_none_or(char::is_whitespace)
    })
}

/// Runs one `nft -f -` transaction.
fn nft(input: &str) -> Result<(), Error> {
    crate::feed("nft", &["-f", "-"], input)
}

/// The chains and sets (maps included) currently in the table; empty when it does not exist.
#[derive(Default)]
struct Existing {
    chains: BTreeSet<String>,
    /// Name -> "set" or "map".
    sets: BTreeMap<String, &'static str>,
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
                [kind @ ("set" | "map"), name, ..] if ours => {
                    let kind = if *kind == "map" { "map" } else { "set" };
                    out.sets.insert((*name).to_owned(), kind);
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
    fn set_references_match_whole_names() {
        assert!(refers_to(
            "dnat ip addr . port to numgen random mod 65536 map @m-1",
            "m-1"
        ));
        assert!(refers_to("ip saddr @m-1 goto x", "m-1"));
        assert!(!refers_to("ip saddr @m-10 goto x", "m-1"));
    }

    fn slice(id: u16, last: &[u8]) -> Dispatch {
        Dispatch {
            proto: "tcp",
            id,
            endpoints: last
                .iter()
                .map(|l| (Ipv4Addr::new(10, 0, 0, *l), 80))
                .collect(),
        }
    }

    #[test]
    fn element_changes_as_nft_text_delete_first_and_add_last() {
        let c = ElementChanges {
            replace: vec![slice(1, &[1])],
            add: vec![slice(1, &[1, 2])],
            hairpin_add: vec![Ipv4Addr::new(10, 0, 0, 2)],
            release: vec![slice(2, &[9])],
            hairpin_delete: vec![Ipv4Addr::new(10, 0, 0, 9)],
        };
        let (first, last) = c.text();
        assert_eq!(
            first,
            "delete element ip kube-proxy endpoint-ranges-tcp-0 { 65536-131071 }\n\
             delete element ip kube-proxy endpoint-ranges-tcp-0 { 131072-196607 }\n\
             delete element ip kube-proxy hairpin-endpoints { 10.0.0.9 . 10.0.0.9 }\n"
        );
        assert_eq!(
            last,
            "add element ip kube-proxy endpoint-ranges-tcp-0 { 65536-98303 : 10.0.0.1 . 80, 98304-131071 : 10.0.0.2 . 80 }\n\
             add element ip kube-proxy hairpin-endpoints { 10.0.0.2 . 10.0.0.2 }\n"
        );
        assert_eq!(
            range_elements(&slice(1, &[1, 2]), true),
            [
                netlink::Element::range_start(65536, Ipv4Addr::new(10, 0, 0, 1), 80),
                netlink::Element::range_end(98304),
                netlink::Element::range_start(98304, Ipv4Addr::new(10, 0, 0, 2), 80),
                netlink::Element::range_end(131072),
            ]
        );
        // Before the structural transaction: replace and add; after it: release.
        assert!(!c.before().is_empty() && !c.after().is_empty());
        assert!(ElementChanges::default().batch().is_empty());
    }

    #[test]
    fn ids_skip_those_in_use_and_stick_per_chain() {
        let in_use = BTreeSet::from([0u16, 1, 3]);
        let mut ids = Ids {
            in_use: &in_use,
            fresh: BTreeMap::new(),
            taken: BTreeSet::new(),
            next: 0,
        };
        assert_eq!(ids.fresh_for("a"), Some(2));
        assert_eq!(ids.fresh_for("b"), Some(4));
        assert_eq!(ids.fresh_for("a"), Some(2));
        let full: BTreeSet<u16> = (0..MAX_IDS as u16).collect();
        let mut ids = Ids {
            in_use: &full,
            fresh: BTreeMap::new(),
            taken: BTreeSet::new(),
            next: 5,
        };
        assert_eq!(ids.fresh_for("c"), None);
    }

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
