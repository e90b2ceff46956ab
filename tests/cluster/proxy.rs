//! A fault proxy for the inter-node links: each node advertises a proxy's
//! address instead of its own, so every link to it passes through here.
//! The proxy reads the dialler's `Hello` (its node name) to know which
//! pair of nodes a connection joins, and the test cuts or delays pairs at
//! will: a cut closes the pair's connections and refuses new ones, both
//! ways.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a `Hello` body's name length is: the magic (4), the version (2),
/// the cluster id (16), the node id (8), the nonce (32).
const NAME_AT: usize = 4 + 2 + 16 + 8 + 32;
const HEADER: usize = 8;

type Pair = (String, String);

#[derive(Default)]
struct Rules {
    /// Pairs of nodes that cannot talk (stored both ways).
    cut: HashSet<Pair>,
    /// Delay added to every chunk a node sends or receives.
    delay: HashMap<String, Duration>,
    /// Live connections, by (dialler, listener): shut down on a cut.
    live: Vec<(Pair, TcpStream)>,
}

/// The proxies of one cluster, sharing one set of rules.
#[derive(Clone, Default)]
pub struct Faults(Arc<Mutex<Rules>>);

impl Faults {
    /// Starts a proxy in front of node `owner`'s link at `target`; its
    /// address is what the node advertises.
    pub fn proxy(&self, owner: &str, target: SocketAddr) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (rules, owner) = (self.clone(), owner.to_string());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (rules, owner) = (rules.clone(), owner.clone());
                std::thread::spawn(move || rules.serve(s, owner, target));
            }
        });
        addr
    }

    /// Cuts every link between `a` and the nodes in `others`, both ways.
    pub fn cut(&self, a: &str, others: &[&str]) {
        let mut r = self.0.lock().unwrap();
        for b in others {
            r.cut.insert((a.to_string(), b.to_string()));
            r.cut.insert((b.to_string(), a.to_string()));
        }
        let Rules { cut, live, .. } = &mut *r;
        live.retain(|(pair, s)| {
            let keep = !cut.contains(pair);
            if !keep {
                let _ = s.shutdown(Shutdown::Both);
            }
            keep
        });
    }

    /// Heals every cut.
    pub fn heal(&self) {
        self.0.lock().unwrap().cut.clear();
    }

    /// Delays everything node `a` sends or receives by `d`.
    pub fn delay(&self, a: &str, d: Duration) {
        self.0.lock().unwrap().delay.insert(a.to_string(), d);
    }

    fn serve(&self, client: TcpStream, listener: String, target: SocketAddr) {
        let mut c = client;
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut first = vec![0u8; HEADER];
        if c.read_exact(&mut first).is_err() {
            return;
        }
        let body = u32::from_le_bytes(first[..4].try_into().unwrap()) as usize;
        if body > 1024 {
            return; // no Hello
        }
        first.resize(HEADER + body, 0);
        if c.read_exact(&mut first[HEADER..]).is_err() || body <= NAME_AT {
            return;
        }
        let len = usize::from(first[HEADER + NAME_AT]);
        let name = &first[HEADER + NAME_AT + 1..];
        let dialler = String::from_utf8_lossy(&name[..len.min(name.len())]).into_owned();
        let pair = (dialler, listener);
        let Ok(mut up) = TcpStream::connect(target) else { return };
        {
            let mut r = self.0.lock().unwrap();
            if r.cut.contains(&pair) {
                return;
            }
            r.live.push((pair.clone(), c.try_clone().unwrap()));
            r.live.push((pair.clone(), up.try_clone().unwrap()));
        }
        c.set_read_timeout(None).unwrap();
        if up.write_all(&first).is_err() {
            return;
        }
        let (c2, up2) = (c.try_clone().unwrap(), up.try_clone().unwrap());
        let (me, pair2) = (self.clone(), pair.clone());
        std::thread::spawn(move || me.pipe(up2, c2, &pair2));
        self.pipe(c, up, &pair);
    }

    /// Copies `from` to `to` until either ends, with the pair's delay.
    fn pipe(&self, mut from: TcpStream, mut to: TcpStream, pair: &Pair) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let delay = {
                let r = self.0.lock().unwrap();
                if r.cut.contains(pair) {
                    break;
                }
                let of = |n: &String| r.delay.get(n).copied().unwrap_or_default();
                of(&pair.0).max(of(&pair.1))
            };
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    }
}
