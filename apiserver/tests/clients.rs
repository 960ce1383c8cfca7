//! Other real clients against the real binary: the official Python `kubernetes` client
//! (installed by `make deps` into _out/pyenv).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{ApiServer, User};

fn python() -> PathBuf {
    let pyenv = std::env::var_os("PYENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../_out/pyenv"));
    let bin = pyenv.join("bin/python");
    assert!(
        bin.exists(),
        "{} is missing: `make deps` (scripts/pyenv.sh) installs the Python kubernetes client",
        bin.display()
    );
    bin
}

#[test]
fn python_kubernetes_client_creates_lists_watches_and_gets_upstream_errors() {
    let k = ApiServer::start();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_client.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(k.kubeconfig(User::Admin))
        .arg("pyclient")
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python client failed:\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python client: ok"));
}
