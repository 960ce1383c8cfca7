//! serviceaccount: makes sure every active namespace has the `default` ServiceAccount.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

/// The accounts every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNTS: &[&str] = &["default"];

struct Ctx {
    client: kube::Client,
    accounts: Store<ServiceAccount>,
}

/// Builds the controller (see [`crate::registry::Constructor`]).
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let namespaces = ctx.informers.get::<Namespace>();
    let accounts = ctx.informers.get::<ServiceAccount>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
        accounts: accounts.store(),
    });
    let controller = Controller::for_shared_stream(namespaces.subscribe(), namespaces.store())
        .watches_shared_stream(accounts.subscribe(), |sa: Arc<ServiceAccount>| {
            let ns = sa.namespace()?;
            DEFAULT_SERVICE_ACCOUNTS
                .contains(&sa.name_any().as_str())
                .then(|| ObjectRef::new(&ns))
        })
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(ctx.config.concurrency.serviceaccount));
    Ok(drain(
        "serviceaccount",
        controller.run(reconcile, error_policy, state),
    )
    .boxed())
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = ns.name_any();
    let active = ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating");
    if !active {
        return Ok(Action::await_change());
    }
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    for account in DEFAULT_SERVICE_ACCOUNTS {
        if ctx
            .accounts
            .get(&ObjectRef::new(account).within(&name))
            .is_some()
        {
            continue;
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some((*account).to_owned()),
                namespace: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => tracing::info!(namespace = %name, account, "created service account"),
            // Already there (cache lag), or the namespace is going away.
            Err(e) if is_status(&e, 409) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(crate::controllers::requeue_after(Duration::from_secs(300)))
}
