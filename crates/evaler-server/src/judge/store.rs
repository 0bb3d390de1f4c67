//! Compiled submissions, kept in memory.
//!
//! A submission is the set of regular files the compile step left at the
//! top level of `/box` (the source included). Memory rather than the
//! workdir: every test copies the files into a clean box anyway, so a disk
//! copy would only add a read per test, and nothing of a submission can
//! outlive the process that accepted it (there is no stale state to sweep).
//!
//! Memory is bounded three ways: per submission, per connection and per
//! server. The counters are released when the last reference to a
//! submission goes, which may be after `SRemove` if tests of it were still
//! queued.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::languages::Language;

/// One file of a submission.
#[derive(Debug)]
pub(crate) struct StoredFile {
    pub name: String,
    pub data: Vec<u8>,
}

/// A compiled submission, shared by every test queued for it.
#[derive(Debug)]
pub(crate) struct Submission {
    pub id: i64,
    pub lang: Arc<Language>,
    pub files: Vec<StoredFile>,
    _reservation: Reservation,
}

impl Submission {
    pub fn has_file(&self, name: &str) -> bool {
        self.files.iter().any(|f| f.name == name)
    }
}

/// Why a submission could not be stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error(
        "the compiled files take {size} bytes, more than the {limit} bytes a submission may use"
    )]
    TooLarge { size: usize, limit: usize },
    #[error("this connection's stored submissions would exceed {limit} bytes; send SRemove for submissions you are done with")]
    ConnectionFull { limit: usize },
    #[error("the server's submission storage ({limit} bytes) is full; try again later")]
    ServerFull { limit: usize },
}

/// The server-wide budget.
#[derive(Debug)]
pub(crate) struct Store {
    used: Arc<AtomicUsize>,
    limit: usize,
    per_submission: usize,
    per_connection: usize,
}

/// One connection's share of the budget.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectionStore {
    used: Arc<AtomicUsize>,
}

impl ConnectionStore {
    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }
}

/// Bytes counted against both budgets until dropped.
#[derive(Debug)]
struct Reservation {
    bytes: usize,
    server: Arc<AtomicUsize>,
    connection: Arc<AtomicUsize>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.server.fetch_sub(self.bytes, Ordering::SeqCst);
        self.connection.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// Adds `bytes` to `counter` unless that would pass `limit`.
fn reserve(counter: &AtomicUsize, bytes: usize, limit: usize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
            used.checked_add(bytes).filter(|&total| total <= limit)
        })
        .is_ok()
}

impl Store {
    pub fn new(limit: usize, per_connection: usize, per_submission: usize) -> Store {
        Store {
            used: Arc::default(),
            limit,
            per_submission,
            per_connection,
        }
    }

    /// Bytes stored server-wide right now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// Admits a submission against all three budgets.
    pub fn admit(
        &self,
        conn: &ConnectionStore,
        id: i64,
        lang: Arc<Language>,
        files: Vec<StoredFile>,
    ) -> Result<Submission, StoreError> {
        let size: usize = files
            .iter()
            .map(|f| f.data.len().saturating_add(f.name.len()))
            .fold(0, usize::saturating_add);
        if size > self.per_submission {
            return Err(StoreError::TooLarge {
                size,
                limit: self.per_submission,
            });
        }
        if !reserve(&conn.used, size, self.per_connection) {
            return Err(StoreError::ConnectionFull {
                limit: self.per_connection,
            });
        }
        if !reserve(&self.used, size, self.limit) {
            conn.used.fetch_sub(size, Ordering::SeqCst);
            return Err(StoreError::ServerFull { limit: self.limit });
        }
        Ok(Submission {
            id,
            lang,
            files,
            _reservation: Reservation {
                bytes: size,
                server: Arc::clone(&self.used),
                connection: Arc::clone(&conn.used),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang() -> Arc<Language> {
        let set = crate::languages::LanguageSet::bundled().unwrap();
        Arc::new(set.get("c").unwrap().clone())
    }

    fn files(n: usize) -> Vec<StoredFile> {
        vec![StoredFile {
            name: "main".into(),
            data: vec![0; n],
        }]
    }

    #[test]
    fn budgets_are_enforced_and_released() {
        let store = Store::new(100, 60, 50);
        let a = ConnectionStore::default();
        let b = ConnectionStore::default();
        assert!(matches!(
            store.admit(&a, 1, lang(), files(60)),
            Err(StoreError::TooLarge { .. })
        ));
        let s1 = store.admit(&a, 1, lang(), files(36)).unwrap();
        assert_eq!(a.used(), 40);
        assert!(matches!(
            store.admit(&a, 2, lang(), files(26)),
            Err(StoreError::ConnectionFull { .. })
        ));
        let s2 = store.admit(&b, 2, lang(), files(46)).unwrap();
        let c = ConnectionStore::default();
        assert!(matches!(
            store.admit(&c, 3, lang(), files(16)),
            Err(StoreError::ServerFull { .. })
        ));
        assert_eq!(c.used(), 0, "a refused admission leaves nothing behind");
        assert_eq!(store.used(), 90);
        drop((s1, s2));
        assert_eq!((store.used(), a.used(), b.used()), (0, 0, 0));
    }
}
