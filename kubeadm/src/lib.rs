//! kubeadm: `init` (preflight, images, certs, kubeconfig, the store and control-plane static
//! Pod manifests, the supervised kubelet, the phases that configure the running cluster, the
//! addons), `join`, `token`, `config images`, `certs check-expiration|renew` and `reset`.

pub mod addons;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod images;
pub mod join;
pub mod kubeconfig;
pub mod kubelet;
pub mod manifests;
pub mod pki;
pub mod preflight;
pub mod renewal;
pub mod reset;
pub mod token;

use cli::{
    CertsCmd, Cli, Command, ConfigCmd, ConfigImagesCmd, InitFlags, InitSub, Phase, TokenCmd,
};
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

fn images_phase(cfg: &Config, flags: &InitFlags) -> Result<(), Error> {
    in_phase(
        "images",
        images::phase(cfg, &images::binaries_dir(flags.binaries_dir.as_deref())),
    )
}

fn kubelet_start_phase(cfg: &Config, flags: &InitFlags) -> Result<(), Error> {
    let run = || -> Result<(), Error> {
        let config = kubelet::configuration(cfg)?;
        let flags_map = kubelet::flags(
            &cfg.root,
            &cfg.cri_socket,
            &images::pause_image(cfg),
            &cfg.node_name,
            Some(cfg.advertise_address),
            &cfg.kubelet_extra_args,
        );
        kubelet::write_files(&cfg.root, &config, &flags_map)?;
        let binary = images::binaries_dir(flags.binaries_dir.as_deref()).join("kubelet");
        kubelet::start(&cfg.root, &binary)
    };
    in_phase("kubelet-start", run())
}

/// The kubelet's healthz URL, from its configuration and a --healthz-port extra arg.
fn kubelet_healthz(cfg: &Config) -> Result<String, Error> {
    let mut c = kubelet::configuration(cfg)?;
    for (k, v) in &cfg.kubelet_extra_args {
        match k.as_str() {
            "healthz-port" => {
                c["healthzPort"] = serde_json::json!(v.parse::<u64>().unwrap_or(10248))
            }
            "healthz-bind-address" => c["healthzBindAddress"] = serde_json::json!(v),
            _ => {}
        }
    }
    Ok(kubelet::healthz_url(&c))
}

/// The admin.conf client, after making sure its group kubeadm:cluster-admins is bound to
/// cluster-admin (created as upstream does, through super-admin.conf when admin.conf cannot).
async fn admin_client(cfg: &Config) -> Result<kube::Client, Error> {
    let admin = cluster::client(&kubeconfig::path(cfg, kubeconfig::ADMIN)).await?;
    let super_admin = kubeconfig::path(cfg, kubeconfig::SUPER_ADMIN);
    let creator = if super_admin.exists() {
        cluster::client(&super_admin).await?
    } else {
        admin.clone()
    };
    cluster::ensure_admin_binding(&creator, &admin).await?;
    Ok(admin)
}

/// The phases after kubelet-start; each on its own or all in order (`which` = None).
fn cluster_phases(
    cfg: &Config,
    only: Option<(&str, &str)>,
    print_token: bool,
) -> Result<(), Error> {
    let wanted = |phase: &str| match only {
        Some((p, _)) => p == phase,
        None => !cfg.should_skip(phase),
    };
    let sub = |phase: &str, child: &str| match only {
        Some((p, w)) => p == phase && (w == "all" || w == child),
        None => !cfg.should_skip(&format!("{phase}/{child}")),
    };
    cluster::block_on(async {
        if wanted("wait-control-plane") {
            in_phase(
                "wait-control-plane",
                cluster::wait_control_plane(cfg, &kubelet_healthz(cfg)?).await,
            )?;
        }
        let needs_client = [
            "upload-config",
            "mark-control-plane",
            "bootstrap-token",
            "addon",
            "show-join-command",
        ]
        .iter()
        .any(|p| wanted(p));
        if !needs_client && !wanted("kubelet-finalize") {
            return Ok(());
        }
        let client = admin_client(cfg).await?;
        if wanted("upload-config") {
            let kubelet_config = kubelet::configuration(cfg)?;
            for which in ["kubeadm", "kubelet"] {
                if sub("upload-config", which) {
                    in_phase(
                        &format!("upload-config/{which}"),
                        cluster::upload_config(&client, cfg, which, &kubelet_config).await,
                    )?;
                }
            }
        }
        if only.is_none() && !cfg.should_skip("upload-certs") {
            println!("[upload-certs] Skipping phase. Please see --upload-certs");
        }
        if wanted("mark-control-plane") {
            in_phase(
                "mark-control-plane",
                cluster::mark_control_plane(&client, cfg).await,
            )?;
        }
        let (token, ttl) = cluster::init_token(cfg)?;
        if wanted("bootstrap-token") {
            if print_token {
                println!("[bootstrap-token] Using token: {token}");
            }
            in_phase(
                "bootstrap-token",
                cluster::bootstrap_token(&client, cfg, &token, ttl).await,
            )?;
        }
        if sub("kubelet-finalize", "enable-client-cert-rotation")
            && in_phase("kubelet-finalize", kubelet::finalize(&cfg.root))?
        {
            kubelet::restart(&cfg.root);
        }
        if sub("addon", "coredns") {
            in_phase("addon/coredns", addons::dns(&client, cfg).await)?;
        }
        if sub("addon", "kube-proxy") {
            in_phase("addon/kube-proxy", addons::kube_proxy(&client, cfg).await)?;
        }
        if wanted("show-join-command") {
            let join = if print_token {
                cluster::join_command(cfg, &token)?
            } else {
                cluster::join_command(cfg, &token)?.replace(&token.to_string(), "<value withheld>")
            };
            if only.is_none() {
                cluster::print_success(cfg, Some(&join));
            } else {
                println!("{join}");
            }
        }
        Ok(())
    })?
}

/// `kubeadm init`: every phase, in upstream's order (images, ours, right after preflight,
/// where upstream pulls images).
fn init(cfg: &Config, flags: &InitFlags) -> Result<(), Error> {
    println!(
        "[init] Using Kubernetes version: {}",
        cfg.kubernetes_version
    );
    if !cfg.should_skip("preflight") {
        in_phase("preflight", preflight::phase(cfg))?;
    }
    if !cfg.should_skip("images") {
        images_phase(cfg, flags)?;
    }
    certs_phase(cfg, "all")?;
    kubeconfig_phase(cfg, "all")?;
    etcd_phase(cfg)?;
    control_plane_phase(cfg, "all")?;
    if !cfg.should_skip("kubelet-start") {
        kubelet_start_phase(cfg, flags)?;
    }
    cluster_phases(cfg, None, !flags.skip_token_print)
}

fn token_cmd(root: &Root, command: TokenCmd) -> Result<(), Error> {
    let kc = |k: Option<std::path::PathBuf>| {
        k.map(|p| root.host(p))
            .unwrap_or_else(|| root.host("/etc/kubernetes/admin.conf"))
    };
    match command {
        TokenCmd::Generate => {
            println!("{}", token::generate()?);
            Ok(())
        }
        TokenCmd::Create {
            token: given,
            print_join_command,
            ttl,
            description,
            kubeconfig,
        } => {
            let t = match given {
                Some(t) => token::parse(&t)?,
                None => token::generate()?,
            };
            let ttl = token::parse_duration(&ttl)?;
            let path = kc(kubeconfig);
            cluster::block_on(async {
                let client = cluster::client(&path).await?;
                cluster::token_create(&client, &t, ttl, description.as_deref().unwrap_or("")).await
            })??;
            if print_join_command {
                let cfg = Config::load(
                    root.clone(),
                    config::Overrides {
                        allow_unset_address: true,
                        ..Default::default()
                    },
                )?;
                // The endpoint is the one admin.conf talks to, as upstream takes it.
                let server = kubeconfig::load(&path)?
                    .clusters
                    .first()
                    .map(|c| c.cluster.server.clone())
                    .unwrap_or_default();
                let cmd = cluster::join_command(&cfg, &t)?;
                let local = cfg.control_plane_url();
                println!(
                    "{}",
                    cmd.replace(
                        local.trim_start_matches("https://"),
                        server.trim_start_matches("https://")
                    )
                    .replace(" \\\n\t", " ")
                    .trim_end()
                );
            } else {
                println!("{t}");
            }
            Ok(())
        }
        TokenCmd::List { kubeconfig } => {
            let path = kc(kubeconfig);
            let out = cluster::block_on(async {
                let client = cluster::client(&path).await?;
                cluster::token_list(&client).await
            })??;
            print!("{out}");
            Ok(())
        }
        TokenCmd::Delete { tokens, kubeconfig } => {
            let path = kc(kubeconfig);
            cluster::block_on(async {
                let client = cluster::client(&path).await?;
                cluster::token_delete(&client, &tokens).await
            })?
        }
    }
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
            None => init(&Config::load(root, cmd.flags.overrides())?, &cmd.flags),
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
                Phase::Images { flags } => {
                    images_phase(&Config::load(root, flags.overrides())?, &flags)
                }
                Phase::KubeletStart { flags } => {
                    kubelet_start_phase(&Config::load(root, flags.overrides())?, &flags)
                }
                Phase::WaitControlPlane { flags } => cluster_phases(
                    &Config::load(root, flags.overrides())?,
                    Some(("wait-control-plane", "all")),
                    true,
                ),
                Phase::UploadConfig { which, flags } => cluster_phases(
                    &Config::load(root, flags.overrides())?,
                    Some(("upload-config", &which)),
                    true,
                ),
                Phase::MarkControlPlane { flags } => cluster_phases(
                    &Config::load(root, flags.overrides())?,
                    Some(("mark-control-plane", "all")),
                    true,
                ),
                Phase::BootstrapToken { flags } => cluster_phases(
                    &Config::load(root, flags.overrides())?,
                    Some(("bootstrap-token", "all")),
                    !flags.skip_token_print,
                ),
                Phase::KubeletFinalize { which, flags } => cluster_phases(
                    &Config::load(root, flags.overrides())?,
                    Some(("kubelet-finalize", &which)),
                    true,
                ),
                Phase::Addon { which, flags } => cluster_phases(
                    &Config::load(root, flags.overrides())?,
                    Some(("addon", &which)),
                    true,
                ),
                Phase::ShowJoinCommand { flags } => cluster_phases(
                    &Config::load(root, flags.overrides())?,
                    Some(("show-join-command", "all")),
                    !flags.skip_token_print,
                ),
            },
        },
        Command::Join(args) => join::run(&root, &args),
        Command::Token { command } => token_cmd(&root, *command),
        Command::Config { command } => match *command {
            ConfigCmd::Images { command } => match command {
                ConfigImagesCmd::List { flags } => {
                    let mut o = flags.overrides();
                    o.allow_unset_address = true;
                    let cfg = Config::load(root, o)?;
                    for spec in images::list(&cfg) {
                        println!("{}", spec.name);
                    }
                    Ok(())
                }
                ConfigImagesCmd::Pull { flags } => {
                    let mut o = flags.overrides();
                    o.allow_unset_address = true;
                    images_phase(&Config::load(root, o)?, &flags)
                }
            },
        },
        Command::KubeletSupervisor => kubelet::supervise(&root),
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
                cri_socket: args.cri_socket,
            })
        }
        Command::Version { output } => version(&output),
    }
}
