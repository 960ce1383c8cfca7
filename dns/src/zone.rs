//! Answers for the cluster zone and the reverse zones from an [`Index`], following the
//! Kubernetes DNS specification (schema 1.1.0) the way CoreDNS's kubernetes plugin reads it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::index::{Endpoint, Index, Kind};

/// The schema version `dns-version.<zone>` answers.
pub const SCHEMA_VERSION: &str = "1.1.0";
/// How many in-zone CNAMEs an answer follows.
const MAX_CNAME_CHAIN: usize = 8;
/// The namespace and name of the Service the zone's NS record points at.
const DNS_SERVICE: (&str, &str) = ("kube-system", "kube-dns");

/// A complete answer: rcode and sections.
#[derive(Debug, Default)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The out-of-zone target of a CNAME answer, which the server may resolve upstream.
    pub chase: Option<Name>,
}

/// The cluster zone: its name and how long answers may be cached.
#[derive(Clone, Debug)]
pub struct Zone {
    /// Lowercase, without a trailing dot.
    pub domain: String,
    pub ttl: u32,
}

/// What a query name asks for, as CoreDNS's parseRequest splits it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Request<'a> {
    /// "svc" or "pod" ("" at `svc.<zone>` and `pod.<zone>`).
    kind: &'a str,
    namespace: &'a str,
    service: &'a str,
    endpoint: &'a str,
    /// Port name and protocol without underscores; `None` matches every port.
    port: Option<&'a str>,
    protocol: Option<&'a str>,
}

/// A name that does not exist (NXDOMAIN).
#[derive(Debug, PartialEq, Eq)]
struct NameError;

/// One thing a name resolves to, before it becomes records of the asked type.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    host: Host,
    port: Option<u16>,
    /// The SRV target, relative to the zone (`svc.ns.svc`, `host.svc.ns.svc`).
    target: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Cname(String),
}

impl Zone {
    /// The name relative to the zone ("" at the apex), or `None` when outside it.
    pub fn relative<'a>(&self, lower_name: &'a str) -> Option<&'a str> {
        let name = lower_name.trim_end_matches('.');
        if name == self.domain {
            return Some("");
        }
        name.strip_suffix(self.domain.as_str())
            .and_then(|rest| rest.strip_suffix('.'))
    }

    fn fqdn(&self, relative: &str) -> Name {
        let text = if relative.is_empty() {
            format!("{}.", self.domain)
        } else {
            format!("{relative}.{}.", self.domain)
        };
        // Index names are lowercase DNS labels and the domain was validated, so this parses;
        // the root name keeps a bad object from failing the whole answer.
        Name::from_ascii(&text).unwrap_or_else(|_| Name::root())
    }

    fn soa(&self, serial: u32) -> Record {
        let soa = SOA::new(
            self.fqdn("ns.dns"),
            self.fqdn("hostmaster"),
            serial,
            7200,
            1800,
            86400,
            self.ttl,
        );
        Record::from_rdata(self.fqdn(""), self.ttl, RData::SOA(soa))
    }

    fn negative(&self, index: &Index, rcode: ResponseCode) -> Answer {
        Answer {
            rcode,
            authority: vec![self.soa(index.serial)],
            ..Default::default()
        }
    }

    /// Answers `qname` (inside the zone) for `qtype`.
    pub fn resolve(&self, index: &Index, qname: &Name, qtype: RecordType) -> Answer {
        self.resolve_chain(index, qname, qtype, 0)
    }

    fn resolve_chain(
        &self,
        index: &Index,
        qname: &Name,
        qtype: RecordType,
        depth: usize,
    ) -> Answer {
        let lower = qname.to_lowercase().to_ascii();
        let Some(base) = self.relative(&lower) else {
            return self.negative(index, ResponseCode::NXDomain);
        };
        if base.is_empty() {
            return self.apex(index, qname, qtype);
        }
        if base == "dns-version" {
            if qtype != RecordType::TXT {
                return self.negative(index, ResponseCode::NoError);
            }
            let txt = TXT::new(vec![SCHEMA_VERSION.to_owned()]);
            return self.answer(vec![Record::from_rdata(
                qname.clone(),
                self.ttl,
                RData::TXT(txt),
            )]);
        }
        if base == "ns.dns" {
            let records = address_records(qname, self.ttl, &ns_addresses(index), qtype);
            return if records.is_empty() {
                self.negative(index, ResponseCode::NoError)
            } else {
                self.answer(records)
            };
        }
        let items = match parse(base).and_then(|r| find(index, &r)) {
            Ok(items) => items,
            Err(NameError) => return self.negative(index, ResponseCode::NXDomain),
        };
        let mut answer = match qtype {
            RecordType::A | RecordType::AAAA => {
                let ips: Vec<IpAddr> = items
                    .iter()
                    .filter_map(|i| match i.host {
                        Host::Ip(ip) => Some(ip),
                        Host::Cname(_) => None,
                    })
                    .collect();
                let mut records = address_records(qname, self.ttl, &ips, qtype);
                let mut chase = None;
                let mut tail = Vec::new();
                if let Some(target) = items.iter().find_map(|i| match &i.host {
                    Host::Cname(t) => Some(t.clone()),
                    Host::Ip(_) => None,
                }) {
                    let target_name =
                        Name::from_ascii(format!("{target}.")).unwrap_or_else(|_| Name::root());
                    records.push(Record::from_rdata(
                        qname.clone(),
                        self.ttl,
                        RData::CNAME(CNAME(target_name.clone())),
                    ));
                    if self.relative(&target).is_some() {
                        if depth < MAX_CNAME_CHAIN {
                            let next = self.resolve_chain(index, &target_name, qtype, depth + 1);
                            tail = next.answers;
                            chase = next.chase;
                        }
                    } else {
                        chase = Some(target_name);
                    }
                }
                records.extend(tail);
                Answer {
                    answers: records,
                    chase,
                    ..Default::default()
                }
            }
            RecordType::CNAME => Answer {
                answers: items
                    .iter()
                    .filter_map(|i| match &i.host {
                        Host::Cname(t) => Some(Record::from_rdata(
                            qname.clone(),
                            self.ttl,
                            RData::CNAME(CNAME(Name::from_ascii(format!("{t}.")).ok()?)),
                        )),
                        Host::Ip(_) => None,
                    })
                    .collect(),
                ..Default::default()
            },
            RecordType::SRV => self.srv(qname, &items),
            _ => Answer::default(),
        };
        if answer.answers.is_empty() {
            return self.negative(index, ResponseCode::NoError);
        }
        answer.rcode = ResponseCode::NoError;
        answer
    }

    fn answer(&self, answers: Vec<Record>) -> Answer {
        Answer {
            answers,
            ..Default::default()
        }
    }

    fn apex(&self, index: &Index, qname: &Name, qtype: RecordType) -> Answer {
        match qtype {
            RecordType::SOA => {
                let mut soa = self.soa(index.serial);
                soa.set_name(qname.clone());
                self.answer(vec![soa])
            }
            RecordType::NS => {
                let ns_name = self.fqdn("ns.dns");
                let mut answer = self.answer(vec![Record::from_rdata(
                    qname.clone(),
                    self.ttl,
                    RData::NS(NS(ns_name.clone())),
                )]);
                let addrs = ns_addresses(index);
                answer.additionals = address_records(&ns_name, self.ttl, &addrs, RecordType::A);
                answer.additionals.extend(address_records(
                    &ns_name,
                    self.ttl,
                    &addrs,
                    RecordType::AAAA,
                ));
                answer
            }
            _ => self.negative(index, ResponseCode::NoError),
        }
    }

    fn srv(&self, qname: &Name, items: &[Item]) -> Answer {
        // CoreDNS's weighting: every record of priority 0 gets an equal share of 100.
        let weight = u16::try_from(100 / items.len().max(1)).unwrap_or(1).max(1);
        let mut answers: Vec<Record> = Vec::new();
        let mut additionals: Vec<Record> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for item in items {
            let Some(port) = item.port else {
                continue;
            };
            let (target, extra) = match &item.host {
                Host::Ip(ip) => {
                    let target = self.fqdn(&item.target);
                    let kind = if ip.is_ipv4() {
                        RecordType::A
                    } else {
                        RecordType::AAAA
                    };
                    let extra = address_records(&target, self.ttl, &[*ip], kind);
                    (target, extra)
                }
                Host::Cname(t) => match Name::from_ascii(format!("{t}.")) {
                    Ok(name) => (name, Vec::new()),
                    Err(_) => continue,
                },
            };
            if !seen.insert((port, target.clone())) {
                continue;
            }
            answers.push(Record::from_rdata(
                qname.clone(),
                self.ttl,
                RData::SRV(SRV::new(0, weight, port, target)),
            ));
            for record in extra {
                if !additionals.contains(&record) {
                    additionals.push(record);
                }
            }
        }
        Answer {
            answers,
            additionals,
            ..Default::default()
        }
    }

    /// Answers a PTR query in in-addr.arpa / ip6.arpa, or `None` when the IP is not a Service
    /// or endpoint IP (the query then goes upstream, as CoreDNS's fallthrough does).
    pub fn reverse(&self, index: &Index, qname: &Name) -> Option<Answer> {
        let ip = reverse_ip(&qname.to_lowercase().to_ascii())?;
        let names = index.reverse.get(&ip)?;
        Some(
            self.answer(
                names
                    .iter()
                    .map(|n| {
                        Record::from_rdata(qname.clone(), self.ttl, RData::PTR(PTR(self.fqdn(n))))
                    })
                    .collect(),
            ),
        )
    }
}

/// The IP of a reverse name (`4.3.2.1.in-addr.arpa.`, 32 nibbles `.ip6.arpa.`).
pub fn reverse_ip(lower_name: &str) -> Option<IpAddr> {
    let name = lower_name.trim_end_matches('.');
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let octets: Vec<u8> = rest
            .split('.')
            .map(|l| l.parse::<u8>().ok())
            .collect::<Option<_>>()?;
        let [d, c, b, a] = octets.as_slice() else {
            return None;
        };
        return Some(IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .map(|l| {
            (l.len() == 1)
                .then(|| u8::from_str_radix(l, 16).ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bits: u128 = 0;
    for n in nibbles.iter().rev() {
        bits = (bits << 4) | u128::from(*n);
    }
    Some(IpAddr::V6(Ipv6Addr::from(bits)))
}

/// Whether a lowercase name is in one of the reverse zones.
pub fn is_reverse(lower_name: &str) -> bool {
    let name = lower_name.trim_end_matches('.');
    ["in-addr.arpa", "ip6.arpa"]
        .iter()
        .any(|z| name == *z || name.ends_with(&format!(".{z}")))
}

fn address_records(name: &Name, ttl: u32, ips: &[IpAddr], qtype: RecordType) -> Vec<Record> {
    let mut records: Vec<Record> = Vec::new();
    for ip in ips {
        let rdata = match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
            (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
            _ => continue,
        };
        let record = Record::from_rdata(name.clone(), ttl, rdata);
        if !records.contains(&record) {
            records.push(record);
        }
    }
    records
}

/// The addresses of `ns.dns.<zone>`: the cluster IPs of Service kube-system/kube-dns.
fn ns_addresses(index: &Index) -> Vec<IpAddr> {
    match index.service(DNS_SERVICE.0, DNS_SERVICE.1).map(|s| &s.kind) {
        Some(Kind::ClusterIp(ips)) => ips.clone(),
        _ => Vec::new(),
    }
}

/// Splits a zone-relative name: `[_port._proto.|endpoint.]service.namespace.(svc|pod)`.
fn parse(base: &str) -> Result<Request<'_>, NameError> {
    let mut r = Request::default();
    if base == "svc" || base == "pod" {
        return Ok(r);
    }
    let mut labels = base.rsplit('.');
    r.kind = labels.next().ok_or(NameError)?;
    if r.kind != "svc" && r.kind != "pod" {
        return Err(NameError);
    }
    r.namespace = labels.next().unwrap_or("");
    r.service = labels.next().unwrap_or("");
    let rest: Vec<&str> = labels.collect();
    match rest.as_slice() {
        [] => {}
        [endpoint] => r.endpoint = endpoint,
        [protocol, port] => {
            r.protocol = Some(protocol.strip_prefix('_').unwrap_or(protocol));
            r.port = Some(port.strip_prefix('_').unwrap_or(port));
        }
        _ => return Err(NameError),
    }
    Ok(r)
}

fn port_matches(r: &Request<'_>, name: &str, protocol: &str) -> bool {
    r.port.is_none_or(|p| p == name) && r.protocol.is_none_or(|p| p == protocol)
}

/// What a parsed name resolves to: `Ok(empty)` is a name with no data (NODATA).
fn find(index: &Index, r: &Request<'_>) -> Result<Vec<Item>, NameError> {
    if r.kind.is_empty() {
        return Ok(Vec::new());
    }
    if !index.has_namespace(r.namespace) {
        return Err(NameError);
    }
    if r.service.is_empty() {
        // `<ns>.svc.<zone>` / `<ns>.pod.<zone>` of an existing namespace.
        return Ok(Vec::new());
    }
    if r.kind == "pod" {
        return find_pod(r);
    }
    let svc = index.service(r.namespace, r.service).ok_or(NameError)?;
    let base = format!("{}.{}.svc", r.service, r.namespace);
    let mut items = Vec::new();
    match &svc.kind {
        Kind::ExternalName(target) => {
            if !r.endpoint.is_empty() || r.port.is_some() {
                return Err(NameError);
            }
            items.push(Item {
                host: Host::Cname(target.clone()),
                port: None,
                target: base,
            });
        }
        Kind::Headless => items = endpoint_items(index, r, &base),
        Kind::ClusterIp(_) if !r.endpoint.is_empty() => items = endpoint_items(index, r, &base),
        Kind::ClusterIp(ips) => {
            let mut any_port = false;
            for p in svc
                .ports
                .iter()
                .filter(|p| port_matches(r, &p.name, &p.protocol))
            {
                any_port = true;
                for ip in ips {
                    items.push(Item {
                        host: Host::Ip(*ip),
                        port: Some(p.port),
                        target: base.clone(),
                    });
                }
            }
            if !any_port {
                return Err(NameError);
            }
            // Allocated but no IP yet: the name exists without data.
            return Ok(items);
        }
    }
    if items.is_empty() {
        return Err(NameError);
    }
    Ok(items)
}

fn endpoint_items(index: &Index, r: &Request<'_>, base: &str) -> Vec<Item> {
    let mut items = Vec::new();
    for ep in index.service_endpoints(r.namespace, r.service) {
        let label = ep.label();
        if !r.endpoint.is_empty() && r.endpoint != label {
            continue;
        }
        let target = format!("{label}.{base}");
        push_endpoint_ports(r, ep, &target, &mut items);
    }
    items
}

fn push_endpoint_ports(r: &Request<'_>, ep: &Endpoint, target: &str, items: &mut Vec<Item>) {
    match &ep.ports {
        // A slice without ports still names its addresses, but has no SRV data.
        None => {
            if r.port.is_none() && r.protocol.is_none() {
                items.push(Item {
                    host: Host::Ip(ep.ip),
                    port: None,
                    target: target.to_owned(),
                });
            }
        }
        Some(ports) => {
            for p in ports
                .iter()
                .filter(|p| port_matches(r, &p.name, &p.protocol))
            {
                items.push(Item {
                    host: Host::Ip(ep.ip),
                    port: Some(p.port),
                    target: target.to_owned(),
                });
            }
        }
    }
}

/// `a-b-c-d.<ns>.pod.<zone>` answers the IP it spells ("pods insecure": no pod lookup).
fn find_pod(r: &Request<'_>) -> Result<Vec<Item>, NameError> {
    if !r.endpoint.is_empty() || r.port.is_some() {
        return Err(NameError);
    }
    let name = r.service;
    let text = if name.matches('-').count() == 3 && !name.contains("--") {
        name.replace('-', ".")
    } else {
        name.replace('-', ":")
    };
    let ip: IpAddr = text.parse().map_err(|_| NameError)?;
    Ok(vec![Item {
        host: Host::Ip(ip),
        port: None,
        target: format!("{name}.{}.pod", r.namespace),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::{ns, slice, svc};
    use crate::index::SERVICE_NAME_LABEL;
    use serde_json::json;

    fn zone() -> Zone {
        Zone {
            domain: "cluster.local".into(),
            ttl: 30,
        }
    }

    fn index() -> Index {
        Index::build(
            &[ns("default"), ns("kube-system"), ns("empty")],
            &[
                svc(json!({"metadata": {"name": "web", "namespace": "default"},
                    "spec": {"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"],
                             "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                                       {"name": "dns", "port": 53, "protocol": "UDP"}]}})),
                svc(json!({"metadata": {"name": "db", "namespace": "default"},
                    "spec": {"clusterIP": "None",
                             "ports": [{"name": "pg", "port": 5432}]}})),
                svc(
                    json!({"metadata": {"name": "nobody", "namespace": "default"},
                    "spec": {"clusterIP": "None"}}),
                ),
                svc(json!({"metadata": {"name": "ext", "namespace": "default"},
                    "spec": {"type": "ExternalName", "externalName": "example.com"}})),
                svc(
                    json!({"metadata": {"name": "alias", "namespace": "default"},
                    "spec": {"type": "ExternalName",
                             "externalName": "web.default.svc.cluster.local"}}),
                ),
                svc(
                    json!({"metadata": {"name": "kube-dns", "namespace": "kube-system"},
                    "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53,
                             "protocol": "UDP"}]}}),
                ),
            ],
            &[slice(
                json!({"metadata": {"name": "db-x", "namespace": "default",
                                        "labels": {SERVICE_NAME_LABEL: "db"}},
                "addressType": "IPv4",
                "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["10.1.0.1"], "hostname": "db-0"},
                              {"addresses": ["10.1.0.2"]},
                              {"addresses": ["10.1.0.3"], "conditions": {"ready": false}}]}),
            )],
            42,
        )
    }

    fn ask(name: &str, qtype: RecordType) -> Answer {
        zone().resolve(&index(), &Name::from_ascii(name).expect("name"), qtype)
    }

    fn rdatas(answer: &Answer) -> Vec<String> {
        answer
            .answers
            .iter()
            .map(|r| r.data().to_string())
            .collect()
    }

    #[test]
    fn answers_follow_the_dns_specification() {
        use RecordType::*;
        struct Case {
            name: &'static str,
            qname: &'static str,
            qtype: RecordType,
            rcode: ResponseCode,
            data: &'static [&'static str],
        }
        let nx = ResponseCode::NXDomain;
        let ok = ResponseCode::NoError;
        let cases = [
            Case {
                name: "cluster ip service",
                qname: "web.default.svc.cluster.local.",
                qtype: A,
                rcode: ok,
                data: &["10.96.0.5"],
            },
            Case {
                name: "case does not matter",
                qname: "WEB.Default.SVC.cluster.LOCAL.",
                qtype: A,
                rcode: ok,
                data: &["10.96.0.5"],
            },
            Case {
                name: "ipv4-only service has no AAAA",
                qname: "web.default.svc.cluster.local.",
                qtype: AAAA,
                rcode: ok,
                data: &[],
            },
            Case {
                name: "other types of an existing name are NODATA",
                qname: "web.default.svc.cluster.local.",
                qtype: MX,
                rcode: ok,
                data: &[],
            },
            Case {
                name: "missing service",
                qname: "nope.default.svc.cluster.local.",
                qtype: A,
                rcode: nx,
                data: &[],
            },
            Case {
                name: "missing service, other type",
                qname: "nope.default.svc.cluster.local.",
                qtype: TXT,
                rcode: nx,
                data: &[],
            },
            Case {
                name: "missing namespace",
                qname: "web.nope.svc.cluster.local.",
                qtype: A,
                rcode: nx,
                data: &[],
            },
            Case {
                name: "existing namespace",
                qname: "empty.svc.cluster.local.",
                qtype: A,
                rcode: ok,
                data: &[],
            },
            Case {
                name: "missing namespace alone",
                qname: "nope.svc.cluster.local.",
                qtype: A,
                rcode: nx,
                data: &[],
            },
            Case {
                name: "svc label",
                qname: "svc.cluster.local.",
                qtype: A,
                rcode: ok,
                data: &[],
            },
            Case {
                name: "neither svc nor pod",
                qname: "foo.cluster.local.",
                qtype: A,
                rcode: nx,
                data: &[],
            },
            Case {
                name: "too many labels",
                qname: "a.b.c.web.default.svc.cluster.local.",
                qtype: A,
                rcode: nx,
                data: &[],
            },
            Case {
                name: "headless lists ready endpoints",
                qname: "db.default.svc.cluster.local.",
                qtype: A,
                rcode: ok,
                data: &["10.1.0.1", "10.1.0.2"],
            },
            Case {
                name: "headless without endpoints",
                qname: "nobody.default.svc.cluster.local.",
                qtype: A,
                rcode: nx,
                data: &[],
            },
            Case {
                name: "endpoint hostname",
                qname: "db-0.db.default.svc.cluster.local.",
                qtype: A,
                rcode: ok,
                data: &["10.1.0.1"],
            },
            Case {
                name: "endpoint dashed ip",
                qname: "10-1-0-2.db.default.svc.cluster.local.",
                qtype: A,
                rcode: ok,
                data: &["10.1.0.2"],
            },
            Case {
                name: "not-ready endpoint",
                qname: "10-1-0-3.db.default.svc.cluster.local.",
                qtype: A,
                rcode: nx,
                data: &[],
            },
            Case {
                name: "external name",
                qname: "ext.default.svc.cluster.local.",
                qtype: CNAME,
                rcode: ok,
                data: &["example.com."],
            },
            Case {
                name: "external name on A",
                qname: "ext.default.svc.cluster.local.",
                qtype: A,
                rcode: ok,
                data: &["example.com."],
            },
            Case {
                name: "in-zone external name is followed",
                qname: "alias.default.svc.cluster.local.",
                qtype: A,
                rcode: ok,
                data: &["web.default.svc.cluster.local.", "10.96.0.5"],
            },
            Case {
                name: "pod",
                qname: "10-1-0-7.default.pod.cluster.local.",
                qtype: A,
                rcode: ok,
                data: &["10.1.0.7"],
            },
            Case {
                name: "ipv6 pod",
                qname: "fd00--7.default.pod.cluster.local.",
                qtype: AAAA,
                rcode: ok,
                data: &["fd00::7"],
            },
            Case {
                name: "pod name that is no ip",
                qname: "web.default.pod.cluster.local.",
                qtype: A,
                rcode: nx,
                data: &[],
            },
            Case {
                name: "pod in missing namespace",
                qname: "10-1-0-7.nope.pod.cluster.local.",
                qtype: A,
                rcode: nx,
                data: &[],
            },
            Case {
                name: "service srv",
                qname: "_http._tcp.web.default.svc.cluster.local.",
                qtype: SRV,
                rcode: ok,
                data: &["0 100 80 web.default.svc.cluster.local."],
            },
            Case {
                name: "srv protocol must match",
                qname: "_http._udp.web.default.svc.cluster.local.",
                qtype: SRV,
                rcode: nx,
                data: &[],
            },
            Case {
                name: "srv of every port",
                qname: "web.default.svc.cluster.local.",
                qtype: SRV,
                rcode: ok,
                data: &[
                    "0 50 80 web.default.svc.cluster.local.",
                    "0 50 53 web.default.svc.cluster.local.",
                ],
            },
            Case {
                name: "headless srv",
                qname: "_pg._tcp.db.default.svc.cluster.local.",
                qtype: SRV,
                rcode: ok,
                data: &[
                    "0 50 5432 db-0.db.default.svc.cluster.local.",
                    "0 50 5432 10-1-0-2.db.default.svc.cluster.local.",
                ],
            },
            Case {
                name: "version",
                qname: "dns-version.cluster.local.",
                qtype: TXT,
                rcode: ok,
                data: &["1.1.0"],
            },
            Case {
                name: "apex soa",
                qname: "cluster.local.",
                qtype: SOA,
                rcode: ok,
                data: &["ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 86400 30"],
            },
            Case {
                name: "apex ns",
                qname: "cluster.local.",
                qtype: NS,
                rcode: ok,
                data: &["ns.dns.cluster.local."],
            },
            Case {
                name: "apex A",
                qname: "cluster.local.",
                qtype: A,
                rcode: ok,
                data: &[],
            },
            Case {
                name: "nameserver address",
                qname: "ns.dns.cluster.local.",
                qtype: A,
                rcode: ok,
                data: &["10.96.0.10"],
            },
        ];
        for c in cases {
            let answer = ask(c.qname, c.qtype);
            assert_eq!(answer.rcode, c.rcode, "{}", c.name);
            assert_eq!(rdatas(&answer), c.data, "{}", c.name);
            if answer.answers.is_empty() {
                assert_eq!(answer.authority.len(), 1, "{}: SOA in authority", c.name);
            }
        }
    }

    #[test]
    fn out_of_zone_cname_targets_are_left_to_chase() {
        let answer = ask("ext.default.svc.cluster.local.", RecordType::A);
        assert_eq!(
            answer.chase.map(|n| n.to_ascii()),
            Some("example.com.".into())
        );
        assert!(ask("alias.default.svc.cluster.local.", RecordType::A)
            .chase
            .is_none());
    }

    #[test]
    fn srv_answers_carry_target_addresses() {
        let answer = ask("_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV);
        let extra: Vec<String> = answer
            .additionals
            .iter()
            .map(|r| format!("{} {}", r.name(), r.data()))
            .collect();
        assert_eq!(
            extra,
            [
                "db-0.db.default.svc.cluster.local. 10.1.0.1",
                "10-1-0-2.db.default.svc.cluster.local. 10.1.0.2"
            ]
        );
    }

    #[test]
    fn ptr_names_cluster_ips_and_endpoints_and_falls_through_otherwise() {
        let z = zone();
        let idx = index();
        let ask = |n: &str| {
            z.reverse(&idx, &Name::from_ascii(n).expect("name"))
                .map(|a| rdatas(&a))
        };
        assert_eq!(
            ask("5.0.96.10.in-addr.arpa."),
            Some(vec!["web.default.svc.cluster.local.".to_owned()])
        );
        assert_eq!(
            ask("1.0.1.10.in-addr.arpa."),
            Some(vec!["db-0.db.default.svc.cluster.local.".to_owned()])
        );
        assert_eq!(ask("9.9.9.9.in-addr.arpa."), None);
    }

    #[test]
    fn reverse_names_parse_to_ips() {
        assert_eq!(
            reverse_ip("4.3.2.1.in-addr.arpa."),
            Some("1.2.3.4".parse().expect("ip"))
        );
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
        assert_eq!(reverse_ip(v6), Some("fd00::1".parse().expect("ip")));
        assert_eq!(reverse_ip("3.2.1.in-addr.arpa."), None);
        assert_eq!(reverse_ip("x.3.2.1.in-addr.arpa."), None);
        assert!(is_reverse("10.in-addr.arpa."));
        assert!(!is_reverse("notin-addr.arpa."));
    }

    #[test]
    fn names_split_as_coredns_does() {
        assert_eq!(
            parse("_http._tcp.web.ns.svc"),
            Ok(Request {
                kind: "svc",
                namespace: "ns",
                service: "web",
                endpoint: "",
                port: Some("http"),
                protocol: Some("tcp"),
            })
        );
        assert_eq!(parse("pod"), Ok(Request::default()));
        assert_eq!(parse("x.ns.other"), Err(NameError));
    }
}
