//! kubectl 1.32's WebSocket streams through the apiserver to a real kubelet and containerd:
//! exec/attach over `v5.channel.k8s.io` translated to SPDY towards the kubelet, port-forward
//! over the `SPDY/3.1+portforward.k8s.io` tunnel. kubectl falls back to SPDY silently, so the
//! apiserver's `apiserver_stream_translator_requests_total` / `..._tunnel_...` counters prove
//! which path was taken.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "common/containerd.rs"]
mod containerd;

#[path = "common/kubelet.rs"]
mod kubelet_process;

#[path = "common/proxied.rs"]
mod proxied;

#[path = "common/pki.rs"]
mod pki;

use std::fs;
use std::process::Command;

use proxied::{Stack, WAIT};

#[test]
fn kubectl_exec_cp_and_attach_use_websocket_v5_and_port_forward_the_tunnel() {
    let s = Stack::start("kw-ws", 120);
    s.run_pod(
        "shell",
        "echo hello-from-pod > /var/www/index.html; httpd -p 8080 -h /var/www; \
         while true; do echo attach-tick; sleep 0.3; done",
    );
    let ns = s.ns.as_str();
    let before = s.translated();

    // exec: output through the v5 WebSocket (-v=8 shows the negotiated subprotocol).
    let out = s
        .server
        .kubectl(&["-v=8", "exec", "-n", ns, "shell", "--", "echo", "hi"]);
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout, "hi\n");
    assert!(
        out.stderr
            .contains("Sec-Websocket-Protocol: v5.channel.k8s.io")
            && !out.stderr.to_lowercase().contains("fallback"),
        "kubectl used WebSocket v5 without falling back:\n{}",
        out.stderr
    );
    assert_eq!(s.translated(), before + 1, "the apiserver translated it");

    // The exit code and upstream's message come through the error channel.
    let out = s.server.kubectl(&[
        "exec",
        "-n",
        ns,
        "shell",
        "--",
        "sh",
        "-c",
        "echo to-err >&2; exit 3",
    ]);
    assert_eq!(out.code(), Some(3), "{out}");
    assert!(out.stderr.contains("to-err"), "{out}");
    assert!(
        out.stderr.contains("command terminated with exit code 3"),
        "{out}"
    );

    // exec -i: stdin arrives and v5's close of stdin ends `cat`.
    let out = s.server.kubectl_stdin(
        &["exec", "-i", "-n", ns, "shell", "--", "cat"],
        "line one\nline two\n",
    );
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout, "line one\nline two\n");

    // A larger stdin (fragmented WebSocket messages, several SPDY frames) arrives whole.
    let big: String = (0..20_000).map(|i| format!("{i}\n")).collect();
    let out = s
        .server
        .kubectl_stdin(&["exec", "-i", "-n", ns, "shell", "--", "wc", "-c"], &big);
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout.trim(), big.len().to_string());

    // A terminal (-it, under `script` for a pty): the resize channel is opened too.
    let before_tty = s.translated();
    let cmd = format!(
        "{} --kubeconfig={} exec -it -n {ns} shell -- sh -c 'tty; echo tty-done'",
        common::kubectl_binary(),
        s.server.kubeconfig(common::User::Admin).display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/dev/pts/") && text.contains("tty-done"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        s.translated(),
        before_tty + 1,
        "the tty exec was translated"
    );

    // cp both ways (tar over exec; the upload needs stdin's close).
    let local = s.kubelet.dir.join("cp-src.txt");
    fs::write(&local, "copied through websocket\n").expect("write local file");
    let out = s.server.kubectl(&[
        "cp",
        local.to_str().expect("path"),
        &format!("{ns}/shell:/tmp/copied.txt"),
    ]);
    assert!(out.success(), "{out}");
    let out = s
        .server
        .kubectl(&["exec", "-n", ns, "shell", "--", "cat", "/tmp/copied.txt"]);
    assert_eq!(out.stdout, "copied through websocket\n", "{out}");
    let back = s.kubelet.dir.join("cp-back.txt");
    let out = s.server.kubectl(&[
        "cp",
        &format!("{ns}/shell:/var/www/index.html"),
        back.to_str().expect("path"),
    ]);
    assert!(out.success(), "{out}");
    assert_eq!(
        fs::read_to_string(&back).expect("copied back"),
        "hello-from-pod\n"
    );
    let execs = s.translated();
    assert!(
        execs >= before + 8,
        "every exec and cp went through the translator"
    );

    // attach: the main process's output arrives while kubectl runs.
    let attach_log = s.kubelet.dir.join("attach.stderr");
    let (mut attach, lines) = s.kubectl_child(&["attach", "-n", ns, "shell"], &attach_log);
    for _ in 0..3 {
        let line = lines.recv_timeout(WAIT).expect("attached output");
        assert_eq!(line, "attach-tick");
    }
    let _ = attach.kill();
    let _ = attach.wait();
    assert_eq!(
        s.translated(),
        execs + 1,
        "attach went through the translator"
    );

    // port-forward over the WebSocket tunnel.
    let tunnels = s.counter("apiserver_stream_tunnel_requests_total", "101");
    let forward_log = s.kubelet.dir.join("port-forward.stderr");
    let (mut forward, lines) = s.kubectl_child(
        &[
            "port-forward",
            "-n",
            ns,
            "pod/shell",
            ":8080",
            "--address=127.0.0.1",
        ],
        &forward_log,
    );
    let first = lines.recv_timeout(WAIT).expect("port-forward banner");
    let port: u16 = first
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected banner {first:?}"));
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{port}/index.html"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello-from-pod\n");
    let _ = forward.kill();
    let _ = forward.wait();
    assert_eq!(
        s.counter("apiserver_stream_tunnel_requests_total", "101"),
        tunnels + 1,
        "port-forward went through the tunnel"
    );

    // RBAC: exec over WebSocket (a GET) needs "create" on pods/exec, as upstream; "get"
    // alone is refused on both paths (else the WebSocket attempt would succeed).
    for (name, verb, resource) in [("reader", "get", "pods"), ("exec-get", "get", "pods/exec")] {
        s.server.ok(&[
            "create",
            "role",
            name,
            "-n",
            ns,
            &format!("--verb={verb}"),
            &format!("--resource={resource}"),
        ]);
        s.server.ok(&[
            "create",
            "rolebinding",
            &format!("alice-{name}"),
            "-n",
            ns,
            &format!("--role={name}"),
            "--user=alice",
        ]);
    }
    let out = common::eventually("alice may read but not exec", WAIT, || {
        let out = s.server.kubectl_as(
            common::User::Alice,
            &["exec", "-n", ns, "shell", "--", "true"],
        );
        if out.stderr.contains("pods/exec") {
            Ok(out)
        } else {
            Err(out.to_string())
        }
    });
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("User \"alice\" cannot create resource \"pods/exec\" in API group \"\""),
        "{out}"
    );
    // Only "create" now: WebSocket exec works without "get".
    s.server
        .ok(&["delete", "rolebinding", "alice-exec-get", "-n", ns]);
    s.server.ok(&[
        "create",
        "role",
        "exec-create",
        "-n",
        ns,
        "--verb=create",
        "--resource=pods/exec",
    ]);
    s.server.ok(&[
        "create",
        "rolebinding",
        "alice-exec-create",
        "-n",
        ns,
        "--role=exec-create",
        "--user=alice",
    ]);
    let before = s.translated();
    let out = common::eventually("alice may exec", WAIT, || {
        let out = s.server.kubectl_as(
            common::User::Alice,
            &["exec", "-n", ns, "shell", "--", "echo", "as-alice"],
        );
        if out.success() {
            Ok(out)
        } else {
            Err(out.to_string())
        }
    });
    assert_eq!(out.stdout, "as-alice\n");
    assert_eq!(s.translated(), before + 1, "over WebSocket");
}
