//! OpenAPI schemas of the served kinds, the /openapi/v2 and /openapi/v3 documents, and schema-driven validation.

mod builtin;
mod documents;
mod extensions;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use serde_json::{json, Map, Value};

use crate::typed::{ListType, SchemaNode};

pub use documents::{document_hash, group_version_path, v3_root_with_hashes};

/// Prefix of `$ref`s in the stored definitions (OpenAPI 3 style).
pub(crate) const REF_PREFIX: &str = "#/components/schemas/";
/// Prefix of `$ref`s in swagger 2.0 documents.
pub(crate) const V2_REF_PREFIX: &str = "#/definitions/";

pub(crate) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub(crate) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// Every definition of the built-in kinds, keyed by upstream's definition names
/// (`io.k8s.api.apps.v1.Deployment`), and the (group, version, kind) index into them.
#[derive(Clone, Default)]
pub struct Schemas {
    defs: BTreeMap<String, Value>,
    gvk: HashMap<String, String>,
    fingerprint: OnceLock<String>,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schemas")
            .field("definitions", &self.defs.len())
            .field("kinds", &self.gvk.len())
            .finish()
    }
}

fn gvk_key(group: &str, version: &str, kind: &str) -> String {
    format!("{group}/{version}/{kind}")
}

/// The definition name upstream gives a custom resource: the group reversed, then version and
/// kind (`com.example.v1.Widget` for `example.com/v1` `Widget`).
pub fn custom_definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// The `$ref` value pointing at definition `name`.
pub(crate) fn reference(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

/// `{"allOf":[{"$ref":...}], "description": ...}`, how OpenAPI 3 attaches a description to a reference.
pub(crate) fn described_reference(name: &str, description: &str) -> Value {
    json!({ "allOf": [reference(name)], "description": description })
}

pub(crate) fn gvk_extension(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "version": version, "kind": kind })
}

/// The definition name a `$ref` points at, in either document style.
pub(crate) fn ref_target(r: &str) -> Option<&str> {
    r.strip_prefix(REF_PREFIX)
        .or_else(|| r.strip_prefix(V2_REF_PREFIX))
}

impl Schemas {
    /// The schemas of every built-in kind, generated from the k8s-openapi types.
    pub fn builtin() -> Schemas {
        builtin::generate()
    }

    pub(crate) fn from_parts(
        defs: BTreeMap<String, Value>,
        gvk: HashMap<String, String>,
    ) -> Schemas {
        Schemas {
            defs,
            gvk,
            fingerprint: OnceLock::new(),
        }
    }

    /// A definition by name.
    pub fn definition(&self, name: &str) -> Option<&Value> {
        self.defs.get(name)
    }

    /// All definitions, by name.
    pub fn definitions(&self) -> &BTreeMap<String, Value> {
        &self.defs
    }

    /// The definition name of a kind, if it is built in.
    pub fn definition_name(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        self.gvk
            .get(&gvk_key(group, version, kind))
            .map(String::as_str)
    }

    /// The schema tree of a built-in kind.
    pub fn node(self: &Arc<Self>, group: &str, version: &str, kind: &str) -> Option<Node> {
        let name = self.definition_name(group, version, kind)?;
        let loc = Loc {
            root: Root::Def(Arc::from(name)),
            pointer: Arc::from(""),
        };
        Some(Node {
            schemas: Arc::clone(self),
            site: loc.clone(),
            target: loc,
        })
    }

    /// The schema tree of a custom resource whose CRD declares `schema` (its openAPIV3Schema),
    /// wrapped as [`Schemas::custom_definition`] does so `metadata` resolves to ObjectMeta.
    pub fn custom_node(
        self: &Arc<Self>,
        group: &str,
        version: &str,
        kind: &str,
        schema: &Value,
    ) -> Node {
        let root = Root::Owned(Arc::new(custom_definition(group, version, kind, schema)));
        let loc = Loc {
            root,
            pointer: Arc::from(""),
        };
        Node {
            schemas: Arc::clone(self),
            site: loc.clone(),
            target: loc,
        }
    }

    /// A custom resource's schema as served in OpenAPI documents; see [`custom_definition`].
    pub fn custom_definition(group: &str, version: &str, kind: &str, schema: &Value) -> Value {
        custom_definition(group, version, kind, schema)
    }

    /// A digest of every definition, computed on first use; it changes whenever the schemas do.
    pub(crate) fn fingerprint(&self) -> &str {
        self.fingerprint.get_or_init(|| {
            let bytes = serde_json::to_vec(&self.defs).unwrap_or_default();
            documents::hex_digest(&bytes)
        })
    }
}

/// Wraps a CRD's openAPIV3Schema the way upstream publishes it: `apiVersion`, `kind` and
/// `metadata` (ObjectMeta) added and the group-version-kind extension set.
fn custom_definition(group: &str, version: &str, kind: &str, schema: &Value) -> Value {
    let mut def = match schema {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    def.entry("type").or_insert_with(|| json!("object"));
    let props = def
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if !props.is_object() {
        *props = Value::Object(Map::new());
    }
    if let Some(props) = props.as_object_mut() {
        props.insert(
            "apiVersion".into(),
            json!({"type": "string", "description": builtin::API_VERSION_DOC}),
        );
        props.insert(
            "kind".into(),
            json!({"type": "string", "description": builtin::KIND_DOC}),
        );
        props.insert(
            "metadata".into(),
            described_reference(OBJECT_META, builtin::METADATA_DOC),
        );
    }
    def.insert(
        "x-kubernetes-group-version-kind".into(),
        json!([gvk_extension(group, version, kind)]),
    );
    Value::Object(def)
}

/// The `<Kind>List` definition for a kind stored under `item`.
pub(crate) fn list_definition(group: &str, version: &str, kind: &str, item: &str) -> Value {
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": builtin::API_VERSION_DOC},
            "items": {
                "type": "array",
                "description": format!("List of {kind} objects."),
                "items": reference(item),
            },
            "kind": {"type": "string", "description": builtin::KIND_DOC},
            "metadata": described_reference(LIST_META, builtin::LIST_METADATA_DOC),
        },
        "x-kubernetes-group-version-kind": [gvk_extension(group, version, &format!("{kind}List"))],
    })
}

#[derive(Debug, Clone)]
enum Root {
    /// A definition of the shared [`Schemas`].
    Def(Arc<str>),
    /// A schema owned by this tree (a custom resource's).
    Owned(Arc<Value>),
}

/// A position in a schema: a root and a JSON pointer into it.
#[derive(Debug, Clone)]
struct Loc {
    root: Root,
    pointer: Arc<str>,
}

/// A position in the schema tree of one kind. `site` is the schema as written where it was
/// reached (a property or `items`), which is where upstream puts the patch and list
/// extensions; `target` is what it resolves to through `$ref` and single-ref `allOf`.
#[derive(Clone)]
pub struct Node {
    schemas: Arc<Schemas>,
    site: Loc,
    target: Loc,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |loc: &Loc| match &loc.root {
            Root::Def(name) => format!("{name}#{}", loc.pointer),
            Root::Owned(_) => format!("<custom>#{}", loc.pointer),
        };
        f.debug_struct("Node")
            .field("site", &at(&self.site))
            .field("target", &at(&self.target))
            .finish()
    }
}

fn escape_pointer(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains(['~', '/']) {
        name.replace('~', "~0").replace('/', "~1").into()
    } else {
        name.into()
    }
}

/// `Value::pointer` without its per-segment allocations: schema walks (pruning, unknown-field
/// checks, managedFields) resolve pointers on every step of every write, and unescaping only
/// allocates for the rare segment that holds `~`.
fn resolve_pointer<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        return Some(root);
    }
    let rest = pointer.strip_prefix('/')?;
    rest.split('/').try_fold(root, |target, token| {
        let token: std::borrow::Cow<'_, str> = if token.contains('~') {
            token.replace("~1", "/").replace("~0", "~").into()
        } else {
            token.into()
        };
        match target {
            Value::Object(map) => map.get(&*token),
            Value::Array(list) => {
                let index = token.parse::<usize>().ok()?;
                if token.len() > 1 && token.starts_with('0') {
                    return None;
                }
                list.get(index)
            }
            _ => None,
        }
    })
}

/// The single `$ref` a schema stands for, if it is a reference or an `allOf` wrapping one.
pub(crate) fn single_ref(schema: &Value) -> Option<&str> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return ref_target(r);
    }
    match schema.get("allOf").and_then(Value::as_array) {
        Some(all) if all.len() == 1 => all[0]
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(ref_target),
        _ => None,
    }
}

impl Node {
    fn value_at<'a>(&'a self, loc: &'a Loc) -> Option<&'a Value> {
        let root = match &loc.root {
            Root::Def(name) => self.schemas.defs.get(&**name)?,
            Root::Owned(v) => v,
        };
        resolve_pointer(root, &loc.pointer)
    }

    /// The resolved schema at this position.
    pub fn schema(&self) -> &Value {
        static EMPTY: Value = Value::Null;
        self.value_at(&self.target).unwrap_or(&EMPTY)
    }

    /// The schema as written where this position was reached (before resolving references).
    pub fn site_schema(&self) -> &Value {
        static EMPTY: Value = Value::Null;
        self.value_at(&self.site).unwrap_or(&EMPTY)
    }

    /// The definition name the resolved schema is, if it is a whole definition.
    pub fn definition_name(&self) -> Option<&str> {
        match (&self.target.root, self.target.pointer.is_empty()) {
            (Root::Def(name), true) => Some(name),
            _ => None,
        }
    }

    /// Moves to a child at `pointer` relative to the current target, resolving references.
    fn child(&self, suffix: &str) -> Option<Node> {
        let site = Loc {
            root: self.target.root.clone(),
            pointer: Arc::from([&*self.target.pointer, suffix].concat()),
        };
        let written = self.value_at(&site)?;
        if !written.is_object() {
            return None;
        }
        let target = match single_ref(written) {
            Some(name) if self.schemas.defs.contains_key(name) => Loc {
                root: Root::Def(Arc::from(name)),
                pointer: Arc::from(""),
            },
            _ => site.clone(),
        };
        Some(Node {
            schemas: Arc::clone(&self.schemas),
            site,
            target,
        })
    }

    /// The declared properties of an object schema.
    pub fn properties(&self) -> Option<&Map<String, Value>> {
        self.schema().get("properties").and_then(Value::as_object)
    }

    /// The property `name`, only if declared (no fallback to map values).
    pub fn property(&self, name: &str) -> Option<Node> {
        self.properties()?.get(name)?;
        let mut suffix = String::with_capacity(12 + name.len());
        suffix.push_str("/properties/");
        suffix.push_str(&escape_pointer(name));
        self.child(&suffix)
    }

    /// The schema of list items.
    pub fn list_items(&self) -> Option<Node> {
        self.child("/items")
    }

    /// The schema of a map's values (`additionalProperties` as a schema).
    pub fn map_values(&self) -> Option<Node> {
        self.child("/additionalProperties")
    }

    /// An extension, looked up where the position was reached first, then on its definition.
    pub fn extension(&self, name: &str) -> Option<&Value> {
        self.site_schema()
            .get(name)
            .or_else(|| self.schema().get(name))
    }

    fn extension_str(&self, name: &str) -> Option<String> {
        self.extension(name)
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// The resolved `type`, if declared.
    pub fn type_name(&self) -> Option<&str> {
        self.schema().get("type").and_then(Value::as_str)
    }

    /// The resolved `format`, if declared.
    pub fn format(&self) -> Option<&str> {
        self.schema().get("format").and_then(Value::as_str)
    }
}

impl SchemaNode for Node {
    fn field(&self, name: &str) -> Option<Self> {
        self.property(name).or_else(|| {
            // Map values stand in for any key, so callers can walk into `labels` or `data`.
            if self.properties().is_none() {
                self.map_values()
            } else {
                None
            }
        })
    }

    fn items(&self) -> Option<Self> {
        self.list_items().or_else(|| self.map_values())
    }

    fn list_type(&self) -> Option<ListType> {
        match self.extension("x-kubernetes-list-type")?.as_str()? {
            "atomic" => Some(ListType::Atomic),
            "set" => Some(ListType::Set),
            "map" => {
                let keys = self
                    .extension("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                Some(ListType::Map(keys))
            }
            _ => None,
        }
    }

    fn patch_merge_key(&self) -> Option<String> {
        self.extension_str("x-kubernetes-patch-merge-key")
    }

    fn patch_strategies(&self) -> Vec<String> {
        self.extension_str("x-kubernetes-patch-strategy")
            .map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn map_type(&self) -> Option<String> {
        self.extension_str("x-kubernetes-map-type")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas() -> Arc<Schemas> {
        static S: OnceLock<Arc<Schemas>> = OnceLock::new();
        Arc::clone(S.get_or_init(|| Arc::new(Schemas::builtin())))
    }

    #[test]
    fn pod_spec_containers_merge_by_name() {
        let s = schemas();
        let pod = s.node("", "v1", "Pod").expect("pod");
        let containers = pod
            .field("spec")
            .and_then(|n| n.field("containers"))
            .expect("containers");
        assert_eq!(containers.patch_merge_key().as_deref(), Some("name"));
        assert_eq!(containers.patch_strategies(), vec!["merge".to_string()]);
        assert_eq!(
            containers.list_type(),
            Some(ListType::Map(vec!["name".into()]))
        );
        let image = containers
            .items()
            .and_then(|c| c.field("image"))
            .expect("image");
        assert_eq!(image.type_name(), Some("string"));
    }

    #[test]
    fn container_ports_are_keyed_by_port_and_protocol() {
        let s = schemas();
        let ports = s
            .node("apps", "v1", "Deployment")
            .and_then(|d| d.field("spec"))
            .and_then(|n| n.field("template"))
            .and_then(|n| n.field("spec"))
            .and_then(|n| n.field("containers"))
            .and_then(|n| n.items())
            .and_then(|n| n.field("ports"))
            .expect("ports");
        assert_eq!(ports.patch_merge_key().as_deref(), Some("containerPort"));
        assert_eq!(
            ports.list_type(),
            Some(ListType::Map(vec![
                "containerPort".into(),
                "protocol".into()
            ]))
        );
    }

    #[test]
    fn deployment_strategy_retains_keys_and_selector_is_atomic() {
        let s = schemas();
        let spec = s
            .node("apps", "v1", "Deployment")
            .and_then(|d| d.field("spec"))
            .expect("spec");
        let strategy = spec.field("strategy").expect("strategy");
        assert_eq!(strategy.patch_strategies(), vec!["retainKeys".to_string()]);
        assert!(strategy.field("rollingUpdate").is_some());
        assert_eq!(
            spec.field("selector").and_then(|n| n.map_type()).as_deref(),
            Some("atomic")
        );
    }

    #[test]
    fn metadata_finalizers_are_a_merged_set_and_labels_are_a_map() {
        let s = schemas();
        let meta = s
            .node("", "v1", "ConfigMap")
            .and_then(|n| n.field("metadata"))
            .expect("meta");
        let fin = meta.field("finalizers").expect("finalizers");
        assert_eq!(fin.list_type(), Some(ListType::Set));
        assert_eq!(fin.patch_strategies(), vec!["merge".to_string()]);
        let owners = meta.field("ownerReferences").expect("ownerReferences");
        assert_eq!(owners.patch_merge_key().as_deref(), Some("uid"));
        let label_value = meta
            .field("labels")
            .and_then(|n| n.field("app"))
            .expect("label value");
        assert_eq!(label_value.type_name(), Some("string"));
    }

    #[test]
    fn tolerations_and_taints_are_atomic_lists() {
        let s = schemas();
        let pod_spec = s
            .node("", "v1", "Pod")
            .and_then(|n| n.field("spec"))
            .expect("spec");
        assert_eq!(
            pod_spec.field("tolerations").and_then(|n| n.list_type()),
            Some(ListType::Atomic)
        );
        let node_spec = s
            .node("", "v1", "Node")
            .and_then(|n| n.field("spec"))
            .expect("spec");
        assert_eq!(
            node_spec.field("taints").and_then(|n| n.list_type()),
            Some(ListType::Atomic)
        );
        let addresses = s
            .node("", "v1", "Node")
            .and_then(|n| n.field("status"))
            .and_then(|n| n.field("addresses"))
            .expect("addresses");
        assert_eq!(addresses.patch_merge_key().as_deref(), Some("type"));
    }

    #[test]
    fn every_builtin_resource_kind_has_a_schema_with_gvk() {
        let s = schemas();
        for r in crate::resources::builtin() {
            let name = s
                .definition_name(&r.group, &r.version, &r.kind)
                .unwrap_or_else(|| panic!("no schema for {}", r.kind));
            let def = s.definition(name).expect("definition");
            assert_eq!(def["x-kubernetes-group-version-kind"][0]["kind"], r.kind);
            for p in ["apiVersion", "kind", "metadata"] {
                assert!(def["properties"].get(p).is_some(), "{} lacks {p}", r.kind);
            }
            if r.verbs.iter().any(|v| v == "list") {
                assert!(s
                    .definition_name(&r.group, &r.version, &r.list_kind)
                    .is_some());
            }
            for sub in &r.subresources {
                if matches!(
                    sub.name.as_str(),
                    "status" | "scale" | "binding" | "eviction"
                ) {
                    assert!(s
                        .definition_name(&sub.group, &sub.version, &sub.kind)
                        .is_some());
                }
            }
        }
    }

    #[test]
    fn custom_nodes_resolve_metadata_to_object_meta() {
        let s = schemas();
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}});
        let node = s.custom_node("example.com", "v1", "Widget", &schema);
        assert!(node
            .field("metadata")
            .and_then(|m| m.field("finalizers"))
            .is_some());
        assert_eq!(
            node.field("spec")
                .and_then(|n| n.field("size"))
                .and_then(|n| n.type_name().map(str::to_string))
                .as_deref(),
            Some("integer")
        );
        assert_eq!(
            custom_definition_name("example.com", "v1", "Widget"),
            "com.example.v1.Widget"
        );
    }

    #[test]
    fn builtin_generation_is_fast_enough_for_startup() {
        let start = std::time::Instant::now();
        let s = Schemas::builtin();
        let took = start.elapsed();
        eprintln!(
            "Schemas::builtin() took {took:?} for {} definitions",
            s.definitions().len()
        );
        assert!(took < std::time::Duration::from_secs(5));
    }
}
