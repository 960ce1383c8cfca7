//! endpoints: keeps the legacy Endpoints object of each Service with a selector (ready pods in
//! `addresses`, the others in `notReadyAddresses`; terminating pods left out).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use super::endpointslice::{resolved_ports, selected_pods, services_for};
use super::util::is_ready;
use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
}

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let services = ctx.informers.get::<Service>();
    let pods = ctx.informers.get::<Pod>();
    let endpoints = ctx.informers.get::<Endpoints>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
        pods: pods.store(),
        endpoints: endpoints.store(),
    });
    let svc_store = services.store();
    let controller = Controller::for_shared_stream(services.subscribe(), services.store())
        .watches_shared_stream(endpoints.subscribe(), |ep: Arc<Endpoints>| {
            Some(ObjectRef::<Service>::new(&ep.name_any()).within(&ep.namespace()?))
        })
        .watches_shared_stream(pods.subscribe(), move |pod: Arc<Pod>| {
            services_for(&svc_store, &pod)
        })
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(ctx.config.concurrency.endpoints));
    Ok(drain("endpoints", controller.run(reconcile, error_policy, state)).boxed())
}

/// The subsets for `pods`, grouped by resolved port set.
pub fn subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let publish_not_ready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let mut groups: BTreeMap<String, EndpointSubset> = BTreeMap::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() && !publish_not_ready {
            continue;
        }
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        let ports: Vec<EndpointPort> = resolved_ports(svc, pod)
            .into_iter()
            .map(|p| EndpointPort {
                name: p.name.filter(|n| !n.is_empty()),
                port: p.port.unwrap_or(0),
                protocol: p.protocol,
                app_protocol: p.app_protocol,
            })
            .collect();
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let subset = groups.entry(key).or_insert_with(|| EndpointSubset {
            ports: (!ports.is_empty()).then_some(ports),
            ..EndpointSubset::default()
        });
        let address = EndpointAddress {
            ip,
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
            hostname: None,
        };
        if is_ready(pod) || publish_not_ready {
            subset.addresses.get_or_insert_with(Vec::new).push(address);
        } else {
            subset
                .not_ready_addresses
                .get_or_insert_with(Vec::new)
                .push(address);
        }
    }
    groups.into_values().collect()
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_none()
        || svc.metadata.deletion_timestamp.is_some()
    {
        return Ok(Action::await_change());
    }
    let ns = svc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = svc.name_any();
    let pods = selected_pods(&ctx.pods, &svc);
    let subsets = subsets(&svc, &pods);
    let subsets = (!subsets.is_empty()).then_some(subsets);
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let mut labels = svc.labels().clone();
    labels.insert(
        "endpointslice.kubernetes.io/skip-mirror".into(),
        "true".into(),
    );
    match ctx.endpoints.get(&ObjectRef::new(&name).within(&ns)) {
        Some(current) => {
            if current.subsets == subsets && current.labels() == &labels {
                return Ok(Action::requeue(Duration::from_secs(300)));
            }
            let mut updated = (*current).clone();
            updated.subsets = subsets;
            updated.metadata.labels = Some(labels);
            match api.replace(&name, &PostParams::default(), &updated).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 409) || is_status(&e, 404) => {
                    return Ok(Action::requeue(Duration::from_millis(500)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        None => {
            let ep = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                subsets,
            };
            match api.create(&PostParams::default(), &ep).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 409) => {
                    return Ok(Action::requeue(Duration::from_millis(500)))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}
