//! `--use-service-account-credentials`: each controller talks to the apiserver as its own
//! ServiceAccount in kube-system (bound to upstream's `system:controller:<name>` role), with a
//! token the controller manager requests through TokenRequest and renews before it expires.
//!
//! Tokens live in files (mode 0600, in a 0700 directory) because kube-rs re-reads a kubeconfig
//! `tokenFile` every minute: a renewed token reaches every clone of the client without
//! rebuilding it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{ObjectMeta, PostParams};
use kube::config::AuthInfo;
use kube::{Api, Client};
use tokio::sync::Mutex;

use component_base::Shutdown;

/// Namespace of the controllers' ServiceAccounts.
pub const NAMESPACE: &str = "kube-system";

/// Lifetime asked for each token (upstream's controller client builder uses one hour).
const TOKEN_SECONDS: i64 = 3600;

/// The ServiceAccount a controller (by its full `--controllers` name) runs as; upstream's client
/// names, which its bootstrap RBAC policy binds. `None`: the controller keeps the manager's own
/// identity, as upstream's root client builder does.
pub fn service_account_for(controller: &str) -> Option<&'static str> {
    Some(match controller {
        "serviceaccount-controller" => "service-account-controller",
        "root-ca-certificate-publisher-controller" => "root-ca-cert-publisher",
        "namespace-controller" => "namespace-controller",
        "garbage-collector-controller" => "generic-garbage-collector",
        "replicaset-controller" => "replicaset-controller",
        "deployment-controller" => "deployment-controller",
        "endpoints-controller" => "endpoint-controller",
        "endpointslice-controller" => "endpointslice-controller",
        "endpointslice-mirroring-controller" => "endpointslicemirroring-controller",
        "replicationcontroller-controller" => "replication-controller",
        "pod-garbage-collector-controller" => "pod-garbage-collector",
        "resourcequota-controller" => "resourcequota-controller",
        "horizontal-pod-autoscaler-controller" => "horizontal-pod-autoscaler",
        "disruption-controller" => "disruption-controller",
        "statefulset-controller" => "statefulset-controller",
        "cronjob-controller" => "cronjob-controller",
        "job-controller" => "job-controller",
        "daemonset-controller" => "daemon-set-controller",
        "ttl-after-finished-controller" => "ttl-after-finished-controller",
        "ttl-controller" => "ttl-controller",
        "certificatesigningrequest-signing-controller"
        | "certificatesigningrequest-approving-controller"
        | "certificatesigningrequest-cleaner-controller" => "certificate-controller",
        "bootstrap-signer-controller" => "bootstrap-signer",
        "token-cleaner-controller" => "token-cleaner",
        "node-ipam-controller" | "node-lifecycle-controller" => "node-controller",
        "taint-eviction-controller" => "taint-eviction-controller",
        "clusterrole-aggregation-controller" => "clusterrole-aggregation-controller",
        "persistentvolume-binder-controller" => "persistent-volume-binder",
        "persistentvolume-attach-detach-controller" => "attachdetach-controller",
        "persistentvolume-expander-controller" => "expand-controller",
        "persistentvolumeclaim-protection-controller" => "pvc-protection-controller",
        "persistentvolume-protection-controller" => "pv-protection-controller",
        "ephemeral-volume-controller" => "ephemeral-volume-controller",
        "legacy-serviceaccount-token-cleaner-controller" => "legacy-service-account-token-cleaner",
        "validatingadmissionpolicy-status-controller" => {
            "validatingadmissionpolicy-status-controller"
        }
        "service-cidr-controller" => "service-cidrs-controller",
        _ => return None,
    })
}

/// Why a controller's client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to ensure service account {NAMESPACE}/{0}")]
    ServiceAccount(String, #[source] Box<kube::Error>),
    #[error("failed to request a token for {NAMESPACE}/{0}")]
    Token(String, #[source] Box<kube::Error>),
    #[error("apiserver returned an empty token for {NAMESPACE}/{0}")]
    EmptyToken(String),
    #[error("failed to write token file {0}")]
    Write(PathBuf, #[source] std::io::Error),
    #[error("failed to build client for {NAMESPACE}/{0}")]
    Client(String, #[source] Box<kube::Error>),
}

/// Hands out one client per controller ServiceAccount, renewing their tokens in the background.
pub struct ClientBuilder {
    root: Client,
    base: kube::Config,
    limits: (f32, u32),
    dir: PathBuf,
    shutdown: Shutdown,
    clients: Mutex<HashMap<String, Client>>,
}

impl ClientBuilder {
    /// Uses `root` (the manager's own identity) to create ServiceAccounts and request tokens,
    /// and `base` (its kubeconfig minus credentials) for the controllers' clients, each under
    /// its own `limits` (qps, burst) bucket. Token files go
    /// in `dir`, created private.
    pub fn new(
        root: Client,
        base: &kube::Config,
        limits: (f32, u32),
        dir: PathBuf,
        shutdown: Shutdown,
    ) -> Result<Arc<Self>, Error> {
        create_private_dir(&dir)?;
        let mut base = base.clone();
        base.auth_info = AuthInfo::default();
        Ok(Arc::new(Self {
            root,
            base,
            limits,
            dir,
            shutdown,
            clients: Mutex::new(HashMap::new()),
        }))
    }

    /// The client of ServiceAccount `kube-system/<name>`: created (with the account) on first
    /// use, then shared.
    pub async fn client(self: &Arc<Self>, name: &str) -> Result<Client, Error> {
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(name) {
            return Ok(client.clone());
        }
        self.ensure_account(name).await?;
        let path = self.dir.join(format!("{name}.token"));
        let lifetime = self.refresh(name, &path).await?;
        let mut config = self.base.clone();
        config.auth_info.token_file = Some(path.to_string_lossy().into_owned());
        let client = component_base::ratelimit::client(config, self.limits.0, self.limits.1)
            .map_err(|e| Error::Client(name.to_owned(), Box::new(e)))?;
        clients.insert(name.to_owned(), client.clone());
        tokio::spawn(self.clone().renew(name.to_owned(), path, lifetime));
        Ok(client)
    }

    async fn ensure_account(&self, name: &str) -> Result<(), Error> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.root.clone(), NAMESPACE);
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(NAMESPACE.to_owned()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match accounts.create(&PostParams::default(), &account).await {
            Ok(_) => Ok(()),
            Err(e) if crate::controllers::is_status(&e, 409) => Ok(()),
            Err(e) => Err(Error::ServiceAccount(name.to_owned(), Box::new(e))),
        }
    }

    /// Requests a fresh token and writes it to `path`; returns how long it is valid.
    async fn refresh(&self, name: &str, path: &Path) -> Result<Duration, Error> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.root.clone(), NAMESPACE);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(TOKEN_SECONDS),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let issued = match accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
        {
            Ok(issued) => issued,
            // The account may have been deleted since: recreate it once.
            Err(e) if crate::controllers::is_status(&e, 404) => {
                self.ensure_account(name).await?;
                accounts
                    .create_token_request(name, &PostParams::default(), &request)
                    .await
                    .map_err(|e| Error::Token(name.to_owned(), Box::new(e)))?
            }
            Err(e) => return Err(Error::Token(name.to_owned(), Box::new(e))),
        };
        let status = issued
            .status
            .ok_or_else(|| Error::EmptyToken(name.to_owned()))?;
        if status.token.is_empty() {
            return Err(Error::EmptyToken(name.to_owned()));
        }
        write_private(path, &status.token)?;
        let remaining = (status.expiration_timestamp.0 - k8s_openapi::chrono::Utc::now())
            .num_seconds()
            .clamp(60, TOKEN_SECONDS * 24 * 365);
        Ok(Duration::from_secs(remaining.unsigned_abs()))
    }

    /// Renews the token at 80% of its lifetime (retrying every 10 s on failure) until shutdown.
    async fn renew(self: Arc<Self>, name: String, path: PathBuf, mut lifetime: Duration) {
        loop {
            let wait = lifetime.mul_f64(0.8);
            tokio::select! {
                _ = self.shutdown.wait() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            match self.refresh(&name, &path).await {
                Ok(next) => lifetime = next,
                Err(e) => {
                    tracing::warn!(account = %name, error = %e, "token renewal failed; retrying");
                    lifetime = Duration::from_secs(12);
                }
            }
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::Write(dir.to_owned(), e))
}

/// Writes `token` to `path` readable by the owner only, replacing the file atomically.
fn write_private(path: &Path, token: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(token.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| Error::Write(path.to_owned(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_implemented_controller_has_an_upstream_account() {
        for d in crate::registry::descriptors() {
            if d.constructor.is_some() {
                assert!(
                    service_account_for(d.name).is_some(),
                    "{} has no service account",
                    d.name
                );
            }
        }
        assert_eq!(
            service_account_for("garbage-collector-controller"),
            Some("generic-garbage-collector")
        );
        assert_eq!(
            service_account_for("daemonset-controller"),
            Some("daemon-set-controller")
        );
        assert_eq!(service_account_for("no-such-controller"), None);
    }

    #[test]
    fn token_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("tokens");
        create_private_dir(&sub).unwrap();
        let path = sub.join("a.token");
        write_private(&path, "t1").unwrap();
        write_private(&path, "t2").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "t2");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mode = std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
