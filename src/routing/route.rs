//! Routing one message: the entry exchange's matcher, then every exchange
//! reached through exchange-to-exchange bindings or alternates, each once.

use super::headers::MessageHeaders;
use super::matcher::DestSet;
use super::routing_table::RoutingTable;
use super::small::SmallVec;
use super::{Dest, RouteError};

/// Collects what the matchers find: queues into `out`, exchanges into the
/// work list.
pub(crate) struct Sink<'a, 'o> {
    out: &'o mut Vec<&'a str>,
    /// Exchanges reached, in the order reached. Also the work list: the
    /// exchange at index `i` is processed after those before it, and an
    /// exchange already listed is never listed again, which is what stops
    /// cycles of bindings and of alternates.
    exchanges: SmallVec<&'a str, 8>,
    /// Destination sets fed in. Each set is free of duplicates, so with at
    /// most one set `out` needs no dedup (the common direct case).
    sets: u32,
}

impl<'a, 'o> Sink<'a, 'o> {
    pub(crate) fn new(out: &'o mut Vec<&'a str>) -> Self {
        Self { out, exchanges: SmallVec::new(), sets: 0 }
    }

    pub(crate) fn set(&mut self, s: &'a DestSet) {
        // An empty set (a fanout with no bindings) is no match: it must not
        // keep the message from the exchange's alternate.
        if s.is_empty() {
            return;
        }
        self.sets += 1;
        for d in s.iter() {
            self.push(d);
        }
    }

    pub(crate) fn dest(&mut self, d: &'a Dest) {
        self.sets += 1;
        self.push(d);
    }

    pub(crate) fn queue(&mut self, q: &'a str) {
        self.sets += 1;
        self.out.push(q);
    }

    fn push(&mut self, d: &'a Dest) {
        match d {
            Dest::Queue(q) => self.out.push(q),
            Dest::Exchange(x) => self.reach(x),
        }
    }

    fn reach(&mut self, x: &'a str) {
        if !self.exchanges.as_slice().contains(&x) {
            self.exchanges.push(x);
        }
    }
}

impl RoutingTable {
    /// Routes one message published to `exchange`: pushes the names of the
    /// queues it goes to into `out` (cleared first), each once, in no
    /// particular order. `headers` is the raw field table of the message's
    /// `headers` property (see [`super::headers_of`]); only headers
    /// exchanges read it.
    ///
    /// Exchange-to-exchange bindings are followed, each exchange visited at
    /// most once (so cycles stop). An exchange that matched nothing at all
    /// (no queue and no exchange) hands the message to its alternate, if it
    /// has one and it exists; alternates are visited at most once too. The
    /// default exchange "" routes to the queue named by the routing key
    /// without checking that it exists: the caller knows the queues.
    ///
    /// Fails with `NotFound` if `exchange` does not exist and with
    /// `AccessRefused` if it is internal. Allocates nothing beyond growing
    /// `out`, unless the routing key has more than 16 words, more than 8
    /// exchanges are visited or the message has more than 16 headers.
    pub fn route<'a>(
        &'a self,
        exchange: &str,
        routing_key: &'a str,
        headers: Option<&[u8]>,
        out: &mut Vec<&'a str>,
    ) -> Result<(), RouteError> {
        out.clear();
        let Some(mut x) = self.exchanges.get(exchange) else {
            return Err(RouteError::NotFound(exchange.to_string()));
        };
        if x.def.internal {
            return Err(RouteError::AccessRefused(format!("cannot publish to internal exchange '{exchange}'")));
        }
        let mut headers = MessageHeaders::new(headers);
        let mut sink = Sink::new(out);
        sink.reach(&x.def.name);
        let mut next = 1;
        loop {
            let before = sink.sets;
            x.matcher.route(routing_key, &mut headers, &mut sink);
            if sink.sets == before {
                if let Some(alt) = &x.def.alternate {
                    sink.reach(alt);
                }
            }
            // The next exchange reached that exists (an alternate may not).
            let mut found = None;
            while let Some(name) = sink.exchanges.get(next) {
                next += 1;
                found = self.exchanges.get(name);
                if found.is_some() {
                    break;
                }
            }
            match found {
                Some(n) => x = n,
                None => break,
            }
        }
        if sink.sets > 1 {
            dedup(sink.out);
        }
        Ok(())
    }
}

/// Drops repeated names. Short lists (the usual case) keep their order and
/// are checked pairwise; long ones (a big fanout reached twice) are sorted.
fn dedup(out: &mut Vec<&str>) {
    if out.len() <= 16 {
        let mut kept = 0;
        for i in 0..out.len() {
            if !out[..kept].contains(&out[i]) {
                out[kept] = out[i];
                kept += 1;
            }
        }
        out.truncate(kept);
    } else {
        out.sort_unstable();
        out.dedup();
    }
}

/// Runs a matcher into a fresh sink and returns what it found (tests).
#[cfg(test)]
pub(crate) fn collect<'a>(f: impl FnOnce(&mut Sink<'a, '_>)) -> Vec<&'a str> {
    let mut out = Vec::new();
    f(&mut Sink::new(&mut out));
    out
}
