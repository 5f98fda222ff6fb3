//! A minimal WebSocket client (RFC 6455) for many connections at once: the handshake, masked
//! client frames, and a zero-copy decoder of server frames. Per received frame the work is a
//! header parse; the scenario decides what to do with the payload.
//!
//! Hand-rolled instead of `tokio-tungstenite` so that the receiving side costs as little CPU
//! per frame as possible (the load generator shares one core with Redis) and so that an idle
//! connection holds no buffer.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    os::fd::AsRawFd,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

/// Opcodes of the frames the client handles.
pub mod op {
    /// Text frame.
    pub const TEXT: u8 = 0x1;
    /// Close frame.
    pub const CLOSE: u8 = 0x8;
    /// Ping frame.
    pub const PING: u8 = 0x9;
}

/// The mask every client frame uses. RFC 6455 wants it unpredictable (against cache poisoning
/// through proxies); a fixed non-zero key keeps the server's unmasking work realistic.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Connects to `target`, from `source` (any port) when given, and sets `TCP_NODELAY`.
///
/// With a source address the port is chosen at `connect` time (`IP_BIND_ADDRESS_NO_PORT`), so
/// each source address offers the whole ephemeral port range per destination.
///
/// With `rcvbuf`, the socket's receive buffer is set to that many bytes before connecting, so
/// the advertised window stays small (a client that stops reading fills it quickly).
pub async fn connect(
    target: SocketAddr,
    source: Option<Ipv4Addr>,
    rcvbuf: Option<u32>,
) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(bytes) = rcvbuf {
        socket.set_recv_buffer_size(bytes)?;
    }
    if let Some(ip) = source {
        let one: libc::c_int = 1;
        // SAFETY: a valid fd and a pointer to an int of the size we pass.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        socket.bind(SocketAddr::V4(SocketAddrV4::new(ip, 0)))?;
    }
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends the upgrade request for `path` and reads the `101` answer. Returns whatever arrived
/// after the response head (the first frames may come in the same segment).
pub async fn handshake(stream: &mut TcpStream, host: &str, path: &str) -> io::Result<Vec<u8>> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed during the WebSocket handshake",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                let line = buf.split(|b| *b == b'\r').next().unwrap_or_default();
                return Err(io::Error::other(format!(
                    "upgrade refused: {}",
                    String::from_utf8_lossy(line)
                )));
            }
            return Ok(buf.split_off(end + 4));
        }
        if buf.len() > 16 * 1024 {
            return Err(io::Error::other("oversized handshake response"));
        }
    }
}

/// Appends one masked client frame with `opcode` and `payload` to `out`.
pub fn client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
}

/// A masked text frame.
pub fn text(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    client_frame(&mut out, op::TEXT, payload);
    out
}

/// Decodes server frames from a byte stream. Keeps bytes only while a frame is incomplete.
#[derive(Default)]
pub struct Decoder {
    partial: Vec<u8>,
}

/// Decoding failed: the server sent something that is not a valid server frame.
#[derive(Debug)]
pub struct BadFrame(&'static str);

impl std::fmt::Display for BadFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Decoder {
    /// A decoder starting with bytes already received (after the handshake).
    pub fn with(initial: Vec<u8>) -> Decoder {
        Decoder { partial: initial }
    }

    /// Feeds received bytes; calls `on_frame(opcode, payload)` for each complete frame.
    pub fn feed(
        &mut self,
        data: &[u8],
        mut on_frame: impl FnMut(u8, &[u8]),
    ) -> Result<(), BadFrame> {
        if self.partial.is_empty() {
            let used = decode_all(data, &mut on_frame)?;
            if used < data.len() {
                self.partial.extend_from_slice(&data[used..]);
            }
        } else {
            self.partial.extend_from_slice(data);
            let used = decode_all(&self.partial, &mut on_frame)?;
            self.partial.drain(..used);
            if self.partial.is_empty() {
                self.partial = Vec::new();
            }
        }
        Ok(())
    }
}

/// Decodes every complete frame at the start of `buf`; returns the bytes consumed.
fn decode_all(buf: &[u8], on_frame: &mut impl FnMut(u8, &[u8])) -> Result<usize, BadFrame> {
    let mut at = 0;
    while let Some((opcode, start, end)) = frame_at(&buf[at..])? {
        on_frame(opcode, &buf[at + start..at + end]);
        at += end;
    }
    Ok(at)
}

/// One server frame at the start of `buf`: (opcode, payload start, frame end).
fn frame_at(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, BadFrame> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[1] & 0x80 != 0 {
        return Err(BadFrame("server frames must not be masked"));
    }
    let (len, start) = match buf[1] & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    if len > 16 * 1024 * 1024 {
        return Err(BadFrame("frame over 16 MiB"));
    }
    let end = start + len;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((buf[0] & 0x0F, start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x81];
        if payload.len() < 126 {
            out.push(payload.len() as u8);
        } else {
            out.push(126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_frames_split_anywhere() {
        let mut bytes = server_frame(b"hello");
        bytes.extend(server_frame(&[b'x'; 300]));
        bytes.extend([0x89, 0]);
        for split in 0..bytes.len() {
            let mut d = Decoder::default();
            let mut seen = Vec::new();
            d.feed(&bytes[..split], |op, p| seen.push((op, p.len())))
                .unwrap();
            d.feed(&bytes[split..], |op, p| seen.push((op, p.len())))
                .unwrap();
            assert_eq!(seen, vec![(1, 5), (1, 300), (9, 0)], "split at {split}");
            assert!(d.partial.is_empty());
        }
    }

    #[test]
    fn masks_client_frames() {
        let f = text(b"abcd");
        assert_eq!(&f[..2], &[0x81, 0x84]);
        let unmasked: Vec<u8> = f[6..].iter().zip(MASK).map(|(b, m)| b ^ m).collect();
        assert_eq!(unmasked, b"abcd");
    }

    #[test]
    fn refuses_masked_server_frames() {
        assert!(Decoder::default()
            .feed(&[0x81, 0x81, 0, 0, 0, 0, b'a'], |_, _| {})
            .is_err());
    }
}
