//! The /openapi/v3 root and per-group-version documents and the /openapi/v2 (swagger 2.0) document.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};

use super::{
    custom_definition, custom_definition_name, list_definition, ref_target, reference, Schemas,
    REF_PREFIX, V2_REF_PREFIX,
};
use crate::resources::{ResourceInfo, Subresource};

/// The Kubernetes version the documents describe, as upstream's `info.version`.
const KUBE_VERSION: &str = "v1.33.1";

const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
const API_GROUP_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList";
const API_VERSIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions";

const OBJECT_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const LIST_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];
const WATCH_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];
/// Custom resources have no Go struct tags, so strategic merge patch is not offered for them.
const CUSTOM_PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
];

const LIST_PARAMS: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const DELETE_PARAMS: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "orphanDependents",
    "propagationPolicy",
];
const DELETE_COLLECTION_PARAMS: &[&str] = &[
    "continue",
    "dryRun",
    "fieldSelector",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "labelSelector",
    "limit",
    "orphanDependents",
    "propagationPolicy",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
];
const LOG_PARAMS: &[&str] = &[
    "container",
    "follow",
    "insecureSkipTLSVerifyBackend",
    "limitBytes",
    "previous",
    "sinceSeconds",
    "stream",
    "tailLines",
    "timestamps",
];
const EXEC_PARAMS: &[&str] = &["command", "container", "stderr", "stdin", "stdout", "tty"];
const ATTACH_PARAMS: &[&str] = &["container", "stderr", "stdin", "stdout", "tty"];

/// The JSON type and meaning of a query parameter.
fn query_param_info(name: &str) -> (&'static str, &'static str) {
    match name {
        "allowWatchBookmarks" => ("boolean", "Asks for BOOKMARK watch events; servers may ignore the request."),
        "continue" => ("string", "The continue token of a previous list call, to fetch the next chunk of results."),
        "dryRun" => ("string", "When present, modifications are not persisted. The only valid value is All."),
        "fieldManager" => ("string", "Name of the actor making the change, recorded in managedFields."),
        "fieldSelector" => ("string", "Restricts the returned objects by their fields."),
        "fieldValidation" => ("string", "How the server treats unknown or duplicate fields in the request: Ignore drops them, Warn drops them and returns a warning for each, Strict fails the request."),
        "force" => ("boolean", "Takes ownership of fields another manager owns on conflicts; only valid for apply requests."),
        "gracePeriodSeconds" => ("integer", "Seconds before the object is deleted; zero deletes immediately."),
        "ignoreStoreReadErrorWithClusterBreakingPotential" => ("boolean", "Deletes an object that cannot be read from storage (unsafe; needs explicit permission)."),
        "labelSelector" => ("string", "Restricts the returned objects by their labels."),
        "limit" => ("integer", "The maximum number of items to return; more may be fetched with the continue token."),
        "orphanDependents" => ("boolean", "Deprecated: use propagationPolicy. Whether dependents are orphaned."),
        "propagationPolicy" => ("string", "How dependents are garbage collected: Orphan, Background or Foreground."),
        "resourceVersion" => ("string", "Constrains which resource versions a list or watch may be served from."),
        "resourceVersionMatch" => ("string", "How resourceVersion applies to list calls: Exact or NotOlderThan."),
        "sendInitialEvents" => ("boolean", "With watch, starts the stream with synthetic events for the current state."),
        "timeoutSeconds" => ("integer", "Timeout of the list or watch call, regardless of activity."),
        "watch" => ("boolean", "Watch for changes and return them as a stream of add, update and remove notifications."),
        "pretty" => ("string", "If 'true', the output is pretty printed."),
        "container" => ("string", "The container to use; may be omitted if the pod has one container."),
        "follow" => ("boolean", "Follow the log stream."),
        "insecureSkipTLSVerifyBackend" => ("boolean", "Skip verifying the serving certificate of the backend."),
        "limitBytes" => ("integer", "The number of bytes to read before ending the log output."),
        "previous" => ("boolean", "Return the logs of the previous terminated container."),
        "sinceSeconds" => ("integer", "Only return logs newer than this many seconds."),
        "stream" => ("string", "The log stream to return: All, Stdout or Stderr."),
        "tailLines" => ("integer", "The number of lines from the end of the log to show."),
        "timestamps" => ("boolean", "Prefix every line of output with an RFC 3339 timestamp."),
        "command" => ("string", "The command to execute, one argument per parameter."),
        "stderr" => ("boolean", "Redirect the standard error stream."),
        "stdin" => ("boolean", "Redirect the standard input stream."),
        "stdout" => ("boolean", "Redirect the standard output stream."),
        "tty" => ("boolean", "Allocate a terminal."),
        "ports" => ("integer", "Ports to forward."),
        "path" => ("string", "Path of the request to proxy."),
        _ => ("string", ""),
    }
}

fn query_param(name: &str) -> Value {
    let (ty, description) = query_param_info(name);
    json!({"name": name, "in": "query", "description": description, "schema": {"type": ty, "uniqueItems": true}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "description": description, "required": true, "schema": {"type": "string", "uniqueItems": true}})
}

/// Uppercase hex SHA-512, as upstream's document hashes are written.
pub(crate) fn hex_digest(bytes: &[u8]) -> String {
    Sha512::digest(bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// The hash of a document for its `serverRelativeURL`; it changes whenever the document does,
/// so clients may cache documents by URL forever.
pub fn document_hash(doc: &Value) -> String {
    hex_digest(&serde_json::to_vec(doc).unwrap_or_default())
}

/// The /openapi/v3 root from (path, hash) pairs such as (`apis/apps/v1`, `<hash>`).
pub fn v3_root_with_hashes(entries: &[(String, String)]) -> Value {
    let paths: Map<String, Value> = entries
        .iter()
        .map(|(path, hash)| {
            (
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
            )
        })
        .collect();
    json!({ "paths": paths })
}

/// `api/v1` or `apis/apps/v1`: a group version's key in the v3 root.
pub fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// How operation ids name a group: `apps` -> `Apps`, `rbac.authorization.k8s.io` ->
/// `RbacAuthorization`, the core group -> `Core`.
fn group_id(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    let trimmed = group.strip_suffix(".k8s.io").unwrap_or(group);
    trimmed.split(['.', '-']).map(upper_first).collect()
}

fn group_tag(group: &str, version: &str) -> String {
    let id = group_id(group);
    let mut c = id.chars();
    let lowered: String = match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    };
    format!("{lowered}_{version}")
}

fn content(types: &[&str], schema: &Value) -> Value {
    let m: Map<String, Value> = types
        .iter()
        .map(|t| ((*t).to_string(), json!({ "schema": schema })))
        .collect();
    Value::Object(m)
}

fn response(description: &str, types: &[&str], schema: &Value) -> Value {
    json!({"description": description, "content": content(types, schema)})
}

/// What one operation reads and writes.
struct Op<'a> {
    method: &'static str,
    action: &'static str,
    id: String,
    description: String,
    gvk: (&'a str, &'a str, &'a str),
    params: Vec<&'static str>,
    /// Request body: (content types, schema).
    body: Option<(&'static [&'static str], Value)>,
    /// (status code, description) pairs answered with `schema` in `types`.
    codes: &'static [(&'static str, &'static str)],
    types: &'static [&'static str],
    schema: Value,
}

impl Op<'_> {
    fn render(&self, tag: &str) -> Value {
        let mut responses = Map::new();
        for (code, description) in self.codes {
            responses.insert(
                (*code).into(),
                response(description, self.types, &self.schema),
            );
        }
        responses.insert("401".into(), json!({"description": "Unauthorized"}));
        let mut op = json!({
            "tags": [tag],
            "description": self.description,
            "operationId": self.id,
            "responses": responses,
            "x-kubernetes-action": self.action,
            "x-kubernetes-group-version-kind": {"group": self.gvk.0, "version": self.gvk.1, "kind": self.gvk.2},
        });
        if !self.params.is_empty() {
            op["parameters"] = Value::Array(self.params.iter().map(|p| query_param(p)).collect());
        }
        if let Some((types, schema)) = &self.body {
            op["requestBody"] = json!({"content": content(types, schema), "required": true});
        }
        op
    }
}

const OK: &[(&str, &str)] = &[("200", "OK")];
const CREATED: &[(&str, &str)] = &[("200", "OK"), ("201", "Created"), ("202", "Accepted")];
const REPLACED: &[(&str, &str)] = &[("200", "OK"), ("201", "Created")];
const DELETED: &[(&str, &str)] = &[("200", "OK"), ("202", "Accepted")];

/// Names the pieces of one resource's paths and operations.
struct ResourcePaths<'a> {
    schemas: &'a Schemas,
    r: &'a ResourceInfo,
    gv_id: String,
    tag: String,
    prefix: String,
    item_def: String,
    list_def: String,
    custom: bool,
}

impl<'a> ResourcePaths<'a> {
    fn gvk(&self) -> (&'a str, &'a str, &'a str) {
        (&self.r.group, &self.r.version, &self.r.kind)
    }

    fn scope(&self) -> &'static str {
        if self.r.namespaced {
            "Namespaced"
        } else {
            ""
        }
    }

    fn has(&self, verb: &str) -> bool {
        self.r.verbs.iter().any(|v| v == verb)
    }

    fn collection_path(&self) -> String {
        if self.r.namespaced {
            format!(
                "{}/namespaces/{{namespace}}/{}",
                self.prefix, self.r.resource
            )
        } else {
            format!("{}/{}", self.prefix, self.r.resource)
        }
    }

    fn path_params(&self, with_name: bool) -> Vec<Value> {
        let mut params = Vec::new();
        if with_name {
            params.push(path_param("name", &format!("name of the {}", self.r.kind)));
        }
        if self.r.namespaced {
            params.push(path_param(
                "namespace",
                "object name and auth scope, such as for teams and projects",
            ));
        }
        params.push(query_param("pretty"));
        params
    }

    fn patch_types(&self) -> &'static [&'static str] {
        if self.custom {
            CUSTOM_PATCH_TYPES
        } else {
            PATCH_TYPES
        }
    }

    fn add_all(&self, paths: &mut Map<String, Value>) {
        let kind = &self.r.kind;
        let scope = self.scope();
        let gv = &self.gv_id;
        let item_ref = reference(&self.item_def);
        let list_ref = reference(&self.list_def);

        let mut collection = Vec::new();
        if self.has("list") {
            collection.push(Op {
                method: "get",
                action: "list",
                id: format!("list{gv}{scope}{kind}"),
                description: format!("list or watch objects of kind {kind}"),
                gvk: self.gvk(),
                params: LIST_PARAMS.to_vec(),
                body: None,
                codes: OK,
                types: LIST_TYPES,
                schema: list_ref.clone(),
            });
        }
        if self.has("create") {
            collection.push(Op {
                method: "post",
                action: "post",
                id: format!("create{gv}{scope}{kind}"),
                description: format!("create a {kind}"),
                gvk: self.gvk(),
                params: WRITE_PARAMS.to_vec(),
                body: Some((OBJECT_TYPES, item_ref.clone())),
                codes: CREATED,
                types: OBJECT_TYPES,
                schema: item_ref.clone(),
            });
        }
        if self.has("deletecollection") {
            collection.push(Op {
                method: "delete",
                action: "deletecollection",
                id: format!("delete{gv}Collection{scope}{kind}"),
                description: format!("delete collection of {kind}"),
                gvk: self.gvk(),
                params: DELETE_COLLECTION_PARAMS.to_vec(),
                body: Some((OBJECT_TYPES, reference(DELETE_OPTIONS))),
                codes: OK,
                types: OBJECT_TYPES,
                schema: reference(STATUS),
            });
        }
        self.insert(
            paths,
            self.collection_path(),
            self.path_params(false),
            &collection,
        );

        let item_path = format!("{}/{{name}}", self.collection_path());
        let mut item = Vec::new();
        if self.has("get") {
            item.push(Op {
                method: "get",
                action: "get",
                id: format!("read{gv}{scope}{kind}"),
                description: format!("read the specified {kind}"),
                gvk: self.gvk(),
                params: Vec::new(),
                body: None,
                codes: OK,
                types: OBJECT_TYPES,
                schema: item_ref.clone(),
            });
        }
        if self.has("update") {
            item.push(Op {
                method: "put",
                action: "put",
                id: format!("replace{gv}{scope}{kind}"),
                description: format!("replace the specified {kind}"),
                gvk: self.gvk(),
                params: WRITE_PARAMS.to_vec(),
                body: Some((OBJECT_TYPES, item_ref.clone())),
                codes: REPLACED,
                types: OBJECT_TYPES,
                schema: item_ref.clone(),
            });
        }
        if self.has("delete") {
            item.push(Op {
                method: "delete",
                action: "delete",
                id: format!("delete{gv}{scope}{kind}"),
                description: format!("delete a {kind}"),
                gvk: self.gvk(),
                params: DELETE_PARAMS.to_vec(),
                body: Some((OBJECT_TYPES, reference(DELETE_OPTIONS))),
                codes: DELETED,
                types: OBJECT_TYPES,
                schema: reference(STATUS),
            });
        }
        if self.has("patch") {
            item.push(Op {
                method: "patch",
                action: "patch",
                id: format!("patch{gv}{scope}{kind}"),
                description: format!("partially update the specified {kind}"),
                gvk: self.gvk(),
                params: PATCH_PARAMS.to_vec(),
                body: Some((self.patch_types(), reference(PATCH))),
                codes: REPLACED,
                types: OBJECT_TYPES,
                schema: item_ref.clone(),
            });
        }
        self.insert(paths, item_path.clone(), self.path_params(true), &item);

        if self.has("list") && self.r.namespaced {
            let op = Op {
                method: "get",
                action: "list",
                id: format!("list{gv}{kind}ForAllNamespaces"),
                description: format!("list or watch objects of kind {kind}"),
                gvk: self.gvk(),
                params: Vec::new(),
                body: None,
                codes: OK,
                types: LIST_TYPES,
                schema: list_ref.clone(),
            };
            let mut params = vec![];
            params.extend(LIST_PARAMS.iter().map(|p| query_param(p)));
            params.push(query_param("pretty"));
            self.insert(
                paths,
                format!("{}/{}", self.prefix, self.r.resource),
                params,
                &[op],
            );
        }
        if self.has("watch") {
            self.add_watches(paths);
        }
        for sub in &self.r.subresources {
            self.add_subresource(paths, &item_path, sub);
        }
    }

    fn add_watches(&self, paths: &mut Map<String, Value>) {
        let kind = &self.r.kind;
        let scope = self.scope();
        let gv = &self.gv_id;
        let watch = |id: String, action: &'static str, description: String| Op {
            method: "get",
            action,
            id,
            description,
            gvk: self.gvk(),
            params: Vec::new(),
            body: None,
            codes: OK,
            types: WATCH_TYPES,
            schema: reference(WATCH_EVENT),
        };
        let list_params = |with_name: bool| {
            let mut p = Vec::new();
            p.extend(LIST_PARAMS.iter().map(|q| query_param(q)));
            p.extend(self.path_params(with_name));
            p
        };
        let base = if self.r.namespaced {
            format!(
                "{}/watch/namespaces/{{namespace}}/{}",
                self.prefix, self.r.resource
            )
        } else {
            format!("{}/watch/{}", self.prefix, self.r.resource)
        };
        self.insert(
            paths,
            base.clone(),
            list_params(false),
            &[watch(
                format!("watch{gv}{scope}{kind}List"),
                "watchlist",
                format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."),
            )],
        );
        self.insert(
            paths,
            format!("{base}/{{name}}"),
            list_params(true),
            &[watch(
                format!("watch{gv}{scope}{kind}"),
                "watch",
                format!("watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."),
            )],
        );
        if self.r.namespaced {
            let mut params: Vec<Value> = LIST_PARAMS.iter().map(|q| query_param(q)).collect();
            params.push(query_param("pretty"));
            self.insert(
                paths,
                format!("{}/watch/{}", self.prefix, self.r.resource),
                params,
                &[watch(
                    format!("watch{gv}{kind}ListForAllNamespaces"),
                    "watchlist",
                    format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."),
                )],
            );
        }
    }

    fn add_subresource(&self, paths: &mut Map<String, Value>, item_path: &str, sub: &Subresource) {
        let kind = &self.r.kind;
        let scope = self.scope();
        let gv = &self.gv_id;
        let sub_id = upper_first(&sub.name);
        let sub_kind = (sub.group.as_str(), sub.version.as_str(), sub.kind.as_str());
        let path = format!("{item_path}/{}", sub.name);
        let connect = matches!(
            sub.name.as_str(),
            "exec" | "attach" | "portforward" | "proxy"
        );
        let mut ops = Vec::new();
        if connect {
            let params: &[&'static str] = match sub.name.as_str() {
                "exec" => EXEC_PARAMS,
                "attach" => ATTACH_PARAMS,
                "portforward" => &["ports"],
                _ => &["path"],
            };
            for verb in &sub.verbs {
                let (method, word) = match verb.as_str() {
                    "get" => ("get", "Get"),
                    "create" => ("post", "Post"),
                    "update" => ("put", "Put"),
                    "patch" => ("patch", "Patch"),
                    "delete" => ("delete", "Delete"),
                    _ => continue,
                };
                ops.push(Op {
                    method,
                    action: "connect",
                    id: format!("connect{gv}{word}{scope}{kind}{sub_id}"),
                    description: format!(
                        "connect {} requests to {} of {kind}",
                        word.to_uppercase(),
                        sub.name
                    ),
                    gvk: sub_kind,
                    params: params.to_vec(),
                    body: None,
                    codes: OK,
                    types: &["*/*"],
                    schema: json!({"type": "string"}),
                });
            }
            let mut path_params = self.path_params(true);
            path_params.pop();
            self.insert(paths, path, path_params, &ops);
            return;
        }
        if sub.name == "log" {
            let op = Op {
                method: "get",
                action: "get",
                id: format!("read{gv}{scope}{kind}Log"),
                description: format!("read log of the specified {kind}"),
                gvk: sub_kind,
                params: LOG_PARAMS.to_vec(),
                body: None,
                codes: OK,
                types: &[
                    "text/plain",
                    "application/json",
                    "application/yaml",
                    "application/vnd.kubernetes.protobuf",
                ],
                schema: json!({"type": "string"}),
            };
            self.insert(paths, path, self.path_params(true), &[op]);
            return;
        }
        let def = if sub.kind == self.r.kind && sub.group == self.r.group {
            self.item_def.clone()
        } else {
            self.sub_def(sub)
        };
        let sub_ref = reference(&def);
        for verb in &sub.verbs {
            let op = match verb.as_str() {
                "get" => Op {
                    method: "get",
                    action: "get",
                    id: format!("read{gv}{scope}{kind}{sub_id}"),
                    description: format!("read {} of the specified {kind}", sub.name),
                    gvk: sub_kind,
                    params: Vec::new(),
                    body: None,
                    codes: OK,
                    types: OBJECT_TYPES,
                    schema: sub_ref.clone(),
                },
                "update" => Op {
                    method: "put",
                    action: "put",
                    id: format!("replace{gv}{scope}{kind}{sub_id}"),
                    description: format!("replace {} of the specified {kind}", sub.name),
                    gvk: sub_kind,
                    params: WRITE_PARAMS.to_vec(),
                    body: Some((OBJECT_TYPES, sub_ref.clone())),
                    codes: REPLACED,
                    types: OBJECT_TYPES,
                    schema: sub_ref.clone(),
                },
                "patch" => Op {
                    method: "patch",
                    action: "patch",
                    id: format!("patch{gv}{scope}{kind}{sub_id}"),
                    description: format!("partially update {} of the specified {kind}", sub.name),
                    gvk: sub_kind,
                    params: PATCH_PARAMS.to_vec(),
                    body: Some((self.patch_types(), reference(PATCH))),
                    codes: REPLACED,
                    types: OBJECT_TYPES,
                    schema: sub_ref.clone(),
                },
                "create" => Op {
                    method: "post",
                    action: "post",
                    id: format!("create{gv}{scope}{kind}{sub_id}"),
                    description: format!("create {} of a {kind}", sub.name),
                    gvk: sub_kind,
                    params: WRITE_PARAMS.to_vec(),
                    body: Some((OBJECT_TYPES, sub_ref.clone())),
                    codes: CREATED,
                    types: OBJECT_TYPES,
                    schema: sub_ref.clone(),
                },
                _ => continue,
            };
            ops.push(op);
        }
        self.insert(paths, path, self.path_params(true), &ops);
    }

    /// The definition of a subresource's kind from another group (Scale, Eviction, Binding).
    fn sub_def(&self, sub: &Subresource) -> String {
        self.schemas
            .definition_name(&sub.group, &sub.version, &sub.kind)
            .map(str::to_string)
            .unwrap_or_else(|| self.item_def.clone())
    }

    fn insert(
        &self,
        paths: &mut Map<String, Value>,
        path: String,
        params: Vec<Value>,
        ops: &[Op<'_>],
    ) {
        if ops.is_empty() {
            return;
        }
        let mut item = Map::new();
        for op in ops {
            item.insert(op.method.into(), op.render(&self.tag));
        }
        item.insert("parameters".into(), Value::Array(params));
        paths.insert(path, Value::Object(item));
    }
}

/// Every `$ref` target under `v`.
fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if k == "$ref" {
                    if let Some(name) = child.as_str().and_then(ref_target) {
                        out.insert(name.to_string());
                    }
                } else {
                    collect_refs(child, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|c| collect_refs(c, out)),
        _ => {}
    }
}

impl Schemas {
    /// The /openapi/v3 root for the served group versions (`("", "v1")`, `("apps", "v1")`),
    /// plus `api` and `apis`. Hashes derive from the built-in schemas; when a group version's
    /// document can change at run time (custom resources) use [`v3_root_with_hashes`] with
    /// [`document_hash`] of the served document instead.
    pub fn v3_root(&self, group_versions: &[(String, String)]) -> Value {
        let fingerprint = self.fingerprint();
        let hash = |path: &str| hex_digest(format!("{fingerprint}/{path}").as_bytes());
        let mut entries: Vec<(String, String)> = ["api", "apis"]
            .iter()
            .map(|p| (p.to_string(), hash(p)))
            .collect();
        for (group, version) in group_versions {
            let path = group_version_path(group, version);
            entries.push((path.clone(), hash(&path)));
        }
        v3_root_with_hashes(&entries)
    }

    /// The v3 document of `/api` (core versions) or `/apis` (group list).
    pub fn v3_discovery(&self, path: &str) -> Option<Value> {
        let (url, id, def, description) = match path {
            "api" => (
                "/api/",
                "getCoreAPIVersions",
                API_VERSIONS,
                "get available API versions",
            ),
            "apis" => (
                "/apis/",
                "getAPIVersions",
                API_GROUP_LIST,
                "get available API versions",
            ),
            _ => return None,
        };
        let op = json!({
            "tags": [if path == "api" { "core" } else { "apis" }],
            "description": description,
            "operationId": id,
            "responses": {
                "200": response("OK", &["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"], &reference(def)),
                "401": {"description": "Unauthorized"},
            },
        });
        let mut paths = Map::new();
        paths.insert(url.into(), json!({ "get": op }));
        Some(self.finish_v3(paths, &BTreeMap::new()))
    }

    /// The OpenAPI 3.0 document of one group version: paths for its resources (collection,
    /// item, watch and subresource paths) and the schemas they reference. `custom` holds
    /// (kind, openAPIV3Schema) of the custom resources served in it.
    pub fn v3_group_version(
        &self,
        group: &str,
        version: &str,
        resources: &[ResourceInfo],
        custom: &[(String, Value)],
    ) -> Value {
        let (paths, extra) = self.group_version_paths(group, version, resources, custom);
        self.finish_v3(paths, &extra)
    }

    fn group_version_paths(
        &self,
        group: &str,
        version: &str,
        resources: &[ResourceInfo],
        custom: &[(String, Value)],
    ) -> (Map<String, Value>, BTreeMap<String, Value>) {
        let mut extra: BTreeMap<String, Value> = BTreeMap::new();
        let mut paths = Map::new();
        let prefix = format!("/{}", group_version_path(group, version));
        let tag = group_tag(group, version);
        let discovery = json!({
            "tags": [tag],
            "description": "get available resources",
            "operationId": format!("get{}{}APIResources", group_id(group), upper_first(version)),
            "responses": {
                "200": response("OK", OBJECT_TYPES, &reference(API_RESOURCE_LIST)),
                "401": {"description": "Unauthorized"},
            },
        });
        paths.insert(format!("{prefix}/"), json!({ "get": discovery }));
        for r in resources
            .iter()
            .filter(|r| r.group == group && r.version == version)
        {
            let (item_def, list_def) = self.definitions_for(r, custom, &mut extra);
            let rp = ResourcePaths {
                schemas: self,
                r,
                gv_id: format!("{}{}", group_id(group), upper_first(version)),
                tag: tag.clone(),
                prefix: prefix.clone(),
                item_def,
                list_def,
                custom: r.custom,
            };
            rp.add_all(&mut paths);
        }
        (paths, extra)
    }

    /// The item and list definition names of a resource, adding custom ones to `extra`.
    fn definitions_for(
        &self,
        r: &ResourceInfo,
        custom: &[(String, Value)],
        extra: &mut BTreeMap<String, Value>,
    ) -> (String, String) {
        if !r.custom {
            if let (Some(item), Some(list)) = (
                self.definition_name(&r.group, &r.version, &r.kind),
                self.definition_name(&r.group, &r.version, &r.list_kind),
            ) {
                return (item.to_string(), list.to_string());
            }
        }
        let item = custom_definition_name(&r.group, &r.version, &r.kind);
        let list = custom_definition_name(&r.group, &r.version, &r.list_kind);
        let schema = custom
            .iter()
            .find(|(k, _)| *k == r.kind)
            .map(|(_, s)| s.clone())
            // Without a declared schema anything is accepted, as for a CRD that preserves unknown fields.
            .unwrap_or_else(
                || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
        extra.insert(
            item.clone(),
            custom_definition(&r.group, &r.version, &r.kind, &schema),
        );
        let mut list_def = list_definition(&r.group, &r.version, &r.kind, &item);
        if let Some(items) = list_def.pointer_mut("/properties/items/items") {
            *items = reference(&item);
        }
        extra.insert(list.clone(), list_def);
        (item, list)
    }

    /// The schemas referenced from `roots`, transitively, from the built-in and `extra` definitions.
    fn closure(&self, roots: &Value, extra: &BTreeMap<String, Value>) -> Map<String, Value> {
        let mut pending = BTreeSet::new();
        collect_refs(roots, &mut pending);
        let mut out = Map::new();
        while let Some(name) = pending.pop_first() {
            if out.contains_key(&name) {
                continue;
            }
            let Some(def) = extra.get(&name).or_else(|| self.definition(&name)) else {
                continue;
            };
            let mut refs = BTreeSet::new();
            collect_refs(def, &mut refs);
            pending.extend(refs.into_iter().filter(|r| !out.contains_key(r)));
            out.insert(name, def.clone());
        }
        // Keep the document's schemas in name order, as upstream serves them.
        let mut sorted: Vec<(String, Value)> = out.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        sorted.into_iter().collect()
    }

    fn finish_v3(&self, paths: Map<String, Value>, extra: &BTreeMap<String, Value>) -> Value {
        let paths = Value::Object(paths);
        let schemas = self.closure(&paths, extra);
        json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": KUBE_VERSION},
            "paths": paths,
            "components": {"schemas": schemas},
        })
    }

    /// The swagger 2.0 document of every served resource (custom ones without a schema accept
    /// any object); see [`Schemas::v2_with_custom`].
    pub fn v2(&self, resources: &[ResourceInfo]) -> Value {
        self.v2_with_custom(resources, &[])
    }

    /// The swagger 2.0 document, with custom resources' schemas given as
    /// (group, version, kind, openAPIV3Schema).
    pub fn v2_with_custom(
        &self,
        resources: &[ResourceInfo],
        custom: &[(String, String, String, Value)],
    ) -> Value {
        let mut gvs: Vec<(String, String)> = resources
            .iter()
            .map(|r| (r.group.clone(), r.version.clone()))
            .collect();
        gvs.sort();
        gvs.dedup();
        let mut paths = Map::new();
        let mut extra = BTreeMap::new();
        for (group, version) in &gvs {
            let kinds: Vec<(String, Value)> = custom
                .iter()
                .filter(|(g, v, _, _)| g == group && v == version)
                .map(|(_, _, k, s)| (k.clone(), s.clone()))
                .collect();
            let (p, e) = self.group_version_paths(group, version, resources, &kinds);
            paths.extend(p);
            extra.extend(e);
        }
        let paths = Value::Object(paths);
        let definitions = Value::Object(self.closure(&paths, &extra));
        let mut v2_paths = Map::new();
        if let Value::Object(p) = paths {
            for (path, item) in p {
                v2_paths.insert(path, v2_path_item(item));
            }
        }
        let mut doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": KUBE_VERSION},
            "paths": v2_paths,
            "definitions": definitions,
            "securityDefinitions": {"BearerToken": {"description": "Bearer token authentication", "type": "apiKey", "name": "authorization", "in": "header"}},
            "security": [{"BearerToken": []}],
        });
        v2_schema_refs(&mut doc);
        doc
    }
}

/// A v3 parameter as swagger 2.0 writes it: the schema's type inline.
fn v2_parameter(mut p: Value) -> Value {
    if let Some(Value::Object(schema)) = p.as_object_mut().and_then(|m| m.remove("schema")) {
        if let Some(m) = p.as_object_mut() {
            m.extend(schema);
        }
    }
    p
}

fn v2_path_item(item: Value) -> Value {
    let Value::Object(item) = item else {
        return item;
    };
    let mut out = Map::new();
    for (key, value) in item {
        if key == "parameters" {
            let params = value.as_array().cloned().unwrap_or_default();
            out.insert(
                key,
                Value::Array(params.into_iter().map(v2_parameter).collect()),
            );
        } else {
            out.insert(key, v2_operation(value));
        }
    }
    Value::Object(out)
}

fn v2_operation(op: Value) -> Value {
    let Value::Object(mut op) = op else {
        return op;
    };
    let mut params: Vec<Value> = op
        .remove("parameters")
        .and_then(|p| p.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .map(v2_parameter)
        .collect();
    let mut consumes: Vec<Value> = Vec::new();
    if let Some(body) = op.remove("requestBody") {
        if let Some(content) = body.get("content").and_then(Value::as_object) {
            consumes = content.keys().map(|k| json!(k)).collect();
            if let Some(schema) = content.values().next().and_then(|c| c.get("schema")) {
                params.insert(
                    0,
                    json!({"name": "body", "in": "body", "required": true, "schema": schema}),
                );
            }
        }
    }
    let mut produces: Vec<Value> = Vec::new();
    if let Some(Value::Object(responses)) = op.remove("responses") {
        let mut out = Map::new();
        for (code, resp) in responses {
            let mut r =
                json!({"description": resp.get("description").cloned().unwrap_or(json!(""))});
            if let Some(content) = resp.get("content").and_then(Value::as_object) {
                if produces.is_empty() {
                    produces = content.keys().map(|k| json!(k)).collect();
                }
                if let Some(schema) = content.values().next().and_then(|c| c.get("schema")) {
                    r["schema"] = schema.clone();
                }
            }
            out.insert(code, r);
        }
        op.insert("responses".into(), Value::Object(out));
    }
    if consumes.is_empty() {
        consumes.push(json!("*/*"));
    }
    op.insert("consumes".into(), Value::Array(consumes));
    op.insert("produces".into(), Value::Array(produces));
    op.insert("schemes".into(), json!(["https"]));
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    Value::Object(op)
}

/// Swagger 2.0 refers to `#/definitions/` and writes a described reference as `$ref` with siblings.
fn v2_schema_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let single = match m.get("allOf").and_then(Value::as_array) {
                Some(all) if all.len() == 1 && all[0].get("$ref").is_some() => {
                    all[0].get("$ref").cloned()
                }
                _ => None,
            };
            if let Some(r) = single {
                m.remove("allOf");
                m.insert("$ref".into(), r);
            }
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(name) = r.strip_prefix(REF_PREFIX) {
                    *r = format!("{V2_REF_PREFIX}{name}");
                }
            }
            m.values_mut().for_each(v2_schema_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(v2_schema_refs),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, OnceLock};

    fn schemas() -> Arc<Schemas> {
        static S: OnceLock<Arc<Schemas>> = OnceLock::new();
        Arc::clone(S.get_or_init(|| Arc::new(Schemas::builtin())))
    }

    fn widget() -> ResourceInfo {
        ResourceInfo {
            group: "example.com".into(),
            version: "v1".into(),
            resource: "widgets".into(),
            singular: "widget".into(),
            kind: "Widget".into(),
            list_kind: "WidgetList".into(),
            namespaced: true,
            short_names: vec![],
            categories: vec![],
            verbs: crate::resources::ALL_VERBS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            subresources: vec![],
            storage_prefix: "/registry/example.com/widgets".into(),
            custom: true,
        }
    }

    #[test]
    fn apps_v1_patch_on_deployments_carries_field_validation_and_gvk() {
        let s = schemas();
        let doc = s.v3_group_version("apps", "v1", &crate::resources::builtin(), &[]);
        assert_eq!(doc["openapi"], "3.0.0");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        let params = patch["parameters"].as_array().expect("parameters");
        assert!(params
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        assert!(schemas.contains_key("io.k8s.api.apps.v1.Deployment"));
        assert!(schemas.contains_key("io.k8s.api.core.v1.PodSpec"));
        assert!(schemas.contains_key("io.k8s.api.autoscaling.v1.Scale"));
        assert!(
            !schemas.contains_key("io.k8s.api.core.v1.Pod"),
            "only referenced schemas"
        );
        let scale =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
        assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
    }

    #[test]
    fn every_reference_in_a_document_resolves() {
        let s = schemas();
        let all = crate::resources::builtin();
        for (g, v) in [
            ("", "v1"),
            ("apps", "v1"),
            ("policy", "v1"),
            ("apiextensions.k8s.io", "v1"),
        ] {
            let doc = s.v3_group_version(g, v, &all, &[]);
            let mut refs = BTreeSet::new();
            collect_refs(&doc, &mut refs);
            for r in refs {
                assert!(
                    doc["components"]["schemas"].get(&r).is_some(),
                    "{g}/{v}: {r} unresolved"
                );
            }
        }
    }

    #[test]
    fn core_pods_have_subresource_paths() {
        let s = schemas();
        let doc = s.v3_group_version("", "v1", &crate::resources::builtin(), &[]);
        let paths = &doc["paths"];
        assert_eq!(
            paths["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"]["operationId"],
            "patchCoreV1NamespacedPodStatus"
        );
        assert_eq!(
            paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"]
                ["x-kubernetes-group-version-kind"]["group"],
            "policy"
        );
        assert_eq!(
            paths["/api/v1/pods"]["get"]["operationId"],
            "listCoreV1PodForAllNamespaces"
        );
        assert_eq!(
            paths["/api/v1/nodes/{name}"]["patch"]["operationId"],
            "patchCoreV1Node"
        );
        assert!(paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["get"].is_object());
    }

    #[test]
    fn custom_resources_are_named_by_reversed_group_and_wrapped() {
        let s = schemas();
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}});
        let doc = s.v3_group_version(
            "example.com",
            "v1",
            &[widget()],
            &[("Widget".into(), schema)],
        );
        let def = &doc["components"]["schemas"]["com.example.v1.Widget"];
        assert_eq!(def["x-kubernetes-group-version-kind"][0]["kind"], "Widget");
        assert!(def["properties"]["metadata"]["allOf"].is_array());
        assert!(
            doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]
                .is_object()
        );
        let patch =
            &doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
        assert_eq!(patch["operationId"], "patchExampleComV1NamespacedWidget");
        assert!(patch["requestBody"]["content"]
            .get("application/strategic-merge-patch+json")
            .is_none());
        assert!(doc["components"]["schemas"]["com.example.v1.WidgetList"].is_object());
    }

    #[test]
    fn root_lists_group_versions_with_stable_hashes() {
        let s = schemas();
        let gvs = vec![
            ("".to_string(), "v1".to_string()),
            ("apps".to_string(), "v1".to_string()),
        ];
        let root = s.v3_root(&gvs);
        let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .expect("url");
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        assert!(root["paths"]["api/v1"].is_object());
        assert!(root["paths"]["api"].is_object());
        assert_eq!(s.v3_root(&gvs), root);
    }

    #[test]
    fn v2_uses_definitions_and_body_parameters() {
        let s = schemas();
        let doc = s.v2(&crate::resources::builtin());
        assert_eq!(doc["swagger"], "2.0");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert!(patch["consumes"]
            .as_array()
            .expect("consumes")
            .contains(&json!("application/strategic-merge-patch+json")));
        let params = patch["parameters"].as_array().expect("params");
        assert_eq!(params[0]["in"], "body");
        assert!(params
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["type"] == "string"));
        let spec = &doc["definitions"]["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
        assert_eq!(
            spec["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
        let text = doc.to_string();
        assert!(!text.contains(REF_PREFIX));
    }

    #[test]
    fn discovery_documents_describe_api_and_apis() {
        let s = schemas();
        let api = s.v3_discovery("api").expect("api");
        assert_eq!(
            api["paths"]["/api/"]["get"]["operationId"],
            "getCoreAPIVersions"
        );
        assert!(api["components"]["schemas"][API_VERSIONS].is_object());
        assert!(s.v3_discovery("nope").is_none());
        assert_eq!(group_id("rbac.authorization.k8s.io"), "RbacAuthorization");
        assert_eq!(group_tag("apps", "v1"), "apps_v1");
    }
}
