//! DefaultBinder: binds through `POST pods/<name>/binding`.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use crate::framework::{BindPlugin, Plugin, Status};

/// The plugin's name.
pub const NAME: &str = "DefaultBinder";

/// The Bind plugin.
pub struct DefaultBinder {
    client: Option<kube::Client>,
}

impl DefaultBinder {
    /// A binder using `client`; without one every bind fails (unit tests).
    pub fn new(client: Option<kube::Client>) -> Self {
        Self { client }
    }
}

/// The Binding object for `pod` on `node`.
pub fn binding(pod: &Pod, node: &str) -> Binding {
    Binding {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    }
}

impl Plugin for DefaultBinder {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        Some(self)
    }
}

impl BindPlugin for DefaultBinder {
    fn bind<'a>(&'a self, pod: &'a Pod, node: &'a str) -> BoxFuture<'a, Status> {
        Box::pin(async move {
            let Some(client) = self.client.as_ref() else {
                return Status::error("no apiserver client");
            };
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            let body = match serde_json::to_vec(&binding(pod, node)) {
                Ok(b) => b,
                Err(e) => return Status::error(format!("encode binding: {e}")),
            };
            match api
                .create_subresource::<serde_json::Value>(
                    "binding",
                    name,
                    &PostParams::default(),
                    body,
                )
                .await
            {
                Ok(_) => Status::success(),
                Err(e) => Status::error(format!("binding rejected: {e}")),
            }
        })
    }
}
