//! Lease expiry: the leader keeps each lease's deadline in memory and revokes expired leases
//! through Raft; a new leader restarts every lease's clock with its full TTL (as etcd does).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::etcdserverpb as pb;
use proto::storepb::{internal_raft_request::Request as Op, InternalRaftRequest};
use tokio::time::Instant;

use super::member::EtcdServer;

/// etcd's MaxLeaseTTL.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

#[derive(Default)]
struct State {
    /// The term this member led when it last rebuilt the deadlines.
    led_term: Option<u64>,
    deadlines: HashMap<i64, Instant>,
    revoking: HashSet<i64>,
}

/// The member's lessor.
pub struct Lessor {
    state: Mutex<State>,
    /// Leases granted shorter than this get it (etcd: 1.5 election timeouts, rounded up).
    pub min_ttl: i64,
}

impl Lessor {
    pub fn new(election_timeout: Duration) -> Self {
        let min = (election_timeout.as_secs_f64() * 1.5).ceil() as i64;
        Self {
            state: Mutex::new(State::default()),
            min_ttl: min.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of deadlines; the map
        // is still usable (worst case a lease lives one TTL longer).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a lease the leader just granted.
    pub fn granted(&self, id: i64, ttl: i64) {
        self.lock().deadlines.insert(id, Instant::now() + secs(ttl));
    }

    /// Forgets a revoked lease.
    pub fn revoked(&self, id: i64) {
        let mut st = self.lock();
        st.deadlines.remove(&id);
        st.revoking.remove(&id);
    }

    /// Renews a lease on the leader; `Ok(0)` for an unknown lease, as etcd answers.
    pub fn renew(&self, server: &EtcdServer, id: i64) -> i64 {
        match server.mvcc.lease_ttl(id) {
            Some(ttl) => {
                let mut st = self.lock();
                if st.revoking.contains(&id) {
                    return 0;
                }
                st.deadlines.insert(id, Instant::now() + secs(ttl));
                ttl
            }
            None => 0,
        }
    }

    /// Seconds left on the leader's clock, or the granted TTL if the clock is not running here.
    pub fn remaining(&self, id: i64, granted: i64) -> i64 {
        match self.lock().deadlines.get(&id) {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                left.as_secs_f64().ceil() as i64
            }
            None => granted,
        }
    }

    /// The expiry loop: runs on every member, acts only while it leads.
    pub async fn run(server: Arc<EtcdServer>, shutdown: component_base::shutdown::Shutdown) {
        // etcd's lessor looks for expired leases every 500 ms.
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut last_full_scan = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => {}
            }
            if !server.is_leader() {
                let mut st = server.lessor.lock();
                st.led_term = None;
                st.deadlines.clear();
                st.revoking.clear();
                continue;
            }
            let term = server.term();
            let now = Instant::now();
            let rescan = {
                let st = server.lessor.lock();
                st.led_term != Some(term)
                    || now.duration_since(last_full_scan) > Duration::from_secs(5)
            };
            if rescan {
                // Catch leases granted through another leader or applied after we took over.
                let leases = server.mvcc.lease_ttls();
                let mut st = server.lessor.lock();
                if st.led_term != Some(term) {
                    st.deadlines.clear();
                    st.revoking.clear();
                    st.led_term = Some(term);
                }
                let live: HashSet<i64> = leases.iter().map(|(id, _)| *id).collect();
                st.deadlines.retain(|id, _| live.contains(id));
                for (id, ttl) in leases {
                    st.deadlines.entry(id).or_insert(now + secs(ttl));
                }
                last_full_scan = now;
            }
            let expired: Vec<i64> = {
                let mut st = server.lessor.lock();
                let ids: Vec<i64> = st
                    .deadlines
                    .iter()
                    .filter(|(id, d)| **d <= now && !st.revoking.contains(id))
                    .map(|(id, _)| *id)
                    .collect();
                st.revoking.extend(ids.iter().copied());
                ids
            };
            for id in expired {
                let server = server.clone();
                tokio::spawn(async move {
                    let req = InternalRaftRequest {
                        request: Some(Op::LeaseRevoke(pb::LeaseRevokeRequest { id })),
                    };
                    match server.propose(req).await {
                        Ok(_) => server.lessor.revoked(id),
                        Err(e) if e.code() == tonic::Code::NotFound => server.lessor.revoked(id),
                        Err(e) => {
                            tracing::warn!(lease = id, error = %e, "revoking expired lease failed; will retry");
                            server.lessor.lock().revoking.remove(&id);
                        }
                    }
                });
            }
        }
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}
