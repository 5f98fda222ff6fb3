//! WebSocket (RFC 6455) framing, with no I/O: a [`Decoder`] turns the bytes a client sent
//! into messages (fragments reassembled, control frames, every protocol violation with its
//! close code), and the encoders build whole server frames once, to be shared by every
//! recipient. The hub's transport (`hub_actors::transport`) feeds the decoder from the socket
//! and writes the encoded frames.

use bytes::{BufMut, Bytes, BytesMut};

/// WebSocket close codes the hub uses.
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error (bad framing).
    pub const PROTOCOL: u16 = 1002;
    /// Invalid UTF-8 in a text message.
    pub const INVALID_DATA: u16 = 1007;
    /// Policy violation: too many bad or rate-limited frames.
    pub const POLICY: u16 = 1008;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Internal error.
    pub const INTERNAL: u16 = 1011;
    /// Try again later: the session could not keep up (slow consumer).
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// Authentication failed or timed out.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The session's token expired and no fresh one came (`auth` frame) before.
    pub const TOKEN_EXPIRED: u16 = 4002;
    /// The application disconnected the user (`POST /api/users/{userId}/disconnect`).
    pub const DISCONNECTED: u16 = 4003;
}

/// Something the peer sent, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent {
    /// A complete text message (fragments reassembled, UTF-8 checked).
    Text(String),
    /// A complete binary message (the hub does not accept binary; only its size is kept).
    Binary(usize),
    /// A ping; the payload must be echoed in a pong.
    Ping(Vec<u8>),
    /// A pong (answer to the server heartbeat).
    Pong,
    /// A close frame with its code, if any.
    Close(Option<u16>),
    /// The peer broke the protocol; close with this code and reason.
    Violation(u16, &'static str),
}

/// A decoded message with binary payloads kept (Engine.IO carries binary messages).
#[derive(Debug, PartialEq, Eq)]
pub enum WsMessage {
    /// Anything but a binary message (never [`WsEvent::Binary`]).
    Event(WsEvent),
    /// A complete binary message (fragments reassembled).
    Binary(Vec<u8>),
}

impl WsMessage {
    /// The [`WsEvent`] of the native protocol, which keeps only a binary message's size.
    pub fn into_event(self) -> WsEvent {
        match self {
            WsMessage::Event(event) => event,
            WsMessage::Binary(data) => WsEvent::Binary(data.len()),
        }
    }
}

/// Decodes client frames into messages. Holds no buffer between messages.
#[derive(Debug)]
pub struct Decoder {
    /// Bytes of an incomplete frame (empty, with no allocation, between frames).
    partial: Vec<u8>,
    /// A fragmented message being reassembled: (is_text, data).
    message: Option<(bool, Vec<u8>)>,
    max_message: usize,
}

impl Decoder {
    /// A decoder for messages of at most `max_message` bytes; `leftover` holds bytes read
    /// past the HTTP upgrade request.
    pub fn new(leftover: Vec<u8>, max_message: usize) -> Self {
        Decoder {
            partial: leftover,
            message: None,
            max_message,
        }
    }

    /// Adds bytes read from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
    }

    /// Forgets everything buffered (after a violation the rest of the input is discarded).
    pub fn discard(&mut self) {
        self.partial = Vec::new();
        self.message = None;
    }

    /// Decodes the next event out of `partial`, if a whole one is there.
    pub fn next_message(&mut self) -> Option<WsMessage> {
        loop {
            let (frame, consumed) = match parse_frame(&self.partial, self.max_message) {
                Parse::Incomplete => return None,
                Parse::Violation(code, why) => {
                    return Some(WsMessage::Event(WsEvent::Violation(code, why)))
                }
                Parse::Frame(frame, consumed) => (frame, consumed),
            };
            self.partial.drain(..consumed);
            if self.partial.is_empty() {
                self.partial = Vec::new();
            }
            if let Some(event) = self.assemble(frame) {
                return Some(event);
            }
        }
    }

    /// Turns a frame into an event; `None` for a fragment that completes nothing yet.
    fn assemble(&mut self, frame: Frame) -> Option<WsMessage> {
        let Frame {
            fin,
            opcode,
            payload,
        } = frame;
        let event = |e| Some(WsMessage::Event(e));
        match opcode {
            OP_PING => event(WsEvent::Ping(payload)),
            OP_PONG => event(WsEvent::Pong),
            OP_CLOSE => event(close_event(&payload)),
            OP_TEXT | OP_BINARY => {
                if self.message.is_some() {
                    return event(WsEvent::Violation(
                        close::PROTOCOL,
                        "new message inside a fragmented one",
                    ));
                }
                let text = opcode == OP_TEXT;
                if fin {
                    Some(complete(text, payload))
                } else {
                    self.message = Some((text, payload));
                    None
                }
            }
            _ => {
                // OP_CONTINUATION (parse_frame rejects every other opcode)
                let Some((text, mut data)) = self.message.take() else {
                    return event(WsEvent::Violation(
                        close::PROTOCOL,
                        "continuation without a message",
                    ));
                };
                if data.len() + payload.len() > self.max_message {
                    return event(WsEvent::Violation(close::TOO_BIG, "message too big"));
                }
                data.extend_from_slice(&payload);
                if fin {
                    Some(complete(text, data))
                } else {
                    self.message = Some((text, data));
                    None
                }
            }
        }
    }
}

fn complete(text: bool, data: Vec<u8>) -> WsMessage {
    if !text {
        return WsMessage::Binary(data);
    }
    WsMessage::Event(match String::from_utf8(data) {
        Ok(s) => WsEvent::Text(s),
        Err(_) => WsEvent::Violation(close::INVALID_DATA, "invalid UTF-8 in a text message"),
    })
}

fn close_event(payload: &[u8]) -> WsEvent {
    match payload.len() {
        0 => WsEvent::Close(None),
        1 => WsEvent::Violation(close::PROTOCOL, "close frame with a 1-byte payload"),
        _ => WsEvent::Close(Some(u16::from_be_bytes([payload[0], payload[1]]))),
    }
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

enum Parse {
    Incomplete,
    Frame(Frame, usize),
    Violation(u16, &'static str),
}

/// Parses one client (masked) frame from the start of `buf`. A frame declaring more than
/// `max` payload bytes is refused as soon as its header arrives, before its payload is read.
fn parse_frame(buf: &[u8], max: usize) -> Parse {
    if buf.len() < 2 {
        return Parse::Incomplete;
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Parse::Violation(close::PROTOCOL, "reserved bits set");
    }
    let opcode = b0 & 0x0F;
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Parse::Violation(close::PROTOCOL, "unknown opcode");
    }
    if b1 & 0x80 == 0 {
        return Parse::Violation(close::PROTOCOL, "client frames must be masked");
    }
    let (len, mut at) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Parse::Incomplete;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Parse::Incomplete;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    if opcode >= OP_CLOSE && (!fin || len > 125) {
        return Parse::Violation(close::PROTOCOL, "bad control frame");
    }
    if len > max as u64 {
        return Parse::Violation(close::TOO_BIG, "message too big");
    }
    let len = len as usize;
    if buf.len() < at + 4 + len {
        return Parse::Incomplete;
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    at += 4;
    let payload = buf[at..at + len]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i & 3])
        .collect();
    Parse::Frame(
        Frame {
            fin,
            opcode,
            payload,
        },
        at + len,
    )
}

fn frame_header(dst: &mut BytesMut, opcode: u8, len: usize) {
    dst.put_u8(0x80 | opcode);
    if len < 126 {
        dst.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        dst.put_u8(126);
        dst.put_u16(len as u16);
    } else {
        dst.put_u8(127);
        dst.put_u64(len as u64);
    }
}

/// Encodes a whole server text frame once; the result is shared by every recipient.
pub fn text_frame(payload: &[u8]) -> Bytes {
    data_frame(false, &[payload])
}

/// Encodes a whole server binary frame.
pub fn binary_frame(payload: &[u8]) -> Bytes {
    data_frame(true, &[payload])
}

/// Encodes a server text (or binary) frame whose payload is the concatenation of `parts`, in
/// one allocation. The payload starts at [`header_len`] of its length.
pub fn data_frame(binary: bool, parts: &[&[u8]]) -> Bytes {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut dst = BytesMut::with_capacity(len + header_len(len));
    frame_header(&mut dst, if binary { OP_BINARY } else { OP_TEXT }, len);
    for part in parts {
        dst.extend_from_slice(part);
    }
    dst.freeze()
}

/// Length of the header of a server frame with a `len`-byte payload.
pub fn header_len(len: usize) -> usize {
    if len < 126 {
        2
    } else if len <= u16::MAX as usize {
        4
    } else {
        10
    }
}

/// Encodes a close frame (reason clipped to fit a control frame).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason[..end];
    let mut dst = BytesMut::with_capacity(reason.len() + 4);
    frame_header(&mut dst, OP_CLOSE, reason.len() + 2);
    dst.put_u16(code);
    dst.extend_from_slice(reason.as_bytes());
    dst.freeze()
}

/// Encodes a pong echoing a ping's payload.
pub fn pong_frame(payload: &[u8]) -> Bytes {
    let mut dst = BytesMut::with_capacity(payload.len() + 2);
    frame_header(&mut dst, OP_PONG, payload.len());
    dst.extend_from_slice(payload);
    dst.freeze()
}

/// The server heartbeat ping (empty payload).
pub fn ping_frame() -> Bytes {
    Bytes::from_static(&[0x80 | OP_PING, 0])
}

/// The `101 Switching Protocols` response for a `Sec-WebSocket-Accept` value.
pub fn switching_protocols(accept: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ",
    );
    out.extend_from_slice(accept);
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// A plain HTTP error response (JSON body, connection closed) for a refused upgrade.
pub fn http_error(status: u16, reason: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    fn parse_all(bytes: &[u8], max: usize) -> Vec<String> {
        let mut buf = bytes.to_vec();
        let mut out = vec![];
        loop {
            match parse_frame(&buf, max) {
                Parse::Incomplete => return out,
                Parse::Violation(code, _) => {
                    out.push(format!("violation {code}"));
                    return out;
                }
                Parse::Frame(f, n) => {
                    out.push(format!(
                        "{} {} {}",
                        f.fin,
                        f.opcode,
                        String::from_utf8_lossy(&f.payload)
                    ));
                    buf.drain(..n);
                }
            }
        }
    }

    #[test]
    fn decodes_masked_frames() {
        let mut bytes = masked(OP_TEXT, true, b"hello");
        bytes.extend(masked(OP_PING, true, b"p"));
        assert_eq!(parse_all(&bytes, 100), vec!["true 1 hello", "true 9 p"]);
        let big = vec![b'a'; 300];
        assert_eq!(parse_all(&masked(OP_TEXT, true, &big), 1000).len(), 1);
    }

    #[test]
    fn refuses_oversized_frames_from_the_header() {
        let header_only = &masked(OP_TEXT, true, &vec![b'a'; 300])[..4];
        assert_eq!(parse_all(header_only, 200), vec!["violation 1009"]);
    }

    #[test]
    fn refuses_unmasked_and_reserved() {
        assert_eq!(parse_all(&[0x81, 0x01, b'a'], 10), vec!["violation 1002"]);
        assert_eq!(
            parse_all(&[0xC1, 0x81, 0, 0, 0, 0, b'a'], 10),
            vec!["violation 1002"]
        );
        assert_eq!(
            parse_all(&masked(0x3, true, b""), 10),
            vec!["violation 1002"]
        );
    }

    #[test]
    fn data_frames_concatenate_parts() {
        assert_eq!(data_frame(false, &[b"4", b"hi"]), text_frame(b"4hi"));
        assert_eq!(&binary_frame(&[1, 2])[..], &[0x82, 2, 1, 2]);
        for len in [0, 125, 126, 65_535, 65_536] {
            let frame = binary_frame(&vec![0; len]);
            assert_eq!(frame.len(), header_len(len) + len);
        }
    }

    #[test]
    fn encodes_length_forms() {
        assert_eq!(&text_frame(b"hi")[..2], &[0x81, 2]);
        assert_eq!(&text_frame(&[b'a'; 200])[..4], &[0x81, 126, 0, 200]);
        assert_eq!(text_frame(&vec![b'a'; 70_000])[1], 127);
        assert_eq!(
            &close_frame(1001, "bye")[..],
            &[0x88, 5, 0x03, 0xE9, b'b', b'y', b'e']
        );
    }
}

/// Fuzzing of the WebSocket frame parser (`make fuzz` raises the case count).
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    use crate::fuzz_cases as cases;

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

        /// Any bytes: a frame within the buffer and the limit, incomplete, or a violation.
        #[test]
        fn websocket_frames_from_arbitrary_bytes(
            mut buf in prop::collection::vec(any::<u8>(), 0..300),
            mask in any::<bool>(),
            max in 0usize..200,
        ) {
            if mask && buf.len() > 1 {
                buf[1] |= 0x80; // most real client frames are masked: get past that check
            }
            if let Parse::Frame(_, consumed) = parse_frame(&buf, max) {
                prop_assert!(consumed <= buf.len());
            }
        }
    }
}
