//! The Raft log's own write-ahead log, laid out as etcd's: `member/wal/<seq>.wal` segments.
//!
//! Every change to the log (entries, truncation, purge pointer, vote, committed id) is one
//! framed record appended to the current segment. A write is durable once `fdatasync` returns,
//! which is exactly one system call pair per append on the critical path (sled flushed several
//! log buffers per append, each with its own sync). Segments are preallocated with `fallocate`,
//! so an append does not grow the file and the sync carries no size update.
//!
//! Record frame: `len: u32 LE | crc: u32 LE | body`, where `body` is a bincode [`Record`] and
//! `crc` is CRC-32 over `len` and `body`, chained from the previous record's crc (0 at the
//! start of a segment). Preallocated space reads as zeros, so a zero `len` ends a segment; a
//! record whose crc does not match ends the log (a torn write at the tail, overwritten by the
//! next append). The chain keeps a stale record after a torn one from ever validating.
//!
//! Every segment starts with a [`Record::State`] holding the vote, committed id and purge
//! pointer at the time it was created, so whole segments below the purge pointer can go.
//! Before a new segment is created the current one is synced, so only the last segment can
//! have a torn tail; a segment is created under a temporary name and renamed once its first
//! record is on disk.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::{Entry, LogId, Vote};
use serde::{Deserialize, Serialize};

use super::{NodeId, TypeConfig};

/// etcd's segment size (`wal.SegmentSizeBytes`).
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const HEADER: usize = 8;
/// A record longer than this is corruption, not data (etcd's requests are at most a few MiB).
const MAX_RECORD: u32 = 1 << 30;
const SUFFIX: &str = "wal";

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: corrupt at offset {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{}: in use by another process", path.display())]
    Locked { path: PathBuf },
    #[error("encoding a wal record: {0}")]
    Encode(#[from] bincode::Error),
}

type Result<T, E = WalError> = std::result::Result<T, E>;

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The durable state besides the entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalState {
    pub vote: Option<Vote<NodeId>>,
    pub committed: Option<LogId<NodeId>>,
    pub purged: Option<LogId<NodeId>>,
}

/// What a record says; [`RecordRef`] writes the same encoding without owning the entry.
#[derive(Deserialize)]
enum Record {
    State(WalState),
    Entry(Entry<TypeConfig>),
    Truncate(u64),
    Committed(Option<LogId<NodeId>>),
    Vote(Vote<NodeId>),
    Purge(LogId<NodeId>),
}

#[derive(Serialize)]
enum RecordRef<'a> {
    State(&'a WalState),
    Entry(&'a Entry<TypeConfig>),
    Truncate(u64),
    Committed(&'a Option<LogId<NodeId>>),
    Vote(&'a Vote<NodeId>),
    Purge(&'a LogId<NodeId>),
}

/// Where an entry's record is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    log_id: LogId<NodeId>,
    seq: u64,
    /// Of the record's body (after the frame header).
    offset: u64,
    len: u32,
}

/// The in-memory view readers use: state, entry locations and open segments.
#[derive(Default)]
struct Index {
    state: WalState,
    /// Locations of the entries after the purge pointer, contiguous by index.
    locs: VecDeque<Loc>,
    segments: BTreeMap<u64, Arc<File>>,
}

impl Index {
    fn last_index(&self) -> Option<u64> {
        self.locs.back().map(|l| l.log_id.index)
    }

    /// Records an entry written at `loc`: replaces any entries from its index on, and starts
    /// over if it does not follow the last one (the first entry after a purge past the end).
    fn push(&mut self, loc: Loc) {
        let index = loc.log_id.index;
        if let Some(first) = self.locs.front().map(|l| l.log_id.index) {
            if index < first || self.last_index().is_some_and(|last| index > last + 1) {
                self.locs.clear();
            } else {
                self.locs.truncate((index - first) as usize);
            }
        }
        self.locs.push_back(loc);
    }

    fn truncate(&mut self, index: u64) {
        if let Some(first) = self.locs.front().map(|l| l.log_id.index) {
            self.locs.truncate(index.saturating_sub(first) as usize);
        }
    }

    fn purge(&mut self, log_id: LogId<NodeId>) {
        if self.state.purged.is_none_or(|p| p.index < log_id.index) {
            self.state.purged = Some(log_id);
        }
        while self
            .locs
            .front()
            .is_some_and(|l| l.log_id.index <= log_id.index)
        {
            self.locs.pop_front();
        }
    }

    fn apply(&mut self, record: Record, loc: impl FnOnce(LogId<NodeId>) -> Loc) {
        match record {
            Record::State(s) => self.state = s,
            Record::Entry(e) => self.push(loc(e.log_id)),
            Record::Truncate(i) => self.truncate(i),
            Record::Committed(c) => self.state.committed = c,
            Record::Vote(v) => self.state.vote = Some(v),
            Record::Purge(p) => self.purge(p),
        }
    }
}

/// The segment being appended to.
struct Writer {
    dir: File,
    file: File,
    path: PathBuf,
    seq: u64,
    offset: u64,
    /// Where the segment's first record (its state) ends: a segment holding only that is
    /// never rolled away from, however large the record to write.
    base: u64,
    crc: u32,
    segment_bytes: u64,
    buf: Vec<u8>,
    /// Positions in `buf` of the records being framed.
    framed: Vec<usize>,
}

impl Writer {
    /// Appends `record` unframed to `buf`; [`Writer::frame`] fills the headers once the
    /// segment it goes to is known.
    fn encode(&mut self, record: &RecordRef<'_>) -> Result<()> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER]);
        bincode::serialize_into(&mut self.buf, record)?;
        let len = (self.buf.len() - start - HEADER) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.framed.push(start);
        Ok(())
    }

    /// Chains the crcs of the encoded records from the segment's current crc.
    fn frame(&mut self) {
        let mut crc = self.crc;
        for &start in &self.framed {
            let len = u32::from_le_bytes(self.buf[start..start + 4].try_into().unwrap_or_default());
            let body = start + HEADER..start + HEADER + len as usize;
            crc = record_crc(crc, len, &self.buf[body]);
            self.buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
        }
        self.crc = crc;
    }

    /// Writes the encoded records at the end of the segment (not synced). Returns the offset
    /// they were written at.
    fn write(&mut self) -> Result<u64> {
        self.frame();
        let at = self.offset;
        self.file
            .write_all_at(&self.buf, at)
            .map_err(io_at(&self.path))?;
        self.offset += self.buf.len() as u64;
        Ok(at)
    }

    fn sync(&self) -> Result<()> {
        let start = std::time::Instant::now();
        let res = self.file.sync_data().map_err(io_at(&self.path));
        crate::metrics::WAL_FSYNC.observe(start.elapsed().as_secs_f64());
        res
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.framed.clear();
    }
}

fn record_crc(prev: u32, len: u32, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(prev);
    h.update(&len.to_le_bytes());
    h.update(body);
    h.finalize()
}

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Whether `fd` is on tmpfs (statfs magic `TMPFS_MAGIC`).
// `f_type`'s width differs between architectures; it is i64 on x86_64.
#[allow(clippy::unnecessary_cast)]
fn on_tmpfs(fd: impl std::os::fd::AsFd) -> bool {
    rustix::fs::fstatfs(fd).is_ok_and(|st| st.f_type as i64 == TMPFS_MAGIC)
}

fn segment_name(seq: u64) -> String {
    format!("{seq:016x}.{SUFFIX}")
}

/// Creates segment `seq` in `dir` holding `state` (and `entries`), synced, under its final
/// name. Returns the open file, the end offset and the crc chain's last value.
fn create_segment(
    dir: &Path,
    dir_file: &File,
    seq: u64,
    segment_bytes: u64,
    state: &WalState,
    entries: &[Entry<TypeConfig>],
) -> Result<(File, u64, u32)> {
    let tmp = dir.join(format!("{}.tmp", segment_name(seq)));
    let path = dir.join(segment_name(seq));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_at(&tmp))?;
    // Preallocation is an optimisation: a filesystem without fallocate still works. On tmpfs
    // it would only pin 64 MiB of memory per segment, and there is no sync to speed up.
    if !on_tmpfs(&file) {
        let _ = rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, segment_bytes);
    }
    let mut w = Writer {
        dir: dir_file.try_clone().map_err(io_at(dir))?,
        file,
        path: tmp.clone(),
        seq,
        offset: 0,
        base: 0,
        crc: 0,
        segment_bytes,
        buf: Vec::new(),
        framed: Vec::new(),
    };
    w.encode(&RecordRef::State(state))?;
    for e in entries {
        w.encode(&RecordRef::Entry(e))?;
    }
    w.write()?;
    w.file.sync_all().map_err(io_at(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_at(&path))?;
    dir_file.sync_all().map_err(io_at(dir))?;
    Ok((w.file, w.offset, w.crc))
}

/// Reads the records of one segment into `index`. Returns the offset after the last valid
/// record, its crc, and whether the segment ended on a bad record (rather than on zeros or at
/// the end of the file).
fn replay_segment(
    path: &Path,
    file: &File,
    seq: u64,
    index: &mut Index,
) -> Result<(u64, u32, Option<String>, u64)> {
    let size = file.metadata().map_err(io_at(path))?.len();
    let mut offset = 0u64;
    let mut crc = 0u32;
    let mut first_end = 0u64;
    let mut header = [0u8; HEADER];
    let mut body = Vec::new();
    let bad = loop {
        if offset + HEADER as u64 > size {
            break (offset < size).then(|| "short header".to_string());
        }
        file.read_exact_at(&mut header, offset)
            .map_err(io_at(path))?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let want = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 {
            break (want != 0).then(|| "zero length".to_string());
        }
        if len > MAX_RECORD || offset + (HEADER as u64) + u64::from(len) > size {
            break Some(format!("record of {len} bytes past the end"));
        }
        body.resize(len as usize, 0);
        file.read_exact_at(&mut body, offset + HEADER as u64)
            .map_err(io_at(path))?;
        let got = record_crc(crc, len, &body);
        if got != want {
            break Some("crc mismatch".to_string());
        }
        let record: Record = match bincode::deserialize(&body) {
            Ok(r) => r,
            Err(e) => break Some(format!("undecodable record: {e}")),
        };
        if offset == 0 && !matches!(record, Record::State(_)) {
            return Err(WalError::Corrupt {
                path: path.to_path_buf(),
                offset,
                reason: "segment does not start with a state record".into(),
            });
        }
        let body_at = offset + HEADER as u64;
        index.apply(record, |log_id| Loc {
            log_id,
            seq,
            offset: body_at,
            len,
        });
        crc = got;
        offset = body_at + u64::from(len);
        if first_end == 0 {
            first_end = offset;
        }
    };
    if offset == 0 {
        return Err(WalError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: "segment has no state record".into(),
        });
    }
    Ok((offset, crc, bad, first_end))
}

/// The log. Cheap to clone; clones share the files.
#[derive(Clone)]
pub struct Wal {
    dir: Arc<PathBuf>,
    writer: Arc<Mutex<Writer>>,
    index: Arc<RwLock<Index>>,
}

impl Wal {
    /// Whether a log exists at `dir`.
    pub fn exists(dir: &Path) -> bool {
        dir.is_dir()
    }

    /// Creates the log at `dir` (which must not exist) holding `state` and `entries`, and opens
    /// it. The directory appears whole or not at all.
    pub fn create(
        dir: &Path,
        segment_bytes: u64,
        state: &WalState,
        entries: &[Entry<TypeConfig>],
    ) -> Result<Self> {
        let tmp = dir.with_extension("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_at(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
        let tmp_file = File::open(&tmp).map_err(io_at(&tmp))?;
        create_segment(&tmp, &tmp_file, 0, segment_bytes, state, entries)?;
        std::fs::rename(&tmp, dir).map_err(io_at(dir))?;
        if let Some(parent) = dir.parent() {
            File::open(parent)
                .and_then(|f| f.sync_all())
                .map_err(io_at(parent))?;
        }
        Self::open(dir, segment_bytes)
    }

    /// Opens the log at `dir`, replaying every segment.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Self> {
        let dir_file = File::open(dir).map_err(io_at(dir))?;
        // One writer per log, as etcd locks its WAL; held as long as the writer's handle.
        rustix::fs::flock(
            &dir_file,
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .map_err(|_| WalError::Locked {
            path: dir.to_path_buf(),
        })?;
        let mut seqs = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_at(dir))? {
            let entry = entry.map_err(io_at(dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(".wal.tmp") {
                // A segment whose creation did not finish: it holds nothing acknowledged.
                if u64::from_str_radix(stem, 16).is_ok() {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            }
            if let Some(seq) = name
                .strip_suffix(".wal")
                .and_then(|s| u64::from_str_radix(s, 16).ok())
            {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let Some(&last_seq) = seqs.last() else {
            return Err(WalError::Corrupt {
                path: dir.to_path_buf(),
                offset: 0,
                reason: "no segments".into(),
            });
        };
        let mut index = Index::default();
        let mut end = (0, 0);
        let mut first_end = 0;
        for &seq in &seqs {
            let path = dir.join(segment_name(seq));
            let file = OpenOptions::new()
                .read(true)
                .write(seq == last_seq)
                .open(&path)
                .map_err(io_at(&path))?;
            let (offset, crc, bad, first) = replay_segment(&path, &file, seq, &mut index)?;
            if let Some(reason) = bad {
                if seq != last_seq {
                    return Err(WalError::Corrupt {
                        path,
                        offset,
                        reason,
                    });
                }
                tracing::warn!(path = %path.display(), offset, %reason,
                    "wal ends in a torn record; appending over it");
            }
            end = (offset, crc);
            first_end = first;
            index.segments.insert(seq, Arc::new(file));
        }
        // Entries at or below the purge pointer may remain in the oldest segment.
        if let Some(p) = index.state.purged {
            index.purge(p);
        }
        if let Some(first) = index.locs.front() {
            let expected = index
                .state
                .purged
                .map_or(first.log_id.index, |p| p.index + 1);
            if first.log_id.index != expected {
                return Err(WalError::Corrupt {
                    path: dir.to_path_buf(),
                    offset: 0,
                    reason: format!(
                        "entries start at {} after purged index {:?}",
                        first.log_id.index,
                        index.state.purged.map(|p| p.index)
                    ),
                });
            }
        }
        let path = dir.join(segment_name(last_seq));
        let file = index.segments[&last_seq]
            .try_clone()
            .map_err(io_at(&path))?;
        let writer = Writer {
            dir: dir_file,
            file,
            path,
            seq: last_seq,
            offset: end.0,
            base: first_end,
            crc: end.1,
            segment_bytes,
            buf: Vec::new(),
            framed: Vec::new(),
        };
        Ok(Self {
            dir: Arc::new(dir.to_path_buf()),
            writer: Arc::new(Mutex::new(writer)),
            index: Arc::new(RwLock::new(index)),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // A panic mid-write leaves at most a torn record past `offset`, which the next write
        // overwrites: the writer is still consistent.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The vote, committed id and purge pointer.
    pub fn state(&self) -> WalState {
        self.read_index().state.clone()
    }

    /// The id of the last entry, if any remain after the purge pointer.
    pub fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.read_index().locs.back().map(|l| l.log_id)
    }

    /// Moves to a new segment when `w.buf` does not fit in the current one. The current one is
    /// synced first, so only the newest segment can end torn.
    fn roll_if_full(&self, w: &mut Writer) -> Result<()> {
        if w.offset + w.buf.len() as u64 <= w.segment_bytes || w.offset <= w.base {
            return Ok(());
        }
        w.sync()?;
        let seq = w.seq + 1;
        let state = self.read_index().state.clone();
        let (file, offset, crc) =
            create_segment(&self.dir, &w.dir, seq, w.segment_bytes, &state, &[])?;
        let reader = Arc::new(file.try_clone().map_err(io_at(&w.path))?);
        w.file = file;
        w.path = self.dir.join(segment_name(seq));
        w.seq = seq;
        w.offset = offset;
        w.base = offset;
        w.crc = crc;
        self.write_index().segments.insert(seq, reader);
        Ok(())
    }

    /// Appends records built by `encode`, then applies `update` to the index, then syncs if
    /// asked. `update` gets the offset the first record was written at.
    fn append_with(
        &self,
        sync: bool,
        encode: impl FnOnce(&mut Writer) -> Result<()>,
        update: impl FnOnce(&mut Index, &Writer, u64),
    ) -> Result<()> {
        let mut w = self.writer();
        w.clear();
        encode(&mut w)?;
        self.roll_if_full(&mut w)?;
        let at = w.write()?;
        update(&mut self.write_index(), &w, at);
        if sync {
            w.sync()?;
        }
        Ok(())
    }

    /// Appends entries and returns once they are on disk.
    pub fn append(&self, entries: &[Entry<TypeConfig>]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.append_with(
            true,
            |w| {
                for e in entries {
                    w.encode(&RecordRef::Entry(e))?;
                }
                Ok(())
            },
            |index, w, at| {
                for (e, &start) in entries.iter().zip(&w.framed) {
                    let len =
                        u32::from_le_bytes(w.buf[start..start + 4].try_into().unwrap_or_default());
                    index.push(Loc {
                        log_id: e.log_id,
                        seq: w.seq,
                        offset: at + (start + HEADER) as u64,
                        len,
                    });
                }
            },
        )
    }

    /// Removes the entries from `index` on; durable on return.
    pub fn truncate(&self, index: u64) -> Result<()> {
        self.append_with(
            true,
            |w| w.encode(&RecordRef::Truncate(index)),
            |ix, _, _| ix.truncate(index),
        )
    }

    /// Stores the vote; durable on return.
    pub fn save_vote(&self, vote: &Vote<NodeId>) -> Result<()> {
        self.append_with(
            true,
            |w| w.encode(&RecordRef::Vote(vote)),
            |ix, _, _| ix.state.vote = Some(*vote),
        )
    }

    /// Records the committed id; not synced on its own, it rides on the next sync.
    pub fn save_committed(&self, committed: Option<LogId<NodeId>>) -> Result<()> {
        self.append_with(
            false,
            |w| w.encode(&RecordRef::Committed(&committed)),
            |ix, _, _| ix.state.committed = committed,
        )
    }

    /// Drops the entries up to `log_id` and deletes the segments that hold nothing else. The
    /// purge record is synced before any segment goes.
    pub fn purge(&self, log_id: LogId<NodeId>) -> Result<()> {
        let mut w = self.writer();
        w.clear();
        w.encode(&RecordRef::Purge(&log_id))?;
        self.roll_if_full(&mut w)?;
        w.write()?;
        w.sync()?;
        let doomed: Vec<u64> = {
            let mut ix = self.write_index();
            ix.purge(log_id);
            let keep_from = ix.locs.front().map_or(w.seq, |l| l.seq.min(w.seq));
            let doomed: Vec<u64> = ix.segments.range(..keep_from).map(|(&s, _)| s).collect();
            for s in &doomed {
                ix.segments.remove(s);
            }
            doomed
        };
        for seq in doomed {
            let path = self.dir.join(segment_name(seq));
            std::fs::remove_file(&path).map_err(io_at(&path))?;
        }
        Ok(())
    }

    /// The entries with index in `[start, end)` that are present, in order.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<Entry<TypeConfig>>> {
        let wanted: Vec<(Loc, Arc<File>)> = {
            let ix = self.read_index();
            let Some(first) = ix.locs.front().map(|l| l.log_id.index) else {
                return Ok(Vec::new());
            };
            let from = start.max(first);
            if from >= end {
                return Ok(Vec::new());
            }
            let skip = (from - first) as usize;
            let take = usize::try_from(end - from).unwrap_or(usize::MAX);
            ix.locs
                .iter()
                .skip(skip)
                .take(take)
                .filter_map(|l| ix.segments.get(&l.seq).map(|f| (*l, f.clone())))
                .collect()
        };
        let mut out = Vec::with_capacity(wanted.len());
        let mut body = Vec::new();
        for (loc, file) in wanted {
            let path = self.dir.join(segment_name(loc.seq));
            body.resize(loc.len as usize, 0);
            file.read_exact_at(&mut body, loc.offset)
                .map_err(io_at(&path))?;
            match bincode::deserialize(&body) {
                Ok(Record::Entry(e)) if e.log_id == loc.log_id => out.push(e),
                Ok(_) => {
                    return Err(WalError::Corrupt {
                        path,
                        offset: loc.offset,
                        reason: format!("expected entry {}", loc.log_id),
                    })
                }
                Err(e) => {
                    return Err(WalError::Corrupt {
                        path,
                        offset: loc.offset,
                        reason: e.to_string(),
                    })
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_log::{blank, indexes, log_id};
    use super::*;

    fn segments(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn entries_vote_and_pointers_survive_reopening() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let wal = Wal::create(&dir, 4096, &WalState::default(), &[]).expect("create");
        wal.append(&(1..=5).map(|i| blank(1, i)).collect::<Vec<_>>())
            .expect("append");
        wal.save_vote(&Vote::new_committed(2, 7)).expect("vote");
        wal.append(&[blank(2, 4)]).expect("overwrite");
        wal.save_committed(Some(log_id(2, 4))).expect("committed");
        wal.truncate(4).expect("truncate");
        wal.append(&[blank(2, 4), blank(2, 5)]).expect("append");
        wal.purge(log_id(1, 1)).expect("purge");
        drop(wal);
        let wal = Wal::open(&dir, 4096).expect("reopen");
        assert_eq!(
            wal.state(),
            WalState {
                vote: Some(Vote::new_committed(2, 7)),
                committed: Some(log_id(2, 4)),
                purged: Some(log_id(1, 1)),
            }
        );
        let entries = wal.entries(0, u64::MAX).expect("read");
        assert_eq!(indexes(&entries), vec![2, 3, 4, 5]);
        assert_eq!(entries[2].log_id, log_id(2, 4));
        assert_eq!(wal.last_log_id(), Some(log_id(2, 5)));
        assert_eq!(indexes(&wal.entries(3, 4).expect("read")), vec![3]);
    }

    #[test]
    fn full_segments_roll_and_purged_ones_are_deleted() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let wal = Wal::create(&dir, 512, &WalState::default(), &[]).expect("create");
        for i in 1..=40 {
            wal.append(&[blank(1, i)]).expect("append");
        }
        wal.save_vote(&Vote::new_committed(1, 1)).expect("vote");
        let before = segments(&dir).len();
        assert!(
            before > 3,
            "40 entries in 512-byte segments: {before} segments"
        );
        wal.purge(log_id(1, 30)).expect("purge");
        let after = segments(&dir).len();
        assert!(after < before, "purge kept all {before} segments");
        drop(wal);
        let wal = Wal::open(&dir, 512).expect("reopen");
        assert_eq!(
            indexes(&wal.entries(0, u64::MAX).expect("read")),
            (31..=40).collect::<Vec<_>>()
        );
        assert_eq!(wal.state().vote, Some(Vote::new_committed(1, 1)));
        assert_eq!(wal.state().purged, Some(log_id(1, 30)));
    }

    #[test]
    fn purging_past_the_end_restarts_the_log_after_the_pointer() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let wal = Wal::create(&dir, 4096, &WalState::default(), &[]).expect("create");
        wal.append(&(1..=3).map(|i| blank(1, i)).collect::<Vec<_>>())
            .expect("append");
        wal.purge(log_id(2, 9)).expect("purge");
        assert_eq!(wal.last_log_id(), None);
        wal.append(&[blank(2, 10)]).expect("append");
        drop(wal);
        let wal = Wal::open(&dir, 4096).expect("reopen");
        assert_eq!(indexes(&wal.entries(0, u64::MAX).expect("read")), vec![10]);
    }

    #[test]
    fn a_torn_tail_is_dropped_and_overwritten() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let wal = Wal::create(&dir, 1 << 20, &WalState::default(), &[]).expect("create");
        wal.append(&(1..=3).map(|i| blank(1, i)).collect::<Vec<_>>())
            .expect("append");
        let end = wal.writer().offset;
        wal.append(&[blank(1, 4)]).expect("append");
        drop(wal);
        // Tear the last record: its second half never reached the disk.
        let path = dir.join(segment_name(0));
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.write_all_at(&[0xAB; 6], end + 10).expect("tear");
        drop(f);
        let wal = Wal::open(&dir, 1 << 20).expect("reopen");
        assert_eq!(
            indexes(&wal.entries(0, u64::MAX).expect("read")),
            vec![1, 2, 3]
        );
        wal.append(&[blank(1, 4), blank(1, 5)]).expect("append");
        drop(wal);
        let wal = Wal::open(&dir, 1 << 20).expect("reopen");
        assert_eq!(
            indexes(&wal.entries(0, u64::MAX).expect("read")),
            vec![1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn a_bad_record_before_the_last_segment_is_an_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let wal = Wal::create(&dir, 256, &WalState::default(), &[]).expect("create");
        for i in 1..=20 {
            wal.append(&[blank(1, i)]).expect("append");
        }
        drop(wal);
        let path = dir.join(segment_name(0));
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.write_all_at(&[0xFF; 4], 40).expect("corrupt");
        drop(f);
        match Wal::open(&dir, 256) {
            Err(WalError::Corrupt { .. }) => {}
            Err(e) => panic!("expected corruption, got {e}"),
            Ok(_) => panic!("a corrupt sealed segment opened"),
        }
    }

    /// Bytes the filesystem allocated for segment 0.
    fn allocated(dir: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(dir.join(segment_name(0)))
            .expect("segment")
            .blocks()
            * 512
    }

    /// The filesystem type of `dir`, asked independently of the code under test.
    #[allow(clippy::unnecessary_cast)]
    fn fs_type(dir: &Path) -> i64 {
        let f = File::open(dir).expect("open dir");
        rustix::fs::fstatfs(&f).expect("statfs").f_type as i64
    }

    #[test]
    fn segments_are_preallocated_except_on_tmpfs() {
        const SEGMENT: u64 = 8 << 20;
        let tmp = tempfile::tempdir().expect("tempdir");
        if fs_type(tmp.path()) != TMPFS_MAGIC {
            let dir = tmp.path().join("wal");
            let _wal = Wal::create(&dir, SEGMENT, &WalState::default(), &[]).expect("create");
            assert!(
                allocated(&dir) >= SEGMENT,
                "segment not preallocated: {} bytes",
                allocated(&dir)
            );
        }
        let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
            return;
        };
        if fs_type(shm.path()) == TMPFS_MAGIC {
            let dir = shm.path().join("wal");
            let _wal = Wal::create(&dir, SEGMENT, &WalState::default(), &[]).expect("create");
            assert!(
                allocated(&dir) < SEGMENT / 8,
                "a tmpfs segment pinned {} bytes",
                allocated(&dir)
            );
        }
    }

    #[test]
    fn an_unfinished_segment_or_directory_is_ignored() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        std::fs::create_dir_all(dir.with_extension("tmp")).expect("leftover dir");
        let wal = Wal::create(&dir, 4096, &WalState::default(), &[blank(1, 1)]).expect("create");
        drop(wal);
        std::fs::write(dir.join("0000000000000001.wal.tmp"), b"junk").expect("leftover");
        let wal = Wal::open(&dir, 4096).expect("reopen");
        assert_eq!(indexes(&wal.entries(0, u64::MAX).expect("read")), vec![1]);
        assert_eq!(segments(&dir), vec![segment_name(0)]);
    }
}
