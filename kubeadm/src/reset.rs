//! `kubeadm reset`, the file part: the store's data, static Pod manifests, the PKI, the
//! kubelet's directory and the kubeconfigs kubeadm wrote.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

use crate::config::Root;
use crate::manifests;
use crate::Error;

pub struct Options {
    pub root: Root,
    pub cert_dir: PathBuf,
    pub force: bool,
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

pub fn run(o: &Options) -> Result<(), Error> {
    println!(
        "[reset] WARNING: Changes made to this host by 'kubeadm init' or 'kubeadm join' will be reverted."
    );
    if !o.force && !confirm()? {
        return Err(Error::Aborted);
    }
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
    println!(
        "\nThe reset process does not clean CNI configuration, iptables/nftables rules or IPVS tables yet; the kubelet phases are not part of this kubeadm."
    );
    Ok(())
}
