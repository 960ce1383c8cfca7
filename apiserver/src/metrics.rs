//! The apiserver's Prometheus metrics, with upstream names, help, labels and buckets.

use std::time::Duration;

use prometheus::{
    exponential_buckets, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry,
};

/// The `component` label of every request metric.
pub const COMPONENT: &str = "apiserver";

/// Latency buckets upstream shares between request and etcd latencies (SLO tracking).
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// Subresources whose requests upstream reports with verb CONNECT.
const CONNECT_SUBRESOURCES: &[&str] = &["log", "exec", "portforward", "attach", "proxy"];

/// Verbs reported as themselves; anything else becomes `other`.
const KNOWN_VERBS: &[&str] = &[
    "APPLY", "CONNECT", "DELETE", "GET", "LIST", "PATCH", "POST", "PUT", "WATCH",
];

/// Which max-in-flight pool a request counts against (`request_kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    ReadOnly,
    Mutating,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "readOnly",
            Self::Mutating => "mutating",
        }
    }
}

/// Labels identifying a request; for non-resource requests `subresource` holds the path and
/// group, version and resource are empty, as upstream records them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestLabels<'a> {
    /// From [`reported_verb`].
    pub verb: &'a str,
    /// The sorted, comma-joined `dryRun` values (`All`), or empty.
    pub dry_run: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    /// From [`scope`].
    pub scope: &'a str,
}

/// The `scope` label: `resource` for a named object (or a create), `namespace`, `cluster`, or
/// empty for non-resource paths.
pub fn scope(
    namespace: &str,
    name: &str,
    is_resource_request: bool,
    is_create: bool,
) -> &'static str {
    if !name.is_empty() || is_create {
        "resource"
    } else if !namespace.is_empty() {
        "namespace"
    } else if is_resource_request {
        "cluster"
    } else {
        ""
    }
}

/// The `verb` label as upstream derives it from the HTTP method: GETs of collections are LIST,
/// `?watch=true` is WATCH, server-side apply is APPLY, streaming subresources are CONNECT.
/// Collection deletes report DELETE, as upstream's do.
pub fn reported_verb(
    method: &str,
    scope: &str,
    watch: bool,
    content_type: Option<&str>,
    subresource: &str,
) -> &'static str {
    let method = method.to_ascii_uppercase();
    let is_get = method == "GET" || method == "HEAD";
    let media_type = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim);
    let verb = if is_get && watch {
        "WATCH"
    } else if is_get {
        if scope != "resource" && !scope.is_empty() {
            "LIST"
        } else {
            "GET"
        }
    } else if method == "PATCH" && media_type == Some("application/apply-patch+yaml") {
        "APPLY"
    } else {
        KNOWN_VERBS
            .iter()
            .copied()
            .find(|v| *v == method)
            .unwrap_or("other")
    };
    if CONNECT_SUBRESOURCES.contains(&subresource) && !scope.is_empty() {
        "CONNECT"
    } else {
        verb
    }
}

/// Every metric the apiserver exports; cheap to clone (the collectors are shared).
#[derive(Clone)]
pub struct Metrics {
    request_total: IntCounterVec,
    request_duration: HistogramVec,
    response_sizes: HistogramVec,
    request_terminations: IntCounterVec,
    current_inflight: IntGaugeVec,
    longrunning: IntGaugeVec,
    storage_objects: IntGaugeVec,
    etcd_request_duration: HistogramVec,
    etcd_requests: IntCounterVec,
    etcd_request_errors: IntCounterVec,
    watch_events: IntCounterVec,
    watch_events_sizes: HistogramVec,
    watch_cache_events_received: IntCounterVec,
    watch_cache_events_dispatched: IntCounterVec,
    watch_cache_capacity: IntGaugeVec,
    watch_cache_resource_version: GaugeVec,
    watch_cache_initializations: IntCounterVec,
    terminated_watchers: IntCounterVec,
    stream_translator_requests: IntCounterVec,
    stream_tunnel_requests: IntCounterVec,
}

/// Upstream's component-base prefixes help text with the metric's stability level.
fn stable(help: &str) -> String {
    format!("[STABLE] {help}")
}

fn alpha(help: &str) -> String {
    format!("[ALPHA] {help}")
}

const REQUEST_LABELS: &[&str] = &[
    "verb",
    "dry_run",
    "group",
    "version",
    "resource",
    "subresource",
    "scope",
    "component",
];
const REQUEST_LABELS_NO_DRY_RUN: &[&str] = &[
    "verb",
    "group",
    "version",
    "resource",
    "subresource",
    "scope",
    "component",
];
const GVK: &[&str] = &["group", "version", "kind"];
const RESOURCE: &[&str] = &["resource"];
const OPERATION_TYPE: &[&str] = &["operation", "type"];

struct Registrar<'r> {
    registry: &'r Registry,
}

impl Registrar<'_> {
    fn counter(
        &self,
        name: &str,
        help: String,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    fn gauge(&self, name: &str, help: String, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
        let metric = IntGaugeVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    fn float_gauge(
        &self,
        name: &str,
        help: String,
        labels: &[&str],
    ) -> prometheus::Result<GaugeVec> {
        let metric = GaugeVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    fn histogram(
        &self,
        name: &str,
        help: String,
        buckets: Vec<f64>,
        labels: &[&str],
    ) -> prometheus::Result<HistogramVec> {
        let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
        self.registry.register(Box::new(metric.clone()))?;
        Ok(metric)
    }
}

impl Metrics {
    /// Creates the metrics and registers them with `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = Registrar { registry };
        Ok(Self {
            request_total: r.counter(
                "apiserver_request_total",
                stable("Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code."),
                &[REQUEST_LABELS, &["code"]].concat(),
            )?,
            request_duration: r.histogram(
                "apiserver_request_duration_seconds",
                stable("Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component."),
                LATENCY_BUCKETS.to_vec(),
                REQUEST_LABELS,
            )?,
            response_sizes: r.histogram(
                "apiserver_response_sizes",
                stable("Response size distribution in bytes for each group, version, verb, resource, subresource, scope and component."),
                exponential_buckets(1000.0, 10.0, 7)?,
                REQUEST_LABELS_NO_DRY_RUN,
            )?,
            request_terminations: r.counter(
                "apiserver_request_terminations_total",
                alpha("Number of requests which apiserver terminated in self-defense."),
                &[REQUEST_LABELS_NO_DRY_RUN, &["code"]].concat(),
            )?,
            current_inflight: r.gauge(
                "apiserver_current_inflight_requests",
                stable("Maximal number of currently used inflight request limit of this apiserver per request kind in last second."),
                &["request_kind"],
            )?,
            longrunning: r.gauge(
                "apiserver_longrunning_requests",
                stable("Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component. Not all requests are tracked this way."),
                REQUEST_LABELS_NO_DRY_RUN,
            )?,
            storage_objects: r.gauge(
                "apiserver_storage_objects",
                stable("Number of stored objects at the time of last check split by kind. In case of a fetching error, the value will be -1."),
                RESOURCE,
            )?,
            etcd_request_duration: r.histogram(
                "etcd_request_duration_seconds",
                alpha("Etcd request latency in seconds for each operation and object type."),
                LATENCY_BUCKETS.to_vec(),
                OPERATION_TYPE,
            )?,
            etcd_requests: r.counter(
                "etcd_requests_total",
                alpha("Etcd request counts for each operation and object type."),
                OPERATION_TYPE,
            )?,
            etcd_request_errors: r.counter(
                "etcd_request_errors_total",
                alpha("Etcd failed request counts for each operation and object type."),
                OPERATION_TYPE,
            )?,
            watch_events: r.counter(
                "apiserver_watch_events_total",
                alpha("Number of events sent in watch clients"),
                GVK,
            )?,
            watch_events_sizes: r.histogram(
                "apiserver_watch_events_sizes",
                alpha("Watch event size distribution in bytes"),
                exponential_buckets(1024.0, 2.0, 8)?,
                GVK,
            )?,
            watch_cache_events_received: r.counter(
                "apiserver_watch_cache_events_received_total",
                alpha("Counter of events received in watch cache broken by resource type."),
                RESOURCE,
            )?,
            watch_cache_events_dispatched: r.counter(
                "apiserver_watch_cache_events_dispatched_total",
                alpha("Counter of events dispatched in watch cache broken by resource type."),
                RESOURCE,
            )?,
            // Upstream registers this one without the apiserver_ prefix.
            watch_cache_capacity: r.gauge(
                "watch_cache_capacity",
                alpha("Total capacity of watch cache broken by resource type."),
                RESOURCE,
            )?,
            watch_cache_resource_version: r.float_gauge(
                "apiserver_watch_cache_resource_version",
                alpha("Current resource version of watch cache broken by resource type."),
                RESOURCE,
            )?,
            watch_cache_initializations: r.counter(
                "apiserver_watch_cache_initializations_total",
                alpha("Counter of watch cache initializations broken by resource type."),
                RESOURCE,
            )?,
            terminated_watchers: r.counter(
                "apiserver_terminated_watchers_total",
                alpha("Counter of watchers closed due to unresponsiveness broken by resource type."),
                RESOURCE,
            )?,
            stream_translator_requests: r.counter(
                "apiserver_stream_translator_requests_total",
                alpha("Total number of requests that were handled by the StreamTranslatorProxy, which processes streaming RemoteCommand/V5"),
                &["code"],
            )?,
            stream_tunnel_requests: r.counter(
                "apiserver_stream_tunnel_requests_total",
                alpha("Total number of requests that were handled by the StreamTunnelProxy, which processes streaming PortForward/V2"),
                &["code"],
            )?,
        })
    }

    /// Records a finished request: count by code, latency, and for GET/LIST the response size.
    pub fn observe_request(
        &self,
        labels: &RequestLabels<'_>,
        code: u16,
        response_bytes: usize,
        elapsed: Duration,
    ) {
        let l = labels;
        let code = code.to_string();
        self.request_total
            .with_label_values(&[
                l.verb,
                l.dry_run,
                l.group,
                l.version,
                l.resource,
                l.subresource,
                l.scope,
                COMPONENT,
                &code,
            ])
            .inc();
        self.request_duration
            .with_label_values(&[
                l.verb,
                l.dry_run,
                l.group,
                l.version,
                l.resource,
                l.subresource,
                l.scope,
                COMPONENT,
            ])
            .observe(elapsed.as_secs_f64());
        // Upstream only cares about the size of read responses.
        if l.verb == "GET" || l.verb == "LIST" {
            self.response_sizes
                .with_label_values(&[
                    l.verb,
                    l.group,
                    l.version,
                    l.resource,
                    l.subresource,
                    l.scope,
                    COMPONENT,
                ])
                .observe(response_bytes as f64);
        }
    }

    /// Counts an exec/attach WebSocket request translated to SPDY, by its HTTP code.
    pub fn stream_translator_request(&self, code: u16) {
        self.stream_translator_requests
            .with_label_values(&[&code.to_string()])
            .inc();
    }

    /// Counts a port-forward WebSocket request tunnelled to SPDY, by its HTTP code.
    pub fn stream_tunnel_request(&self, code: u16) {
        self.stream_tunnel_requests
            .with_label_values(&[&code.to_string()])
            .inc();
    }

    /// Records a request refused with 429 by the max-in-flight filter: counted in
    /// `apiserver_request_total` and as a self-defense termination, without latency.
    pub fn record_dropped(&self, labels: &RequestLabels<'_>) {
        let l = labels;
        self.request_total
            .with_label_values(&[
                l.verb,
                l.dry_run,
                l.group,
                l.version,
                l.resource,
                l.subresource,
                l.scope,
                COMPONENT,
                "429",
            ])
            .inc();
        self.record_termination(labels, 429);
    }

    /// Records a request the server cut short (timeout 504, throttling 429, ...).
    pub fn record_termination(&self, labels: &RequestLabels<'_>, code: u16) {
        let l = labels;
        self.request_terminations
            .with_label_values(&[
                l.verb,
                l.group,
                l.version,
                l.resource,
                l.subresource,
                l.scope,
                COMPONENT,
                &code.to_string(),
            ])
            .inc();
    }

    /// Counts a long-running request (watch, exec, logs...) until the guard is dropped.
    pub fn longrunning(&self, labels: &RequestLabels<'_>) -> LongRunningGuard {
        let l = labels;
        let gauge = self.longrunning.with_label_values(&[
            l.verb,
            l.group,
            l.version,
            l.resource,
            l.subresource,
            l.scope,
            COMPONENT,
        ]);
        gauge.inc();
        LongRunningGuard { gauge }
    }

    /// Sets `apiserver_current_inflight_requests` for one pool.
    pub fn set_inflight(&self, kind: RequestKind, value: usize) {
        self.current_inflight
            .with_label_values(&[kind.as_str()])
            .set(i64::try_from(value).unwrap_or(i64::MAX));
    }

    /// Records one storage call. `operation` is upstream's (`get`, `create`, `update`,
    /// `delete`, `listWithCount`, ...); `object_type` the group-resource such as `pods` or
    /// `deployments.apps`.
    pub fn observe_storage(&self, operation: &str, object_type: &str, elapsed: Duration, ok: bool) {
        let labels = [operation, object_type];
        self.etcd_request_duration
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
        self.etcd_requests.with_label_values(&labels).inc();
        if !ok {
            self.etcd_request_errors.with_label_values(&labels).inc();
        }
    }

    /// Sets `apiserver_storage_objects` for a group-resource; -1 says counting failed.
    pub fn set_storage_objects(&self, resource: &str, count: i64) {
        self.storage_objects
            .with_label_values(&[resource])
            .set(count);
    }

    /// Counts one event sent to a watch client and its encoded size.
    pub fn watch_event_sent(&self, group: &str, version: &str, kind: &str, bytes: usize) {
        let labels = [group, version, kind];
        self.watch_events.with_label_values(&labels).inc();
        self.watch_events_sizes
            .with_label_values(&labels)
            .observe(bytes as f64);
    }

    /// Counts an event the watch cache received from storage.
    pub fn watch_cache_event_received(&self, resource: &str) {
        self.watch_cache_events_received
            .with_label_values(&[resource])
            .inc();
    }

    /// Counts events the watch cache handed to watchers.
    pub fn watch_cache_events_dispatched(&self, resource: &str, count: u64) {
        self.watch_cache_events_dispatched
            .with_label_values(&[resource])
            .inc_by(count);
    }

    pub fn set_watch_cache_capacity(&self, resource: &str, capacity: usize) {
        self.watch_cache_capacity
            .with_label_values(&[resource])
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
    }

    pub fn set_watch_cache_resource_version(&self, resource: &str, resource_version: u64) {
        self.watch_cache_resource_version
            .with_label_values(&[resource])
            .set(resource_version as f64);
    }

    /// Counts a (re)initialization of the watch cache from a fresh list.
    pub fn watch_cache_initialized(&self, resource: &str) {
        self.watch_cache_initializations
            .with_label_values(&[resource])
            .inc();
    }

    /// Counts a watcher closed because it did not keep up.
    pub fn watcher_terminated(&self, resource: &str) {
        self.terminated_watchers
            .with_label_values(&[resource])
            .inc();
    }
}

/// Decrements `apiserver_longrunning_requests` when the request ends.
pub struct LongRunningGuard {
    gauge: prometheus::IntGauge,
}

impl Drop for LongRunningGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    fn render(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .expect("encodes");
        String::from_utf8(out).expect("utf-8")
    }

    fn pods_list() -> RequestLabels<'static> {
        RequestLabels {
            verb: "LIST",
            version: "v1",
            resource: "pods",
            scope: "namespace",
            ..Default::default()
        }
    }

    fn exercise(m: &Metrics) {
        m.observe_request(&pods_list(), 200, 2048, Duration::from_millis(30));
        m.record_dropped(&pods_list());
        let watch = RequestLabels {
            verb: "WATCH",
            ..pods_list()
        };
        let guard = m.longrunning(&watch);
        m.set_inflight(RequestKind::ReadOnly, 3);
        m.set_inflight(RequestKind::Mutating, 1);
        m.set_storage_objects("pods", 7);
        m.observe_storage("get", "pods", Duration::from_millis(2), true);
        m.observe_storage(
            "update",
            "deployments.apps",
            Duration::from_millis(2),
            false,
        );
        m.watch_event_sent("", "v1", "Pod", 900);
        m.watch_cache_event_received("pods");
        m.watch_cache_events_dispatched("pods", 2);
        m.set_watch_cache_capacity("pods", 100);
        m.set_watch_cache_resource_version("pods", 42);
        m.watch_cache_initialized("pods");
        m.watcher_terminated("pods");
        drop(guard);
    }

    #[test]
    fn requests_are_counted_with_upstream_labels() {
        let registry = Registry::new();
        let m = Metrics::new(&registry).expect("registers");
        exercise(&m);
        let text = render(&registry);
        assert!(text.contains(
            "apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"pods\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\"} 1"
        ), "{text}");
        assert!(text.contains("code=\"429\""));
        assert!(text.contains("# HELP apiserver_request_total [STABLE] Counter of apiserver"));
        assert!(text.contains("apiserver_request_duration_seconds_bucket{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"pods\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\",le=\"0.05\"} 1"));
        assert!(text.contains("apiserver_response_sizes_bucket{component=\"apiserver\",group=\"\",resource=\"pods\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\",le=\"10000\"} 1"));
        assert!(text.contains("apiserver_current_inflight_requests{request_kind=\"readOnly\"} 3"));
        assert!(text.contains(
            "etcd_request_errors_total{operation=\"update\",type=\"deployments.apps\"} 1"
        ));
        assert!(text.contains("apiserver_longrunning_requests{component=\"apiserver\",group=\"\",resource=\"pods\",scope=\"namespace\",subresource=\"\",verb=\"WATCH\",version=\"v1\"} 0"));
    }

    #[test]
    fn rendered_metrics_pass_promtool_when_it_is_installed() {
        let Ok(promtool) = which("promtool") else {
            eprintln!("promtool not on PATH; skipping");
            return;
        };
        let registry = Registry::new();
        let m = Metrics::new(&registry).expect("registers");
        exercise(&m);
        let text = render(&registry);
        let mut child = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool starts");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(text.as_bytes()).expect("writes");
        }
        let out = child.wait_with_output().expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn which(name: &str) -> Result<std::path::PathBuf, ()> {
        let path = std::env::var_os("PATH").ok_or(())?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
            .ok_or(())
    }

    #[test]
    fn registering_twice_on_one_registry_fails() {
        let registry = Registry::new();
        Metrics::new(&registry).expect("first");
        assert!(Metrics::new(&registry).is_err());
    }

    #[test]
    fn verbs_are_reported_like_upstream() {
        let cases = [
            ("get one", "GET", "resource", false, None, "", "GET"),
            ("list", "GET", "namespace", false, None, "", "LIST"),
            ("cluster list", "GET", "cluster", false, None, "", "LIST"),
            ("watch", "GET", "namespace", true, None, "", "WATCH"),
            ("non-resource", "GET", "", false, None, "", "GET"),
            ("create", "POST", "resource", false, None, "", "POST"),
            (
                "apply",
                "PATCH",
                "resource",
                false,
                Some("application/apply-patch+yaml"),
                "",
                "APPLY",
            ),
            (
                "merge patch",
                "PATCH",
                "resource",
                false,
                Some("application/merge-patch+json"),
                "",
                "PATCH",
            ),
            (
                "delete collection",
                "DELETE",
                "namespace",
                false,
                None,
                "",
                "DELETE",
            ),
            ("exec", "POST", "resource", false, None, "exec", "CONNECT"),
            ("logs", "GET", "resource", false, None, "log", "CONNECT"),
            ("status", "PUT", "resource", false, None, "status", "PUT"),
            ("odd method", "TRACE", "resource", false, None, "", "other"),
        ];
        for (name, method, scope, watch, ct, sub, want) in cases {
            assert_eq!(reported_verb(method, scope, watch, ct, sub), want, "{name}");
        }
    }

    #[test]
    fn scope_prefers_resource_then_namespace_then_cluster() {
        assert_eq!(scope("ns", "x", true, false), "resource");
        assert_eq!(scope("ns", "", true, true), "resource");
        assert_eq!(scope("ns", "", true, false), "namespace");
        assert_eq!(scope("", "", true, false), "cluster");
        assert_eq!(scope("", "", false, false), "");
    }
}
