//! The `images` phase (not upstream): there is no registry to pull from, so the images the
//! manifests and addons name are built here from this project's binaries (each binary plus its
//! shared-library closure from `ldd`, and whatever else it runs) as OCI archives and imported
//! into the container runtime of nodeRegistration.criSocket with `ctr images import`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use component_base::oci::{Image, ImageConfig, Layer};

use crate::config::Config;
use crate::manifests;
use crate::Error;

/// The sandbox ("pause") image kubeadm builds and the kubelet is told to use.
pub const PAUSE_VERSION: &str = "3.10";
pub const KUBE_PROXY: &str = "kube-proxy";
pub const KUBE_DNS: &str = "kube-dns";

/// Helper programs kube-proxy runs (iptables and nftables), taken with their libraries.
const PROXY_TOOLS: [&str; 9] = [
    "/usr/sbin/iptables",
    "/usr/sbin/iptables-save",
    "/usr/sbin/iptables-restore",
    "/usr/sbin/ip6tables",
    "/usr/sbin/ip6tables-save",
    "/usr/sbin/ip6tables-restore",
    "/usr/sbin/xtables-nft-multi",
    "/usr/sbin/nft",
    "/usr/sbin/conntrack",
];

/// One image kubeadm uses: its reference and the binary it is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    /// The binary (file name in --binaries-dir) or None for the pause image.
    pub binary: Option<&'static str>,
    /// Missing binaries are skipped with a warning instead of failing the phase.
    pub optional: bool,
}

pub fn image(cfg: &Config, component: &str) -> String {
    format!(
        "{}/{component}:{}",
        cfg.image_repository, cfg.kubernetes_version
    )
}

pub fn pause_image(cfg: &Config) -> String {
    format!("{}/pause:{PAUSE_VERSION}", cfg.image_repository)
}

/// Every image, in upstream's `config images list` order.
pub fn list(cfg: &Config) -> Vec<Spec> {
    let component = |name: &'static str, optional| Spec {
        name: image(cfg, name),
        binary: Some(name),
        optional,
    };
    vec![
        component(manifests::KUBE_APISERVER, false),
        component(manifests::KUBE_CONTROLLER_MANAGER, false),
        component(manifests::KUBE_SCHEDULER, false),
        component(KUBE_PROXY, true),
        component(KUBE_DNS, true),
        Spec {
            name: pause_image(cfg),
            binary: None,
            optional: false,
        },
        component(manifests::KUBE_STORE, false),
    ]
}

/// The directory binaries are taken from: --binaries-dir, else the running kubeadm's.
pub fn binaries_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(d) = flag {
        return d.to_path_buf();
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin"))
}

/// The shared libraries (and the dynamic loader) `binary` needs, from `ldd`.
pub fn library_closure(binary: &Path) -> Result<Vec<PathBuf>, Error> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| Error::Io("running ldd".into(), e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A static binary: "not a dynamic executable".
        return Ok(Vec::new());
    }
    Ok(parse_ldd(&text))
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    libs.sort();
    libs.dedup();
    libs
}

fn rel(p: &Path) -> String {
    p.to_string_lossy().trim_start_matches('/').to_string()
}

fn oci(e: component_base::oci::OciError) -> Error {
    Error::Config(format!("building image: {e}"))
}

/// Adds `path` (following symlinks for the content) and its libraries to the layer.
fn add_with_libs(layer: &mut Layer, path: &Path, at: &str) -> Result<(), Error> {
    layer.host_file(at, path).map_err(oci)?;
    for lib in library_closure(path)? {
        layer.host_file(&rel(&lib), &lib).map_err(oci)?;
    }
    Ok(())
}

fn base_layer() -> Result<Layer, Error> {
    let mut layer = Layer::new();
    for dir in ["tmp", "var/tmp"] {
        layer.dir(dir, 0o1777).map_err(oci)?;
    }
    for dir in ["etc", "proc", "sys", "dev", "run", "var/run", "root"] {
        layer.dir(dir, 0o755).map_err(oci)?;
    }
    layer
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n"
                .to_vec(),
        )
        .map_err(oci)?
        .file(
            "etc/group",
            0o644,
            b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
        )
        .map_err(oci)?
        .file("etc/nsswitch.conf", 0o644, b"hosts: files dns\n".to_vec())
        .map_err(oci)?;
    Ok(layer)
}

/// The layer and config of one image.
pub fn build(spec: &Spec, dir: &Path) -> Result<Option<Image>, Error> {
    let mut layer = base_layer()?;
    let config = match spec.binary {
        None => {
            // pause: busybox's sh sleeping until TERM.
            let busybox = Path::new("/bin/busybox");
            if !busybox.is_file() {
                return Err(Error::Config(
                    "building the pause image needs /bin/busybox (apt install busybox-static)"
                        .into(),
                ));
            }
            add_with_libs(&mut layer, busybox, "bin/busybox")?;
            for applet in ["sh", "sleep"] {
                layer
                    .symlink(&format!("bin/{applet}"), "busybox")
                    .map_err(oci)?;
            }
            ImageConfig {
                entrypoint: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "trap 'exit 0' TERM INT; sleep 2147483647 & wait".into(),
                ],
                ..ImageConfig::default()
            }
        }
        Some(binary) => {
            let path = dir.join(binary);
            if !path.is_file() {
                return Ok(None);
            }
            add_with_libs(&mut layer, &path, &format!("usr/local/bin/{binary}"))?;
            if binary == KUBE_PROXY {
                for tool in PROXY_TOOLS {
                    let tool = Path::new(tool);
                    if tool.exists() {
                        add_with_libs(&mut layer, tool, &rel(tool))?;
                    }
                }
                add_tree(
                    &mut layer,
                    Path::new("/usr/lib/x86_64-linux-gnu/xtables"),
                    &|_| true,
                )?;
                // Only the iptables family's alternatives: the host's others (java, editors)
                // have nothing to do in the image.
                add_tree(&mut layer, Path::new("/etc/alternatives"), &|name| {
                    ["iptables", "ip6tables", "ebtables", "arptables"]
                        .iter()
                        .any(|p| name.starts_with(p))
                })?;
            }
            ImageConfig {
                entrypoint: vec![format!("/usr/local/bin/{binary}")],
                env: vec![
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                ],
                ..ImageConfig::default()
            }
        }
    };
    Ok(Some(Image {
        name: spec.name.clone(),
        config,
        layers: vec![layer],
    }))
}

/// Copies a host directory (files with their libraries, symlinks as symlinks) into the layer,
/// the entries whose name `keep` accepts.
fn add_tree(layer: &mut Layer, dir: &Path, keep: &dyn Fn(&str) -> bool) -> Result<(), Error> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if !keep(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => continue,
        };
        if meta.file_type().is_symlink() {
            if let Ok(target) = std::fs::read_link(&path) {
                layer
                    .symlink(&rel(&path), &target.to_string_lossy())
                    .map_err(oci)?;
                // The alternatives' targets (e.g. /usr/sbin/iptables-nft) must exist too.
                let resolved = if target.is_absolute() {
                    target
                } else {
                    dir.join(target)
                };
                if resolved.is_file() && !resolved.starts_with(dir) {
                    add_with_libs(layer, &resolved, &rel(&resolved))?;
                }
            }
        } else if meta.is_dir() {
            add_tree(layer, &path, keep)?;
        } else if meta.is_file() {
            layer.host_file(&rel(&path), &path).map_err(oci)?;
        }
    }
    Ok(())
}

/// `unix:///run/x.sock` -> `/run/x.sock`.
pub fn socket_path(endpoint: &str) -> &str {
    endpoint.strip_prefix("unix://").unwrap_or(endpoint)
}

/// Whether the runtime already has `name` (`ctr images ls -q`).
fn present(socket: &str, name: &str) -> bool {
    Command::new("ctr")
        .args(["--address", socket, "-n", "k8s.io", "images", "ls", "-q"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == name)
        })
        .unwrap_or(false)
}

fn import(socket: &str, archive: &Path) -> Result<(), Error> {
    let out = Command::new("ctr")
        .args(["--address", socket, "-n", "k8s.io", "images", "import"])
        .arg(archive)
        .output()
        .map_err(|e| Error::Io("running ctr (apt install containerd)".into(), e))?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "ctr images import {}: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The phase: build every image whose binary exists and import it.
pub fn phase(cfg: &Config, binaries: &Path) -> Result<(), Error> {
    println!("[images] Building the images of the binaries in {binaries:?} and importing them into the container runtime at {:?}", cfg.cri_socket);
    import_all(&cfg.root, &cfg.cri_socket, &list(cfg), binaries)
}

/// The images any node may run (the add-ons' and the sandbox's): what `kubeadm join` imports
/// into a new node's runtime, as a registry pull would have brought them there.
pub fn node_list(repository: &str, version: &str) -> Vec<Spec> {
    let component = |name: &'static str| Spec {
        name: format!("{repository}/{name}:{version}"),
        binary: Some(name),
        optional: true,
    };
    vec![
        component(KUBE_PROXY),
        component(KUBE_DNS),
        Spec {
            name: format!("{repository}/pause:{PAUSE_VERSION}"),
            binary: None,
            optional: false,
        },
    ]
}

/// Builds each image whose binary exists (a missing optional one is skipped with a warning)
/// and imports it into the runtime at `cri_socket`.
pub fn import_all(
    root: &crate::config::Root,
    cri_socket: &str,
    specs: &[Spec],
    binaries: &Path,
) -> Result<(), Error> {
    let socket = socket_path(cri_socket);
    let tmp = root.host("/var/lib/kubeadm/images");
    std::fs::create_dir_all(&tmp).map_err(|e| Error::Io(format!("creating {tmp:?}"), e))?;
    for spec in specs {
        let Some(image) = build(spec, binaries)? else {
            let binary = spec.binary.unwrap_or_default();
            if spec.optional {
                println!(
                    "[images] WARNING: {} not found in {binaries:?}; skipping image {}",
                    binary, spec.name
                );
                continue;
            }
            return Err(Error::Config(format!(
                "binary {:?} not found; build it (cargo build --bins) or set --binaries-dir",
                binaries.join(binary)
            )));
        };
        let archive = tmp.join(format!("{}.tar", spec.name.replace(['/', ':'], "_")));
        let file =
            File::create(&archive).map_err(|e| Error::Io(format!("creating {archive:?}"), e))?;
        let desc = image
            .write_archive(std::io::BufWriter::new(file))
            .map_err(oci)?;
        let result = import(socket, &archive);
        let _ = std::fs::remove_file(&archive);
        result?;
        if !present(socket, &spec.name) {
            return Err(Error::Config(format!(
                "image {} was imported but the runtime does not list it",
                spec.name
            )));
        }
        println!("[images] Imported {} ({})", spec.name, desc.digest);
    }
    let _ = std::fs::remove_dir(&tmp);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_library_paths_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\tlibmissing.so => not found\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn socket_path_strips_the_scheme() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock"),
            "/run/containerd/containerd.sock"
        );
        assert_eq!(socket_path("/x.sock"), "/x.sock");
    }
}
