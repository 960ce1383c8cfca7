//! The init phases that talk to the running control plane: wait-control-plane, upload-config,
//! mark-control-plane, bootstrap-token, the join command, and the `token` commands.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret, Taint};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use crate::config::Config;
use crate::token::{self, Token};
use crate::Error;

pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
pub const EXCLUDE_LB_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
pub const NODES_GROUP: &str = "system:nodes";
/// Upstream's wait: 4m0s for the kubelet and for the control plane.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(240);

fn kerr(what: &str) -> impl Fn(kube::Error) -> Error + '_ {
    move |e| Error::Config(format!("{what}: {e}"))
}

/// A tokio runtime for the API phases (the rest of kubeadm is synchronous).
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io("starting the async runtime".into(), e))?;
    Ok(rt.block_on(f))
}

/// A client from a kubeconfig file (admin.conf for init).
pub async fn client(kubeconfig: &Path) -> Result<kube::Client, Error> {
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| {
        Error::Kubeconfig(format!(
            "failed to load admin kubeconfig {kubeconfig:?}: {e}"
        ))
    })?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig(format!("kubeconfig {kubeconfig:?}: {e}")))?;
    kube::Client::try_from(config).map_err(kerr("creating the client"))
}

/// A client for `url` without credentials and without verifying TLS (health checks, the
/// first fetch of cluster-info).
pub fn insecure_client(url: &str) -> Result<kube::Client, Error> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| Error::Config(format!("invalid URL {url:?}: {e}")))?;
    let mut config = kube::Config::new(uri);
    config.accept_invalid_certs = true;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(10));
    kube::Client::try_from(config).map_err(kerr("creating the client"))
}

/// GET `url` (`scheme://host:port/path`); Ok(()) on 2xx.
async fn probe(url: &str) -> Result<(), String> {
    let (base, path) = split_url(url);
    let client = insecure_client(&base).map_err(|e| e.to_string())?;
    let req = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client
        .request_text(req)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn split_url(url: &str) -> (String, String) {
    let after = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after..].find('/') {
        Some(i) => (url[..after + i].to_string(), url[after + i..].to_string()),
        None => (url.to_string(), "/".to_string()),
    }
}

fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

/// Polls `url` until it answers 2xx; Err(elapsed) on timeout.
pub async fn wait_healthy(url: &str, timeout: Duration) -> Result<Duration, Duration> {
    let start = Instant::now();
    loop {
        if probe(url).await.is_ok() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            return Err(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The health URLs of the control-plane components, from their manifests' probes.
pub fn component_urls(cfg: &Config) -> Vec<(&'static str, String)> {
    use crate::manifests;
    let url = |e: manifests::Endpoint, path: &str| {
        format!(
            "{}://{}{path}",
            e.scheme.to_lowercase(),
            crate::config::join_host_port(&e.host, e.port)
        )
    };
    vec![
        (
            manifests::KUBE_APISERVER,
            url(manifests::apiserver_probe_endpoint(cfg), "/livez"),
        ),
        (
            manifests::KUBE_CONTROLLER_MANAGER,
            url(
                manifests::controller_manager_probe_endpoint(cfg),
                "/healthz",
            ),
        ),
        (
            manifests::KUBE_SCHEDULER,
            url(manifests::scheduler_probe_endpoint(cfg), "/livez"),
        ),
    ]
}

/// wait-control-plane: the kubelet's healthz, then every component's health endpoint.
pub async fn wait_control_plane(cfg: &Config, kubelet_healthz: &str) -> Result<(), Error> {
    println!(
        "[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods from directory {:?}",
        cfg.manifests_dir.display().to_string()
    );
    wait_kubelet(kubelet_healthz).await?;
    println!("[control-plane-check] Waiting for healthy control plane components. This can take up to 4m0s");
    let urls = component_urls(cfg);
    for (name, url) in &urls {
        println!("[control-plane-check] Checking {name} at {url}");
    }
    let checks = urls.iter().map(|(name, url)| async move {
        match wait_healthy(url, WAIT_TIMEOUT).await {
            Ok(took) => {
                println!(
                    "[control-plane-check] {name} is healthy after {}",
                    go_duration(took)
                );
                Ok(())
            }
            Err(_) => {
                println!("[control-plane-check] {name} is not healthy after 4m0s");
                Err(name.to_string())
            }
        }
    });
    let failed: Vec<String> = futures::future::join_all(checks)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if !failed.is_empty() {
        println!(
            "\nA control plane component may have crashed or exited when started by the container runtime.\n\
To troubleshoot, list all containers using your preferred container runtimes CLI.\n\
Here is one example how you may list all running Kubernetes containers by using crictl:\n\
\t- 'crictl --runtime-endpoint {} ps -a | grep kube | grep -v pause'\n\
\tOnce you have found the failing container, you can inspect its logs with:\n\
\t- 'crictl --runtime-endpoint {} logs CONTAINERID'\n",
            cfg.cri_socket, cfg.cri_socket
        );
        return Err(Error::Config(format!(
            "failed while waiting for the control plane to start: [{}]",
            failed.join(" ")
        )));
    }
    Ok(())
}

pub async fn wait_kubelet(url: &str) -> Result<(), Error> {
    println!("[kubelet-check] Waiting for a healthy kubelet at {url}. This can take up to 4m0s");
    match wait_healthy(url, WAIT_TIMEOUT).await {
        Ok(took) => {
            println!(
                "[kubelet-check] The kubelet is healthy after {}",
                go_duration(took)
            );
            Ok(())
        }
        Err(_) => {
            println!("[kubelet-check] The kubelet is not healthy after 4m0s\n\nUnfortunately, an error has occurred, likely caused by:\n\t- The kubelet is not running\n\t- The kubelet is unhealthy due to a misconfiguration of the node in some way (required cgroups disabled)\n");
            Err(Error::Config(format!(
                "The HTTP call equal to 'curl -sSL {url}' returned error: the kubelet is not healthy after 4m0s"
            )))
        }
    }
}

/// Creates `obj`, or replaces the existing one (upstream's CreateOrUpdate).
pub async fn create_or_update<K>(api: &Api<K>, obj: &K) -> Result<(), Error>
where
    K: kube::Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api.get(&name).await.map_err(kerr("reading an object"))?;
            let mut obj = obj.clone();
            obj.meta_mut().resource_version = existing.meta().resource_version.clone();
            api.replace(&name, &PostParams::default(), &obj)
                .await
                .map(|_| ())
                .map_err(kerr("updating an object"))
        }
        Err(e) => Err(Error::Config(format!("unable to create {name}: {e}"))),
    }
}

pub fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        ..Default::default()
    }
}

pub fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(v(groups)),
        resources: Some(v(resources)),
        verbs: v(verbs),
        resource_names: (!names.is_empty()).then(|| v(names)),
        ..Default::default()
    }
}

pub fn subject(kind: &str, name: &str, namespace: Option<&str>) -> Subject {
    Subject {
        kind: kind.into(),
        name: name.into(),
        namespace: namespace.map(Into::into),
        api_group: (kind != "ServiceAccount").then(|| "rbac.authorization.k8s.io".into()),
    }
}

pub fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    }
}

pub async fn role(
    client: &kube::Client,
    ns: &str,
    name: &str,
    rules: Vec<PolicyRule>,
    subjects: Vec<Subject>,
) -> Result<(), Error> {
    let roles: Api<Role> = Api::namespaced(client.clone(), ns);
    create_or_update(
        &roles,
        &Role {
            metadata: meta(name, Some(ns)),
            rules: Some(rules),
        },
    )
    .await?;
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    create_or_update(
        &bindings,
        &RoleBinding {
            metadata: meta(name, Some(ns)),
            role_ref: role_ref("Role", name),
            subjects: Some(subjects),
        },
    )
    .await
}

pub async fn cluster_role_binding(
    client: &kube::Client,
    name: &str,
    role: &str,
    subjects: Vec<Subject>,
) -> Result<(), Error> {
    let api: Api<ClusterRoleBinding> = Api::all(client.clone());
    create_or_update(
        &api,
        &ClusterRoleBinding {
            metadata: meta(name, None),
            role_ref: role_ref("ClusterRole", role),
            subjects: Some(subjects),
        },
    )
    .await
}

/// ClusterRoleBinding kubeadm:cluster-admins (cluster-admin for admin.conf's group); retried
/// for a while, as the apiserver may still be reconciling its bootstrap policy.
pub async fn ensure_admin_binding(
    client: &kube::Client,
    admin: &kube::Client,
) -> Result<(), Error> {
    let start = Instant::now();
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "kube-system");
    loop {
        let r = cluster_role_binding(
            client,
            crate::pki::CLUSTER_ADMINS_GROUP,
            "cluster-admin",
            vec![subject("Group", crate::pki::CLUSTER_ADMINS_GROUP, None)],
        )
        .await;
        // The binding only works once the apiserver has its bootstrap roles (cluster-admin).
        let r = match r {
            Ok(()) => cms
                .list(&ListParams::default().limit(1))
                .await
                .map(|_| ())
                .map_err(|e| Error::Config(e.to_string())),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() > Duration::from_secs(60) => {
                return Err(Error::Config(format!(
                    "unable to create the ClusterRoleBinding {:?}: {e}",
                    crate::pki::CLUSTER_ADMINS_GROUP
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The v1beta4 ClusterConfiguration kubeadm stores in kubeadm-config.
pub fn cluster_configuration(cfg: &Config) -> serde_json::Value {
    let args = |a: &[(String, String)]| {
        a.iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect::<Vec<_>>()
    };
    let mut networking = json!({
        "dnsDomain": cfg.dns_domain,
        "serviceSubnet": cfg.service_subnet,
    });
    if let Some(p) = &cfg.pod_subnet {
        networking["podSubnet"] = json!(p);
    }
    let mut c = json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "apiServer": {"extraArgs": args(&cfg.apiserver_extra_args), "certSANs": cfg.cert_sans},
        "caCertificateValidityPeriod": "87600h0m0s",
        "certificateValidityPeriod": "8760h0m0s",
        "certificatesDir": cfg.cert_dir,
        "clusterName": cfg.cluster_name,
        "controllerManager": {"extraArgs": args(&cfg.controller_manager_extra_args)},
        "dns": {},
        "encryptionAlgorithm": match cfg.key_algorithm {
            crate::config::KeyAlgorithm::EcdsaP256 => "ECDSA-P256",
            crate::config::KeyAlgorithm::EcdsaP384 => "ECDSA-P384",
        },
        "etcd": {"local": {"dataDir": cfg.etcd_data_dir, "extraArgs": args(&cfg.etcd_extra_args)}},
        "imageRepository": cfg.image_repository,
        "kubernetesVersion": cfg.kubernetes_version,
        "networking": networking,
        "proxy": {},
        "scheduler": {"extraArgs": args(&cfg.scheduler_extra_args)},
    });
    if let Some(ep) = &cfg.control_plane_endpoint {
        c["controlPlaneEndpoint"] = json!(ep);
    }
    c
}

fn to_yaml(v: &serde_json::Value) -> Result<String, Error> {
    serde_yaml_ng::to_string(v).map_err(|e| Error::Config(e.to_string()))
}

fn configmap(name: &str, ns: &str, key: &str, value: String) -> ConfigMap {
    ConfigMap {
        metadata: meta(name, Some(ns)),
        data: Some([(key.to_string(), value)].into_iter().collect()),
        ..Default::default()
    }
}

/// The ClusterRole (and binding for system:nodes) that lets kubelets list and watch all Nodes.
pub const KUBELET_ROUTES_ROLE: &str = "kubeadm:kubelet-pod-network-routes";

/// upload-config kubeadm|kubelet|all.
pub async fn upload_config(
    client: &kube::Client,
    cfg: &Config,
    which: &str,
    kubelet_config: &serde_json::Value,
) -> Result<(), Error> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let readers = vec![
        subject("Group", NODES_GROUP, None),
        subject("Group", token::DEFAULT_GROUP, None),
    ];
    if which == "all" || which == "kubeadm" {
        println!("[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\" in the \"kube-system\" Namespace");
        let text = to_yaml(&cluster_configuration(cfg))?;
        create_or_update(
            &cms,
            &configmap(
                "kubeadm-config",
                "kube-system",
                "ClusterConfiguration",
                text,
            ),
        )
        .await?;
        role(
            client,
            "kube-system",
            "kubeadm:nodes-kubeadm-config",
            vec![rule(&[""], &["configmaps"], &["get"], &["kubeadm-config"])],
            readers.clone(),
        )
        .await?;
    }
    if which == "all" || which == "kubelet" {
        println!("[kubelet] Creating a ConfigMap \"kubelet-config\" in namespace kube-system with the configuration for the kubelets in the cluster");
        create_or_update(
            &cms,
            &configmap(
                "kubelet-config",
                "kube-system",
                "kubelet",
                to_yaml(kubelet_config)?,
            ),
        )
        .await?;
        role(
            client,
            "kube-system",
            "kubeadm:kubelet-config",
            vec![rule(&[""], &["configmaps"], &["get"], &["kubelet-config"])],
            readers,
        )
        .await?;
        // Not upstream: this project's kubelet routes to the other nodes' podCIDRs
        // (--pod-network-routes), which needs every Node; the Node authorizer lets a node
        // read only its own.
        let roles: Api<ClusterRole> = Api::all(client.clone());
        create_or_update(
            &roles,
            &ClusterRole {
                metadata: meta(KUBELET_ROUTES_ROLE, None),
                rules: Some(vec![rule(
                    &[""],
                    &["nodes"],
                    &["get", "list", "watch"],
                    &[],
                )]),
                ..Default::default()
            },
        )
        .await?;
        cluster_role_binding(
            client,
            KUBELET_ROUTES_ROLE,
            KUBELET_ROUTES_ROLE,
            vec![subject("Group", NODES_GROUP, None)],
        )
        .await?;
        println!("[kubelet] Configured RBAC rules to allow the kubelets to list Nodes for the routes to other nodes' pod networks");
    }
    Ok(())
}

/// Waits for the kubelet to register `node`.
async fn wait_node(api: &Api<Node>, node: &str) -> Result<Node, Error> {
    let start = Instant::now();
    loop {
        match api.get(node).await {
            Ok(n) => return Ok(n),
            Err(e) if start.elapsed() > WAIT_TIMEOUT => {
                return Err(Error::Config(format!(
                    "timed out waiting for the Node {node:?} to be registered: {e}"
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// mark-control-plane: the two labels and the NoSchedule taint (or nodeRegistration.taints).
pub async fn mark_control_plane(client: &kube::Client, cfg: &Config) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let taints = cfg.node_taints.clone().unwrap_or_else(|| {
        vec![Taint {
            key: CONTROL_PLANE_LABEL.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        }]
    });
    println!(
        "[mark-control-plane] Marking the node {} as control-plane by adding the labels: [{CONTROL_PLANE_LABEL} {EXCLUDE_LB_LABEL}]",
        cfg.node_name
    );
    if !taints.is_empty() {
        let shown: Vec<String> = taints
            .iter()
            .map(|t| match &t.value {
                Some(v) => format!("{}={v}:{}", t.key, t.effect),
                None => format!("{}:{}", t.key, t.effect),
            })
            .collect();
        println!(
            "[mark-control-plane] Marking the node {} as control-plane by adding the taints [{}]",
            cfg.node_name,
            shown.join(" ")
        );
    }
    let node = wait_node(&nodes, &cfg.node_name).await?;
    let mut all = node.spec.and_then(|s| s.taints).unwrap_or_default();
    for t in taints {
        if !all.iter().any(|o| o.key == t.key && o.effect == t.effect) {
            all.push(t);
        }
    }
    let patch = json!({
        "metadata": {"labels": {CONTROL_PLANE_LABEL: "", EXCLUDE_LB_LABEL: ""}},
        "spec": {"taints": all},
    });
    nodes
        .patch(
            &cfg.node_name,
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
        .map(|_| ())
        .map_err(kerr("error patching node"))
}

/// The kubeconfig cluster-info carries: the cluster only (server and CA), no users.
pub fn cluster_info_kubeconfig(server: &str, ca_pem: &str) -> Result<String, Error> {
    use base64::Engine as _;
    to_yaml(&json!({
        "apiVersion": "v1",
        "clusters": [{
            "cluster": {
                "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca_pem),
                "server": server,
            },
            "name": "",
        }],
        "contexts": null,
        "current-context": "",
        "kind": "Config",
        "preferences": {},
        "users": null,
    }))
}

/// bootstrap-token: the token Secret, the bootstrappers' RBAC and cluster-info.
pub async fn bootstrap_token(
    client: &kube::Client,
    cfg: &Config,
    token: &Token,
    ttl: Duration,
) -> Result<(), Error> {
    println!("[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    create_or_update(
        &secrets,
        &token::secret(
            token,
            ttl,
            token::DEFAULT_DESCRIPTION,
            &[token::DEFAULT_GROUP],
        ),
    )
    .await?;
    let bootstrappers = || vec![subject("Group", token::DEFAULT_GROUP, None)];
    let roles: Api<ClusterRole> = Api::all(client.clone());
    create_or_update(
        &roles,
        &ClusterRole {
            metadata: meta("kubeadm:get-nodes", None),
            rules: Some(vec![rule(&[""], &["nodes"], &["get"], &[])]),
            ..Default::default()
        },
    )
    .await?;
    cluster_role_binding(
        client,
        "kubeadm:get-nodes",
        "kubeadm:get-nodes",
        bootstrappers(),
    )
    .await?;
    println!("[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to get nodes");
    cluster_role_binding(
        client,
        "kubeadm:kubelet-bootstrap",
        "system:node-bootstrapper",
        bootstrappers(),
    )
    .await?;
    println!("[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to post CSRs in order for nodes to get long term certificate credentials");
    cluster_role_binding(
        client,
        "kubeadm:node-autoapprove-bootstrap",
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        bootstrappers(),
    )
    .await?;
    println!("[bootstrap-token] Configured RBAC rules to allow the csrapprover controller automatically approve CSRs from a Node Bootstrap Token");
    cluster_role_binding(
        client,
        "kubeadm:node-autoapprove-certificate-rotation",
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        vec![subject("Group", NODES_GROUP, None)],
    )
    .await?;
    println!("[bootstrap-token] Configured RBAC rules to allow certificate rotation for all node client certificates in the cluster");
    println!("[bootstrap-token] Creating the \"cluster-info\" ConfigMap in the \"kube-public\" namespace");
    let ca_pem = std::fs::read_to_string(crate::pki::cert_path(&cfg.cert_dir, "ca"))
        .map_err(|e| Error::Io("reading ca.crt".into(), e))?;
    let kubeconfig = cluster_info_kubeconfig(&cfg.control_plane_url(), &ca_pem)?;
    let public: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-public");
    // Keep the signatures the bootstrapsigner already added when the content is unchanged.
    let mut cm = configmap(
        "cluster-info",
        "kube-public",
        "kubeconfig",
        kubeconfig.clone(),
    );
    if let Ok(existing) = public.get("cluster-info").await {
        let data = existing.data.unwrap_or_default();
        if data.get("kubeconfig") == Some(&kubeconfig) {
            cm.data = Some(data);
        }
    }
    create_or_update(&public, &cm).await?;
    role(
        client,
        "kube-public",
        "kubeadm:bootstrap-signer-clusterinfo",
        vec![rule(&[""], &["configmaps"], &["get"], &["cluster-info"])],
        vec![subject("User", "system:anonymous", None)],
    )
    .await
}

/// The token to use: --token / bootstrapTokens[0].token, or a new one.
pub fn init_token(cfg: &Config) -> Result<(Token, Duration), Error> {
    let token = match &cfg.token {
        Some(t) => token::parse(t)?,
        None => token::generate()?,
    };
    let ttl = token::parse_duration(cfg.token_ttl.as_deref().unwrap_or("24h0m0s"))?;
    Ok((token, ttl))
}

/// `kubeadm join <endpoint> --token ... --discovery-token-ca-cert-hash sha256:...`
pub fn join_command(cfg: &Config, token: &Token) -> Result<String, Error> {
    let ca = std::fs::read_to_string(crate::pki::cert_path(&cfg.cert_dir, "ca"))
        .map_err(|e| Error::Io("reading ca.crt".into(), e))?;
    let der = crate::pki::pem_to_der(&ca, "ca")?;
    let hash = token::ca_cert_hash(&der)?;
    let endpoint = cfg
        .control_plane_url()
        .trim_start_matches("https://")
        .to_string();
    Ok(format!(
        "kubeadm join {endpoint} --token {token} \\\n\t--discovery-token-ca-cert-hash {hash} "
    ))
}

/// The closing text of `kubeadm init`.
pub fn print_success(cfg: &Config, join: Option<&str>) {
    let admin = crate::kubeconfig::path(cfg, crate::kubeconfig::ADMIN);
    let admin = admin.display();
    let lines = [
        String::new(),
        "Your Kubernetes control-plane has initialized successfully!".into(),
        String::new(),
        "To start using your cluster, you need to run the following as a regular user:".into(),
        String::new(),
        "  mkdir -p $HOME/.kube".into(),
        format!("  sudo cp -i {admin} $HOME/.kube/config"),
        "  sudo chown $(id -u):$(id -g) $HOME/.kube/config".into(),
        String::new(),
        "Alternatively, if you are the root user, you can run:".into(),
        String::new(),
        format!("  export KUBECONFIG={admin}"),
        String::new(),
        "You should now deploy a pod network to the cluster.".into(),
        "Run \"kubectl apply -f [podnetwork].yaml\" with one of the options listed at:".into(),
        "  https://kubernetes.io/docs/concepts/cluster-administration/addons/".into(),
        String::new(),
    ];
    println!("{}", lines.join("\n"));
    if let Some(join) = join {
        println!(
            "Then you can join any number of worker nodes by running the following on each as root:\n\n{join}"
        );
    }
}

/// `kubeadm token create|list|delete`.
pub async fn token_create(
    client: &kube::Client,
    token: &Token,
    ttl: Duration,
    description: &str,
) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    secrets
        .create(
            &PostParams::default(),
            &token::secret(token, ttl, description, &[token::DEFAULT_GROUP]),
        )
        .await
        .map(|_| ())
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 409 => {
                Error::Config(format!("a token with id {:?} already exists", token.id))
            }
            e => Error::Config(format!("failed to create bootstrap token: {e}")),
        })
}

pub async fn token_list(client: &kube::Client) -> Result<String, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    let list = secrets
        .list(&ListParams::default().fields(&format!("type={}", token::SECRET_TYPE)))
        .await
        .map_err(kerr("failed to list bootstrap tokens"))?;
    let mut out = String::from("TOKEN                     TTL         EXPIRES                USAGES                   DESCRIPTION                                                EXTRA GROUPS\n");
    for s in list.items {
        if s.type_.as_deref() != Some(token::SECRET_TYPE) {
            continue;
        }
        let data = s.data.unwrap_or_default();
        let get = |k: &str| {
            data.get(k)
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .unwrap_or_default()
        };
        let usages: Vec<&str> = ["authentication", "signing"]
            .into_iter()
            .filter(|u| get(&format!("usage-bootstrap-{u}")) == "true")
            .collect();
        let expires = get("expiration");
        let ttl = if expires.is_empty() {
            "<forever>".to_string()
        } else {
            ttl_left(&expires)
        };
        out.push_str(&format!(
            "{:<25} {:<11} {:<22} {:<24} {:<58} {}\n",
            format!("{}.{}", get("token-id"), get("token-secret")),
            ttl,
            if expires.is_empty() {
                "<never>".into()
            } else {
                expires
            },
            usages.join(","),
            if get("description").is_empty() {
                "<none>".into()
            } else {
                get("description")
            },
            get("auth-extra-groups"),
        ));
    }
    Ok(out)
}

fn ttl_left(expires: &str) -> String {
    let Ok(t) =
        time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339)
    else {
        return "<invalid>".into();
    };
    let left = t - time::OffsetDateTime::now_utc();
    if left.is_negative() {
        return "<invalid>".into();
    }
    let h = left.whole_hours();
    if h > 0 {
        format!("{h}h")
    } else {
        format!("{}m", left.whole_minutes())
    }
}

pub async fn token_delete(client: &kube::Client, tokens: &[String]) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    for t in tokens {
        let id = match token::parse(t) {
            Ok(tok) => tok.id,
            Err(_) if t.len() == 6 && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) => {
                t.clone()
            }
            Err(_) => {
                return Err(Error::Config(
                    "given token didn't match pattern \"^([a-z0-9]{6})$\" or \"^([a-z0-9]{6})\\.([a-z0-9]{16})$\"".to_string(),
                ))
            }
        };
        let name = format!("{}{id}", token::SECRET_PREFIX);
        secrets
            .delete(&name, &Default::default())
            .await
            .map_err(|e| Error::Config(format!("failed to delete bootstrap token {id:?}: {e}")))?;
        println!("bootstrap token {id:?} deleted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_base_and_path() {
        assert_eq!(
            split_url("https://127.0.0.1:6443/livez"),
            ("https://127.0.0.1:6443".into(), "/livez".into())
        );
        assert_eq!(split_url("http://h:1"), ("http://h:1".into(), "/".into()));
    }

    #[test]
    fn cluster_info_has_only_the_cluster() {
        let text = cluster_info_kubeconfig("https://1.2.3.4:6443", "PEM").expect("yaml");
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("parse");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://1.2.3.4:6443"
        );
        assert!(v["users"].is_null());
    }
}
