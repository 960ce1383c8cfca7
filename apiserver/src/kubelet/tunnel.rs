//! Port-forward over WebSocket as kubectl 1.30+ tries first: the client speaks SPDY inside
//! binary WebSocket messages (subprotocol `SPDY/3.1+portforward.k8s.io`). The apiserver
//! upgrades the kubelet side to plain SPDY and moves the bytes between the two, unwrapping
//! and wrapping WebSocket frames; the SPDY stream itself is not interpreted.

use base64::Engine;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// The subprotocol of port-forward tunnelled through WebSocket.
pub const PORT_FORWARD_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
/// The SPDY subprotocol of port-forward.
pub const PORT_FORWARD_SPDY: &str = "portforward.k8s.io";

const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest message accepted from a client (SPDY frames are far smaller).
const MAX_MESSAGE: u64 = 16 * 1024 * 1024;

/// Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2).
pub fn accept_key(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{}{WEBSOCKET_GUID}", key.trim()).as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Whether the request is a WebSocket upgrade offering `protocol`.
pub fn wants_websocket_protocol(headers: &http::HeaderMap, protocol: &str) -> bool {
    let websocket = headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    websocket
        && headers
            .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == protocol)
}

/// One WebSocket frame as a server sends it (never masked).
pub fn encode_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// A decoded frame: opcode and (unmasked) payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// The last frame of its message.
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Takes one complete frame off the front of `buf`; `Ok(None)` when more bytes are needed.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Frame>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    if len > MAX_MESSAGE {
        return Err(format!("websocket frame of {len} bytes is too large"));
    }
    let mask_len = if masked { 4 } else { 0 };
    let total = at + mask_len + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let mask = if masked {
        let m = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(m)
    } else {
        None
    };
    let mut payload = buf[at..total].to_vec();
    if let Some(m) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    buf.advance(total);
    Ok(Some(Frame {
        fin,
        opcode,
        payload,
    }))
}

/// Moves bytes between a WebSocket client and a raw backend stream until either side ends.
pub async fn pump<C, B>(client: C, backend: B)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    let (mut backend_rd, mut backend_wr) = tokio::io::split(backend);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(32);

    // The only writer to the client: data frames and control answers, in order.
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if client_wr.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = client_wr.shutdown().await;
    });

    let to_client = out_tx.clone();
    let downstream = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match backend_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_client.send(encode_frame(0x2, &buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to_client
            .send(encode_frame(0x8, &1000u16.to_be_bytes()))
            .await;
    };

    let upstream = async move {
        let mut buf = BytesMut::with_capacity(32 * 1024);
        'read: loop {
            loop {
                match decode_frame(&mut buf) {
                    Ok(Some(frame)) => match frame.opcode {
                        0x0..=0x2 if backend_wr.write_all(&frame.payload).await.is_err() => {
                            break 'read;
                        }
                        0x0..=0x2 => {}
                        0x8 => {
                            let _ = out_tx.send(encode_frame(0x8, &frame.payload)).await;
                            break 'read;
                        }
                        0x9 => {
                            let _ = out_tx.send(encode_frame(0xA, &frame.payload)).await;
                        }
                        _ => {}
                    },
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "port-forward tunnel");
                        break 'read;
                    }
                }
            }
            match client_rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = backend_wr.shutdown().await;
    };

    tokio::select! {
        _ = downstream => {}
        _ = upstream => {}
    }
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_rfc_6455s_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_round_trip_masked_and_in_pieces() {
        for len in [0usize, 5, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut wire = encode_frame(0x2, &payload);
            // Mask it as a client would.
            wire[1] |= 0x80;
            let header_len = match len {
                n if n < 126 => 2,
                n if n <= 0xffff => 4,
                _ => 10,
            };
            let mask = [1u8, 2, 3, 4];
            let mut masked = wire[..header_len].to_vec();
            masked.extend_from_slice(&mask);
            masked.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&masked[..masked.len() / 2]);
            if len > 0 {
                assert_eq!(decode_frame(&mut buf), Ok(None), "partial frame waits");
            }
            buf.extend_from_slice(&masked[masked.len() / 2..]);
            let frame = decode_frame(&mut buf).expect("valid").expect("complete");
            assert_eq!(frame.opcode, 0x2);
            assert_eq!(frame.payload, payload, "len {len}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn websocket_upgrades_are_recognised_by_subprotocol() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::UPGRADE, "websocket".parse().expect("value"));
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            "SPDY/3.1+portforward.k8s.io, other".parse().expect("value"),
        );
        assert!(wants_websocket_protocol(&h, PORT_FORWARD_TUNNEL));
        assert!(!wants_websocket_protocol(&h, "v5.channel.k8s.io"));
        h.insert(http::header::UPGRADE, "SPDY/3.1".parse().expect("value"));
        assert!(!wants_websocket_protocol(&h, PORT_FORWARD_TUNNEL));
    }
}
