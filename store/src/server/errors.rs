//! etcd's gRPC errors: the exact codes and messages etcd clients match on.

use tonic::{Code, Status};

use proto::storepb::InternalRaftResponse;

use crate::mvcc;

/// The same error as the state machine answers it, so each etcd message is written once.
fn reject(r: mvcc::Reject) -> Status {
    Status::new(Code::from(r.code as i32), r.message)
}

fn status(code: Code, msg: &'static str) -> Status {
    Status::new(code, msg)
}

pub fn empty_key() -> Status {
    status(Code::InvalidArgument, "etcdserver: key is not provided")
}
pub fn too_many_ops() -> Status {
    status(
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    )
}
pub fn duplicate_key() -> Status {
    status(
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    )
}
pub fn request_too_large() -> Status {
    status(Code::InvalidArgument, "etcdserver: request is too large")
}
pub fn compacted() -> Status {
    reject(mvcc::COMPACTED)
}
pub fn future_rev() -> Status {
    reject(mvcc::FUTURE_REV)
}
pub fn lease_not_found() -> Status {
    reject(mvcc::LEASE_NOT_FOUND)
}
pub fn lease_ttl_too_large() -> Status {
    status(Code::OutOfRange, "etcdserver: too large lease TTL")
}
pub fn member_exist() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: member ID already exist",
    )
}
pub fn peer_url_exist() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: Peer URLs already exists",
    )
}
pub fn member_not_found() -> Status {
    status(Code::NotFound, "etcdserver: member not found")
}
pub fn member_bad_urls() -> Status {
    status(
        Code::InvalidArgument,
        "etcdserver: given member URLs are invalid",
    )
}
pub fn member_not_learner() -> Status {
    status(
        Code::FailedPrecondition,
        "etcdserver: can only promote a learner member",
    )
}
pub fn no_leader() -> Status {
    status(Code::Unavailable, "etcdserver: no leader")
}
pub fn timeout() -> Status {
    status(Code::Unavailable, "etcdserver: request timed out")
}
pub fn stopped() -> Status {
    status(Code::Unavailable, "etcdserver: server stopped")
}
pub fn not_capable() -> Status {
    status(Code::Unavailable, "etcdserver: not capable")
}
pub fn unhealthy() -> Status {
    status(Code::Unavailable, "etcdserver: unhealthy cluster")
}

/// A storage failure the client did not cause: logged by the caller, reported as Unavailable.
pub fn internal(what: impl std::fmt::Display) -> Status {
    Status::new(Code::Unavailable, format!("etcdserver: {what}"))
}

/// Maps an MVCC read error to etcd's status.
pub fn from_mvcc(e: &crate::mvcc::MvccError) -> Status {
    use crate::mvcc::MvccError;
    match e {
        MvccError::Compacted => compacted(),
        MvccError::FutureRev => future_rev(),
        other => internal(other),
    }
}

/// Turns an applied response carrying an error into the status etcd would return.
pub fn check_applied(resp: InternalRaftResponse) -> Result<InternalRaftResponse, Status> {
    if resp.error_code == 0 {
        Ok(resp)
    } else {
        Err(Status::new(
            Code::from(resp.error_code as i32),
            resp.error_message,
        ))
    }
}
