//! Model checking of the lock-free parts over heap memory: run with
//! `RUSTFLAGS="--cfg loom" cargo test -p shm-protocol --test loom --release`.
#![cfg(loom)]

use loom::thread;
use shm_protocol::ring::{Consumer, HeapRing, Producer};
use shm_protocol::table::{HeapTable, Lookup, TableLimits, TableWriter};
use std::sync::Arc;

/// Records cross the ring intact and in order, including across the padding record at the
/// wrap, under every interleaving.
#[test]
fn ring_delivers_in_order_across_the_wrap() {
    loom::model(|| {
        let ring = Arc::new(HeapRing::new(8));
        let producer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                let mut p = Producer::new(ring);
                for i in 1..=3u64 {
                    while p
                        .try_push(i as u32, 2, |w| {
                            w.put(0, i * 10);
                            w.put(1, i * 100);
                        })
                        .is_err()
                    {
                        thread::yield_now();
                    }
                }
            })
        };
        let mut c = Consumer::new(Arc::clone(&ring));
        let mut next = 1u64;
        while next <= 3 {
            match c.pop(|r| (u64::from(r.tag), r.word(0), r.word(1))).unwrap() {
                Some(got) => {
                    assert_eq!(got, (next, next * 10, next * 100));
                    next += 1;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
    });
}

const LIMITS: TableLimits = TableLimits {
    max_key_bytes: 8,
    max_value_bytes: 16,
    max_keys: 3,
};

/// A reader racing an overwrite sees the old value or the new one, never a mix.
#[test]
fn seqlock_reader_never_sees_a_torn_value() {
    loom::model(|| {
        let table = Arc::new(HeapTable::new(4, 8));
        let mut writer = TableWriter::new(Arc::clone(&table), LIMITS);
        writer.set(b"k", b"aaaaaaaaaaaa", 0).unwrap();
        let w = thread::spawn(move || {
            writer.set(b"k", b"bbbbbbbbbbbbbbbb", 0).unwrap();
        });
        let mut out = Vec::new();
        let got = table_get(&table, b"k", &mut out);
        assert_eq!(got, Lookup::Found { deadline_ms: 0 });
        assert!(
            out == b"aaaaaaaaaaaa" || out == b"bbbbbbbbbbbbbbbb",
            "torn read {out:?}"
        );
        w.join().unwrap();
    });
}

/// Two keys with the same home slot in a 4-slot table, so they form one probe chain.
fn colliding_keys() -> [Vec<u8>; 2] {
    let home = |k: &[u8]| shm_protocol::hash::key_hash(k) & 3;
    let mut keys = (0u8..=255)
        .map(|i| vec![b'k', i])
        .filter(|k| home(k) == home(b"k\0"));
    [keys.next().unwrap(), keys.next().unwrap()]
}

/// A key that stays present is always found while the head of its probe chain is deleted
/// and it shifts back into the freed slot. (With `moves` not re-checked, a reader that saw
/// the old head and then the cleared slot would wrongly report the key missing.)
#[test]
fn present_key_is_found_during_a_backward_shift() {
    let [head, tail] = colliding_keys();
    let mut model = loom::model::Builder::new();
    // Bounded preemptions keep the state space tractable; three covers a reader that is
    // interrupted between each of its probes and its re-check.
    model.preemption_bound = Some(3);
    model.check(move || {
        let table = Arc::new(HeapTable::new(4, 12));
        let mut writer = TableWriter::new(Arc::clone(&table), LIMITS);
        writer.set(&head, &head, 0).unwrap();
        writer.set(&tail, &tail, 0).unwrap();
        let removed = head.clone();
        let w = thread::spawn(move || {
            assert!(writer.remove(&removed));
        });
        let mut out = Vec::new();
        assert_eq!(
            table_get(&table, &tail, &mut out),
            Lookup::Found { deadline_ms: 0 }
        );
        assert_eq!(out, tail);
        w.join().unwrap();
    });
}

fn table_get(table: &HeapTable, key: &[u8], out: &mut Vec<u8>) -> Lookup {
    use shm_protocol::table::TableMemory;
    table.table().get(key, NOW, out)
}

/// The time the models read at.
const NOW: u64 = 1_000;

/// A reader racing a deadline change sees the key live with its old deadline, or gone
/// once the new deadline has come, never a torn mix of the two.
#[test]
fn reader_sees_a_deadline_change_whole() {
    loom::model(|| {
        let table = Arc::new(HeapTable::new(4, 8));
        let mut writer = TableWriter::new(Arc::clone(&table), LIMITS);
        writer.set(b"k", b"v", NOW + 5).unwrap();
        let w = thread::spawn(move || {
            assert!(writer.set_deadline(b"k", NOW - 5));
        });
        let mut out = Vec::new();
        match table_get(&table, b"k", &mut out) {
            Lookup::Found { deadline_ms } => {
                assert_eq!((deadline_ms, out.as_slice()), (NOW + 5, &b"v"[..]));
            }
            Lookup::Missing => assert!(out.is_empty()),
            Lookup::Busy => panic!("busy"),
        }
        w.join().unwrap();
    });
}
