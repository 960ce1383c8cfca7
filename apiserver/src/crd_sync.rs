//! Serves what CustomResourceDefinitions declare: follows the CRD cache and keeps the
//! catalog's custom resources in step with it.

use std::sync::Arc;

use serde_json::Value;

use crate::catalog::Entry;
use crate::server::ApiServer;
use crate::storage::cacher::{EventType, Notice};

async fn sync(api: &ApiServer, crd: &Value, deleted: bool) {
    let group = crd["spec"]["group"].as_str().unwrap_or("");
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or("");
    api.catalog.remove_custom(group, plural);
    if deleted || crd["metadata"].get("deletionTimestamp").is_some() {
        return;
    }
    for cr in crate::crd::served_resources(crd) {
        let cacher = match api.cacher_for(&cr.info).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(group, plural, error = %e, "watch cache for a custom resource");
                continue;
            }
        };
        let cr = Arc::new(cr);
        api.catalog.add(Entry {
            info: Arc::new(cr.info.clone()),
            strategy: Arc::new(crate::crd::CustomResourceStrategy::new((*cr).clone())),
            cacher,
            custom: Some(cr),
        });
    }
}

/// Runs until shutdown.
pub async fn run(api: Arc<ApiServer>) {
    let Some(entry) = api
        .catalog
        .find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    else {
        return;
    };
    loop {
        let Ok(mut sub) = entry
            .cacher
            .subscribe(None, "/registry/customresourcedefinitions/")
        else {
            return;
        };
        for crd in std::mem::take(&mut sub.initial) {
            sync(&api, &crd, false).await;
        }
        loop {
            let notice = tokio::select! {
                _ = api.shutdown.wait() => return,
                n = sub.live.recv() => n,
            };
            match notice {
                Ok(Notice::Event(ev)) => {
                    sync(&api, &ev.object, ev.kind == EventType::Deleted).await;
                }
                Ok(Notice::Progress(_)) => {}
                // Missed events: start over from the current state.
                Err(_) => break,
            }
        }
    }
}
