//! `kubeadm join` for worker nodes: token discovery (cluster-info fetched anonymously, its JWS
//! checked with the token, the CA pinned by its public-key hash), bootstrap-kubelet.conf, the
//! kubelet configuration from the kubelet-config ConfigMap, then the kubelet's TLS bootstrap.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::Api;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cli::JoinArgs;
use crate::cluster;
use crate::config::{Root, DEFAULT_CRI_SOCKET, DEFAULT_IMAGE_REPOSITORY};
use crate::kubelet;
use crate::token::{self, Token};
use crate::Error;

/// Upstream's discovery timeout.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinConfiguration {
    node_registration: Option<NodeRegistration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeRegistration {
    name: Option<String>,
    cri_socket: Option<String>,
    kubelet_extra_args: Option<Value>,
}

/// nodeRegistration of the JoinConfiguration in `file`.
fn read_config(file: &Path) -> Result<NodeRegistration, Error> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::Config(format!("unable to read config from {file:?}: {e}")))?;
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = serde_yaml_ng::Value::deserialize(doc)
            .map_err(|e| Error::Config(format!("unable to read config from {file:?}: {e}")))?;
        if v.get("kind").and_then(|k| k.as_str()) == Some("JoinConfiguration") {
            let c: JoinConfiguration = serde_yaml_ng::from_value(v)
                .map_err(|e| Error::Config(format!("unable to read config from {file:?}: {e}")))?;
            return Ok(c.node_registration.unwrap_or_default());
        }
    }
    Ok(NodeRegistration::default())
}

/// extraArgs as a v1beta4 list or a v1beta3 map.
fn extra_args(v: Option<Value>) -> Vec<(String, String)> {
    match v {
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|i| {
                Some((
                    i.get("name")?.as_str()?.to_string(),
                    i.get("value")?.as_str()?.to_string(),
                ))
            })
            .collect(),
        Some(Value::Object(m)) => m
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
            .collect(),
        _ => Vec::new(),
    }
}

struct ClusterInfo {
    server: String,
    ca_pem: String,
}

async fn fetch_cluster_info(endpoint: &str) -> Result<ConfigMap, String> {
    let client =
        cluster::insecure_client(&format!("https://{endpoint}")).map_err(|e| e.to_string())?;
    let cms: Api<ConfigMap> = Api::namespaced(client, "kube-public");
    cms.get("cluster-info").await.map_err(|e| e.to_string())
}

/// Token discovery: retries until cluster-info carries a signature for the token.
async fn discover(
    endpoint: &str,
    token: &Token,
    hashes: &[String],
    unsafe_skip: bool,
) -> Result<ClusterInfo, Error> {
    let start = Instant::now();
    let key = format!("jws-kubeconfig-{}", token.id);
    let (kubeconfig, jws) = loop {
        let last = match fetch_cluster_info(endpoint).await {
            Ok(cm) => {
                let data = cm.data.unwrap_or_default();
                match (data.get("kubeconfig"), data.get(&key)) {
                    (Some(k), Some(j)) => break (k.clone(), j.clone()),
                    (None, _) => "there is no kubeconfig in the cluster-info ConfigMap".to_string(),
                    (_, None) => format!("token id {:?} is invalid for this cluster or it has expired. Use \"kubeadm token create\" on the control-plane node to create a new valid token", token.id),
                }
            }
            Err(e) => format!("failed to request the cluster-info ConfigMap: {e}"),
        };
        if start.elapsed() > DISCOVERY_TIMEOUT {
            return Err(Error::Config(format!(
                "couldn't validate the identity of the API Server: {last}"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    token::verify_detached_jws(&jws, &kubeconfig, token)?;
    let kc: Value = serde_yaml_ng::from_str(&kubeconfig).map_err(|e| {
        Error::Config(format!(
            "couldn't parse the kubeconfig file in the cluster-info ConfigMap: {e}"
        ))
    })?;
    let cluster = &kc["clusters"][0]["cluster"];
    let server = cluster["server"].as_str().unwrap_or_default().to_string();
    let ca_pem = base64::engine::general_purpose::STANDARD
        .decode(
            cluster["certificate-authority-data"]
                .as_str()
                .unwrap_or_default(),
        )
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|_| Error::Config("the cluster-info kubeconfig has no valid CA".into()))?;
    if !unsafe_skip {
        let der = crate::pki::pem_to_der(&ca_pem, "cluster-info CA")?;
        let have = token::ca_cert_hash(&der)?;
        if !hashes.iter().any(|h| h.eq_ignore_ascii_case(&have)) {
            return Err(Error::Config(format!(
                "cluster CA found in cluster-info ConfigMap is invalid: none of the public keys {have:?} are pinned"
            )));
        }
    }
    Ok(ClusterInfo { server, ca_pem })
}

fn bootstrap_kubeconfig(info: &ClusterInfo, token: &Token) -> Result<String, Error> {
    serde_yaml_ng::to_string(&json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"cluster": {
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(&info.ca_pem),
            "server": info.server,
        }, "name": "kubernetes"}],
        "contexts": [{"context": {"cluster": "kubernetes", "user": "tls-bootstrap-token-user"}, "name": "tls-bootstrap-token-user@kubernetes"}],
        "current-context": "tls-bootstrap-token-user@kubernetes",
        "preferences": {},
        "users": [{"name": "tls-bootstrap-token-user", "user": {"token": token.to_string()}}],
    }))
    .map_err(|e| Error::Config(e.to_string()))
}

fn healthz_url(config: &Value, flags: &std::collections::BTreeMap<String, String>) -> String {
    let mut c = config.clone();
    if let Some(p) = flags
        .get("healthz-port")
        .and_then(|p| p.parse::<u64>().ok())
    {
        c["healthzPort"] = json!(p);
    }
    if let Some(a) = flags.get("healthz-bind-address") {
        c["healthzBindAddress"] = json!(a);
    }
    kubelet::healthz_url(&c)
}

pub fn run(root: &Root, args: &JoinArgs) -> Result<(), Error> {
    let node_reg = match &args.config {
        Some(f) => read_config(f)?,
        None => NodeRegistration::default(),
    };
    let endpoint = args.endpoint.clone().ok_or_else(|| {
        Error::Config("discovery: Invalid value: \"\": bootstrapToken or file must be set".into())
    })?;
    let token_str = args
        .discovery_token
        .clone()
        .or_else(|| args.token.clone())
        .ok_or_else(|| {
            Error::Config(
                "discovery.bootstrapToken.token: Invalid value: \"\": the bootstrap token is invalid"
                    .into(),
            )
        })?;
    let discovery_token = token::parse(&token_str)?;
    let tls_token = match args
        .tls_bootstrap_token
        .clone()
        .or_else(|| args.token.clone())
    {
        Some(t) => token::parse(&t)?,
        None => discovery_token.clone(),
    };
    if args.discovery_token_ca_cert_hash.is_empty()
        && !args.discovery_token_unsafe_skip_ca_verification
    {
        return Err(Error::Config("discovery.bootstrapToken: Invalid value: \"\": using token-based discovery without caCertHashes can be unsafe. Set unsafeSkipCAVerification as true in your kubeadm config file or pass --discovery-token-unsafe-skip-ca-verification flag to continue".into()));
    }
    let node_name = args
        .node_name
        .clone()
        .or(node_reg.name)
        .map(|n| n.to_lowercase())
        .unwrap_or_else(crate::config::hostname);
    let cri_socket = args
        .cri_socket
        .clone()
        .or(node_reg.cri_socket)
        .unwrap_or_else(|| DEFAULT_CRI_SOCKET.to_string());
    let binaries = crate::images::binaries_dir(args.binaries_dir.as_deref());
    let kubelet_binary = binaries.join("kubelet");

    println!("[preflight] Running pre-flight checks");
    for f in [kubelet::KUBELET_CONF, kubelet::BOOTSTRAP_KUBELET_CONF] {
        let p = root.host(f);
        if p.exists()
            && !args
                .ignore_preflight_errors
                .iter()
                .any(|i| i == "all" || i.starts_with("FileAvailable"))
        {
            return Err(Error::Phase(
                "preflight".into(),
                Box::new(Error::Preflight(format!(
                    "[preflight] Some fatal errors occurred:\n\t[ERROR FileAvailable--{}]: {} already exists",
                    f.trim_start_matches('/').replace('/', "-"),
                    p.display()
                ))),
            ));
        }
    }
    cluster::block_on(async {
        let info = discover(
            &endpoint,
            &discovery_token,
            &args.discovery_token_ca_cert_hash,
            args.discovery_token_unsafe_skip_ca_verification,
        )
        .await?;
        // The CA and the bootstrap kubeconfig; from here on TLS is verified against the CA.
        let kube_dir = root.host("/etc/kubernetes");
        crate::pki::write_file(
            &crate::pki::cert_path(&kube_dir.join("pki"), "ca"),
            info.ca_pem.as_bytes(),
            0o644,
        )?;
        let boot_path = root.host(kubelet::BOOTSTRAP_KUBELET_CONF);
        crate::pki::write_file(
            &boot_path,
            bootstrap_kubeconfig(&info, &tls_token)?.as_bytes(),
            0o600,
        )?;
        let boot = cluster::client(&boot_path).await?;
        println!("[preflight] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"...");
        println!("[preflight] Use 'kubeadm init phase upload-config --config your-config-file' to re-upload it.");
        let cms: Api<ConfigMap> = Api::namespaced(boot.clone(), "kube-system");
        let kubeadm_config = cms.get("kubeadm-config").await.map_err(|e| {
            Error::Config(format!("unable to fetch the kubeadm-config ConfigMap: {e}"))
        })?;
        let cluster_cfg: Value = kubeadm_config
            .data
            .and_then(|d| d.get("ClusterConfiguration").cloned())
            .and_then(|t| serde_yaml_ng::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let repo = cluster_cfg["imageRepository"]
            .as_str()
            .unwrap_or(DEFAULT_IMAGE_REPOSITORY)
            .to_string();
        let version = cluster_cfg["kubernetesVersion"]
            .as_str()
            .unwrap_or(crate::config::DEFAULT_KUBERNETES_VERSION);
        // No registry to pull from: the add-ons' images (kube-proxy runs on every node) come
        // from the binaries here, as `kubeadm init`'s images phase does on the control plane.
        println!(
            "[preflight] Importing the node images into the container runtime at {cri_socket:?}"
        );
        crate::images::import_all(
            root,
            &cri_socket,
            &crate::images::node_list(&repo, version),
            &binaries,
        )?;
        let kc = cms.get("kubelet-config").await.map_err(|e| {
            Error::Config(format!("unable to fetch the kubelet-config ConfigMap: {e}"))
        })?;
        let text = kc
            .data
            .and_then(|d| d.get("kubelet").cloned())
            .ok_or_else(|| {
                Error::Config("the kubelet-config ConfigMap has no \"kubelet\" key".into())
            })?;
        let mut config: Value = serde_yaml_ng::from_str(&text).map_err(|e| {
            Error::Config(format!(
                "invalid kubelet configuration in kubelet-config: {e}"
            ))
        })?;
        // The node-local paths are this host's (under this root), not the control plane's.
        config["staticPodPath"] = json!(root.host("/etc/kubernetes/manifests"));
        config["authentication"]["x509"]["clientCAFile"] =
            json!(root.host("/etc/kubernetes/pki/ca.crt"));
        if root.is_real_root() {
            if let Some(m) = config.as_object_mut() {
                m.remove("podLogsDir");
            }
        } else {
            config["podLogsDir"] = json!(root.host("/var/log/pods"));
        }
        let pause = format!("{repo}/pause:{}", crate::images::PAUSE_VERSION);
        let flags = kubelet::flags(
            root,
            &cri_socket,
            &pause,
            &node_name,
            None,
            &extra_args(node_reg.kubelet_extra_args),
        );
        std::fs::create_dir_all(root.host("/etc/kubernetes/manifests"))
            .map_err(|e| Error::Io("creating the manifests dir".into(), e))?;
        kubelet::write_files(root, &config, &flags)?;
        kubelet::start(root, &kubelet_binary)?;
        println!("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap");
        let kubelet_conf = root.host(kubelet::KUBELET_CONF);
        let start = Instant::now();
        while !kubelet_conf.exists() {
            if start.elapsed() > cluster::WAIT_TIMEOUT {
                return Err(Error::Config(format!(
                    "timed out waiting for the kubelet to write {:?} (TLS bootstrap); see {}",
                    kubelet_conf.display().to_string(),
                    root.host(kubelet::LOG_FILE).display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        cluster::wait_kubelet(&healthz_url(&config, &flags)).await?;
        let client = cluster::client(&kubelet_conf).await?;
        let nodes: Api<Node> = Api::all(client);
        let start = Instant::now();
        while nodes.get_opt(&node_name).await.ok().flatten().is_none() {
            if start.elapsed() > cluster::WAIT_TIMEOUT {
                return Err(Error::Config(format!(
                    "timed out waiting for the Node {node_name:?} to register"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok::<_, Error>(())
    })??;
    println!(
        "\nThis node has joined the cluster:\n\
* Certificate signing request was sent to apiserver and a response was received.\n\
* The Kubelet was informed of the new secure connection details.\n\n\
Run 'kubectl get nodes' on the control-plane to see this node join the cluster.\n"
    );
    Ok(())
}

/// Where `kubeadm join` keeps the CA for a root (used by reset and tests).
pub fn ca_path(root: &Root) -> PathBuf {
    root.host("/etc/kubernetes/pki/ca.crt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_args_read_both_shapes() {
        assert_eq!(
            extra_args(Some(json!([{"name": "port", "value": "1"}]))),
            vec![("port".to_string(), "1".to_string())]
        );
        assert_eq!(
            extra_args(Some(json!({"port": "2"}))),
            vec![("port".to_string(), "2".to_string())]
        );
    }
}
