//! hollow-node: many kubelets on in-memory runtimes in one process, for scale tests.

use std::process::ExitCode;

use clap::Parser;
use component_base::Shutdown;
use kubelet::hollow::{run, HollowOptions};

#[tokio::main]
async fn main() -> ExitCode {
    let options = match HollowOptions::try_parse() {
        Ok(options) => options,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(64);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    component_base::logs::init("warn");
    let shutdown = match Shutdown::on_signals() {
        Ok(shutdown) => shutdown,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(options, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(64)
        }
    }
}
