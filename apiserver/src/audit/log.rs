//! The audit log backend: JSON lines appended to a file with lumberjack-style rotation, or stdout.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;

use super::{Error, Event, Sink};

const MEGABYTE: u64 = 1024 * 1024;
/// Length of the backup timestamp `2006-01-02T15-04-05.000`.
const BACKUP_TIME_LEN: usize = 23;

/// Rotation limits of an audit log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before a write would grow the file past this many bytes; 0 never rotates.
    pub max_bytes: u64,
    /// Old files kept; 0 keeps all.
    pub max_backups: usize,
    /// Old files older than this many days are removed; 0 keeps them regardless of age.
    pub max_age_days: u64,
}

impl Rotation {
    /// Limits from the `--audit-log-max*` flags. A `max_size_mb` of 0 never rotates, as this
    /// server's flag documents (upstream's lumberjack would rotate at 100 MB instead).
    pub fn from_flags(max_size_mb: u64, max_backups: usize, max_age_days: u64) -> Self {
        Self {
            max_bytes: max_size_mb.saturating_mul(MEGABYTE),
            max_backups,
            max_age_days,
        }
    }
}

/// Writes each event as one JSON line, synchronously (upstream's blocking mode).
#[derive(Debug)]
pub struct LogBackend {
    out: Output,
}

#[derive(Debug)]
enum Output {
    Stdout,
    File(Mutex<RotatingFile>),
}

impl LogBackend {
    /// A backend for `--audit-log-path`; `-` writes to stdout. The file and its directories are
    /// created now (mode 0600 and 0700) so a bad path fails at startup.
    pub fn open(path: &str, rotation: Rotation) -> Result<Self, Error> {
        if path == "-" {
            return Ok(Self {
                out: Output::Stdout,
            });
        }
        let mut file = RotatingFile {
            path: PathBuf::from(path),
            rotation,
            file: None,
            size: 0,
            last_backup: None,
        };
        file.open_existing_or_new(0)
            .map_err(|source| Error::OpenLog {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            out: Output::File(Mutex::new(file)),
        })
    }

    fn write_line(&self, line: &[u8]) -> io::Result<()> {
        match &self.out {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(line)?;
                out.flush()
            }
            Output::File(file) => {
                // A poisoned lock only means another writer panicked mid-write; the file
                // state is still usable.
                let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
                file.write(line)
            }
        }
    }
}

impl Sink for LogBackend {
    fn process(&self, event: &Event) {
        let mut line = match serde_json::to_vec(event) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(error = %e, audit_id = %event.audit_id, "failed to encode audit event");
                return;
            }
        };
        line.push(b'\n');
        if let Err(e) = self.write_line(&line) {
            tracing::error!(error = %e, audit_id = %event.audit_id, "failed to write audit event");
        }
    }
}

#[derive(Debug)]
struct RotatingFile {
    path: PathBuf,
    rotation: Rotation,
    file: Option<File>,
    size: u64,
    /// Timestamp of the newest backup this process made.
    last_backup: Option<OffsetDateTime>,
}

impl RotatingFile {
    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64;
        if self.file.is_none() {
            self.open_existing_or_new(len)?;
        }
        if self.rotation.max_bytes > 0 && self.size > 0 && self.size + len > self.rotation.max_bytes
        {
            self.rotate()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("audit log file is not open"));
        };
        match file.write_all(line) {
            Ok(()) => {
                self.size += len;
                Ok(())
            }
            Err(e) => {
                // Reopen on the next write; the file may have been removed or the disk freed.
                self.file = None;
                Err(e)
            }
        }
    }

    /// Appends to the existing file unless the next write would overflow it.
    fn open_existing_or_new(&mut self, next_write: u64) -> io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let size = match fs::metadata(&self.path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        if self.rotation.max_bytes > 0 && size > 0 && size + next_write > self.rotation.max_bytes {
            return self.rotate();
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)?;
        self.file = Some(file);
        self.size = size;
        Ok(())
    }

    /// Moves the current file aside under a timestamped name, starts a new one and prunes
    /// old backups.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let now = OffsetDateTime::now_utc();
        if self.path.exists() {
            // Backup names must sort in rotation order even when rotations share a millisecond,
            // or pruning would delete the newest backup.
            let mut stamp = match self.last_backup {
                Some(last) if last >= now => last + Duration::from_millis(1),
                _ => now,
            };
            let mut backup = backup_name(&self.path, stamp);
            // Two rotations within one millisecond would otherwise overwrite a backup.
            while backup.exists() {
                stamp += Duration::from_millis(1);
                backup = backup_name(&self.path, stamp);
            }
            fs::rename(&self.path, &backup)?;
            self.last_backup = Some(stamp);
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.path)?;
        self.file = Some(file);
        self.size = 0;
        if let Err(e) = self.prune(now) {
            tracing::warn!(error = %e, path = %self.path.display(), "failed to remove old audit log files");
        }
        Ok(())
    }

    fn prune(&self, now: OffsetDateTime) -> io::Result<()> {
        let Rotation {
            max_backups,
            max_age_days,
            ..
        } = self.rotation;
        if max_backups == 0 && max_age_days == 0 {
            return Ok(());
        }
        let (prefix, ext) = name_parts(&self.path);
        let dir = match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(d) => d.to_path_buf(),
            None => PathBuf::from("."),
        };
        let mut backups: Vec<(OffsetDateTime, PathBuf)> = fs::read_dir(&dir)?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let stamp = name.strip_prefix(&prefix)?.strip_suffix(&ext)?;
                Some((parse_backup_time(stamp)?, entry.path()))
            })
            .collect();
        backups.sort_by_key(|b| std::cmp::Reverse(b.0));
        let cutoff = now - Duration::from_secs(max_age_days.saturating_mul(24 * 3600));
        for (i, (stamp, path)) in backups.iter().enumerate() {
            let too_many = max_backups > 0 && i >= max_backups;
            let too_old = max_age_days > 0 && *stamp < cutoff;
            if too_many || too_old {
                fs::remove_file(path)?;
            }
        }
        Ok(())
    }
}

/// `dir/audit.log` -> (`audit-`, `.log`).
fn name_parts(path: &Path) -> (String, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (name[..i].to_owned(), name[i..].to_owned()),
        _ => (name.clone(), String::new()),
    };
    (format!("{stem}-"), ext)
}

/// `dir/audit.log` rotated at `t` -> `dir/audit-2006-01-02T15-04-05.000.log` (UTC).
fn backup_name(path: &Path, t: OffsetDateTime) -> PathBuf {
    let (prefix, ext) = name_parts(path);
    let name = format!(
        "{prefix}{:04}-{:02}-{:02}T{:02}-{:02}-{:02}.{:03}{ext}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    );
    path.with_file_name(name)
}

fn parse_backup_time(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != BACKUP_TIME_LEN
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b'-'
        || b[16] != b'-'
        || b[19] != b'.'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        let part = s.get(from..to)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let month = time::Month::try_from(u8::try_from(num(5, 7)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::try_from(num(0, 4)?).ok()?,
        month,
        u8::try_from(num(8, 10)?).ok()?,
    )
    .ok()?;
    let clock = time::Time::from_hms_milli(
        u8::try_from(num(11, 13)?).ok()?,
        u8::try_from(num(14, 16)?).ok()?,
        u8::try_from(num(17, 19)?).ok()?,
        u16::try_from(num(20, 23)?).ok()?,
    )
    .ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn list(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn rotating(path: &Path, rotation: Rotation) -> RotatingFile {
        let mut f = RotatingFile {
            path: path.to_path_buf(),
            rotation,
            file: None,
            size: 0,
            last_backup: None,
        };
        f.open_existing_or_new(0).unwrap();
        f
    }

    #[test]
    fn creates_directories_and_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/audit.log");
        let backend =
            LogBackend::open(path.to_str().unwrap(), Rotation::from_flags(0, 0, 0)).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(dir.path().join("a/b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        backend.write_line(b"{}\n").unwrap();
        backend.write_line(b"{}\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{}\n{}\n");
    }

    #[test]
    fn rotates_before_exceeding_max_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut f = rotating(
            &path,
            Rotation {
                max_bytes: 25,
                max_backups: 0,
                max_age_days: 0,
            },
        );
        for i in 0..5 {
            f.write(format!("line-{i}-xxxxxx\n").as_bytes()).unwrap(); // 14 bytes
        }
        let names = list(dir.path());
        assert_eq!(names.len(), 5, "{names:?}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "line-4-xxxxxx\n");
        for name in names.iter().filter(|n| *n != "audit.log") {
            let stamp = name
                .strip_prefix("audit-")
                .unwrap()
                .strip_suffix(".log")
                .unwrap();
            assert!(parse_backup_time(stamp).is_some(), "{name}");
            let mode = fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
        }
        // Every line survives across the backups, in order.
        let mut all = String::new();
        for name in names.iter().filter(|n| *n != "audit.log") {
            all.push_str(&fs::read_to_string(dir.path().join(name)).unwrap());
        }
        all.push_str(&fs::read_to_string(&path).unwrap());
        let want: String = (0..5).map(|i| format!("line-{i}-xxxxxx\n")).collect();
        assert_eq!(all, want);
    }

    #[test]
    fn keeps_at_most_max_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut f = rotating(
            &path,
            Rotation {
                max_bytes: 10,
                max_backups: 2,
                max_age_days: 0,
            },
        );
        for i in 0..6 {
            f.write(format!("event-{i}\n").as_bytes()).unwrap(); // 8 bytes: one per file
        }
        let names = list(dir.path());
        assert_eq!(names.len(), 3, "{names:?}");
        let backups: Vec<String> = names
            .iter()
            .filter(|n| *n != "audit.log")
            .map(|n| fs::read_to_string(dir.path().join(n)).unwrap())
            .collect();
        assert_eq!(backups, vec!["event-3\n", "event-4\n"]);
    }

    #[test]
    fn removes_backups_older_than_max_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let old = dir.path().join("audit-2001-02-03T04-05-06.789.log");
        let unrelated = dir.path().join("other-2001-02-03T04-05-06.789.log");
        fs::write(&old, "old\n").unwrap();
        fs::write(&unrelated, "keep\n").unwrap();
        let mut f = rotating(
            &path,
            Rotation {
                max_bytes: 10,
                max_backups: 0,
                max_age_days: 1,
            },
        );
        f.write(b"event-1\n").unwrap();
        f.write(b"event-2\n").unwrap();
        let names = list(dir.path());
        assert!(!names.contains(&"audit-2001-02-03T04-05-06.789.log".to_owned()));
        assert!(names.contains(&"other-2001-02-03T04-05-06.789.log".to_owned()));
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn an_existing_full_file_is_rotated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        fs::write(&path, "0123456789").unwrap();
        let mut f = rotating(
            &path,
            Rotation {
                max_bytes: 10,
                max_backups: 0,
                max_age_days: 0,
            },
        );
        f.write(b"new\n").unwrap();
        assert_eq!(list(dir.path()).len(), 2);
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
    }

    #[test]
    fn an_oversized_line_is_still_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit");
        let mut f = rotating(
            &path,
            Rotation {
                max_bytes: 4,
                max_backups: 0,
                max_age_days: 0,
            },
        );
        f.write(b"much too long\n").unwrap();
        f.write(b"again too long\n").unwrap();
        let names = list(dir.path());
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("audit-")));
    }

    #[test]
    fn backup_names_follow_lumberjack() {
        let t = time::PrimitiveDateTime::new(
            time::Date::from_calendar_date(2024, time::Month::March, 5).unwrap(),
            time::Time::from_hms_milli(7, 8, 9, 12).unwrap(),
        )
        .assume_utc();
        assert_eq!(
            backup_name(Path::new("/var/log/audit.log"), t),
            PathBuf::from("/var/log/audit-2024-03-05T07-08-09.012.log")
        );
        assert_eq!(
            backup_name(Path::new("audit"), t),
            PathBuf::from("audit-2024-03-05T07-08-09.012")
        );
        assert_eq!(parse_backup_time("2024-03-05T07-08-09.012"), Some(t));
        assert_eq!(parse_backup_time("2024-03-05T07:08:09.012"), None);
        assert_eq!(parse_backup_time("2024-13-05T07-08-09.012"), None);
    }

    #[test]
    fn unwritable_paths_fail_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, "").unwrap();
        let bad = blocker.join("audit.log");
        let e = LogBackend::open(bad.to_str().unwrap(), Rotation::from_flags(1, 0, 0)).unwrap_err();
        assert!(matches!(e, Error::OpenLog { .. }));
    }

    #[test]
    fn flag_size_zero_never_rotates() {
        assert_eq!(Rotation::from_flags(0, 0, 0).max_bytes, 0);
        assert_eq!(Rotation::from_flags(3, 1, 2).max_bytes, 3 * MEGABYTE);
    }
}
