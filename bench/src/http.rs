//! A keep-alive HTTP/1.1 client over one tokio `TcpStream`, for scenarios that drive the hub's
//! HTTP API at a few thousand requests per second (`POST /api/jobs`). One request at a time per
//! connection; responses must carry `Content-Length` (actix-web's JSON replies do). A few dozen
//! lines instead of a client crate: the benchmark needs nothing more, and this adds no
//! dependency.

use std::{io, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// How long one request may take, connecting included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// One keep-alive connection; reconnects when the server closed it.
pub struct HttpConn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    /// Connections opened so far (1 unless the server closed some).
    pub connects: u64,
}

impl HttpConn {
    /// A connection to `addr` (opened on the first request).
    pub fn new(addr: SocketAddr) -> HttpConn {
        HttpConn {
            addr,
            stream: None,
            buf: Vec::with_capacity(1024),
            connects: 0,
        }
    }

    /// `POST path` with a JSON body and an optional bearer key. A request that fails on a
    /// reused connection (the server may have closed it while idle) is sent once more on a
    /// new one; callers should only send idempotent requests.
    pub async fn post_json(
        &mut self,
        path: &str,
        body: &str,
        bearer: Option<&str>,
    ) -> io::Result<Response> {
        let request = request_text(self.addr, path, body, bearer);
        let reused = self.stream.is_some();
        match self.exchange(request.as_bytes()).await {
            Err(_) if reused => {
                self.stream = None;
                self.exchange(request.as_bytes()).await
            }
            other => other,
        }
    }

    /// `POST path` with a JSON body, sent once: a request that fails is not sent again (it
    /// may have run), for requests that are not idempotent.
    pub async fn post_once(
        &mut self,
        path: &str,
        body: &str,
        bearer: Option<&str>,
    ) -> io::Result<Response> {
        let request = request_text(self.addr, path, body, bearer);
        self.exchange(request.as_bytes()).await
    }

    async fn exchange(&mut self, request: &[u8]) -> io::Result<Response> {
        let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
            if self.stream.is_none() {
                let s = TcpStream::connect(self.addr).await?;
                s.set_nodelay(true)?;
                self.stream = Some(s);
                self.connects += 1;
            }
            let stream = self.stream.as_mut().expect("connected above");
            stream.write_all(request).await?;
            read_response(stream, &mut self.buf).await
        })
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no HTTP response from {} in {REQUEST_TIMEOUT:?}", self.addr),
            ))
        });
        match result {
            Ok((response, keep_alive)) => {
                if !keep_alive {
                    self.stream = None;
                }
                Ok(response)
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }
}

/// A `POST` request with a JSON body.
fn request_text(addr: SocketAddr, path: &str, body: &str, bearer: Option<&str>) -> String {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(key) = bearer {
        request.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    request
}

/// Reads one response; returns it and whether the connection stays open.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<(Response, bool)> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::other("oversized HTTP response head"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| io::Error::other("response head is not UTF-8"))?;
    let (status, length, keep_alive) = parse_head(head)?;
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside the response body",
            ));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    if body.len() > length {
        return Err(io::Error::other(
            "more bytes than the response's Content-Length",
        ));
    }
    Ok((Response { status, body }, keep_alive))
}

/// Status, `Content-Length` and keep-alive of a response head.
fn parse_head(head: &str) -> io::Result<(u16, usize, bool)> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line `{status_line}`")))?;
    let mut length = None;
    let mut keep_alive = true;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse()
                    .map_err(|_| io::Error::other(format!("bad Content-Length `{value}`")))?,
            );
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(io::Error::other(format!(
                "unsupported Transfer-Encoding `{value}` (the client needs Content-Length)"
            )));
        }
    }
    let length = length.ok_or_else(|| io::Error::other("response without Content-Length"))?;
    Ok((status, length, keep_alive))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_response_head() {
        let head =
            "HTTP/1.1 202 Accepted\r\ncontent-length: 12\r\ncontent-type: application/json\r\n\r\n";
        assert_eq!(parse_head(head).unwrap(), (202, 12, true));
        let close = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        assert_eq!(parse_head(close).unwrap(), (400, 0, false));
        assert!(parse_head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head("HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_head("garbage\r\n\r\n").is_err());
    }
}
