//! The registry of client connections, for CLIENT LIST and CLIENT KILL: each connection's
//! identity, name, library, protocol and last command, readable from any event loop, and a
//! way to ask the connection's own loop to close it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// One connection as other connections may see it.
pub struct Client {
    /// Its id (CLIENT ID).
    pub id: u64,
    /// The peer's address (`ip:port`).
    pub addr: String,
    /// The local address it connected to.
    pub laddr: String,
    /// Its socket's descriptor.
    pub fd: i32,
    created: Instant,
    /// Nanoseconds after `created` of its last command.
    last_active_ns: AtomicU64,
    /// Metric index of its last command.
    last_command: AtomicUsize,
    /// 2 or 3.
    proto: AtomicU8,
    /// CLIENT SETNAME; CLIENT SETINFO lib-name and lib-ver.
    names: Mutex<Names>,
    killed: AtomicBool,
    /// Tells its event loop to look for killed connections.
    wake: Box<dyn Fn() + Send + Sync>,
}

/// A connection's names.
#[derive(Clone, Debug, Default)]
pub struct Names {
    /// CLIENT SETNAME (empty: none).
    pub name: Vec<u8>,
    /// CLIENT SETINFO lib-name.
    pub lib_name: Vec<u8>,
    /// CLIENT SETINFO lib-ver.
    pub lib_ver: Vec<u8>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A connection `id` from `addr` to `laddr` on descriptor `fd`; `wake` tells its event
    /// loop that a kill is pending.
    #[must_use]
    pub fn new(
        id: u64,
        addr: String,
        laddr: String,
        fd: i32,
        wake: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            id,
            addr,
            laddr,
            fd,
            created: Instant::now(),
            last_active_ns: AtomicU64::new(0),
            last_command: AtomicUsize::new(0),
            proto: AtomicU8::new(2),
            names: Mutex::new(Names::default()),
            killed: AtomicBool::new(false),
            wake,
        }
    }

    /// Notes a command (by metric index) run at `at`. Written by its own loop only.
    pub fn ran(&self, command: usize, at: Instant) {
        let ns = u64::try_from(at.saturating_duration_since(self.created).as_nanos())
            .unwrap_or(u64::MAX);
        self.last_active_ns.store(ns, Ordering::Relaxed);
        self.last_command.store(command, Ordering::Relaxed);
    }

    /// The metric index of its last command.
    #[must_use]
    pub fn last_command(&self) -> usize {
        self.last_command.load(Ordering::Relaxed)
    }

    /// Seconds since it connected, and since its last command.
    #[must_use]
    pub fn age_and_idle(&self) -> (u64, u64) {
        let age = self.created.elapsed();
        let active = std::time::Duration::from_nanos(self.last_active_ns.load(Ordering::Relaxed));
        (age.as_secs(), age.saturating_sub(active).as_secs())
    }

    /// Notes the protocol it speaks.
    pub fn set_proto(&self, proto: u8) {
        self.proto.store(proto, Ordering::Relaxed);
    }

    /// The protocol it speaks (2 or 3).
    #[must_use]
    pub fn proto(&self) -> u8 {
        self.proto.load(Ordering::Relaxed)
    }

    /// Its names, changed by `f`.
    pub fn update_names(&self, f: impl FnOnce(&mut Names)) {
        f(&mut self.names.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Its names.
    #[must_use]
    pub fn names(&self) -> Names {
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Asks its loop to close it (CLIENT KILL); returns false if it was asked before.
    pub fn kill(&self) -> bool {
        if self.killed.swap(true, Ordering::AcqRel) {
            return false;
        }
        (self.wake)();
        true
    }

    /// Whether CLIENT KILL closed it.
    #[must_use]
    pub fn killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }
}

/// Every open connection, by id.
#[derive(Debug, Default)]
pub struct Clients {
    by_id: Mutex<BTreeMap<u64, Arc<Client>>>,
}

impl Clients {
    /// Adds a connection.
    pub fn add(&self, client: Arc<Client>) {
        self.lock().insert(client.id, client);
    }

    /// Removes connection `id` (when it closes).
    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// The open connections, by id.
    #[must_use]
    pub fn all(&self) -> Vec<Arc<Client>> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Client>>> {
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
