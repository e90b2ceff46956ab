//! An import's requests, many in flight at once: shard 0 stores a burst of
//! durable changes in one definitions write, and the owners of the queues
//! work in parallel, where one request at a time would wait for a write
//! and a round trip each (10,000 durable queues and bindings took minutes).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Requests in flight at once (well under `mesh_pending_max` and the
/// definitions writer's batches).
pub const IN_FLIGHT: usize = 64;

/// Runs `f` on each of `items`, [`IN_FLIGHT`] at a time, counting each
/// success in `done`; the first failure (in the items' order) of a slice
/// ends the run once the rest of that slice has answered.
pub async fn each<'a, T: 'a, Fut>(
    items: impl Iterator<Item = &'a T>,
    done: &mut usize,
    f: impl Fn(&'a T) -> Fut,
) -> Result<(), String>
where
    Fut: Future<Output = Result<(), String>> + 'a,
{
    let items: Vec<&'a T> = items.collect();
    for slice in items.chunks(IN_FLIGHT) {
        let mut running: Vec<Option<Pin<Box<Fut>>>> = slice.iter().map(|i| Some(Box::pin(f(i)))).collect();
        let mut results: Vec<Option<Result<(), String>>> = slice.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (slot, result) in running.iter_mut().zip(results.iter_mut()) {
                if let Some(fut) = slot {
                    match fut.as_mut().poll(cx) {
                        Poll::Ready(r) => {
                            *result = Some(r);
                            *slot = None;
                        }
                        Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        for r in results.into_iter().flatten() {
            r?;
            *done += 1;
        }
    }
    Ok(())
}
