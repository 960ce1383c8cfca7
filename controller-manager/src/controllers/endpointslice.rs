//! endpointslice: keeps EndpointSlices (at most 100 endpoints each, grouped by resolved ports)
//! listing the pods selected by each Service, with ready/serving/terminating conditions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use super::util::{controller_ref, is_ready, is_terminal, map_selector_matches};
use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

/// Most endpoints in one slice (upstream's --max-endpoints-per-slice default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Label naming the Service of a slice.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the slice's manager.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's manager value.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
}

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let services = ctx.informers.get::<Service>();
    let pods = ctx.informers.get::<Pod>();
    let slices = ctx.informers.get::<EndpointSlice>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
        pods: pods.store(),
        slices: slices.store(),
    });
    let svc_store = services.store();
    let controller = Controller::for_shared_stream(services.subscribe(), services.store())
        .owns_shared_stream(slices.subscribe())
        .watches_shared_stream(pods.subscribe(), move |pod: Arc<Pod>| {
            services_for(&svc_store, &pod)
        })
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(ctx.config.concurrency.endpointslice));
    Ok(drain(
        "endpointslice",
        controller.run(reconcile, error_policy, state),
    )
    .boxed())
}

/// The Services in the pod's namespace whose selector matches it.
pub fn services_for(services: &Store<Service>, pod: &Pod) -> Vec<ObjectRef<Service>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    services
        .state()
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|sp| sp.selector.as_ref())
                .is_some_and(|sel| map_selector_matches(sel, pod.metadata.labels.as_ref()))
        })
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// The pods a Service selects (with an IP, not terminal).
pub fn selected_pods(pods: &Store<Pod>, svc: &Service) -> Vec<Arc<Pod>> {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.clone()) else {
        return Vec::new();
    };
    let mut out: Vec<Arc<Pod>> = pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| map_selector_matches(&selector, p.metadata.labels.as_ref()))
        .filter(|p| !is_terminal(p))
        .filter(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some())
        .collect();
    out.sort_by_key(|p| p.metadata.name.clone());
    out
}

/// The Service's ports as resolved for `pod` (named targetPorts looked up in its containers);
/// `None` when a named port is missing.
pub fn resolved_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let mut out = Vec::new();
    for port in svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
    {
        let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
        let number = match &port.target_port {
            None => Some(port.port),
            Some(IntOrString::Int(n)) => Some(*n),
            Some(IntOrString::String(name)) => pod.spec.as_ref().and_then(|s| {
                s.containers
                    .iter()
                    .flat_map(|c| c.ports.iter().flatten())
                    .find_map(|cp| {
                        (cp.name.as_deref() == Some(name.as_str())
                            && cp.protocol.as_deref().unwrap_or("TCP") == protocol)
                            .then_some(cp.container_port)
                    })
            }),
        };
        if let Some(number) = number {
            out.push(EndpointPort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(protocol),
                app_protocol: port.app_protocol.clone(),
            });
        }
    }
    out
}

fn endpoint(pod: &Pod) -> Endpoint {
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = is_ready(pod);
    let ips: Vec<String> = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ips.as_ref())
        .map(|ips| ips.iter().map(|i| i.ip.clone()).collect())
        .filter(|v: &Vec<String>| !v.is_empty())
        .or_else(|| {
            pod.status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .map(|i| vec![i])
        })
        .unwrap_or_default();
    Endpoint {
        addresses: ips.into_iter().take(1).collect(),
        conditions: Some(EndpointConditions {
            ready: Some(ready && !terminating),
            serving: Some(ready),
            terminating: Some(terminating),
        }),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Endpoint::default()
    }
}

/// Groups endpoints by port set and chunks them into slices of at most `max`.
pub fn desired_slices(
    svc: &Service,
    pods: &[Arc<Pod>],
    max: usize,
) -> Vec<(Vec<EndpointPort>, Vec<Endpoint>)> {
    let mut groups: BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    for pod in pods {
        let ports = resolved_ports(svc, pod);
        let key = serde_json::to_string(&ports).unwrap_or_default();
        groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(endpoint(pod));
    }
    let mut out = Vec::new();
    for (_, (ports, endpoints)) in groups {
        for chunk in endpoints.chunks(max.max(1)) {
            out.push((ports.clone(), chunk.to_vec()));
        }
    }
    out
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(_) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Ok(Action::await_change());
    };
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = svc.name_any();
    let pods = selected_pods(&ctx.pods, &svc);
    let mut desired = desired_slices(&svc, &pods, MAX_ENDPOINTS_PER_SLICE);
    if desired.is_empty() {
        // Upstream keeps one empty slice carrying the ports.
        desired.push((Vec::new(), Vec::new()));
    }
    let mut existing: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .state()
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|s| s.labels().get(SERVICE_NAME_LABEL) == Some(&name))
        .filter(|s| s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY))
        .collect();
    existing.sort_by_key(|s| s.metadata.name.clone());
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let family = if pods.iter().any(|p| {
        p.status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .is_some_and(|ip| ip.contains(':'))
    }) {
        "IPv6"
    } else {
        "IPv4"
    };
    let mut used = vec![false; existing.len()];
    for (ports, endpoints) in desired {
        let pos = existing
            .iter()
            .enumerate()
            .position(|(i, s)| !used[i] && s.ports.clone().unwrap_or_default() == ports);
        let mut labels = svc.labels().clone();
        labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        match pos {
            Some(i) => {
                used[i] = true;
                let current = &existing[i];
                if current.endpoints == endpoints && current.labels() == &labels {
                    continue;
                }
                let mut updated = (**current).clone();
                updated.endpoints = endpoints;
                updated.metadata.labels = Some(labels);
                match api
                    .replace(&updated.name_any(), &PostParams::default(), &updated)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_status(&e, 404) || is_status(&e, 409) => {
                        return Ok(crate::controllers::requeue_after(Duration::from_millis(
                            500,
                        )));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => {
                let slice = EndpointSlice {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{name}-")),
                        namespace: Some(ns.clone()),
                        labels: Some(labels),
                        owner_references: controller_ref(svc.as_ref()).map(|r| vec![r]),
                        ..ObjectMeta::default()
                    },
                    address_type: family.into(),
                    endpoints,
                    ports: Some(ports),
                };
                api.create(&PostParams::default(), &slice).await?;
            }
        }
    }
    for (i, slice) in existing.iter().enumerate() {
        if !used[i] {
            match api
                .delete(&slice.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(crate::controllers::requeue_after(Duration::from_secs(300)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodStatus, ServicePort, ServiceSpec};

    fn pod(i: usize) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(format!("p{i}")),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                pod_ip: Some(format!("10.0.{}.{}", i / 250, i % 250)),
                ..PodStatus::default()
            }),
        })
    }

    #[test]
    fn slices_hold_at_most_one_hundred_endpoints() {
        let svc = Service {
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::Int(8080)),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        let pods: Vec<_> = (0..250).map(pod).collect();
        let slices = desired_slices(&svc, &pods, MAX_ENDPOINTS_PER_SLICE);
        let sizes: Vec<_> = slices.iter().map(|(_, e)| e.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(slices[0].0[0].port, Some(8080));
        let ep = &slices[0].1[0];
        assert_eq!(ep.conditions.as_ref().and_then(|c| c.ready), Some(false));
    }
}
