//! Scraping a broker's Prometheus endpoints, and an AMQP session held
//! open while a test scrapes (its connection and channels show there).

use super::{http_get, TestBroker};
use std::time::{Duration, Instant};

/// The value of the sample written exactly as `series`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Scrapes `path` until `check` holds (10 s at most).
pub fn scrape_until(b: &TestBroker, path: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = http_get(b.metrics, path);
        if check(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} never matched:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A lapin connection with one channel (`basic.qos` prefetch 7), open
/// until this is dropped.
pub struct AmqpHold {
    release: Option<std::sync::mpsc::Sender<()>>,
    client: Option<std::thread::JoinHandle<()>>,
}

impl AmqpHold {
    pub fn open(b: &TestBroker) -> Self {
        let url = format!("amqp://guest:guest@{}/%2f", b.amqp);
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel::<()>();
        let client = std::thread::spawn(move || {
            super::lapin_thread::on_thread(Duration::from_secs(60), async move {
                let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await?;
                let ch = conn.create_channel().await?;
                ch.basic_qos(7, lapin::options::BasicQosOptions::default()).await?;
                let _ = ready_tx.send(());
                let _ = hold.recv_timeout(Duration::from_secs(30));
                conn.close(200, "bye").await
            })
        });
        ready.recv_timeout(Duration::from_secs(30)).expect("the AMQP session opened");
        Self { release: Some(release), client: Some(client) }
    }
}

impl Drop for AmqpHold {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(c) = self.client.take() {
            let _ = c.join();
        }
    }
}
