//! Shard 0's definitions file (`storage/definitions.rs`), written off the
//! shard thread. A durable change marks the definitions dirty; one task
//! encodes the current durable exchanges and bindings (and the users, once
//! changed at run time, `users.rs`) and has a blocking
//! thread write them (temp file, fsync, rename, fsync of the directory),
//! so a burst of declares shares one write and shard 0's sockets, queues
//! and mesh never wait for an fsync. While a write is due, every answer to
//! a routing change waits for it (in order): an acknowledged durable
//! declare is on disk.

use super::super::types::{ConnRef, QueueError};
use super::Shard;
use crate::protocol::ErrorCode;
use crate::routing::Change;
use crate::rt::Notify;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

/// An answer waiting for the write of generation `gen`.
struct Held {
    gen: u64,
    version: u64,
    to: ConnRef,
    request_id: u64,
    result: Result<u64, QueueError>,
}

pub struct DefsWriter {
    /// Generation of the newest durable change, and of the newest write
    /// finished (successfully or not).
    dirty: Cell<u64>,
    written: Cell<u64>,
    /// How the newest write finished.
    last: RefCell<Result<(), QueueError>>,
    held: RefCell<VecDeque<Held>>,
    kick: Notify,
}

impl Default for DefsWriter {
    fn default() -> Self {
        Self {
            dirty: Cell::new(0),
            written: Cell::new(0),
            last: RefCell::new(Ok(())),
            held: RefCell::default(),
            kick: Notify::default(),
        }
    }
}

impl Shard {
    /// A change to the stored definitions: the file must be rewritten.
    /// The generation whose write will hold it.
    pub(super) fn definitions_changed(&self) -> u64 {
        let gen = self.defs.dirty.get() + 1;
        self.defs.dirty.set(gen);
        self.defs.kick.notify();
        gen
    }

    /// Once the write of generation `gen` (or a later one) has finished:
    /// how the newest write went. A later write holds every earlier change.
    pub(super) fn definitions_written(&self, gen: u64) -> Option<Result<(), QueueError>> {
        (self.defs.written.get() >= gen).then(|| self.defs.last.borrow().clone())
    }

    /// Holds an answer while a definitions write is due; false when none is.
    pub(super) fn hold_for_definitions(
        &self,
        version: u64,
        to: ConnRef,
        request_id: u64,
        result: &Result<u64, QueueError>,
    ) -> bool {
        let gen = self.defs.dirty.get();
        if gen == self.defs.written.get() {
            return false;
        }
        let result = result.clone();
        self.defs.held.borrow_mut().push_back(Held { gen, version, to, request_id, result });
        true
    }

    /// Shard 0's task: writes the definitions whenever they changed, each
    /// write taking every change made before it started.
    pub async fn run_definitions_writer(self: Rc<Self>) {
        loop {
            let kicked = self.defs.kick.notified();
            let gen = self.defs.dirty.get();
            if gen == self.defs.written.get() {
                kicked.await;
                continue;
            }
            let access = self.users.to_store();
            let defs = crate::storage::definitions::Definitions {
                routing: self.durable_definitions(),
                vhosts: access.as_ref().map(|a| a.vhosts.clone()),
                users: access.map(|a| a.users),
            };
            let bytes = crate::storage::definitions::encode(&defs);
            let path = self.config.data_dir.join(crate::storage::definitions::FILE);
            let r = glommio::executor()
                .spawn_blocking(move || crate::storage::definitions::save_bytes(&path, &bytes))
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "routing definitions could not be stored");
                    let full = matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT));
                    let code = if full { ErrorCode::StorageFull } else { ErrorCode::StoragePoisoned };
                    QueueError::new(code, format!("definitions could not be stored: {e}"))
                });
            self.defs.written.set(gen);
            *self.defs.last.borrow_mut() = r.clone();
            self.users.progressed();
            self.release_held(gen, r);
        }
    }

    /// Answers what waited for the write of `gen` (or an earlier one).
    fn release_held(&self, gen: u64, r: Result<(), QueueError>) {
        loop {
            let next = {
                let mut held = self.defs.held.borrow_mut();
                match held.front() {
                    Some(h) if h.gen <= gen => held.pop_front(),
                    _ => None,
                }
            };
            let Some(h) = next else { return };
            let result = match (&r, h.result) {
                (Err(e), Ok(_)) => Err(e.clone()),
                (_, result) => result,
            };
            self.answer_meta(h.version, h.to, h.request_id, result);
        }
    }

    /// Durable exchanges, then durable bindings.
    fn durable_definitions(&self) -> Vec<Change> {
        let table = self.routing.table.borrow();
        let mut defs: Vec<Change> = table
            .exchanges()
            .filter(|x| {
                let name = crate::routing::vhost::name_of(&x.name);
                x.durable && !name.is_empty() && !name.starts_with("amq.")
            })
            .map(|x| Change::DeclareExchange(x.clone()))
            .collect();
        defs.extend(table.bindings().filter(|b| self.meta.is_stored(b)).map(|b| Change::Bind(b.clone())));
        defs
    }
}
