//! What the glommio recovery tests share (client_recovery.rs,
//! client_failover.rs, client_pull_recovery.rs): the events collected as
//! they come, a consumer counting sequence numbers while publishing goes
//! on, and the drain that finds what was confirmed and not yet received.

use super::body_seq;
use futures_lite::StreamExt;
use ringmq::client::{Consumer, Event, Events, Producer};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Times each sequence number was received.
pub type Received = Rc<RefCell<HashMap<u64, u32>>>;

/// The client's recovery events, pushed as they come by a task.
pub fn events(mut stream: Events) -> Rc<RefCell<Vec<Event>>> {
    let events = Rc::new(RefCell::new(Vec::new()));
    let into = events.clone();
    glommio::spawn_local(async move {
        while let Some(e) = stream.next().await {
            into.borrow_mut().push(e);
        }
    })
    .detach();
    events
}

/// The next delivery within 100 ms, counted in `received` and acked.
/// `Ok(false)`: none came.
async fn take_one(consumer: &mut Consumer, received: &Received) -> Result<bool, String> {
    let next = glommio::timer::timeout(Duration::from_millis(100), async { Ok(consumer.next().await) });
    match next.await {
        Ok(Some(Ok(d))) => {
            *received.borrow_mut().entry(body_seq(&d.body)).or_default() += 1;
            consumer.ack(d.tag);
            Ok(true)
        }
        Ok(Some(Err(e))) => Err(format!("the consumer's stream yielded {e}")),
        Ok(None) => Err("the consumer's stream ended".into()),
        Err(_) => Ok(false),
    }
}

/// A task consuming into `received` until `stop`; it hands the consumer
/// back. Its stream must never yield an error or end.
pub fn consume(mut consumer: Consumer, received: Received, stop: Rc<Cell<bool>>) -> glommio::Task<Consumer> {
    glommio::spawn_local(async move {
        while !stop.get() {
            if let Err(e) = take_one(&mut consumer, &received).await {
                panic!("{e}");
            }
        }
        consumer
    })
}

/// Consumes until every sequence number of `confirmed` was received, or
/// 10 s passed: how many are missing.
pub async fn drain(consumer: &mut Consumer, confirmed: &BTreeSet<u64>, received: &Received) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let missing = confirmed.iter().filter(|s| !received.borrow().contains_key(s)).count();
        if missing == 0 || Instant::now() > deadline {
            return missing;
        }
        let _ = take_one(consumer, received).await;
    }
}

/// Waits (10 s at most) until `events` hold one that `f` accepts.
pub async fn until(events: &RefCell<Vec<Event>>, what: &str, f: impl Fn(&Event) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !events.borrow().iter().any(&f) {
        assert!(Instant::now() < deadline, "{what}: {:?}", events.borrow());
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
}

/// Sequence numbers confirmed.
pub type Confirmed = Rc<RefCell<BTreeSet<u64>>>;

/// Publishes sequence number `seq` (64 bytes); the task returned adds it
/// to `confirmed` once confirmed (a refused confirmation fails the test).
/// Every 100th waits 10 ms, so the consumer keeps up.
pub async fn publish(producer: &Producer, seq: u64, confirmed: &Confirmed) -> glommio::Task<()> {
    let c = producer.publish(&super::seq_body(seq, 64)).await.expect("publishing goes on through recovery");
    let confirmed = confirmed.clone();
    let wait = glommio::spawn_local(async move {
        match c.await {
            Ok(()) => _ = confirmed.borrow_mut().insert(seq),
            Err(e) => panic!("confirmation of {seq}: {e}"),
        }
    });
    if (seq + 1).is_multiple_of(100) {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    wait
}

/// Sends the open batch and waits for every confirmation.
pub async fn settle(producer: &Producer, waits: Vec<glommio::Task<()>>) {
    producer.flush().unwrap();
    for w in waits {
        w.await;
    }
}
