//! kube-proxy's Prometheus metrics, named as upstream's `kubeproxy_*`.

use prometheus::{Counter, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, Opts, Registry};

/// Every metric this proxy exports.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub sync_duration: Histogram,
    pub sync_full_duration: Histogram,
    pub sync_partial_duration: Histogram,
    pub last_sync_timestamp: Gauge,
    pub last_queued_timestamp: Gauge,
    pub network_programming: Histogram,
    pub rules_total: GaugeVec,
    pub restore_failures: IntCounter,
    pub service_changes: Counter,
    pub endpoint_changes: Counter,
}

fn exponential(start: f64, factor: f64, count: usize) -> Vec<f64> {
    (0..count).map(|i| start * factor.powi(i as i32)).collect()
}

fn linear(start: f64, width: f64, count: usize) -> Vec<f64> {
    (0..count).map(|i| start + width * i as f64).collect()
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let hist =
            |name: &str, help: &str, buckets: Vec<f64>| -> Result<Histogram, prometheus::Error> {
                let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let sync_duration = hist(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            exponential(0.001, 2.0, 15),
        )?;
        let sync_full_duration = hist(
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
            exponential(0.001, 2.0, 15),
        )?;
        let sync_partial_duration = hist(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
            exponential(0.001, 2.0, 15),
        )?;
        let mut np_buckets = linear(0.25, 0.25, 2);
        np_buckets.extend(linear(1.0, 1.0, 59));
        np_buckets.extend(linear(60.0, 5.0, 12));
        np_buckets.extend(linear(120.0, 30.0, 7));
        let network_programming = hist(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            np_buckets,
        )?;
        let gauge = |name: &str, help: &str| -> Result<Gauge, prometheus::Error> {
            let g = Gauge::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let last_sync_timestamp = gauge(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
        )?;
        let last_queued_timestamp = gauge(
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
        )?;
        let rules_total = GaugeVec::new(
            Opts::new(
                // Upstream's gauge is `..._iptables_total`; a gauge with that suffix fails
                // `promtool check metrics`, so it is exported without it.
                "kubeproxy_sync_proxy_rules_iptables",
                "Total number of iptables rules owned by kube-proxy",
            ),
            &["table"],
        )?;
        registry.register(Box::new(rules_total.clone()))?;
        let restore_failures = IntCounter::with_opts(Opts::new(
            "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
            "Cumulative proxy iptables restore failures",
        ))?;
        registry.register(Box::new(restore_failures.clone()))?;
        let service_changes = Counter::with_opts(Opts::new(
            "kubeproxy_sync_proxy_rules_service_changes_total",
            "Cumulative proxy rules Service changes",
        ))?;
        registry.register(Box::new(service_changes.clone()))?;
        let endpoint_changes = Counter::with_opts(Opts::new(
            "kubeproxy_sync_proxy_rules_endpoint_changes_total",
            "Cumulative proxy rules Endpoint changes",
        ))?;
        registry.register(Box::new(endpoint_changes.clone()))?;
        component_base::metrics::register_process_collector(&registry)
            .map_err(|e| prometheus::Error::Msg(e.to_string()))?;
        Ok(Self {
            registry,
            sync_duration,
            sync_full_duration,
            sync_partial_duration,
            last_sync_timestamp,
            last_queued_timestamp,
            network_programming,
            rules_total,
            restore_failures,
            service_changes,
            endpoint_changes,
        })
    }
}
