//! CoreDNS's metric names and labels, so dashboards and alerts written for CoreDNS work.

use prometheus::{
    exponential_buckets, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
    Registry,
};

/// The server block's zone: every query is served by the root block, as in kubeadm's Corefile.
pub const ZONE: &str = ".";

/// The query types CoreDNS counts by name; others are counted as "other".
const MONITORED_TYPES: &[&str] = &[
    "A", "AAAA", "NS", "PTR", "SOA", "CNAME", "MX", "TXT", "SRV", "NAPTR", "DS", "DNSKEY", "RRSIG",
    "NSEC", "NSEC3", "HINFO", "IXFR", "AXFR", "ANY", "CAA", "HTTPS", "SVCB",
];

#[derive(Clone)]
pub struct Metrics {
    pub requests: IntCounterVec,
    pub responses: IntCounterVec,
    pub duration: HistogramVec,
    pub request_size: HistogramVec,
    pub response_size: HistogramVec,
    pub forward_requests: IntCounterVec,
    pub forward_responses: IntCounterVec,
    pub panics: IntCounter,
}

impl Metrics {
    /// Creates the metrics and registers them (with `coredns_build_info` and process
    /// metrics) in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "coredns_dns_requests_total",
                "Counter of DNS requests made per zone, protocol and family.",
            ),
            &["server", "zone", "view", "proto", "family", "type"],
        )?;
        let responses = IntCounterVec::new(
            Opts::new(
                "coredns_dns_responses_total",
                "Counter of response status codes.",
            ),
            &["server", "zone", "view", "rcode", "plugin"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "coredns_dns_request_duration_seconds",
                "Histogram of the time (in seconds) each request took per zone.",
            )
            .buckets(exponential_buckets(0.00025, 2.0, 16)?),
            &["server", "zone", "view", "type"],
        )?;
        let size_buckets = vec![
            0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16e3, 32e3,
            48e3, 64e3,
        ];
        let request_size = HistogramVec::new(
            HistogramOpts::new(
                "coredns_dns_request_size_bytes",
                "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.",
            )
            .buckets(size_buckets.clone()),
            &["server", "zone", "view", "proto"],
        )?;
        let response_size = HistogramVec::new(
            HistogramOpts::new(
                "coredns_dns_response_size_bytes",
                "Size of the returned response in bytes.",
            )
            .buckets(size_buckets),
            &["server", "zone", "view", "proto"],
        )?;
        let forward_requests = IntCounterVec::new(
            Opts::new(
                "coredns_forward_requests_total",
                "Counter of requests made per upstream.",
            ),
            &["to"],
        )?;
        let forward_responses = IntCounterVec::new(
            Opts::new(
                "coredns_forward_responses_total",
                "Counter of responses received per upstream.",
            ),
            &["to", "rcode"],
        )?;
        let panics = IntCounter::new(
            "coredns_panics_total",
            "A metrics that counts the number of panics.",
        )?;
        let build_info = GaugeVec::new(
            Opts::new(
                "coredns_build_info",
                "A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built.",
            ),
            &["version", "revision", "goversion"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), "", "rust"])
            .set(1.0);
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(responses.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(request_size.clone()))?;
        registry.register(Box::new(response_size.clone()))?;
        registry.register(Box::new(forward_requests.clone()))?;
        registry.register(Box::new(forward_responses.clone()))?;
        registry.register(Box::new(panics.clone()))?;
        registry.register(Box::new(build_info))?;
        Ok(Self {
            requests,
            responses,
            duration,
            request_size,
            response_size,
            forward_requests,
            forward_responses,
            panics,
        })
    }
}

/// The `type` label of a query type.
pub fn type_label(qtype: &str) -> &str {
    if MONITORED_TYPES.contains(&qtype) {
        qtype
    } else {
        "other"
    }
}

/// CoreDNS's `rcode` label: the rcode's mnemonic (`NOERROR`, `NXDOMAIN`, `SERVFAIL`...).
pub fn rcode_label(rcode: hickory_proto::op::ResponseCode) -> String {
    use hickory_proto::op::ResponseCode::*;
    match rcode {
        NoError => "NOERROR".into(),
        FormErr => "FORMERR".into(),
        ServFail => "SERVFAIL".into(),
        NXDomain => "NXDOMAIN".into(),
        NotImp => "NOTIMP".into(),
        Refused => "REFUSED".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_coredns_names() {
        let registry = Registry::new();
        let m = Metrics::register(&registry).expect("register");
        m.requests
            .with_label_values(&["dns://:53", ZONE, "", "udp", "1", "A"])
            .inc();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        for want in [
            "coredns_dns_requests_total",
            "coredns_build_info",
            "coredns_panics_total",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        assert_eq!(type_label("A"), "A");
        assert_eq!(type_label("TYPE65280"), "other");
        assert_eq!(
            rcode_label(hickory_proto::op::ResponseCode::NXDomain),
            "NXDOMAIN"
        );
    }
}
