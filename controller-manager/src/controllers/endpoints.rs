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
    let leftovers = delete_leftovers(
        ctx.client.clone(),
        services.clone(),
        endpoints.clone(),
        ctx.shutdown.clone(),
    );
    Ok(async move {
        tokio::join!(
            drain("endpoints", controller.run(reconcile, error_policy, state)),
            leftovers
        );
    }
    .boxed())
}

/// Annotation of Endpoints used as leader-election locks by old components: never deleted.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// Deletes the Endpoints of deleted Services (the reconciler only sees Services that exist),
/// and once at start the Endpoints left over from Services deleted while no controller ran.
async fn delete_leftovers(
    client: kube::Client,
    services: crate::informers::Informer<Service>,
    endpoints: crate::informers::Informer<Endpoints>,
    shutdown: component_base::Shutdown,
) {
    use futures::StreamExt;
    let svc_store = services.store();
    let ep_store = endpoints.store();
    let mut events = Box::pin(services.subscribe());
    while !(services.has_synced() && endpoints.has_synced()) {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    for ep in ep_store.state() {
        let orphaned = ep.namespace().is_some_and(|ns| {
            svc_store
                .get(&ObjectRef::new(&ep.name_any()).within(&ns))
                .is_none()
        });
        if orphaned && !ep.annotations().contains_key(LEADER_ANNOTATION) {
            delete_endpoints(&client, &ep).await;
        }
    }
    loop {
        let svc = tokio::select! {
            _ = shutdown.wait() => return,
            next = events.next() => match next {
                Some(svc) => svc,
                None => return,
            },
        };
        let Some(ns) = svc.namespace() else { continue };
        let key = ObjectRef::<Service>::new(&svc.name_any()).within(&ns);
        if svc_store.get(&key).is_some() {
            continue;
        }
        // A reconcile of the Service that was in flight when it went can still write its
        // Endpoints after this delete, so look again once such a write would have landed.
        let (client, svc_store, ep_store) = (client.clone(), svc_store.clone(), ep_store.clone());
        let ep_key = ObjectRef::<Endpoints>::new(&svc.name_any()).within(&ns);
        tokio::spawn(async move {
            for delay in RECHECKS {
                if svc_store.get(&key).is_some() {
                    return;
                }
                if let Some(ep) = ep_store.get(&ep_key) {
                    delete_endpoints(&client, &ep).await;
                }
                tokio::time::sleep(delay).await;
            }
        });
    }
}

/// Pauses between the looks at a deleted Service's Endpoints (the first look is at once).
const RECHECKS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(4),
    Duration::ZERO,
];

async fn delete_endpoints(client: &kube::Client, ep: &Endpoints) {
    let Some(ns) = ep.namespace() else { return };
    let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
    let params = kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: ep.uid(),
            resource_version: None,
        }),
        ..kube::api::DeleteParams::default()
    };
    match api.delete(&ep.name_any(), &params).await {
        Ok(_) => {
            tracing::info!(namespace = %ns, name = %ep.name_any(), "deleted endpoints of a deleted service")
        }
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
        Err(e) => {
            tracing::warn!(namespace = %ns, name = %ep.name_any(), error = %e, "failed to delete endpoints")
        }
    }
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
                return Ok(crate::controllers::requeue_after(Duration::from_secs(300)));
            }
            let mut updated = (*current).clone();
            updated.subsets = subsets;
            updated.metadata.labels = Some(labels);
            match api.replace(&name, &PostParams::default(), &updated).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 409) || is_status(&e, 404) => {
                    return Ok(crate::controllers::requeue_after(Duration::from_millis(
                        500,
                    )));
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
                    return Ok(crate::controllers::requeue_after(Duration::from_millis(
                        500,
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(crate::controllers::requeue_after(Duration::from_secs(300)))
}
