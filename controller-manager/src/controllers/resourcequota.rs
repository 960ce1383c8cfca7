//! resourcequota: recalculates each ResourceQuota's `status.used` from the objects in its
//! namespace (object counts, pod compute resources, storage), on changes and on a full resync
//! every `--resource-quota-sync-period`. Admission charges usage at create; this controller
//! gives it back after deletes and keeps `status.hard` equal to `spec.hard`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota,
    ResourceQuotaStatus, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

// ---------------------------------------------------------------------------------------------
// Quantities

/// Whether a quantity was written with binary (Ki, Mi, ...) or decimal suffixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// 1k = 1000.
    Decimal,
    /// 1Ki = 1024.
    Binary,
}

/// A quantity in thousandths of its unit (sub-milli amounts round up), with its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    /// Value × 1000.
    pub milli: i128,
    /// How to print it.
    pub format: Format,
}

impl Amount {
    /// Zero, printed in decimal.
    pub const ZERO: Amount = Amount {
        milli: 0,
        format: Format::Decimal,
    };

    /// A plain count.
    pub fn count(n: usize) -> Self {
        Amount {
            milli: n as i128 * 1000,
            format: Format::Decimal,
        }
    }

    /// The sum, in the format of whichever side is non-zero first.
    pub fn plus(self, other: Amount) -> Amount {
        Amount {
            milli: self.milli + other.milli,
            format: if self.milli == 0 {
                other.format
            } else {
                self.format
            },
        }
    }

    /// The larger of the two.
    pub fn max(self, other: Amount) -> Amount {
        if other.milli > self.milli {
            other
        } else {
            self
        }
    }
}

/// Parses a Kubernetes quantity (`500m`, `1.5Gi`, `2k`, `1e3`).
pub fn parse_quantity(s: &str) -> Option<Amount> {
    let s = s.trim();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(num_end);
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole
        .chars()
        .chain(frac.chars())
        .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // mantissa × 10^-frac_len
    let mantissa: i128 = format!("{whole}{frac}").parse().ok()?;
    let frac_len = frac.len() as i32;
    let (num, den, format): (i128, i128, Format) = match suffix {
        "" => (1, 1, Format::Decimal),
        "n" => (1, 1_000_000_000, Format::Decimal),
        "u" => (1, 1_000_000, Format::Decimal),
        "m" => (1, 1000, Format::Decimal),
        "k" => (1000, 1, Format::Decimal),
        "M" => (1_000_000, 1, Format::Decimal),
        "G" => (1_000_000_000, 1, Format::Decimal),
        "T" => (1_000_000_000_000, 1, Format::Decimal),
        "P" => (1_000_000_000_000_000, 1, Format::Decimal),
        "E" => (1_000_000_000_000_000_000, 1, Format::Decimal),
        "Ki" => (1 << 10, 1, Format::Binary),
        "Mi" => (1 << 20, 1, Format::Binary),
        "Gi" => (1 << 30, 1, Format::Binary),
        "Ti" => (1 << 40, 1, Format::Binary),
        "Pi" => (1 << 50, 1, Format::Binary),
        "Ei" => (1 << 60, 1, Format::Binary),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().ok()?;
            if !(-18..=18).contains(&e) {
                return None;
            }
            if e >= 0 {
                (10i128.pow(e as u32), 1, Format::Decimal)
            } else {
                (1, 10i128.pow((-e) as u32), Format::Decimal)
            }
        }
        _ => return None,
    };
    let den = den.checked_mul(10i128.checked_pow(frac_len as u32)?)?;
    let scaled = mantissa.checked_mul(num)?.checked_mul(1000)?;
    // Round up like upstream's quantity scaling.
    let milli = (scaled + den - 1).div_euclid(den);
    Some(Amount {
        milli: if negative { -milli } else { milli },
        format,
    })
}

/// The canonical text of an amount (`500m`, `2Gi`, `3`, `1k`).
pub fn format_amount(a: Amount) -> String {
    if a.milli % 1000 != 0 {
        return format!("{}m", a.milli);
    }
    let n = a.milli / 1000;
    if n == 0 {
        return "0".to_owned();
    }
    let (base, suffixes): (i128, &[&str]) = match a.format {
        Format::Binary => (1024, &["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]),
        Format::Decimal => (1000, &["k", "M", "G", "T", "P", "E"]),
    };
    let mut value = n;
    let mut suffix = "";
    for s in suffixes {
        if value % base != 0 {
            break;
        }
        value /= base;
        suffix = s;
    }
    format!("{value}{suffix}")
}

fn amount_of(q: Option<&Quantity>) -> Amount {
    q.and_then(|q| parse_quantity(&q.0)).unwrap_or(Amount::ZERO)
}

// ---------------------------------------------------------------------------------------------
// Usage

/// Every object of the namespace that quota can charge for.
#[derive(Default)]
pub struct Objects {
    /// Pods.
    pub pods: Vec<Arc<Pod>>,
    /// Services.
    pub services: Vec<Arc<Service>>,
    /// Object counts by quota name (`configmaps`, `count/deployments.apps`, ...).
    pub counts: BTreeMap<&'static str, usize>,
    /// PersistentVolumeClaims.
    pub claims: Vec<Arc<PersistentVolumeClaim>>,
}

/// Plain object counts: the legacy name and the `count/` name of each.
const COUNTED: &[(&str, &str)] = &[
    ("configmaps", "count/configmaps"),
    ("secrets", "count/secrets"),
    ("replicationcontrollers", "count/replicationcontrollers"),
    ("resourcequotas", "count/resourcequotas"),
    ("", "count/deployments.apps"),
    ("", "count/replicasets.apps"),
    ("", "count/statefulsets.apps"),
];

/// Whether a pod still uses quota: not terminal, and not past its deletion grace period.
pub fn pod_counts(pod: &Pod, now: DateTime<Utc>) -> bool {
    if super::util::is_terminal(pod) {
        return false;
    }
    if let (Some(at), Some(grace)) = (
        &pod.metadata.deletion_timestamp,
        pod.metadata.deletion_grace_period_seconds,
    ) {
        if now > at.0 + k8s_openapi::chrono::Duration::seconds(grace) {
            return false;
        }
    }
    true
}

/// A pod's effective request (`limits == false`) or limit of `resource`: the larger of the
/// containers' sum and any one init container, plus the pod overhead.
pub fn pod_resource(pod: &Pod, resource: &str, limits: bool) -> Amount {
    let Some(spec) = &pod.spec else {
        return Amount::ZERO;
    };
    let pick = |c: &k8s_openapi::api::core::v1::Container| {
        let r = c.resources.as_ref();
        let list = if limits {
            r.and_then(|r| r.limits.as_ref())
        } else {
            r.and_then(|r| r.requests.as_ref())
        };
        amount_of(list.and_then(|l| l.get(resource)))
    };
    let sum = spec
        .containers
        .iter()
        .fold(Amount::ZERO, |acc, c| acc.plus(pick(c)));
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .fold(Amount::ZERO, |acc, c| acc.max(pick(c)));
    let overhead = amount_of(spec.overhead.as_ref().and_then(|o| o.get(resource)));
    sum.max(init).plus(overhead)
}

/// Whether a pod has no cpu/memory requests or limits at all.
pub fn is_best_effort(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else {
        return true;
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .all(|c| {
            let r = c.resources.as_ref();
            [
                r.and_then(|r| r.requests.as_ref()),
                r.and_then(|r| r.limits.as_ref()),
            ]
            .into_iter()
            .flatten()
            .all(|l| {
                ["cpu", "memory"]
                    .iter()
                    .all(|k| amount_of(l.get(*k)).milli == 0)
            })
        })
}

/// One scope test: (scope name, operator, values).
type ScopeTerm = (String, String, Vec<String>);

fn scope_terms(quota: &ResourceQuota) -> Vec<ScopeTerm> {
    let spec = quota.spec.as_ref();
    let mut terms: Vec<ScopeTerm> = spec
        .and_then(|s| s.scopes.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s, "Exists".to_owned(), Vec::new()))
        .collect();
    for e in spec
        .and_then(|s| s.scope_selector.as_ref())
        .and_then(|s| s.match_expressions.clone())
        .unwrap_or_default()
    {
        terms.push((e.scope_name, e.operator, e.values.unwrap_or_default()));
    }
    terms
}

fn pod_matches_term(pod: &Pod, (scope, op, values): &ScopeTerm) -> bool {
    let spec = pod.spec.as_ref();
    let terminating = spec.and_then(|s| s.active_deadline_seconds).is_some();
    match scope.as_str() {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "PriorityClass" => {
            let class = spec.and_then(|s| s.priority_class_name.as_deref());
            match op.as_str() {
                "In" => class.is_some_and(|c| values.iter().any(|v| v == c)),
                "NotIn" => class.is_none_or(|c| !values.iter().any(|v| v == c)),
                "Exists" => class.is_some_and(|c| !c.is_empty()),
                "DoesNotExist" => class.is_none_or(str::is_empty),
                _ => false,
            }
        }
        _ => false,
    }
}

/// `status.used` for the keys of `hard`; keys this controller cannot compute are left out.
pub fn calculate_usage(
    quota: &ResourceQuota,
    objects: &Objects,
    now: DateTime<Utc>,
) -> BTreeMap<String, Amount> {
    let hard = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let terms = scope_terms(quota);
    let scoped = !terms.is_empty();
    let pods: Vec<&Arc<Pod>> = objects
        .pods
        .iter()
        .filter(|p| pod_counts(p, now))
        .filter(|p| terms.iter().all(|t| pod_matches_term(p, t)))
        .collect();
    let pod_sum = |resource: &str, limits: bool| {
        pods.iter().fold(Amount::ZERO, |acc, p| {
            acc.plus(pod_resource(p, resource, limits))
        })
    };
    let mut used = BTreeMap::new();
    for key in hard.keys() {
        let value = match key.as_str() {
            "pods" | "count/pods" => Some(Amount::count(pods.len())),
            "cpu" | "memory" | "ephemeral-storage" => Some(pod_sum(key, false)),
            k if k.starts_with("requests.") && k != "requests.storage" => {
                Some(pod_sum(&k["requests.".len()..], false))
            }
            k if k.starts_with("limits.") => Some(pod_sum(&k["limits.".len()..], true)),
            // Only pods are charged to scoped quotas.
            _ if scoped => None,
            "services" | "count/services" => Some(Amount::count(objects.services.len())),
            "services.loadbalancers" => Some(Amount::count(
                objects
                    .services
                    .iter()
                    .filter(|s| service_type(s) == "LoadBalancer")
                    .count(),
            )),
            "services.nodeports" => Some(Amount::count(
                objects.services.iter().map(|s| node_ports(s)).sum(),
            )),
            "persistentvolumeclaims" | "count/persistentvolumeclaims" => {
                Some(Amount::count(objects.claims.len()))
            }
            "requests.storage" => Some(storage_sum(objects.claims.iter())),
            k => {
                if let Some(class) = k.strip_suffix(".storageclass.storage.k8s.io/requests.storage")
                {
                    Some(storage_sum(
                        objects
                            .claims
                            .iter()
                            .filter(|c| claim_class(c) == Some(class)),
                    ))
                } else if let Some(class) =
                    k.strip_suffix(".storageclass.storage.k8s.io/persistentvolumeclaims")
                {
                    Some(Amount::count(
                        objects
                            .claims
                            .iter()
                            .filter(|c| claim_class(c) == Some(class))
                            .count(),
                    ))
                } else {
                    COUNTED
                        .iter()
                        .find(|(legacy, count)| k == *legacy || k == *count)
                        .map(|(_, count)| {
                            Amount::count(objects.counts.get(count).copied().unwrap_or(0))
                        })
                }
            }
        };
        if let Some(v) = value {
            used.insert(key.clone(), v);
        }
    }
    used
}

fn service_type(svc: &Service) -> &str {
    svc.spec
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("ClusterIP")
}

fn node_ports(svc: &Service) -> usize {
    let spec = svc.spec.as_ref();
    let ports = spec.and_then(|s| s.ports.as_ref()).map_or(0, Vec::len);
    match service_type(svc) {
        "NodePort" => ports,
        "LoadBalancer" if spec.and_then(|s| s.allocate_load_balancer_node_ports) != Some(false) => {
            ports
        }
        _ => 0,
    }
}

fn claim_class(c: &PersistentVolumeClaim) -> Option<&str> {
    c.spec.as_ref()?.storage_class_name.as_deref()
}

fn storage_sum<'a>(claims: impl Iterator<Item = &'a Arc<PersistentVolumeClaim>>) -> Amount {
    claims.fold(Amount::ZERO, |acc, c| {
        let request = c
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"));
        acc.plus(amount_of(request))
    })
}

/// The status a quota should have: `hard` from the spec, `used` recalculated where possible and
/// kept from the last observation otherwise, for exactly the keys of `hard`.
pub fn desired_status(
    quota: &ResourceQuota,
    objects: &Objects,
    now: DateTime<Utc>,
) -> ResourceQuotaStatus {
    let hard = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let old_used = quota
        .status
        .as_ref()
        .and_then(|s| s.used.clone())
        .unwrap_or_default();
    let computed = calculate_usage(quota, objects, now);
    let used = hard
        .keys()
        .map(|k| {
            let v = match computed.get(k) {
                Some(a) => Quantity(format_amount(*a)),
                None => old_used
                    .get(k)
                    .cloned()
                    .unwrap_or_else(|| Quantity("0".to_owned())),
            };
            (k.clone(), v)
        })
        .collect();
    ResourceQuotaStatus {
        hard: Some(hard),
        used: Some(used),
    }
}

/// Whether two resource lists hold the same keys with equal values.
pub fn same_list(
    a: Option<&BTreeMap<String, Quantity>>,
    b: Option<&BTreeMap<String, Quantity>>,
) -> bool {
    let empty = BTreeMap::new();
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            b.get(k).is_some_and(|w| {
                parse_quantity(&v.0).map(|x| x.milli) == parse_quantity(&w.0).map(|x| x.milli)
            })
        })
}

// ---------------------------------------------------------------------------------------------
// Controller

struct Ctx {
    client: kube::Client,
    resync: Duration,
    pods: Store<Pod>,
    services: Store<Service>,
    claims: Store<PersistentVolumeClaim>,
    config_maps: Store<ConfigMap>,
    secrets: Store<Secret>,
    rcs: Store<ReplicationController>,
    quotas: Store<ResourceQuota>,
    deployments: Store<Deployment>,
    replica_sets: Store<ReplicaSet>,
    stateful_sets: Store<StatefulSet>,
}

fn in_ns<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>, ns: &str) -> Vec<Arc<K>> {
    store
        .state()
        .into_iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns))
        .collect()
}

impl Ctx {
    fn objects(&self, ns: &str) -> Objects {
        let counts = BTreeMap::from([
            ("count/configmaps", in_ns(&self.config_maps, ns).len()),
            ("count/secrets", in_ns(&self.secrets, ns).len()),
            ("count/replicationcontrollers", in_ns(&self.rcs, ns).len()),
            ("count/resourcequotas", in_ns(&self.quotas, ns).len()),
            ("count/deployments.apps", in_ns(&self.deployments, ns).len()),
            (
                "count/replicasets.apps",
                in_ns(&self.replica_sets, ns).len(),
            ),
            (
                "count/statefulsets.apps",
                in_ns(&self.stateful_sets, ns).len(),
            ),
        ]);
        Objects {
            pods: in_ns(&self.pods, ns),
            services: in_ns(&self.services, ns),
            claims: in_ns(&self.claims, ns),
            counts,
        }
    }
}

/// Every quota of the namespace `obj` lives in.
fn quotas_of<K: Resource>(quotas: &Store<ResourceQuota>, obj: &K) -> Vec<ObjectRef<ResourceQuota>> {
    let Some(ns) = obj.meta().namespace.as_deref() else {
        return Vec::new();
    };
    in_ns(quotas, ns)
        .iter()
        .map(|q| ObjectRef::from_obj(&**q))
        .collect()
}

macro_rules! watch_ns {
    ($controller:expr, $informer:expr, $quotas:expr, $ty:ty) => {{
        let quotas = $quotas.clone();
        $controller.watches_shared_stream($informer.subscribe(), move |o: Arc<$ty>| {
            quotas_of(&quotas, &*o)
        })
    }};
}

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let quotas = ctx.informers.get::<ResourceQuota>();
    let pods = ctx.informers.get::<Pod>();
    let services = ctx.informers.get::<Service>();
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let config_maps = ctx.informers.get::<ConfigMap>();
    let secrets = ctx.informers.get::<Secret>();
    let rcs = ctx.informers.get::<ReplicationController>();
    let deployments = ctx.informers.get::<Deployment>();
    let replica_sets = ctx.informers.get::<ReplicaSet>();
    let stateful_sets = ctx.informers.get::<StatefulSet>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
        resync: ctx.config.resource_quota_sync_period,
        pods: pods.store(),
        services: services.store(),
        claims: claims.store(),
        config_maps: config_maps.store(),
        secrets: secrets.store(),
        rcs: rcs.store(),
        quotas: quotas.store(),
        deployments: deployments.store(),
        replica_sets: replica_sets.store(),
        stateful_sets: stateful_sets.store(),
    });
    let qs = quotas.store();
    let c = Controller::for_shared_stream(quotas.subscribe(), quotas.store());
    let c = watch_ns!(c, pods, qs, Pod);
    let c = watch_ns!(c, services, qs, Service);
    let c = watch_ns!(c, claims, qs, PersistentVolumeClaim);
    let c = watch_ns!(c, config_maps, qs, ConfigMap);
    let c = watch_ns!(c, secrets, qs, Secret);
    let c = watch_ns!(c, rcs, qs, ReplicationController);
    let c = watch_ns!(c, deployments, qs, Deployment);
    let c = watch_ns!(c, replica_sets, qs, ReplicaSet);
    let c = watch_ns!(c, stateful_sets, qs, StatefulSet);
    // Other quotas of the namespace count toward count/resourcequotas.
    let c = watch_ns!(c, quotas, qs, ResourceQuota);
    let controller = c
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(ctx.config.concurrency.resource_quota));
    Ok(drain(
        "resourcequota",
        controller.run(reconcile, error_policy, state),
    )
    .boxed())
}

async fn reconcile(quota: Arc<ResourceQuota>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = quota
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let resync = if ctx.resync.is_zero() {
        Action::await_change()
    } else {
        // kube-runtime's scheduler panics on deadlines years away.
        crate::controllers::requeue_after(ctx.resync.min(Duration::from_secs(24 * 3600)))
    };
    if quota.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let status = desired_status(&quota, &ctx.objects(&ns), Utc::now());
    let old = quota.status.as_ref();
    if same_list(old.and_then(|s| s.hard.as_ref()), status.hard.as_ref())
        && same_list(old.and_then(|s| s.used.as_ref()), status.used.as_ref())
    {
        return Ok(resync);
    }
    let mut updated = (*quota).clone();
    updated.status = Some(status);
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
    match api
        .replace_status(
            &quota.name_any(),
            &PostParams::default(),
            serde_json::to_vec(&updated)?,
        )
        .await
    {
        Ok(_) => Ok(resync),
        Err(e) if is_status(&e, 409) || is_status(&e, 404) => Ok(
            crate::controllers::requeue_after(Duration::from_millis(500)),
        ),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, PodSpec, PodStatus, ResourceQuotaSpec, ResourceRequirements, ScopeSelector,
        ScopedResourceSelectorRequirement, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_owned())
    }

    #[test]
    fn quantities_parse_and_print_canonically() {
        let cases = [
            ("100m", 100, "100m"),
            ("1", 1000, "1"),
            ("1.5", 1500, "1500m"),
            ("2k", 2_000_000, "2k"),
            ("1000", 1_000_000, "1k"),
            ("128Mi", 128 * 1024 * 1024 * 1000, "128Mi"),
            ("1536Mi", 1536 * 1024 * 1024 * 1000, "1536Mi"),
            ("1Gi", 1024 * 1024 * 1024 * 1000, "1Gi"),
            ("1e3", 1_000_000, "1k"),
            ("1n", 1, "1m"),
            ("0", 0, "0"),
        ];
        for (text, milli, canonical) in cases {
            let a = parse_quantity(text).unwrap_or_else(|| panic!("{text} parses"));
            assert_eq!(a.milli, milli, "{text}");
            assert_eq!(format_amount(a), canonical, "{text}");
        }
        for bad in ["", "abc", "1Qi", "1.2.3", "--1"] {
            assert!(parse_quantity(bad).is_none(), "{bad}");
        }
        let sum = parse_quantity("512Mi")
            .expect("q")
            .plus(parse_quantity("512Mi").expect("q"));
        assert_eq!(format_amount(sum), "1Gi");
    }

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let list = |pairs: &[(&str, &str)]| {
            (!pairs.is_empty()).then(|| pairs.iter().map(|(k, v)| (k.to_string(), q(v))).collect())
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        }
    }

    fn pod(containers: Vec<Container>, phase: &str, deadline: Option<i64>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta::default(),
            spec: Some(PodSpec {
                containers,
                active_deadline_seconds: deadline,
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..PodStatus::default()
            }),
        })
    }

    fn quota(hard: &[&str], scopes: &[&str]) -> ResourceQuota {
        ResourceQuota {
            metadata: ObjectMeta::default(),
            spec: Some(ResourceQuotaSpec {
                hard: Some(hard.iter().map(|k| (k.to_string(), q("100"))).collect()),
                scopes: (!scopes.is_empty())
                    .then(|| scopes.iter().map(|s| s.to_string()).collect()),
                ..ResourceQuotaSpec::default()
            }),
            status: None,
        }
    }

    fn used(quota: &ResourceQuota, objects: &Objects) -> BTreeMap<String, String> {
        desired_status(quota, objects, Utc::now())
            .used
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()
    }

    #[test]
    fn pods_charge_compute_resources_unless_terminal() {
        let objects = Objects {
            pods: vec![
                pod(
                    vec![container(
                        &[("cpu", "250m"), ("memory", "64Mi")],
                        &[("cpu", "1")],
                    )],
                    "Running",
                    None,
                ),
                pod(
                    vec![container(&[("cpu", "250m"), ("memory", "64Mi")], &[])],
                    "Pending",
                    None,
                ),
                pod(vec![container(&[("cpu", "4")], &[])], "Succeeded", None),
                pod(vec![container(&[], &[])], "Running", Some(30)),
            ],
            ..Objects::default()
        };
        let rq = quota(
            &[
                "pods",
                "cpu",
                "requests.cpu",
                "requests.memory",
                "memory",
                "limits.cpu",
                "limits.memory",
            ],
            &[],
        );
        let got = used(&rq, &objects);
        assert_eq!(got["pods"], "3");
        assert_eq!(got["cpu"], "500m");
        assert_eq!(got["requests.cpu"], "500m");
        assert_eq!(got["requests.memory"], "128Mi");
        assert_eq!(got["memory"], "128Mi");
        assert_eq!(got["limits.cpu"], "1");
        assert_eq!(got["limits.memory"], "0");
    }

    #[test]
    fn scopes_select_pods() {
        let objects = Objects {
            pods: vec![
                pod(vec![container(&[("cpu", "1")], &[])], "Running", None),
                pod(vec![container(&[], &[])], "Running", None),
                pod(vec![container(&[], &[])], "Running", Some(60)),
            ],
            ..Objects::default()
        };
        let cases = [
            ("BestEffort", "2"),
            ("NotBestEffort", "1"),
            ("Terminating", "1"),
            ("NotTerminating", "2"),
        ];
        for (scope, want) in cases {
            assert_eq!(
                used(&quota(&["pods"], &[scope]), &objects)["pods"],
                want,
                "{scope}"
            );
        }
        let mut by_class = quota(&["pods"], &[]);
        by_class.spec.as_mut().expect("spec").scope_selector = Some(ScopeSelector {
            match_expressions: Some(vec![ScopedResourceSelectorRequirement {
                scope_name: "PriorityClass".into(),
                operator: "In".into(),
                values: Some(vec!["high".into()]),
            }]),
        });
        assert_eq!(used(&by_class, &objects)["pods"], "0");
    }

    #[test]
    fn object_counts_and_service_kinds() {
        let svc = |t: &str, ports: usize| {
            Arc::new(Service {
                spec: Some(ServiceSpec {
                    type_: Some(t.into()),
                    ports: Some(vec![ServicePort::default(); ports]),
                    ..ServiceSpec::default()
                }),
                ..Service::default()
            })
        };
        let objects = Objects {
            services: vec![
                svc("ClusterIP", 1),
                svc("NodePort", 2),
                svc("LoadBalancer", 1),
            ],
            counts: BTreeMap::from([("count/configmaps", 4), ("count/secrets", 1)]),
            ..Objects::default()
        };
        let mut rq = quota(
            &[
                "services",
                "services.nodeports",
                "services.loadbalancers",
                "configmaps",
                "count/configmaps",
                "count/secrets",
                "count/widgets.example.com",
            ],
            &[],
        );
        rq.status = Some(ResourceQuotaStatus {
            used: Some(BTreeMap::from([(
                "count/widgets.example.com".into(),
                q("7"),
            )])),
            ..ResourceQuotaStatus::default()
        });
        let got = used(&rq, &objects);
        assert_eq!(got["services"], "3");
        assert_eq!(got["services.nodeports"], "3");
        assert_eq!(got["services.loadbalancers"], "1");
        assert_eq!(got["configmaps"], "4");
        assert_eq!(got["count/configmaps"], "4");
        assert_eq!(got["count/secrets"], "1");
        // Unknown resources keep their last observed usage.
        assert_eq!(got["count/widgets.example.com"], "7");
        assert!(same_list(
            Some(&BTreeMap::from([("a".into(), q("1000m"))])),
            Some(&BTreeMap::from([("a".into(), q("1"))]))
        ));
    }
}
