//! What a CRD serves: one [`CustomResource`] per served version, and the strategy of its objects.

use serde_json::{json, Value};

use super::names::{name_is_dns_subdomain, validate_object_meta};
use crate::error::FieldError;
use crate::registry::Strategy;
use crate::resources::{ResourceInfo, Subresource, ALL_VERBS};
use crate::scale::{nested_int, nested_string, ScalePaths};

/// One served version of a custom resource and what its handlers need beyond routing.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomResource {
    pub info: ResourceInfo,
    /// This version's `openAPIV3Schema`, for validation and pruning.
    pub schema: Option<Value>,
    /// This version's `additionalPrinterColumns`, as written in the CRD.
    pub printer_columns: Vec<Value>,
    pub scale: Option<ScalePaths>,
    /// The version objects are stored in, whichever version they are served at.
    pub storage_version: String,
    /// `selectableFields[*].jsonPath`, usable in field selectors besides the metadata ones.
    pub selectable_fields: Vec<String>,
}

fn strs(v: &Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// The resources a CRD serves, one per served version.
///
/// Every CRD that has the names and versions routing needs is served, except one being
/// deleted: this server sets `Established` in the same write that creates a CRD, so the
/// condition adds nothing, while a terminating CRD must stop taking new objects. The names
/// served are `status.acceptedNames` (as upstream serves them) when they are filled in,
/// else `spec.names`.
pub fn served_resources(crd: &Value) -> Vec<CustomResource> {
    if crd
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        return Vec::new();
    }
    let null = Value::Null;
    let spec = crd.get("spec").unwrap_or(&null);
    let accepted = crd.pointer("/status/acceptedNames").unwrap_or(&null);
    let names = if str_of(accepted, "plural").is_empty() || str_of(accepted, "kind").is_empty() {
        spec.get("names").unwrap_or(&null)
    } else {
        accepted
    };
    let group = str_of(spec, "group");
    let plural = str_of(names, "plural");
    let kind = str_of(names, "kind");
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let Some(storage) = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .map(|v| str_of(v, "name"))
    else {
        return Vec::new();
    };
    if group.is_empty() || plural.is_empty() || kind.is_empty() || storage.is_empty() {
        return Vec::new();
    }
    let singular = match str_of(names, "singular") {
        "" => kind.to_lowercase(),
        s => s.to_string(),
    };
    let list_kind = match str_of(names, "listKind") {
        "" => format!("{kind}List"),
        s => s.to_string(),
    };
    let verbs = |vs: &[&str]| vs.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        .filter(|v| !str_of(v, "name").is_empty())
        .map(|v| {
            let version = str_of(v, "name");
            let status = v
                .pointer("/subresources/status")
                .is_some_and(|s| !s.is_null());
            let scale = v
                .pointer("/subresources/scale")
                .filter(|s| !s.is_null())
                .and_then(ScalePaths::from_crd);
            let mut subresources = Vec::new();
            if status {
                subresources.push(Subresource {
                    name: "status".into(),
                    kind: kind.into(),
                    group: group.into(),
                    version: version.into(),
                    verbs: verbs(&["get", "patch", "update"]),
                });
            }
            if scale.is_some() {
                subresources.push(Subresource {
                    name: "scale".into(),
                    kind: "Scale".into(),
                    group: "autoscaling".into(),
                    version: "v1".into(),
                    verbs: verbs(&["get", "patch", "update"]),
                });
            }
            CustomResource {
                info: ResourceInfo {
                    group: group.into(),
                    version: version.into(),
                    resource: plural.into(),
                    singular: singular.clone(),
                    kind: kind.into(),
                    list_kind: list_kind.clone(),
                    namespaced: str_of(spec, "scope") != "Cluster",
                    short_names: strs(names, "shortNames"),
                    categories: strs(names, "categories"),
                    verbs: verbs(ALL_VERBS),
                    subresources,
                    storage_prefix: format!("/registry/{group}/{plural}"),
                    custom: true,
                },
                schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                printer_columns: v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                scale,
                storage_version: storage.into(),
                selectable_fields: v
                    .get("selectableFields")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect(),
            }
        })
        .collect()
}

/// Custom objects of one served version: type and object metadata, and the replica counts
/// the scale subresource reads. Schema validation and pruning are the caller's
/// (`openapi::validate`), as they need the schema walker.
#[derive(Debug, Clone)]
pub struct CustomResourceStrategy {
    group: String,
    version: String,
    kind: String,
    namespaced: bool,
    status: bool,
    scale: Option<ScalePaths>,
}

impl CustomResourceStrategy {
    pub fn new(cr: CustomResource) -> Self {
        let status = cr.info.has_status();
        Self {
            group: cr.info.group,
            version: cr.info.version,
            kind: cr.info.kind,
            namespaced: cr.info.namespaced,
            status,
            scale: cr.scale,
        }
    }

    /// `ValidateTypeMeta`: a body must name this resource's kind and version.
    fn validate_type_meta(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let kind = str_of(obj, "kind");
        if kind != self.kind {
            errs.push(FieldError::invalid(
                "kind",
                json!(kind),
                format!("must be {}", self.kind),
            ));
        }
        let api_version = str_of(obj, "apiVersion");
        let want = format!("{}/{}", self.group, self.version);
        if api_version != want {
            errs.push(FieldError::invalid(
                "apiVersion",
                json!(api_version),
                format!("must be {want}"),
            ));
        }
        errs
    }

    /// `ValidateScaleSpec`/`ValidateScaleStatus`: the replica counts must be int32s so the
    /// scale subresource can read them, and the selector a string.
    fn validate_scale(&self, obj: &Value, spec: bool) -> Vec<FieldError> {
        let Some(p) = &self.scale else {
            return Vec::new();
        };
        let mut errs = Vec::new();
        let mut count = |path: &str| {
            let err = match nested_int(obj, path) {
                Ok(None) => return,
                Err(e) => FieldError::invalid(path, json!(0), e),
                Ok(Some(n)) if n < 0 => {
                    FieldError::invalid(path, json!(n), "should be a non-negative integer")
                }
                Ok(Some(n)) if n > i64::from(i32::MAX) => FieldError::invalid(
                    path,
                    json!(n),
                    format!("should be less than or equal to {}", i32::MAX),
                ),
                Ok(Some(_)) => return,
            };
            errs.push(err);
        };
        if spec {
            count(&p.spec_replicas);
        }
        count(&p.status_replicas);
        if let Some(path) = &p.label_selector {
            if let Err(e) = nested_string(obj, path) {
                errs.push(FieldError::invalid(path.as_str(), json!(""), e));
            }
        }
        errs
    }
}

/// Without a status subresource, `status` is ordinary content; with one, the main
/// resource may not write it.
fn keep_old_status(new: &mut Value, old: &Value) {
    let Some(map) = new.as_object_mut() else {
        return;
    };
    match old.get("status") {
        Some(s) => {
            map.insert("status".into(), s.clone());
        }
        None => {
            map.remove("status");
        }
    }
}

impl Strategy for CustomResourceStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if self.status {
            if let Some(map) = obj.as_object_mut() {
                map.remove("status");
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let errs = self.validate_type_meta(obj);
        if !errs.is_empty() {
            return errs;
        }
        let mut errs = validate_object_meta(obj, self.namespaced, &name_is_dns_subdomain);
        errs.extend(self.validate_scale(obj, true));
        errs
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if self.status {
            keep_old_status(new, old);
        }
    }

    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        let errs = self.validate_type_meta(new);
        if !errs.is_empty() {
            return errs;
        }
        // Names are fixed by the URL on update, so only the namespace rule is left to check.
        let mut errs = validate_object_meta(new, self.namespaced, &|_, _| Vec::new());
        errs.extend(self.validate_scale(new, true));
        errs
    }

    fn allow_unconditional_update(&self) -> bool {
        false
    }

    /// Upstream bumps `generation` on any change outside `metadata` (and `status`, when it
    /// is a subresource), not only under `spec`.
    fn tracks_generation(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList",
                          "shortNames": ["wd"], "categories": ["all"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                         "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
                     "additionalPrinterColumns": [{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}],
                     "selectableFields": [{"jsonPath": ".spec.color"}]},
                    {"name": "v0", "served": false, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}}
                ]
            }
        })
    }

    #[test]
    fn each_served_version_becomes_a_resource() {
        let served = served_resources(&crd());
        let versions: Vec<&str> = served.iter().map(|r| r.info.version.as_str()).collect();
        assert_eq!(versions, vec!["v1beta1", "v1"]);
        for r in &served {
            assert_eq!(r.storage_version, "v1");
            assert_eq!(r.info.storage_prefix, "/registry/example.com/widgets");
            assert_eq!(r.info.verbs.len(), 8);
            assert!(r.info.custom && r.info.namespaced);
            assert_eq!(r.info.short_names, vec!["wd".to_string()]);
            assert_eq!(r.info.categories, vec!["all".to_string()]);
            assert_eq!(r.info.list_kind, "WidgetList");
        }
        assert!(served[0].info.subresources.is_empty());
        assert!(served[0].scale.is_none());
    }

    #[test]
    fn status_and_scale_subresources_follow_the_version() {
        let served = served_resources(&crd());
        let v1 = &served[1];
        let status = v1.info.subresource("status").expect("status");
        assert_eq!(
            (
                status.kind.as_str(),
                status.group.as_str(),
                status.version.as_str()
            ),
            ("Widget", "example.com", "v1")
        );
        let scale = v1.info.subresource("scale").expect("scale");
        assert_eq!(
            (
                scale.kind.as_str(),
                scale.group.as_str(),
                scale.version.as_str()
            ),
            ("Scale", "autoscaling", "v1")
        );
        assert_eq!(scale.verbs, vec!["get", "patch", "update"]);
        assert_eq!(
            v1.scale,
            Some(ScalePaths {
                spec_replicas: ".spec.replicas".into(),
                status_replicas: ".status.replicas".into(),
                label_selector: Some(".status.selector".into()),
            })
        );
        assert_eq!(v1.printer_columns.len(), 1);
        assert_eq!(v1.selectable_fields, vec![".spec.color".to_string()]);
        assert!(v1.schema.is_some());
    }

    #[test]
    fn a_terminating_crd_serves_nothing() {
        let mut c = crd();
        object::set_meta(&mut c, "deletionTimestamp", json!("2024-01-01T00:00:00Z"));
        assert!(served_resources(&c).is_empty());
    }

    #[test]
    fn cluster_scoped_crds_serve_cluster_scoped_resources() {
        let mut c = crd();
        c["spec"]["scope"] = json!("Cluster");
        assert!(served_resources(&c).iter().all(|r| !r.info.namespaced));
    }

    fn strategy() -> CustomResourceStrategy {
        CustomResourceStrategy::new(served_resources(&crd())[1].clone())
    }

    #[test]
    fn custom_objects_must_name_their_kind_and_version() {
        let obj = json!({"apiVersion": "example.com/v2", "kind": "Gadget", "metadata": {"name": "a", "namespace": "ns"}});
        let msgs: Vec<String> = strategy()
            .validate(&obj)
            .iter()
            .map(FieldError::message)
            .collect();
        assert_eq!(
            msgs,
            vec![
                "kind: Invalid value: \"Gadget\": must be Widget".to_string(),
                "apiVersion: Invalid value: \"example.com/v2\": must be example.com/v1".to_string(),
            ]
        );
    }

    #[test]
    fn custom_objects_need_a_dns_name_and_sane_replicas() {
        let obj = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                         "metadata": {"name": "Bad_Name", "namespace": "ns"}, "spec": {"replicas": -1}});
        let fields: Vec<String> = strategy()
            .validate(&obj)
            .iter()
            .map(|e| e.field.clone())
            .collect();
        assert_eq!(fields, vec!["metadata.name", ".spec.replicas"]);
        let ok = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                        "metadata": {"name": "w", "namespace": "ns"}, "spec": {"replicas": 2}});
        assert!(strategy().validate(&ok).is_empty());
        assert!(strategy().tracks_generation());
        // A namespaced custom resource without a namespace is refused, as the registry's
        // generic custom-resource strategy (folded into this one) checked.
        let no_ns =
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        assert_eq!(strategy().validate(&no_ns)[0].field, "metadata.namespace");
    }

    #[test]
    fn the_main_resource_cannot_write_status_when_it_is_a_subresource() {
        let s = strategy();
        let mut new = json!({"spec": {"replicas": 1}, "status": {"replicas": 9}});
        s.prepare_for_create(&mut new);
        assert!(new.get("status").is_none());
        let old = json!({"spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut new = json!({"spec": {"replicas": 2}, "status": {"replicas": 9}});
        s.prepare_for_update(&mut new, &old);
        assert_eq!(new["status"], json!({"replicas": 1}));
        assert_eq!(new["spec"], json!({"replicas": 2}));
    }
}
