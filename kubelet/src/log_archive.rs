//! The archive of deleted pods' logs (beyond upstream): when a pod is torn down, the last
//! instance of each of its containers' log (CRI format, its last [`MAX_PER_CONTAINER`] bytes)
//! is kept under `<root-dir>/pod-log-archive/<namespace>_<pod>_<uid>/<container>.log`. The
//! archive is bounded: entries older than [`TTL`] go, then the oldest ones until the archive
//! holds at most [`MAX_TOTAL`] bytes. `/containerLogs` answers from it for pods the kubelet no
//! longer runs, so `nodes/<node>/proxy/containerLogs/...` and the apiserver's pods/log for a
//! deleted pod still return the logs for a while.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// Kept per container (the tail of its last log).
pub const MAX_PER_CONTAINER: u64 = 1024 * 1024;
/// Kept in all.
pub const MAX_TOTAL: u64 = 64 * 1024 * 1024;
/// How long an entry is kept.
pub const TTL: Duration = Duration::from_secs(3600);

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Sets the archive's directory (`<root-dir>/pod-log-archive`); once per process.
pub fn init(root_dir: &Path) {
    let _ = DIR.set(root_dir.join("pod-log-archive"));
}

fn dir() -> Option<&'static PathBuf> {
    DIR.get()
}

/// The newest `<attempt>.log` in a container's log directory.
fn latest_log(container_dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(container_dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let attempt: u64 = name.strip_suffix(".log")?.parse().ok()?;
            Some((attempt, e.path()))
        })
        .max_by_key(|(attempt, _)| *attempt)
        .map(|(_, p)| p)
}

/// Copies the tail of `from` (whole lines) into `to`.
fn copy_tail(from: &Path, to: &Path) -> std::io::Result<()> {
    let data = std::fs::read(from)?;
    let start = data.len().saturating_sub(MAX_PER_CONTAINER as usize);
    let mut tail = &data[start..];
    if start > 0 {
        // Drop the partial first line.
        if let Some(i) = tail.iter().position(|b| *b == b'\n') {
            tail = &tail[i + 1..];
        }
    }
    std::fs::write(to, tail)
}

/// Archives the logs of the pod whose log directory is `pod_log_dir`
/// (`<podLogsDir>/<namespace>_<pod>_<uid>`), then prunes the archive.
pub fn archive_pod(pod_log_dir: &Path) {
    let (Some(archive), Some(entry)) = (dir(), pod_log_dir.file_name()) else {
        return;
    };
    let Ok(containers) = std::fs::read_dir(pod_log_dir) else {
        return;
    };
    let target = archive.join(entry);
    let mut kept = 0;
    for c in containers.filter_map(|e| e.ok()) {
        let Some(log) = latest_log(&c.path()) else {
            continue;
        };
        if kept == 0 {
            if let Err(e) = std::fs::create_dir_all(&target) {
                tracing::warn!(dir = %target.display(), error = %e, "create log archive entry");
                return;
            }
        }
        let to = target.join(format!("{}.log", c.file_name().to_string_lossy()));
        match copy_tail(&log, &to) {
            Ok(()) => kept += 1,
            Err(e) => tracing::debug!(log = %log.display(), error = %e, "archive container log"),
        }
    }
    if kept > 0 {
        tracing::info!(entry = %target.display(), containers = kept, "archived the deleted pod's logs");
    }
    prune(archive, SystemTime::now());
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Removes entries older than [`TTL`], then the oldest until at most [`MAX_TOTAL`] remain.
pub fn prune(archive: &Path, now: SystemTime) {
    prune_to(archive, now, TTL, MAX_TOTAL);
}

fn prune_to(archive: &Path, now: SystemTime, ttl: Duration, max_total: u64) {
    let mut entries: Vec<(SystemTime, u64, PathBuf)> = std::fs::read_dir(archive)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let modified = e.metadata().ok()?.modified().ok()?;
            Some((modified, dir_size(&e.path()), e.path()))
        })
        .collect();
    entries.sort();
    let mut total: u64 = entries.iter().map(|e| e.1).sum();
    for (modified, size, path) in entries {
        let expired = now.duration_since(modified).unwrap_or_default() > ttl;
        if expired || total > max_total {
            let _ = std::fs::remove_dir_all(&path);
            total = total.saturating_sub(size);
        }
    }
}

/// The archived log of `container` of the newest archived pod `namespace/pod`; with an empty
/// `container`, the only one archived. Errors are the messages /containerLogs answers.
pub fn find(namespace: &str, pod: &str, container: &str) -> Result<PathBuf, String> {
    let not_found = || format!("pod {pod:?} does not exist");
    let archive = dir().ok_or_else(not_found)?;
    prune(archive, SystemTime::now());
    let prefix = format!("{namespace}_{pod}_");
    let entry = std::fs::read_dir(archive)
        .map_err(|_| not_found())?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix(&prefix)
                .is_some_and(|uid| !uid.contains('_'))
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, p)| p)
        .ok_or_else(not_found)?;
    if !container.is_empty() {
        let path = entry.join(format!("{container}.log"));
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("container {container:?} not found in pod {pod:?}"))
        };
    }
    let mut names: Vec<String> = std::fs::read_dir(&entry)
        .map_err(|_| not_found())?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".log")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    match names.as_slice() {
        [one] => Ok(entry.join(format!("{one}.log"))),
        _ => Err(format!(
            "a container name must be specified for pod {pod}, choose one of: [{}]",
            names.join(" ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_instances_tail_is_archived_in_whole_lines() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let c = tmp.path().join("c");
        std::fs::create_dir_all(&c).expect("dir");
        std::fs::write(c.join("0.log"), "old\n").expect("write");
        std::fs::write(c.join("1.log"), "new\n").expect("write");
        assert_eq!(latest_log(&c), Some(c.join("1.log")));
        let big: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(c.join("2.log"), &big).expect("write");
        let out = tmp.path().join("out.log");
        copy_tail(&c.join("2.log"), &out).expect("copy");
        let kept = std::fs::read_to_string(&out).expect("read");
        assert!(kept.len() as u64 <= MAX_PER_CONTAINER);
        assert!(kept.starts_with("line ") && kept.ends_with("line 199999\n"));
    }

    #[test]
    fn pruning_drops_expired_then_oldest_entries_over_the_cap() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            let d = tmp.path().join(name);
            std::fs::create_dir_all(&d).expect("dir");
            std::fs::write(d.join("x.log"), vec![b'x'; 100]).expect("write");
            std::thread::sleep(Duration::from_millis(20 * (i as u64 + 1)));
        }
        prune_to(tmp.path(), SystemTime::now(), TTL, 250);
        let mut left: Vec<String> = std::fs::read_dir(tmp.path())
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["b", "c"], "the oldest goes first");
        prune_to(
            tmp.path(),
            SystemTime::now() + Duration::from_secs(7200),
            TTL,
            MAX_TOTAL,
        );
        assert_eq!(std::fs::read_dir(tmp.path()).expect("read").count(), 0);
    }
}
