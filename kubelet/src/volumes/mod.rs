//! Pod volumes under `<root-dir>/pods/<uid>/volumes/<plugin>/<name>`: emptyDir (disk or tmpfs),
//! hostPath with its type checks, configMap, secret, downwardAPI and projected (with
//! service-account tokens from the TokenRequest API, refreshed at 80% of their lifetime), and the
//! CRI mounts (subPath, readOnly) that put them into containers.

pub mod atomic_writer;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, HostPathVolumeSource, KeyToPath, Pod, Secret,
    ServiceAccount, Volume,
};
use kube::api::{Api, PostParams};

use crate::cri::api;
use crate::pod::spec;
use atomic_writer::{FileProjection, Payload};

const EMPTY_DIR: &str = "kubernetes.io~empty-dir";
const CONFIG_MAP: &str = "kubernetes.io~configmap";
const SECRET: &str = "kubernetes.io~secret";
const DOWNWARD_API: &str = "kubernetes.io~downward-api";
const PROJECTED: &str = "kubernetes.io~projected";

/// Default permission bits of configMap, secret, downwardAPI and projected files (0644).
const DEFAULT_MODE: i32 = 0o644;

/// Why a pod's volumes could not be set up (upstream reports these as FailedMount).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("hostPath type check failed: {path} is not a {want}")]
    HostPathType { path: String, want: &'static str },
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("configmap references non-existent config key: {0}")]
    MissingConfigMapKey(String),
    #[error("references non-existent secret key: {0}")]
    MissingSecretKey(String),
    #[error("volume {volume}: {message}")]
    Invalid { volume: String, message: String },
    #[error("volume {volume}: {path}")]
    Io {
        volume: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("fetch {what}")]
    Api {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("mount tmpfs at {0}: {1}")]
    Tmpfs(String, String),
    #[error("volumeMount {0:?} refers to no volume of the pod")]
    UnknownVolume(String),
    #[error("invalid subPath {0:?}: must be a relative path without '..'")]
    SubPath(String),
}

/// `<root>/pods/<uid>`.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

fn volume_dir(root: &Path, uid: &str, plugin: &str, name: &str) -> PathBuf {
    pod_dir(root, uid).join("volumes").join(plugin).join(name)
}

/// A set-up volume: where it is on the host and whether containers must mount it read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    pub host_path: PathBuf,
    pub read_only: bool,
}

/// A service-account token fetched for a pod.
#[derive(Debug, Clone)]
struct Token {
    token: String,
    fetched: Instant,
    lifetime: Duration,
}

impl Token {
    /// Upstream refreshes at 80% of the lifetime (or after 24 h).
    fn due(&self) -> bool {
        let age = self.fetched.elapsed();
        age >= self.lifetime.mul_f64(0.8) || age >= Duration::from_secs(24 * 3600)
    }
}

/// One pod's volumes and the tokens fetched for them; kept by the pod's worker.
#[derive(Debug)]
pub struct PodVolumes {
    pub mounted: HashMap<String, Mounted>,
    tokens: HashMap<(String, i64), Token>,
    last_sync: Option<Instant>,
    /// How often API-backed contents are re-read (--sync-frequency).
    resync: Duration,
}

impl Default for PodVolumes {
    fn default() -> Self {
        Self::new(Duration::from_secs(60))
    }
}
/// How soon a failed refresh of set-up volumes is retried.
const RETRY: Duration = Duration::from_secs(10);

impl PodVolumes {
    pub fn new(resync: Duration) -> Self {
        PodVolumes {
            mounted: HashMap::new(),
            tokens: HashMap::new(),
            last_sync: None,
            resync,
        }
    }

    /// Whether [`PodVolumes::sync`] has work: never ran, contents are stale, or a token is due.
    pub fn needs_sync(&self) -> bool {
        self.last_sync.is_none_or(|t| t.elapsed() >= self.resync)
            || self.tokens.values().any(Token::due)
    }

    /// Sets up (idempotently) every volume of `pod`; contents from the API are written only
    /// when they changed.
    pub async fn sync(
        &mut self,
        client: &kube::Client,
        root: &Path,
        pod: &Pod,
    ) -> Result<(), VolumeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let mut mounted = HashMap::new();
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            match self.sync_one(client, root, &uid, &namespace, pod, v).await {
                Ok(m) => {
                    mounted.insert(v.name.clone(), m);
                }
                Err(e) => {
                    if !self.mounted.is_empty() {
                        // Set up before: keep serving the old contents, retry a little later
                        // rather than on every resync (e.g. while the apiserver is down).
                        self.last_sync =
                            Instant::now().checked_sub(self.resync.saturating_sub(RETRY));
                    }
                    return Err(e);
                }
            }
        }
        self.mounted = mounted;
        self.last_sync = Some(Instant::now());
        Ok(())
    }

    async fn sync_one(
        &mut self,
        client: &kube::Client,
        root: &Path,
        uid: &str,
        namespace: &str,
        pod: &Pod,
        v: &Volume,
    ) -> Result<Mounted, VolumeError> {
        let io = |path: &Path| {
            let volume = v.name.clone();
            let path = path.display().to_string();
            move |source| VolumeError::Io {
                volume,
                path,
                source,
            }
        };
        if let Some(hp) = &v.host_path {
            return host_path(hp).map(|host_path| Mounted {
                host_path,
                read_only: false,
            });
        }
        if let Some(ed) = &v.empty_dir {
            let dir = volume_dir(root, uid, EMPTY_DIR, &v.name);
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            if ed.medium.as_deref() == Some("Memory") {
                let size = ed.size_limit.as_ref().map(|q| q.0.clone());
                ensure_tmpfs(&dir, size.as_deref())?;
            }
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .map_err(io(&dir))?;
            return Ok(Mounted {
                host_path: dir,
                read_only: false,
            });
        }
        let (plugin, payload) = if let Some(cm) = &v.config_map {
            let data = get_config_map(client, namespace, &cm.name).await?;
            let payload = match data {
                Some(data) => key_payload(
                    &data,
                    cm.items.as_deref(),
                    cm.default_mode.unwrap_or(DEFAULT_MODE),
                    cm.optional.unwrap_or(false),
                    VolumeError::MissingConfigMapKey,
                )?,
                None if cm.optional.unwrap_or(false) => Payload::new(),
                None => {
                    return Err(VolumeError::NotFound {
                        kind: "configmap",
                        name: cm.name.clone(),
                    })
                }
            };
            (CONFIG_MAP, payload)
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let payload = match get_secret(client, namespace, &name).await? {
                Some(data) => key_payload(
                    &data,
                    s.items.as_deref(),
                    s.default_mode.unwrap_or(DEFAULT_MODE),
                    s.optional.unwrap_or(false),
                    VolumeError::MissingSecretKey,
                )?,
                None if s.optional.unwrap_or(false) => Payload::new(),
                None => {
                    return Err(VolumeError::NotFound {
                        kind: "secret",
                        name,
                    })
                }
            };
            (SECRET, payload)
        } else if let Some(d) = &v.downward_api {
            let payload = downward_payload(
                pod,
                d.items.as_deref().unwrap_or_default(),
                d.default_mode.unwrap_or(DEFAULT_MODE),
                &v.name,
            )?;
            (DOWNWARD_API, payload)
        } else if let Some(p) = &v.projected {
            let mode = p.default_mode.unwrap_or(DEFAULT_MODE);
            let mut payload = Payload::new();
            for source in p.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    match get_config_map(client, namespace, &cm.name).await? {
                        Some(data) => payload.extend(key_payload(
                            &data,
                            cm.items.as_deref(),
                            mode,
                            cm.optional.unwrap_or(false),
                            VolumeError::MissingConfigMapKey,
                        )?),
                        None if cm.optional.unwrap_or(false) => {}
                        None => {
                            return Err(VolumeError::NotFound {
                                kind: "configmap",
                                name: cm.name.clone(),
                            })
                        }
                    }
                }
                if let Some(s) = &source.secret {
                    match get_secret(client, namespace, &s.name).await? {
                        Some(data) => payload.extend(key_payload(
                            &data,
                            s.items.as_deref(),
                            mode,
                            s.optional.unwrap_or(false),
                            VolumeError::MissingSecretKey,
                        )?),
                        None if s.optional.unwrap_or(false) => {}
                        None => {
                            return Err(VolumeError::NotFound {
                                kind: "secret",
                                name: s.name.clone(),
                            })
                        }
                    }
                }
                if let Some(d) = &source.downward_api {
                    payload.extend(downward_payload(
                        pod,
                        d.items.as_deref().unwrap_or_default(),
                        mode,
                        &v.name,
                    )?);
                }
                if let Some(t) = &source.service_account_token {
                    let expiration = t.expiration_seconds.unwrap_or(3600);
                    let audience = t.audience.clone().unwrap_or_default();
                    let token = self
                        .token(client, pod, &audience, expiration)
                        .await?
                        .to_string();
                    // Upstream writes tokens 0600 unless a mode was given.
                    let mode = p.default_mode.map_or(0o600, |m| m as u32);
                    payload.insert(
                        t.path.clone(),
                        FileProjection {
                            data: token.into_bytes(),
                            mode,
                        },
                    );
                }
            }
            (PROJECTED, payload)
        } else {
            return Err(VolumeError::Invalid {
                volume: v.name.clone(),
                message: "unsupported volume type".into(),
            });
        };
        let dir = volume_dir(root, uid, plugin, &v.name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        if plugin == SECRET || plugin == PROJECTED {
            // Secrets and tokens never touch the disk, as upstream keeps them on tmpfs.
            ensure_tmpfs(&dir, None)?;
        }
        atomic_writer::write(&dir, &payload).map_err(io(&dir))?;
        Ok(Mounted {
            host_path: dir,
            read_only: true,
        })
    }

    /// A token for the pod's service account, bound to the pod; cached until due.
    async fn token(
        &mut self,
        client: &kube::Client,
        pod: &Pod,
        audience: &str,
        expiration: i64,
    ) -> Result<&str, VolumeError> {
        let key = (audience.to_string(), expiration);
        if self.tokens.get(&key).is_none_or(Token::due) {
            let m = &pod.metadata;
            let sa = pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into());
            let api: Api<ServiceAccount> =
                Api::namespaced(client.clone(), m.namespace.as_deref().unwrap_or("default"));
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: if audience.is_empty() {
                        Vec::new()
                    } else {
                        vec![audience.to_string()]
                    },
                    expiration_seconds: Some(expiration),
                    bound_object_ref: Some(BoundObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        name: m.name.clone(),
                        uid: m.uid.clone(),
                    }),
                },
                ..Default::default()
            };
            let response = api
                .create_token_request(&sa, &PostParams::default(), &request)
                .await
                .map_err(|source| VolumeError::Api {
                    what: format!("token for service account {sa:?}"),
                    source: Box::new(source),
                })?;
            let Some(status) = response.status else {
                return Err(VolumeError::Invalid {
                    volume: format!("token for service account {sa:?}"),
                    message: "the TokenRequest came back without a status".into(),
                });
            };
            let lifetime = (status.expiration_timestamp.0 - k8s_openapi::chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::from_secs(expiration.max(0) as u64));
            self.tokens.insert(
                key.clone(),
                Token {
                    token: status.token,
                    fetched: Instant::now(),
                    lifetime,
                },
            );
        }
        Ok(&self.tokens[&key].token)
    }
}

fn file_type_name(path: &Path) -> Option<&'static str> {
    let meta = std::fs::metadata(path).ok()?;
    let t = meta.file_type();
    Some(if t.is_dir() {
        "Directory"
    } else if t.is_file() {
        "File"
    } else if t.is_socket() {
        "Socket"
    } else if t.is_char_device() {
        "CharDevice"
    } else if t.is_block_device() {
        "BlockDevice"
    } else {
        "Other"
    })
}

/// Checks (or creates) a hostPath as its `type` says; returns the path.
fn host_path(hp: &HostPathVolumeSource) -> Result<PathBuf, VolumeError> {
    let path = PathBuf::from(&hp.path);
    let shown = hp.path.clone();
    let want = hp.type_.as_deref().unwrap_or("");
    let io = |source| VolumeError::Io {
        volume: shown.clone(),
        path: shown.clone(),
        source,
    };
    match want {
        "" => {}
        "DirectoryOrCreate" => {
            if !path.exists() {
                std::fs::create_dir_all(&path).map_err(io)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .map_err(io)?;
            } else if file_type_name(&path) != Some("Directory") {
                return Err(VolumeError::HostPathType {
                    path: shown,
                    want: "directory",
                });
            }
        }
        "FileOrCreate" => {
            if !path.exists() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                std::fs::File::create(&path).map_err(io)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                    .map_err(io)?;
            } else if file_type_name(&path) != Some("File") {
                return Err(VolumeError::HostPathType {
                    path: shown,
                    want: "file",
                });
            }
        }
        kind => {
            let want = match kind {
                "Directory" => "directory",
                "File" => "file",
                "Socket" => "socket",
                "CharDevice" => "character device",
                "BlockDevice" => "block device",
                other => {
                    return Err(VolumeError::Invalid {
                        volume: shown,
                        message: format!("unsupported hostPath type {other:?}"),
                    })
                }
            };
            if file_type_name(&path) != Some(kind) {
                return Err(VolumeError::HostPathType { path: shown, want });
            }
        }
    }
    Ok(path)
}

fn is_tmpfs_mount(dir: &Path) -> bool {
    let dir = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(&dir))
}

fn ensure_tmpfs(dir: &Path, size: Option<&str>) -> Result<(), VolumeError> {
    if is_tmpfs_mount(dir) {
        return Ok(());
    }
    let mut cmd = std::process::Command::new("mount");
    cmd.args(["-t", "tmpfs"]);
    if let Some(size) = size.and_then(|s| crate::pod::resources::parse_quantity(s, 1.0)) {
        cmd.args(["-o", &format!("size={size}")]);
    }
    let out = cmd
        .arg("tmpfs")
        .arg(dir)
        .output()
        .map_err(|e| VolumeError::Tmpfs(dir.display().to_string(), e.to_string()))?;
    if !out.status.success() {
        return Err(VolumeError::Tmpfs(
            dir.display().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// Unmounts the pod's tmpfs volumes and removes its directory.
pub fn teardown(root: &Path, uid: &str) {
    let dir = pod_dir(root, uid);
    let prefix = dir.to_string_lossy().into_owned();
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&format!("{prefix}/")))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = std::process::Command::new("umount").arg(&m).status();
    }
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "remove pod directory");
        }
    }
}

async fn get_config_map(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, VolumeError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = api.get_opt(name).await.map_err(|source| VolumeError::Api {
        what: format!("configmap {namespace}/{name}"),
        source: Box::new(source),
    })?;
    Ok(cm.map(|cm| {
        let mut data: BTreeMap<String, Vec<u8>> = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        data.extend(
            cm.binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0)),
        );
        data
    }))
}

async fn get_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, VolumeError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get_opt(name).await.map_err(|source| VolumeError::Api {
        what: format!("secret {namespace}/{name}"),
        source: Box::new(source),
    })?;
    Ok(secret.map(|s| {
        let mut data: BTreeMap<String, Vec<u8>> = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        data.extend(
            s.string_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes())),
        );
        data
    }))
}

/// The files of a configMap or secret source: every key, or just `items` (a missing item key
/// is an error unless the source is optional).
fn key_payload(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    missing: fn(String) -> VolumeError,
) -> Result<Payload, VolumeError> {
    let mut payload = Payload::new();
    match items {
        None | Some([]) => {
            for (k, v) in data {
                payload.insert(
                    k.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: default_mode as u32,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        payload.insert(
                            item.path.clone(),
                            FileProjection {
                                data: v.clone(),
                                mode: item.mode.unwrap_or(default_mode) as u32,
                            },
                        );
                    }
                    None if optional => {}
                    None => return Err(missing(item.key.clone())),
                }
            }
        }
    }
    Ok(payload)
}

/// Go's `%q` for the label and annotation files (`key="value"` lines).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Upstream's FormatMap: sorted `key="value"` lines.
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn downward_payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    volume: &str,
) -> Result<Payload, VolumeError> {
    let mut payload = Payload::new();
    let invalid = |message: String| VolumeError::Invalid {
        volume: volume.to_string(),
        message,
    };
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            match f.field_path.as_str() {
                "metadata.labels" => format_map(pod.metadata.labels.as_ref()),
                "metadata.annotations" => format_map(pod.metadata.annotations.as_ref()),
                path => spec::field_value(pod, path, "", "").map_err(|e| invalid(e.to_string()))?,
            }
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.clone().unwrap_or_default();
            let container: Container = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .find(|c| c.name == name)
                .cloned()
                .ok_or_else(|| invalid(format!("no container {name:?}")))?;
            spec::resource_value(
                &container,
                &r.resource,
                r.divisor.as_ref().map(|d| d.0.as_str()),
            )
            .map_err(|e| invalid(e.to_string()))?
        } else {
            continue;
        };
        payload.insert(
            item.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode: item.mode.unwrap_or(default_mode) as u32,
            },
        );
    }
    Ok(payload)
}

/// The CRI mounts of `container`: each volumeMount's volume (plus subPath, created when
/// missing), read-only when the mount or the volume type says so.
pub fn container_mounts(
    container: &Container,
    volumes: &HashMap<String, Mounted>,
    env: &HashMap<String, String>,
) -> Result<Vec<api::Mount>, VolumeError> {
    let mut mounts = Vec::new();
    for vm in container.volume_mounts.iter().flatten() {
        let v = volumes
            .get(&vm.name)
            .ok_or_else(|| VolumeError::UnknownVolume(vm.name.clone()))?;
        let sub = match (&vm.sub_path, &vm.sub_path_expr) {
            (Some(p), _) if !p.is_empty() => Some(p.clone()),
            (_, Some(e)) if !e.is_empty() => Some(spec::expand(e, env)),
            _ => None,
        };
        let mut host_path = v.host_path.clone();
        if let Some(sub) = sub {
            if !atomic_writer::valid_path(&sub) {
                return Err(VolumeError::SubPath(sub));
            }
            host_path = host_path.join(&sub);
            if !host_path.exists() && !v.read_only {
                std::fs::create_dir_all(&host_path).map_err(|source| VolumeError::Io {
                    volume: vm.name.clone(),
                    path: host_path.display().to_string(),
                    source,
                })?;
            }
        }
        mounts.push(api::Mount {
            container_path: vm.mount_path.clone(),
            host_path: host_path.to_string_lossy().into_owned(),
            readonly: vm.read_only.unwrap_or(false) || v.read_only,
            ..Default::default()
        });
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ObjectFieldSelector, VolumeMount};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn tokens_are_refreshed_at_eighty_percent_of_their_lifetime() {
        let token = |age: u64, lifetime: u64| Token {
            token: "t".into(),
            fetched: Instant::now() - Duration::from_secs(age),
            lifetime: Duration::from_secs(lifetime),
        };
        assert!(!token(0, 3607).due());
        assert!(!token(2800, 3607).due());
        assert!(token(2890, 3607).due());
        assert!(token(90_000, 200_000).due(), "at most a day old");
        let mut volumes = PodVolumes::default();
        assert!(volumes.needs_sync(), "never synced");
        volumes.last_sync = Some(Instant::now());
        assert!(!volumes.needs_sync());
        volumes.tokens.insert(("".into(), 3607), token(2890, 3607));
        assert!(volumes.needs_sync(), "a token is due");
    }

    #[test]
    fn labels_and_annotations_are_formatted_as_upstream() {
        let map: BTreeMap<String, String> = [
            ("b".to_string(), "two \"2\"".to_string()),
            ("a".to_string(), "one\nline".to_string()),
        ]
        .into();
        assert_eq!(
            format_map(Some(&map)),
            "a=\"one\\nline\"\nb=\"two \\\"2\\\"\""
        );
        assert_eq!(format_map(None), "");
    }

    #[test]
    fn items_select_keys_with_modes_and_missing_keys_fail_unless_optional() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("k1".to_string(), b"v1".to_vec()),
            ("k2".to_string(), b"v2".to_vec()),
        ]
        .into();
        let all = key_payload(&data, None, 0o644, false, VolumeError::MissingConfigMapKey)
            .expect("all keys");
        assert_eq!(all.len(), 2);
        assert_eq!(all["k1"].mode, 0o644);
        let items = [KeyToPath {
            key: "k2".into(),
            path: "dir/two".into(),
            mode: Some(0o400),
        }];
        let some = key_payload(
            &data,
            Some(&items),
            0o644,
            false,
            VolumeError::MissingConfigMapKey,
        )
        .expect("items");
        assert_eq!(some.keys().collect::<Vec<_>>(), vec!["dir/two"]);
        assert_eq!(some["dir/two"].mode, 0o400);
        let missing = [KeyToPath {
            key: "nope".into(),
            path: "x".into(),
            mode: None,
        }];
        assert!(key_payload(
            &data,
            Some(&missing),
            0o644,
            false,
            VolumeError::MissingConfigMapKey
        )
        .is_err());
        assert!(key_payload(
            &data,
            Some(&missing),
            0o644,
            true,
            VolumeError::MissingConfigMapKey
        )
        .expect("optional")
        .is_empty());
    }

    #[test]
    fn downward_api_files_hold_fields_labels_and_resources() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let item = |path: &str, field: &str| DownwardAPIVolumeFile {
            path: path.into(),
            field_ref: Some(ObjectFieldSelector {
                field_path: field.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let payload = downward_payload(
            &pod,
            &[
                item("name", "metadata.name"),
                item("labels", "metadata.labels"),
            ],
            0o644,
            "v",
        )
        .expect("payload");
        assert_eq!(payload["name"].data, b"p");
        assert_eq!(payload["labels"].data, b"app=\"web\"");
        assert!(downward_payload(&pod, &[item("x", "spec.bogus")], 0o644, "v").is_err());
    }

    #[test]
    fn host_path_types_are_checked_and_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hp = |path: &Path, t: &str| HostPathVolumeSource {
            path: path.display().to_string(),
            type_: Some(t.into()),
        };
        let file = dir.path().join("f");
        std::fs::write(&file, "x").expect("file");
        assert!(host_path(&hp(&file, "File")).is_ok());
        assert!(matches!(
            host_path(&hp(&file, "Directory")),
            Err(VolumeError::HostPathType { .. })
        ));
        assert!(host_path(&hp(dir.path(), "Directory")).is_ok());
        assert!(host_path(&hp(&dir.path().join("missing"), "Directory")).is_err());
        let created = dir.path().join("new/dir");
        assert!(host_path(&hp(&created, "DirectoryOrCreate")).is_ok());
        assert!(created.is_dir());
        let created = dir.path().join("new/file");
        assert!(host_path(&hp(&created, "FileOrCreate")).is_ok());
        assert!(created.is_file());
        assert!(host_path(&hp(&file, "Socket")).is_err());
    }

    #[test]
    fn mounts_join_sub_paths_and_honour_read_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let volumes: HashMap<String, Mounted> = [
            (
                "data".to_string(),
                Mounted {
                    host_path: dir.path().join("data"),
                    read_only: false,
                },
            ),
            (
                "cfg".to_string(),
                Mounted {
                    host_path: dir.path().join("cfg"),
                    read_only: true,
                },
            ),
        ]
        .into();
        let vm = |name: &str, path: &str, sub: Option<&str>| VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            sub_path: sub.map(str::to_string),
            ..Default::default()
        };
        let container = Container {
            name: "c".into(),
            volume_mounts: Some(vec![
                vm("data", "/data", Some("sub/dir")),
                vm("cfg", "/etc/cfg", None),
            ]),
            ..Default::default()
        };
        let mounts = container_mounts(&container, &volumes, &HashMap::new()).expect("mounts");
        assert_eq!(
            mounts[0].host_path,
            dir.path().join("data/sub/dir").display().to_string()
        );
        assert!(dir.path().join("data/sub/dir").is_dir());
        assert!(!mounts[0].readonly);
        assert!(mounts[1].readonly);
        let escaping = Container {
            name: "c".into(),
            volume_mounts: Some(vec![vm("data", "/d", Some("../../etc"))]),
            ..Default::default()
        };
        assert!(matches!(
            container_mounts(&escaping, &volumes, &HashMap::new()),
            Err(VolumeError::SubPath(_))
        ));
    }
}
