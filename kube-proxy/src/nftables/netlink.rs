//! nf_tables set-element transactions sent from the process over NETLINK_NETFILTER.
//!
//! A rollout changes only the elements of data maps (endpoint address and port per range of a
//! random number) and of the hairpin set, so the partial sync that programs it needs neither
//! `nft` (a process start and a dump of the table into its cache, 10-30 ms at scale) nor rule
//! changes (which make the kernel re-validate every chain of the table at commit). This module
//! encodes exactly that: one batch (`NFNL_MSG_BATCH_BEGIN` ... `NFNL_MSG_BATCH_END`) of
//! `NFT_MSG_NEWSETELEM` / `NFT_MSG_DELSETELEM` messages, applied atomically by the kernel, each
//! message acknowledged; the first failure is returned with the kernel's errno.
//!
//! Wire layout (include/uapi/linux/netlink.h, netfilter/nfnetlink.h, netfilter/nf_tables.h):
//! `nlmsghdr` (16 bytes, host order) + `nfgenmsg` (family, version, res_id in network order) +
//! attributes (`nlattr`: u16 length, u16 type, payload padded to 4 bytes). Keys and data are the
//! register bytes `nft --debug=netlink` prints: addresses and ports in network order, a port
//! padded to 4 bytes inside a concatenation, and interval keys in network order (nft converts a
//! host-order number to network order before an interval lookup).

use std::net::Ipv4Addr;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::Error;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;

const NFNETLINK_V0: u8 = 0;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFPROTO_IPV4: u8 = 2;
const AF_UNSPEC: u8 = 0;

const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;

/// Largest batch sent over netlink; bigger changes go through `nft -f -`, which raises the
/// socket buffers itself. (The default netlink send buffer is ~208 KiB.)
pub const MAX_BATCH: usize = 128 * 1024;
/// An attribute's length is a u16: element lists are split into messages below this.
const MAX_ELEMENTS_NEST: usize = 60 * 1024;

/// One set or map element as the kernel stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub key: Vec<u8>,
    pub data: Option<Vec<u8>>,
    /// Marks the (exclusive) end of the interval started by the previous element.
    pub interval_end: bool,
}

impl Element {
    /// The start of the interval `[from, ...)` of an endpoint range map, mapping to `ip . port`.
    pub fn range_start(from: u32, ip: Ipv4Addr, port: u16) -> Self {
        let mut data = Vec::with_capacity(8);
        data.extend_from_slice(&ip.octets());
        // inet_service is 2 bytes in network order, padded to a 4-byte register.
        data.extend_from_slice(&port.to_be_bytes());
        data.extend_from_slice(&[0, 0]);
        Self {
            key: from.to_be_bytes().to_vec(),
            data: Some(data),
            interval_end: false,
        }
    }

    /// The end of an interval: the first value after it.
    pub fn range_end(to_exclusive: u32) -> Self {
        Self {
            key: to_exclusive.to_be_bytes().to_vec(),
            data: None,
            interval_end: true,
        }
    }

    /// An `ipv4_addr . ipv4_addr` element.
    pub fn addr_pair(a: Ipv4Addr, b: Ipv4Addr) -> Self {
        let mut key = Vec::with_capacity(8);
        key.extend_from_slice(&a.octets());
        key.extend_from_slice(&b.octets());
        Self {
            key,
            data: None,
            interval_end: false,
        }
    }
}

/// What one message of a batch does (for errors).
#[derive(Clone, Debug)]
struct Sent {
    seq: u32,
    what: String,
}

/// One atomic nf_tables transaction of set-element changes.
pub struct Batch {
    family: &'static str,
    table: String,
    buf: Vec<u8>,
    seq: u32,
    sent: Vec<Sent>,
}

impl Batch {
    /// A batch on the `ip` table `table`.
    pub fn new(table: &str) -> Self {
        let mut b = Self {
            family: "ip",
            table: table.to_owned(),
            buf: Vec::with_capacity(4096),
            seq: 0,
            sent: Vec::new(),
        };
        b.message(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            AF_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        );
        b.end_message(0);
        b
    }

    /// Bytes so far (the batch end adds 20).
    pub fn len(&self) -> usize {
        self.buf.len() + NLMSG_HDRLEN + 4
    }

    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Removes every element of `set`.
    pub fn flush(&mut self, set: &str) {
        let start = self.set_message(NFT_MSG_DELSETELEM, 0, set);
        self.end_message(start);
        self.record(format!("flush set {} {} {set}", self.family, self.table));
    }

    /// Adds `elements` to `set` (an element that exists is left as it is).
    pub fn add(&mut self, set: &str, elements: &[Element]) {
        self.elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE, set, elements, "add");
    }

    /// Deletes `elements` from `set`.
    pub fn delete(&mut self, set: &str, elements: &[Element]) {
        self.elements(NFT_MSG_DELSETELEM, 0, set, elements, "delete");
    }

    fn elements(&mut self, msg: u16, flags: u16, set: &str, elements: &[Element], verb: &str) {
        let mut rest = elements;
        while !rest.is_empty() {
            let start = self.set_message(msg, flags, set);
            let list = self.nest_start(NFTA_SET_ELEM_LIST_ELEMENTS);
            let mut n = 0;
            while let Some(e) = rest.get(n) {
                // An interval's end stays in the message of its start.
                if n > 0 && !e.interval_end && self.buf.len() - list > MAX_ELEMENTS_NEST {
                    break;
                }
                self.element(e);
                n += 1;
            }
            self.nest_end(list);
            self.end_message(start);
            self.record(format!(
                "{verb} element {} {} {set} ({n} elements)",
                self.family, self.table
            ));
            rest = &rest[n..];
        }
    }

    fn element(&mut self, e: &Element) {
        let el = self.nest_start(NFTA_LIST_ELEM);
        let key = self.nest_start(NFTA_SET_ELEM_KEY);
        self.attr(NFTA_DATA_VALUE, &e.key);
        self.nest_end(key);
        if let Some(data) = &e.data {
            let d = self.nest_start(NFTA_SET_ELEM_DATA);
            self.attr(NFTA_DATA_VALUE, data);
            self.nest_end(d);
        }
        if e.interval_end {
            self.attr(
                NFTA_SET_ELEM_FLAGS,
                &NFT_SET_ELEM_INTERVAL_END.to_be_bytes(),
            );
        }
        self.nest_end(el);
    }

    /// Starts a set-element message with its table and set; returns where it starts.
    fn set_message(&mut self, msg: u16, flags: u16, set: &str) -> usize {
        let start = self.message(
            (NFNL_SUBSYS_NFTABLES << 8) | msg,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            NFPROTO_IPV4,
            0,
        );
        let table = self.table.clone();
        self.attr_str(NFTA_SET_ELEM_LIST_TABLE, &table);
        self.attr_str(NFTA_SET_ELEM_LIST_SET, set);
        start
    }

    fn record(&mut self, what: String) {
        self.sent.push(Sent {
            seq: self.seq,
            what,
        });
    }

    /// Writes a message header (length filled in by `end_message`) and the nfgenmsg.
    fn message(&mut self, kind: u16, flags: u16, family: u8, res_id: u16) -> usize {
        self.seq += 1;
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.push(family);
        self.buf.push(NFNETLINK_V0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    fn end_message(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    fn attr_str(&mut self, kind: u16, s: &str) {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(kind, &v);
    }

    fn nest_start(&mut self, kind: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        start
    }

    fn nest_end(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    /// The complete batch as sent.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.buf.clone();
        let mut end = Self {
            family: self.family,
            table: String::new(),
            buf: Vec::with_capacity(NLMSG_HDRLEN + 4),
            seq: self.seq,
            sent: Vec::new(),
        };
        end.message(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            AF_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        );
        end.end_message(0);
        out.extend_from_slice(&end.buf);
        out
    }
}

/// A NETLINK_NETFILTER socket kept open between syncs (closing one costs the kernel ~15 ms).
pub struct Conn {
    socket: Socket,
    buf: Vec<u8>,
}

fn io_error(what: &str, source: std::io::Error) -> Error {
    Error::Netlink {
        what: what.to_owned(),
        source,
    }
}

impl Conn {
    pub fn open() -> Result<Self, Error> {
        let mut socket =
            Socket::new(NETLINK_NETFILTER).map_err(|e| io_error("open a netlink socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| io_error("bind the netlink socket", e))?;
        // Acks carry only the header of the acknowledged message; room for a few hundred.
        let _ = socket.set_cap_ack(true);
        let _ = socket.set_rx_buf_sz(1 << 20);
        // The kernel processes a batch inside the sender's sendmsg, so every reply is queued
        // when it returns: replies are read without blocking until the queue is empty.
        socket
            .set_non_blocking(true)
            .map_err(|e| io_error("set the netlink socket non-blocking", e))?;
        Ok(Self {
            socket,
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// Sends `batch` and checks every message's acknowledgement. The kernel applies the whole
    /// batch or nothing; the error names the first message it refused, with its errno.
    pub fn commit(&mut self, batch: &Batch) -> Result<usize, Error> {
        if batch.is_empty() {
            return Ok(0);
        }
        // Whatever an earlier, failed exchange left behind.
        while self.socket.recv(&mut &mut self.buf[..], 0).is_ok() {}
        let bytes = batch.bytes();
        self.socket
            .send_to(&bytes, &SocketAddr::new(0, 0), 0)
            .map_err(|e| io_error("send the batch", e))?;
        let mut pending: Vec<&Sent> = batch.sent.iter().collect();
        let mut failure: Option<Error> = None;
        while !pending.is_empty() {
            let n = match self.socket.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(io_error("receive the acknowledgements", e)),
            };
            for (seq, errno) in acks(&self.buf[..n.min(self.buf.len())]) {
                let sent = pending
                    .iter()
                    .position(|s| s.seq == seq)
                    .map(|i| pending.remove(i));
                if errno != 0 && failure.is_none() {
                    // An error for an unlisted message is the batch's own (e.g. EPERM for the
                    // batch begin without CAP_NET_ADMIN).
                    let what = sent.map_or_else(
                        || format!("nf_tables batch on table {}", batch.table),
                        |s| s.what.clone(),
                    );
                    failure = Some(Error::Netlink {
                        what,
                        source: std::io::Error::from_raw_os_error(errno),
                    });
                }
            }
        }
        if failure.is_none() {
            if let Some(missing) = pending.first() {
                // Without its ack the outcome is unknown; the caller resyncs everything.
                failure = Some(Error::Netlink {
                    what: format!("{} (no acknowledgement)", missing.what),
                    source: std::io::Error::from(std::io::ErrorKind::TimedOut),
                });
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(bytes.len()),
        }
    }
}

/// (sequence number, errno) of every NLMSG_ERROR message in `buf` (errno 0 is an ack).
fn acks(mut buf: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let len = u32_at(buf, 0) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < NLMSG_HDRLEN || len > buf.len() {
            break;
        }
        // struct nlmsgerr: int error, then the acknowledged message's header.
        if kind == NLMSG_ERROR && len >= NLMSG_HDRLEN + 4 + NLMSG_HDRLEN {
            let error = u32_at(buf, NLMSG_HDRLEN) as i32;
            let seq = u32_at(buf, NLMSG_HDRLEN + 4 + 8);
            out.push((seq, -error));
        }
        let step = len.div_ceil(4) * 4;
        buf = &buf[step.min(buf.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_range_elements_match_nft_debug_output() {
        // `nft --debug=netlink add element ip t m { 0-21845 : 10.244.0.1 . 8080 }` prints
        // `element 00000000 : 0100f40a 0000901f 0 [end]  element 56550000 : 1 [end]`, i.e.
        // u32 words read in host order (little endian here) of these bytes.
        let s = Element::range_start(0, Ipv4Addr::new(10, 244, 0, 1), 8080);
        assert_eq!(s.key, [0, 0, 0, 0]);
        assert_eq!(
            s.data.as_deref(),
            Some(&[10, 244, 0, 1, 0x1f, 0x90, 0, 0][..])
        );
        let e = Element::range_end(21846);
        assert_eq!(e.key, [0, 0, 0x55, 0x56]);
        assert!(e.interval_end && e.data.is_none());
    }

    #[test]
    fn batch_is_framed_begin_messages_end_with_padded_attributes() {
        let mut b = Batch::new("kube-proxy");
        b.flush("m");
        b.add(
            "m",
            &[Element::range_start(0, Ipv4Addr::new(10, 0, 0, 1), 80)],
        );
        let bytes = b.bytes();
        // Walk the messages: begin, flush, add, end; each length is 4-aligned and consistent.
        let mut kinds = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
            assert_eq!(len % 4, 0, "message length {len} not aligned");
            kinds.push(u16::from_ne_bytes([rest[4], rest[5]]));
            rest = &rest[len..];
        }
        assert_eq!(kinds, [0x10, (10 << 8) | 14, (10 << 8) | 12, 0x11]);
        // The batch begin names the nf_tables subsystem in network order.
        assert_eq!(&bytes[16..20], &[0, 0, 0, 10]);
        // The flush message: table "kube-proxy\0" (11 bytes, padded to 12) and set "m\0".
        let flush = &bytes[20..];
        assert_eq!(&flush[16..20], &[2, 0, 0, 0]); // nfgenmsg: NFPROTO_IPV4
        assert_eq!(u16::from_ne_bytes([flush[20], flush[21]]), 15);
        assert_eq!(&flush[24..35], b"kube-proxy\0");
        assert_eq!(u16::from_ne_bytes([flush[36], flush[37]]), 6);
        assert_eq!(&flush[40..42], b"m\0");
        assert_eq!(b.len(), bytes.len());
    }

    #[test]
    fn acks_are_parsed_with_their_errno() {
        let mut msg = Vec::new();
        for (seq, err) in [(3u32, 0i32), (4, -2)] {
            msg.extend_from_slice(&36u32.to_ne_bytes());
            msg.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            msg.extend_from_slice(&0u16.to_ne_bytes());
            msg.extend_from_slice(&seq.to_ne_bytes());
            msg.extend_from_slice(&0u32.to_ne_bytes());
            msg.extend_from_slice(&err.to_ne_bytes());
            msg.extend_from_slice(&[0; 8]);
            msg.extend_from_slice(&seq.to_ne_bytes());
            msg.extend_from_slice(&[0; 4]);
        }
        assert_eq!(acks(&msg), [(3, 0), (4, 2)]);
    }
}
