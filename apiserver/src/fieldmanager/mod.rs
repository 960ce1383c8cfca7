//! Field ownership (`metadata.managedFields`) and server-side apply, as upstream's fieldmanager.

pub mod fieldpath;
pub mod managed;
pub mod structured;

use serde_json::{json, Map, Value};

use self::fieldpath::{path_string, PathElement, Set};
use self::managed::{Managed, ManagerId, Operation, Owned};
use self::structured::{
    compare, ensure_named_fields_are_members, merge, remove_items, to_field_set,
};
use crate::error::ApiError;
use crate::typed::SchemaNode;

/// The manager that takes over the fields of an object first applied to without
/// managedFields, so the applier does not silently own what others wrote.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// One field an apply would change although another manager owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The owning manager's name.
    pub manager: String,
    /// The field, printed as upstream prints it: `.spec.replicas`.
    pub path: String,
    /// How the owner wrote the field.
    pub operation: Operation,
    /// The version the owner wrote at (upstream prints it for updaters only).
    pub api_version: String,
    /// The owner's subresource, empty for the main resource.
    pub subresource: String,
}

impl Conflict {
    /// The owner as upstream names it: `"kubectl-client-side-apply" using apps/v1`.
    pub fn owner(&self) -> String {
        ManagerId::new(
            &self.manager,
            self.operation,
            &self.api_version,
            &self.subresource,
        )
        .describe()
    }
}

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// Fields owned by other managers would change; apply again with force to take them.
    Conflicts(Vec<Conflict>),
    /// The applied configuration cannot be applied (wrong version, managedFields set,
    /// duplicate list keys).
    Invalid(String),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Conflicts(c) => f.write_str(&conflict_message(c)),
            Self::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ApplyError {}

/// `Apply failed with 1 conflict: conflict with "m" using v1: .spec.replicas`, or for several,
/// one block per owner (sorted) listing its paths.
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.owner(),
            only.path
        );
    }
    let mut by_owner: Vec<(String, Vec<&str>)> = Vec::new();
    for c in conflicts {
        let owner = c.owner();
        match by_owner.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, paths)) => paths.push(&c.path),
            None => by_owner.push((owner, vec![&c.path])),
        }
    }
    by_owner.sort_by(|a, b| a.0.cmp(&b.0));
    let mut lines = Vec::new();
    for (owner, paths) in by_owner {
        lines.push(format!("conflicts with {owner}:"));
        lines.extend(paths.into_iter().map(|p| format!("- {p}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

impl ApplyError {
    /// The error as the client sees it: conflicts are a 409 Conflict whose details hold one
    /// `FieldManagerConflict` cause per field; an invalid configuration is a 400.
    pub fn to_api_error(&self, group: &str, resource: &str, name: &str) -> ApiError {
        // Upstream's apply-conflict Status names no object (apimachinery's NewApplyConflict
        // fills in causes only); the identifiers are taken so callers treat this like the
        // other ApiError constructors.
        let _ = (group, resource, name);
        match self {
            Self::Conflicts(conflicts) => {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| {
                        json!({
                            "reason": "FieldManagerConflict",
                            "message": format!("conflict with {}", c.owner()),
                            "field": c.path,
                        })
                    })
                    .collect();
                ApiError::new(409, "Conflict", conflict_message(conflicts))
                    .with_details(json!({ "causes": causes }))
            }
            Self::Invalid(message) => ApiError::bad_request(message.clone()),
        }
    }
}

/// Paths no manager ever owns: type and identity metadata the server sets itself.
fn strip_set() -> Set {
    let mut set = Set::new();
    let f = |s: &str| PathElement::Field(s.to_string());
    set.insert(&[f("apiVersion")]);
    set.insert(&[f("kind")]);
    set.insert(&[f("metadata")]);
    for field in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        set.insert(&[f("metadata"), f(field)]);
    }
    set
}

fn managed_fields_of(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?.get("managedFields")
}

/// The live object's managers; an undecodable list counts as none, as upstream treats it.
fn decode_live(obj: Option<&Value>) -> Managed {
    obj.and_then(managed_fields_of)
        .and_then(|v| managed::decode(v).ok())
        .unwrap_or_default()
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    take_managed_fields(&mut out);
    out
}

fn take_managed_fields(obj: &mut Value) -> Option<Value> {
    obj.get_mut("metadata")?
        .as_object_mut()?
        .remove("managedFields")
}

fn write_managed_fields(obj: &mut Value, managed: &Managed) {
    match managed::encode(managed) {
        Some(list) => {
            crate::object::set_meta(obj, "managedFields", list);
        }
        None => {
            take_managed_fields(obj);
        }
    }
}

/// Records a non-apply write of `new` over `old` by `id`: what the write added or changed
/// becomes the writer's, and is taken from everyone else, as is what it removed.
fn record_update<S: SchemaNode>(
    managed: &mut Managed,
    old: Option<&Value>,
    new: &Value,
    id: ManagerId,
    api_version: &str,
    now: &str,
    schema: Option<&S>,
) {
    let cmp = compare(old, Some(new), schema);
    let mut changed = cmp.modified;
    changed.merge(&cmp.added);
    // In place: the sets this write touches are small, the managers' entries are not.
    for owned in managed.values_mut() {
        owned.set.subtract(&changed);
        owned.set.subtract(&cmp.removed);
    }
    managed.retain(|_, owned| !owned.set.is_empty());
    let mut taken = changed;
    taken.subtract(&strip_set());
    // The entry and its time change only when the write changed a field it may own.
    if taken.is_empty() {
        return;
    }
    let entry = managed.entry(id).or_insert_with(|| Owned {
        set: Set::new(),
        api_version: api_version.to_string(),
        time: None,
    });
    entry.set.merge(&taken);
    entry.api_version = api_version.to_string();
    entry.time = Some(now.to_string());
}

/// Updates `new`'s managedFields for a create, update or patch (operation `Update`) by
/// `manager`; `old` is None on create.
///
/// Which managedFields are the starting point follows upstream: a subresource write always
/// uses the live object's; otherwise a request that sets managedFields to `[]` or `[{}]`
/// clears them, one that sets a valid non-empty list replaces them, and one that omits them
/// (or sends an undecodable list) keeps the live object's. An existing object without
/// managedFields is not tracked by updates, only from its first apply on.
pub fn update_managed_fields<S: SchemaNode>(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    now: &str,
    schema: Option<&S>,
) {
    if !new.is_object() {
        return;
    }
    let requested = take_managed_fields(new);
    let mut managed = if subresource.is_some() {
        decode_live(old)
    } else if managed::is_reset(requested.as_ref()) {
        Managed::new()
    } else {
        match requested.as_ref().map(managed::decode) {
            Some(Ok(m)) if !m.is_empty() => m,
            _ => decode_live(old),
        }
    };
    if managed.is_empty() && old.is_some() {
        return;
    }
    let old = old.map(without_managed_fields);
    let id = ManagerId::new(
        manager,
        Operation::Update,
        api_version,
        subresource.unwrap_or(""),
    );
    record_update(
        &mut managed,
        old.as_ref(),
        new,
        id,
        api_version,
        now,
        schema,
    );
    managed::cap_update_managers(&mut managed, managed::MAX_UPDATE_MANAGERS);
    write_managed_fields(new, &managed);
}

/// Server-side apply of `applied` by `manager` onto `live` (None creates the object).
///
/// The configuration is merged into the live object; fields this manager applied last time
/// but no longer does are removed unless another manager owns them; changing a field another
/// manager owns is a conflict unless `force`, which moves it to this manager. The manager's
/// Apply entry becomes exactly the configuration's fields. Returns the new object with its
/// managedFields.
pub fn apply<S: SchemaNode>(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    now: &str,
    schema: Option<&S>,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::Invalid(
            "the applied configuration must be an object".into(),
        ));
    }
    let patch_version = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if patch_version != api_version {
        return Err(ApplyError::Invalid(format!(
            "Incorrect version specified in apply patch. Specified patch version: {patch_version}, expected: {api_version}"
        )));
    }
    if managed_fields_of(applied).is_some_and(|v| !v.is_null()) {
        return Err(ApplyError::Invalid(
            "metadata.managedFields must be nil".into(),
        ));
    }
    if let Some(dup) = structured::find_duplicate(applied, schema) {
        return Err(ApplyError::Invalid(format!(
            "failed to create typed patch object: {dup}"
        )));
    }

    let mut managed = decode_live(live);
    let live = live.map(without_managed_fields);
    if managed.is_empty() {
        if let Some(existing) = &live {
            let id = ManagerId::new(BEFORE_FIRST_APPLY, Operation::Update, api_version, "");
            record_update(&mut managed, None, existing, id, api_version, now, schema);
        }
    }

    let id = ManagerId::new(manager, Operation::Apply, api_version, "");
    let base = live.clone().unwrap_or_else(|| Value::Object(Map::new()));
    let mut merged = merge(&base, applied, schema);
    let previous = managed.remove(&id);
    let last_set = previous.as_ref().map(|o| o.set.clone()).unwrap_or_default();
    managed.insert(
        id.clone(),
        Owned {
            set: to_field_set(applied, schema),
            api_version: api_version.to_string(),
            time: previous.and_then(|o| o.time),
        },
    );
    if !last_set.is_empty() {
        merged = prune(&merged, &managed, &last_set, schema);
    }

    let cmp = compare(live.as_ref(), Some(&merged), schema);
    let changed = cmp.modified.union(&cmp.added);
    let mut conflicts = Vec::new();
    for (owner, owned) in managed.iter().filter(|(owner, _)| **owner != id) {
        for path in owned.set.intersection(&changed).paths() {
            conflicts.push(Conflict {
                manager: owner.manager.clone(),
                path: path_string(&path),
                operation: owner.operation,
                api_version: owned.api_version.clone(),
                subresource: owner.subresource.clone(),
            });
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(ApplyError::Conflicts(conflicts));
    }
    for (owner, owned) in managed.iter_mut() {
        if *owner != id {
            owned.set = owned.set.difference(&changed).difference(&cmp.removed);
        }
    }
    if let Some(mine) = managed.get_mut(&id) {
        mine.set = mine.set.difference(&strip_set());
    }
    managed.retain(|_, owned| !owned.set.is_empty());

    let unchanged = live.as_ref() == Some(&merged);
    if !unchanged {
        if let Some(mine) = managed.get_mut(&id) {
            mine.time = Some(now.to_string());
        }
    }
    managed::cap_update_managers(&mut managed, managed::MAX_UPDATE_MANAGERS);
    let mut result = merged;
    write_managed_fields(&mut result, &managed);
    Ok(result)
}

/// Removes from `merged` what the applier owned last time (`last`) and nobody owns now.
/// A declared field counts as owned when anything below it is, so removing the applier's
/// last field of a struct removes the struct only if no one else holds part of it.
fn prune<S: SchemaNode>(
    merged: &Value,
    managed: &Managed,
    last: &Set,
    schema: Option<&S>,
) -> Value {
    let ensure = |set: &Set| ensure_named_fields_are_members(set, schema);
    let fields_of = |v: &Value| ensure(&to_field_set(v, schema));
    let last = ensure(last);
    let owned = ensure(
        &managed
            .values()
            .fold(Set::new(), |acc, o| acc.union(&o.set)),
    );
    let merged_set = fields_of(merged);

    let pruned = remove_items(merged, &last, schema);
    // Give back what the first cut took but someone owns...
    let lost = merged_set.difference(&fields_of(&pruned).union(&owned));
    let pruned = remove_items(merged, &lost, schema);
    // ...and what was never the applier's to remove.
    let lost = merged_set
        .difference(&fields_of(&pruned))
        .intersection(&last);
    remove_items(merged, &lost, schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typed::{ListType, Untyped};

    /// Just enough of a Deployment's schema: containers are a map list keyed by name,
    /// finalizers merge by patch strategy, labels are a free-form map.
    #[derive(Clone)]
    enum Schema {
        Struct(Vec<(&'static str, Schema)>),
        Map(Box<Schema>),
        Keyed(&'static str, Box<Schema>),
        MergeSet,
        Scalar,
    }

    impl SchemaNode for Schema {
        fn field(&self, name: &str) -> Option<Self> {
            match self {
                Schema::Struct(fields) => fields
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, s)| s.clone()),
                _ => None,
            }
        }
        fn items(&self) -> Option<Self> {
            match self {
                Schema::Map(v) | Schema::Keyed(_, v) => Some((**v).clone()),
                Schema::MergeSet => Some(Schema::Scalar),
                _ => None,
            }
        }
        fn list_type(&self) -> Option<ListType> {
            match self {
                Schema::Keyed(key, _) => Some(ListType::Map(vec![key.to_string()])),
                _ => None,
            }
        }
        fn patch_merge_key(&self) -> Option<String> {
            None
        }
        fn patch_strategies(&self) -> Vec<String> {
            match self {
                Schema::MergeSet => vec!["merge".into()],
                _ => Vec::new(),
            }
        }
        fn map_type(&self) -> Option<String> {
            None
        }
    }

    fn deployment_schema() -> Schema {
        use Schema::*;
        let container = Struct(vec![("name", Scalar), ("image", Scalar), ("args", Scalar)]);
        Struct(vec![
            ("apiVersion", Scalar),
            ("kind", Scalar),
            (
                "metadata",
                Struct(vec![
                    ("name", Scalar),
                    ("namespace", Scalar),
                    ("uid", Scalar),
                    ("resourceVersion", Scalar),
                    ("labels", Map(Box::new(Scalar))),
                    ("finalizers", MergeSet),
                ]),
            ),
            (
                "spec",
                Struct(vec![
                    ("replicas", Scalar),
                    ("paused", Scalar),
                    ("minReadySeconds", Scalar),
                    ("containers", Keyed("name", Box::new(container))),
                ]),
            ),
            ("status", Struct(vec![("replicas", Scalar)])),
        ])
    }

    const V: &str = "apps/v1";
    const T1: &str = "2024-05-01T10:00:00Z";
    const T2: &str = "2024-05-01T11:00:00Z";
    const T3: &str = "2024-05-01T12:00:00Z";

    fn s() -> Option<&'static Schema> {
        static SCHEMA: std::sync::OnceLock<Schema> = std::sync::OnceLock::new();
        Some(SCHEMA.get_or_init(deployment_schema))
    }

    fn deployment(spec: Value) -> Value {
        json!({"apiVersion": V, "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    /// Creates the object as `manager` with a plain (non-apply) write.
    fn created_by(manager: &str, spec: Value) -> Value {
        let mut obj = deployment(spec);
        update_managed_fields(None, &mut obj, manager, V, None, T1, s());
        obj["metadata"]["uid"] = json!("u-1");
        obj
    }

    fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
        obj["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager && e["operation"] == operation)
    }

    fn fields<'a>(obj: &'a Value, manager: &str, operation: &str) -> &'a Value {
        entry(obj, manager, operation).map_or(&Value::Null, |e| &e["fieldsV1"])
    }

    fn conflicts(err: ApplyError) -> Vec<Conflict> {
        match err {
            ApplyError::Conflicts(c) => c,
            other => panic!("expected conflicts, got {other:?}"),
        }
    }

    #[test]
    fn apply_over_a_client_side_apply_update_of_replicas_is_a_409_naming_the_path() {
        let live = created_by("kubectl-client-side-apply", json!({"replicas": 3}));
        let err = apply(
            Some(&live),
            &deployment(json!({"replicas": 5})),
            "kubectl",
            V,
            false,
            T2,
            s(),
        )
        .expect_err("replicas is owned by another manager");
        let api = err.to_api_error("apps", "deployments", "web");
        assert_eq!(api.code, 409);
        assert_eq!(api.reason, "Conflict");
        assert_eq!(
            api.message,
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        assert_eq!(
            api.details,
            Some(json!({"causes": [{
                "reason": "FieldManagerConflict",
                "message": "conflict with \"kubectl-client-side-apply\" using apps/v1",
                "field": ".spec.replicas"
            }]}))
        );
    }

    #[test]
    fn forced_apply_takes_the_conflicting_fields_from_their_owner() {
        let live = created_by(
            "kubectl-client-side-apply",
            json!({"replicas": 3, "paused": false}),
        );
        let out = apply(
            Some(&live),
            &deployment(json!({"replicas": 5})),
            "kubectl",
            V,
            true,
            T2,
            s(),
        )
        .expect("force overrides conflicts");
        assert_eq!(out["spec"]["replicas"], 5);
        assert_eq!(
            fields(&out, "kubectl", "Apply"),
            &json!({"f:spec": {"f:replicas": {}}})
        );
        assert_eq!(
            fields(&out, "kubectl-client-side-apply", "Update"),
            &json!({"f:spec": {".": {}, "f:paused": {}}})
        );
    }

    #[test]
    fn several_conflicts_are_listed_under_each_owner() {
        let live = created_by("a", json!({"replicas": 3}));
        let mut live2 = live.clone();
        live2["spec"]["paused"] = json!(true);
        live2["spec"]["minReadySeconds"] = json!(1);
        update_managed_fields(Some(&live), &mut live2, "b", V, None, T2, s());
        let applied = deployment(json!({"replicas": 4, "paused": false, "minReadySeconds": 2}));
        let err =
            apply(Some(&live2), &applied, "kubectl", V, false, T3, s()).expect_err("conflicts");
        assert_eq!(
            err.to_string(),
            "Apply failed with 3 conflicts: conflicts with \"a\" using apps/v1:\n- .spec.replicas\nconflicts with \"b\" using apps/v1:\n- .spec.minReadySeconds\n- .spec.paused"
        );
        assert_eq!(conflicts(err).len(), 3);
    }

    #[test]
    fn apply_removes_a_field_it_applied_before_but_no_longer_does() {
        let first = apply(
            None,
            &deployment(json!({"replicas": 2, "paused": true})),
            "kubectl",
            V,
            false,
            T1,
            s(),
        )
        .expect("create by apply");
        let second = apply(
            Some(&first),
            &deployment(json!({"replicas": 2})),
            "kubectl",
            V,
            false,
            T2,
            s(),
        )
        .expect("reapply");
        assert_eq!(second["spec"], json!({"replicas": 2}));
        assert_eq!(
            fields(&second, "kubectl", "Apply"),
            &json!({"f:spec": {"f:replicas": {}}})
        );
    }

    #[test]
    fn apply_leaves_fields_owned_by_others_alone() {
        let first = apply(
            None,
            &deployment(json!({"replicas": 2, "paused": true})),
            "kubectl",
            V,
            false,
            T1,
            s(),
        )
        .expect("create by apply");
        // A controller sets minReadySeconds and also writes paused (same value: shared).
        let mut updated = first.clone();
        updated["spec"]["minReadySeconds"] = json!(10);
        updated["status"] = json!({"replicas": 2});
        update_managed_fields(Some(&first), &mut updated, "controller", V, None, T2, s());
        let mut other = updated.clone();
        other["spec"]["paused"] = json!(true);
        let other_applied = apply(
            Some(&other),
            &deployment(json!({"paused": true})),
            "other",
            V,
            false,
            T2,
            s(),
        )
        .expect("sharing a value is no conflict");
        let out = apply(
            Some(&other_applied),
            &deployment(json!({"replicas": 2})),
            "kubectl",
            V,
            false,
            T3,
            s(),
        )
        .expect("reapply without paused");
        assert_eq!(
            out["spec"],
            json!({"replicas": 2, "paused": true, "minReadySeconds": 10})
        );
        assert_eq!(out["status"], json!({"replicas": 2}));
        assert_eq!(
            fields(&out, "other", "Apply"),
            &json!({"f:spec": {"f:paused": {}}})
        );
    }

    #[test]
    fn containers_merge_by_name_and_are_owned_by_key() {
        let first = apply(
            None,
            &deployment(json!({"containers": [{"name": "app", "image": "app:1"}]})),
            "kubectl",
            V,
            false,
            T1,
            s(),
        )
        .expect("create");
        let mut sidecar = first.clone();
        sidecar["spec"]["containers"]
            .as_array_mut()
            .expect("containers list")
            .push(json!({"name": "proxy", "image": "envoy"}));
        update_managed_fields(Some(&first), &mut sidecar, "injector", V, None, T2, s());
        let out = apply(
            Some(&sidecar),
            &deployment(json!({"containers": [{"name": "app", "image": "app:2"}]})),
            "kubectl",
            V,
            false,
            T3,
            s(),
        )
        .expect("own container only");
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "app", "image": "app:2"}, {"name": "proxy", "image": "envoy"}])
        );
        assert_eq!(
            fields(&out, "kubectl", "Apply"),
            &json!({"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}}}}})
        );
        assert_eq!(
            fields(&out, "injector", "Update"),
            &json!({"f:spec": {"f:containers": {"k:{\"name\":\"proxy\"}": {".": {}, "f:image": {}, "f:name": {}}}}})
        );
        // Dropping the container from the configuration deletes it; the injector's stays.
        let dropped = apply(
            Some(&out),
            &deployment(json!({"replicas": 1})),
            "kubectl",
            V,
            false,
            T3,
            s(),
        )
        .expect("drop container");
        assert_eq!(
            dropped["spec"]["containers"],
            json!([{"name": "proxy", "image": "envoy"}])
        );
    }

    #[test]
    fn managed_fields_entries_have_the_upstream_shape() {
        let out = apply(
            None,
            &json!({"apiVersion": V, "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"replicas": 1}}),
            "kubectl",
            V,
            false,
            T1,
            s(),
        )
        .expect("create");
        assert_eq!(
            out["metadata"]["managedFields"],
            json!([{
                "manager": "kubectl",
                "operation": "Apply",
                "apiVersion": "apps/v1",
                "time": T1,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}}}
            }])
        );
        let created = created_by("kube-controller-manager", json!({"replicas": 1}));
        assert_eq!(
            created["metadata"]["managedFields"],
            json!([{
                "manager": "kube-controller-manager",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "time": T1,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {".": {}, "f:replicas": {}}}
            }])
        );
    }

    #[test]
    fn applying_the_same_configuration_twice_changes_nothing() {
        let cfg = deployment(json!({"replicas": 2, "containers": [{"name": "app", "image": "a"}]}));
        let first = apply(None, &cfg, "kubectl", V, false, T1, s()).expect("create");
        let second = apply(Some(&first), &cfg, "kubectl", V, false, T2, s()).expect("reapply");
        assert_eq!(first, second);
    }

    #[test]
    fn an_update_takes_the_fields_it_changes_and_keeps_its_earlier_ones() {
        let live = created_by("creator", json!({"replicas": 1, "paused": false}));
        let mut new = live.clone();
        new["spec"]["replicas"] = json!(2);
        update_managed_fields(Some(&live), &mut new, "scaler", V, None, T2, s());
        let mut newer = new.clone();
        newer["spec"]["minReadySeconds"] = json!(5);
        update_managed_fields(Some(&new), &mut newer, "scaler", V, None, T3, s());
        assert_eq!(
            fields(&newer, "scaler", "Update"),
            &json!({"f:spec": {"f:minReadySeconds": {}, "f:replicas": {}}})
        );
        assert_eq!(
            entry(&newer, "scaler", "Update").map(|e| &e["time"]),
            Some(&json!(T3))
        );
        assert_eq!(
            fields(&newer, "creator", "Update"),
            &json!({"f:spec": {".": {}, "f:paused": {}}})
        );
    }

    #[test]
    fn an_update_that_changes_nothing_keeps_the_entry_time() {
        let live = created_by("creator", json!({"replicas": 1}));
        let mut same = live.clone();
        update_managed_fields(Some(&live), &mut same, "creator", V, None, T3, s());
        assert_eq!(same, live);
    }

    #[test]
    fn a_removed_field_is_taken_from_its_owner() {
        let live = created_by("creator", json!({"replicas": 1, "paused": true}));
        let mut new = live.clone();
        new["spec"].as_object_mut().map(|m| m.remove("paused"));
        update_managed_fields(Some(&live), &mut new, "editor", V, None, T2, s());
        assert_eq!(
            fields(&new, "creator", "Update"),
            &json!({"f:spec": {".": {}, "f:replicas": {}}})
        );
        assert!(entry(&new, "editor", "Update").is_none());
    }

    #[test]
    fn requests_can_replace_or_reset_managed_fields() {
        let live = created_by("creator", json!({"replicas": 1}));
        let mut reset = live.clone();
        reset["metadata"]["managedFields"] = json!([]);
        update_managed_fields(Some(&live), &mut reset, "editor", V, None, T2, s());
        assert!(reset["metadata"].get("managedFields").is_none());

        let mut replaced = live.clone();
        replaced["metadata"]["managedFields"] = json!([{"manager": "someone", "operation": "Update", "apiVersion": V, "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]);
        update_managed_fields(Some(&live), &mut replaced, "editor", V, None, T2, s());
        assert!(entry(&replaced, "someone", "Update").is_some());
        assert!(entry(&replaced, "creator", "Update").is_none());

        let mut garbage = live.clone();
        garbage["metadata"]["managedFields"] = json!([{"manager": "x"}]);
        update_managed_fields(Some(&live), &mut garbage, "editor", V, None, T2, s());
        assert_eq!(
            garbage["metadata"]["managedFields"],
            live["metadata"]["managedFields"]
        );
    }

    #[test]
    fn subresource_writes_are_their_own_managers_and_ignore_requested_managed_fields() {
        let live = created_by("creator", json!({"replicas": 1}));
        let mut new = live.clone();
        new["status"] = json!({"replicas": 1});
        new["metadata"]["managedFields"] = json!([]);
        update_managed_fields(Some(&live), &mut new, "creator", V, Some("status"), T2, s());
        let status = new["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["manager"] == "creator" && e["subresource"] == "status")
            .expect("status entry");
        assert_eq!(
            status["fieldsV1"],
            json!({"f:status": {".": {}, "f:replicas": {}}})
        );
        assert_eq!(
            new["metadata"]["managedFields"].as_array().map(Vec::len),
            Some(2)
        );
    }

    #[test]
    fn objects_without_managed_fields_are_tracked_from_their_first_apply() {
        let mut untracked = deployment(json!({"replicas": 1}));
        untracked["metadata"]["uid"] = json!("u-1");
        let mut updated = untracked.clone();
        updated["spec"]["replicas"] = json!(2);
        update_managed_fields(Some(&untracked), &mut updated, "editor", V, None, T2, s());
        assert!(updated["metadata"].get("managedFields").is_none());

        let err = apply(
            Some(&updated),
            &deployment(json!({"replicas": 3})),
            "kubectl",
            V,
            false,
            T3,
            s(),
        )
        .expect_err("existing fields belong to before-first-apply");
        assert_eq!(conflicts(err)[0].manager, BEFORE_FIRST_APPLY);
    }

    #[test]
    fn apply_rejects_managed_fields_duplicates_and_a_wrong_version() {
        let mut with_mf = deployment(json!({}));
        with_mf["metadata"]["managedFields"] = json!([]);
        assert_eq!(
            apply(None, &with_mf, "m", V, false, T1, s()),
            Err(ApplyError::Invalid(
                "metadata.managedFields must be nil".into()
            ))
        );
        let wrong = json!({"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "web"}});
        let err = apply(None, &wrong, "m", V, false, T1, s()).expect_err("version mismatch");
        assert_eq!(err.to_api_error("apps", "deployments", "web").code, 400);
        let dup = deployment(json!({"containers": [{"name": "a"}, {"name": "a"}]}));
        assert!(matches!(
            apply(None, &dup, "m", V, false, T1, s()),
            Err(ApplyError::Invalid(_))
        ));
    }

    #[test]
    fn finalizers_merge_as_a_set_between_appliers() {
        let mut cfg = deployment(json!({}));
        cfg["metadata"]["finalizers"] = json!(["a"]);
        let first = apply(None, &cfg, "one", V, false, T1, s()).expect("create");
        cfg["metadata"]["finalizers"] = json!(["b"]);
        let second = apply(Some(&first), &cfg, "two", V, false, T2, s()).expect("second applier");
        assert_eq!(second["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(
            fields(&second, "two", "Apply"),
            &json!({"f:metadata": {"f:finalizers": {"v:\"b\"": {}}}, "f:spec": {}})
        );
    }

    #[test]
    fn without_a_schema_lists_are_replaced_whole_and_owned_whole() {
        let cfg = json!({"apiVersion": "v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": {"items": [1, 2]}});
        let first = apply(None, &cfg, "m", "v1", false, T1, None::<&Untyped>).expect("create");
        let mut cfg2 = cfg.clone();
        cfg2["spec"]["items"] = json!([3]);
        let second =
            apply(Some(&first), &cfg2, "m", "v1", false, T2, None::<&Untyped>).expect("reapply");
        assert_eq!(second["spec"]["items"], json!([3]));
        assert_eq!(
            fields(&second, "m", "Apply"),
            &json!({"f:spec": {"f:items": {}}})
        );
    }
}
