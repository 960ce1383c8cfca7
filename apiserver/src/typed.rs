//! What patching and field management need to know about a position in an object's schema:
//! which lists merge by key, which are sets or atomic, and the patch strategies of a field.

/// How a list merges (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole.
    Atomic,
    /// Scalars merged as a set.
    Set,
    /// Items identified by the values of these keys.
    Map(Vec<String>),
}

/// A node of a schema tree; implemented by the OpenAPI schemas (`crate::openapi`) and by
/// simple in-memory trees in tests.
pub trait SchemaNode: Clone {
    /// The schema of property `name` of an object.
    fn field(&self, name: &str) -> Option<Self>;
    /// The schema of list items, or of map values (`additionalProperties`).
    fn items(&self) -> Option<Self>;
    /// The declared list type, if any.
    fn list_type(&self) -> Option<ListType>;
    /// `x-kubernetes-patch-merge-key`.
    fn patch_merge_key(&self) -> Option<String>;
    /// `x-kubernetes-patch-strategy` split on commas: `merge`, `retainKeys`, `replace`.
    fn patch_strategies(&self) -> Vec<String>;
    /// `x-kubernetes-map-type` (`atomic` or `granular`).
    fn map_type(&self) -> Option<String>;
}

/// A schema that knows nothing: every list is atomic for SMP purposes, every object granular.
#[derive(Debug, Clone, Copy, Default)]
pub struct Untyped;

impl SchemaNode for Untyped {
    fn field(&self, _name: &str) -> Option<Self> {
        Some(Untyped)
    }
    fn items(&self) -> Option<Self> {
        Some(Untyped)
    }
    fn list_type(&self) -> Option<ListType> {
        None
    }
    fn patch_merge_key(&self) -> Option<String> {
        None
    }
    fn patch_strategies(&self) -> Vec<String> {
        Vec::new()
    }
    fn map_type(&self) -> Option<String> {
        None
    }
}
