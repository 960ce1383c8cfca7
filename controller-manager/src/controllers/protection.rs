//! pvc-protection and pv-protection: hold the deletion of a PersistentVolumeClaim while a pod
//! uses it, and of a PersistentVolume while it is bound, through the finalizers the
//! StorageObjectInUseProtection admission plugin adds (and these controllers add to objects
//! that predate it).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::util::is_terminal;
use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

/// The claim finalizer.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The volume finalizer.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
}

/// The names of the claims `pod` mounts: `persistentVolumeClaim` volumes and generic ephemeral
/// volumes (whose claim is `<pod>-<volume>`).
pub fn claims_of(pod: &Pod) -> Vec<String> {
    let name = pod.name_any();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(c.claim_name.clone())
            } else {
                v.ephemeral.as_ref().map(|_| format!("{name}-{}", v.name))
            }
        })
        .collect()
}

/// Whether `pod` keeps `claim` (in its namespace) in use: it mounts it and has not terminated.
fn uses(pod: &Pod, namespace: &str, claim: &str) -> bool {
    pod.metadata.namespace.as_deref() == Some(namespace)
        && !is_terminal(pod)
        && claims_of(pod).iter().any(|c| c == claim)
}

/// Builds pvc-protection.
pub fn start_pvc(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let pods = ctx.informers.get::<Pod>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
        pods: pods.store(),
    });
    let controller = Controller::for_shared_stream(claims.subscribe(), claims.store())
        // A pod that stops or goes away may free its claims.
        .watches_shared_stream(pods.subscribe(), |pod: Arc<Pod>| {
            let ns = pod.namespace().unwrap_or_default();
            claims_of(&pod)
                .into_iter()
                .map(|c| ObjectRef::new(&c).within(&ns))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(1));
    Ok(drain(
        "pvc-protection",
        controller.run(reconcile_pvc, error_policy, state),
    )
    .boxed())
}

async fn reconcile_pvc(pvc: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = pvc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = pvc.name_any();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let has = pvc.finalizers().iter().any(|f| f == PVC_PROTECTION);
    if pvc.metadata.deletion_timestamp.is_none() {
        if !has {
            set_finalizer(&api, pvc.as_ref(), PVC_PROTECTION, true).await?;
        }
        return Ok(Action::await_change());
    }
    if !has {
        return Ok(Action::await_change());
    }
    // The cache may not have seen a pod created just now: ask the apiserver too, as upstream.
    let in_use = ctx.pods.state().iter().any(|p| uses(p, &ns, &name)) || {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        pods.list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|p| uses(p, &ns, &name))
    };
    if in_use {
        tracing::debug!(pvc = %format!("{ns}/{name}"), "claim in use; keeping its finalizer");
        return Ok(Action::await_change());
    }
    set_finalizer(&api, pvc.as_ref(), PVC_PROTECTION, false).await?;
    tracing::info!(pvc = %format!("{ns}/{name}"), "claim no longer used; finalizer removed");
    Ok(Action::await_change())
}

/// Builds pv-protection.
pub fn start_pv(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let volumes = ctx.informers.get::<PersistentVolume>();
    let state = Arc::new(ctx.client.clone());
    let controller = Controller::for_shared_stream(volumes.subscribe(), volumes.store())
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(1));
    Ok(drain(
        "pv-protection",
        controller.run(reconcile_pv, error_policy, state),
    )
    .boxed())
}

async fn reconcile_pv(
    pv: Arc<PersistentVolume>,
    client: Arc<kube::Client>,
) -> Result<Action, Error> {
    let api: Api<PersistentVolume> = Api::all(client.as_ref().clone());
    let has = pv.finalizers().iter().any(|f| f == PV_PROTECTION);
    if pv.metadata.deletion_timestamp.is_none() {
        if !has {
            set_finalizer(&api, pv.as_ref(), PV_PROTECTION, true).await?;
        }
        return Ok(Action::await_change());
    }
    // A bound volume is in use (upstream's rule); once released it may go.
    let bound = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    if has && !bound {
        set_finalizer(&api, pv.as_ref(), PV_PROTECTION, false).await?;
        tracing::info!(pv = %pv.name_any(), "volume no longer bound; finalizer removed");
    }
    Ok(Action::await_change())
}

/// Adds or removes `finalizer` with an update (the controllers' roles allow update, not patch);
/// a conflict or a vanished object is left to the next event.
async fn set_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str, add: bool) -> Result<(), Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut obj = obj.clone();
    let finalizers = obj.meta_mut().finalizers.get_or_insert_with(Vec::new);
    finalizers.retain(|f| f != finalizer);
    if add {
        finalizers.push(finalizer.to_owned());
    }
    let name = obj.meta().name.clone().unwrap_or_default();
    match api.replace(&name, &PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"containers": [{"name": "c"}], "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                {"name": "tmp", "emptyDir": {}},
            ]},
            "status": {"phase": phase},
        }))
        .expect("pod")
    }

    #[test]
    fn running_pods_use_their_claims_and_ephemeral_claims_terminated_ones_do_not() {
        let p = pod("Running");
        assert_eq!(claims_of(&p), ["data", "web-scratch"]);
        assert!(uses(&p, "ns", "data"));
        assert!(uses(&p, "ns", "web-scratch"));
        assert!(!uses(&p, "other", "data"));
        assert!(!uses(&p, "ns", "tmp"));
        assert!(!uses(&pod("Succeeded"), "ns", "data"));
    }
}
