//! Per-resource behaviour: defaulting, validation and update rules, one [`Strategy`] per
//! resource with upstream's hook names. The generic store (`crate::storage`) owns the call
//! order: default -> prepare -> validate -> canonicalize -> write with a resourceVersion guard.

use serde_json::Value;

use crate::error::FieldError;

/// The hooks upstream's `rest.RESTCreateStrategy`/`RESTUpdateStrategy` carry, for one resource.
/// `validate*` cannot mutate; `default`/`prepare_*` can.
pub trait Strategy: Send + Sync {
    /// Fill defaults (pod restartPolicy, deployment strategy, ...) into a create or update body.
    fn default(&self, _obj: &mut Value) {}
    /// Last changes before a create is validated (clear status, ...).
    fn prepare_for_create(&self, _obj: &mut Value) {}
    /// Everything wrong with a new object, metadata included.
    fn validate(&self, obj: &Value) -> Vec<FieldError>;
    /// Normalize an object before it is stored.
    fn canonicalize(&self, _obj: &mut Value) {}
    /// Carry over what an update may not change (status on the main resource is handled by
    /// the generic store).
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}
    /// Everything wrong with an update: immutable fields and the new object itself.
    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }
    /// PUT of a missing object creates it.
    fn allow_create_on_update(&self) -> bool {
        false
    }
    /// An update without resourceVersion is accepted (last write wins).
    fn allow_unconditional_update(&self) -> bool {
        true
    }
    /// `metadata.generation` is 1 on create and bumped on every spec change.
    fn tracks_generation(&self) -> bool {
        false
    }
}
