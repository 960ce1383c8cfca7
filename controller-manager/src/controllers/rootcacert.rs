//! root-ca-certificate-publisher: publishes the cluster CA as the `kube-root-ca.crt` ConfigMap in
//! every namespace.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

/// Name of the published ConfigMap.
pub const CONFIG_MAP_NAME: &str = "kube-root-ca.crt";
/// Key holding the PEM bundle.
pub const DATA_KEY: &str = "ca.crt";
const DESCRIPTION_KEY: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver \
when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other \
usage is guaranteed across distributions of Kubernetes clusters.";

struct Ctx {
    client: kube::Client,
    config_maps: Store<ConfigMap>,
    ca: String,
}

/// Builds the controller; without `--root-ca-file` it has nothing to publish and stays idle.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let Some(path) = ctx.config.root_ca_file.clone() else {
        tracing::warn!("no --root-ca-file; root-ca-certificate-publisher has nothing to publish");
        return Ok(futures::future::ready(()).boxed());
    };
    let ca =
        std::fs::read_to_string(&path).map_err(|source| crate::Error::Read { path, source })?;
    let namespaces = ctx.informers.get::<Namespace>();
    let config_maps = ctx.informers.get::<ConfigMap>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
        config_maps: config_maps.store(),
        ca,
    });
    let controller = Controller::for_shared_stream(namespaces.subscribe(), namespaces.store())
        .watches_shared_stream(config_maps.subscribe(), |cm: Arc<ConfigMap>| {
            let ns = cm.namespace()?;
            (cm.name_any() == CONFIG_MAP_NAME).then(|| ObjectRef::new(&ns))
        })
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(1));
    Ok(drain(
        "root-ca-certificate-publisher",
        controller.run(reconcile, error_policy, state),
    )
    .boxed())
}

fn desired(ns: &str, ca: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIG_MAP_NAME.to_owned()),
            namespace: Some(ns.to_owned()),
            annotations: Some(BTreeMap::from([(
                DESCRIPTION_KEY.to_owned(),
                DESCRIPTION.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(DATA_KEY.to_owned(), ca.to_owned())])),
        ..ConfigMap::default()
    }
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = ns.name_any();
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    match ctx
        .config_maps
        .get(&ObjectRef::new(CONFIG_MAP_NAME).within(&name))
    {
        None => match api
            .create(&PostParams::default(), &desired(&name, &ctx.ca))
            .await
        {
            Ok(_) => tracing::info!(namespace = %name, "published root ca configmap"),
            Err(e) if is_status(&e, 409) => {}
            Err(e) => return Err(e.into()),
        },
        Some(existing) => {
            let current = existing.data.as_ref().and_then(|d| d.get(DATA_KEY));
            let described = existing
                .annotations()
                .get(DESCRIPTION_KEY)
                .is_some_and(|d| d == DESCRIPTION);
            if current != Some(&ctx.ca) || !described {
                let mut updated = (*existing).clone();
                let want = desired(&name, &ctx.ca);
                updated.data = want.data;
                updated
                    .annotations_mut()
                    .insert(DESCRIPTION_KEY.to_owned(), DESCRIPTION.to_owned());
                api.replace(CONFIG_MAP_NAME, &PostParams::default(), &updated)
                    .await?;
            }
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_config_map_carries_the_bundle_and_description() {
        let cm = desired("team-a", "PEM");
        assert_eq!(cm.metadata.name.as_deref(), Some("kube-root-ca.crt"));
        assert_eq!(cm.data.expect("data")["ca.crt"], "PEM");
        assert!(
            cm.metadata.annotations.expect("annotations")[DESCRIPTION_KEY].contains("CA bundle")
        );
    }
}
