//! Applied writes that have not reached sled yet, as etcd's backend buffers its batch
//! transaction between commits.
//!
//! Every sled `apply_batch` rolls sled's log buffer and writes it out with a sync, on sled's I/O
//! threads: per applied Raft entry that was a third of the store's CPU and a second stream of
//! syncs competing with the write-ahead log's. Applies now land in an in-memory [`Overlay`]
//! that reads consult first, and [`Backend::write_back`] moves it into sled as one batch (the
//! state machine does so at most once a second, and before snapshots). Nothing is lost in a
//! crash: every applied entry is in the Raft log, and sled holds whole write-backs only, each
//! with the last applied log id, so a restart re-applies exactly what is missing.

use std::collections::BTreeMap;
use std::iter::Peekable;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use sled::IVec;

/// Writes in key order; `None` removes the key.
type Writes = BTreeMap<Vec<u8>, Option<IVec>>;

/// The writes of one apply, merged into the overlay when it completes.
#[derive(Default)]
pub(crate) struct WriteBatch(Writes);

impl WriteBatch {
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl Into<IVec>) {
        self.0.insert(key.as_ref().to_vec(), Some(value.into()));
    }

    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.0.insert(key.as_ref().to_vec(), None);
    }
}

/// Applied writes not yet in sled: `current` takes new applies; `flushing` is a write-back on
/// its way into sled (it may or may not be there yet; either way it holds the same values).
#[derive(Default)]
pub(crate) struct Overlay {
    current: Writes,
    flushing: Option<Arc<Writes>>,
}

impl Overlay {
    /// `Some(None)` if the key was removed, `None` if the overlay does not know it.
    pub fn get(&self, key: &[u8]) -> Option<Option<&IVec>> {
        self.current
            .get(key)
            .or_else(|| self.flushing.as_ref().and_then(|f| f.get(key)))
            .map(Option::as_ref)
    }

    /// The overlay's writes with keys in `[start, end)`, newest winning.
    fn range(&self, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Option<IVec>)> {
        let span = (
            std::ops::Bound::Included(start),
            std::ops::Bound::Excluded(end),
        );
        let mut merged: BTreeMap<&[u8], &Option<IVec>> = BTreeMap::new();
        if let Some(f) = &self.flushing {
            merged.extend(f.range::<[u8], _>(span).map(|(k, v)| (k.as_slice(), v)));
        }
        merged.extend(
            self.current
                .range::<[u8], _>(span)
                .map(|(k, v)| (k.as_slice(), v)),
        );
        merged
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.clone()))
            .collect()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.current.is_empty() && self.flushing.is_none()
    }
}

/// The sled tree with its overlay.
pub(crate) struct Backend {
    pub tree: sled::Tree,
    overlay: RwLock<Overlay>,
    /// One write-back at a time.
    writing_back: Mutex<()>,
}

impl Backend {
    pub fn new(tree: sled::Tree) -> Self {
        Self {
            tree,
            overlay: RwLock::default(),
            writing_back: Mutex::new(()),
        }
    }

    /// For reads. Never hold two of these in one thread (a waiting write-back would deadlock
    /// the second), and take the MVCC state lock first.
    pub fn overlay(&self) -> RwLockReadGuard<'_, Overlay> {
        self.overlay.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn overlay_mut(&self) -> RwLockWriteGuard<'_, Overlay> {
        self.overlay.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes an apply's writes visible to reads.
    pub fn merge(&self, batch: WriteBatch) {
        let mut ov = self.overlay_mut();
        if ov.current.is_empty() {
            ov.current = batch.0;
        } else {
            ov.current.extend(batch.0);
        }
    }

    /// Moves everything applied so far into sled, atomically (not synced: see `sled::Db::flush`).
    /// Reads go on meanwhile; applies wait only for the overlay swap.
    pub fn write_back(&self) -> Result<(), sled::Error> {
        let _one = self
            .writing_back
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let writes = {
            let mut ov = self.overlay_mut();
            if ov.current.is_empty() {
                return Ok(());
            }
            let writes = Arc::new(std::mem::take(&mut ov.current));
            ov.flushing = Some(writes.clone());
            writes
        };
        let mut batch = sled::Batch::default();
        for (k, v) in writes.iter() {
            match v {
                Some(v) => batch.insert(k.as_slice(), v.clone()),
                None => batch.remove(k.as_slice()),
            }
        }
        let res = self.tree.apply_batch(batch);
        let mut ov = self.overlay_mut();
        ov.flushing = None;
        if res.is_err() {
            // Back under the newer writes, for the next attempt.
            let mut older = Arc::try_unwrap(writes).unwrap_or_else(|w| (*w).clone());
            older.extend(std::mem::take(&mut ov.current));
            ov.current = older;
        }
        res
    }
}

/// Reads of `[start, end)` through the overlay: sled's items with the overlay's writes laid
/// over them, in key order.
pub(crate) fn range(
    tree: &sled::Tree,
    overlay: &Overlay,
    start: &[u8],
    end: &[u8],
) -> Merged<sled::Iter> {
    Merged {
        tree: tree.range(start.to_vec()..end.to_vec()).peekable(),
        overlay: overlay.range(start, end).into_iter().peekable(),
    }
}

pub(crate) struct Merged<T: Iterator<Item = sled::Result<(IVec, IVec)>>> {
    tree: Peekable<T>,
    overlay: Peekable<std::vec::IntoIter<(Vec<u8>, Option<IVec>)>>,
}

impl<T: Iterator<Item = sled::Result<(IVec, IVec)>>> Iterator for Merged<T> {
    type Item = sled::Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_overlay = match (self.tree.peek(), self.overlay.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => return self.tree.next(),
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some(Ok((tk, _))), Some((ok, _))) => {
                    let (tk, ok): (&[u8], &[u8]) = (tk, ok);
                    if tk == ok {
                        // The overlay's write replaces sled's value.
                        self.tree.next();
                        true
                    } else {
                        ok < tk
                    }
                }
            };
            if !take_overlay {
                return self.tree.next();
            }
            match self.overlay.next() {
                Some((k, Some(v))) => return Some(Ok((IVec::from(k), v))),
                // Removed: skip it (and sled's copy, already skipped above).
                Some((_, None)) => continue,
                None => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: &Backend, start: &[u8], end: &[u8]) -> Vec<(String, String)> {
        let ov = b.overlay();
        range(&b.tree, &ov, start, end)
            .map(|r| {
                let (k, v) = r.expect("read");
                (
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_see_the_overlay_over_sled_before_and_after_write_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("open");
        let b = Backend::new(db.open_tree("t").expect("tree"));
        for k in ["a", "c", "e"] {
            b.tree.insert(k, "sled").expect("insert");
        }
        let mut w = WriteBatch::default();
        w.insert("b", "new");
        w.insert("c", "new");
        w.remove("e");
        w.insert("f", "new");
        b.merge(w);
        let want = pairs(&[("a", "sled"), ("b", "new"), ("c", "new"), ("f", "new")]);
        assert_eq!(keys(&b, b"a", b"z"), want);
        assert_eq!(keys(&b, b"b", b"d"), pairs(&[("b", "new"), ("c", "new")]));
        assert_eq!(b.overlay().get(b"e"), Some(None));
        b.write_back().expect("write back");
        assert!(b.overlay().is_empty());
        assert_eq!(keys(&b, b"a", b"z"), want);
        assert_eq!(b.tree.get("e").expect("get"), None);
        // A later remove of a key only sled has.
        let mut w = WriteBatch::default();
        w.remove("a");
        b.merge(w);
        assert_eq!(keys(&b, b"a", b"c"), pairs(&[("b", "new")]));
    }
}
