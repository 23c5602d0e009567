//! Stock gRPC clients on the Unix socket: the HTTP/2 `:authority` they send
//! there is made one that secretd's HTTP/2 server (h2) accepts.
//!
//! grpcio and every gRPC C-core language send the %-encoded socket path as
//! `:authority` on a `unix:` channel, grpc-java the raw path. h2 parses
//! `:authority` with `http::uri::Authority` and answers anything that fails
//! with RST_STREAM(PROTOCOL_ERROR), and offers no switch to relax that
//! (hyperium/h2 PR #487 is unmerged). On a Unix socket the authority carries
//! no information (the socket path already names the server), so on
//! connections accepted from the Unix listener, and only there,
//! [`AuthorityFix`] sits between the socket and h2 and rewrites such an
//! authority to `localhost` before h2 sees it. TCP and TLS connections never
//! pass through it and keep h2's strict checks.
//!
//! How: the client→server byte stream is parsed as HTTP/2 frames. Every
//! header block (HEADERS and its CONTINUATION frames, padding and priority
//! fields included) is decoded with an HPACK decoder that follows the
//! client's dynamic table, and re-encoded as literals without indexing, so
//! h2's own decoder never needs a dynamic table entry and the two tables
//! cannot drift apart. Every other frame, and the whole server→client
//! direction, passes through untouched. Memory is bounded by the server's
//! own SETTINGS (frame size, header list size), which [`MAX_FRAME_SIZE`]
//! and [`MAX_HEADER_LIST_SIZE`] fix for the whole server; malformed input
//! is a connection error (the read fails and the connection closes), never
//! a panic.
//!
//! The HPACK decoder is `loona-hpack`: h2's own is private to h2, the
//! original `hpack` crate is unmaintained and panics on malformed input
//! (RUSTSEC-2023-0085), and `loona-hpack` is its maintained fork, the one
//! that advisory recommends, with a decoder that returns errors for every
//! malformed block and checks table size updates against a maximum.

use std::{
    borrow::Cow,
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use zeroize::{Zeroize, Zeroizing};

/// SETTINGS_MAX_FRAME_SIZE of secretd's HTTP/2 server (the protocol's
/// minimum and h2's default), set on the server builder from here so the
/// two cannot disagree. A client may send no larger frame.
pub const MAX_FRAME_SIZE: u32 = 16 * 1024;

/// SETTINGS_MAX_HEADER_LIST_SIZE of secretd's HTTP/2 server (hyper's
/// default), set on the server builder from here.
pub const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// SETTINGS_HEADER_TABLE_SIZE: the server never advertises one (neither
/// tonic nor hyper sets it), so a client's encoder may use the protocol's
/// default, and no more.
const HEADER_TABLE_SIZE: usize = 4096;

/// What this adaptor holds of one header block, compressed or decoded.
/// Blocks up to this size reach h2, which refuses those over
/// [`MAX_HEADER_LIST_SIZE`] its own way (a 431 answer, or GOAWAY); only the
/// absurd ones beyond are refused here, as connection errors.
const MAX_BLOCK: usize = 4 * MAX_HEADER_LIST_SIZE as usize;

/// CONTINUATION frames after one HEADERS frame. h2 allows about five at
/// its settings; a real client needs one or two.
const MAX_CONTINUATIONS: u32 = 16;

/// What every HTTP/2 client sends first (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a refused authority becomes: what grpc-go and tonic send on sockets.
const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";

const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Why a connection was closed. No variant holds header bytes: a header
/// block may carry a token.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RewriteError {
    #[error("a {kind} frame of {len} bytes is over SETTINGS_MAX_FRAME_SIZE ({MAX_FRAME_SIZE})")]
    FrameTooLarge { kind: &'static str, len: usize },
    #[error("a CONTINUATION frame that follows no unfinished header block of its stream")]
    UnexpectedContinuation,
    #[error("a frame of type {0:#x} in the middle of a header block")]
    ExpectedContinuation(u8),
    #[error("more than {MAX_CONTINUATIONS} CONTINUATION frames in one header block")]
    TooManyContinuations,
    #[error("a HEADERS frame whose padding or priority fields are longer than the frame")]
    BadPadding,
    #[error("a PUSH_PROMISE frame from a client")]
    PushPromise,
    #[error("a header block of more than {MAX_BLOCK} bytes")]
    HeaderBlockTooLarge,
    #[error("a header list of more than {MAX_BLOCK} bytes once decoded")]
    HeaderListTooLarge,
    #[error("an undecodable header block: {0}")]
    Hpack(String),
}

/// One frame's 9-byte header.
#[derive(Debug, Clone, Copy)]
struct FrameHead {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl FrameHead {
    fn parse(raw: &[u8; FRAME_HEADER_LEN]) -> Self {
        FrameHead {
            len: usize::from(raw[0]) << 16 | usize::from(raw[1]) << 8 | usize::from(raw[2]),
            kind: raw[3],
            flags: raw[4],
            // The reserved bit means nothing; h2 ignores it as well.
            stream: u32::from_be_bytes([raw[5], raw[6], raw[7], raw[8]]) & 0x7fff_ffff,
        }
    }
}

/// Where the parser is in the client's byte stream.
enum State {
    /// Inside the connection preface; `matched` bytes of it seen.
    Preface { matched: usize },
    /// Not HTTP/2 after all: everything passes, and h2 refuses it.
    Opaque,
    /// Gathering a frame header.
    FrameHeader,
    /// Passing `remaining` payload bytes of a frame that holds no headers.
    Forward { remaining: usize },
    /// Gathering the payload of a HEADERS or CONTINUATION frame.
    HeaderPayload(FrameHead),
}

/// A header block gathered over HEADERS and CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Zeroizing<Vec<u8>>,
    continuations: u32,
}

/// The client→server half of the adaptor, on bytes: the part tests drive
/// with crafted frames.
pub struct Rewriter {
    state: State,
    head: [u8; FRAME_HEADER_LEN],
    head_len: usize,
    payload: Zeroizing<Vec<u8>>,
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
    /// How many authorities were replaced; the first is logged.
    replaced: u64,
}

impl Default for Rewriter {
    fn default() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Rewriter {
            state: State::Preface { matched: 0 },
            head: [0; FRAME_HEADER_LEN],
            head_len: 0,
            payload: Zeroizing::new(Vec::new()),
            block: None,
            decoder,
            replaced: 0,
        }
    }
}

impl Rewriter {
    /// Consumes `input` (any slice of the stream: a frame may be split
    /// anywhere) and appends to `out` what h2 should read. Bytes of an
    /// unfinished header block wait inside until the block is complete.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        while !input.is_empty() {
            match &mut self.state {
                State::Preface { matched } => {
                    let want = &PREFACE[*matched..];
                    let n = want.len().min(input.len());
                    if input[..n] != want[..n] {
                        self.state = State::Opaque;
                        continue;
                    }
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    *matched += n;
                    if *matched == PREFACE.len() {
                        self.state = State::FrameHeader;
                    }
                }
                State::Opaque => {
                    out.extend_from_slice(input);
                    input = &[];
                }
                State::FrameHeader => {
                    let n = (FRAME_HEADER_LEN - self.head_len).min(input.len());
                    self.head[self.head_len..self.head_len + n].copy_from_slice(&input[..n]);
                    self.head_len += n;
                    input = &input[n..];
                    if self.head_len == FRAME_HEADER_LEN {
                        self.head_len = 0;
                        self.start_frame(out)?;
                    }
                }
                State::Forward { remaining } => {
                    let n = (*remaining).min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    *remaining -= n;
                    if *remaining == 0 {
                        self.state = State::FrameHeader;
                    }
                }
                State::HeaderPayload(head) => {
                    let head = *head;
                    let n = (head.len - self.payload.len()).min(input.len());
                    self.payload.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if self.payload.len() == head.len {
                        self.header_frame(head, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A complete frame header: decide what becomes of the frame.
    fn start_frame(&mut self, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let head = FrameHead::parse(&self.head);
        // RFC 9113, section 6.10: nothing but CONTINUATION frames of the
        // same stream until the block ends.
        match (&self.block, head.kind) {
            (Some(block), CONTINUATION) if block.stream == head.stream => {}
            (Some(_), CONTINUATION) | (None, CONTINUATION) => return Err(RewriteError::UnexpectedContinuation),
            (Some(_), kind) => return Err(RewriteError::ExpectedContinuation(kind)),
            (None, _) => {}
        }
        match head.kind {
            HEADERS | CONTINUATION => {
                if head.len > MAX_FRAME_SIZE as usize {
                    let kind = if head.kind == HEADERS { "HEADERS" } else { "CONTINUATION" };
                    return Err(RewriteError::FrameTooLarge { kind, len: head.len });
                }
                self.payload.clear();
                self.state = State::HeaderPayload(head);
                if head.len == 0 {
                    self.header_frame(head, out)?;
                }
            }
            // Servers push, clients never do; h2 would end the connection too.
            PUSH_PROMISE => return Err(RewriteError::PushPromise),
            _ => {
                out.extend_from_slice(&self.head);
                self.state = if head.len == 0 { State::FrameHeader } else { State::Forward { remaining: head.len } };
            }
        }
        Ok(())
    }

    /// A complete HEADERS or CONTINUATION payload.
    fn header_frame(&mut self, head: FrameHead, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        self.state = State::FrameHeader;
        let payload = std::mem::take(&mut *self.payload);
        let payload = Zeroizing::new(payload);
        if head.kind == HEADERS {
            let (priority, fragment) = split_headers_payload(head.flags, &payload)?;
            self.block = Some(Block {
                stream: head.stream,
                end_stream: head.flags & END_STREAM != 0,
                priority,
                fragment: Zeroizing::new(fragment.to_vec()),
                continuations: 0,
            });
        } else if let Some(block) = &mut self.block {
            block.continuations += 1;
            if block.continuations > MAX_CONTINUATIONS {
                return Err(RewriteError::TooManyContinuations);
            }
            if block.fragment.len() + payload.len() > MAX_BLOCK {
                return Err(RewriteError::HeaderBlockTooLarge);
            }
            block.fragment.extend_from_slice(&payload);
        }
        if head.flags & END_HEADERS != 0 {
            if let Some(block) = self.block.take() {
                self.finish_block(block, out)?;
            }
        }
        Ok(())
    }

    /// Decodes a whole header block, replaces a refused `:authority`, and
    /// writes the block as literals in frames of at most [`MAX_FRAME_SIZE`].
    fn finish_block(&mut self, block: Block, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let mut encoded = Zeroizing::new(Vec::with_capacity(block.fragment.len() * 2));
        let mut list_size = 0usize;
        let mut too_large = false;
        let mut replaced = false;
        self.decoder
            .decode_with_cb(&block.fragment, |name: Cow<'_, [u8]>, value: Cow<'_, [u8]>| {
                // The header list size as SETTINGS_MAX_HEADER_LIST_SIZE counts it.
                list_size = list_size.saturating_add(name.len() + value.len() + 32);
                if too_large || list_size > MAX_BLOCK {
                    // Decoding goes on to keep the dynamic table in step; the
                    // block is refused once it ends.
                    too_large = true;
                    return;
                }
                let value: &[u8] = if &*name == b":authority" && is_refused_authority(&value) {
                    replaced = true;
                    REPLACEMENT_AUTHORITY
                } else {
                    &value
                };
                push_literal(&mut encoded, &name, value);
            })
            .map_err(|e| RewriteError::Hpack(e.to_string()))?;
        if too_large {
            return Err(RewriteError::HeaderListTooLarge);
        }
        if replaced {
            if self.replaced == 0 {
                tracing::debug!(
                    stream = block.stream,
                    "unix socket: replacing the :authority this client sends, which h2 would refuse, with localhost"
                );
            }
            self.replaced += 1;
        }
        write_header_frames(&block, &encoded, out);
        Ok(())
    }
}

/// Splits a HEADERS payload into its priority fields and header block
/// fragment, dropping the padding (it means nothing to the receiver).
fn split_headers_payload(flags: u8, payload: &[u8]) -> Result<(Option<[u8; 5]>, &[u8]), RewriteError> {
    let mut rest = payload;
    let mut pad = 0usize;
    if flags & PADDED != 0 {
        let (&len, tail) = rest.split_first().ok_or(RewriteError::BadPadding)?;
        pad = usize::from(len);
        rest = tail;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let (fields, tail) = rest.split_first_chunk::<5>().ok_or(RewriteError::BadPadding)?;
        priority = Some(*fields);
        rest = tail;
    }
    let fragment_len = rest.len().checked_sub(pad).ok_or(RewriteError::BadPadding)?;
    Ok((priority, &rest[..fragment_len]))
}

/// Whether h2 would answer this `:authority` with RST_STREAM: it parses the
/// value with `http::uri::Authority` and refuses whatever fails.
fn is_refused_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_err()
}

/// One "literal header field without indexing, new name" (RFC 7541,
/// section 6.2.2), strings without Huffman coding.
fn push_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    for string in [name, value] {
        push_integer(out, string.len(), 7, 0x00);
        out.extend_from_slice(string);
    }
}

fn push_integer(out: &mut Vec<u8>, value: usize, prefix_bits: u8, leading_bits: u8) {
    // Writing into a Vec cannot fail.
    let _ = loona_hpack::encoder::encode_integer_into(value, prefix_bits, leading_bits, out);
}

/// The re-encoded block as one HEADERS frame (with the original END_STREAM
/// and priority) and as many CONTINUATION frames as it needs.
fn write_header_frames(block: &Block, encoded: &[u8], out: &mut Vec<u8>) {
    let max = MAX_FRAME_SIZE as usize;
    let first_room = if block.priority.is_some() { max - 5 } else { max };
    let (first, mut rest) = encoded.split_at(encoded.len().min(first_room));
    let mut flags = if block.end_stream { END_STREAM } else { 0 };
    if block.priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    let priority_len = if block.priority.is_some() { 5 } else { 0 };
    push_frame_head(out, first.len() + priority_len, HEADERS, flags, block.stream);
    if let Some(priority) = &block.priority {
        out.extend_from_slice(priority);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(max));
        rest = tail;
        let flags = if rest.is_empty() { END_HEADERS } else { 0 };
        push_frame_head(out, chunk.len(), CONTINUATION, flags, block.stream);
        out.extend_from_slice(chunk);
    }
}

fn push_frame_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    // `len` is at most MAX_FRAME_SIZE, far below 2^24.
    let len = (len as u32).to_be_bytes();
    out.extend_from_slice(&[len[1], len[2], len[3], kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// How much the adaptor reads from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// A Unix socket connection as h2 should see it: the client's header blocks
/// rewritten by a [`Rewriter`], everything else as it came.
pub struct AuthorityFix<S> {
    inner: S,
    rewriter: Rewriter,
    scratch: Zeroizing<Box<[u8]>>,
    out: Zeroizing<Vec<u8>>,
    out_pos: usize,
    eof: bool,
    failed: Option<RewriteError>,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            rewriter: Rewriter::default(),
            scratch: Zeroizing::new(vec![0; READ_CHUNK].into_boxed_slice()),
            out: Zeroizing::new(Vec::new()),
            out_pos: 0,
            eof: false,
            failed: None,
        }
    }
}

impl<S: Connected> Connected for AuthorityFix<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_pos < this.out.len() {
                let n = (this.out.len() - this.out_pos).min(buf.remaining());
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.zeroize();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = &this.failed {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut scratch = ReadBuf::new(&mut this.scratch[..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut scratch))?;
            let n = scratch.filled().len();
            if n == 0 {
                this.eof = true;
                continue;
            }
            let fed = this.rewriter.feed(&this.scratch[..n], &mut this.out);
            this.scratch[..n].zeroize();
            if let Err(e) = fed {
                tracing::debug!(error = %e, "unix socket: closing an HTTP/2 connection with malformed header frames");
                // What was rewritten before the error still reaches h2;
                // the error comes after it.
                this.failed = Some(e);
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use rand::{rngs::StdRng, Rng, SeedableRng};

    use super::*;

    const SETTINGS: u8 = 0x4;
    const DATA: u8 = 0x0;
    const RST_STREAM: u8 = 0x3;
    const GRPCIO_AUTHORITY: &[u8] = b"%2Ftmp%2Fsecretd.sock";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_frame_head(&mut out, payload.len(), kind, flags, stream);
        out.extend_from_slice(payload);
        out
    }

    fn string(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_integer(&mut out, s.len(), 7, 0);
        out.extend_from_slice(s);
        out
    }

    /// A literal with incremental indexing, its name from static table entry `name_index`.
    fn indexing(name_index: u8, value: &[u8]) -> Vec<u8> {
        [vec![0x40 | name_index], string(value)].concat()
    }

    /// A literal without indexing, new name.
    fn literal(name: &[u8], value: &[u8]) -> Vec<u8> {
        [vec![0x00], string(name), string(value)].concat()
    }

    fn indexed(index: usize) -> Vec<u8> {
        let mut out = Vec::new();
        push_integer(&mut out, index, 7, 0x80);
        out
    }

    /// `:method POST`, `:scheme http`, `:path /secretd.v1.SecretBroker/GetSecret` (static names).
    fn request_start() -> Vec<u8> {
        [vec![0x83, 0x86, 0x04], string(b"/secretd.v1.SecretBroker/GetSecret")].concat()
    }

    struct Frame {
        kind: u8,
        flags: u8,
        stream: u32,
        payload: Vec<u8>,
    }

    /// Splits what the rewriter produced (after the preface) into frames.
    fn frames(mut bytes: &[u8]) -> Vec<Frame> {
        assert!(bytes.starts_with(PREFACE), "the preface passes first");
        bytes = &bytes[PREFACE.len()..];
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let head = FrameHead::parse(bytes[..FRAME_HEADER_LEN].try_into().unwrap());
            let payload = bytes[FRAME_HEADER_LEN..FRAME_HEADER_LEN + head.len].to_vec();
            bytes = &bytes[FRAME_HEADER_LEN + head.len..];
            assert!(head.len <= MAX_FRAME_SIZE as usize);
            out.push(Frame { kind: head.kind, flags: head.flags, stream: head.stream, payload });
        }
        out
    }

    /// The header blocks in `frames`, each decoded by a decoder of its own:
    /// a block that needed a dynamic table entry fails here.
    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    fn blocks(frames: &[Frame]) -> Vec<(u32, u8, Fields)> {
        let mut out = Vec::new();
        let mut pending: Option<(u32, u8, Vec<u8>)> = None;
        for f in frames {
            match f.kind {
                HEADERS => {
                    assert!(pending.is_none());
                    let (_, fragment) = split_headers_payload(f.flags, &f.payload).unwrap();
                    pending = Some((f.stream, f.flags, fragment.to_vec()));
                }
                CONTINUATION => pending.as_mut().expect("after HEADERS").2.extend_from_slice(&f.payload),
                _ => {
                    assert!(pending.is_none(), "no frame inside a header block");
                    continue;
                }
            }
            if f.flags & END_HEADERS != 0 {
                let (stream, flags, fragment) = pending.take().unwrap();
                let fields = loona_hpack::Decoder::new().decode(&fragment).expect("a self-contained block");
                out.push((stream, flags, fields));
            }
        }
        assert!(pending.is_none(), "every block ended");
        out
    }

    fn authority(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        fields.iter().find(|(n, _)| n == b":authority").expect(":authority").1.clone()
    }

    fn rewrite(input: &[u8]) -> Result<Vec<u8>, RewriteError> {
        let mut out = Vec::new();
        Rewriter::default().feed(input, &mut out)?;
        Ok(out)
    }

    /// The same input split at every byte gives the same output.
    fn rewrite_bytewise(input: &[u8]) -> Result<Vec<u8>, RewriteError> {
        let mut out = Vec::new();
        let mut rewriter = Rewriter::default();
        for byte in input {
            rewriter.feed(std::slice::from_ref(byte), &mut out)?;
        }
        Ok(out)
    }

    /// What grpcio sends for two calls: the first block puts the socket path
    /// into the dynamic table, the second refers to it by index.
    fn two_grpcio_calls() -> Vec<u8> {
        let first = [request_start(), indexing(1, GRPCIO_AUTHORITY), indexing(31, b"application/grpc")].concat();
        let (head, tail) = first.split_at(10);
        // HEADERS padded (3 bytes) with priority fields, and a CONTINUATION.
        let mut padded = vec![3];
        padded.extend_from_slice(&[0x80, 0, 0, 0, 15]);
        padded.extend_from_slice(head);
        padded.extend_from_slice(&[0, 0, 0]);
        let second = [request_start(), indexed(63), indexed(62), literal(b"authorization", b"Bearer sdt_x")].concat();
        [
            PREFACE.to_vec(),
            frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]),
            frame(HEADERS, PADDED | PRIORITY, 1, &padded),
            frame(CONTINUATION, END_HEADERS, 1, tail),
            frame(DATA, END_STREAM, 1, b"\0\0\0\0\x02\x08\x01"),
            frame(HEADERS, END_HEADERS | END_STREAM, 3, &second),
        ]
        .concat()
    }

    #[test]
    fn grpcio_blocks_over_continuation_padding_and_the_dynamic_table_reach_h2_with_localhost() {
        let input = two_grpcio_calls();
        let out = rewrite(&input).unwrap();
        assert_eq!(rewrite_bytewise(&input).unwrap(), out, "frames may arrive split anywhere");
        let frames = frames(&out);
        let kinds: Vec<_> = frames.iter().map(|f| (f.kind, f.stream)).collect();
        assert_eq!(kinds, [(SETTINGS, 0), (HEADERS, 1), (DATA, 1), (HEADERS, 3)]);
        // Frames without headers pass byte for byte.
        assert_eq!(frames[0].payload, [0, 4, 0, 0, 0xff, 0xff]);
        assert_eq!((frames[2].flags, &frames[2].payload[..]), (END_STREAM, &b"\0\0\0\0\x02\x08\x01"[..]));
        // The priority fields survive; the padding is gone.
        assert_eq!(frames[1].flags, PRIORITY | END_HEADERS);
        assert_eq!(frames[1].payload[..5], [0x80, 0, 0, 0, 15]);
        assert_eq!(frames[3].flags, END_HEADERS | END_STREAM);
        let blocks = blocks(&frames);
        let path = b"/secretd.v1.SecretBroker/GetSecret".to_vec();
        let expected = |extra: &[(&[u8], &[u8])]| {
            let mut fields = vec![
                (b":method".to_vec(), b"POST".to_vec()),
                (b":scheme".to_vec(), b"http".to_vec()),
                (b":path".to_vec(), path.clone()),
            ];
            fields.extend(extra.iter().map(|(n, v)| (n.to_vec(), v.to_vec())));
            fields
        };
        assert_eq!(blocks[0].2, expected(&[(b":authority", b"localhost"), (b"content-type", b"application/grpc")]));
        assert_eq!(
            blocks[1].2,
            expected(&[
                (b":authority", b"localhost"),
                (b"content-type", b"application/grpc"),
                (b"authorization", b"Bearer sdt_x"),
            ])
        );
    }

    #[test]
    fn authorities_h2_accepts_are_kept() {
        // "www.example.com" Huffman-coded (RFC 7541, C.4.1).
        let huffman = [0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
        for (block, kept) in [
            (indexing(1, b"secretd.local"), &b"secretd.local"[..]),
            (indexing(1, b"localhost:7878"), b"localhost:7878"),
            (huffman.to_vec(), b"www.example.com"),
        ] {
            let input = [PREFACE.to_vec(), frame(HEADERS, END_HEADERS, 1, &[request_start(), block].concat())].concat();
            let blocks = blocks(&frames(&rewrite(&input).unwrap()));
            assert_eq!(authority(&blocks[0].2), kept);
        }
    }

    #[test]
    fn what_h2_refuses_is_what_is_replaced() {
        for refused in [GRPCIO_AUTHORITY, b"/tmp/secretd.sock", b"", b"local host", b"a:b:c", &[0xc3, 0xa9][..]] {
            assert!(is_refused_authority(refused), "{refused:?}");
        }
        for accepted in [&b"localhost"[..], b"127.0.0.1:7878", b"[::1]:7878", b"secretd.local"] {
            assert!(!is_refused_authority(accepted), "{accepted:?}");
        }
    }

    #[test]
    fn huge_header_blocks_are_refused() {
        let start = [PREFACE.to_vec(), frame(HEADERS, 0, 1, &[0x83; 16 * 1024])].concat();
        // Frames of the largest allowed size until the block passes the limit.
        let mut input = start.clone();
        for _ in 0..4 {
            input.extend(frame(CONTINUATION, 0, 1, &[0x83; 16 * 1024]));
        }
        assert_eq!(rewrite(&input), Err(RewriteError::HeaderBlockTooLarge));
        // One frame over SETTINGS_MAX_FRAME_SIZE.
        let input = [PREFACE.to_vec(), frame(HEADERS, END_HEADERS, 1, &[0x83; 16 * 1024 + 1])].concat();
        assert!(matches!(rewrite(&input), Err(RewriteError::FrameTooLarge { len: 16385, .. })));
        // Small in the wire, huge once decoded: one 4000-byte dynamic entry
        // referred to 100 times.
        let big = [request_start(), indexing(1, &[b'a'; 4000])].concat();
        let bomb: Vec<u8> = (0..100).flat_map(|_| indexed(62)).collect();
        let input = [
            PREFACE.to_vec(),
            frame(HEADERS, END_HEADERS | END_STREAM, 1, &big),
            frame(HEADERS, END_HEADERS | END_STREAM, 3, &bomb),
        ]
        .concat();
        assert_eq!(rewrite(&input), Err(RewriteError::HeaderListTooLarge));
        // An endless run of empty CONTINUATION frames.
        let mut input = [PREFACE.to_vec(), frame(HEADERS, 0, 1, &request_start())].concat();
        for _ in 0..=MAX_CONTINUATIONS {
            input.extend(frame(CONTINUATION, 0, 1, &[]));
        }
        assert_eq!(rewrite(&input), Err(RewriteError::TooManyContinuations));
    }

    #[test]
    fn a_large_block_is_reframed_within_the_frame_size() {
        // 30 KiB of headers in two frames: too large for one frame once re-encoded.
        let fields: Vec<u8> = (0..30).flat_map(|i| literal(format!("x-field-{i}").as_bytes(), &[b'v'; 1000])).collect();
        let block = [request_start(), indexing(1, GRPCIO_AUTHORITY), fields].concat();
        let (a, b) = block.split_at(16 * 1024);
        let input =
            [PREFACE.to_vec(), frame(HEADERS, END_STREAM, 1, a), frame(CONTINUATION, END_HEADERS, 1, b)].concat();
        let frames = frames(&rewrite(&input).unwrap());
        assert!(frames.len() >= 2 && frames[1..].iter().all(|f| f.kind == CONTINUATION));
        assert_eq!(frames[0].flags, END_STREAM, "END_HEADERS moves to the last frame");
        let blocks = blocks(&frames);
        assert_eq!(authority(&blocks[0].2), b"localhost");
        assert_eq!(blocks[0].2.len(), 3 + 1 + 30);
    }

    #[test]
    fn malformed_frames_are_connection_errors() {
        let request = [request_start(), indexing(1, GRPCIO_AUTHORITY)].concat();
        let cases: Vec<(Vec<u8>, RewriteError)> = vec![
            (frame(CONTINUATION, END_HEADERS, 1, &request), RewriteError::UnexpectedContinuation),
            (
                [frame(HEADERS, 0, 1, &request), frame(DATA, 0, 1, b"x")].concat(),
                RewriteError::ExpectedContinuation(DATA),
            ),
            (
                [frame(HEADERS, 0, 1, &request), frame(CONTINUATION, END_HEADERS, 3, &[])].concat(),
                RewriteError::UnexpectedContinuation,
            ),
            (frame(HEADERS, END_HEADERS | PADDED, 1, &[200, 0x83]), RewriteError::BadPadding),
            (frame(HEADERS, END_HEADERS | PADDED, 1, &[]), RewriteError::BadPadding),
            (frame(HEADERS, END_HEADERS | PRIORITY, 1, &[0, 0, 0]), RewriteError::BadPadding),
            (frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2]), RewriteError::PushPromise),
        ];
        for (frames, expected) in cases {
            let input = [PREFACE.to_vec(), frames].concat();
            assert_eq!(rewrite(&input), Err(expected.clone()));
            assert_eq!(rewrite_bytewise(&input), Err(expected));
        }
        // Blocks HPACK cannot decode: a truncated integer (the crash of
        // RUSTSEC-2023-0085), an index past both tables, a table size
        // update beyond SETTINGS_HEADER_TABLE_SIZE.
        for block in [&[0x3f][..], &[0xff, 0x7f], &[0x3f, 0xe2, 0x1f, 0x83]] {
            let input = [PREFACE.to_vec(), frame(HEADERS, END_HEADERS, 1, block)].concat();
            assert!(matches!(rewrite(&input), Err(RewriteError::Hpack(_))), "{block:?}");
        }
    }

    #[test]
    fn a_stream_that_is_not_http2_passes_untouched() {
        let input = b"GET / HTTP/1.1\r\nHost: /tmp/secretd.sock\r\n\r\n";
        assert_eq!(rewrite(input).unwrap(), input);
        assert_eq!(rewrite_bytewise(input).unwrap(), input);
    }

    #[test]
    fn mangled_input_is_an_error_or_output_never_a_panic() {
        let valid = two_grpcio_calls();
        let mut rng = StdRng::seed_from_u64(12);
        let (mut ok, mut failed) = (0, 0);
        for _ in 0..3000 {
            let mut input = valid.clone();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(PREFACE.len()..input.len());
                input[at] = rng.random();
            }
            input.truncate(rng.random_range(PREFACE.len()..=input.len()));
            let mut rewriter = Rewriter::default();
            let mut out = Vec::new();
            let mut rest = &input[..];
            let mut result = Ok(());
            while !rest.is_empty() && result.is_ok() {
                let n = rng.random_range(1..=rest.len());
                result = rewriter.feed(&rest[..n], &mut out);
                rest = &rest[n..];
            }
            if result.is_ok() {
                ok += 1;
            } else {
                failed += 1;
            }
        }
        assert!(ok > 0 && failed > 0, "both outcomes were exercised: {ok} ok, {failed} refused");
    }

    /// The client side of an HTTP/2 connection to a real h2 server: sends
    /// `input`, returns the requests' authorities the server saw and the
    /// RST_STREAM codes the client got, once `expect` streams are settled.
    async fn against_h2(input: Vec<u8>, fixed: bool, expect: usize) -> (Vec<String>, Vec<(u32, u32)>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server_io) = tokio::io::duplex(256 * 1024);
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            let serve = |io| async move {
                let mut conn = h2::server::handshake(io).await.expect("handshake");
                while let Some(Ok((request, mut respond))) = conn.accept().await {
                    let authority = request.uri().authority().map(|a| a.to_string()).unwrap_or_default();
                    let _ = seen_tx.send(authority);
                    let _ = respond.send_response(http::Response::new(()), true);
                }
            };
            if fixed {
                serve(Box::new(AuthorityFix::new(server_io)) as Box<dyn Io>).await
            } else {
                serve(Box::new(server_io) as Box<dyn Io>).await
            }
        });
        client.write_all(&input).await.unwrap();
        let (mut authorities, mut resets) = (Vec::new(), Vec::new());
        let mut buf = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while authorities.len() + resets.len() < expect {
            while let Ok(a) = seen_rx.try_recv() {
                authorities.push(a);
            }
            // Server frames: look for RST_STREAM.
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout_at(deadline, client.read(&mut chunk)).await.expect("h2 answered");
            buf.extend_from_slice(&chunk[..read.unwrap()]);
            while buf.len() >= FRAME_HEADER_LEN {
                let head = FrameHead::parse(buf[..FRAME_HEADER_LEN].try_into().unwrap());
                if buf.len() < FRAME_HEADER_LEN + head.len {
                    break;
                }
                if head.kind == RST_STREAM {
                    let code = u32::from_be_bytes(buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + 4].try_into().unwrap());
                    resets.push((head.stream, code));
                }
                buf.drain(..FRAME_HEADER_LEN + head.len);
            }
            while let Ok(a) = seen_rx.try_recv() {
                authorities.push(a);
            }
        }
        server.abort();
        (authorities, resets)
    }

    trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
    impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

    #[tokio::test]
    async fn h2_refuses_grpcio_blocks_as_sent_and_serves_them_rewritten() {
        let calls = || {
            let first = [request_start(), indexing(1, GRPCIO_AUTHORITY)].concat();
            let second = [request_start(), indexed(62)].concat();
            [
                PREFACE.to_vec(),
                frame(SETTINGS, 0, 0, &[]),
                frame(HEADERS, END_HEADERS | END_STREAM, 1, &first),
                frame(HEADERS, END_HEADERS | END_STREAM, 3, &second),
            ]
            .concat()
        };
        let (authorities, resets) = against_h2(calls(), false, 2).await;
        assert_eq!((authorities.len(), resets), (0, vec![(1, 1), (3, 1)]), "h2 alone: RST_STREAM(PROTOCOL_ERROR)");
        let (authorities, resets) = against_h2(calls(), true, 2).await;
        assert_eq!((authorities, resets), (vec!["localhost".to_owned(), "localhost".to_owned()], vec![]));
    }
}
