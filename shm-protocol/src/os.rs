//! The operating-system edge of the protocol: shared-memory segments on `memfd_create`,
//! mapped with `mmap(MAP_SHARED)` and handed to the worker as an inherited file descriptor,
//! process-shared futexes, and the system-wide monotonic clock. This module and the wakeup
//! module built on its futexes are the only parts of the crate that make system calls.
//!
//! Why memfd rather than a name in `/dev/shm` (`shm_open`, or the `shared_memory` crate):
//! a segment with no name cannot be pre-created by another local user (a predictable name
//! in a world-listable directory can be squatted), is freed by the kernel when the last
//! process holding it dies (a `kill -9` of everyone leaves nothing behind to sweep), and is
//! not bounded by the size of a container's `/dev/shm` mount (64 MiB by default in Docker,
//! past which page faults become SIGBUS). Its size is sealed once set, so no process can
//! shrink it under another's mapping. The memory a shard is promised is reserved with
//! `fallocate` when the segment is created, so running out is a clear start-up error, never
//! a SIGBUS; a shard keeps its segment across worker generations ([`Segment::reset`]), so a
//! restart allocates nothing.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use nix::fcntl::{fcntl, FallocateFlags, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::sys::stat::fstat;

use crate::layout::{
    Geometry, GeometryError, Offsets, SegmentHead, LAYOUT_HASH, LAYOUT_VERSION, MAGIC,
};
use crate::ring::{RingMemory, RingView};
use crate::table::{TableMemory, TableView, SLOT_WORDS};

/// Why a segment could not be opened.
#[derive(Debug)]
pub enum SegmentError {
    /// A system call failed.
    Io {
        /// What was being done.
        action: &'static str,
        /// The segment.
        name: String,
        /// The error.
        source: io::Error,
    },
    /// The segment's header does not match this build.
    Incompatible {
        /// The segment.
        name: String,
        /// What differs.
        reason: String,
    },
}

impl std::fmt::Display for SegmentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io {
                action,
                name,
                source,
            } => write!(f, "cannot {action} shared-memory segment {name}: {source}"),
            Self::Incompatible { name, reason } => {
                write!(f, "shared-memory segment {name} is incompatible: {reason}")
            }
        }
    }
}

impl std::error::Error for SegmentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Incompatible { .. } => None,
        }
    }
}

/// One mapped segment. All access to its memory goes through atomics, so sharing the
/// mapping between threads and processes is sound.
#[derive(Debug)]
pub struct Segment {
    name: String,
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
    geometry: Geometry,
    offsets: Offsets,
}

// SAFETY: the mapping is only accessed through `&` references to atomics (interior
// mutability), which are `Sync`; the raw pointer is never handed out mutably.
unsafe impl Send for Segment {}
// SAFETY: as above: every access is an atomic operation through a shared reference.
unsafe impl Sync for Segment {}

/// What [`Segment::create`] reports when the memory cannot be had.
pub const RESERVE: &str = "reserve the memory of";

fn io_err(action: &'static str, name: &str, source: impl Into<io::Error>) -> SegmentError {
    SegmentError::Io {
        action,
        name: name.to_owned(),
        source: source.into(),
    }
}

/// Reserves (allocates and charges) the bytes `[from, to)` of the segment file `fd`.
fn reserve(fd: &OwnedFd, from: u64, to: u64) -> io::Result<()> {
    if to <= from {
        return Ok(());
    }
    let (offset, len) = (
        i64::try_from(from).map_err(|_| io::Error::other("offset overflows"))?,
        i64::try_from(to - from).map_err(|_| io::Error::other("length overflows"))?,
    );
    nix::fcntl::fallocate(fd, FallocateFlags::empty(), offset, len).map_err(io::Error::from)
}

impl Segment {
    /// Creates a segment for `geometry` (named `name` in `/proc/<pid>/fd` and maps, for
    /// people looking; no other process can open it by that name), reserves all its memory,
    /// seals its size, and writes its header. The memory starts zeroed: empty rings, empty
    /// table.
    pub fn create(
        name: &str,
        worker_id: u32,
        generation: u64,
        geometry: Geometry,
    ) -> Result<Self, SegmentError> {
        geometry
            .validate()
            .map_err(|GeometryError(reason)| SegmentError::Incompatible {
                name: name.to_owned(),
                reason,
            })?;
        let offsets = geometry
            .offsets()
            .ok_or_else(|| SegmentError::Incompatible {
                name: name.to_owned(),
                reason: "segment size overflows".into(),
            })?;
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
            .map_err(|e| io_err("create", name, e))?;
        let size = i64::try_from(offsets.total).unwrap_or(i64::MAX);
        nix::unistd::ftruncate(&fd, size).map_err(|e| io_err("size", name, e))?;
        reserve(&fd, 0, offsets.total as u64).map_err(|e| io_err(RESERVE, name, e))?;
        fcntl(
            &fd,
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
            ),
        )
        .map_err(|e| io_err("seal", name, e))?;
        let ptr = map(name, &fd, offsets.total)?;
        prefault(ptr, offsets.request_ring, offsets.heap);
        let segment = Self {
            name: name.to_owned(),
            fd,
            ptr,
            len: offsets.total,
            geometry,
            offsets,
        };
        segment.write_header(worker_id, generation);
        Ok(segment)
    }

    /// Makes the segment new for the next worker generation: the head, both rings and the
    /// slot table are zeroed and the header written for `generation`; the heap is left as it
    /// is (a table reads only heap words that its slots point at, which the new writer writes
    /// first). `&mut` proves that no one else holds the segment: no worker maps it any more
    /// and no reader of the previous generation is still reading (get it with
    /// `Arc::get_mut`).
    ///
    /// About 100 MiB for the default geometry, a few milliseconds: [`Segment::create`]
    /// faulted this range into the supervisor's mapping, so the zeroing is a memset.
    pub fn reset(&mut self, worker_id: u32, generation: u64) {
        let head = std::mem::size_of::<SegmentHead>();
        let (rings, heap) = (self.offsets.request_ring, self.offsets.heap);
        assert!(head <= rings && rings <= heap && heap <= self.len);
        // SAFETY: each range (of this block and the next) lies inside the mapping (asserted
        // above; the offsets were validated against its length at creation). `&mut self` is the only handle to the
        // segment in this process, and no other process maps it any more (the caller's
        // contract), so no atomic access to these bytes can race with the plain writes;
        // later atomic loads are ordered after them by whatever hands the segment to another
        // thread or process (a spawn, an `Arc` clone sent through a channel).
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr(), 0, head) };
        let rings_start = self.ptr.as_ptr().wrapping_add(rings);
        // SAFETY: as above.
        unsafe { std::ptr::write_bytes(rings_start, 0, heap - rings) };
        self.write_header(worker_id, generation);
    }

    fn write_header(&self, worker_id: u32, generation: u64) {
        let (geometry, offsets) = (self.geometry, self.offsets);
        let h = &self.head().header;
        h.layout_hash.store(LAYOUT_HASH, Ordering::Relaxed);
        h.generation.store(generation, Ordering::Relaxed);
        h.total_bytes.store(offsets.total as u64, Ordering::Relaxed);
        h.layout_version.store(LAYOUT_VERSION, Ordering::Relaxed);
        h.worker_id.store(worker_id, Ordering::Relaxed);
        h.max_key_bytes
            .store(geometry.max_key_bytes, Ordering::Relaxed);
        h.max_value_bytes
            .store(geometry.max_value_bytes, Ordering::Relaxed);
        h.max_keys.store(geometry.max_keys, Ordering::Relaxed);
        h.request_ring_words
            .store(geometry.request_ring_words, Ordering::Relaxed);
        h.completion_ring_words
            .store(geometry.completion_ring_words, Ordering::Relaxed);
        h.table_slots.store(geometry.table_slots, Ordering::Relaxed);
        h.heap_half_words
            .store(geometry.heap_half_words, Ordering::Relaxed);
        // Magic last: a reader that sees it sees a complete header (the worker is spawned
        // after this returns, and exec orders everything before it anyway).
        h.magic.store(MAGIC, Ordering::Release);
    }

    /// The segment whose descriptor this process inherited as `fd` (a worker, from the
    /// supervisor that spawned it), validated.
    pub fn inherited(fd: RawFd) -> Result<Self, SegmentError> {
        let name = format!("fd {fd}");
        // The descriptor must be open and a sealed memfd before this process takes it over.
        let seals = fcntl(
            // SAFETY: only borrowed for this call; whether `fd` is open is what is asked.
            unsafe { BorrowedFd::borrow_raw(fd) },
            FcntlArg::F_GET_SEALS,
        )
        .map_err(|e| io_err("open", &name, e))?;
        if seals & libc::F_SEAL_SHRINK == 0 {
            return Err(SegmentError::Incompatible {
                name,
                reason: "not a sealed shared-memory segment".into(),
            });
        }
        // SAFETY: the descriptor is open (checked above) and was handed to this process for
        // exactly this: the supervisor created it for this worker, cleared its close-on-exec
        // flag in this process only, and passed its number; nothing else here knows it, so the
        // `OwnedFd` is its only owner.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Self::open_fd(name, fd)
    }

    fn open_fd(name: String, fd: OwnedFd) -> Result<Self, SegmentError> {
        let stat = fstat(&fd).map_err(|e| io_err("stat", &name, e))?;
        let len = usize::try_from(stat.st_size).unwrap_or(0);
        let head_len = std::mem::size_of::<SegmentHead>();
        let incompatible = |reason: String| SegmentError::Incompatible {
            name: name.clone(),
            reason,
        };
        if len < head_len {
            return Err(incompatible(format!(
                "{len} bytes is smaller than its header"
            )));
        }
        let ptr = map(&name, &fd, len)?;
        let mut segment = Self {
            name: name.clone(),
            fd,
            ptr,
            len,
            geometry: Geometry {
                request_ring_words: 0,
                completion_ring_words: 0,
                table_slots: 0,
                heap_half_words: 0,
                max_keys: 0,
                max_key_bytes: 0,
                max_value_bytes: 0,
            },
            offsets: Offsets {
                request_ring: 0,
                completion_ring: 0,
                slots: 0,
                heap: 0,
                total: 0,
            },
        };
        let h = &segment.head().header;
        if h.magic.load(Ordering::Acquire) != MAGIC {
            return Err(incompatible("bad magic".into()));
        }
        let version = h.layout_version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(incompatible(format!(
                "layout version {version}, expected {LAYOUT_VERSION}"
            )));
        }
        let hash = h.layout_hash.load(Ordering::Relaxed);
        if hash != LAYOUT_HASH {
            return Err(incompatible(format!(
                "layout hash {hash:#x}, expected {LAYOUT_HASH:#x} (built from other sources)"
            )));
        }
        let geometry = Geometry {
            request_ring_words: h.request_ring_words.load(Ordering::Relaxed),
            completion_ring_words: h.completion_ring_words.load(Ordering::Relaxed),
            table_slots: h.table_slots.load(Ordering::Relaxed),
            heap_half_words: h.heap_half_words.load(Ordering::Relaxed),
            max_keys: h.max_keys.load(Ordering::Relaxed),
            max_key_bytes: h.max_key_bytes.load(Ordering::Relaxed),
            max_value_bytes: h.max_value_bytes.load(Ordering::Relaxed),
        };
        geometry
            .validate()
            .map_err(|GeometryError(reason)| incompatible(reason))?;
        let offsets = geometry
            .offsets()
            .ok_or_else(|| incompatible("segment size overflows".into()))?;
        let recorded = h.total_bytes.load(Ordering::Relaxed);
        if offsets.total != len || recorded != len as u64 {
            return Err(incompatible(format!(
                "size {len} bytes, header says {recorded}, geometry needs {}",
                offsets.total
            )));
        }
        segment.geometry = geometry;
        segment.offsets = offsets;
        Ok(segment)
    }

    /// The segment's descriptor, to hand to the worker ([`keep_on_exec`]).
    #[must_use]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The segment's name (for logs).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The geometry read from (or written to) the header.
    #[must_use]
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Size of the mapping.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never, for a valid segment).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The fixed head: header and single-writer lines.
    #[must_use]
    pub fn head(&self) -> &SegmentHead {
        // SAFETY: the mapping is at least `size_of::<SegmentHead>()` bytes (checked at
        // create/open), page-aligned (so aligned for `SegmentHead`'s 64-byte alignment),
        // zero-initialised by the kernel (all-zero is a valid value of every atomic in it),
        // and lives as long as `self`. Only shared references to atomics are created.
        unsafe { self.ptr.cast::<SegmentHead>().as_ref() }
    }

    fn words(&self, offset: usize, words: u64) -> &[AtomicU64] {
        let count = usize::try_from(words).unwrap_or(0);
        debug_assert!(offset % 8 == 0 && offset + count * 8 <= self.len);
        let base = self.ptr.as_ptr().wrapping_add(offset);
        // SAFETY: `offset` and `words` come from `Offsets`, validated against the mapping
        // length in create/open, so the range is inside the mapping; offsets are multiples
        // of 8 on a page-aligned base, so aligned for `AtomicU64`; the memory is zeroed or
        // written only through atomics, and the slice lives no longer than `self`.
        unsafe { std::slice::from_raw_parts(base.cast(), count) }
    }

    /// The request ring (supervisor produces, worker consumes).
    #[must_use]
    pub fn request_ring(&self) -> RingView<'_> {
        let head = self.head();
        RingView {
            words: self.words(self.offsets.request_ring, self.geometry.request_ring_words),
            head: &head.worker_request.request_head,
            tail: &head.supervisor.request_tail,
        }
    }

    /// The completion ring (worker produces, supervisor consumes).
    #[must_use]
    pub fn completion_ring(&self) -> RingView<'_> {
        let head = self.head();
        RingView {
            words: self.words(
                self.offsets.completion_ring,
                self.geometry.completion_ring_words,
            ),
            head: &head.supervisor_completion.completion_head,
            tail: &head.worker_completion.completion_tail,
        }
    }

    /// The state table.
    #[must_use]
    pub fn table(&self) -> TableView<'_> {
        TableView {
            slots: self.words(
                self.offsets.slots,
                self.geometry.table_slots * SLOT_WORDS as u64,
            ),
            heap: self.words(self.offsets.heap, self.geometry.heap_half_words * 2),
            moves: &self.head().table.moves,
        }
    }
}

/// Makes `fd` survive the exec of `command`'s child (at the same number), without leaking
/// it to any other child: its close-on-exec flag is cleared in the child only, between
/// fork and exec.
pub fn keep_on_exec(command: &mut std::process::Command, fd: BorrowedFd<'_>) {
    use std::os::unix::process::CommandExt;
    let raw = fd.as_raw_fd();
    let clear_cloexec = move || {
        // SAFETY: `fcntl(F_SETFD)` takes a descriptor number and an integer, touches no
        // memory of ours, and is async-signal-safe.
        if unsafe { libc::fcntl(raw, libc::F_SETFD, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: it makes one `fcntl` system call on a descriptor number (no
    // allocation, no locks). Should `raw` be closed by the time `command` spawns, the call
    // fails with EBADF and so does the spawn; nothing else can go wrong.
    unsafe {
        command.pre_exec(clear_cloexec);
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in create/open, and every
        // reference into it borrows `self`, so none outlives this call.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

fn map(name: &str, fd: &impl AsFd, len: usize) -> Result<NonNull<u8>, SegmentError> {
    let size = NonZeroUsize::new(len).ok_or_else(|| SegmentError::Incompatible {
        name: name.to_owned(),
        reason: "empty segment".into(),
    })?;
    // SAFETY: a fresh shared mapping of a shm object at an address the kernel picks; it
    // aliases no Rust allocation. Its contents are only accessed through atomics, or with
    // exclusive access (`Segment::reset`).
    let ptr = unsafe {
        mmap(
            None,
            size,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            fd,
            0,
        )
    }
    .map_err(|e| io_err("map", name, e))?;
    Ok(ptr.cast())
}

/// Faults the bytes `[from, to)` of a mapping in for writing, so that zeroing them later
/// ([`Segment::reset`]) does not take a page fault per page (a quarter of a second for the
/// default geometry's rings and slots). The pages are already allocated (`fallocate`):
/// this adds page table entries, not memory. Best effort: a kernel without
/// `MADV_POPULATE_WRITE` (before 5.14) faults them in at the first reset instead.
fn prefault(ptr: NonNull<u8>, from: usize, to: usize) {
    let page = 4096;
    let start = from / page * page;
    if to <= start {
        return;
    }
    let Some(at) = NonNull::new(ptr.as_ptr().wrapping_add(start)) else {
        return;
    };
    // SAFETY: `[start, to)` lies inside the mapping `ptr` starts (`to` is at most its
    // length and `start` is rounded down to a page inside it); the advice changes no
    // contents, only which pages are mapped.
    let _ = unsafe {
        nix::sys::mman::madvise(
            at.cast(),
            to - start,
            nix::sys::mman::MmapAdvise::MADV_POPULATE_WRITE,
        )
    };
}

/// Which ring of a segment a [`RingMemory`] handle names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingSide {
    /// Supervisor → worker.
    Request,
    /// Worker → supervisor.
    Completion,
}

/// A ring of a shared segment, as [`RingMemory`] for a producer or consumer.
#[derive(Clone, Debug)]
pub struct SegmentRing<S> {
    /// The segment (an `Arc<Segment>` or `&Segment`).
    pub segment: S,
    /// Which ring.
    pub side: RingSide,
}

impl<S: std::ops::Deref<Target = Segment>> RingMemory for SegmentRing<S> {
    fn ring(&self) -> RingView<'_> {
        match self.side {
            RingSide::Request => self.segment.request_ring(),
            RingSide::Completion => self.segment.completion_ring(),
        }
    }
}

impl TableMemory for Segment {
    fn table(&self) -> TableView<'_> {
        Segment::table(self)
    }
}

/// Sleeps while `*word == expected`, at most `timeout`. Process-shared (no
/// `FUTEX_PRIVATE_FLAG`), so a waker in another process that maps the same page wakes it.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT reads the aligned u32 behind `word` (valid for the call) and the
    // timespec (valid or null). Spurious returns (EINTR, EAGAIN) are fine: callers re-check.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
        );
    }
}

/// Wakes up to `waiters` sleepers on `word`.
pub fn futex_wake(word: &AtomicU32, waiters: i32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key; `word` is valid for the call.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, waiters);
    }
}

/// Asks the CPU to start loading the cache line holding `word`: a hint with no effect on
/// memory or on the program's meaning.
#[inline]
pub fn prefetch(word: &AtomicU64) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: `_mm_prefetch` only hints the cache; it neither reads nor writes memory as the
    // program sees it and never faults, and the address is that of a live reference. SSE is
    // part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            word.as_ptr().cast::<i8>(),
        );
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = word;
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the machine, so a
/// heartbeat written by one process can be aged by another.
#[must_use]
pub fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => (ts.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec() as u64),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::ShardLimits;
    use crate::ring::{Consumer, Producer};

    fn small() -> Geometry {
        Geometry::from_limits(&ShardLimits {
            ring_bytes: Some(4096),
            max_keys: 64,
            max_key_bytes: 64,
            max_value_bytes: 256,
            data_bytes: 4096,
        })
        .unwrap()
    }

    /// A second mapping of `a`, as a worker holds it.
    fn second_mapping(a: &Segment) -> Result<Segment, SegmentError> {
        Segment::open_fd("second".into(), a.fd().try_clone_to_owned().unwrap())
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "memfd, mmap and futex are system calls miri does not run"
    )]
    fn create_and_share_through_a_second_mapping() {
        let a = Segment::create("corral-unit-share", 3, 7, small()).unwrap();
        let b = second_mapping(&a).unwrap();
        assert_eq!(b.geometry(), a.geometry());
        assert_eq!(b.head().header.worker_id.load(Ordering::Relaxed), 3);
        assert_eq!(b.head().header.generation.load(Ordering::Relaxed), 7);
        let mut p = Producer::new(SegmentRing {
            segment: &a,
            side: RingSide::Request,
        });
        p.try_push(9, 1, |w| {
            w.put(0, 42);
        })
        .unwrap();
        let mut c = Consumer::new(SegmentRing {
            segment: &b,
            side: RingSide::Request,
        });
        assert_eq!(c.pop(|r| (r.tag, r.word(0))).unwrap(), Some((9, 42)));
        // Reset for the next generation: empty rings and table, a new header.
        let _ = (c, p);
        drop(b);
        let mut a = a;
        let view = a.table();
        view.slots[5].store(77, Ordering::Relaxed);
        let last = a.table().slots.len() - 1;
        a.table().slots[last].store(78, Ordering::Relaxed);
        a.request_ring().words[0].store(79, Ordering::Relaxed);
        a.reset(3, 8);
        assert_eq!(a.table().slots[5].load(Ordering::Relaxed), 0);
        assert_eq!(a.table().slots[last].load(Ordering::Relaxed), 0);
        assert_eq!(a.request_ring().words[0].load(Ordering::Relaxed), 0);
        assert_eq!(a.head().header.generation.load(Ordering::Relaxed), 8);
        assert_eq!(a.head().supervisor.request_tail.load(Ordering::Relaxed), 0);
        let b = second_mapping(&a).unwrap();
        assert_eq!(b.head().header.generation.load(Ordering::Relaxed), 8);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "memfd, mmap and futex are system calls miri does not run"
    )]
    fn segments_have_no_name_to_squat_and_a_sealed_size() {
        let seg = Segment::create("corral-unit-sealed", 0, 1, small()).unwrap();
        // Nothing in /dev/shm (or anywhere in the file system) names it.
        let named = std::fs::read_dir("/dev/shm")
            .map(|d| {
                d.filter_map(Result::ok).any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .contains("corral-unit-sealed")
                })
            })
            .unwrap_or(false);
        assert!(!named);
        // Not inherited by children unless asked for, and its size cannot change.
        let flags = fcntl(seg.fd(), FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
        assert!(nix::unistd::ftruncate(seg.fd(), 4096).is_err());
        assert!(nix::unistd::ftruncate(seg.fd(), seg.len() as i64 * 2).is_err());
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "memfd, mmap and futex are system calls miri does not run"
    )]
    fn a_foreign_or_damaged_segment_is_refused() {
        let seg = Segment::create("corral-unit-foreign", 0, 1, small()).unwrap();
        seg.head().header.layout_hash.store(1, Ordering::Relaxed);
        let err = second_mapping(&seg).unwrap_err().to_string();
        seg.head().header.magic.store(0, Ordering::Relaxed);
        let err2 = second_mapping(&seg).unwrap_err().to_string();
        assert!(err.contains("layout hash"), "{err}");
        assert!(err2.contains("bad magic"), "{err2}");
        // A descriptor that is not a sealed memfd is no segment.
        let file = std::fs::File::open("/dev/null").unwrap();
        let raw = file.as_raw_fd();
        let err3 = Segment::inherited(raw).unwrap_err().to_string();
        assert!(err3.contains("fd"), "{err3}");
        drop(file);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "shm_open, mmap and futex are system calls miri does not run"
    )]
    fn futex_wait_times_out_and_returns_on_mismatch() {
        let word = AtomicU32::new(5);
        let start = std::time::Instant::now();
        futex_wait(&word, 4, Some(Duration::from_secs(5)));
        futex_wait(&word, 5, Some(Duration::from_millis(20)));
        assert!(start.elapsed() < Duration::from_secs(4));
        assert!(monotonic_ns() > 0);
    }
}
