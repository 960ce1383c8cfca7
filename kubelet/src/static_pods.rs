//! Static pods: manifests in --pod-manifest-path run without any apiserver; each gets a mirror
//! pod in the apiserver (owned by the Node) once it is reachable, which reports its status.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use component_base::Shutdown;
use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::chrono::{SecondsFormat, Utc};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// The pod's UID, a hash of its manifest and source (upstream's ConfigHashAnnotationKey).
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// Where the pod came from: `file` for static pods, `api` for the apiserver's.
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// When the kubelet first saw this version of the manifest.
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";
/// On mirror pods: the hash of the static pod they mirror.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// How often the manifest directory is read and mirror pods are reconciled.
const CHECK: Duration = Duration::from_secs(1);

/// Static pods by UID.
pub type StaticPods = BTreeMap<String, Pod>;
/// Mirror pods seen in the apiserver by (namespace, name); `None` until the pod watch synced.
pub type Mirrors = Option<Arc<HashMap<(String, String), Pod>>>;

/// Why a manifest was skipped (logged; the file is retried when it changes).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("decode {path}: {message}")]
    Decode { path: String, message: String },
    #[error("invalid pod in {path}: {message}")]
    Invalid { path: String, message: String },
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Whether `pod` (from the apiserver) is a mirror pod.
pub fn is_mirror(pod: &Pod) -> bool {
    annotation(pod, CONFIG_MIRROR).is_some()
}

/// The hash a mirror pod mirrors, or a static pod's own hash.
pub fn mirror_hash(pod: &Pod) -> Option<&str> {
    annotation(pod, CONFIG_MIRROR)
}

/// The static pod's hash (its UID).
pub fn config_hash(pod: &Pod) -> Option<&str> {
    annotation(pod, CONFIG_HASH)
}

/// Upstream's static pod name: `<name>-<nodeName>`.
pub fn static_pod_name(name: &str, node: &str) -> String {
    format!("{name}-{node}")
}

/// A 32-hex-digit UID from the manifest bytes, the node and the file (upstream hashes the decoded
/// object with MD5 the same way, then adds `host:` and `file:`).
fn uid_for(bytes: &[u8], node: &str, path: &Path) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.update(format!("host:{node}").as_bytes());
    h.update(format!("file:{}", path.display()).as_bytes());
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Decodes one manifest (YAML or JSON, a single v1 Pod) and applies what upstream's file source
/// does: UID from the hash, name suffixed with the node, namespace `default`, nodeName, the
/// config annotations and a toleration of every NoExecute taint.
pub fn static_pod_from_manifest(
    bytes: &[u8],
    path: &Path,
    node: &str,
    seen: &str,
) -> Result<Pod, ManifestError> {
    let shown = path.display().to_string();
    let text = std::str::from_utf8(bytes).map_err(|e| ManifestError::Decode {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    let value: serde_json::Value =
        serde_yaml_ng::from_str(text).map_err(|e| ManifestError::Decode {
            path: shown.clone(),
            message: e.to_string(),
        })?;
    let kind = value["kind"].as_str().unwrap_or_default();
    let api_version = value["apiVersion"].as_str().unwrap_or_default();
    if kind != "Pod" || api_version != "v1" {
        return Err(ManifestError::Decode {
            path: shown,
            message: format!("want apiVersion v1, kind Pod; got {api_version:?}, {kind:?}"),
        });
    }
    let mut pod: Pod = serde_json::from_value(value).map_err(|e| ManifestError::Decode {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    let invalid = |message: &str| ManifestError::Invalid {
        path: shown.clone(),
        message: message.to_string(),
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(invalid("metadata.name: Required value"));
    }
    let Some(spec) = pod.spec.as_mut() else {
        return Err(invalid("spec: Required value"));
    };
    if spec.containers.is_empty() {
        return Err(invalid("spec.containers: Required value"));
    }
    let uid = pod
        .metadata
        .uid
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| uid_for(bytes, node, path));
    spec.node_name = Some(node.to_string());
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    let tolerate_no_execute = Toleration {
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        ..Default::default()
    };
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    if !tolerations.contains(&tolerate_no_execute) {
        tolerations.push(tolerate_no_execute);
    }
    let m = &mut pod.metadata;
    m.uid = Some(uid.clone());
    m.name = Some(static_pod_name(&name, node));
    if m.namespace.as_deref().unwrap_or_default().is_empty() {
        m.namespace = Some("default".into());
    }
    let annotations = m.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(CONFIG_HASH.into(), uid);
    annotations.insert(CONFIG_SOURCE.into(), "file".into());
    annotations.insert(CONFIG_SEEN.into(), seen.to_string());
    pod.status = None;
    Ok(pod)
}

/// The mirror pod to create for `static_pod` on the node with UID `node_uid`.
pub fn mirror_pod(static_pod: &Pod, node: &str, node_uid: &str) -> Pod {
    let mut mirror = static_pod.clone();
    let m = &mut mirror.metadata;
    m.uid = None;
    m.resource_version = None;
    let hash = config_hash(static_pod).unwrap_or_default().to_string();
    m.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONFIG_MIRROR.into(), hash);
    m.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.to_string(),
        uid: node_uid.to_string(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    mirror.status = None;
    mirror
}

/// The manifest files of `dir`: regular files not starting with a dot, sorted.
fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Reads the manifest directory; unchanged files keep their earlier pod (and config.seen).
struct FileSource {
    dir: PathBuf,
    node: String,
    /// Last content and decoded pod per file.
    files: HashMap<PathBuf, (Vec<u8>, Option<Pod>)>,
}

impl FileSource {
    fn scan(&mut self) -> StaticPods {
        let mut next = HashMap::new();
        for path in manifest_files(&self.dir) {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(source) => {
                    let e = ManifestError::Read {
                        path: path.display().to_string(),
                        source,
                    };
                    tracing::warn!(error = %e, "static pod manifest");
                    continue;
                }
            };
            let entry = match self.files.remove(&path) {
                Some((old, pod)) if old == bytes => (old, pod),
                _ => {
                    let seen = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
                    let pod = match static_pod_from_manifest(&bytes, &path, &self.node, &seen) {
                        Ok(pod) => Some(pod),
                        Err(e) => {
                            tracing::warn!(error = %e, "skipping static pod manifest");
                            None
                        }
                    };
                    (bytes, pod)
                }
            };
            next.insert(path, entry);
        }
        self.files = next;
        let mut pods = StaticPods::new();
        for (_, pod) in self.files.values() {
            if let Some(pod) = pod {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                pods.insert(uid, pod.clone());
            }
        }
        pods
    }
}

/// Reads `dir` now and returns the static pods it holds, plus a task that re-reads it every
/// second and publishes changes until `shutdown`.
pub fn watch_dir(
    dir: PathBuf,
    node: String,
    shutdown: Shutdown,
) -> (
    watch::Receiver<StaticPods>,
    impl std::future::Future<Output = ()>,
) {
    let mut source = FileSource {
        dir,
        node,
        files: HashMap::new(),
    };
    let (tx, rx) = watch::channel(source.scan());
    let task = async move {
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(CHECK) => {}
            }
            let pods = source.scan();
            tx.send_if_modified(|current| {
                if *current == pods {
                    false
                } else {
                    *current = pods;
                    true
                }
            });
        }
    };
    (rx, task)
}

/// What to do about one mirror pod, decided from the static pods and the apiserver's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorAction {
    /// Create a mirror for the static pod with this UID.
    Create(String),
    /// Delete (immediately) the mirror pod (namespace, name, uid).
    Delete(String, String, String),
}

/// Mirrors missing for static pods are created; mirrors being deleted, of an old manifest
/// version, or of no static pod at all are deleted (and re-created on a later pass). A regular
/// pod that happens to have the name is left alone.
pub fn mirror_actions(
    statics: &StaticPods,
    mirrors: &HashMap<(String, String), Pod>,
) -> Vec<MirrorAction> {
    let mut actions = Vec::new();
    let key = |p: &Pod| {
        (
            p.metadata.namespace.clone().unwrap_or_default(),
            p.metadata.name.clone().unwrap_or_default(),
        )
    };
    let delete = |p: &Pod| {
        let (ns, name) = key(p);
        MirrorAction::Delete(ns, name, p.metadata.uid.clone().unwrap_or_default())
    };
    let mut wanted: HashMap<(String, String), &Pod> = HashMap::new();
    for (uid, s) in statics {
        wanted.insert(key(s), s);
        match mirrors.get(&key(s)) {
            None => actions.push(MirrorAction::Create(uid.clone())),
            Some(m) if !is_mirror(m) => {}
            Some(m)
                if m.metadata.deletion_timestamp.is_some() || mirror_hash(m) != config_hash(s) =>
            {
                actions.push(delete(m))
            }
            Some(_) => {}
        }
    }
    let mut orphans: Vec<&Pod> = mirrors
        .iter()
        .filter(|(k, m)| is_mirror(m) && !wanted.contains_key(*k))
        .map(|(_, m)| m)
        .collect();
    orphans.sort_by_key(|m| key(m));
    actions.extend(orphans.into_iter().map(delete));
    actions
}

/// Keeps one mirror pod per static pod in the apiserver until `shutdown`.
pub async fn manage_mirrors(
    client: kube::Client,
    node: String,
    mut statics: watch::Receiver<StaticPods>,
    mut mirrors: watch::Receiver<Mirrors>,
    shutdown: Shutdown,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node_uid: Option<String> = None;
    let (mut statics_open, mut mirrors_open) = (true, true);
    loop {
        let current = statics.borrow_and_update().clone();
        let seen = mirrors.borrow_and_update().clone();
        if let Some(seen) = seen {
            for action in mirror_actions(&current, &seen) {
                match action {
                    MirrorAction::Create(uid) => {
                        if node_uid.is_none() {
                            node_uid = match nodes.get_opt(&node).await {
                                Ok(n) => n.and_then(|n| n.metadata.uid),
                                Err(e) => {
                                    tracing::debug!(error = %e, "get node for mirror pods");
                                    None
                                }
                            };
                        }
                        let (Some(owner_uid), Some(s)) = (node_uid.clone(), current.get(&uid))
                        else {
                            continue;
                        };
                        if !create_mirror(&client, &node, &owner_uid, s).await {
                            // The Node may have been re-created with a new UID.
                            node_uid = None;
                        }
                    }
                    MirrorAction::Delete(ns, name, uid) => {
                        delete_mirror(&client, &ns, &name, &uid).await;
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            r = statics.changed(), if statics_open => statics_open = r.is_ok(),
            r = mirrors.changed(), if mirrors_open => mirrors_open = r.is_ok(),
            _ = tokio::time::sleep(CHECK) => {}
        }
    }
}

/// Creates the mirror pod; false when the apiserver refused it.
async fn create_mirror(client: &kube::Client, node: &str, node_uid: &str, s: &Pod) -> bool {
    let mirror = mirror_pod(s, node, node_uid);
    let ns = mirror.metadata.namespace.clone().unwrap_or_default();
    let name = mirror.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    match api.create(&PostParams::default(), &mirror).await {
        Ok(_) => {
            tracing::info!(pod = %format!("{ns}/{name}"), "created mirror pod");
            true
        }
        // The watch has not shown it yet.
        Err(kube::Error::Api(e)) if e.code == 409 => true,
        Err(e) => {
            tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "create mirror pod");
            false
        }
    }
}

async fn delete_mirror(client: &kube::Client, ns: &str, name: &str, uid: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), "deleted mirror pod"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "delete mirror pod"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  hostNetwork: true\n  containers:\n  - name: etcd\n    image: etcd:3\n";

    fn parse(text: &str) -> Result<Pod, ManifestError> {
        static_pod_from_manifest(
            text.as_bytes(),
            Path::new("/etc/kubernetes/manifests/etcd.yaml"),
            "node-a",
            "2024-01-01T00:00:00.000000000Z",
        )
    }

    #[test]
    fn a_manifest_becomes_a_static_pod_named_after_the_node_with_a_content_uid() {
        let pod = parse(MANIFEST).expect("valid manifest");
        let uid = pod.metadata.uid.clone().expect("uid");
        assert_eq!(uid.len(), 32);
        assert!(uid.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(pod.metadata.name.as_deref(), Some("etcd-node-a"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(config_hash(&pod), Some(uid.as_str()));
        assert_eq!(annotation(&pod, CONFIG_SOURCE), Some("file"));
        assert!(annotation(&pod, CONFIG_SEEN).is_some());
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("node-a"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        let t = &spec.tolerations.as_ref().expect("tolerations")[0];
        assert_eq!(t.operator.as_deref(), Some("Exists"));
        assert_eq!(t.effect.as_deref(), Some("NoExecute"));

        // Same bytes, same UID; any edit, a new one.
        assert_eq!(
            parse(MANIFEST).expect("valid").metadata.uid,
            Some(uid.clone())
        );
        let edited = MANIFEST.replace("etcd:3", "etcd:4");
        assert_ne!(parse(&edited).expect("valid").metadata.uid, Some(uid));
        // No namespace means default.
        let plain = MANIFEST.replace("  namespace: kube-system\n", "");
        assert_eq!(
            parse(&plain).expect("valid").metadata.namespace.as_deref(),
            Some("default")
        );
    }

    #[test]
    fn bad_manifests_are_rejected() {
        let cases = [
            ("not yaml", "{{{"),
            (
                "not a pod",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n",
            ),
            (
                "no name",
                "apiVersion: v1\nkind: Pod\nmetadata: {}\nspec:\n  containers:\n  - name: c\n",
            ),
            (
                "no containers",
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers: []\n",
            ),
        ];
        for (name, text) in cases {
            assert!(parse(text).is_err(), "{name}");
        }
    }

    #[test]
    fn mirror_pods_carry_the_hash_and_a_controller_reference_to_the_node() {
        let pod = parse(MANIFEST).expect("valid");
        let mirror = mirror_pod(&pod, "node-a", "node-uid");
        assert_eq!(mirror_hash(&mirror), config_hash(&pod));
        assert_eq!(mirror.metadata.uid, None);
        let owner = &mirror.metadata.owner_references.as_ref().expect("owners")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Node", "node-a", "node-uid")
        );
        assert_eq!(owner.controller, Some(true));
    }

    #[test]
    fn mirror_actions_create_missing_and_replace_stale_or_deleted_mirrors() {
        let pod = parse(MANIFEST).expect("valid");
        let uid = pod.metadata.uid.clone().expect("uid");
        let statics: StaticPods = [(uid.clone(), pod.clone())].into();
        let key = ("kube-system".to_string(), "etcd-node-a".to_string());
        let with_uid = |mut p: Pod, u: &str| {
            p.metadata.uid = Some(u.into());
            p
        };
        let current = with_uid(mirror_pod(&pod, "node-a", "n"), "m1");

        let cases: Vec<(&str, Vec<Pod>, Vec<MirrorAction>)> = vec![
            ("missing", vec![], vec![MirrorAction::Create(uid.clone())]),
            ("current", vec![current.clone()], vec![]),
            (
                "being deleted",
                vec![{
                    let mut m = current.clone();
                    m.metadata.deletion_timestamp = Some(
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Utc::now()),
                    );
                    m
                }],
                vec![MirrorAction::Delete(
                    key.0.clone(),
                    key.1.clone(),
                    "m1".into(),
                )],
            ),
            (
                "old version",
                vec![{
                    let mut m = current.clone();
                    m.metadata
                        .annotations
                        .as_mut()
                        .expect("annotations")
                        .insert(CONFIG_MIRROR.into(), "old".into());
                    m
                }],
                vec![MirrorAction::Delete(
                    key.0.clone(),
                    key.1.clone(),
                    "m1".into(),
                )],
            ),
            (
                "a regular pod with the name",
                vec![{
                    let mut m = current.clone();
                    m.metadata.annotations = None;
                    m
                }],
                vec![],
            ),
            (
                "an orphaned mirror",
                vec![current.clone(), {
                    let mut m = current.clone();
                    m.metadata.name = Some("gone-node-a".into());
                    m.metadata.uid = Some("m2".into());
                    m
                }],
                vec![MirrorAction::Delete(
                    key.0.clone(),
                    "gone-node-a".into(),
                    "m2".into(),
                )],
            ),
        ];
        for (name, pods, want) in cases {
            let mirrors: HashMap<(String, String), Pod> = pods
                .into_iter()
                .map(|p| {
                    (
                        (
                            p.metadata.namespace.clone().unwrap_or_default(),
                            p.metadata.name.clone().unwrap_or_default(),
                        ),
                        p,
                    )
                })
                .collect();
            assert_eq!(mirror_actions(&statics, &mirrors), want, "{name}");
        }
    }
}
