//! The kubelet's side of init and join: `/var/lib/kubelet/config.yaml` (a KubeletConfiguration
//! as upstream kubeadm writes it), `/var/lib/kubelet/kubeadm-flags.env`, upstream's systemd
//! drop-in for real hosts, and — because this host may have no systemd — a supervisor process
//! (`kubeadm kubelet-supervisor`) that runs the kubelet, restarts it when it exits and reads
//! the flags files again on every start, as `systemctl restart kubelet` would.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::config::{cidr_ip, Config, Root};
use crate::Error;

pub const CONFIG_FILE: &str = "/var/lib/kubelet/config.yaml";
pub const FLAGS_FILE: &str = "/var/lib/kubelet/kubeadm-flags.env";
pub const DEFAULT_ENV_FILE: &str = "/etc/default/kubelet";
pub const KUBELET_DIR: &str = "/var/lib/kubelet";
pub const CLIENT_CERT: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";
pub const DROP_IN: &str = "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf";
pub const UNIT: &str = "/etc/systemd/system/kubelet.service";
pub const LOG_FILE: &str = "/var/log/kubelet.log";
pub const SUPERVISOR_PID: &str = "/run/kubeadm/kubelet-supervisor.pid";
pub const KUBELET_PID: &str = "/run/kubeadm/kubelet.pid";
pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
pub const BOOTSTRAP_KUBELET_CONF: &str = "/etc/kubernetes/bootstrap-kubelet.conf";

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Io(what, e)
}

/// Overlays `patch` on `base`: objects merge key by key, anything else replaces.
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// The KubeletConfiguration kubeadm writes (upstream's defaults; paths under the root), with
/// the KubeletConfiguration document of --config merged over it.
pub fn configuration(cfg: &Config) -> Result<Value, Error> {
    let cluster_dns = cidr_ip(
        cfg.service_subnet
            .split(',')
            .next()
            .unwrap_or(&cfg.service_subnet),
        10,
    )?;
    let mut c = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"enabled": true},
            "x509": {"clientCAFile": crate::pki::cert_path(&cfg.cert_dir, "ca")},
        },
        "authorization": {"mode": "Webhook"},
        // Upstream defaults to systemd; this kubelet drives cgroupfs (the runtime here has
        // SystemdCgroup = false and PID 1 is not systemd).
        "cgroupDriver": "cgroupfs",
        "clusterDNS": [cluster_dns.to_string()],
        "clusterDomain": cfg.dns_domain,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "rotateCertificates": true,
        "staticPodPath": cfg.manifests_dir,
    });
    if !cfg.root.is_real_root() {
        c["podLogsDir"] = json!(cfg.root.host("/var/log/pods"));
    }
    if let Some(user) = &cfg.kubelet_configuration {
        let user: Value = serde_json::to_value(user)
            .map_err(|e| Error::Config(format!("KubeletConfiguration: {e}")))?;
        merge(&mut c, &user);
    }
    Ok(c)
}

/// The kubelet's healthz URL from its configuration.
pub fn healthz_url(c: &Value) -> String {
    let host = c["healthzBindAddress"].as_str().unwrap_or("127.0.0.1");
    let port = c["healthzPort"].as_u64().unwrap_or(10248);
    format!(
        "http://{}/healthz",
        crate::config::join_host_port(host, port as u16)
    )
}

/// The flags kubeadm-flags.env carries, as upstream's (name -> value), with
/// nodeRegistration.kubeletExtraArgs overriding the computed ones.
pub fn flags(
    root: &Root,
    cri_socket: &str,
    pause_image: &str,
    node_name: &str,
    node_ip: Option<std::net::IpAddr>,
    extra: &[(String, String)],
) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    f.insert("container-runtime-endpoint".into(), cri_socket.to_string());
    f.insert("pod-infra-container-image".into(), pause_image.to_string());
    if node_name != crate::config::hostname() {
        f.insert("hostname-override".into(), node_name.to_string());
    }
    if let Some(ip) = node_ip.filter(|ip| !ip.is_unspecified()) {
        f.insert("node-ip".into(), ip.to_string());
    }
    if !root.is_real_root() {
        // Everything of this kubelet under the root, so it never touches the host's.
        f.insert(
            "root-dir".into(),
            root.host(KUBELET_DIR).display().to_string(),
        );
        f.insert(
            "cert-dir".into(),
            root.host("/var/lib/kubelet/pki").display().to_string(),
        );
        f.insert(
            "cni-conf-dir".into(),
            root.host("/etc/cni/net.d").display().to_string(),
        );
    }
    for (k, v) in extra {
        f.insert(k.clone(), v.clone());
    }
    f
}

pub fn flags_env(flags: &BTreeMap<String, String>) -> String {
    let args: Vec<String> = flags.iter().map(|(k, v)| format!("--{k}={v}")).collect();
    format!("KUBELET_KUBEADM_ARGS=\"{}\"\n", args.join(" "))
}

/// Reads `NAME="..."` (or unquoted) from an environment file; the value split on spaces.
pub fn read_env_args(file: &Path, name: &str) -> Vec<String> {
    let Ok(text) = fs::read_to_string(file) else {
        return Vec::new();
    };
    for line in text.lines() {
        if let Some(v) = line.trim().strip_prefix(&format!("{name}=")) {
            return v
                .trim()
                .trim_matches('"')
                .split_whitespace()
                .map(str::to_string)
                .collect();
        }
    }
    Vec::new()
}

/// Upstream's drop-in, for hosts where systemd runs the kubelet.
pub fn drop_in(root: &Root) -> String {
    format!(
        "# Note: This dropin only works with kubeadm and kubelet v1.11+\n[Service]\n\
Environment=\"KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig={boot} --kubeconfig={kc}\"\n\
Environment=\"KUBELET_CONFIG_ARGS=--config={config}\"\n\
# This is a file that \"kubeadm init\" and \"kubeadm join\" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically\n\
EnvironmentFile=-{flags}\n\
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should use\n\
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.\n\
EnvironmentFile=-{default}\n\
ExecStart=\n\
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS\n",
        boot = root.host(BOOTSTRAP_KUBELET_CONF).display(),
        kc = root.host(KUBELET_CONF).display(),
        config = root.host(CONFIG_FILE).display(),
        flags = root.host(FLAGS_FILE).display(),
        default = root.host(DEFAULT_ENV_FILE).display(),
    )
}

const UNIT_TEXT: &str = "[Unit]\nDescription=kubelet: The Kubernetes Node Agent\nDocumentation=https://kubernetes.io/docs/\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nExecStart=/usr/bin/kubelet\nRestart=always\nStartLimitInterval=0\nRestartSec=10\n\n[Install]\nWantedBy=multi-user.target\n";

/// The kubelet's command line as the drop-in composes it, read fresh from the files.
pub fn command_line(root: &Root) -> Vec<String> {
    let mut args = vec![];
    let boot = root.host(BOOTSTRAP_KUBELET_CONF);
    if boot.exists() {
        args.push(format!("--bootstrap-kubeconfig={}", boot.display()));
    }
    args.push(format!(
        "--kubeconfig={}",
        root.host(KUBELET_CONF).display()
    ));
    args.push(format!("--config={}", root.host(CONFIG_FILE).display()));
    args.extend(read_env_args(
        &root.host(FLAGS_FILE),
        "KUBELET_KUBEADM_ARGS",
    ));
    args.extend(read_env_args(
        &root.host(DEFAULT_ENV_FILE),
        "KUBELET_EXTRA_ARGS",
    ));
    args
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io(format!("creating {dir:?}")))?;
    }
    fs::write(path, text).map_err(io(format!("writing {path:?}")))
}

/// Writes config.yaml, kubeadm-flags.env and the systemd files, then (re)starts the kubelet.
pub fn write_files(
    root: &Root,
    config: &Value,
    flags: &BTreeMap<String, String>,
) -> Result<(), Error> {
    let flags_file = root.host(FLAGS_FILE);
    println!(
        "[kubelet-start] Writing kubelet environment file with flags to file {:?}",
        flags_file.display().to_string()
    );
    write(&flags_file, &flags_env(flags))?;
    let config_file = root.host(CONFIG_FILE);
    println!(
        "[kubelet-start] Writing kubelet configuration to file {:?}",
        config_file.display().to_string()
    );
    let yaml = serde_yaml_ng::to_string(config).map_err(|e| Error::Config(e.to_string()))?;
    write(&config_file, &yaml)?;
    write(&root.host(DROP_IN), &drop_in(root))?;
    let unit = root.host(UNIT);
    if !unit.exists()
        && !root
            .host("/usr/lib/systemd/system/kubelet.service")
            .exists()
    {
        write(&unit, UNIT_TEXT)?;
    }
    fs::create_dir_all(root.host("/var/lib/kubelet/pki"))
        .map_err(io("creating the kubelet's pki dir".into()))?;
    Ok(())
}

fn systemd_runs(root: &Root) -> bool {
    root.is_real_root() && Path::new("/run/systemd/system").is_dir()
}

fn read_pid(file: &Path) -> Option<u32> {
    fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn supervisor_running(root: &Root) -> Option<u32> {
    read_pid(&root.host(SUPERVISOR_PID)).filter(|p| alive(*p))
}

/// Starts the kubelet: `systemctl restart kubelet` where systemd runs the host, else the
/// supervisor (or, when it already runs, a kill of the kubelet so it restarts with the new files).
pub fn start(root: &Root, kubelet_binary: &Path) -> Result<(), Error> {
    println!("[kubelet-start] Starting the kubelet");
    if systemd_runs(root) {
        let status = Command::new("systemctl")
            .args(["restart", "kubelet"])
            .status()
            .map_err(io("running systemctl".into()))?;
        if !status.success() {
            return Err(Error::Config(
                "couldn't restart the kubelet: systemctl restart kubelet failed".into(),
            ));
        }
        return Ok(());
    }
    if !kubelet_binary.is_file() {
        return Err(Error::Config(format!(
            "the kubelet binary {:?} does not exist; build it or set --binaries-dir",
            kubelet_binary.display().to_string()
        )));
    }
    if supervisor_running(root).is_some() {
        restart(root);
        return Ok(());
    }
    let log = root.host(LOG_FILE);
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).map_err(io(format!("creating {dir:?}")))?;
    }
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(io(format!("opening {log:?}")))?;
    let err = out.try_clone().map_err(io("log file".into()))?;
    let me = std::env::current_exe().map_err(io("locating kubeadm".into()))?;
    let mut cmd = if Path::new("/usr/bin/setsid").is_file() {
        let mut c = Command::new("/usr/bin/setsid");
        c.arg(me);
        c
    } else {
        Command::new(me)
    };
    cmd.arg("--rootfs")
        .arg(root.host("/"))
        .arg("kubelet-supervisor")
        .env("KUBEADM_KUBELET_BINARY", kubelet_binary)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    cmd.spawn()
        .map_err(io("starting the kubelet supervisor".into()))?;
    // The supervisor writes its pid file first thing; wait for it so reset can find it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while supervisor_running(root).is_none() {
        if Instant::now() > deadline {
            return Err(Error::Config(format!(
                "the kubelet supervisor did not start; see {}",
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Makes the supervised kubelet restart (it reads the flags files again).
pub fn restart(root: &Root) {
    if systemd_runs(root) {
        let _ = Command::new("systemctl")
            .args(["restart", "kubelet"])
            .status();
        return;
    }
    if let Some(pid) = read_pid(&root.host(KUBELET_PID)).filter(|p| alive(*p)) {
        signal(pid, "-TERM");
    }
}

/// Stops the supervisor, then the kubelet (TERM, KILL after 10 s). Returns whether one ran.
pub fn stop(root: &Root) -> bool {
    if systemd_runs(root) {
        return Command::new("systemctl")
            .args(["stop", "kubelet"])
            .status()
            .is_ok_and(|s| s.success());
    }
    let mut stopped = false;
    if let Some(pid) = supervisor_running(root) {
        signal(pid, "-KILL");
        stopped = true;
    }
    if let Some(pid) = read_pid(&root.host(KUBELET_PID)).filter(|p| alive(*p)) {
        signal(pid, "-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(pid) {
            signal(pid, "-KILL");
        }
        stopped = true;
    }
    let _ = fs::remove_file(root.host(SUPERVISOR_PID));
    let _ = fs::remove_file(root.host(KUBELET_PID));
    stopped
}

/// `kubeadm kubelet-supervisor`: runs the kubelet forever, restarting it 2 s after it exits
/// (upstream's unit restarts after 10 s), reading the flags files again on every start.
pub fn supervise(root: &Root) -> Result<(), Error> {
    let binary = std::env::var_os("KUBEADM_KUBELET_BINARY")
        .map(PathBuf::from)
        .ok_or_else(|| Error::Config("KUBEADM_KUBELET_BINARY is not set".into()))?;
    write(
        &root.host(SUPERVISOR_PID),
        &format!("{}\n", std::process::id()),
    )?;
    loop {
        let args = command_line(root);
        eprintln!(
            "kubelet-supervisor: starting {} {}",
            binary.display(),
            args.join(" ")
        );
        let started = Instant::now();
        match Command::new(&binary)
            .args(&args)
            .stdin(Stdio::null())
            .spawn()
        {
            Ok(mut child) => {
                write(&root.host(KUBELET_PID), &format!("{}\n", child.id()))?;
                let status = child.wait();
                eprintln!("kubelet-supervisor: kubelet exited: {status:?}");
            }
            Err(e) => eprintln!("kubelet-supervisor: cannot start the kubelet: {e}"),
        }
        // A kubelet that ran for a while restarts at once (a requested restart); one that
        // fails on start-up is retried after a pause, as systemd's RestartSec does.
        if started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

/// kubelet-finalize/enable-client-cert-rotation: point kubelet.conf at the rotated
/// certificate once the kubelet wrote it.
pub fn finalize(root: &Root) -> Result<bool, Error> {
    let pem = root.host(CLIENT_CERT);
    let conf = root.host(KUBELET_CONF);
    if !pem.exists() || !conf.exists() {
        return Ok(false);
    }
    println!(
        "[kubelet-finalize] Updating {:?} to point to a rotatable kubelet client certificate and key",
        conf.display().to_string()
    );
    let text = fs::read_to_string(&conf).map_err(io(format!("reading {conf:?}")))?;
    let mut v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    if let Some(users) = v.get_mut("users").and_then(|u| u.as_sequence_mut()) {
        for u in users {
            if let Some(user) = u.get_mut("user").and_then(|u| u.as_mapping_mut()) {
                user.remove("client-certificate-data");
                user.remove("client-key-data");
                let p = serde_yaml_ng::Value::String(pem.display().to_string());
                user.insert("client-certificate".into(), p.clone());
                user.insert("client-key".into(), p);
            }
        }
    }
    let out = serde_yaml_ng::to_string(&v).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    crate::pki::write_file(&conf, out.as_bytes(), 0o600)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_args_override_computed_flags_and_env_is_quoted() {
        let root = Root::new(Some(Path::new("/r")));
        let f = flags(
            &root,
            "unix:///s.sock",
            "p:1",
            "some-node-not-this-host",
            Some("127.0.0.1".parse().expect("ip")),
            &[("cni-conf-dir".into(), "/c".into())],
        );
        assert_eq!(f["cni-conf-dir"], "/c");
        assert_eq!(f["root-dir"], "/r/var/lib/kubelet");
        assert_eq!(f["hostname-override"], "some-node-not-this-host");
        let env = flags_env(&f);
        assert!(env.starts_with("KUBELET_KUBEADM_ARGS=\"--cert-dir=/r/var/lib/kubelet/pki "));
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("flags.env");
        fs::write(&file, env).expect("write");
        let args = read_env_args(&file, "KUBELET_KUBEADM_ARGS");
        assert!(args.contains(&"--container-runtime-endpoint=unix:///s.sock".to_string()));
        assert!(args.contains(&"--node-ip=127.0.0.1".to_string()));
    }

    #[test]
    fn merge_overlays_objects_and_replaces_scalars() {
        let mut a = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge(&mut a, &json!({"a": {"c": 3}, "d": [2], "e": true}));
        assert_eq!(a, json!({"a": {"b": 1, "c": 3}, "d": [2], "e": true}));
    }

    #[test]
    fn healthz_url_follows_the_configuration() {
        assert_eq!(
            healthz_url(&json!({"healthzPort": 1234})),
            "http://127.0.0.1:1234/healthz"
        );
    }
}
