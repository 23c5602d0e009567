//! The `:authority` stock gRPC clients send on a Unix socket (issue 12,
//! item 5), against the real daemon, with HTTP/2 frames written by hand:
//! the %-encoded socket path grpcio sends is served on the Unix socket,
//! and still refused with RST_STREAM(PROTOCOL_ERROR) over TCP, where h2's
//! strict checks stay. The clients themselves (grpcio, @grpc/grpc-js with
//! no channel option) are run by tests/python_client.rs.

mod common;

use std::time::Duration;

use common::{admin_account, Daemon};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK string literal, no Huffman coding (all shorter than 127 bytes).
fn string(s: &str) -> Vec<u8> {
    [vec![s.len() as u8], s.as_bytes().to_vec()].concat()
}

/// A `grpc.health.v1.Health/Check` call for the whole server, as grpcio
/// makes it on a `unix:` channel: the socket path, %-encoded, as
/// `:authority`, put into the dynamic table (literal with incremental
/// indexing), and a second call on stream 3 that refers to it by index.
fn health_checks(authority: &str) -> Vec<u8> {
    let pseudo = [
        vec![0x83, 0x86], // :method POST, :scheme http
        vec![0x04],       // :path, a static name, without indexing
        string("/grpc.health.v1.Health/Check"),
    ]
    .concat();
    let regular = [
        vec![0x0f, 0x10], // content-type (static 31), without indexing
        string("application/grpc"),
        vec![0x00],
        string("te"),
        string("trailers"),
    ]
    .concat();
    let first = [pseudo.clone(), vec![0x41], string(authority), regular.clone()].concat();
    let second = [pseudo, vec![0x80 | 62], regular].concat();
    // An empty HealthCheckRequest: uncompressed, length 0.
    let message = [0u8, 0, 0, 0, 0];
    [
        PREFACE.to_vec(),
        frame(SETTINGS, 0, 0, &[]),
        frame(HEADERS, 0x4, 1, &first),
        frame(DATA, 0x1, 1, &message),
        frame(HEADERS, 0x4, 3, &second),
        frame(DATA, 0x1, 3, &message),
    ]
    .concat()
}

#[derive(Debug, PartialEq)]
enum Outcome {
    /// The first DATA frame of the stream.
    Answered(Vec<u8>),
    /// RST_STREAM with this error code.
    Reset(u32),
}

/// Sends `input` and reads the server's frames until streams 1 and 3 are
/// each answered or reset.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, input: &[u8]) -> [Outcome; 2] {
    io.write_all(input).await.unwrap();
    let mut outcomes: [Option<Outcome>; 2] = [None, None];
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while outcomes.iter().any(Option::is_none) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, io.read(&mut chunk))
            .await
            .expect("secretd answered within 10 s")
            .expect("read");
        assert!(n > 0, "secretd closed the connection; so far: {outcomes:?}");
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, stream) = (buf[3], u32::from_be_bytes(buf[5..9].try_into().unwrap()) & 0x7fff_ffff);
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            assert_ne!(kind, GOAWAY, "secretd ended the connection: {payload:?}");
            let slot = match stream {
                1 => &mut outcomes[0],
                3 => &mut outcomes[1],
                _ => continue,
            };
            match kind {
                DATA if slot.is_none() => *slot = Some(Outcome::Answered(payload)),
                RST_STREAM if slot.is_none() => {
                    *slot = Some(Outcome::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap())))
                }
                _ => {}
            }
        }
    }
    outcomes.map(Option::unwrap)
}

/// A HealthCheckResponse{status: SERVING} in its gRPC message frame.
fn serving() -> Outcome {
    Outcome::Answered(vec![0, 0, 0, 0, 2, 0x08, 0x01])
}

#[tokio::test]
async fn the_socket_path_as_authority_is_served_on_the_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("secretd.sock");
    let server = format!("server:\n  listen: unix://{}\n", socket.display());
    let daemon = Daemon::configured(dir.path(), &server, "", "", &admin_account());
    let encoded = socket.display().to_string().replace('/', "%2F");
    for authority in [encoded.as_str(), &socket.display().to_string(), "localhost"] {
        let io = tokio::net::UnixStream::connect(&socket).await.expect("connect to the socket");
        assert_eq!(exchange(io, &health_checks(authority)).await, [serving(), serving()], "authority {authority:?}");
    }
    drop(daemon);
}

#[tokio::test]
async fn a_tcp_caller_sending_that_authority_is_still_refused() {
    let daemon = Daemon::sqlite("", "");
    let io = tokio::net::TcpStream::connect(&daemon.addr).await.expect("connect over TCP");
    // RST_STREAM(PROTOCOL_ERROR), h2's own answer to a malformed authority.
    assert_eq!(exchange(io, &health_checks("%2Ftmp%2Fsecretd.sock")).await, [Outcome::Reset(1), Outcome::Reset(1)]);
    let io = tokio::net::TcpStream::connect(&daemon.addr).await.unwrap();
    assert_eq!(exchange(io, &health_checks(&daemon.addr)).await, [serving(), serving()], "a valid authority");
}
