//! Nodes in their own network namespaces, linked by one bridge in the host's namespace (an L2
//! segment the host also sits on), for tests of a multi-node cluster. Each node gets upstream's
//! default ports to itself. Everything is deleted on drop.

#![allow(dead_code)]

use std::process::{Command, Stdio};

/// The segment: a host bridge with `<prefix>.1/24`; nodes get `.2`, `.3`, ...
pub struct Segment {
    pub tag: String,
    pub prefix: String,
    pub bridge: String,
    nodes: Vec<String>,
}

/// A node's network namespace (`/run/netns/<ns>`) and its address on the segment.
#[derive(Clone, Debug)]
pub struct NodeNet {
    pub ns: String,
    pub ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Segment {
    /// A segment named after this process; its /24 is `10.<200 + pid % 50>.<pid / 50 % 250>`
    /// (clear of the Service range 10.96.0.0/12 and the tests' pod subnets).
    pub fn new() -> Self {
        let pid = std::process::id();
        let tag = format!("k{}", pid % 100_000);
        let prefix = format!("10.{}.{}", 200 + pid % 50, pid / 50 % 250);
        let bridge = format!("{tag}br");
        let _ = Command::new("ip")
            .args(["link", "del", &bridge])
            .stderr(Stdio::null())
            .status();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        let me = Segment {
            tag,
            prefix,
            bridge,
            nodes: Vec::new(),
        };
        ip(&[
            "addr",
            "add",
            &format!("{}.1/24", me.prefix),
            "dev",
            &me.bridge,
        ]);
        ip(&["link", "set", &me.bridge, "up"]);
        me
    }

    /// The host's address on the segment.
    pub fn host_ip(&self) -> String {
        format!("{}.1", self.prefix)
    }

    /// A new node namespace on the segment, with loopback up and a default route via the host.
    pub fn node(&mut self) -> NodeNet {
        let n = self.nodes.len() + 2;
        let ns = format!("{}n{n}", self.tag);
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &ns]);
        self.nodes.push(ns.clone());
        let host_end = format!("{}v{n}", self.tag);
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["link", "set", &host_end, "master", &self.bridge, "up"]);
        let addr = format!("{}.{n}", self.prefix);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "route", "add", "default", "via", &self.host_ip()]);
        NodeNet { ns, ip: addr }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        for ns in &self.nodes {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}
