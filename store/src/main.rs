//! kube-store: parse etcd-style flags, start the member, stop on SIGTERM/SIGINT.

use clap::Parser;
use component_base::shutdown::Shutdown;
use store::options::Options;

fn main() -> std::process::ExitCode {
    let opts = Options::parse();
    component_base::logs::init(&opts.log_level);
    let config = match opts.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kube-store: {e}");
            return std::process::ExitCode::from(64);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kube-store: starting runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let shutdown = match Shutdown::on_signals() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("kube-store: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        match store::server::run(config, shutdown).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                let mut msg = format!("kube-store: {e}");
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                tracing::error!("{msg}");
                eprintln!("{msg}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}
