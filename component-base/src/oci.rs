//! Writes OCI image archives (an `oci-layout` tree in a tar) that `ctr images import` loads.
//!
//! There is no registry on the machines the project runs on: images (the pause image, test
//! images, the project's own binaries for static pods) are built here from files on the host and
//! imported into the runtime. Output is deterministic: entries are sorted, owned by root and
//! dated at the epoch, so the same inputs always give the same digests.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("path {0:?} is not valid in a layer (empty, absolute after trimming, or with ..)")]
    InvalidPath(String),
    #[error("path {0:?} is longer than the 255 bytes a ustar header can hold")]
    PathTooLong(String),
    #[error("link target {0:?} is longer than the 100 bytes a ustar header can hold")]
    LinkTooLong(String),
    #[error("read {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("write the image archive")]
    Write(#[source] io::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
}

/// One uncompressed filesystem layer; paths are relative to the image root (`bin/sh`).
#[derive(Debug, Clone, Default)]
pub struct Layer {
    entries: BTreeMap<String, Entry>,
}

impl Layer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory (parents of files are added implicitly with mode 0755).
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<&mut Self, OciError> {
        let path = clean(path)?;
        self.add_parents(&path);
        self.entries.insert(path, Entry::Dir { mode });
        Ok(self)
    }

    /// Adds a regular file with `data`.
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<&mut Self, OciError> {
        let path = clean(path)?;
        self.add_parents(&path);
        self.entries.insert(path, Entry::File { mode, data });
        Ok(self)
    }

    /// Adds a regular file read from `source` on the host, keeping its permission bits.
    pub fn host_file(&mut self, path: &str, source: &Path) -> Result<&mut Self, OciError> {
        let read_error = |source_err| OciError::Read {
            path: source.display().to_string(),
            source: source_err,
        };
        let data = std::fs::read(source).map_err(read_error)?;
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(source)
                .map_err(read_error)?
                .permissions()
                .mode()
                & 0o7777
        };
        self.file(path, mode, data)
    }

    /// Adds a symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self, OciError> {
        let path = clean(path)?;
        if target.len() > 100 {
            return Err(OciError::LinkTooLong(target.to_string()));
        }
        self.add_parents(&path);
        self.entries.insert(
            path,
            Entry::Symlink {
                target: target.to_string(),
            },
        );
        Ok(self)
    }

    fn add_parents(&mut self, path: &str) {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            self.entries
                .entry(path[..end].to_string())
                .or_insert(Entry::Dir { mode: 0o755 });
            end += 1;
        }
    }

    /// The layer as an uncompressed tar.
    pub fn to_tar(&self) -> Result<Vec<u8>, OciError> {
        let mut tar = TarWriter::default();
        for (path, entry) in &self.entries {
            match entry {
                Entry::Dir { mode } => tar.append(&format!("{path}/"), *mode, b'5', "", &[])?,
                Entry::File { mode, data } => tar.append(path, *mode, b'0', "", data)?,
                Entry::Symlink { target } => tar.append(path, 0o777, b'2', target, &[])?,
            }
        }
        Ok(tar.finish())
    }
}

/// The runtime configuration of an image (the `config` object of the OCI image config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub stop_signal: Option<String>,
}

/// A single-platform (linux/amd64) image with a reference name such as
/// `registry.k8s.io/pause:3.10`.
#[derive(Debug, Clone)]
pub struct Image {
    pub name: String,
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
}

/// Digest and size of a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub digest: String,
    pub size: usize,
}

fn describe(data: &[u8]) -> Descriptor {
    Descriptor {
        digest: format!("sha256:{:x}", Sha256::digest(data)),
        size: data.len(),
    }
}

impl Image {
    /// Writes the image as an OCI image-layout tar archive to `out`; returns the manifest's
    /// descriptor (its digest is what `ctr images ls` shows).
    pub fn write_archive(&self, out: impl Write) -> Result<Descriptor, OciError> {
        let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut layer_descs = Vec::new();
        for layer in &self.layers {
            let tar = layer.to_tar()?;
            let desc = describe(&tar);
            blobs.insert(desc.digest.clone(), tar);
            layer_descs.push(desc);
        }
        let mut config = serde_json::Map::new();
        let c = &self.config;
        if !c.entrypoint.is_empty() {
            config.insert("Entrypoint".into(), json!(c.entrypoint));
        }
        if !c.cmd.is_empty() {
            config.insert("Cmd".into(), json!(c.cmd));
        }
        if !c.env.is_empty() {
            config.insert("Env".into(), json!(c.env));
        }
        if let Some(dir) = &c.working_dir {
            config.insert("WorkingDir".into(), json!(dir));
        }
        if let Some(signal) = &c.stop_signal {
            config.insert("StopSignal".into(), json!(signal));
        }
        let config_json = json!({
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": config,
            "rootfs": {
                "type": "layers",
                "diff_ids": layer_descs.iter().map(|d| d.digest.clone()).collect::<Vec<_>>(),
            },
        });
        let config_bytes = to_bytes(&config_json);
        let config_desc = describe(&config_bytes);
        blobs.insert(config_desc.digest.clone(), config_bytes);

        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_desc.digest,
                "size": config_desc.size,
            },
            "layers": layer_descs.iter().map(|d| json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": d.digest,
                "size": d.size,
            })).collect::<Vec<_>>(),
        });
        let manifest_bytes = to_bytes(&manifest);
        let manifest_desc = describe(&manifest_bytes);
        blobs.insert(manifest_desc.digest.clone(), manifest_bytes);

        let tag = self
            .name
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .map_or("latest", |(_, tag)| tag);
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_desc.digest,
                "size": manifest_desc.size,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": self.name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }],
        });

        let mut archive = TarWriter::default();
        archive.append("blobs/", 0o755, b'5', "", &[])?;
        archive.append("blobs/sha256/", 0o755, b'5', "", &[])?;
        for (digest, data) in &blobs {
            let hex = digest.trim_start_matches("sha256:");
            archive.append(&format!("blobs/sha256/{hex}"), 0o644, b'0', "", data)?;
        }
        archive.append("index.json", 0o644, b'0', "", &to_bytes(&index))?;
        archive.append(
            "oci-layout",
            0o644,
            b'0',
            "",
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let mut out = out;
        out.write_all(&archive.finish()).map_err(OciError::Write)?;
        out.flush().map_err(OciError::Write)?;
        Ok(manifest_desc)
    }
}

fn to_bytes(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("a serde_json::Value always serializes")
}

/// Normalizes a layer path: no leading `/` or `./`, no trailing `/`, no `..` or empty parts.
fn clean(path: &str) -> Result<String, OciError> {
    let trimmed = path.trim_start_matches("./").trim_matches('/');
    let invalid = trimmed.is_empty()
        || trimmed
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if invalid {
        return Err(OciError::InvalidPath(path.to_string()));
    }
    Ok(trimmed.to_string())
}

/// A minimal POSIX ustar writer: regular files, directories and symlinks, uid/gid 0, mtime 0.
#[derive(Default)]
struct TarWriter {
    buf: Vec<u8>,
}

impl TarWriter {
    fn append(
        &mut self,
        path: &str,
        mode: u32,
        kind: u8,
        link: &str,
        data: &[u8],
    ) -> Result<(), OciError> {
        let mut header = [0u8; 512];
        let (prefix, name) = split_ustar_path(path)?;
        header[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut header[100..108], u64::from(mode));
        octal(&mut header[108..116], 0);
        octal(&mut header[116..124], 0);
        octal(&mut header[124..136], data.len() as u64);
        octal(&mut header[136..148], 0);
        header[148..156].fill(b' ');
        header[156] = kind;
        header[157..157 + link.len()].copy_from_slice(link.as_bytes());
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[265..269].copy_from_slice(b"root");
        header[297..301].copy_from_slice(b"root");
        header[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
        let sum: u64 = header.iter().map(|b| u64::from(*b)).sum();
        let field = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(field.as_bytes());
        self.buf.extend_from_slice(&header);
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.extend(std::iter::repeat_n(0u8, 1024));
        self.buf
    }
}

/// Splits a path into ustar's 155-byte prefix and 100-byte name at a `/`.
fn split_ustar_path(path: &str) -> Result<(&str, &str), OciError> {
    if path.len() <= 100 {
        return Ok(("", path));
    }
    let too_long = || OciError::PathTooLong(path.to_string());
    if path.len() > 256 {
        return Err(too_long());
    }
    // The name part may end in '/' (directories), so look for the split before the last byte.
    let search = &path[..path.len() - 1];
    let mut splits = search.match_indices('/').map(|(i, _)| i);
    splits
        .find(|&i| i <= 155 && path.len() - i - 1 <= 100)
        .map(|i| (&path[..i], &path[i + 1..]))
        .ok_or_else(too_long)
}

/// Writes `value` as zero-padded octal followed by NUL into `field`.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busybox_like() -> Image {
        let mut layer = Layer::new();
        layer
            .file("bin/busybox", 0o755, b"#!fake".to_vec())
            .expect("file")
            .symlink("bin/sh", "busybox")
            .expect("symlink");
        Image {
            name: "kube-test/busybox:1.0".into(),
            config: ImageConfig {
                entrypoint: vec!["/bin/sh".into()],
                ..ImageConfig::default()
            },
            layers: vec![layer],
        }
    }

    /// Lists (path, typeflag, size) of a tar by walking its headers.
    fn entries(tar: &[u8]) -> Vec<(String, u8, usize)> {
        let mut out = Vec::new();
        let mut off = 0;
        while off + 512 <= tar.len() && tar[off] != 0 {
            let h = &tar[off..off + 512];
            let cstr = |b: &[u8]| {
                String::from_utf8_lossy(&b[..b.iter().position(|c| *c == 0).unwrap_or(b.len())])
                    .into_owned()
            };
            let name = cstr(&h[..100]);
            let prefix = cstr(&h[345..500]);
            let size = usize::from_str_radix(cstr(&h[124..135]).trim(), 8).expect("octal size");
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            // The checksum covers the header with the checksum field read as spaces.
            let mut copy = h.to_vec();
            copy[148..156].fill(b' ');
            let sum: u64 = copy.iter().map(|b| u64::from(*b)).sum();
            let stored = u64::from_str_radix(cstr(&h[148..154]).trim(), 8).expect("octal sum");
            assert_eq!(sum, stored, "checksum of {path}");
            out.push((path, h[156], size));
            off += 512 + size.div_ceil(512) * 512;
        }
        out
    }

    #[test]
    fn layer_lists_parents_first_and_sorted() {
        let mut layer = Layer::new();
        layer
            .file("usr/bin/tool", 0o755, vec![1, 2, 3])
            .expect("file")
            .symlink("/bin/sh", "busybox")
            .expect("symlink");
        let names: Vec<_> = entries(&layer.to_tar().expect("tar"))
            .into_iter()
            .map(|(p, k, s)| (p, k as char, s))
            .collect();
        assert_eq!(
            names,
            vec![
                ("bin/".to_string(), '5', 0),
                ("bin/sh".to_string(), '2', 0),
                ("usr/".to_string(), '5', 0),
                ("usr/bin/".to_string(), '5', 0),
                ("usr/bin/tool".to_string(), '0', 3),
            ]
        );
    }

    #[test]
    fn archive_is_deterministic_and_indexes_the_image_name() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let da = busybox_like().write_archive(&mut a).expect("archive");
        let db = busybox_like().write_archive(&mut b).expect("archive");
        assert_eq!(a, b);
        assert_eq!(da, db);
        let list = entries(&a);
        let paths: Vec<&str> = list.iter().map(|(p, _, _)| p.as_str()).collect();
        assert!(paths.contains(&"index.json"));
        assert!(paths.contains(&"oci-layout"));
        let manifest_path = format!("blobs/sha256/{}", da.digest.trim_start_matches("sha256:"));
        assert!(paths.contains(&manifest_path.as_str()));
        // Three blobs: layer, config, manifest.
        assert_eq!(
            paths
                .iter()
                .filter(|p| p.starts_with("blobs/sha256/") && p.len() > 13)
                .count(),
            3
        );
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains(r#""io.containerd.image.name":"kube-test/busybox:1.0""#));
        assert!(text.contains(r#""org.opencontainers.image.ref.name":"1.0""#));
    }

    #[test]
    fn long_paths_use_the_ustar_prefix_and_bad_paths_are_rejected() {
        let long = format!("{}/{}/{}", "d".repeat(60), "e".repeat(60), "f".repeat(90));
        let mut layer = Layer::new();
        layer.file(&long, 0o644, vec![]).expect("long path fits");
        let list = entries(&layer.to_tar().expect("tar"));
        assert!(list.iter().any(|(p, _, _)| p == &long));
        assert!(matches!(
            Layer::new().file("a/../b", 0o644, vec![]),
            Err(OciError::InvalidPath(_))
        ));
        let mut too_long = Layer::new();
        too_long
            .file(&"x".repeat(300), 0o644, vec![])
            .expect("checked when written");
        assert!(matches!(too_long.to_tar(), Err(OciError::PathTooLong(_))));
    }
}
