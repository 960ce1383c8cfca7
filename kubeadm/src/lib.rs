//! kubeadm: the init phases that stand alone (preflight, certs, kubeconfig, the store and
//! control-plane static Pod manifests), `certs check-expiration|renew` and the file part of reset.

pub mod cli;
pub mod config;
pub mod kubeconfig;
pub mod manifests;
pub mod pki;
pub mod preflight;
pub mod renewal;
pub mod reset;

use cli::{CertsCmd, Cli, Command, InitSub, Phase};
use config::{Config, Root};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Pki(String),
    #[error("{0}")]
    Kubeconfig(String),
    #[error("{0}")]
    Manifest(String),
    #[error("{0}")]
    Preflight(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("error execution phase {0}: {1}")]
    Phase(String, #[source] Box<Error>),
    #[error("aborted reset operation")]
    Aborted,
}

/// Phases of `kubeadm init` that later sessions add; listed so `init` says what it did not do.
pub const PENDING_PHASES: [&str; 8] = [
    "kubelet-start",
    "wait-control-plane",
    "upload-config",
    "upload-certs",
    "mark-control-plane",
    "bootstrap-token",
    "kubelet-finalize",
    "addons",
];

fn in_phase<T>(name: &str, r: Result<T, Error>) -> Result<T, Error> {
    r.map_err(|e| Error::Phase(name.to_string(), Box::new(e)))
}

/// `certs <which>`: one certificate, or all of them in upstream's order.
fn certs_phase(cfg: &Config, which: &str) -> Result<(), Error> {
    let alg = cfg.key_algorithm;
    let dir = &cfg.cert_dir;
    if which == "all" {
        println!(
            "[certs] Using certificateDir folder {:?}",
            dir.display().to_string()
        );
    }
    let leaves = pki::leaf_specs(cfg)?;
    let needs_ca = |ca: pki::CaSpec| {
        which == "all" || which == ca.name || leaves.iter().any(|l| l.name == which && l.ca == ca)
    };
    for ca_spec in pki::CAS {
        if !needs_ca(ca_spec) {
            continue;
        }
        let phase = format!("certs/{}", ca_spec.name);
        if cfg.should_skip(&phase) {
            continue;
        }
        let ca = if which == "all" || which == ca_spec.name {
            in_phase(&phase, pki::ensure_ca(dir, ca_spec, alg))?
        } else {
            in_phase(
                &format!("certs/{which}"),
                pki::load_ca(dir, ca_spec).and_then(|c| {
                    c.ok_or_else(|| {
                        Error::Pki(format!(
                            "couldn't create {which:?} certificate: failure loading {} certificate authority: couldn't load the certificate file {}: no such file or directory",
                            ca_spec.base,
                            pki::cert_path(dir, ca_spec.base).display()
                        ))
                    })
                }),
            )?
        };
        for leaf in leaves.iter().filter(|l| l.ca == ca_spec) {
            if which != "all" && which != leaf.name {
                continue;
            }
            let phase = format!("certs/{}", leaf.name);
            if cfg.should_skip(&phase) {
                continue;
            }
            in_phase(&phase, pki::ensure_leaf(dir, &ca, leaf, alg))?;
        }
    }
    if (which == "all" || which == "sa") && !cfg.should_skip("certs/sa") {
        in_phase("certs/sa", pki::ensure_sa(dir, alg))?;
    }
    Ok(())
}

fn kubeconfig_phase(cfg: &Config, which: &str) -> Result<(), Error> {
    if which == "all" {
        println!(
            "[kubeconfig] Using kubeconfig folder {:?}",
            cfg.kubernetes_dir.display().to_string()
        );
    }
    let ca = in_phase(
        &format!("kubeconfig/{which}"),
        pki::load_ca(&cfg.cert_dir, pki::CA).and_then(|c| {
            c.ok_or_else(|| {
                Error::Pki(format!(
                    "couldn't create a kubeconfig; the CA files couldn't be loaded: couldn't load the certificate file {}: no such file or directory",
                    pki::cert_path(&cfg.cert_dir, "ca").display()
                ))
            })
        }),
    )?;
    for spec in kubeconfig::ALL {
        if which != "all" && which != spec.phase {
            continue;
        }
        let phase = format!("kubeconfig/{}", spec.phase);
        if cfg.should_skip(&phase) {
            continue;
        }
        in_phase(&phase, kubeconfig::ensure(cfg, &ca, spec))?;
    }
    Ok(())
}

fn control_plane_phase(cfg: &Config, which: &str) -> Result<(), Error> {
    if which == "all" {
        println!(
            "[control-plane] Using manifest folder {:?}",
            cfg.manifests_dir.display().to_string()
        );
    }
    type Build = fn(&Config) -> k8s_openapi::api::core::v1::Pod;
    let components: [(&str, &str, Build); 3] = [
        (
            "apiserver",
            manifests::KUBE_APISERVER,
            manifests::apiserver_pod,
        ),
        (
            "controller-manager",
            manifests::KUBE_CONTROLLER_MANAGER,
            manifests::controller_manager_pod,
        ),
        (
            "scheduler",
            manifests::KUBE_SCHEDULER,
            manifests::scheduler_pod,
        ),
    ];
    for (phase_name, component, build) in components {
        if which != "all" && which != phase_name {
            continue;
        }
        let phase = format!("control-plane/{phase_name}");
        if cfg.should_skip(&phase) {
            continue;
        }
        println!("[control-plane] Creating static Pod manifest for {component:?}");
        in_phase(&phase, manifests::write(cfg, component, &build(cfg)))?;
    }
    Ok(())
}

fn etcd_phase(cfg: &Config) -> Result<(), Error> {
    if cfg.should_skip("etcd/local") {
        return Ok(());
    }
    println!(
        "[etcd] Creating static Pod manifest for local etcd in {:?}",
        cfg.manifests_dir.display().to_string()
    );
    in_phase(
        "etcd/local",
        manifests::write(cfg, manifests::KUBE_STORE, &manifests::store_pod(cfg)),
    )
}

/// `kubeadm init`: every phase this kubeadm has, in upstream's order.
fn init(cfg: &Config) -> Result<(), Error> {
    println!(
        "[init] Using Kubernetes version: {}",
        cfg.kubernetes_version
    );
    if !cfg.should_skip("preflight") {
        in_phase("preflight", preflight::phase(cfg))?;
    }
    certs_phase(cfg, "all")?;
    kubeconfig_phase(cfg, "all")?;
    etcd_phase(cfg)?;
    control_plane_phase(cfg, "all")?;
    println!(
        "[init] Not run (not part of this kubeadm yet): {}",
        PENDING_PHASES.join(", ")
    );
    println!(
        "[init] The control plane's static Pod manifests are in {:?}; the admin kubeconfig is {:?}",
        cfg.manifests_dir.display().to_string(),
        kubeconfig::path(cfg, kubeconfig::ADMIN)
            .display()
            .to_string()
    );
    Ok(())
}

fn version(output: &str) -> Result<(), Error> {
    let v = config::DEFAULT_KUBERNETES_VERSION;
    let (major, minor) = {
        let mut it = v.trim_start_matches('v').split('.');
        (it.next().unwrap_or("1"), it.next().unwrap_or("0"))
    };
    match output {
        "short" => println!("{v}"),
        "json" | "yaml" => {
            let info = serde_json::json!({
                "clientVersion": {
                    "major": major,
                    "minor": minor,
                    "gitVersion": v,
                    "compiler": "rustc",
                    "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
                }
            });
            let text = if output == "json" {
                serde_json::to_string_pretty(&info).map_err(|e| Error::Config(e.to_string()))?
            } else {
                serde_yaml_ng::to_string(&info).map_err(|e| Error::Config(e.to_string()))?
            };
            println!("{text}");
        }
        "" => println!(
            "kubeadm version: &version.Info{{Major:\"{major}\", Minor:\"{minor}\", GitVersion:\"{v}\", Compiler:\"rustc\", Platform:\"{}/{}\"}}",
            std::env::consts::OS,
            std::env::consts::ARCH
        ),
        other => {
            return Err(Error::Config(format!(
                "invalid output format: {other}"
            )))
        }
    }
    Ok(())
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), Error> {
    let root = Root::new(cli.rootfs.as_deref());
    match cli.command {
        Command::Init(cmd) => match cmd.sub {
            None => init(&Config::load(root, cmd.flags.overrides())?),
            Some(InitSub::Phase { phase }) => match phase {
                Phase::Preflight { flags } => {
                    let cfg = Config::load(root, flags.overrides())?;
                    in_phase("preflight", preflight::phase(&cfg))
                }
                Phase::Certs { which, flags } => {
                    certs_phase(&Config::load(root, flags.overrides())?, &which)
                }
                Phase::Kubeconfig { which, flags } => {
                    kubeconfig_phase(&Config::load(root, flags.overrides())?, &which)
                }
                Phase::ControlPlane { which, flags } => {
                    control_plane_phase(&Config::load(root, flags.overrides())?, &which)
                }
                Phase::Etcd { flags, .. } => etcd_phase(&Config::load(root, flags.overrides())?),
            },
        },
        Command::Certs { command } => match command {
            CertsCmd::CheckExpiration { flags } => {
                let cfg = Config::load(root, flags.overrides())?;
                print!("{}", renewal::check_expiration(&cfg)?);
                Ok(())
            }
            CertsCmd::Renew { which, flags } => {
                renewal::renew(&Config::load(root, flags.overrides())?, &which)
            }
        },
        Command::Reset(args) => {
            let cert_dir = root.host(
                args.cert_dir
                    .unwrap_or_else(|| config::DEFAULT_CERT_DIR.into()),
            );
            reset::run(&reset::Options {
                root,
                cert_dir,
                force: args.force,
            })
        }
        Command::Version { output } => version(&output),
    }
}
