//! kubeadm: parse the command line, run it, print errors the way upstream does.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = kubeadm::cli::Cli::parse();
    match kubeadm::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
