//! Generates the built-in definitions from the k8s-openapi types and adds what upstream's Go tags add.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::{
    admissionregistration::v1 as admissionregistration, apps::v1 as apps,
    authentication::v1 as authentication, authorization::v1 as authorization,
    autoscaling::v1 as autoscaling, autoscaling::v2 as autoscaling2, batch::v1 as batch,
    certificates::v1 as certificates, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, events::v1 as events, flowcontrol::v1 as flowcontrol,
    networking::v1 as networking, node::v1 as node, policy::v1 as policy, rbac::v1 as rbac,
    scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use k8s_openapi::{ListableResource, Resource};
use schemars::r#gen::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use super::{extensions, gvk_extension, gvk_key, list_definition, Schemas, OBJECT_META};

pub(crate) const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers convert recognized schemas to the latest internal value and may reject unrecognized values.";
pub(crate) const KIND_DOC: &str = "Kind is a string value naming the REST resource this object represents, in CamelCase. Servers may infer it from the endpoint the client submits requests to. Cannot be updated.";
pub(crate) const METADATA_DOC: &str = "Standard object's metadata.";
pub(crate) const LIST_METADATA_DOC: &str = "Standard list metadata.";

const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";

struct Builder {
    r#gen: SchemaGenerator,
    gvk: HashMap<String, String>,
    /// (group, version, list kind, list definition name, item definition name)
    lists: Vec<(String, String, String, String, String)>,
}

impl Builder {
    fn kind<T: Resource + JsonSchema>(&mut self) -> &mut Self {
        self.r#gen.subschema_for::<T>();
        self.gvk
            .insert(gvk_key(T::GROUP, T::VERSION, T::KIND), T::schema_name());
        self
    }

    fn listable<T: ListableResource + JsonSchema>(&mut self) -> &mut Self {
        self.kind::<T>();
        let item = T::schema_name();
        // Upstream names list definitions after the item's package: `io.k8s.api.apps.v1.DeploymentList`.
        let package = item.strip_suffix(T::KIND).unwrap_or(&item);
        let list = format!("{package}{}", T::LIST_KIND);
        self.gvk
            .insert(gvk_key(T::GROUP, T::VERSION, T::LIST_KIND), list.clone());
        self.lists.push((
            T::GROUP.into(),
            T::VERSION.into(),
            T::KIND.into(),
            list,
            item,
        ));
        self
    }

    fn plain<T: JsonSchema>(&mut self) -> &mut Self {
        self.r#gen.subschema_for::<T>();
        self
    }
}

/// Builds the definitions; called once at startup.
pub(super) fn generate() -> Schemas {
    let mut b = Builder {
        r#gen: SchemaSettings::openapi3().into_generator(),
        gvk: HashMap::new(),
        lists: Vec::new(),
    };
    b.kind::<core::Binding>()
        .listable::<core::ComponentStatus>()
        .listable::<core::ConfigMap>()
        .listable::<core::Endpoints>()
        .listable::<core::Event>()
        .listable::<core::LimitRange>()
        .listable::<core::Namespace>()
        .listable::<core::Node>()
        .listable::<core::PersistentVolumeClaim>()
        .listable::<core::PersistentVolume>()
        .listable::<core::Pod>()
        .listable::<core::PodTemplate>()
        .listable::<core::ReplicationController>()
        .listable::<core::ResourceQuota>()
        .listable::<core::Secret>()
        .listable::<core::ServiceAccount>()
        .listable::<core::Service>()
        .listable::<apps::ControllerRevision>()
        .listable::<apps::DaemonSet>()
        .listable::<apps::Deployment>()
        .listable::<apps::ReplicaSet>()
        .listable::<apps::StatefulSet>()
        .listable::<batch::CronJob>()
        .listable::<batch::Job>()
        .listable::<coordination::Lease>()
        .listable::<discovery::EndpointSlice>()
        .listable::<events::Event>()
        .listable::<policy::PodDisruptionBudget>()
        .kind::<policy::Eviction>()
        .listable::<scheduling::PriorityClass>()
        .listable::<apiextensions::CustomResourceDefinition>()
        .kind::<autoscaling::Scale>()
        .listable::<autoscaling::HorizontalPodAutoscaler>()
        .listable::<autoscaling2::HorizontalPodAutoscaler>()
        .kind::<authentication::TokenRequest>()
        .kind::<authentication::TokenReview>()
        .kind::<authentication::SelfSubjectReview>()
        .kind::<authorization::SubjectAccessReview>()
        .kind::<authorization::SelfSubjectAccessReview>()
        .kind::<authorization::LocalSubjectAccessReview>()
        .kind::<authorization::SelfSubjectRulesReview>()
        .listable::<rbac::Role>()
        .listable::<rbac::RoleBinding>()
        .listable::<rbac::ClusterRole>()
        .listable::<rbac::ClusterRoleBinding>()
        .listable::<networking::NetworkPolicy>()
        .listable::<networking::Ingress>()
        .listable::<networking::IngressClass>()
        .listable::<storage::StorageClass>()
        .listable::<storage::CSIDriver>()
        .listable::<storage::CSINode>()
        .listable::<storage::VolumeAttachment>()
        .listable::<storage::CSIStorageCapacity>()
        .listable::<certificates::CertificateSigningRequest>()
        .listable::<admissionregistration::ValidatingWebhookConfiguration>()
        .listable::<admissionregistration::MutatingWebhookConfiguration>()
        .listable::<admissionregistration::ValidatingAdmissionPolicy>()
        .listable::<admissionregistration::ValidatingAdmissionPolicyBinding>()
        .listable::<node::RuntimeClass>()
        .listable::<flowcontrol::FlowSchema>()
        .listable::<flowcontrol::PriorityLevelConfiguration>()
        .listable::<apiregistration::APIService>()
        .kind::<meta::Status>()
        .kind::<meta::APIResourceList>()
        .kind::<meta::APIGroupList>()
        .kind::<meta::APIGroup>()
        .kind::<meta::APIVersions>()
        .plain::<meta::DeleteOptions>()
        .plain::<meta::WatchEvent<()>>()
        .plain::<meta::Patch>()
        .plain::<meta::ListMeta>();

    let generated = b.r#gen.take_definitions();
    let mut defs: BTreeMap<String, Value> = BTreeMap::new();
    for (name, schema) in generated {
        let mut value = serde_json::to_value(&schema).unwrap_or(Value::Null);
        wrap_ref_siblings(&mut value);
        defs.insert(name, value);
    }
    for (group, version, kind, list, item) in &b.lists {
        defs.insert(list.clone(), list_definition(group, version, kind, item));
    }
    extensions::apply(&mut defs);
    for (key, name) in &b.gvk {
        let mut parts = key.splitn(3, '/');
        let (Some(group), Some(version), Some(kind)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if let Some(def) = defs.get_mut(name) {
            mark_kind(def, group, version, kind);
        }
    }
    // Option and event kinds are shared by every group version, as upstream lists them.
    let mut versions: Vec<(String, String)> = b
        .gvk
        .keys()
        .filter_map(|k| {
            let mut p = k.splitn(3, '/');
            Some((p.next()?.to_string(), p.next()?.to_string()))
        })
        .collect();
    versions.sort();
    versions.dedup();
    for (name, kind) in [
        (DELETE_OPTIONS, "DeleteOptions"),
        (WATCH_EVENT, "WatchEvent"),
    ] {
        if let Some(def) = defs.get_mut(name).and_then(Value::as_object_mut) {
            let list: Vec<Value> = versions
                .iter()
                .map(|(g, v)| gvk_extension(g, v, kind))
                .collect();
            def.insert("x-kubernetes-group-version-kind".into(), Value::Array(list));
        }
    }
    Schemas::from_parts(defs, b.gvk)
}

/// Adds the group-version-kind extension and the type-meta properties every kind carries.
fn mark_kind(def: &mut Value, group: &str, version: &str, kind: &str) {
    let Some(obj) = def.as_object_mut() else {
        return;
    };
    obj.insert(
        "x-kubernetes-group-version-kind".into(),
        json!([gvk_extension(group, version, kind)]),
    );
    let props = obj
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(props) = props.as_object_mut() {
        props
            .entry("apiVersion")
            .or_insert_with(|| json!({"type": "string", "description": API_VERSION_DOC}));
        props
            .entry("kind")
            .or_insert_with(|| json!({"type": "string", "description": KIND_DOC}));
        props
            .entry("metadata")
            .or_insert_with(|| super::described_reference(OBJECT_META, METADATA_DOC));
    }
}

/// OpenAPI 3.0 ignores siblings of `$ref`, so a described reference becomes a one-element
/// `allOf` (as upstream's v3 documents write it).
pub(crate) fn wrap_ref_siblings(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.len() > 1 {
                if let Some(r) = m.remove("$ref") {
                    m.insert("allOf".into(), json!([{ "$ref": r }]));
                }
            }
            for (key, child) in m.iter_mut() {
                // Keys of `properties` are field names (JSONSchemaProps has one named `$ref`),
                // not keywords: only their values are schemas.
                match (key.as_str(), child) {
                    ("properties" | "patternProperties", Value::Object(fields)) => {
                        fields.values_mut().for_each(wrap_ref_siblings)
                    }
                    (_, child) => wrap_ref_siblings(child),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(wrap_ref_siblings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn described_references_become_single_allof() {
        let mut v = json!({"properties": {"spec": {"$ref": "#/components/schemas/X", "description": "d"}, "bare": {"$ref": "#/components/schemas/Y"}}});
        wrap_ref_siblings(&mut v);
        assert_eq!(
            v["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/X"
        );
        assert_eq!(v["properties"]["bare"]["$ref"], "#/components/schemas/Y");
        let mut props = json!({"properties": {"$ref": {"type": "string"}, "x": {"$ref": "#/components/schemas/Y"}}});
        wrap_ref_siblings(&mut props);
        assert_eq!(props["properties"]["$ref"], json!({"type": "string"}));
    }
}
