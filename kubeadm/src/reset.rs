//! `kubeadm reset`: stops the kubelet (the supervisor, or systemd's unit), removes every pod
//! sandbox and container through the CRI, the CNI config the kubelet wrote, then the store's
//! data, static Pod manifests, the PKI, the kubelet's directory and the kubeconfigs.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

use crate::config::Root;
use crate::manifests;
use crate::Error;

pub struct Options {
    pub root: Root,
    pub cert_dir: PathBuf,
    pub force: bool,
    /// --cri-socket; else the kubelet's --container-runtime-endpoint from kubeadm-flags.env.
    pub cri_socket: Option<String>,
}

/// A flag's value in kubeadm-flags.env.
fn kubelet_flag(root: &Root, name: &str) -> Option<String> {
    crate::kubelet::read_env_args(
        &root.host(crate::kubelet::FLAGS_FILE),
        "KUBELET_KUBEADM_ARGS",
    )
    .into_iter()
    .find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_string))
}

/// Stops and removes every container and pod sandbox of the runtime (network torn down by
/// the runtime's CNI); the pods' cgroups too. Returns how many sandboxes were removed.
fn remove_pods(endpoint: &str) -> Result<usize, Error> {
    let fail = |e: String| Error::Config(format!("failed to remove containers: {e}"));
    crate::cluster::block_on(async {
        let runtime = kubelet::cri::Runtime::new(endpoint).map_err(|e| fail(e.to_string()))?;
        let work = async {
            for c in runtime.list_containers(None).await.unwrap_or_default() {
                let _ = runtime
                    .stop_container(&c.id, std::time::Duration::ZERO)
                    .await;
                let _ = runtime.remove_container(&c.id).await;
            }
            let sandboxes = runtime
                .list_pod_sandbox(None)
                .await
                .map_err(|e| fail(e.to_string()))?;
            for s in &sandboxes {
                let _ = runtime.stop_pod_sandbox(&s.id).await;
                runtime
                    .remove_pod_sandbox(&s.id)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                if let Some(uid) = s.labels.get("io.kubernetes.pod.uid") {
                    kubelet::pod::resources::remove_pod_cgroups("", uid);
                }
            }
            Ok::<_, Error>(sandboxes.len())
        };
        tokio::time::timeout(std::time::Duration::from_secs(120), work)
            .await
            .map_err(|_| fail("timed out".into()))?
    })?
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Io(what, e)
}

/// Removes everything inside `dir`, keeping `dir` itself.
fn clean_dir(dir: &Path) -> Result<(), Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::Io(format!("reading {:?}", dir), e)),
    };
    for entry in entries {
        let path = entry.map_err(io(format!("reading {:?}", dir)))?.path();
        let is_dir = std::fs::symlink_metadata(&path)
            .map_err(io(format!("inspecting {:?}", path)))?
            .is_dir();
        if is_dir {
            std::fs::remove_dir_all(&path).map_err(io(format!("removing {:?}", path)))?;
        } else {
            std::fs::remove_file(&path).map_err(io(format!("removing {:?}", path)))?;
        }
    }
    Ok(())
}

/// The store's --data-dir from its manifest, if kubeadm wrote one.
fn store_data_dir(manifest: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let pod: k8s_openapi::api::core::v1::Pod = serde_yaml_ng::from_str(&text).ok()?;
    let spec = pod.spec?;
    let cmd = spec.containers.first()?.command.clone()?;
    cmd.iter()
        .find_map(|a| a.strip_prefix("--data-dir=").map(PathBuf::from))
}

/// Unmounts every mount below `dir` (the kubelet's volume tmpfs mounts), deepest first.
fn unmount_below(dir: &Path) {
    let prefix = format!("{}/", dir.display());
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    mounts.dedup();
    for m in mounts {
        let _ = std::process::Command::new("umount")
            .arg(&m)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn confirm() -> Result<bool, Error> {
    print!("[reset] Are you sure you want to proceed? [y/N]: ");
    std::io::stdout()
        .flush()
        .map_err(io("writing to stdout".into()))?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(io("reading from stdin".into()))?;
    Ok(matches!(line.trim().to_lowercase().as_str(), "y" | "yes"))
}

/// The kube-proxy binary next to kubeadm, else the one on PATH.
fn kube_proxy_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("kube-proxy")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("kube-proxy"))
}

/// What the node's networking got from the cluster: kube-proxy's rules (its own `--cleanup`,
/// which touches only KUBE-* chains and its nftables table), the kubelet's CNI bridge, its
/// routes to the other nodes' podCIDRs and its pod masquerade chain.
fn cleanup_network(root: &Root) {
    println!("[reset] Removing kube-proxy's iptables and nftables rules");
    match std::process::Command::new(kube_proxy_binary())
        .arg("--cleanup")
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => println!(
            "[reset] WARNING: kube-proxy --cleanup failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => println!("[reset] WARNING: cannot run kube-proxy --cleanup: {e}"),
    }
    let bridge = kubelet_flag(root, "cni-bridge-name").unwrap_or_else(|| "cni0".to_string());
    // Asked through netlink (`ip link show`), not /sys/class/net: sysfs shows the namespace
    // it was mounted in, which need not be this process's network namespace.
    let exists = std::process::Command::new("ip")
        .args(["link", "show", "dev", &bridge])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if exists {
        match std::process::Command::new("ip")
            .args(["link", "delete", &bridge])
            .status()
        {
            Ok(s) if s.success() => println!("[reset] Deleted the CNI bridge {bridge}"),
            _ => println!("[reset] WARNING: could not delete the CNI bridge {bridge}"),
        }
    }
    // The kubelet's routes to the other nodes' podCIDRs: routing protocol 75
    // (kubelet/src/routes.rs), so only those go. `flush` fails when nothing matched.
    let ours = std::process::Command::new("ip")
        .args(["-4", "route", "show", "proto", KUBELET_ROUTE_PROTOCOL])
        .output();
    if ours.is_ok_and(|out| out.status.success() && !out.stdout.is_empty()) {
        match std::process::Command::new("ip")
            .args(["-4", "route", "flush", "proto", KUBELET_ROUTE_PROTOCOL])
            .status()
        {
            Ok(s) if s.success() => println!(
                "[reset] Deleted the kubelet's routes to other nodes' pod networks (proto {KUBELET_ROUTE_PROTOCOL})"
            ),
            _ => println!(
                "[reset] WARNING: could not delete the routes with proto {KUBELET_ROUTE_PROTOCOL}"
            ),
        }
    }
    // The kubelet's masquerade chain for pod traffic leaving the pod network, and the jump to
    // it from nat POSTROUTING (kubelet/src/masquerade.rs); only if present.
    let chain = kubelet::masquerade::CHAIN;
    match kubelet::masquerade::remove() {
        Ok(true) => println!("[reset] Deleted the kubelet's iptables chain {chain} (nat table)"),
        Ok(false) => {}
        Err(e) => println!("[reset] WARNING: could not delete the iptables chain {chain}: {e}"),
    }
}

/// The routing protocol number of the kubelet's pod network routes (`--pod-network-routes`).
const KUBELET_ROUTE_PROTOCOL: &str = "75";

pub fn run(o: &Options) -> Result<(), Error> {
    println!(
        "[reset] WARNING: Changes made to this host by 'kubeadm init' or 'kubeadm join' will be reverted."
    );
    if !o.force && !confirm()? {
        return Err(Error::Aborted);
    }
    let endpoint = o
        .cri_socket
        .clone()
        .or_else(|| kubelet_flag(&o.root, "container-runtime-endpoint"))
        .unwrap_or_else(|| crate::config::DEFAULT_CRI_SOCKET.to_string());
    let cni_dir = kubelet_flag(&o.root, "cni-conf-dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| o.root.host("/etc/cni/net.d"));
    println!("[reset] Stopping the kubelet service");
    crate::kubelet::stop(&o.root);
    println!("[reset] Removing Kubernetes-managed containers");
    match remove_pods(&endpoint) {
        Ok(_) => {}
        Err(e) => println!(
            "[reset] WARNING: failed to remove the containers of {endpoint}: {e}; remove them manually"
        ),
    }
    cleanup_network(&o.root);
    let kubernetes = o.root.host("/etc/kubernetes");
    let manifests_dir = kubernetes.join("manifests");
    let store_manifest = manifests_dir.join(format!("{}.yaml", manifests::KUBE_STORE));
    if store_manifest.exists() {
        let data = store_data_dir(&store_manifest).unwrap_or_else(|| o.root.host("/var/lib/etcd"));
        clean_dir(&data)?;
        println!(
            "[reset] Deleted contents of the etcd data directory: {}",
            data.display()
        );
    } else {
        println!("[reset] No etcd config found. Assuming external etcd");
        println!("[reset] Please, manually reset etcd to prevent further issues");
    }
    let kubelet_dir = o.root.host("/var/lib/kubelet");
    println!(
        "[reset] Unmounting mounted directories in {:?}",
        kubelet_dir.display().to_string()
    );
    unmount_below(&kubelet_dir);
    let dirs = [
        manifests_dir,
        o.root.host("/var/lib/kubelet"),
        o.cert_dir.clone(),
    ];
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    println!(
        "[reset] Deleting contents of directories: [{}]",
        shown.join(" ")
    );
    for d in &dirs {
        clean_dir(d)?;
    }
    let files: Vec<PathBuf> = [
        "admin.conf",
        "super-admin.conf",
        "kubelet.conf",
        "bootstrap-kubelet.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ]
    .iter()
    .map(|f| kubernetes.join(f))
    .collect();
    let shown: Vec<String> = files.iter().map(|d| d.display().to_string()).collect();
    println!("[reset] Deleting files: [{}]", shown.join(" "));
    for f in &files {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io(format!("removing {:?}", f), e)),
        }
    }
    let conflist = cni_dir.join(kubelet::cni::CONFLIST_NAME);
    if conflist.exists() {
        std::fs::remove_file(&conflist).map_err(io(format!("removing {:?}", conflist)))?;
        println!(
            "[reset] Deleted the kubelet's CNI configuration {}",
            conflist.display()
        );
    }
    for f in [crate::kubelet::FLAGS_FILE, crate::kubelet::CONFIG_FILE] {
        let _ = std::fs::remove_file(o.root.host(f));
    }
    println!(
        "\nThe reset process does not clean other CNI configuration. To do so, you must remove {}\n\n\
The reset process removed kube-proxy's iptables and nftables rules (kube-proxy --cleanup) and\n\
the kubelet's CNI bridge, routes and masquerade chain; rules of other programs were left alone.\n\n\
The reset process does not clean your kubeconfig files and you must remove them manually.\n\
Please, check the contents of the $HOME/.kube/config file.",
        cni_dir.display()
    );
    Ok(())
}
