//! CrashLoopBackOff: per-container restart delays, 10 s doubling to 5 min.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);

/// Restart delays keyed by container name; an entry untouched for twice the maximum (10 min,
/// i.e. the container ran that long) starts over at the initial delay.
#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<String, (Duration, SystemTime)>,
}

impl Backoff {
    /// How much longer `key` must wait when its last instance finished at `finished_at`;
    /// `None` when it may be restarted now.
    pub fn remaining(
        &self,
        key: &str,
        finished_at: SystemTime,
        now: SystemTime,
    ) -> Option<Duration> {
        let (delay, _) = self.entries.get(key)?;
        let since = now.duration_since(finished_at).unwrap_or_default();
        (since < *delay).then(|| *delay - since)
    }

    /// The current delay of `key` (for the BackOff message), if any.
    pub fn delay(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|(d, _)| *d)
    }

    /// Records a restart of `key` at `now`: the next crash waits twice as long (up to [`MAX`]).
    pub fn next(&mut self, key: &str, now: SystemTime) {
        let entry = self.entries.get(key).copied();
        let delay = match entry {
            Some((delay, last)) if now.duration_since(last).unwrap_or_default() <= 2 * MAX => {
                (delay * 2).min(MAX)
            }
            _ => INITIAL,
        };
        self.entries.insert(key.to_string(), (delay, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_the_cap_and_reset_after_a_long_run() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut b = Backoff::default();
        assert_eq!(b.remaining("c", t0, t0), None, "first restart is immediate");
        b.next("c", t0);
        assert_eq!(b.delay("c"), Some(INITIAL));
        assert_eq!(
            b.remaining("c", t0, t0 + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(b.remaining("c", t0, t0 + Duration::from_secs(10)), None);
        let mut now = t0;
        let mut seen = Vec::new();
        for _ in 0..8 {
            now += Duration::from_secs(1);
            b.next("c", now);
            seen.push(b.delay("c").expect("entry").as_secs());
        }
        assert_eq!(seen, vec![20, 40, 80, 160, 300, 300, 300, 300]);
        b.next("c", now + 2 * MAX + Duration::from_secs(1));
        assert_eq!(b.delay("c"), Some(INITIAL));
    }
}
