//! One benchmark client connection: connect, handshake, wait for the server's `connected`,
//! optionally join a room, then pump frames to a callback until the connection ends. The same
//! code drives the hub (native protocol) and the socket.io baseline (Engine.IO framing), so
//! both servers are measured through one client code path.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr},
    rc::Rc,
    time::Duration,
};

use tokio::net::TcpStream;

use crate::{
    proto::{Incoming, Proto},
    ws::{self, op, Decoder},
};

/// How long connecting, the handshake and each setup reply may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A connected, confirmed session.
pub struct Client {
    /// The socket (shared with a sender task when the scenario writes from elsewhere).
    pub stream: Rc<TcpStream>,
    decoder: Decoder,
    proto: Proto,
}

/// Connects as dev-mode user `user` and waits for `connected`.
pub async fn open(
    target: SocketAddr,
    source: Option<Ipv4Addr>,
    proto: Proto,
    user: &str,
) -> io::Result<Client> {
    open_with(target, source, None, proto, user).await
}

/// [`open`] on a socket with a receive buffer of `rcvbuf` bytes when given.
pub async fn open_with(
    target: SocketAddr,
    source: Option<Ipv4Addr>,
    rcvbuf: Option<u32>,
    proto: Proto,
    user: &str,
) -> io::Result<Client> {
    open_path(target, source, rcvbuf, proto, (&proto.path(user), user)).await
}

/// Connects a native client with a token (`/ws?token=...`) and waits for `connected`.
pub async fn open_with_token(
    target: SocketAddr,
    source: Option<Ipv4Addr>,
    token: &str,
) -> io::Result<Client> {
    let path = format!("/ws?token={token}");
    open_path(target, source, None, Proto::Native, (&path, "")).await
}

/// Connects on `path` (the Socket.IO CONNECT names `user`) and waits for `connected`.
async fn open_path(
    target: SocketAddr,
    source: Option<Ipv4Addr>,
    rcvbuf: Option<u32>,
    proto: Proto,
    (path, user): (&str, &str),
) -> io::Result<Client> {
    let setup = async {
        let mut stream = ws::connect(target, source, rcvbuf).await?;
        let host = target.to_string();
        let leftover = ws::handshake(&mut stream, &host, path).await?;
        let mut client = Client {
            stream: Rc::new(stream),
            decoder: Decoder::with(Vec::new()),
            proto,
        };
        let connect = Proto::connect_packet(user);
        client
            .expect(Some(leftover), Incoming::Connected, connect.as_bytes())
            .await?;
        Ok(client)
    };
    tokio::time::timeout(SETUP_TIMEOUT, setup)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no `connected` in time"))?
}

impl Client {
    /// Joins `room` and waits for `joined`.
    pub async fn join(&mut self, room: &str) -> io::Result<()> {
        write_all(&self.stream, &ws::text(self.proto.join(room).as_bytes())).await?;
        tokio::time::timeout(SETUP_TIMEOUT, self.expect(None, Incoming::Joined, b"40"))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no `joined` in time"))?
    }

    /// Reads until a frame classified as `want` arrives; answers pings (and an Engine.IO open
    /// with `connect`, the namespace CONNECT) meanwhile and skips everything else.
    async fn expect(
        &mut self,
        first: Option<Vec<u8>>,
        want: Incoming,
        connect: &[u8],
    ) -> io::Result<()> {
        let mut pending = first.unwrap_or_default();
        loop {
            let mut found = false;
            let mut replies: Vec<u8> = Vec::new();
            let mut failure = None;
            let proto = self.proto;
            self.decoder
                .feed(&pending, |opcode, payload| {
                    if found {
                        return;
                    }
                    match opcode {
                        op::TEXT => match proto.classify(payload) {
                            Incoming::EioOpen => ws::client_frame(&mut replies, op::TEXT, connect),
                            Incoming::EioPing => ws::client_frame(&mut replies, op::TEXT, b"3"),
                            Incoming::Error if want != Incoming::Error => {
                                failure = Some(String::from_utf8_lossy(payload).into_owned())
                            }
                            got => found = got == want,
                        },
                        op::PING => ws::client_frame(&mut replies, 0xA, payload),
                        op::CLOSE => failure = Some("server closed the connection".into()),
                        _ => {}
                    }
                })
                .map_err(|e| io::Error::other(e.to_string()))?;
            if !replies.is_empty() {
                write_all(&self.stream, &replies).await?;
            }
            if let Some(why) = failure {
                return Err(io::Error::other(why));
            }
            if found {
                return Ok(());
            }
            pending = read_some(&self.stream).await?;
        }
    }

    /// Hands the socket over to [`pump`].
    pub fn into_parts(self) -> (Rc<TcpStream>, Decoder, Proto) {
        (self.stream, self.decoder, self.proto)
    }
}

async fn read_some(stream: &TcpStream) -> io::Result<Vec<u8>> {
    loop {
        stream.readable().await?;
        let mut chunk = [0u8; 4096];
        match stream.try_read(&mut chunk) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ))
            }
            Ok(n) => return Ok(chunk[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Writes a whole buffer to a shared non-blocking socket.
pub async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match stream.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Why a pumped connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The server closed it (close frame or EOF).
    Closed,
    /// A read or write failed, or the server sent garbage.
    Failed(String),
}

/// Size of the buffer each read goes through.
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// One read buffer per thread, shared by every connection pumped on it: a connection
    /// holds no buffer of its own between reads.
    static CHUNK: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; READ_CHUNK]);
}

/// What one read produced.
enum Read {
    Frames { replies: Vec<u8>, closed: bool },
    Again,
    End(End),
}

/// Reads frames until the connection ends: benchmark messages go to `on_bench(bt, bs)`, pings
/// are answered, everything else is skipped.
pub async fn pump(
    stream: Rc<TcpStream>,
    decoder: Decoder,
    proto: Proto,
    mut on_bench: impl FnMut(u64, u64),
) -> End {
    pump_frames(stream, decoder, proto, move |incoming, _| {
        if let Incoming::Bench { bt, bs } = incoming {
            on_bench(bt, bs)
        }
    })
    .await
}

/// Like [`pump`], but every text frame goes to `on_frame(kind, payload)` (benchmark messages,
/// errors, replies, ...), for scenarios that check more than benchmark markers.
pub async fn pump_frames(
    stream: Rc<TcpStream>,
    mut decoder: Decoder,
    proto: Proto,
    mut on_frame: impl FnMut(Incoming, &[u8]),
) -> End {
    loop {
        if let Err(e) = stream.readable().await {
            return End::Failed(e.to_string());
        }
        let read = CHUNK.with_borrow_mut(|chunk| {
            let n = match stream.try_read(chunk) {
                Ok(0) => return Read::End(End::Closed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read::Again,
                Err(e) => return Read::End(End::Failed(e.to_string())),
            };
            let mut replies: Vec<u8> = Vec::new();
            let mut closed = false;
            let fed = decoder.feed(&chunk[..n], |opcode, payload| match opcode {
                op::TEXT => match proto.classify(payload) {
                    Incoming::EioPing => ws::client_frame(&mut replies, op::TEXT, b"3"),
                    other => on_frame(other, payload),
                },
                op::PING => ws::client_frame(&mut replies, 0xA, payload),
                op::CLOSE => closed = true,
                _ => {}
            });
            match fed {
                Ok(()) => Read::Frames { replies, closed },
                Err(e) => Read::End(End::Failed(e.to_string())),
            }
        });
        match read {
            Read::Again => {}
            Read::End(end) => return end,
            Read::Frames { replies, closed } => {
                if !replies.is_empty() {
                    if let Err(e) = write_all(&stream, &replies).await {
                        return End::Failed(e.to_string());
                    }
                }
                if closed {
                    return End::Closed;
                }
            }
        }
    }
}
