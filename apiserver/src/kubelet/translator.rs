//! pods/exec and pods/attach over WebSocket, as kubectl 1.30+ asks first (upstream's
//! StreamTranslator): the client speaks `v5.channel.k8s.io` (or `v4.channel.k8s.io`), one
//! binary message per write with the channel in its first byte (0 stdin, 1 stdout, 2 stderr,
//! 3 error, 4 resize; v5 adds 255 + channel to half-close a stream). Towards the kubelet the
//! apiserver is a SPDY/3.1 client of `v4.channel.k8s.io` with one stream per channel. At the
//! end the error channel carries the runtime's Status (the exit code of a failed command) or
//! a Success Status, then the WebSocket is closed normally.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, Method, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::spdy::{self, HeaderEncoder};
use super::tunnel::{self, decode_frame, encode_frame};
use crate::error::{ApiError, Result};
use crate::http::response::{self, Resp};
use crate::server::ApiServer;

/// The remote command protocol with the stream-close signal.
pub const V5: &str = "v5.channel.k8s.io";
/// The remote command protocol before it (also spoken towards the kubelet over SPDY).
pub const V4: &str = "v4.channel.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: `[255, channel]` half-closes `channel`.
const CLOSE: u8 = 255;

/// How long a client may take to answer our close before its connection is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// Largest DATA frame sent to the kubelet.
const MAX_DATA: usize = 32 * 1024;

/// The channel protocol to answer with when the client offers one this translator speaks.
pub fn negotiate(headers: &http::HeaderMap) -> Option<&'static str> {
    [V5, V4]
        .into_iter()
        .find(|p| tunnel::wants_websocket_protocol(headers, p))
}

/// Which standard streams the client asked for (the query of pods/exec and pods/attach).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Streams {
    pub fn from_query(query: &crate::http::request::Query) -> Self {
        let on = |k: &str| query.has(k) && query.flag(k);
        let tty = on("tty");
        Streams {
            stdin: on("stdin"),
            stdout: on("stdout"),
            // A terminal has no separate stderr (kubectl does not ask for it either).
            stderr: on("stderr") && !tty,
            tty,
        }
    }
}

/// SPDY stream ids of the channels, opened in client-go's order (error first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ids {
    error: u32,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
}

impl Ids {
    fn plan(s: Streams) -> Self {
        let mut next = 1u32;
        let mut take = |on: bool| {
            on.then(|| {
                let id = next;
                next += 2;
                id
            })
        };
        let error = take(true).unwrap_or(1);
        Ids {
            error,
            stdin: take(s.stdin),
            stdout: take(s.stdout),
            stderr: take(s.stderr),
            resize: take(s.tty),
        }
    }

    fn opened(&self) -> Vec<(&'static str, u32)> {
        let mut out = vec![("error", self.error)];
        for (kind, id) in [
            ("stdin", self.stdin),
            ("stdout", self.stdout),
            ("stderr", self.stderr),
            ("resize", self.resize),
        ] {
            if let Some(id) = id {
                out.push((kind, id));
            }
        }
        out
    }
}

/// One WebSocket binary message on `channel`.
fn message(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(data.len() + 1);
    payload.push(channel);
    payload.extend_from_slice(data);
    encode_frame(0x2, &payload)
}

/// What the error channel says when the runtime wrote nothing there.
fn final_status(error: Vec<u8>, clean: bool) -> Vec<u8> {
    if !error.is_empty() {
        return error;
    }
    if clean {
        return br#"{"metadata":{},"status":"Success"}"#.to_vec();
    }
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": "Internal error occurred: the stream from the kubelet ended before the command finished",
        "reason": "InternalError",
        "code": 500,
    })
    .to_string()
    .into_bytes()
}

/// Upgrades the kubelet side to SPDY and answers the client's WebSocket handshake; the
/// translation runs in the background once both upgrades complete.
pub async fn exec_or_attach(
    api: &ApiServer,
    node_name: &str,
    path_and_query: &str,
    headers: &http::HeaderMap,
    client: Option<hyper::upgrade::OnUpgrade>,
    streams: Streams,
) -> Result<Resp> {
    let result = translate(api, node_name, path_and_query, headers, client, streams).await;
    let code = match &result {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.code,
    };
    api.metrics.stream_translator_request(code);
    result
}

async fn translate(
    api: &ApiServer,
    node_name: &str,
    path_and_query: &str,
    headers: &http::HeaderMap,
    client: Option<hyper::upgrade::OnUpgrade>,
    streams: Streams,
) -> Result<Resp> {
    let (Some(client), Some(key), Some(protocol)) = (
        client,
        headers
            .get(header::SEC_WEBSOCKET_KEY)
            .and_then(|v| v.to_str().ok()),
        negotiate(headers),
    ) else {
        return Err(ApiError::bad_request("Upgrade request required"));
    };
    if !(streams.stdin || streams.stdout || streams.stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    let accept = tunnel::accept_key(key);
    let (mut sender, authority) = super::connect(api, node_name).await?;
    let req = hyper::Request::builder()
        .method(Method::POST)
        .uri(path_and_query)
        .header(header::HOST, authority.as_str())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", V4)
        .body(Full::new(Bytes::new()))
        .map_err(|e| ApiError::bad_request(format!("invalid proxy path: {e}")))?;
    let mut resp = sender
        .send_request(req)
        .await
        .map_err(|e| super::dial_error(&authority, &e))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(super::error_from(super::KubeletResponse {
            status: resp.status(),
            content_type: None,
            body: resp.into_body(),
        })
        .await);
    }
    let v5 = protocol == V5;
    let backend = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        match tokio::try_join!(client, backend) {
            Ok((client, backend)) => {
                pump(TokioIo::new(client), TokioIo::new(backend), streams, v5).await
            }
            Err(e) => tracing::debug!(error = %e, "stream translator upgrade failed"),
        }
    });
    let mut r = hyper::Response::new(response::full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        header::HeaderValue::from_static(protocol),
    );
    Ok(r)
}

async fn drain<W: AsyncWrite + Unpin>(mut rx: mpsc::Receiver<Vec<u8>>, mut w: W) {
    while let Some(bytes) = rx.recv().await {
        if w.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

/// Translates between a WebSocket client (`v5` or v4 channel protocol) and a SPDY
/// connection to the kubelet until the command ends or the client leaves.
pub async fn pump<C, B>(client: C, backend: B, streams: Streams, v5: bool)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client_rd, client_wr) = tokio::io::split(client);
    let (backend_rd, backend_wr) = tokio::io::split(backend);
    let (to_client, client_rx) = mpsc::channel::<Vec<u8>>(64);
    let (to_backend, backend_rx) = mpsc::channel::<Vec<u8>>(64);
    let client_writer = tokio::spawn(drain(client_rx, client_wr));
    let backend_writer = tokio::spawn(drain(backend_rx, backend_wr));

    let ids = Ids::plan(streams);
    let mut headers = HeaderEncoder::default();
    for (kind, id) in ids.opened() {
        let _ = to_backend
            .send(headers.syn_stream(id, &[("streamType", kind)]))
            .await;
    }

    let closing = Arc::new(AtomicBool::new(false));
    // Boxed so that it can be dropped (with its senders) before the writers are awaited.
    let mut up = Box::pin(from_client(
        client_rd,
        to_backend.clone(),
        to_client.clone(),
        ids,
        v5,
        closing.clone(),
    ));
    let down = from_backend(backend_rd, to_client.clone(), to_backend.clone(), ids);
    tokio::select! {
        _ = up.as_mut() => {}
        (error, clean) = down => {
            closing.store(true, Ordering::SeqCst);
            let _ = to_client.send(message(ERROR, &final_status(error, clean))).await;
            let _ = to_client.send(encode_frame(0x8, &1000u16.to_be_bytes())).await;
            // Read on until the client answers the close, so that closing the socket does
            // not reset a connection with unread bytes (which could lose the last output).
            let _ = tokio::time::timeout(CLOSE_WAIT, up.as_mut()).await;
        }
    }
    drop(up);
    drop(to_client);
    drop(to_backend);
    let _ = tokio::time::timeout(CLOSE_WAIT, client_writer).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, backend_writer).await;
}

/// Client messages to SPDY streams; returns when the client closes or goes away.
async fn from_client<R: AsyncRead + Unpin>(
    mut rd: R,
    to_backend: mpsc::Sender<Vec<u8>>,
    to_client: mpsc::Sender<Vec<u8>>,
    ids: Ids,
    v5: bool,
    closing: Arc<AtomicBool>,
) {
    let mut buf = BytesMut::with_capacity(32 * 1024);
    // A message being assembled from fragments: opcode and payload so far.
    let mut partial: Option<(u8, Vec<u8>)> = None;
    let mut stdin_open = ids.stdin.is_some();
    loop {
        loop {
            let frame = match decode_frame(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "stream translator: bad websocket frame");
                    return;
                }
            };
            match frame.opcode {
                0x8 => {
                    if !closing.load(Ordering::SeqCst) {
                        let _ = to_client.send(encode_frame(0x8, &frame.payload)).await;
                    }
                    return;
                }
                0x9 => {
                    let _ = to_client.send(encode_frame(0xA, &frame.payload)).await;
                    continue;
                }
                0x0 => {
                    if let Some((_, m)) = partial.as_mut() {
                        m.extend_from_slice(&frame.payload);
                    }
                }
                0x1 | 0x2 => partial = Some((frame.opcode, frame.payload)),
                _ => continue,
            }
            if !frame.fin {
                continue;
            }
            // All remote command protocols are binary; text messages are ignored.
            let Some((0x2, m)) = partial.take() else {
                continue;
            };
            let Some((&channel, data)) = m.split_first() else {
                continue;
            };
            let frames: Vec<Vec<u8>> = match (channel, ids.stdin, ids.resize) {
                (STDIN, Some(id), _) if stdin_open => data
                    .chunks(MAX_DATA)
                    .map(|c| spdy::data(id, false, c))
                    .collect(),
                (RESIZE, _, Some(id)) => data
                    .chunks(MAX_DATA)
                    .map(|c| spdy::data(id, false, c))
                    .collect(),
                (CLOSE, Some(id), _) if v5 && data.first() == Some(&STDIN) && stdin_open => {
                    stdin_open = false;
                    vec![spdy::data(id, true, &[])]
                }
                _ => Vec::new(),
            };
            for f in frames {
                if to_backend.send(f).await.is_err() {
                    return;
                }
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// SPDY data to client messages; returns the error stream's bytes and whether the kubelet
/// ended the session cleanly (GOAWAY, or the error stream finished).
async fn from_backend<R: AsyncRead + Unpin>(
    mut rd: R,
    to_client: mpsc::Sender<Vec<u8>>,
    to_backend: mpsc::Sender<Vec<u8>>,
    ids: Ids,
) -> (Vec<u8>, bool) {
    let mut buf = BytesMut::with_capacity(32 * 1024);
    let mut error = Vec::new();
    let mut error_done = false;
    loop {
        loop {
            let frame = match spdy::decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "stream translator: bad spdy frame");
                    return (error, false);
                }
            };
            match frame {
                spdy::Frame::Data { stream, fin, data } => {
                    let channel = if Some(stream) == ids.stdout {
                        Some(STDOUT)
                    } else if Some(stream) == ids.stderr {
                        Some(STDERR)
                    } else {
                        None
                    };
                    if stream == ids.error {
                        error.extend_from_slice(&data);
                        error_done |= fin;
                    } else if let Some(channel) = channel.filter(|_| !data.is_empty()) {
                        // A client that stopped reading ends its side; keep the error.
                        let _ = to_client.send(message(channel, &data)).await;
                    }
                }
                spdy::Frame::Ping { id } => {
                    let _ = to_backend.send(spdy::ping(id)).await;
                }
                spdy::Frame::GoAway { .. } => return (error, true),
                spdy::Frame::RstStream { stream, .. } if stream == ids.error => {
                    return (error, error_done)
                }
                _ => {}
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return (error, error_done),
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[test]
    fn streams_are_opened_in_client_go_order_with_odd_ids() {
        let all = Ids::plan(Streams {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        });
        assert_eq!(
            all.opened(),
            vec![("error", 1), ("stdin", 3), ("stdout", 5), ("stderr", 7)]
        );
        let tty = Ids::plan(Streams {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        });
        assert_eq!(
            tty.opened(),
            vec![("error", 1), ("stdin", 3), ("stdout", 5), ("resize", 7)]
        );
    }

    #[test]
    fn v5_is_preferred_over_v4() {
        let mut h = http::HeaderMap::new();
        h.insert(header::UPGRADE, "websocket".parse().expect("value"));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "v4.channel.k8s.io, v5.channel.k8s.io"
                .parse()
                .expect("value"),
        );
        assert_eq!(negotiate(&h), Some(V5));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "SPDY/3.1+portforward.k8s.io".parse().expect("value"),
        );
        assert_eq!(negotiate(&h), None);
    }

    /// A client frame (masked, as clients must send).
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = encode_frame(opcode, payload);
        if !fin {
            f[0] &= 0x7f;
        }
        let header = if payload.len() < 126 { 2 } else { 4 };
        f[1] |= 0x80;
        let mask = [9u8, 8, 7, 6];
        let mut out = f[..header].to_vec();
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    async fn read_spdy(rd: &mut (impl AsyncRead + Unpin), buf: &mut BytesMut) -> spdy::Frame {
        loop {
            if let Some(f) = spdy::decode(buf).expect("valid spdy") {
                return f;
            }
            assert!(
                rd.read_buf(buf).await.expect("read") > 0,
                "kubelet side closed"
            );
        }
    }

    async fn read_ws(rd: &mut (impl AsyncRead + Unpin), buf: &mut BytesMut) -> tunnel::Frame {
        loop {
            if let Some(f) = decode_frame(buf).expect("valid websocket") {
                return f;
            }
            assert!(
                rd.read_buf(buf).await.expect("read") > 0,
                "client side closed"
            );
        }
    }

    #[tokio::test]
    async fn a_v5_session_moves_stdin_with_its_close_output_and_the_exit_status() {
        let (client, mut client_peer) = duplex(1 << 16);
        let (backend, mut kubelet) = duplex(1 << 16);
        let streams = Streams {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let task = tokio::spawn(pump(client, backend, streams, true));
        let mut kbuf = BytesMut::new();
        for want in [1, 3, 5, 7] {
            match read_spdy(&mut kubelet, &mut kbuf).await {
                spdy::Frame::Other { kind: 1 } => {}
                other => panic!("stream {want}: expected SYN_STREAM, got {other:?}"),
            }
        }
        // stdin in two fragments, then v5's close of stdin.
        client_peer
            .write_all(&client_frame(false, 0x2, &[STDIN, b'a', b'b']))
            .await
            .expect("write");
        client_peer
            .write_all(&client_frame(true, 0x0, b"c"))
            .await
            .expect("write");
        client_peer
            .write_all(&client_frame(true, 0x2, &[CLOSE, STDIN]))
            .await
            .expect("write");
        assert_eq!(
            read_spdy(&mut kubelet, &mut kbuf).await,
            spdy::Frame::Data {
                stream: 3,
                fin: false,
                data: Bytes::from_static(b"abc")
            }
        );
        assert_eq!(
            read_spdy(&mut kubelet, &mut kbuf).await,
            spdy::Frame::Data {
                stream: 3,
                fin: true,
                data: Bytes::new()
            }
        );
        // The kubelet answers on stdout and stderr, writes the exit status and goes away.
        let status = br#"{"status":"Failure","reason":"NonZeroExitCode"}"#;
        for f in [
            spdy::data(5, false, b"out"),
            spdy::data(7, false, b"err"),
            spdy::data(1, true, status),
            spdy::goaway(0),
        ] {
            kubelet.write_all(&f).await.expect("write");
        }
        let mut cbuf = BytesMut::new();
        let mut got = Vec::new();
        for _ in 0..4 {
            let f = read_ws(&mut client_peer, &mut cbuf).await;
            got.push((f.opcode, f.payload));
        }
        assert_eq!(got[0], (0x2, b"\x01out".to_vec()));
        assert_eq!(got[1], (0x2, b"\x02err".to_vec()));
        let mut want_status = vec![ERROR];
        want_status.extend_from_slice(status);
        assert_eq!(got[2], (0x2, want_status));
        assert_eq!(got[3], (0x8, 1000u16.to_be_bytes().to_vec()));
        // The client answers the close; the session ends.
        client_peer
            .write_all(&client_frame(true, 0x8, &1000u16.to_be_bytes()))
            .await
            .expect("write");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("session ends")
            .expect("no panic");
    }

    #[tokio::test]
    async fn a_clean_end_without_an_error_stream_says_success() {
        let (client, mut client_peer) = duplex(1 << 16);
        let (backend, mut kubelet) = duplex(1 << 16);
        let streams = Streams {
            stdout: true,
            ..Streams::default()
        };
        let task = tokio::spawn(pump(client, backend, streams, true));
        let mut kbuf = BytesMut::new();
        for _ in 0..2 {
            read_spdy(&mut kubelet, &mut kbuf).await;
        }
        kubelet.write_all(&spdy::ping(4)).await.expect("write ping");
        assert_eq!(
            read_spdy(&mut kubelet, &mut kbuf).await,
            spdy::Frame::Ping { id: 4 }
        );
        kubelet.write_all(&spdy::goaway(0)).await.expect("write");
        let mut cbuf = BytesMut::new();
        let f = read_ws(&mut client_peer, &mut cbuf).await;
        assert_eq!(f.payload[0], ERROR);
        assert_eq!(&f.payload[1..], br#"{"metadata":{},"status":"Success"}"#);
        assert_eq!(read_ws(&mut client_peer, &mut cbuf).await.opcode, 0x8);
        drop(client_peer);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("session ends")
            .expect("no panic");
    }
}
