//! StorageObjectInUseProtection: new PersistentVolumeClaims get the `kubernetes.io/pvc-protection`
//! finalizer and new PersistentVolumes `kubernetes.io/pv-protection`, so the controller
//! manager's protection controllers can hold their deletion while a pod or a claim uses them.

use serde_json::{json, Value};

use super::{Attributes, Operation, Plugin};
use crate::error::ApiError;

/// The claim finalizer.
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// The volume finalizer.
pub const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";

/// Upstream `StorageObjectInUseProtection`.
pub struct StorageObjectInUseProtection;

impl Plugin for StorageObjectInUseProtection {
    fn name(&self) -> &'static str {
        "StorageObjectInUseProtection"
    }

    fn admit(&self, attrs: &mut Attributes<'_>) -> Result<(), ApiError> {
        if attrs.operation != Operation::Create || !attrs.subresource.is_empty() {
            return Ok(());
        }
        let finalizer = if attrs.is("", "persistentvolumeclaims") {
            PVC_PROTECTION_FINALIZER
        } else if attrs.is("", "persistentvolumes") {
            PV_PROTECTION_FINALIZER
        } else {
            return Ok(());
        };
        if let Some(obj) = attrs.object.as_deref_mut() {
            add_finalizer(obj, finalizer);
        }
        Ok(())
    }
}

/// Appends `finalizer` to the object's finalizers unless it is there.
fn add_finalizer(obj: &mut Value, finalizer: &str) {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    let list = &mut obj["metadata"]["finalizers"];
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(items) = list.as_array_mut() {
        if !items.iter().any(|f| f == finalizer) {
            items.push(json!(finalizer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finalizer_is_added_once() {
        let mut pvc = json!({"metadata": {"name": "data"}});
        add_finalizer(&mut pvc, PVC_PROTECTION_FINALIZER);
        add_finalizer(&mut pvc, PVC_PROTECTION_FINALIZER);
        assert_eq!(
            pvc["metadata"]["finalizers"],
            json!(["kubernetes.io/pvc-protection"])
        );
        let mut pv = json!({"metadata": {"finalizers": ["example.com/keep"]}});
        add_finalizer(&mut pv, PV_PROTECTION_FINALIZER);
        assert_eq!(
            pv["metadata"]["finalizers"],
            json!(["example.com/keep", "kubernetes.io/pv-protection"])
        );
    }
}
