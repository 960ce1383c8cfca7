//! Upstream's atomic writer: a volume's files live in a timestamped `..<time>` directory that the
//! `..data` symlink points to, swapped in one rename, with top-level entries linked through it,
//! so a reader never sees half of an update.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::chrono::Utc;

const DATA_LINK: &str = "..data";
const DATA_TMP_LINK: &str = "..data_tmp";

/// One file of a volume's payload: content and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Relative paths (no `..`, not absolute, not starting with `..`) to files.
pub type Payload = BTreeMap<String, FileProjection>;

/// Whether `path` is a relative path that stays inside the volume.
pub fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with("..")
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn files_under(root: &Path, dir: &Path, out: &mut BTreeMap<String, FileProjection>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            files_under(root, &path, out);
        } else if let (Ok(rel), Ok(data)) = (path.strip_prefix(root), fs::read(&path)) {
            out.insert(
                rel.to_string_lossy().into_owned(),
                FileProjection {
                    data,
                    mode: meta.permissions().mode() & 0o7777,
                },
            );
        }
    }
}

/// Makes `dir` hold exactly `payload`; returns whether anything changed.
pub fn write(dir: &Path, payload: &Payload) -> io::Result<bool> {
    if let Some(bad) = payload.keys().find(|p| !valid_path(p)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid path {bad:?}: must be relative and may not contain '..'"),
        ));
    }
    fs::create_dir_all(dir)?;
    let old_target: Option<PathBuf> = fs::read_link(dir.join(DATA_LINK)).ok();
    if let Some(target) = &old_target {
        let mut current = BTreeMap::new();
        let old_dir = dir.join(target);
        files_under(&old_dir, &old_dir, &mut current);
        if &current == payload {
            return Ok(false);
        }
    }

    let ts = format!("..{}", Utc::now().format("%Y_%m_%d_%H_%M_%S%.9f"));
    let ts_dir = dir.join(&ts);
    fs::create_dir_all(&ts_dir)?;
    fs::set_permissions(&ts_dir, fs::Permissions::from_mode(0o755))?;
    for (rel, file) in payload {
        let path = ts_dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, &file.data)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(file.mode))?;
    }
    let tmp = dir.join(DATA_TMP_LINK);
    let _ = fs::remove_file(&tmp);
    symlink(&ts, &tmp)?;
    fs::rename(&tmp, dir.join(DATA_LINK))?;

    let top: std::collections::BTreeSet<String> = payload
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for name in &top {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_LINK).join(name), &link)?;
        }
    }
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !top.contains(&name) {
            let _ = fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old_target {
        if old != Path::new(&ts) {
            let _ = fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(s: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: s.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn writes_through_the_data_link_and_swaps_updates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("vol");
        let mut payload: Payload = [
            ("a".to_string(), file("one", 0o644)),
            ("sub/b".to_string(), file("two", 0o400)),
        ]
        .into();
        assert!(write(&root, &payload).expect("write"));
        assert_eq!(fs::read_to_string(root.join("a")).expect("a"), "one");
        assert_eq!(fs::read_to_string(root.join("sub/b")).expect("b"), "two");
        let mode = fs::metadata(root.join("sub/b"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        assert!(fs::symlink_metadata(root.join("a"))
            .expect("a")
            .file_type()
            .is_symlink());
        assert!(!write(&root, &payload).expect("rewrite"), "no change");

        payload.remove("sub/b");
        payload.insert("a".into(), file("uno", 0o644));
        assert!(write(&root, &payload).expect("update"));
        assert_eq!(fs::read_to_string(root.join("a")).expect("a"), "uno");
        assert!(
            fs::symlink_metadata(root.join("sub")).is_err(),
            "sub removed"
        );
        let timestamped = fs::read_dir(&root)
            .expect("ls")
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("..2")
            })
            .count();
        assert_eq!(timestamped, 1, "the old version is gone");
    }

    #[test]
    fn paths_escaping_the_volume_are_rejected() {
        for bad in ["../x", "/etc/passwd", "a/../../b", "..data", ""] {
            assert!(!valid_path(bad), "{bad}");
        }
        assert!(valid_path("a/b.txt"));
    }
}
