//! The WebSocket transport: RFC 6455 framing over a TCP socket that the session owns.
//!
//! This is the one module that touches socket bytes, so the transport can be swapped here.
//! It exists instead of `actix-web-actors` for two measured reasons
//! (`docs/architecture.md#why-not-actix-web-actors`):
//! - memory: the stock HTTP dispatcher keeps two 8 KiB buffers per connection for its whole
//!   life; here an idle connection holds no buffer at all (reads go through a stack buffer,
//!   the write queue is empty once flushed);
//! - backpressure: an `actix-web-actors` session is polled as a response body, so a client
//!   that stops reading freezes it (no heartbeat, no stop). Here the session actor owns the
//!   socket and keeps running, so it can bound its queue and drop a stuck client at the socket.
//!
//! [`Reader`] is a stream of [`WsEvent`]s decoded from the socket ([`BinaryReader`] the same,
//! keeping binary payloads, for protocols that carry binary messages); [`Writer`] queues whole,
//! pre-encoded frames (shared [`Bytes`], encoded once per event by [`text_frame`]) and writes
//! them with vectored writes.

use std::{
    collections::VecDeque,
    io::{self, IoSlice},
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::Stream;
use tokio::net::TcpStream;

use crate::common::queued::QueuedBytes;

use hub_wire::websocket::Decoder;
pub use hub_wire::websocket::{
    binary_frame, close, close_frame, data_frame, header_len, http_error, ping_frame,
    ping_frame_with, pong_frame, switching_protocols, text_frame, WsEvent, WsMessage,
};

/// Size of the stack buffer reads go through.
const READ_CHUNK: usize = 8 * 1024;

/// Decodes WebSocket frames from the socket. Holds no buffer while the peer is idle.
pub struct Reader {
    io: Rc<TcpStream>,
    decoder: Decoder,
    /// After a violation: discard everything until EOF, so the peer can still read our close
    /// frame (closing a socket with unread input sends a reset).
    draining: bool,
    done: bool,
}

impl Reader {
    /// A reader for a socket; `leftover` holds bytes read past the HTTP upgrade request.
    pub fn new(io: Rc<TcpStream>, leftover: Vec<u8>, max_message: usize) -> Self {
        Reader {
            io,
            decoder: Decoder::new(leftover, max_message),
            draining: false,
            done: false,
        }
    }
}

impl Stream for Reader {
    type Item = WsEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WsEvent>> {
        self.poll_message(cx).map(|m| m.map(WsMessage::into_event))
    }
}

/// A [`Reader`] that keeps binary payloads (Engine.IO carries binary messages).
pub struct BinaryReader(Reader);

impl BinaryReader {
    /// A reader for a socket; `leftover` holds bytes read past the HTTP upgrade request.
    pub fn new(io: Rc<TcpStream>, leftover: Vec<u8>, max_message: usize) -> Self {
        BinaryReader(Reader::new(io, leftover, max_message))
    }
}

impl Stream for BinaryReader {
    type Item = WsMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WsMessage>> {
        self.0.poll_message(cx)
    }
}

impl Reader {
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<WsMessage>> {
        let this = self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.draining {
                this.decoder.discard();
            } else if let Some(event) = this.decoder.next_message() {
                if matches!(event, WsMessage::Event(WsEvent::Violation(..))) {
                    this.draining = true;
                    this.decoder.discard();
                }
                return Poll::Ready(Some(event));
            }
            match this.io.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => {
                    this.done = true;
                    continue;
                }
                Poll::Ready(Ok(())) => {}
            }
            let mut chunk = [0u8; READ_CHUNK];
            match this.io.try_read(&mut chunk) {
                Ok(0) => this.done = true,
                Ok(n) => this.decoder.push(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => this.done = true,
            }
        }
    }
}
/// What [`Writer::push`] did with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; call [`Writer::flush`] soon.
    Queued,
    /// The queue is over its byte limit: the peer is not reading.
    Overflow,
}

/// Most frames handed to one vectored write.
const MAX_IOV: usize = 64;

/// Queues frames for one socket and writes them; an empty queue holds no allocation.
pub struct Writer {
    io: Rc<TcpStream>,
    /// The oldest unsent frame. Kept apart from `rest` so that the common flush (one frame
    /// since the last one) allocates nothing, while an idle writer still holds no buffer.
    head: Option<Bytes>,
    /// Frames queued after `head`.
    rest: VecDeque<Bytes>,
    /// Bytes of `head` already written.
    head_written: usize,
    /// Unsent bytes of this writer.
    queued_bytes: usize,
    /// The bound on unsent bytes, shared with whatever else holds bytes for the same client.
    bound: Arc<QueuedBytes>,
    /// Since when the socket has taken nothing while frames wait.
    stalled_since: Option<Instant>,
}

impl Writer {
    /// A writer for a socket with a limit on unsent bytes.
    pub fn new(io: Rc<TcpStream>, limit: usize) -> Self {
        Writer::sharing(io, Arc::new(QueuedBytes::new(limit)))
    }

    /// A writer whose unsent bytes count in `bound` (with the client's undelivered events).
    pub fn sharing(io: Rc<TcpStream>, bound: Arc<QueuedBytes>) -> Self {
        Writer {
            io,
            head: None,
            rest: VecDeque::new(),
            head_written: 0,
            queued_bytes: 0,
            bound,
            stalled_since: None,
        }
    }

    /// How long the socket has taken nothing while frames wait (`None`: not stalled).
    pub fn stalled_for(&self) -> Option<Duration> {
        self.stalled_since.map(|t| t.elapsed())
    }

    /// The socket, for waiting on writability.
    pub fn socket(&self) -> Rc<TcpStream> {
        self.io.clone()
    }

    /// Queues a frame; refuses it once the unsent bytes pass the bound.
    pub fn push(&mut self, frame: Bytes) -> Pushed {
        if !self.bound.try_add(frame.len()) {
            return Pushed::Overflow;
        }
        self.queued_bytes += frame.len();
        if self.head.is_none() {
            self.head = Some(frame);
        } else {
            self.rest.push_back(frame);
        }
        Pushed::Queued
    }

    /// True while frames wait that the socket refused (its last write would have blocked).
    pub fn is_behind(&self) -> bool {
        self.stalled_since.is_some()
    }

    /// True when nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// Writes as much as the socket takes. `Ok(true)` when the queue is drained,
    /// `Ok(false)` when the socket is full (wait for writability and call again).
    pub fn flush(&mut self) -> io::Result<bool> {
        while let Some(head) = &self.head {
            let written = {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                slices[0] = IoSlice::new(&head[self.head_written..]);
                let mut n = 1;
                for frame in self.rest.iter().take(MAX_IOV - 1) {
                    slices[n] = IoSlice::new(frame);
                    n += 1;
                }
                match self.io.try_write_vectored(&slices[..n]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(w) => w,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.stalled_since.get_or_insert_with(Instant::now);
                        return Ok(false);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            self.consume(written);
        }
        if self.rest.capacity() > 0 {
            self.rest = VecDeque::new();
        }
        Ok(true)
    }

    fn consume(&mut self, mut written: usize) {
        self.queued_bytes -= written;
        self.bound.sub(written);
        self.stalled_since = None;
        while written > 0 {
            let head_len = self.head.as_ref().map_or(0, Bytes::len);
            let head_left = head_len - self.head_written;
            if written >= head_left {
                written -= head_left;
                self.head = self.rest.pop_front();
                self.head_written = 0;
            } else {
                self.head_written += written;
                written = 0;
            }
        }
    }

    /// Sends FIN after whatever the kernel already holds.
    pub fn shutdown_write(&self) {
        let _ = socket2::SockRef::from(&*self.io).shutdown(std::net::Shutdown::Write);
    }

    /// Makes the eventual close a reset that frees kernel buffers at once (for peers that do
    /// not read, whose FIN could otherwise wait behind unsent data for minutes).
    pub fn abort(&mut self) {
        let sock = socket2::SockRef::from(&*self.io);
        let _ = sock.set_linger(Some(Duration::ZERO));
        let _ = sock.shutdown(std::net::Shutdown::Both);
        self.head = None;
        self.rest = VecDeque::new();
        self.bound.sub(self.queued_bytes);
        self.queued_bytes = 0;
        self.head_written = 0;
        self.stalled_since = None;
    }
}

/// Socket options for an upgraded connection: no Nagle delay, and a capped kernel send buffer
/// so that a client that stops reading pins a bounded amount of kernel memory.
pub fn prepare_socket(io: &TcpStream, sndbuf: usize) {
    let _ = io.set_nodelay(true);
    if sndbuf > 0 {
        let _ = socket2::SockRef::from(io).set_send_buffer_size(sndbuf);
    }
}

/// Writes a whole buffer to the socket (used for handshake responses only).
pub async fn write_all(io: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        io.writable().await?;
        match io.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
