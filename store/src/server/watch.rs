//! etcd's Watch service: many watchers per stream, catch-up from history, live events, and
//! progress notifications that are only sent when they are true.
//!
//! Each stream subscribes to MVCC notifications before it reads anything, so every revision
//! reaches a watcher either from history or live; `next_rev` per watcher drops duplicates.
//! `seen_rev` is the newest revision whose notification this stream processed: every synced
//! watcher has been sent everything up to it, which is what a progress notification promises.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use proto::etcdserverpb::{
    self as pb, watch_create_request::FilterType, watch_request::RequestUnion, watch_server::Watch,
};
use proto::mvccpb::{self, event::EventType};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::kv::in_range;
use super::member::EtcdServer;
use crate::mvcc::{MvccError, Notification, RevisionEvents};

/// How many revisions one catch-up read covers, bounding memory per step.
const CATCH_UP_SPAN: i64 = 2_000;

pub struct WatchService {
    pub server: Arc<EtcdServer>,
    /// etcd's --experimental-watch-progress-notify-interval (default 10 minutes).
    pub progress_interval: Duration,
    /// Ends every stream, so a graceful stop does not wait on open watches.
    pub shutdown: component_base::Shutdown,
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

    async fn watch(
        &self,
        req: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Ok(Response::new(self.open(req.into_inner())))
    }
}

impl WatchService {
    /// Serves one watch stream: requests in, responses out (gRPC or in-process alike).
    pub fn open<S>(&self, inbound: S) -> ReceiverStream<Result<pb::WatchResponse, Status>>
    where
        S: Stream<Item = Result<pb::WatchRequest, Status>> + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(64);
        let stream = WatchStream::new(self.server.clone(), tx, self.progress_interval);
        self.server
            .metrics
            .stream_started("etcdserverpb.Watch", "Watch");
        tokio::spawn(stream.run(inbound, self.shutdown.clone()));
        ReceiverStream::new(rx)
    }
}

struct Watcher {
    id: i64,
    key: Vec<u8>,
    range_end: Vec<u8>,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    fragment: bool,
    /// The next revision this watcher must be sent.
    next_rev: i64,
    /// Synced watchers get live notifications; unsynced ones catch up from history first.
    synced: bool,
}

impl Watcher {
    fn wants(&self, ev: &mvccpb::Event) -> bool {
        let key = ev
            .kv
            .as_ref()
            .map(|kv| kv.key.as_slice())
            .unwrap_or_default();
        if !in_range(key, &self.key, &self.range_end) {
            return false;
        }
        match EventType::try_from(ev.r#type) {
            Ok(EventType::Put) => !self.no_put,
            Ok(EventType::Delete) => !self.no_delete,
            Err(_) => false,
        }
    }

    /// This watcher's events among `revs` (those at or after `next_rev`), prev_kv as asked.
    fn select(&self, revs: &[RevisionEvents]) -> Vec<mvccpb::Event> {
        let mut out = Vec::new();
        for r in revs.iter().filter(|r| r.revision >= self.next_rev) {
            for ev in r.events.iter().filter(|e| self.wants(e)) {
                let mut ev = ev.clone();
                if !self.prev_kv {
                    ev.prev_kv = None;
                }
                out.push(ev);
            }
        }
        out
    }
}

struct WatchStream {
    server: Arc<EtcdServer>,
    tx: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
    seen_rev: i64,
    progress_pending: bool,
    /// Unsynced watchers as last added to the slow-watcher gauge.
    reported_slow: i64,
    progress_interval: Duration,
}

/// The stream ended (client gone): stop quietly.
struct Closed;

impl WatchStream {
    fn new(
        server: Arc<EtcdServer>,
        tx: mpsc::Sender<Result<pb::WatchResponse, Status>>,
        progress_interval: Duration,
    ) -> Self {
        Self {
            server,
            tx,
            watchers: BTreeMap::new(),
            next_id: 0,
            seen_rev: 0,
            progress_pending: false,
            reported_slow: 0,
            progress_interval,
        }
    }

    async fn run<S>(mut self, mut inbound: S, shutdown: component_base::Shutdown)
    where
        S: Stream<Item = Result<pb::WatchRequest, Status>> + Send + Unpin,
    {
        let mut notes = self.server.mvcc.subscribe();
        self.seen_rev = self.server.mvcc.revision();
        self.server.metrics.watch_streams.inc();
        let mut progress = tokio::time::interval(self.progress_interval);
        progress.tick().await;
        let code = loop {
            // The gauge follows this stream's real count of unsynced watchers.
            let slow = self.watchers.values().filter(|w| !w.synced).count() as i64;
            self.server
                .metrics
                .slow_watchers
                .add(slow - self.reported_slow);
            self.reported_slow = slow;
            let catching_up = slow > 0;
            let step = tokio::select! {
                biased;
                _ = shutdown.wait() => break tonic::Code::Unavailable,
                msg = inbound.next() => match msg {
                    Some(Ok(req)) => self.handle_request(req, &mut notes).await,
                    None => break tonic::Code::Ok,
                    Some(Err(s)) => break s.code(),
                },
                note = notes.recv() => self.handle_notification(note).await,
                _ = progress.tick() => self.send_periodic_progress().await,
                _ = std::future::ready(()), if catching_up => self.catch_up().await,
            };
            if step.is_err() {
                break tonic::Code::Cancelled;
            }
        };
        self.server.metrics.watchers.sub(self.watchers.len() as i64);
        self.server.metrics.slow_watchers.sub(self.reported_slow);
        self.server.metrics.watch_streams.dec();
        self.server
            .metrics
            .stream_handled("etcdserverpb.Watch", "Watch", code);
    }

    async fn send(&self, resp: pb::WatchResponse) -> Result<(), Closed> {
        self.tx.send(Ok(resp)).await.map_err(|_| Closed)
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        Some(self.server.header(revision))
    }

    async fn handle_request(
        &mut self,
        req: pb::WatchRequest,
        notes: &mut broadcast::Receiver<Notification>,
    ) -> Result<(), Closed> {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(RequestUnion::CancelRequest(c)) => {
                if self.watchers.remove(&c.watch_id).is_some() {
                    self.server.metrics.watchers.dec();
                    let header = self.header(self.server.mvcc.revision());
                    self.send(pb::WatchResponse {
                        header,
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    })
                    .await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Process what is already queued so the answer is as fresh as possible.
                loop {
                    match notes.try_recv() {
                        Ok(n) => self.handle_notification(Ok(n)).await?,
                        Err(broadcast::error::TryRecvError::Empty) => break,
                        Err(broadcast::error::TryRecvError::Closed) => break,
                        Err(broadcast::error::TryRecvError::Lagged(n)) => {
                            let lagged = broadcast::error::RecvError::Lagged(n);
                            self.handle_notification(Err(lagged)).await?;
                        }
                    }
                }
                self.progress_pending = true;
                self.maybe_send_requested_progress().await
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, c: pb::WatchCreateRequest) -> Result<(), Closed> {
        let current = self.server.mvcc.revision();
        let id = if c.watch_id != 0 {
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        if c.watch_id != 0 && self.watchers.contains_key(&id) {
            return self
                .send(pb::WatchResponse {
                    header: self.header(current),
                    watch_id: id,
                    created: true,
                    canceled: true,
                    cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
                    ..Default::default()
                })
                .await;
        }
        if c.watch_id == 0 {
            self.next_id += 1;
        }
        let filters: Vec<FilterType> = c
            .filters
            .iter()
            .filter_map(|f| FilterType::try_from(*f).ok())
            .collect();
        let start = if c.start_revision > 0 {
            c.start_revision
        } else {
            current + 1
        };
        let w = Watcher {
            id,
            key: c.key,
            range_end: c.range_end,
            prev_kv: c.prev_kv,
            no_put: filters.contains(&FilterType::Noput),
            no_delete: filters.contains(&FilterType::Nodelete),
            progress_notify: c.progress_notify,
            fragment: c.fragment,
            next_rev: start,
            // A watcher from now on is synced at once; anything older catches up first.
            synced: start > current,
        };
        self.send(pb::WatchResponse {
            header: self.header(current),
            watch_id: id,
            created: true,
            ..Default::default()
        })
        .await?;
        self.watchers.insert(id, w);
        self.server.metrics.watchers.inc();
        Ok(())
    }

    async fn handle_notification(
        &mut self,
        note: Result<Notification, broadcast::error::RecvError>,
    ) -> Result<(), Closed> {
        match note {
            Ok(Notification::Events(batch)) => {
                let Some(last) = batch.last().map(|r| r.revision) else {
                    return Ok(());
                };
                let first = batch.first().map(|r| r.revision).unwrap_or(last);
                let ids: Vec<i64> = self.watchers.keys().copied().collect();
                for id in ids {
                    let Some(w) = self.watchers.get_mut(&id) else {
                        continue;
                    };
                    if !w.synced || w.next_rev > last {
                        continue;
                    }
                    if w.next_rev < first {
                        // A gap this watcher did not see: catch up from history instead.
                        w.synced = false;
                        continue;
                    }
                    let events = w.select(&batch);
                    w.next_rev = last + 1;
                    if !events.is_empty() {
                        self.deliver(id, events, last).await?;
                    }
                }
                self.seen_rev = self.seen_rev.max(last);
                self.maybe_send_requested_progress().await
            }
            Ok(Notification::Reset) | Err(broadcast::error::RecvError::Lagged(_)) => {
                // Missed or replaced history: every watcher re-reads from where it is.
                for w in self.watchers.values_mut() {
                    w.synced = false;
                }
                self.seen_rev = self.seen_rev.max(self.server.mvcc.revision());
                Ok(())
            }
            Err(broadcast::error::RecvError::Closed) => Err(Closed),
        }
    }

    /// One bounded history read for each unsynced watcher.
    async fn catch_up(&mut self) -> Result<(), Closed> {
        let ids: Vec<i64> = self
            .watchers
            .iter()
            .filter(|(_, w)| !w.synced)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let current = self.server.mvcc.revision();
            let compact = self.server.mvcc.compact_revision();
            let Some(w) = self.watchers.get(&id) else {
                continue;
            };
            if w.next_rev > current {
                if let Some(w) = self.watchers.get_mut(&id) {
                    w.synced = true;
                }
                continue;
            }
            if compact > 0 && w.next_rev < compact {
                self.cancel_compacted(id, compact).await?;
                continue;
            }
            let to = current.min(w.next_rev.saturating_add(CATCH_UP_SPAN - 1));
            match self.server.mvcc.events(w.next_rev, to) {
                Ok(revs) => {
                    let events = w.select(&revs);
                    if let Some(w) = self.watchers.get_mut(&id) {
                        w.next_rev = to + 1;
                        if to == current {
                            w.synced = true;
                        }
                    }
                    if !events.is_empty() {
                        self.deliver(id, events, to).await?;
                    }
                }
                Err(MvccError::Compacted) => {
                    let compact = self.server.mvcc.compact_revision();
                    self.cancel_compacted(id, compact).await?;
                }
                Err(e) => {
                    tracing::error!(error = %e, "watch history read failed");
                    self.watchers.remove(&id);
                    self.server.metrics.watchers.dec();
                    self.send(pb::WatchResponse {
                        header: self.header(current),
                        watch_id: id,
                        canceled: true,
                        cancel_reason: format!("etcdserver: {e}"),
                        ..Default::default()
                    })
                    .await?;
                }
            }
        }
        self.maybe_send_requested_progress().await
    }

    async fn cancel_compacted(&mut self, id: i64, compact: i64) -> Result<(), Closed> {
        self.watchers.remove(&id);
        self.server.metrics.watchers.dec();
        self.send(pb::WatchResponse {
            header: self.header(self.server.mvcc.revision()),
            watch_id: id,
            canceled: true,
            compact_revision: compact,
            cancel_reason: "etcdserver: mvcc: required revision has been compacted".into(),
            ..Default::default()
        })
        .await
    }

    /// Sends a watcher's events, split into fragments if it asked for them and they are large.
    async fn deliver(&self, id: i64, events: Vec<mvccpb::Event>, upto: i64) -> Result<(), Closed> {
        let Some(w) = self.watchers.get(&id) else {
            return Ok(());
        };
        let header = self.header(upto);
        let limit = self.server.limits.max_request_bytes;
        if !w.fragment {
            return self
                .send(pb::WatchResponse {
                    header,
                    watch_id: id,
                    events,
                    ..Default::default()
                })
                .await;
        }
        let mut chunk: Vec<mvccpb::Event> = Vec::new();
        let mut size = 0usize;
        let mut chunks: Vec<Vec<mvccpb::Event>> = Vec::new();
        for ev in events {
            let len = ev.encoded_len();
            if !chunk.is_empty() && size + len > limit {
                chunks.push(std::mem::take(&mut chunk));
                size = 0;
            }
            size += len;
            chunk.push(ev);
        }
        chunks.push(chunk);
        let n = chunks.len();
        for (i, events) in chunks.into_iter().enumerate() {
            self.send(pb::WatchResponse {
                header,
                watch_id: id,
                events,
                fragment: i + 1 < n,
                ..Default::default()
            })
            .await?;
        }
        Ok(())
    }

    /// Answers a RequestProgress once every watcher is synced (else it waits for that).
    async fn maybe_send_requested_progress(&mut self) -> Result<(), Closed> {
        if !self.progress_pending || self.watchers.values().any(|w| !w.synced) {
            return Ok(());
        }
        self.progress_pending = false;
        // -1: not tied to one watcher; the client broadcasts it to all of them.
        self.send(pb::WatchResponse {
            header: self.header(self.seen_rev),
            watch_id: -1,
            ..Default::default()
        })
        .await
    }

    async fn send_periodic_progress(&self) -> Result<(), Closed> {
        for w in self
            .watchers
            .values()
            .filter(|w| w.synced && w.progress_notify)
        {
            // Synced watchers were sent everything up to seen_rev.
            self.send(pb::WatchResponse {
                header: self.header(self.seen_rev),
                watch_id: w.id,
                ..Default::default()
            })
            .await?;
        }
        Ok(())
    }
}
