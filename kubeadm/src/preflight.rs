//! Pre-flight checks of `kubeadm init`: privileges, free ports, files and directories that
//! must not exist yet, swap; errors can be downgraded with --ignore-preflight-errors.

use std::net::TcpListener;
use std::path::Path;

use crate::config::Config;
use crate::manifests;
use crate::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub name: String,
    pub message: String,
    /// Warnings never stop kubeadm; errors do unless ignored.
    pub error: bool,
}

/// Upstream's check name for a path: `/etc/kubernetes/manifests/x.yaml` ->
/// `-etc-kubernetes-manifests-x.yaml` (appended to FileAvailable- / DirAvailable-).
pub fn path_check_name(prefix: &str, path: &Path) -> String {
    format!("{prefix}{}", path.display().to_string().replace('/', "-"))
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn port_of_url(u: &str) -> Option<u16> {
    let rest = u.split_once("://").map_or(u, |(_, r)| r);
    let hostport = rest.split('/').next()?;
    hostport.rsplit_once(':')?.1.parse().ok()
}

/// The ports the control plane will listen on, from the same places the manifests take them.
pub fn ports(cfg: &Config) -> Vec<u16> {
    let mut v = vec![
        manifests::apiserver_probe_endpoint(cfg).port,
        manifests::scheduler_probe_endpoint(cfg).port,
        manifests::controller_manager_probe_endpoint(cfg).port,
    ];
    let client = cfg
        .etcd_arg("listen-client-urls")
        .and_then(|u| u.split(',').next().and_then(port_of_url))
        .unwrap_or(manifests::STORE_CLIENT_PORT);
    let peer = cfg
        .etcd_arg("listen-peer-urls")
        .and_then(|u| u.split(',').next().and_then(port_of_url))
        .unwrap_or(manifests::STORE_PEER_PORT);
    v.push(client);
    v.push(peer);
    v.dedup();
    v
}

fn port_in_use(port: u16) -> bool {
    TcpListener::bind(("0.0.0.0", port)).is_err()
}

/// Runs every check; returns the findings in upstream's order.
pub fn run_checks(cfg: &Config) -> Vec<Finding> {
    let mut out = vec![];
    let mut err = |name: String, message: String| {
        out.push(Finding {
            name,
            message,
            error: true,
        })
    };
    if effective_uid() != Some(0) {
        err(
            "IsPrivilegedUser".into(),
            "user is not running as root".into(),
        );
    }
    for port in ports(cfg) {
        if port_in_use(port) {
            err(format!("Port-{port}"), format!("Port {port} is in use"));
        }
    }
    for component in [
        manifests::KUBE_APISERVER,
        manifests::KUBE_CONTROLLER_MANAGER,
        manifests::KUBE_SCHEDULER,
        manifests::KUBE_STORE,
    ] {
        let path = manifests::manifest_path(cfg, component);
        if path.exists() {
            err(
                path_check_name("FileAvailable-", &path),
                format!("{} already exists", path.display()),
            );
        }
    }
    let data = &cfg.etcd_data_dir;
    if std::fs::read_dir(data).is_ok_and(|mut d| d.next().is_some()) {
        err(
            path_check_name("DirAvailable-", data),
            format!("{} is not empty", data.display()),
        );
    }
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    if swaps.lines().skip(1).any(|l| !l.trim().is_empty()) {
        out.push(Finding {
            name: "Swap".into(),
            message: "swap is supported for cgroup v2 only. The kubelet must be properly configured to use swap".into(),
            error: false,
        });
    }
    out
}

fn ignored(cfg: &Config, name: &str) -> bool {
    cfg.ignore_preflight_errors
        .iter()
        .flat_map(|s| s.split(','))
        .any(|i| i.eq_ignore_ascii_case("all") || i.eq_ignore_ascii_case(name))
}

/// The preflight phase: prints warnings, fails on errors that are not ignored.
pub fn phase(cfg: &Config) -> Result<(), Error> {
    println!("[preflight] Running pre-flight checks");
    let mut fatal = vec![];
    for f in run_checks(cfg) {
        if f.error && !ignored(cfg, &f.name) {
            fatal.push(format!("\t[ERROR {}]: {}", f.name, f.message));
        } else {
            println!("\t[WARNING {}]: {}", f.name, f.message);
        }
    }
    if fatal.is_empty() {
        return Ok(());
    }
    Err(Error::Preflight(format!(
        "[preflight] Some fatal errors occurred:\n{}\n[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`",
        fatal.join("\n")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_follow_upstream() {
        assert_eq!(
            path_check_name(
                "FileAvailable-",
                Path::new("/etc/kubernetes/manifests/kube-apiserver.yaml")
            ),
            "FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml"
        );
        assert_eq!(
            path_check_name("DirAvailable-", Path::new("/var/lib/etcd")),
            "DirAvailable--var-lib-etcd"
        );
    }

    #[test]
    fn ports_come_from_urls() {
        assert_eq!(port_of_url("https://127.0.0.1:12379"), Some(12379));
        assert_eq!(port_of_url("https://[::1]:2379/"), Some(2379));
        assert_eq!(port_of_url("https://host"), None);
    }
}
