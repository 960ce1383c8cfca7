//! ControllerRevisions shared by the DaemonSet and StatefulSet controllers: template snapshots,
//! their hash and revision numbers, reuse on rollback and the history limit.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::ResourceExt;
use serde_json::{json, Value};

use super::util::{apply_claim, claim_of, controller_of, is_gone_or_changed, Claim};
use super::{is_status, Error};

/// The label carrying a revision's hash, on revisions and (as upstream) on the pods made from them.
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
/// Upstream's default `revisionHistoryLimit`.
pub const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// The revision data for a template, as upstream stores it: a strategic merge patch that
/// replaces the owner's template, which `kubectl rollout undo` applies as is.
pub fn patch_for(template: &PodTemplateSpec) -> Result<Value, Error> {
    let mut t = serde_json::to_value(template)?;
    if let Value::Object(map) = &mut t {
        map.insert("$patch".into(), json!("replace"));
    }
    Ok(json!({"spec": {"template": t}}))
}

/// The template a revision's data holds, normalized through the typed model so it compares equal
/// to the owner's template whatever empty fields either serialization carried.
fn template_of(data: &Value) -> Option<Value> {
    let mut t = data.get("spec")?.get("template")?.clone();
    if let Value::Object(map) = &mut t {
        map.remove("$patch");
    }
    let typed: PodTemplateSpec = serde_json::from_value(t).ok()?;
    serde_json::to_value(typed).ok()
}

/// The template a revision holds, to create pods at that revision.
pub fn template_from(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    serde_json::from_value(template_of(&rev.data.as_ref()?.0)?).ok()
}

/// Upstream's hash of revision data: 32-bit FNV-1 over the data's JSON and the collision count,
/// rendered with the DNS-safe alphabet of `rand.SafeEncodeString`.
pub fn hash(data: &Value, collision_count: Option<i32>) -> String {
    let probe = collision_count.map(|c| c.to_string()).unwrap_or_default();
    safe_encode(&fnv1_32(&[data.to_string().as_bytes(), probe.as_bytes()]).to_string())
}

/// Go's `fnv.New32()` (FNV-1, not FNV-1a) over the concatenated chunks.
fn fnv1_32(chunks: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in chunks.iter().flat_map(|c| c.iter()) {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(*b);
    }
    h
}

fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// `<owner>-<hash>`, the owner name cut so the result is a valid name, as upstream.
pub fn revision_name(owner: &str, hash: &str) -> String {
    let prefix: String = owner.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// The owner's view of its history after [`sync`].
pub struct History {
    /// The revision matching the owner's current template.
    pub update: ControllerRevision,
    /// Every revision the owner controls, oldest first (including `update`).
    pub all: Vec<ControllerRevision>,
    /// The collision count to record in the owner's status.
    pub collision_count: i32,
}

/// What [`sync`] needs to know about the owner.
pub struct Owner<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub owner_ref: OwnerReference,
    pub template: &'a PodTemplateSpec,
    pub annotations: BTreeMap<String, String>,
    pub collision_count: Option<i32>,
}

/// The revisions `owner` controls after claiming, oldest first: orphans whose labels match
/// `selector` are adopted and owned ones that stopped matching are released (upstream's
/// ControllerRevisionControllerRefManager), so a set re-created after an orphaning delete takes
/// its history back instead of colliding with it.
pub async fn claim(
    client: &kube::Client,
    store: &Store<ControllerRevision>,
    namespace: &str,
    owner: &OwnerReference,
    selector: &LabelSelector,
) -> Result<Vec<ControllerRevision>, Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    let mut revs = Vec::new();
    for rev in store
        .state()
        .iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(namespace))
    {
        match claim_of(&owner.uid, false, selector, rev.as_ref()) {
            Some(claim) => match apply_claim(&api, rev.as_ref(), owner, claim).await {
                Ok(claimed) if claim == Claim::Adopt => revs.push(claimed),
                Ok(_) => {}
                Err(e) if is_gone_or_changed(&e) => {}
                Err(e) => return Err(e.into()),
            },
            None if controller_of(rev.as_ref()).is_some_and(|o| o.uid == owner.uid) => {
                revs.push(rev.as_ref().clone())
            }
            None => {}
        }
    }
    sort(&mut revs);
    Ok(revs)
}

fn sort(revs: &mut [ControllerRevision]) {
    revs.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

/// Which existing revision holds `template`, preferring the newest.
pub fn find_equal<'a>(
    revs: &'a [ControllerRevision],
    template: &PodTemplateSpec,
) -> Option<&'a ControllerRevision> {
    let want = serde_json::to_value(template).ok()?;
    revs.iter()
        .rev()
        .find(|r| r.data.as_ref().and_then(|d| template_of(&d.0)).as_ref() == Some(&want))
}

/// The next revision number after `revs`.
pub fn next_revision(revs: &[ControllerRevision]) -> i64 {
    revs.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// Makes sure a revision holds the owner's current template and is the newest: reuses an equal
/// one (bumping its number, as a rollback does upstream) or creates one, bumping the collision
/// count when the name is taken by different data.
pub async fn sync(
    client: &kube::Client,
    owner: &Owner<'_>,
    mut revs: Vec<ControllerRevision>,
) -> Result<History, Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), owner.namespace);
    let mut collision_count = owner.collision_count.unwrap_or(0);
    let next = next_revision(&revs);
    if let Some(existing) = find_equal(&revs, owner.template).cloned() {
        let update = if existing.revision + 1 == next {
            existing
        } else {
            let patch = json!({"revision": next});
            let updated = api
                .patch(
                    &existing.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            revs.retain(|r| r.name_any() != updated.name_any());
            revs.push(updated.clone());
            updated
        };
        sort(&mut revs);
        return Ok(History {
            update,
            all: revs,
            collision_count,
        });
    }
    let data = patch_for(owner.template)?;
    let mut labels = owner
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    loop {
        let h = hash(&data, (collision_count > 0).then_some(collision_count));
        let name = revision_name(owner.name, &h);
        labels.insert(CONTROLLER_REVISION_HASH.into(), h);
        let rev = ControllerRevision {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(owner.namespace.to_owned()),
                labels: Some(labels.clone()),
                annotations: (!owner.annotations.is_empty()).then(|| owner.annotations.clone()),
                owner_references: Some(vec![owner.owner_ref.clone()]),
                ..Default::default()
            },
            data: Some(RawExtension(data.clone())),
            revision: next,
        };
        match api.create(&PostParams::default(), &rev).await {
            Ok(created) => {
                revs.push(created.clone());
                sort(&mut revs);
                return Ok(History {
                    update: created,
                    all: revs,
                    collision_count,
                });
            }
            Err(e) if is_status(&e, 409) => {
                // Ours already (a lagging cache) if it holds the same template; else a collision.
                let found = api.get(&name).await?;
                let ours = controller_of(&found).is_some_and(|o| o.uid == owner.uid);
                if ours && find_equal(std::slice::from_ref(&found), owner.template).is_some() {
                    revs.retain(|r| r.name_any() != name);
                    revs.push(found.clone());
                    sort(&mut revs);
                    return Ok(History {
                        update: found,
                        all: revs,
                        collision_count,
                    });
                }
                collision_count += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The revisions beyond `limit` that no live pod or status still uses, oldest first.
pub fn to_truncate<'a>(
    revs: &'a [ControllerRevision],
    in_use: &HashSet<String>,
    limit: i32,
) -> Vec<&'a ControllerRevision> {
    let unused: Vec<&ControllerRevision> = revs
        .iter()
        .filter(|r| !in_use.contains(&r.name_any()))
        .collect();
    let keep = usize::try_from(limit.max(0)).unwrap_or(0);
    let excess = unused.len().saturating_sub(keep);
    unused.into_iter().take(excess).collect()
}

/// Deletes the revisions beyond the history limit.
pub async fn truncate(
    client: &kube::Client,
    namespace: &str,
    revs: &[ControllerRevision],
    in_use: &HashSet<String>,
    limit: Option<i32>,
) -> Result<(), Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    for rev in to_truncate(revs, in_use, limit.unwrap_or(DEFAULT_HISTORY_LIMIT)) {
        match api.delete(&rev.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_owned(), "web".to_owned())].into()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    fn rev(name: &str, revision: i64, image: &str) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            data: Some(RawExtension(
                patch_for(&template(image)).expect("serializable"),
            )),
            revision,
        }
    }

    #[test]
    fn fnv_and_safe_encoding_match_upstream() {
        assert_eq!(fnv1_32(&[b"a"]), 0x050c_5d7e);
        assert_eq!(fnv1_32(&[b"a", b""]), fnv1_32(&[b"", b"a"]));
        assert_eq!(safe_encode("84696446"), "d8bfb88b");
    }

    #[test]
    fn hash_is_stable_changes_with_template_and_collisions() {
        let a = patch_for(&template("nginx:1")).expect("serializable");
        let b = patch_for(&template("nginx:2")).expect("serializable");
        assert_eq!(hash(&a, None), hash(&a, None));
        assert_ne!(hash(&a, None), hash(&b, None));
        assert_ne!(hash(&a, None), hash(&a, Some(1)));
        assert!(hash(&a, None)
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn revision_data_is_a_replacing_template_patch() {
        let data = patch_for(&template("nginx:1")).expect("serializable");
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            data["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1"
        );
    }

    #[test]
    fn an_equal_template_is_found_newest_first() {
        let revs = [
            rev("a", 1, "nginx:1"),
            rev("b", 2, "nginx:2"),
            rev("c", 3, "nginx:1"),
        ];
        assert_eq!(
            find_equal(&revs, &template("nginx:1")).map(|r| r.name_any()),
            Some("c".to_owned())
        );
        assert!(find_equal(&revs, &template("nginx:3")).is_none());
        assert_eq!(next_revision(&revs), 4);
    }

    #[test]
    fn truncation_keeps_the_limit_and_revisions_in_use() {
        let revs: Vec<_> = (1..=5).map(|i| rev(&format!("r{i}"), i, "x")).collect();
        let in_use: HashSet<String> = ["r1".to_owned(), "r5".to_owned()].into();
        let names = |limit| -> Vec<String> {
            to_truncate(&revs, &in_use, limit)
                .iter()
                .map(|r| r.name_any())
                .collect()
        };
        assert_eq!(names(10), Vec::<String>::new());
        assert_eq!(names(1), ["r2", "r3"]);
        assert_eq!(names(0), ["r2", "r3", "r4"]);
    }

    #[test]
    fn long_owner_names_are_cut_for_revision_names() {
        let long = "a".repeat(300);
        assert_eq!(revision_name(&long, "xyz").len(), 223 + 4);
        assert_eq!(revision_name("web", "xyz"), "web-xyz");
    }
}
