//! Upstream's `parallelize`: per-node plugin work (Filter, Score) fans out over worker threads
//! in chunks taken from a shared counter. Small clusters stay on the calling thread, where
//! spawning would cost more than it saves.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Below this many items per worker the work stays on the calling thread.
const MIN_ITEMS_PER_WORKER: usize = 64;
/// Items a worker claims at a time.
const CHUNK: usize = 16;
/// Upstream's default `parallelism`.
const MAX_WORKERS: usize = 16;

static CONFIGURED: OnceLock<usize> = OnceLock::new();

/// Sets the configured `parallelism` (once, at startup; later calls are ignored).
pub fn set_parallelism(n: usize) {
    let _ = CONFIGURED.set(n.max(1));
}

fn workers() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        CONFIGURED.get().copied().unwrap_or(MAX_WORKERS).min(cpus)
    })
}

/// How many workers `n` items get.
pub fn workers_for(n: usize) -> usize {
    (n / MIN_ITEMS_PER_WORKER).clamp(1, workers())
}

/// `f(i)` for every `i` in `0..n`, in order, computed in parallel when `n` is large. `f` may
/// return `None` to stop: items not yet started are then skipped (their slot is `None`).
pub fn map_until<T, F>(n: usize, f: F) -> Vec<Option<T>>
where
    T: Send,
    F: Fn(usize) -> Option<T> + Sync,
{
    let workers = workers_for(n);
    if workers <= 1 {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            match f(i) {
                Some(v) => out.push(Some(v)),
                None => break,
            }
        }
        out.resize_with(n, || None);
        return out;
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let run = || {
        let mut mine = Vec::new();
        'claim: loop {
            let start = next.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= n {
                break;
            }
            for i in start..(start + CHUNK).min(n) {
                if stop.load(Ordering::Relaxed) {
                    break 'claim;
                }
                match f(i) {
                    Some(v) => mine.push((i, v)),
                    None => {
                        stop.store(true, Ordering::Relaxed);
                        break 'claim;
                    }
                }
            }
        }
        mine
    };
    let parts: Vec<Vec<(usize, T)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..workers).map(|_| s.spawn(run)).collect();
        let mut parts = vec![run()];
        for h in handles {
            // A panicking plugin panics the cycle as it would on one thread.
            parts.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        parts
    });
    let mut out: Vec<Option<T>> = Vec::with_capacity(n);
    out.resize_with(n, || None);
    for (i, v) in parts.into_iter().flatten() {
        out[i] = Some(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_their_order() {
        let out = map_until(1000, |i| Some(i * 2));
        assert_eq!(out.len(), 1000);
        assert!(out.iter().enumerate().all(|(i, v)| *v == Some(i * 2)));
    }

    #[test]
    fn stopping_skips_the_rest() {
        let seen = AtomicUsize::new(0);
        let out = map_until(10, |i| {
            seen.fetch_add(1, Ordering::Relaxed);
            (i < 3).then_some(i)
        });
        assert_eq!(out[..3], [Some(0), Some(1), Some(2)]);
        assert!(out[3..].iter().all(Option::is_none));
        assert_eq!(
            seen.load(Ordering::Relaxed),
            4,
            "small inputs run in order and stop"
        );
    }

    #[test]
    fn small_inputs_stay_on_one_thread() {
        assert_eq!(workers_for(10), 1);
        assert!(workers_for(100_000) >= 1);
    }
}
