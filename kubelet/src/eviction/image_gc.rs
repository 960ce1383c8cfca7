//! Image garbage collection as upstream's image manager: every period, when the image
//! filesystem's usage reaches `--image-gc-high-threshold` percent, unused images are removed
//! (least recently used first, then oldest detected) until usage is down to
//! `--image-gc-low-threshold`. Images younger than `--image-minimum-gc-age` (since the kubelet
//! first saw them), images of any container (running or not), pinned images and the sandbox
//! image are kept.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use component_base::Shutdown;

use crate::cri::{api, Runtime};

/// Image GC settings.
#[derive(Debug, Clone)]
pub struct Policy {
    pub high_threshold_percent: u8,
    pub low_threshold_percent: u8,
    pub minimum_age: Duration,
    /// How often usage is checked (upstream: 5m, fixed).
    pub period: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            minimum_age: Duration::from_secs(120),
            period: Duration::from_secs(300),
        }
    }
}

impl Policy {
    /// Upstream's validation messages.
    pub fn validate(&self) -> Result<(), String> {
        if self.high_threshold_percent > 100 {
            return Err(format!(
                "invalid HighThresholdPercent {}, must be in range [0-100]",
                self.high_threshold_percent
            ));
        }
        if self.low_threshold_percent > 100 {
            return Err(format!(
                "invalid LowThresholdPercent {}, must be in range [0-100]",
                self.low_threshold_percent
            ));
        }
        if self.low_threshold_percent > self.high_threshold_percent {
            return Err(format!(
                "LowThresholdPercent {} can not be higher than HighThresholdPercent {}",
                self.low_threshold_percent, self.high_threshold_percent
            ));
        }
        Ok(())
    }

    /// Bytes to free given the filesystem's capacity and available bytes; 0 below the high
    /// threshold.
    pub fn to_free(&self, capacity: u64, available: u64) -> u64 {
        if capacity == 0 {
            return 0;
        }
        let usage_percent = 100 - (available.min(capacity) * 100 / capacity);
        if usage_percent < u64::from(self.high_threshold_percent) {
            return 0;
        }
        (capacity * (100 - u64::from(self.low_threshold_percent)) / 100).saturating_sub(available)
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    first_detected: Instant,
    last_used: Instant,
}

/// The image manager's memory of when images were first seen and last used.
pub struct ImageGc {
    pub runtime: Runtime,
    pub policy: Policy,
    /// The sandbox image (`--pod-infra-container-image`), never removed.
    pub sandbox_image: String,
    records: Mutex<HashMap<String, Record>>,
}

/// Whether `image` carries the reference `name` (`x:1` matches `docker.io/x:1`).
fn names(image: &api::Image, name: &str) -> bool {
    image
        .repo_tags
        .iter()
        .chain(&image.repo_digests)
        .any(|t| t == name || t.ends_with(&format!("/{name}")))
}

/// The removal order among unused, old-enough images: least recently used first, then the
/// earliest detected.
fn order(candidates: &mut [(String, u64, Instant, Instant)]) {
    candidates.sort_by(|a, b| a.2.cmp(&b.2).then(a.3.cmp(&b.3)));
}

impl ImageGc {
    pub fn new(runtime: Runtime, policy: Policy, sandbox_image: String) -> Self {
        ImageGc {
            runtime,
            policy,
            sandbox_image,
            records: Mutex::new(HashMap::new()),
        }
    }

    /// Lists images and containers, updates the records; returns the images and the IDs of
    /// those in use.
    async fn detect(&self) -> Option<(Vec<api::Image>, HashSet<String>)> {
        let images = self.runtime.list_images().await.ok()?;
        let containers = self.runtime.list_containers(None).await.ok()?;
        let now = Instant::now();
        let mut used = HashSet::new();
        for image in &images {
            let in_use = containers.iter().any(|c| {
                c.image_ref == image.id
                    || c.image
                        .as_ref()
                        .is_some_and(|s| s.image == image.id || names(image, &s.image))
            });
            if in_use {
                used.insert(image.id.clone());
            }
        }
        let mut records = self.records.lock().ok()?;
        records.retain(|id, _| images.iter().any(|i| &i.id == id));
        for image in &images {
            let r = records.entry(image.id.clone()).or_insert(Record {
                first_detected: now,
                last_used: now,
            });
            if used.contains(&image.id) {
                r.last_used = now;
            }
        }
        Some((images, used))
    }

    /// Removes unused images until `bytes` are freed (or none is left); returns bytes freed.
    pub async fn delete_unused(&self, bytes: u64) -> u64 {
        let Some((images, used)) = self.detect().await else {
            return 0;
        };
        let now = Instant::now();
        let mut candidates: Vec<(String, u64, Instant, Instant)> = {
            let Ok(records) = self.records.lock() else {
                return 0;
            };
            images
                .iter()
                .filter(|i| !used.contains(&i.id))
                .filter(|i| !i.pinned && !names(i, &self.sandbox_image))
                .filter_map(|i| {
                    let r = records.get(&i.id)?;
                    (now.duration_since(r.first_detected) >= self.policy.minimum_age)
                        .then(|| (i.id.clone(), i.size, r.last_used, r.first_detected))
                })
                .collect()
        };
        order(&mut candidates);
        let mut freed = 0;
        for (id, size, ..) in candidates {
            if freed >= bytes {
                break;
            }
            match self.runtime.remove_image(&id).await {
                Ok(()) => {
                    tracing::info!(image = %id, size, "removed unused image");
                    freed += size;
                    if let Ok(mut r) = self.records.lock() {
                        r.remove(&id);
                    }
                }
                Err(e) => tracing::warn!(image = %id, error = %e, "remove unused image"),
            }
        }
        freed
    }

    /// One collection: frees space when usage reached the high threshold.
    pub async fn collect(&self) {
        let mount = self
            .runtime
            .image_fs_info()
            .await
            .ok()
            .and_then(|fs| fs.into_iter().next())
            .map(|(m, _)| m)
            .filter(|m| !m.is_empty());
        let Some(mount) = mount else {
            // Still refresh the records, so that ages are known once the runtime answers.
            let _ = self.detect().await;
            return;
        };
        let Ok(s) = rustix::fs::statvfs(mount.as_str()) else {
            let _ = self.detect().await;
            return;
        };
        let frsize = s.f_frsize.max(1);
        let (capacity, available) = (s.f_blocks * frsize, s.f_bavail * frsize);
        let to_free = self.policy.to_free(capacity, available);
        if to_free == 0 {
            let _ = self.detect().await;
            return;
        }
        let freed = self.delete_unused(to_free).await;
        if freed < to_free {
            tracing::info!(
                to_free,
                freed,
                "image garbage collection could not free enough space"
            );
        }
    }

    /// Collects every period until `shutdown`.
    pub async fn run(self: std::sync::Arc<Self>, shutdown: Shutdown) {
        loop {
            self.collect().await;
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(self.policy.period) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_above_the_high_threshold_frees_down_to_the_low_one() {
        let p = Policy::default();
        assert_eq!(p.to_free(100, 20), 0, "80% used is below 85%");
        assert_eq!(p.to_free(100, 10), 10, "90% used: free down to 80%");
        assert_eq!(p.to_free(0, 0), 0);
        let all = Policy {
            high_threshold_percent: 1,
            low_threshold_percent: 0,
            ..Policy::default()
        };
        assert_eq!(all.to_free(1000, 500), 500);
    }

    #[test]
    fn thresholds_are_validated_like_upstream() {
        let bad = Policy {
            high_threshold_percent: 50,
            low_threshold_percent: 60,
            ..Policy::default()
        };
        assert_eq!(
            bad.validate(),
            Err("LowThresholdPercent 60 can not be higher than HighThresholdPercent 50".into())
        );
        assert!(Policy::default().validate().is_ok());
    }

    #[test]
    fn least_recently_used_images_go_first() {
        let t0 = Instant::now();
        let t = |s| t0 + Duration::from_secs(s);
        let mut c = vec![
            ("recent".to_string(), 1, t(30), t(0)),
            ("old".to_string(), 1, t(10), t(5)),
            ("old-earlier".to_string(), 1, t(10), t(1)),
        ];
        order(&mut c);
        let ids: Vec<&str> = c.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(ids, ["old-earlier", "old", "recent"]);
    }

    #[test]
    fn images_match_short_and_normalized_names() {
        let image = api::Image {
            id: "sha256:1".into(),
            repo_tags: vec!["docker.io/kube-test/pause:1.0".into()],
            ..Default::default()
        };
        assert!(names(&image, "kube-test/pause:1.0"));
        assert!(names(&image, "docker.io/kube-test/pause:1.0"));
        assert!(!names(&image, "pause:1.0x"));
    }
}
