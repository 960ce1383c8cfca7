//! etcd's KV service: validation as etcd does it, reads served locally, writes through Raft.

use std::collections::BTreeSet;
use std::sync::Arc;

use proto::etcdserverpb::{self as pb, kv_server::Kv, request_op::Request as ReqOp};
use proto::storepb::{
    internal_raft_request::Request as Op, internal_raft_response::Response as Resp,
};
use tonic::{Request, Response, Status};

use super::errors;
use super::member::EtcdServer;

pub struct KvService {
    pub server: Arc<EtcdServer>,
}

impl KvService {
    async fn range(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse, Status> {
        if req.key.is_empty() {
            return Err(errors::empty_key());
        }
        if !req.serializable {
            self.server.linearizable_barrier().await?;
        }
        let mut resp = self
            .server
            .mvcc
            .range(&req)
            .map_err(|e| errors::from_mvcc(&e))?;
        self.server.fill_header(&mut resp.header);
        Ok(resp)
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let res = KvService::range(self, req.into_inner()).await;
        self.server.metrics.unary("etcdserverpb.KV", "Range", &res);
        res.map(Response::new)
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let req = req.into_inner();
        let res = async {
            if req.key.is_empty() {
                return Err(errors::empty_key());
            }
            let pick = |r| match r {
                Resp::Put(r) => Some(r),
                _ => None,
            };
            self.server.write(Op::Put(req), pick).await
        }
        .await;
        self.server.metrics.unary("etcdserverpb.KV", "Put", &res);
        res.map(Response::new)
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let req = req.into_inner();
        let res = async {
            if req.key.is_empty() {
                return Err(errors::empty_key());
            }
            let pick = |r| match r {
                Resp::DeleteRange(r) => Some(r),
                _ => None,
            };
            self.server.write(Op::DeleteRange(req), pick).await
        }
        .await;
        self.server
            .metrics
            .unary("etcdserverpb.KV", "DeleteRange", &res);
        res.map(Response::new)
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let req = req.into_inner();
        let res = async {
            check_txn(&req, self.server.limits.max_txn_ops)?;
            let pick = |r| match r {
                Resp::Txn(r) => Some(r),
                _ => None,
            };
            let mut r = self.server.write(Op::Txn(req), pick).await?;
            let rev = r.header.as_ref().map(|h| h.revision).unwrap_or(0);
            fill_txn_headers(&self.server, &mut r, rev);
            Ok(r)
        }
        .await;
        self.server.metrics.unary("etcdserverpb.KV", "Txn", &res);
        res.map(Response::new)
    }

    async fn compact(
        &self,
        req: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let req = req.into_inner();
        let pick = |r| match r {
            Resp::Compaction(r) => Some(r),
            _ => None,
        };
        let res = self.server.write(Op::Compaction(req), pick).await;
        self.server
            .metrics
            .unary("etcdserverpb.KV", "Compact", &res);
        res.map(Response::new)
    }
}

/// Every nested response carries the txn's header, as etcd fills them.
fn fill_txn_headers(server: &EtcdServer, r: &mut pb::TxnResponse, rev: i64) {
    r.header = Some(server.header(rev));
    for op in &mut r.responses {
        match &mut op.response {
            Some(pb::response_op::Response::ResponseRange(x)) => {
                x.header = Some(server.header(rev))
            }
            Some(pb::response_op::Response::ResponsePut(x)) => x.header = Some(server.header(rev)),
            Some(pb::response_op::Response::ResponseDeleteRange(x)) => {
                x.header = Some(server.header(rev))
            }
            Some(pb::response_op::Response::ResponseTxn(x)) => fill_txn_headers(server, x, rev),
            None => {}
        }
    }
}

/// etcd's checkTxnRequest + checkIntervals: op counts, empty keys, and no key written twice
/// (a put inside a deleted range, or two puts of one key) in one branch.
pub fn check_txn(req: &pb::TxnRequest, max_ops: usize) -> Result<(), Status> {
    check_txn_ops(req, max_ops)?;
    check_intervals(req).map(|_| ())
}

fn check_txn_ops(req: &pb::TxnRequest, max_ops: usize) -> Result<(), Status> {
    if req.compare.len() > max_ops || req.success.len() > max_ops || req.failure.len() > max_ops {
        return Err(errors::too_many_ops());
    }
    for c in &req.compare {
        if c.key.is_empty() {
            return Err(errors::empty_key());
        }
    }
    for op in req.success.iter().chain(&req.failure) {
        match &op.request {
            Some(ReqOp::RequestRange(r)) if r.key.is_empty() => return Err(errors::empty_key()),
            Some(ReqOp::RequestPut(r)) if r.key.is_empty() => return Err(errors::empty_key()),
            Some(ReqOp::RequestDeleteRange(r)) if r.key.is_empty() => {
                return Err(errors::empty_key())
            }
            Some(ReqOp::RequestTxn(t)) => check_txn_ops(t, max_ops)?,
            _ => {}
        }
    }
    Ok(())
}

type Writes = (Vec<(Vec<u8>, Vec<u8>)>, BTreeSet<Vec<u8>>);

/// Returns the (delete ranges, put keys) a txn may write, failing on overlaps within a branch.
fn check_intervals(req: &pb::TxnRequest) -> Result<Writes, Status> {
    let mut all: Writes = (Vec::new(), BTreeSet::new());
    for branch in [&req.success, &req.failure] {
        let (dels, puts) = branch_writes(branch)?;
        all.0.extend(dels);
        all.1.extend(puts);
    }
    Ok(all)
}

fn branch_writes(ops: &[pb::RequestOp]) -> Result<Writes, Status> {
    let mut dels: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut puts: BTreeSet<Vec<u8>> = BTreeSet::new();
    for op in ops {
        match &op.request {
            Some(ReqOp::RequestDeleteRange(d)) => dels.push((d.key.clone(), d.range_end.clone())),
            Some(ReqOp::RequestPut(p)) if !puts.insert(p.key.clone()) => {
                return Err(errors::duplicate_key());
            }
            Some(ReqOp::RequestTxn(t)) => {
                let (d, p) = check_intervals(t)?;
                for k in p {
                    if !puts.insert(k) {
                        return Err(errors::duplicate_key());
                    }
                }
                dels.extend(d);
            }
            _ => {}
        }
    }
    for k in &puts {
        if dels.iter().any(|(start, end)| in_range(k, start, end)) {
            return Err(errors::duplicate_key());
        }
    }
    Ok((dels, puts))
}

/// etcd's key range semantics: empty end = the key itself, "\0" = every key from start on.
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(ReqOp::RequestPut(pb::PutRequest {
                key: k.into(),
                ..Default::default()
            })),
        }
    }
    fn del(k: &str, end: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(ReqOp::RequestDeleteRange(pb::DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn txn_checks_match_etcd() {
        let cases: Vec<(&str, pb::TxnRequest, Option<&str>)> = vec![
            (
                "two puts of different keys pass",
                pb::TxnRequest {
                    success: vec![put("a"), put("b")],
                    ..Default::default()
                },
                None,
            ),
            (
                "two puts of one key are duplicates",
                pb::TxnRequest {
                    success: vec![put("a"), put("a")],
                    ..Default::default()
                },
                Some("duplicate key"),
            ),
            (
                "a put inside a deleted range is a duplicate",
                pb::TxnRequest {
                    success: vec![del("a", "c"), put("b")],
                    ..Default::default()
                },
                Some("duplicate key"),
            ),
            (
                "the same key in success and failure is fine",
                pb::TxnRequest {
                    success: vec![put("a")],
                    failure: vec![put("a")],
                    ..Default::default()
                },
                None,
            ),
            (
                "an empty key is rejected",
                pb::TxnRequest {
                    success: vec![put("")],
                    ..Default::default()
                },
                Some("key is not provided"),
            ),
            (
                "129 ops are too many",
                pb::TxnRequest {
                    success: (0..129).map(|i| put(&format!("k{i}"))).collect(),
                    ..Default::default()
                },
                Some("too many operations"),
            ),
            (
                "128 ops are fine",
                pb::TxnRequest {
                    success: (0..128).map(|i| put(&format!("k{i}"))).collect(),
                    ..Default::default()
                },
                None,
            ),
        ];
        for (name, req, want) in cases {
            let got = check_txn(&req, 128);
            match want {
                None => assert!(got.is_ok(), "{name}: {got:?}"),
                Some(msg) => {
                    let e = got.expect_err(name);
                    assert!(e.message().contains(msg), "{name}: {}", e.message());
                }
            }
        }
    }

    #[test]
    fn range_semantics_follow_etcd() {
        assert!(in_range(b"a", b"a", b""));
        assert!(!in_range(b"ab", b"a", b""));
        assert!(in_range(b"zzz", b"a", b"\0"));
        assert!(in_range(b"ab", b"a", b"b"));
        assert!(!in_range(b"b", b"a", b"b"));
    }
}
