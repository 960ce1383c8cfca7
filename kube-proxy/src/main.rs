//! The kube-proxy binary: parse flags, set up logging, run until SIGTERM (or clean up and exit).

use clap::Parser;
use component_base::Shutdown;
use kube_proxy::{Config, Options};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = match Options::try_parse() {
        Ok(o) => o,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            std::process::exit(64);
        }
        Err(e) => {
            let _ = e.print();
            return Ok(());
        }
    };
    component_base::logs::init(options.log_level());
    let config = match Config::from_options(&options) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(64);
        }
    };
    let shutdown = Shutdown::on_signals()?;
    kube_proxy::run(config, shutdown).await?;
    Ok(())
}
