//! Real clusters for the tests: `ringmq serve` processes on loopback, each
//! with its own ports and data directory, sharing a secret file.
#![allow(dead_code)] // each test binary uses its own part

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod proxy;

pub const BIN: &str = env!("CARGO_BIN_EXE_ringmq");

/// The longest any one wait in a cluster test may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// One node: its process (while it runs) and where it listens.
pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub secret: PathBuf,
    /// The link's port, kept across restarts.
    pub cluster: SocketAddr,
    pub native: SocketAddr,
    pub amqp: SocketAddr,
    pub http: SocketAddr,
    /// The address peers dial, when it is not `cluster` (a proxy's).
    pub advertised: Option<String>,
    child: Option<Child>,
}

/// A free loopback port for a link, kept across the node's restarts: so
/// it is taken below the kernel's ephemeral range, where no outgoing
/// connection (another node redialling) can be given it while the node
/// is down, and never twice by this process (the tests run side by side,
/// and a port free while its node is down is still that node's).
pub fn free_port() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, _) = ephemeral_range();
    let span = u32::from(low.saturating_sub(20_000).max(1_000)) / PORTS_PER_NODE;
    let base = std::process::id().wrapping_mul(7919) % span;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + u16::try_from(((base + n) % span) * PORTS_PER_NODE).unwrap();
        // The link's port and each shard's data port after it.
        let all = (0..PORTS_PER_NODE as u16).all(|i| std::net::TcpListener::bind(("127.0.0.1", port + i)).is_ok());
        if all {
            return SocketAddr::from(([127, 0, 0, 1], port));
        }
    }
}

/// The link's port, then one data port per shard (`--cores 2`), rounded up.
const PORTS_PER_NODE: u32 = 4;

fn ephemeral_range() -> (u16, u16) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text.split_whitespace().filter_map(|p| p.parse().ok());
    match (it.next(), it.next()) {
        (Some(a), Some(b)) if a > 21_000 => (a, b),
        _ => (32_768, 60_999),
    }
}

/// A secret file in `root`.
pub fn secret(root: &Path) -> PathBuf {
    let p = root.join("secret");
    std::fs::write(&p, "the cluster tests' shared secret\n").unwrap();
    p
}

impl Node {
    /// Starts a node; `extra` are more `serve` flags (`--join ...`).
    pub fn start(root: &Path, name: &str, secret: &Path, extra: &[&str]) -> Node {
        let mut n = Node {
            name: name.into(),
            dir: root.join(name),
            secret: secret.to_path_buf(),
            cluster: free_port(),
            native: "0.0.0.0:0".parse().unwrap(),
            amqp: "0.0.0.0:0".parse().unwrap(),
            http: "0.0.0.0:0".parse().unwrap(),
            advertised: None,
            child: None,
        };
        n.restart(extra);
        n
    }

    /// The link address its peers dial.
    pub fn link(&self) -> String {
        self.advertised.clone().unwrap_or_else(|| self.cluster.to_string())
    }

    /// Starts a node whose link is reached through `faults`' proxy: the
    /// node advertises the proxy's address.
    pub fn start_behind(root: &Path, name: &str, secret: &Path, faults: &proxy::Faults, extra: &[&str]) -> Node {
        let cluster = free_port();
        let advertised = faults.proxy(name, cluster).to_string();
        let mut n = Node {
            name: name.into(),
            dir: root.join(name),
            secret: secret.to_path_buf(),
            cluster,
            native: "0.0.0.0:0".parse().unwrap(),
            amqp: "0.0.0.0:0".parse().unwrap(),
            http: "0.0.0.0:0".parse().unwrap(),
            advertised: Some(advertised),
            child: None,
        };
        n.restart(extra);
        n
    }

    /// Starts the node's process again on its directory and link port.
    pub fn restart(&mut self, extra: &[&str]) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--cores", "2", "--no-pin"])
            .args(["--listen", "127.0.0.1:0", "--amqp-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--node-name", &self.name])
            .arg("--cluster-listen")
            .arg(self.cluster.to_string())
            .arg("--cluster-secret-file")
            .arg(&self.secret)
            .arg("--data-dir")
            .arg(&self.dir)
            .args(self.advertised.iter().flat_map(|a| ["--cluster-advertise", a.as_str()]))
            .args(extra)
            .env("RUST_LOG", "warn,openraft=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("ringmq serve starts");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).expect("a ready line");
        let field = |k: &str| -> SocketAddr {
            let v = line.split_whitespace().find_map(|w| w.strip_prefix(k));
            v.unwrap_or_else(|| panic!("{}: no {k} in {line:?}", self.name)).parse().unwrap()
        };
        self.native = field("native=");
        self.amqp = field("amqp=");
        self.http = field("metrics=");
        assert_eq!(field("cluster="), self.cluster);
        self.child = Some(child);
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the node runs").id()
    }

    /// `kill -9`: the node's files are all that remain.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `ringmq ctl --json ARGS` against the node.
    pub fn ctl(&self, args: &[&str]) -> Value {
        let url = format!("ringmq://{}", self.native);
        let out = Command::new(BIN).args(["ctl", "--json", "--url", &url]).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{}: ctl {args:?}: {text} {}", self.name, String::from_utf8_lossy(&out.stderr)))
    }

    /// `GET path` on the node's HTTP listener (as guest, from loopback):
    /// the status code and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.http).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        // "guest:guest"
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let code = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (code, body)
    }

    /// Runs `ringmq ctl ARGS`, which must fail: its error text.
    pub fn ctl_error(&self, args: &[&str]) -> String {
        let url = format!("ringmq://{}", self.native);
        let out = Command::new(BIN).args(["ctl", "--url", &url]).args(args).output().unwrap();
        assert!(!out.status.success(), "{}: ctl {args:?} succeeded", self.name);
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The cluster as the node sees it.
    pub fn status(&self) -> Value {
        self.ctl(&["cluster-status"])
    }

    /// Names of the nodes whose state is `state`, sorted.
    pub fn nodes_in(&self, state: &str) -> Vec<String> {
        let s = self.status();
        let mut v: Vec<String> = s["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["state"] == state)
            .map(|n| n["name"].as_str().unwrap_or_default().to_string())
            .collect();
        v.sort();
        v
    }

    /// The exchanges the node's shards route by (the built-in ones left
    /// out), sorted.
    pub fn exchanges(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .ctl(&["list-exchanges"])
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["name"].as_str().map(str::to_string))
            .filter(|n| !n.is_empty() && !n.starts_with("amq."))
            .collect();
        v.sort();
        v
    }

    /// The queues that live on this node (`ctl list-queues` asks its own
    /// shards), sorted.
    pub fn queues(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .ctl(&["list-queues"])
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["name"].as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls until `ok` holds, or fails the test with `what`.
pub fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three nodes: `n1` forms the cluster, `n2` and `n3` join through it.
pub fn three(root: &Path) -> Vec<Node> {
    three_with(root, &[])
}

/// [`three`], each node started with `extra` flags too.
pub fn three_with(root: &Path, extra: &[&str]) -> Vec<Node> {
    let secret = secret(root);
    let n1 = Node::start(root, "n1", &secret, extra);
    let seed = n1.cluster.to_string();
    let joining = |name| Node::start(root, name, &secret, &[extra, &["--join", &seed]].concat());
    let (n2, n3) = (joining("n2"), joining("n3"));
    let nodes = vec![n1, n2, n3];
    for n in &nodes {
        wait_until(&format!("{} sees three nodes up", n.name), || n.nodes_in("up") == ["n1", "n2", "n3"]);
    }
    nodes
}

/// The leader's name, as `n` sees it.
pub fn leader(n: &Node) -> Option<String> {
    n.status()["leader"].as_str().map(str::to_string)
}
