//! A cluster whose inter-node links run over TLS (mutual: every member's
//! certificate signed by the cluster's CA): it forms and replicates; a
//! node whose certificate another CA signed cannot join, whatever secret
//! it holds; and the link's port speaks nothing but TLS.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod cluster;
mod common;

use cluster::{wait_until, Node};
use common::tls::TestCerts;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

fn tls_flags(certs: &TestCerts, cert: &str, key: &str) -> Vec<String> {
    let p = |n: &str| certs.path(n).display().to_string();
    vec![
        "--cluster-tls-cert-file".into(),
        p(cert),
        "--cluster-tls-key-file".into(),
        p(key),
        "--cluster-tls-ca-file".into(),
        p("ca.pem"),
    ]
}

#[test]
fn a_cluster_over_tls_replicates_and_refuses_a_node_of_another_ca() {
    let root = tempfile::tempdir().unwrap();
    let certs = TestCerts::new("node");
    let secret = cluster::secret(root.path());
    // Every node here is 127.0.0.1, which the server certificate names.
    let own = tls_flags(&certs, "server.pem", "server.key");
    let own: Vec<&str> = own.iter().map(String::as_str).collect();
    let n1 = Node::start(root.path(), "n1", &secret, &own);
    let seed = n1.link();
    let mut joining = own.clone();
    joining.extend(["--join", &seed]);
    let n2 = Node::start(root.path(), "n2", &secret, &joining);
    for n in [&n1, &n2] {
        wait_until(&format!("{} sees two nodes up", n.name), || n.nodes_in("up") == ["n1", "n2"]);
    }
    let out = n1.ctl(&["add-vhost", "over-tls"]);
    assert!(out.get("error").is_none(), "{out}");
    wait_until("n2 has the vhost", || n2.ctl(&["list-vhosts"]).to_string().contains("over-tls"));

    // A node with the secret but a certificate another CA signed: the
    // seed refuses its TLS handshake, so it never joins.
    let p = |n: &str| certs.path(n).display().to_string();
    let out = Command::new(cluster::BIN)
        .args(["serve", "--cores", "1", "--no-pin", "--listen", "127.0.0.1:0", "--amqp-listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0", "--node-name", "intruder"])
        .args(["--cluster-listen", &cluster::free_port().to_string()])
        .arg("--cluster-secret-file")
        .arg(&secret)
        .args(["--cluster-tls-cert-file", &p("other-client.pem"), "--cluster-tls-key-file", &p("other-client.key")])
        .args(["--cluster-tls-ca-file", &p("ca.pem"), "--join", &seed])
        .arg("--data-dir")
        .arg(root.path().join("intruder"))
        .env("RUST_LOG", "warn,openraft=off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It keeps trying its seed: stop it once the seed has refused it a
    // few times, and check it never became a member.
    std::thread::sleep(Duration::from_secs(3));
    let pid = out.id();
    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    let out = out.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ringmq ready"), "the intruder started: {err}");
    assert!(err.contains("cannot reach a seed"), "{err}");
    assert_eq!(n1.nodes_in("up"), ["n1", "n2"]);

    // The link's port speaks TLS only: a plain Hello gets no Hello back.
    let mut s = std::net::TcpStream::connect(n1.cluster).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = vec![0u8; 8];
    hello[0] = 62;
    hello[4] = 1; // a Hello's opcode
    hello.extend_from_slice(b"RGLK");
    hello.resize(8 + 62, 0);
    let _ = s.write_all(&hello);
    let mut back = Vec::new();
    let _ = s.read_to_end(&mut back);
    assert!(back.first().is_none_or(|b| *b == 0x15), "a TLS alert or nothing, got {back:?}");
}

#[test]
fn the_link_takes_new_certificates_on_sighup() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (TestCerts::new("node"), TestCerts::new("node"));
    // The node reads its files from here; they are replaced by b's below.
    let files = ["server.pem", "server.key", "ca.pem"];
    for f in files {
        std::fs::copy(a.path(f), root.path().join(f)).unwrap();
    }
    let p = |n: &str| root.path().join(n).display().to_string();
    let own = ["--cluster-tls-cert-file", &p("server.pem"), "--cluster-tls-key-file", &p("server.key")];
    let mut flags: Vec<&str> = own.to_vec();
    let ca = p("ca.pem");
    flags.extend(["--cluster-tls-ca-file", &ca]);
    let secret = cluster::secret(root.path());
    let n1 = Node::start(root.path(), "n1", &secret, &flags);
    let client = |c: &TestCerts| {
        let config =
            common::tls::client_config(&c.path("ca.pem"), Some((&c.path("client.pem"), &c.path("client.key"))));
        common::tls::connect(n1.cluster, config)
    };
    assert!(client(&a).is_ok(), "the link serves a's certificate");
    assert!(client(&b).is_err(), "and refuses b's CA");

    for f in files {
        std::fs::copy(b.path(f), root.path().join(f)).unwrap();
    }
    let hup = Command::new("kill").args(["-HUP", &n1.pid().to_string()]).status().unwrap();
    assert!(hup.success());
    wait_until("the link serves b's certificate", || client(&b).is_ok());
    assert!(client(&a).is_err(), "a's CA no longer verifies the link");
    wait_until("the node runs on, and shows itself", || n1.nodes_in("up") == ["n1"]);
}
