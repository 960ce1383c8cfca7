//! namespace: empties a terminating namespace (every namespaced resource of every served group,
//! custom resources included) and then removes the `kubernetes` finalizer.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::controller::{Action, Controller};
use kube::ResourceExt;

use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

/// The finalizer this controller owns (`spec.finalizers`).
pub const FINALIZER: &str = "kubernetes";

struct Ctx {
    client: kube::Client,
}

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let namespaces = ctx.informers.get::<Namespace>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
    });
    let controller = Controller::for_shared_stream(namespaces.subscribe(), namespaces.store())
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(ctx.config.concurrency.namespace));
    Ok(drain("namespace", controller.run(reconcile, error_policy, state)).boxed())
}

fn has_finalizer(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() || !has_finalizer(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let remaining = delete_all_content(&ctx.client, &name).await?;
    if remaining > 0 {
        tracing::info!(namespace = %name, remaining, "waiting for namespace content to be deleted");
        return Ok(crate::controllers::requeue_after(Duration::from_secs(2)));
    }
    finalize(&ctx.client, &ns).await?;
    tracing::info!(namespace = %name, "namespace finalized");
    Ok(Action::await_change())
}

/// Deletes every namespaced object in `ns`; returns how many still exist afterwards (those being
/// deleted gracefully or held by finalizers).
async fn delete_all_content(client: &kube::Client, ns: &str) -> Result<usize, Error> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(Error::Discovery)?;
    let mut remaining = 0;
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || !caps.supports_operation(verbs::DELETE)
            {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
            let background = DeleteParams::background();
            if caps.supports_operation(verbs::DELETE_COLLECTION) {
                match api
                    .delete_collection(&background, &ListParams::default())
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_status(&e, 404) || is_status(&e, 405) => {}
                    Err(e) => {
                        tracing::warn!(namespace = %ns, resource = %resource.plural, error = %e, "deletecollection failed");
                    }
                }
            }
            let left = match api.list(&ListParams::default()).await {
                Ok(list) => list.items,
                Err(e) if is_status(&e, 404) || is_status(&e, 405) => continue,
                Err(e) => return Err(e.into()),
            };
            for obj in &left {
                if obj.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                match api.delete(&obj.name_any(), &background).await {
                    Ok(_) => {}
                    Err(e) if is_status(&e, 404) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            remaining += left.len();
        }
    }
    Ok(remaining)
}

/// Removes our finalizer through the `finalize` subresource.
async fn finalize(client: &kube::Client, ns: &Namespace) -> Result<(), Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut updated = ns.clone();
    if let Some(spec) = updated.spec.as_mut() {
        if let Some(finalizers) = spec.finalizers.as_mut() {
            finalizers.retain(|f| f != FINALIZER);
        }
    }
    updated.metadata.managed_fields = None;
    let body = serde_json::to_vec(&updated)?;
    match api
        .replace_subresource("finalize", &ns.name_any(), &PostParams::default(), body)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceSpec;

    #[test]
    fn only_namespaces_with_our_finalizer_are_handled() {
        let mut ns = Namespace::default();
        assert!(!has_finalizer(&ns));
        ns.spec = Some(NamespaceSpec {
            finalizers: Some(vec!["kubernetes".into()]),
        });
        assert!(has_finalizer(&ns));
    }
}
