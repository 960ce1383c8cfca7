//! Helpers shared by the workload controllers: pod state, owner references, label selectors.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};
use k8s_openapi::chrono::{DateTime, Utc};
use kube::Resource;

/// Whether `labels` satisfy `selector` (matchLabels and matchExpressions). An empty selector
/// matches everything, as upstream's `LabelSelectorAsSelector`.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &selector.match_labels {
        if ml.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    for expr in selector.match_expressions.iter().flatten() {
        let values = expr.values.clone().unwrap_or_default();
        let value = labels.get(&expr.key);
        let ok = match expr.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether a map selector (a Service's) matches `labels`; an empty map matches nothing here.
pub fn map_selector_matches(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let Some(labels) = labels else {
        return false;
    };
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The controller owner reference of `obj`, if any.
pub fn controller_of<K: Resource>(obj: &K) -> Option<&OwnerReference> {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` (blockOwnerDeletion set, as upstream controllers do).
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone()?,
        uid: owner.meta().uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// What a controller does with an object its selector could own (upstream's
/// ControllerRefManager): adopt a matching orphan, release an owned object that no longer
/// matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Adopt,
    Release,
}

/// The claim `owner_uid` (with `selector`) makes on `obj`, if any. An owner being deleted adopts
/// nothing; objects being deleted are neither adopted nor released.
pub fn claim_of<K: Resource>(
    owner_uid: &str,
    owner_deleting: bool,
    selector: &LabelSelector,
    obj: &K,
) -> Option<Claim> {
    let meta = obj.meta();
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    let empty = BTreeMap::new();
    let matches = selector_matches(selector, meta.labels.as_ref().unwrap_or(&empty));
    match controller_of(obj) {
        Some(r) if r.uid == owner_uid => (!matches).then_some(Claim::Release),
        Some(_) => None,
        // An empty selector would adopt everything: upstream refuses it too.
        None if matches && !owner_deleting && selector != &LabelSelector::default() => {
            Some(Claim::Adopt)
        }
        None => None,
    }
}

/// Applies `claim` with a merge patch of the owner references, guarded by the object's uid (the
/// patch fails if the object was replaced meanwhile). Returns the patched object.
pub async fn apply_claim<K>(
    api: &kube::Api<K>,
    obj: &K,
    owner: &OwnerReference,
    claim: Claim,
) -> Result<K, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let meta = obj.meta();
    let mut refs: Vec<OwnerReference> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner.uid)
        .cloned()
        .collect();
    if claim == Claim::Adopt {
        refs.push(owner.clone());
    }
    let patch = serde_json::json!({"metadata": {
        "ownerReferences": refs,
        "uid": meta.uid,
    }});
    api.patch(
        meta.name.as_deref().unwrap_or_default(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
}

/// Claims the pods of one namespace for an owner, as upstream's PodControllerRefManager:
/// matching orphans that `adoptable` accepts are adopted, owned pods that stopped matching the
/// selector are released. Returns the pods the owner controls afterwards (adopted ones
/// included). Objects that vanished or changed meanwhile are left to the next sync.
pub async fn claim_pods(
    api: &kube::Api<Pod>,
    pods: impl IntoIterator<Item = std::sync::Arc<Pod>>,
    owner: &OwnerReference,
    owner_deleting: bool,
    selector: &LabelSelector,
    adoptable: impl Fn(&Pod) -> bool,
) -> Result<Vec<std::sync::Arc<Pod>>, kube::Error> {
    let mut owned = Vec::new();
    let no_labels = BTreeMap::new();
    for pod in pods {
        let name = pod.meta().name.clone().unwrap_or_default();
        match claim_of(&owner.uid, owner_deleting, selector, pod.as_ref()) {
            Some(Claim::Adopt) if adoptable(&pod) => {
                match apply_claim(api, pod.as_ref(), owner, Claim::Adopt).await {
                    Ok(adopted) => {
                        tracing::info!(owner = %owner.name, kind = %owner.kind, pod = %name, "adopted pod");
                        owned.push(std::sync::Arc::new(adopted));
                    }
                    Err(e) if is_gone_or_changed(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            Some(Claim::Release) => {
                match apply_claim(api, pod.as_ref(), owner, Claim::Release).await {
                    Ok(_) => {
                        tracing::info!(owner = %owner.name, kind = %owner.kind, pod = %name, "released pod")
                    }
                    Err(e) if is_gone_or_changed(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            _ => {
                let labels = pod.meta().labels.as_ref().unwrap_or(&no_labels);
                if controller_of(pod.as_ref()).is_some_and(|r| r.uid == owner.uid)
                    && selector_matches(selector, labels)
                {
                    owned.push(pod);
                }
            }
        }
    }
    Ok(owned)
}

/// The owners in `store` (same namespace, selector matching) that may adopt `obj` when it has no
/// controller: what an orphan's event should wake.
pub fn orphan_claimants<O, K>(
    store: &kube::runtime::reflector::Store<O>,
    obj: &K,
    selector: impl Fn(&O) -> Option<&LabelSelector>,
) -> Vec<kube::runtime::reflector::ObjectRef<O>>
where
    O: Resource<DynamicType = ()> + Clone + 'static,
    K: Resource,
{
    let meta = obj.meta();
    if controller_of(obj).is_some() || meta.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let empty = BTreeMap::new();
    let labels = meta.labels.as_ref().unwrap_or(&empty);
    store
        .state()
        .iter()
        .filter(|o| o.meta().namespace == meta.namespace)
        .filter(|o| {
            selector(o)
                .is_some_and(|s| s != &LabelSelector::default() && selector_matches(s, labels))
        })
        .map(|o| kube::runtime::reflector::ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Whether a claim failed only because the object went away or changed under it (404, 409, or
/// 422 from the uid guard): the next sync sees the new state.
pub fn is_gone_or_changed(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if matches!(s.code, 404 | 409 | 422))
}

/// A reference to `obj` for an Event's involvedObject.
pub fn object_ref<K: Resource<DynamicType = ()>>(
    obj: &K,
) -> k8s_openapi::api::core::v1::ObjectReference {
    let meta = obj.meta();
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}

/// Records an Event about `obj` from `component` in the background (best effort, as client-go's
/// broadcaster): a reconcile never waits for it.
pub fn emit<K: Resource<DynamicType = ()>>(
    client: &kube::Client,
    component: &'static str,
    obj: &K,
    type_: &'static str,
    reason: &'static str,
    message: String,
) {
    emit_ref(client, component, object_ref(obj), type_, reason, message);
}

/// [`emit`] about an object known only by reference (e.g. a ReplicaSet's owner).
pub fn emit_ref(
    client: &kube::Client,
    component: &'static str,
    object: k8s_openapi::api::core::v1::ObjectReference,
    type_: &'static str,
    reason: &'static str,
    message: String,
) {
    let client = client.clone();
    tokio::spawn(async move {
        super::nodeutil::record_event(&client, component, object, type_, reason, message).await;
    });
}

/// The apiserver's message of a failed request (the whole error otherwise), for events.
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Whether the pod is in a terminal phase.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Whether the pod counts toward a workload's replicas: not terminal, not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod's Ready condition turned True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Option<DateTime<Utc>>> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t: &Time| t.0))
}

/// Whether the pod is Ready.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Whether the pod has been Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => (now - since).num_seconds() >= i64::from(min_ready_seconds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_adopt_matching_orphans_and_release_what_stops_matching() {
        let selector = LabelSelector {
            match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
            ..LabelSelector::default()
        };
        let pod = |labels: &[(&str, &str)], owner: Option<&str>| {
            let mut p = Pod::default();
            p.metadata.labels = Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            );
            p.metadata.owner_references = owner.map(|uid| {
                vec![OwnerReference {
                    uid: uid.to_owned(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]
            });
            p
        };
        let web = [("app", "web")];
        assert_eq!(
            claim_of("me", false, &selector, &pod(&web, None)),
            Some(Claim::Adopt)
        );
        assert_eq!(claim_of("me", true, &selector, &pod(&web, None)), None);
        assert_eq!(
            claim_of("me", false, &selector, &pod(&web, Some("me"))),
            None
        );
        assert_eq!(
            claim_of("me", false, &selector, &pod(&web, Some("other"))),
            None
        );
        assert_eq!(
            claim_of("me", false, &selector, &pod(&[("app", "db")], Some("me"))),
            Some(Claim::Release)
        );
        assert_eq!(
            claim_of("me", false, &selector, &pod(&[("app", "db")], None)),
            None
        );
        assert_eq!(
            claim_of("me", false, &LabelSelector::default(), &pod(&web, None)),
            None
        );
        let mut deleting = pod(&web, None);
        deleting.metadata.deletion_timestamp = Some(Time(Utc::now()));
        assert_eq!(claim_of("me", false, &selector, &deleting), None);
    }
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors_match_as_upstream() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        let cases = [
            ("matching labels", labels(&[("app", "web")]), true),
            (
                "other tier",
                labels(&[("app", "web"), ("tier", "fe")]),
                true,
            ),
            (
                "excluded tier",
                labels(&[("app", "web"), ("tier", "db")]),
                false,
            ),
            ("missing label", labels(&[("tier", "fe")]), false),
        ];
        for (name, l, want) in cases {
            assert_eq!(selector_matches(&sel, &l), want, "{name}");
        }
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
    }

    #[test]
    fn empty_service_selector_matches_nothing() {
        assert!(!map_selector_matches(
            &BTreeMap::new(),
            Some(&labels(&[("a", "b")]))
        ));
        assert!(map_selector_matches(
            &labels(&[("a", "b")]),
            Some(&labels(&[("a", "b")]))
        ));
    }
}
