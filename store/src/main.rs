//! kube-store: parse etcd-style flags, start the member, stop on SIGTERM/SIGINT.

use clap::Parser;
use component_base::shutdown::Shutdown;
use store::options::Options;

/// mimalloc rather than glibc malloc, as in kube-apiserver: every request allocates and frees
/// many small buffers (gRPC frames, protobuf messages, log records), and glibc's
/// malloc/free/consolidate took ~18% of the store's CPU under 64-client puts. Built without
/// transparent huge pages (`no_thp`), as the apiserver, so the heap grows in 4 KiB pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
