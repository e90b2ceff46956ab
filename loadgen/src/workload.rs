//! The resolved workload, and where its messages go: which queue or
//! exchange each producer publishes to, with which routing key, and which
//! queues each message reaches (its fan-out).

use crate::driver::ClientSpec;

/// Exchange types the load generator can set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeKind {
    /// Every bound queue gets every message; queues bound with key "".
    Fanout,
    /// Queues bound with their own name; producers route by queue name.
    Direct,
    /// Queues bound with `<queue>.#`; producers route with `<queue>.x`.
    Topic,
}

impl ExchangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Direct => "direct",
            ExchangeKind::Topic => "topic",
        }
    }
}

/// `--exchange NAME --exchange-type KIND`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Exchange {
    pub name: String,
    pub kind: ExchangeKind,
}

impl Exchange {
    /// The binding key of `queue`.
    pub fn binding_key(&self, queue: &str) -> String {
        match self.kind {
            ExchangeKind::Fanout => String::new(),
            ExchangeKind::Direct => queue.to_string(),
            ExchangeKind::Topic => format!("{queue}.#"),
        }
    }
}

/// Where one producer publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Straight into a queue (the default exchange, for AMQP).
    Queue(String),
    /// Through an exchange with one routing key.
    Exchange { exchange: String, key: String },
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Queue(q) => write!(f, "queue {q}"),
            Route::Exchange { exchange, key } => write!(f, "exchange {exchange} with key {key:?}"),
        }
    }
}

/// `--tls-ca`, `--tls-cert`, `--tls-key`: for `ringmqs://` and `amqps://`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TlsFlags {
    pub ca: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

/// A fully resolved workload.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Workload {
    pub url: String,
    pub tls: TlsFlags,
    pub label: String,
    pub producers: usize,
    pub consumers: usize,
    pub queues: Vec<String>,
    pub exchange: Option<Exchange>,
    pub size: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub drain_s: f64,
    /// `--rate` / `--rate-ramp`; `None`: as fast as possible.
    pub rate: Option<crate::schedule::RateProfile>,
    pub batch: usize,
    pub persistent: bool,
    pub confirm: bool,
    pub max_inflight: usize,
    pub prefetch: u16,
    pub ack_every: u64,
    pub cores: Vec<usize>,
    pub purge: bool,
    pub progress: bool,
    /// Native driver on a clustered broker: each queue's traffic straight
    /// to its node (`ringmq::client`'s `cluster_aware`); off: through the
    /// node of `--url`, which forwards.
    pub cluster_aware: bool,
    /// `--reconnect`: a client whose connection or subscription fails
    /// connects again (with backoff) instead of ending the run.
    pub reconnect: bool,
    /// `--drain-idle`: after the run, consumers stop once nothing new has
    /// arrived for this long (and every producer is done).
    pub drain_idle_s: Option<f64>,
    /// `--resubscribe-idle`: with `--reconnect`, a consumer that got
    /// nothing for this long subscribes again on a new connection.
    pub resubscribe_idle_s: Option<f64>,
    /// `--queue-arg KEY=VALUE`: declare arguments (native driver).
    pub queue_args: Vec<String>,
}

impl Workload {
    pub fn spec(&self) -> ClientSpec {
        ClientSpec {
            size: self.size,
            persistent: self.persistent,
            confirm: self.confirm,
            batch: self.batch,
            max_inflight: self.max_inflight,
            prefetch: self.prefetch,
            ack_every: self.ack_every,
        }
    }

    /// Worker that runs client `k` (producers first, then consumers).
    pub fn worker_of(&self, k: usize) -> usize {
        k % self.cores.len()
    }

    /// The queue producer `p` is paired with: it publishes there directly,
    /// or its routing key names it.
    pub fn producer_queue(&self, p: usize) -> usize {
        p % self.queues.len()
    }

    /// The queue consumer `c` consumes.
    pub fn consumer_queue(&self, c: usize) -> usize {
        c % self.queues.len()
    }

    /// Where producer `p` publishes.
    pub fn route(&self, p: usize) -> Route {
        let queue = &self.queues[self.producer_queue(p)];
        match &self.exchange {
            None => Route::Queue(queue.clone()),
            Some(x) => {
                let key = match x.kind {
                    ExchangeKind::Topic => format!("{queue}.x"),
                    ExchangeKind::Fanout | ExchangeKind::Direct => queue.clone(),
                };
                Route::Exchange { exchange: x.name.clone(), key }
            }
        }
    }

    /// Whether producer `p`'s messages reach queue `q`.
    pub fn reaches(&self, p: usize, q: usize) -> bool {
        match &self.exchange {
            Some(Exchange { kind: ExchangeKind::Fanout, .. }) => true,
            _ => self.producer_queue(p) == q,
        }
    }

    /// Whether some consumer consumes queue `q`.
    pub fn consumed(&self, q: usize) -> bool {
        q < self.consumers.min(self.queues.len())
    }

    /// Queues each message of producer `p` reaches (its fan-out).
    pub fn fanout(&self, p: usize) -> usize {
        (0..self.queues.len()).filter(|&q| self.reaches(p, q)).count()
    }

    /// Deliveries each message of producer `p` should make to consumers:
    /// the consumed queues it reaches.
    pub fn expected_per_message(&self, p: usize) -> u64 {
        (0..self.queues.len()).filter(|&q| self.reaches(p, q) && self.consumed(q)).count() as u64
    }

    /// The (queue, producer) streams consumers should receive in full.
    pub fn streams(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.queues.len())
            .filter(|&q| self.consumed(q))
            .flat_map(move |q| (0..self.producers).filter(move |&p| self.reaches(p, q)).map(move |p| (q, p)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn workload(producers: usize, consumers: usize, queues: usize, kind: Option<ExchangeKind>) -> Workload {
        Workload {
            url: "ringmq://x".into(),
            tls: TlsFlags::default(),
            label: String::new(),
            producers,
            consumers,
            queues: (0..queues).map(|i| format!("q-{i}")).collect(),
            exchange: kind.map(|kind| Exchange { name: "x".into(), kind }),
            size: 16,
            duration_s: 1.0,
            warmup_s: 0.0,
            drain_s: 1.0,
            rate: None,
            batch: 64,
            persistent: false,
            confirm: false,
            max_inflight: 1,
            prefetch: 1,
            ack_every: 1,
            cores: vec![0],
            purge: true,
            cluster_aware: true,
            progress: false,
            reconnect: false,
            drain_idle_s: None,
            resubscribe_idle_s: None,
            queue_args: Vec::new(),
        }
    }

    #[test]
    fn routes_and_keys() {
        let w = workload(2, 2, 2, None);
        assert_eq!(w.route(1), Route::Queue("q-1".into()));
        let w = workload(2, 2, 2, Some(ExchangeKind::Topic));
        assert_eq!(w.route(1), Route::Exchange { exchange: "x".into(), key: "q-1.x".into() });
        assert_eq!(w.exchange.as_ref().unwrap().binding_key("q-1"), "q-1.#");
        let w = workload(2, 2, 2, Some(ExchangeKind::Fanout));
        assert_eq!(w.route(0), Route::Exchange { exchange: "x".into(), key: "q-0".into() });
        assert_eq!(w.exchange.as_ref().unwrap().binding_key("q-0"), "");
    }

    #[test]
    fn fanout_reaches_every_queue() {
        let w = workload(2, 3, 3, Some(ExchangeKind::Fanout));
        assert_eq!(w.fanout(0), 3);
        assert_eq!(w.expected_per_message(1), 3);
        assert_eq!(w.streams().count(), 6);
        // Two consumers for three queues: queue 2 is not consumed.
        let w = workload(1, 2, 3, Some(ExchangeKind::Fanout));
        assert_eq!((w.fanout(0), w.expected_per_message(0)), (3, 2));
        assert_eq!(w.streams().collect::<Vec<_>>(), vec![(0, 0), (1, 0)]);
    }

    #[test]
    fn direct_and_plain_reach_one_queue() {
        for kind in [None, Some(ExchangeKind::Direct), Some(ExchangeKind::Topic)] {
            let w = workload(3, 2, 2, kind);
            assert_eq!(w.fanout(2), 1);
            assert_eq!(w.streams().collect::<Vec<_>>(), vec![(0, 0), (0, 2), (1, 1)]);
        }
        // Producer 1's queue has no consumer: nothing is expected of it.
        let w = workload(2, 1, 2, None);
        assert_eq!(w.expected_per_message(1), 0);
    }
}
