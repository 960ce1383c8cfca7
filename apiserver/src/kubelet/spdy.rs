//! The client half of SPDY/3.1 framing as Kubernetes streaming uses it (the framing of
//! moby/spdystream, which runtimes' streaming servers and kubelets speak): opening streams
//! with SYN_STREAM, DATA with and without FIN, and reading what the server sends back.
//!
//! Header blocks must be zlib-compressed with one stream per direction. The encoder emits
//! stored (uncompressed) deflate blocks, each block ended by a sync flush, with a zlib header
//! that names no preset dictionary, which every zlib reader accepts; the server's header blocks (SYN_REPLY) are not needed by
//! a client that only reads data, so they are skipped rather than inflated.

use bytes::{Buf, Bytes, BytesMut};

/// The framing version spdystream speaks (its upgrade token says SPDY/3.1).
pub const VERSION: u16 = 3;
/// FLAG_FIN on DATA and SYN_STREAM: the sender's half of the stream is done.
pub const FLAG_FIN: u8 = 0x01;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;

/// Frames larger than this are refused (the length field allows 16 MiB).
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// A frame received from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream: u32,
        fin: bool,
        data: Bytes,
    },
    SynReply {
        stream: u32,
        fin: bool,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_stream: u32,
        status: u32,
    },
    /// SETTINGS, WINDOW_UPDATE, HEADERS, a SYN_STREAM from the server...: nothing to do.
    Other {
        kind: u16,
    },
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Takes one complete frame off the front of `buf`; `Ok(None)` when more bytes are needed.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, String> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let control = buf[0] & 0x80 != 0;
    let flags = buf[4];
    let len = (usize::from(buf[5]) << 16) | (usize::from(buf[6]) << 8) | usize::from(buf[7]);
    if len > MAX_FRAME {
        return Err(format!("spdy frame of {len} bytes is too large"));
    }
    if buf.len() < 8 + len {
        return Ok(None);
    }
    let fin = flags & FLAG_FIN != 0;
    if !control {
        let stream = u32_at(buf, 0) & 0x7fff_ffff;
        buf.advance(8);
        let data = buf.split_to(len).freeze();
        return Ok(Some(Frame::Data { stream, fin, data }));
    }
    let version = u16::from_be_bytes([buf[0] & 0x7f, buf[1]]);
    let kind = u16::from_be_bytes([buf[2], buf[3]]);
    if version != VERSION {
        return Err(format!("unsupported spdy version {version}"));
    }
    buf.advance(8);
    let payload = buf.split_to(len);
    let need = |n: usize| -> Result<(), String> {
        if payload.len() < n {
            Err(format!(
                "spdy control frame {kind} of {len} bytes is too short"
            ))
        } else {
            Ok(())
        }
    };
    let frame = match kind {
        SYN_REPLY => {
            need(4)?;
            Frame::SynReply {
                stream: u32_at(&payload, 0) & 0x7fff_ffff,
                fin,
            }
        }
        RST_STREAM => {
            need(8)?;
            Frame::RstStream {
                stream: u32_at(&payload, 0) & 0x7fff_ffff,
                status: u32_at(&payload, 4),
            }
        }
        PING => {
            need(4)?;
            Frame::Ping {
                id: u32_at(&payload, 0),
            }
        }
        GOAWAY => {
            need(4)?;
            Frame::GoAway {
                last_stream: u32_at(&payload, 0) & 0x7fff_ffff,
                status: if payload.len() >= 8 {
                    u32_at(&payload, 4)
                } else {
                    0
                },
            }
        }
        kind => Frame::Other { kind },
    };
    Ok(Some(frame))
}

fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    out
}

/// A DATA frame (split by the caller: at most 16 MiB).
pub fn data(stream: u32, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.push(if fin { FLAG_FIN } else { 0 });
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    out
}

/// A PING answer (the same id back).
pub fn ping(id: u32) -> Vec<u8> {
    control_frame(PING, 0, &id.to_be_bytes())
}

/// GOAWAY with status OK: this side opens no more streams.
pub fn goaway(last_stream: u32) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8);
    payload.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    payload.extend_from_slice(&0u32.to_be_bytes());
    control_frame(GOAWAY, 0, &payload)
}

/// The sending side's header compression state: one zlib stream over all header blocks.
#[derive(Debug, Default)]
pub struct HeaderEncoder {
    started: bool,
}

impl HeaderEncoder {
    /// The compressed header block for `headers` (names lowercased, as SPDY requires).
    pub fn encode(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
            raw.extend_from_slice(name.as_bytes());
            raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
            raw.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 16);
        if !self.started {
            // zlib header: deflate with a 32 KiB window, no preset dictionary, check bits.
            out.extend_from_slice(&[0x78, 0x01]);
            self.started = true;
        }
        // Non-final stored blocks; each ends byte-aligned, so the next block (in this frame
        // or the next) starts on a byte boundary.
        for chunk in raw.chunks(0xffff) {
            let len = chunk.len() as u16;
            out.push(0x00);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        // An empty stored block, as a zlib sync flush writes: Go's inflater hands out a
        // block's bytes only when the next block starts, so each header block ends with one.
        out.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
        out
    }

    /// SYN_STREAM opening client stream `stream` (odd ids) with `headers`.
    pub fn syn_stream(&mut self, stream: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let block = self.encode(headers);
        let mut payload = Vec::with_capacity(10 + block.len());
        payload.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        payload.extend_from_slice(&0u32.to_be_bytes());
        // Priority 0, slot 0.
        payload.extend_from_slice(&[0, 0]);
        payload.extend_from_slice(&block);
        control_frame(SYN_STREAM, 0, &payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inflates stored deflate blocks (what [`HeaderEncoder`] writes) back to bytes.
    fn unstore(mut b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while !b.is_empty() {
            assert_eq!(b[0], 0x00, "non-final stored block");
            let len = u16::from_le_bytes([b[1], b[2]]);
            assert_eq!(!len, u16::from_le_bytes([b[3], b[4]]), "NLEN");
            out.extend_from_slice(&b[5..5 + usize::from(len)]);
            b = &b[5 + usize::from(len)..];
        }
        out
    }

    #[test]
    fn syn_stream_carries_a_zlib_header_once_and_the_name_value_block() {
        let mut enc = HeaderEncoder::default();
        let first = enc.syn_stream(1, &[("streamType", "error")]);
        assert_eq!(
            &first[..4],
            &[0x80, 0x03, 0x00, 0x01],
            "control, v3, SYN_STREAM"
        );
        let len = u32::from_be_bytes([0, first[5], first[6], first[7]]) as usize;
        assert_eq!(len, first.len() - 8);
        assert_eq!(&first[8..12], &1u32.to_be_bytes(), "stream id");
        let block = &first[18..];
        assert_eq!(&block[..2], &[0x78, 0x01]);
        assert_eq!((0x78u32 * 256 + 0x01) % 31, 0, "zlib header check bits");
        let raw = unstore(&block[2..]);
        let mut want = 1u32.to_be_bytes().to_vec();
        want.extend_from_slice(&10u32.to_be_bytes());
        want.extend_from_slice(b"streamtype");
        want.extend_from_slice(&5u32.to_be_bytes());
        want.extend_from_slice(b"error");
        assert_eq!(raw, want);

        let second = enc.syn_stream(3, &[("streamType", "stdout")]);
        assert_eq!(
            second[18], 0x00,
            "later blocks continue the same zlib stream"
        );
        assert!(unstore(&second[18..]).ends_with(b"stdout"));
    }

    #[test]
    fn frames_decode_whole_and_wait_for_more_bytes() {
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&data(3, false, b"hello"));
        wire.extend_from_slice(&data(5, true, b""));
        wire.extend_from_slice(&ping(7));
        wire.extend_from_slice(&goaway(0));
        wire.extend_from_slice(&control_frame(SYN_REPLY, FLAG_FIN, &[0, 0, 0, 9, 1, 2]));
        wire.extend_from_slice(&control_frame(RST_STREAM, 0, &[0, 0, 0, 3, 0, 0, 0, 5]));
        wire.extend_from_slice(&control_frame(4, 0, &[0, 0, 0, 0]));
        let whole = wire.clone();
        let mut got = Vec::new();
        // Byte by byte: partial frames wait.
        let mut buf = BytesMut::new();
        for b in whole.iter() {
            buf.extend_from_slice(&[*b]);
            while let Some(f) = decode(&mut buf).expect("valid") {
                got.push(f);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(
            got,
            vec![
                Frame::Data {
                    stream: 3,
                    fin: false,
                    data: Bytes::from_static(b"hello")
                },
                Frame::Data {
                    stream: 5,
                    fin: true,
                    data: Bytes::new()
                },
                Frame::Ping { id: 7 },
                Frame::GoAway {
                    last_stream: 0,
                    status: 0
                },
                Frame::SynReply {
                    stream: 9,
                    fin: true
                },
                Frame::RstStream {
                    stream: 3,
                    status: 5
                },
                Frame::Other { kind: 4 },
            ]
        );
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let mut buf = BytesMut::from(&control_frame(PING, 0, &[1])[..]);
        assert!(decode(&mut buf).is_err(), "short ping");
        let mut v2 = control_frame(PING, 0, &[0, 0, 0, 1]);
        v2[1] = 2;
        assert!(decode(&mut BytesMut::from(&v2[..])).is_err(), "version 2");
    }
}
