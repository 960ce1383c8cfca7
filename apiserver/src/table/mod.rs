//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for, with upstream's columns.

mod cluster;
mod custom;
mod jsonpath;
mod pod;
mod workloads;

use serde_json::{json, Map, Value};

pub use custom::{custom_columns, custom_row};

use crate::object;
use crate::resources::ResourceInfo;
use crate::selector::LabelSelector;

/// One `TableColumnDefinition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: String,
    /// `name` marks the column holding the object name.
    pub format: String,
    pub description: String,
    /// 0 is always shown; 1 and above only with `-o wide`.
    pub priority: i32,
}

impl Column {
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// A column as the printers declare it, in static tables.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Def {
    name: &'static str,
    type_: &'static str,
    format: &'static str,
    priority: i32,
    description: &'static str,
}

impl Def {
    fn column(&self) -> Column {
        Column {
            name: self.name.into(),
            type_: self.type_.into(),
            format: self.format.into(),
            description: self.description.into(),
            priority: self.priority,
        }
    }
}

/// A column shown by default.
pub(crate) const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Def {
    Def {
        name,
        type_,
        format: "",
        priority: 0,
        description,
    }
}

/// A column shown only with `-o wide`.
pub(crate) const fn wide(
    name: &'static str,
    type_: &'static str,
    description: &'static str,
) -> Def {
    Def {
        name,
        type_,
        format: "",
        priority: 1,
        description,
    }
}

pub(crate) const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(crate) const CREATED_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
pub(crate) const CONTAINERS_DESC: &str = "Names of each container in the template.";
pub(crate) const IMAGES_DESC: &str = "Images referenced by each container in the template.";

/// The `Name` column every printer starts with.
pub(crate) const NAME: Def = Def {
    name: "Name",
    type_: "string",
    format: "name",
    priority: 0,
    description: NAME_DESC,
};
pub(crate) const AGE: Def = col("Age", "string", CREATED_DESC);

/// Turns one object into its cells.
pub(crate) type RowFn = fn(&Value) -> Vec<Value>;

/// Columns and cells of one resource's printer.
pub(crate) struct Printer {
    pub(crate) columns: &'static [Def],
    pub(crate) row: RowFn,
}

/// The upstream printer of a built-in resource; resources without one use the default
/// `Name`/`Created At` table, as upstream's default table convertor does.
fn printer(group: &str, resource: &str) -> Option<Printer> {
    pod::printer(group, resource)
        .or_else(|| workloads::printer(group, resource))
        .or_else(|| cluster::printer(group, resource))
}

const DEFAULT_COLUMNS: &[Def] = &[NAME, col("Created At", "date", CREATED_DESC)];

/// The columns `kubectl get` shows for a resource, wide ones included (priority 1). Custom
/// resources without a CRD at hand get the CRD default (`Name`, `Age`); use [`custom_columns`]
/// with the version's `additionalPrinterColumns` instead.
pub fn columns(info: &ResourceInfo) -> Vec<Column> {
    if info.custom {
        return custom_columns(&[]);
    }
    let defs = printer(&info.group, &info.resource).map_or(DEFAULT_COLUMNS, |p| p.columns);
    defs.iter().map(Def::column).collect()
}

/// The cells of one object, in [`columns`] order. Wide cells are always included: the server
/// prints wide and kubectl hides priority columns, as upstream's table convertor does.
pub fn row(info: &ResourceInfo, obj: &Value) -> Vec<Value> {
    if info.custom {
        return custom_row(&[], obj);
    }
    match printer(&info.group, &info.resource) {
        Some(p) => (p.row)(obj),
        None => vec![name(obj), json!(created_at(obj))],
    }
}

/// A `meta.k8s.io/v1` Table. Each row pairs its cells with the object to embed (the full
/// object, its [`partial_metadata`], or Null for `includeObject=None`).
pub fn table(
    columns: &[Column],
    rows: Vec<(Vec<Value>, Value)>,
    resource_version: &str,
    continue_token: Option<&str>,
    remaining: Option<i64>,
) -> Value {
    let mut meta = Map::new();
    if !resource_version.is_empty() {
        meta.insert("resourceVersion".into(), json!(resource_version));
    }
    if let Some(token) = continue_token.filter(|t| !t.is_empty()) {
        meta.insert("continue".into(), json!(token));
    }
    if let Some(n) = remaining {
        meta.insert("remainingItemCount".into(), json!(n));
    }
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(cells, object)| json!({"cells": cells, "object": object}))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns.iter().map(Column::to_json).collect::<Vec<_>>(),
        "rows": rows,
    })
}

/// The object of a row for `includeObject=Metadata`: its whole metadata as a
/// `PartialObjectMetadata`.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

// Cell helpers shared by the printers.

pub(crate) fn name(obj: &Value) -> Value {
    json!(object::name(obj))
}

/// `Age`: time since creation, `<unknown>` without a timestamp.
pub(crate) fn age(obj: &Value) -> Value {
    json!(since(object::meta_str(obj, "creationTimestamp")))
}

/// Time since a timestamp as kubectl prints it; absent or empty is `<unknown>`.
pub(crate) fn since(ts: Option<&str>) -> String {
    match ts {
        Some(ts) if !ts.is_empty() => object::human_age(ts),
        _ => "<unknown>".into(),
    }
}

/// `Created At` of the default table: the creation time in RFC 3339, UTC.
fn created_at(obj: &Value) -> String {
    object::meta_str(obj, "creationTimestamp")
        .and_then(object::parse_rfc3339)
        .map(|secs| {
            object::format_rfc3339(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64),
            )
        })
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

/// A duration as `duration.HumanDuration` prints it, including its answers for negatives.
pub(crate) fn human_duration(secs: i64) -> String {
    match secs {
        s if s < -1 => "<invalid>".into(),
        s if s < 0 => "0s".into(),
        s => object::human_duration(s),
    }
}

/// The string at a dotted path, or empty.
pub(crate) fn text(obj: &Value, path: &str) -> String {
    object::path_str(obj, path).unwrap_or_default()
}

/// The integer at a dotted path, or 0.
pub(crate) fn int(obj: &Value, path: &str) -> i64 {
    object::path(obj, path).and_then(Value::as_i64).unwrap_or(0)
}

/// The array at a dotted path, or empty.
pub(crate) fn list<'a>(obj: &'a Value, path: &str) -> &'a [Value] {
    object::path(obj, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// How many entries the map at a dotted path has.
pub(crate) fn map_len(obj: &Value, path: &str) -> i64 {
    object::path(obj, path)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len() as i64)
}

/// Container names and images of a pod spec, each comma separated.
pub(crate) fn container_cells(pod_spec: Option<&Value>) -> (Value, Value) {
    let containers = pod_spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let field = |f: &str| {
        containers
            .iter()
            .map(|c| c.get(f).and_then(Value::as_str).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(",")
    };
    (json!(field("name")), json!(field("image")))
}

/// A string map as `k=v,k2=v2` sorted by key, `<none>` when empty (`labels.FormatLabels`).
pub(crate) fn format_labels(map: Option<&Value>) -> String {
    let Some(map) = map.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let mut pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// A `metav1.LabelSelector` as `metav1.FormatLabelSelector` prints it.
pub(crate) fn format_label_selector(sel: Option<&Value>) -> String {
    match LabelSelector::from_json(sel.unwrap_or(&Value::Null)) {
        Ok(s) => {
            let s = s.to_string();
            if s.is_empty() {
                "<none>".into()
            } else {
                s
            }
        }
        Err(_) => "<error>".into(),
    }
}

/// An IntOrString (`1`, `"25%"`) as text.
pub(crate) fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtin;

    fn info(group: &str, resource: &str) -> ResourceInfo {
        builtin()
            .into_iter()
            .find(|r| r.group == group && r.resource == resource)
            .unwrap_or_else(|| panic!("{group}/{resource} is built in"))
    }

    #[test]
    fn every_builtin_row_has_one_cell_per_column() {
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2020-01-01T00:00:00Z"}});
        for r in builtin() {
            let cols = columns(&r);
            let cells = row(&r, &obj);
            assert_eq!(cols.len(), cells.len(), "{}/{}", r.group, r.resource);
            assert!(
                cols.iter().any(|c| c.format == "name"),
                "{} has a name column",
                r.resource
            );
        }
    }

    #[test]
    fn column_headers_match_upstream_printers() {
        let cases: &[(&str, &str, &str)] = &[
            ("", "pods", "Name Ready Status Restarts Age | IP Node Nominated Node Readiness Gates"),
            ("apps", "deployments", "Name Ready Up-to-date Available Age | Containers Images Selector"),
            ("apps", "replicasets", "Name Desired Current Ready Age | Containers Images Selector"),
            ("apps", "statefulsets", "Name Ready Age | Containers Images"),
            (
                "apps",
                "daemonsets",
                "Name Desired Current Ready Up-to-date Available Node Selector Age | Containers Images Selector",
            ),
            ("", "services", "Name Type Cluster-IP External-IP Port(s) Age | Selector"),
            (
                "",
                "nodes",
                "Name Status Roles Age Version | Internal-IP External-IP OS-Image Kernel-Version Container-Runtime",
            ),
            ("", "namespaces", "Name Status Age"),
            ("", "configmaps", "Name Data Age"),
            ("", "secrets", "Name Type Data Age"),
            ("", "serviceaccounts", "Name Secrets Age"),
            ("", "endpoints", "Name Endpoints Age"),
            ("discovery.k8s.io", "endpointslices", "Name AddressType Ports Endpoints Age"),
            (
                "",
                "events",
                "Last Seen Type Reason Object Message | Subobject Source First Seen Count Name",
            ),
            (
                "events.k8s.io",
                "events",
                "Last Seen Type Reason Object Message | Subobject Source First Seen Count Name",
            ),
            ("batch", "jobs", "Name Status Completions Duration Age | Containers Images Selector"),
            (
                "batch",
                "cronjobs",
                "Name Schedule Timezone Suspend Active Last Schedule Age | Containers Images Selector",
            ),
            ("coordination.k8s.io", "leases", "Name Holder Age"),
            (
                "",
                "persistentvolumes",
                "Name Capacity Access Modes Reclaim Policy Status Claim StorageClass VolumeAttributesClass Reason Age | VolumeMode",
            ),
            (
                "",
                "persistentvolumeclaims",
                "Name Status Volume Capacity Access Modes StorageClass VolumeAttributesClass Age | VolumeMode",
            ),
            ("", "limitranges", "Name Created At"),
            ("", "resourcequotas", "Name Request Limit Age"),
            ("", "podtemplates", "Name Containers Images Pod Labels"),
            ("policy", "poddisruptionbudgets", "Name Min Available Max Unavailable Allowed Disruptions Age"),
            ("scheduling.k8s.io", "priorityclasses", "Name Value Global-Default Age | PreemptionPolicy"),
            ("apps", "controllerrevisions", "Name Controller Revision Age"),
            (
                "",
                "replicationcontrollers",
                "Name Desired Current Ready Age | Containers Images Selector",
            ),
            ("", "componentstatuses", "Name Status Message Error"),
            ("apiextensions.k8s.io", "customresourcedefinitions", "Name Created At"),
        ];
        for (group, resource, want) in cases {
            let cols = columns(&info(group, resource));
            let normal: Vec<&str> = cols
                .iter()
                .filter(|c| c.priority == 0)
                .map(|c| c.name.as_str())
                .collect();
            let wide: Vec<&str> = cols
                .iter()
                .filter(|c| c.priority > 0)
                .map(|c| c.name.as_str())
                .collect();
            let mut got = normal.join(" ");
            if !wide.is_empty() {
                got = format!("{got} | {}", wide.join(" "));
            }
            assert_eq!(got, *want, "{group}/{resource}");
        }
    }

    #[test]
    fn tables_carry_list_metadata_columns_and_rows() {
        let r = info("", "configmaps");
        let cm = json!({"metadata": {"name": "c", "resourceVersion": "7"}, "data": {"a": "1", "b": "2"}});
        let t = table(
            &columns(&r),
            vec![(row(&r, &cm), partial_metadata(&cm))],
            "9",
            Some("tok"),
            Some(3),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(
            t["metadata"],
            json!({"resourceVersion": "9", "continue": "tok", "remainingItemCount": 3})
        );
        assert_eq!(
            t["columnDefinitions"][0],
            json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DESC, "priority": 0})
        );
        assert_eq!(t["rows"][0]["cells"][0], "c");
        assert_eq!(t["rows"][0]["cells"][1], 2);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["resourceVersion"], "7");
        let bare = table(&columns(&r), vec![], "", None, None);
        assert_eq!(bare["metadata"], json!({}));
        assert_eq!(bare["rows"], json!([]));
    }

    #[test]
    fn resources_without_a_printer_show_name_and_creation_time() {
        let r = info("", "limitranges");
        let lr =
            json!({"metadata": {"name": "l", "creationTimestamp": "2024-03-01T10:00:00+01:00"}});
        assert_eq!(
            row(&r, &lr),
            vec![json!("l"), json!("2024-03-01T09:00:00Z")]
        );
    }

    #[test]
    fn custom_resources_default_to_name_and_age() {
        let mut r = info("", "configmaps");
        r.custom = true;
        let names: Vec<String> = columns(&r).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Age"]);
        // Without a creation time the Age path finds nothing, which upstream sends as null.
        assert_eq!(
            row(&r, &json!({"metadata": {"name": "w"}})),
            vec![json!("w"), Value::Null]
        );
    }

    #[test]
    fn label_helpers_print_like_upstream() {
        assert_eq!(format_labels(Some(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
        assert_eq!(format_labels(Some(&json!({}))), "<none>");
        assert_eq!(format_labels(None), "<none>");
        assert_eq!(
            format_label_selector(Some(&json!({"matchLabels": {"app": "web"}}))),
            "app=web"
        );
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(
            format_label_selector(Some(
                &json!({"matchExpressions": [{"key": "a", "operator": "Bad"}]})
            )),
            "<error>"
        );
        assert_eq!(human_duration(-5), "<invalid>");
        assert_eq!(human_duration(-1), "0s");
    }
}
