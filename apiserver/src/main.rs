//! The kube-apiserver binary: flags in, server running until SIGTERM/SIGINT.

use clap::Parser;

/// mimalloc rather than glibc malloc: a write allocates and frees thousands of small JSON
/// values and strings, and glibc's malloc/free/consolidate took ~30% of the server's CPU under
/// the scheduler benchmark (docs/benchmarks.md). Built without transparent huge pages
/// (`no_thp`): zeroing fresh 2 MiB pages as the heap grew took ~18% of the server's CPU in
/// the same benchmark, against ~4% for faulting 4 KiB pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let options = match apiserver::Options::try_parse() {
        Ok(o) => o,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            std::process::exit(64);
        }
        Err(e) => {
            let _ = e.print();
            return;
        }
    };
    component_base::logs::init("info,openraft=warn");
    let config = match options.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kube-apiserver: {e}");
            std::process::exit(64);
        }
    };
    let shutdown = match component_base::Shutdown::on_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kube-apiserver: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = apiserver::run(config, shutdown).await {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        tracing::error!("{msg}");
        eprintln!("kube-apiserver: {msg}");
        std::process::exit(1);
    }
}
