//! A private containerd for one test: own root, state, socket and CNI conf dir, the config
//! shared/ENVIRONMENT.md describes, and the pause and busybox test images imported. Dropping it
//! removes every sandbox through the CRI, stops containerd and its shims, unmounts and deletes
//! its directories.
#![allow(dead_code)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use component_base::oci::{Image, ImageConfig, Layer};

/// The sandbox image containerd is configured with.
pub const PAUSE_IMAGE: &str = "kube-test/pause:1.0";
/// A busybox image: /bin/busybox plus its applet symlinks (sh, sleep, httpd, wget, ...).
pub const BUSYBOX_IMAGE: &str = "kube-test/busybox:1.0";

pub struct Containerd {
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    pub socket: PathBuf,
    pub cni_conf_dir: PathBuf,
    /// Bridges the kubelets of this test create; deleted on drop.
    pub bridges: std::sync::Mutex<Vec<String>>,
}

fn busybox_layer() -> Layer {
    let mut layer = Layer::new();
    layer
        .host_file("bin/busybox", Path::new("/bin/busybox"))
        .expect("read /bin/busybox (apt install busybox-static)");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if !applet.is_empty() && applet != "busybox" {
            layer
                .symlink(&format!("bin/{applet}"), "busybox")
                .expect("applet symlink");
        }
    }
    for dir in ["tmp", "var/www", "etc", "proc", "sys", "dev"] {
        layer
            .dir(dir, if dir == "tmp" { 0o1777 } else { 0o755 })
            .expect("dir");
    }
    layer
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
        )
        .expect("passwd")
        .file("etc/group", 0o644, b"root:x:0:\n".to_vec())
        .expect("group");
    layer
}

/// The name the CRI looks images up by: `ctr import` stores the name verbatim, while the CRI
/// normalizes `kube-test/x:1.0` to `docker.io/kube-test/x:1.0`.
fn normalized(name: &str) -> String {
    format!("docker.io/{name}")
}

/// Writes the pause and busybox images as OCI archives into `dir`; returns their paths.
pub fn build_images(dir: &Path) -> Vec<PathBuf> {
    let layer = busybox_layer();
    let images = [
        Image {
            name: normalized(PAUSE_IMAGE),
            config: ImageConfig {
                entrypoint: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "trap 'exit 0' TERM INT; sleep 2147483647 & wait".into(),
                ],
                ..ImageConfig::default()
            },
            layers: vec![layer.clone()],
        },
        Image {
            name: normalized(BUSYBOX_IMAGE),
            config: ImageConfig {
                cmd: vec!["/bin/sh".into()],
                env: vec![
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                ],
                ..ImageConfig::default()
            },
            layers: vec![layer],
        },
    ];
    images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let path = dir.join(format!("image-{i}.tar"));
            let file = File::create(&path).expect("create image archive");
            image
                .write_archive(std::io::BufWriter::new(file))
                .expect("write image archive");
            path
        })
        .collect()
}

impl Containerd {
    pub fn start() -> Self {
        Self::start_in(None)
    }

    /// Starts containerd inside the network namespace `/run/netns/<netns>` when given (a node
    /// of a multi-node test): its CNI bridge and the host-network pods live there.
    pub fn start_in(netns: Option<&str>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kubelet-containerd-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().to_path_buf();
        let socket = root.join("containerd.sock");
        let cni_conf_dir = root.join("cni-conf");
        fs::create_dir_all(&cni_conf_dir).expect("cni conf dir");
        let config = format!(
            r#"version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{sock}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
            root = root.display(),
            sock = socket.display(),
            cni = cni_conf_dir.display(),
        );
        let config_path = root.join("config.toml");
        fs::write(&config_path, config).expect("write containerd config");
        let log = File::create(root.join("containerd.log")).expect("containerd log");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg("containerd");
                c
            }
            None => Command::new("containerd"),
        };
        let child = cmd
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn containerd (apt install containerd)");
        let mut me = Containerd {
            dir: Some(dir),
            child: Some(child),
            socket,
            cni_conf_dir,
            bridges: std::sync::Mutex::new(Vec::new()),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = me.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "containerd exited with {status}:\n{}",
                        fs::read_to_string(root.join("containerd.log")).unwrap_or_default()
                    );
                }
            }
            if me.socket.exists() && me.ctr(&["version"]).status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not answer within 30s"
            );
            thread::sleep(Duration::from_millis(100));
        }
        for archive in build_images(&root) {
            let out = me.ctr(&["images", "import", &archive.to_string_lossy()]);
            assert!(
                out.status.success(),
                "ctr images import: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = fs::remove_file(archive);
        }
        me
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("temp dir present").path()
    }

    /// The containerd process (its shims not included).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `unix://<socket>` for --container-runtime-endpoint.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs `ctr` against this containerd in the CRI's `k8s.io` namespace.
    pub fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .expect("run ctr")
    }

    /// IDs of the running tasks (containers and sandboxes).
    pub fn running_tasks(&self) -> Vec<String> {
        let out = self.ctr(&["tasks", "ls"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter(|l| l.contains("RUNNING"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }

    /// Tears down every sandbox through the CRI (containers, network namespaces, IPs).
    fn remove_all_sandboxes(&self) {
        let endpoint = self.endpoint();
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(_) => return,
        };
        rt.block_on(async move {
            let Ok(runtime) = kubelet::cri::Runtime::new(&endpoint) else {
                return;
            };
            let fut = async {
                for c in runtime.list_containers(None).await.unwrap_or_default() {
                    let _ = runtime.stop_container(&c.id, Duration::ZERO).await;
                    let _ = runtime.remove_container(&c.id).await;
                }
                for s in runtime.list_pod_sandbox(None).await.unwrap_or_default() {
                    let _ = runtime.stop_pod_sandbox(&s.id).await;
                    let _ = runtime.remove_pod_sandbox(&s.id).await;
                    if let Some(uid) = s.labels.get("io.kubernetes.pod.uid") {
                        kubelet::pod::resources::remove_pod_cgroups("", uid);
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(60), fut).await;
        });
    }

    /// PIDs of shims started by this containerd (their command line names our socket).
    fn shim_pids(&self) -> Vec<u32> {
        let needle = self.socket.to_string_lossy().into_owned();
        let mut pids = Vec::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("containerd-shim") && cmdline.contains(&needle) {
                pids.push(pid);
            }
        }
        pids
    }
}

fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.remove_all_sandboxes();
        let shims = self.shim_pids();
        if let Some(mut child) = self.child.take() {
            kill(child.id(), "-TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in shims {
            kill(pid, "-KILL");
        }
        for bridge in self.bridges.lock().map(|b| b.clone()).unwrap_or_default() {
            let _ = Command::new("ip")
                .args(["link", "del", &bridge])
                .stderr(Stdio::null())
                .status();
        }
        // Snapshots and sandbox shm mounts live under our dir: unmount deepest first.
        let dir = self.dir().to_string_lossy().into_owned();
        let mut mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
        if std::env::var_os("KEEP_TEST_DIRS").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("keeping {}", dir.keep().display());
            }
        } else if thread::panicking() {
            let log = fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- containerd log (last 40 lines, newest first) ---\n{}",
                tail.join("\n")
            );
        }
    }
}
