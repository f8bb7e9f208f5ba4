//! Client order ids, for idempotent retries, without every id ever used held in memory.
//!
//! API.md: a repeated `client_order_id` for the same user returns the first order, never a
//! second one, however long after. The sequencer used to keep every (user, id) pair it had
//! seen in a map, loaded whole at start: about 100 bytes per order that ever carried one, so
//! 100 MB after a million of them (RELIABILITY.md, finding 2).
//!
//! Now every id goes into a Bloom filter of fixed size ([`FILTER_BITS`], 8 MiB), which answers
//! "never seen" for a new id without any lookup. Only when the filter says "maybe" (a real
//! retry, or a false positive: about 1 in 2.5 million at a million ids, 1 in 50 at eight
//! million) is the id looked up exactly:
//! - in memory, if its order may not be committed yet: from the moment the order is accepted
//!   until the batch carrying it has committed. The writer then raises a watermark
//!   ([`Sealed::committed`]), and the next lookup or insert drops every id at or below it;
//! - else in the unique index `orders_client_id` (one probe, on the sequencer's own read
//!   connection, so it never waits for the pool).
//!
//! An id leaves memory only after its row is committed, so a retry always finds it in one place
//! or the other. Memory is the filter plus the ids of the batches in flight; past about eight
//! million ids the filter says "maybe" more and more often, and each such order costs one
//! index probe (a few µs) instead of more memory.
//!
//! After a failed batch the sequencer reloads its state from the database, and this index is
//! rebuilt with it: the ids of the failed and later batches were never committed, and every
//! earlier one is in SQLite.

use crate::domain::model::Id;
use crate::store::tables::orders;
use fastbloom::BloomFilter;
use rusqlite::Connection;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The filter's size in bits (8 MiB).
pub const FILTER_BITS: usize = 1 << 26;

/// The number of ids the filter's hash count is chosen for.
const FILTER_SIZED_FOR: usize = 8_000_000;

/// A (user, client order id) pair.
type Key = (Id, String);

/// Every client order id ever used, answered exactly from memory (ids whose orders may not be
/// committed yet) or from SQLite (the rest), behind a filter that rules out new ids at once.
#[derive(Debug)]
pub struct ClientIds {
    /// Every id inserted or loaded: "no" is certain, "maybe" needs a lookup.
    seen: BloomFilter,
    /// Ids in memory → their order. A hash map, unlike the state's growing maps: it holds only
    /// the ids of the batches in flight, so its rehashes are small.
    recent: HashMap<Key, Id>,
    /// The same ids in the order they were accepted, each with the number of the commit that
    /// carries it (`None` until [`seal`](Self::seal) numbers it).
    queue: VecDeque<(Option<u64>, Key)>,
    /// Commits numbered so far.
    sealed: u64,
    /// The highest commit number known to be committed, so visible to any new read
    /// transaction (raised on the writer thread).
    committed: Arc<AtomicU64>,
}

/// What the writer sets once a commit that carried client ids has committed.
#[derive(Debug)]
pub struct Sealed {
    committed: Arc<AtomicU64>,
    number: u64,
}

impl Sealed {
    /// Marks the commit done (SQLite now answers for its ids): they may leave memory.
    pub fn committed(self) {
        self.committed.fetch_max(self.number, Ordering::Release);
    }
}

impl Default for ClientIds {
    fn default() -> Self {
        ClientIds {
            // zeroed by the allocator (`vec!`), so pages are touched only as ids arrive: a
            // small venue does not pay for the whole 8 MiB at start
            seen: BloomFilter::from_vec(vec![0; FILTER_BITS / 64]).expected_items(FILTER_SIZED_FOR),
            recent: HashMap::new(),
            queue: VecDeque::new(),
            sealed: 0,
            committed: Arc::default(),
        }
    }
}

impl ClientIds {
    /// Notes an id whose order is already committed (start-up).
    pub fn load(&mut self, user: Id, cid: &str) {
        self.seen.insert(&(user, cid));
    }

    /// The order placed earlier under `cid` by `user`, from memory or else from `conn`.
    pub fn find(&mut self, conn: &Connection, user: Id, cid: &str) -> rusqlite::Result<Option<Id>> {
        if !self.seen.contains(&(user, cid)) {
            return Ok(None);
        }
        self.forget_committed();
        match self.recent.get(&(user, cid.to_owned())) {
            Some(&id) => Ok(Some(id)),
            None => orders::id_by_client_id(conn, user, cid),
        }
    }

    /// Records `cid` as `user`'s id for the order `id`, just accepted.
    pub fn insert(&mut self, user: Id, cid: String, id: Id) {
        self.seen.insert(&(user, cid.as_str()));
        self.forget_committed();
        let key = (user, cid);
        self.queue.push_back((None, key.clone()));
        self.recent.insert(key, id);
    }

    /// Numbers the ids inserted since the last call as belonging to the commit about to be
    /// sent; `None` when there are none. The writer calls [`Sealed::committed`] after COMMIT.
    pub fn seal(&mut self) -> Option<Sealed> {
        if !matches!(self.queue.back(), Some((None, _))) {
            return None;
        }
        self.sealed += 1;
        for (number, _) in self.queue.iter_mut().rev() {
            if number.is_some() {
                break;
            }
            *number = Some(self.sealed);
        }
        Some(Sealed {
            committed: self.committed.clone(),
            number: self.sealed,
        })
    }

    /// How many ids are held in memory.
    #[cfg(test)]
    fn in_memory(&self) -> usize {
        self.recent.len()
    }

    /// Drops the ids of every commit known to be done: SQLite answers for them now.
    fn forget_committed(&mut self) {
        let done = self.committed.load(Ordering::Acquire);
        while let Some((Some(number), _)) = self.queue.front() {
            if *number > done {
                break;
            }
            if let Some((_, key)) = self.queue.pop_front() {
                self.recent.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE order_rows(id INTEGER PRIMARY KEY, user_id INTEGER, client_order_id TEXT);
             INSERT INTO order_rows VALUES (7, 1, 'stored');",
        )
        .unwrap();
        c
    }

    #[test]
    fn an_id_stays_in_memory_until_its_commit_is_done_then_sqlite_answers() {
        let c = db();
        let mut ids = ClientIds::default();
        ids.load(1, "stored");
        assert_eq!(ids.find(&c, 1, "stored").unwrap(), Some(7));
        assert_eq!(ids.find(&c, 1, "new").unwrap(), None);
        assert_eq!(ids.find(&c, 2, "stored").unwrap(), None, "ids are per user");

        ids.insert(1, "new".into(), 8);
        assert_eq!(
            ids.find(&c, 1, "new").unwrap(),
            Some(8),
            "before its commit"
        );
        let first = ids.seal().expect("an id to seal");
        assert!(ids.seal().is_none(), "nothing new since");
        ids.insert(1, "later".into(), 9);
        let second = ids.seal().expect("a second commit");
        assert_eq!(ids.in_memory(), 2);

        // the first commit is done (and its row is in SQLite); the second is not yet
        c.execute("INSERT INTO order_rows VALUES (8, 1, 'new')", [])
            .unwrap();
        first.committed();
        assert_eq!(ids.find(&c, 1, "new").unwrap(), Some(8));
        assert_eq!(ids.in_memory(), 1, "the committed id left memory");
        assert_eq!(
            ids.find(&c, 1, "later").unwrap(),
            Some(9),
            "still in memory"
        );

        second.committed();
        assert_eq!(
            ids.find(&c, 1, "later").unwrap(),
            None,
            "not in this test's table"
        );
        assert_eq!(ids.in_memory(), 0);
    }

    #[test]
    fn the_filter_answers_new_ids_without_asking_sqlite() {
        // a connection without the table: any lookup that reaches SQLite fails
        let bare = Connection::open_in_memory().unwrap();
        let mut ids = ClientIds::default();
        for i in 0..10_000 {
            ids.load(1, &format!("old-{i}"));
        }
        let asked = (0..10_000)
            .filter(|i| ids.find(&bare, 1, &format!("new-{i}")).is_err())
            .count();
        assert!(asked <= 1, "{asked} of 10,000 new ids went to SQLite");
        assert!(
            ids.find(&bare, 1, "old-42").is_err(),
            "a known id is looked up"
        );
        assert!(
            ids.find(&bare, 2, "old-42").is_ok(),
            "another user's id is new"
        );
    }

    #[test]
    fn a_commit_that_is_never_marked_keeps_its_ids_and_those_after_it() {
        let c = db();
        let mut ids = ClientIds::default();
        ids.insert(1, "a".into(), 8);
        let lost = ids.seal().unwrap();
        ids.insert(1, "b".into(), 9);
        let later = ids.seal().unwrap();
        // its batch failed: the writer never marks it, nor the later one (refused with it);
        // both ids keep answering from memory until the sequencer's reload replaces them all
        drop(lost);
        drop(later);
        assert_eq!(ids.find(&c, 1, "a").unwrap(), Some(8));
        assert_eq!(ids.find(&c, 1, "b").unwrap(), Some(9));
        assert_eq!(ids.in_memory(), 2);
    }
}
