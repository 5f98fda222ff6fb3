//! Engine.IO v4 packets: decoding what clients send (WebSocket messages and HTTP long-polling
//! payloads) and encoding what the server sends, once, in a form both transports can use.
//!
//! A text packet is a type digit followed by its data: `0` open, `1` close, `2` ping, `3` pong,
//! `4` message, `5` upgrade, `6` noop. Over WebSocket a binary message is a binary frame with
//! no type prefix. A long-polling payload joins packets with `\x1e`, binary ones as `b` +
//! base64.

use bytes::Bytes;

use super::base64;
use crate::websocket as transport;

/// The record separator between packets of a long-polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// A packet a client sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet {
    /// `1`: the client closes the session.
    Close,
    /// `2` (data: `probe` during an upgrade).
    Ping(String),
    /// `3`: the answer to a server ping.
    Pong(String),
    /// `4`: a text message for the higher layer.
    Text(String),
    /// A binary message for the higher layer.
    Binary(Bytes),
    /// `5`: the client completes an upgrade.
    Upgrade,
    /// `6`: nothing.
    Noop,
}

/// Why a client packet or payload was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Empty packet.
    Empty,
    /// Not one of the packet types a client may send.
    UnknownType(char),
    /// A `b` packet whose base64 is invalid.
    BadBase64,
    /// A payload that is not UTF-8.
    NotUtf8,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty packet"),
            DecodeError::UnknownType(c) => write!(f, "unknown packet type {c:?}"),
            DecodeError::BadBase64 => f.write_str("invalid base64 in a binary packet"),
            DecodeError::NotUtf8 => f.write_str("payload is not UTF-8"),
        }
    }
}

/// Decodes a text packet (a WebSocket text message or one packet of a payload). `open` (`0`)
/// is never sent by a client and is refused.
pub fn decode_text(text: &str) -> Result<Packet, DecodeError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(DecodeError::Empty)?;
    let data = chars.as_str();
    Ok(match kind {
        '1' => Packet::Close,
        '2' => Packet::Ping(data.to_owned()),
        '3' => Packet::Pong(data.to_owned()),
        '4' => Packet::Text(data.to_owned()),
        '5' => Packet::Upgrade,
        '6' => Packet::Noop,
        other => return Err(DecodeError::UnknownType(other)),
    })
}

/// Decodes an HTTP long-polling payload (a POST body) into its packets, strictly: one bad
/// packet refuses the whole payload.
pub fn decode_payload(body: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|_| DecodeError::NotUtf8)?;
    text.split(SEPARATOR as char)
        .map(|part| match part.strip_prefix('b') {
            Some(b64) => base64::decode(b64.as_bytes())
                .map(|data| Packet::Binary(Bytes::from(data)))
                .ok_or(DecodeError::BadBase64),
            None => decode_text(part),
        })
        .collect()
}

/// A packet for a client, encoded once and shareable between sessions (cloning is a reference
/// count): the bytes of a complete WebSocket frame whose payload is the packet. Long-polling
/// sends the payload part (base64 for binary packets), so one encoding serves both transports.
#[derive(Clone, Debug)]
pub struct Outgoing {
    frame: Bytes,
    header: u8,
    binary: bool,
}

impl Outgoing {
    /// A text packet from its complete text (type digit included), e.g. `2` or `4hello`.
    pub fn packet(text: &[u8]) -> Outgoing {
        Outgoing::build(false, &[text])
    }

    /// A message packet: `4` followed by `text`.
    pub fn message(text: &str) -> Outgoing {
        Outgoing::build(false, &[b"4", text.as_bytes()])
    }

    /// A binary message packet.
    pub fn binary(data: &[u8]) -> Outgoing {
        Outgoing::build(true, &[data])
    }

    /// This text packet (a Socket.IO EVENT, ending with its argument array's `]`) with one
    /// more pre-encoded JSON argument at the end: e.g. a recipient's own offset on a packet
    /// encoded once for everyone. One copy, no re-encoding.
    pub fn with_last_arg(&self, raw_arg: &str) -> Outgoing {
        let payload = self.payload();
        debug_assert!(!self.binary && payload.ends_with(b"]"));
        let open = &payload[..payload.len().saturating_sub(1)];
        Outgoing::build(false, &[open, b",", raw_arg.as_bytes(), b"]"])
    }

    fn build(binary: bool, parts: &[&[u8]]) -> Outgoing {
        let frame = transport::data_frame(binary, parts);
        let len: usize = parts.iter().map(|p| p.len()).sum();
        Outgoing {
            header: transport::header_len(len) as u8,
            frame,
            binary,
        }
    }

    /// The packet as a complete WebSocket frame.
    pub fn ws_frame(&self) -> Bytes {
        self.frame.clone()
    }

    /// The packet itself (the frame's payload): text, or the raw bytes of a binary packet.
    pub fn payload(&self) -> &[u8] {
        &self.frame[self.header as usize..]
    }

    /// True for a binary packet.
    pub fn is_binary(&self) -> bool {
        self.binary
    }

    /// Bytes this packet takes in a long-polling payload.
    pub fn polling_len(&self) -> usize {
        let len = self.frame.len() - self.header as usize;
        if self.binary {
            1 + base64::encoded_len(len)
        } else {
            len
        }
    }

    /// Bytes this packet takes in a WebSocket write queue.
    pub fn frame_len(&self) -> usize {
        self.frame.len()
    }
}

/// The server's ping (`2`).
pub fn ping() -> Outgoing {
    Outgoing::packet(b"2")
}

/// The answer to an upgrade probe (`3probe`).
pub fn pong_probe() -> Outgoing {
    Outgoing::packet(b"3probe")
}

/// The close packet (`1`).
pub fn close() -> Outgoing {
    Outgoing::packet(b"1")
}

/// The noop packet (`6`), which ends a pending long-polling request during an upgrade.
pub fn noop() -> Outgoing {
    Outgoing::packet(b"6")
}

/// The open packet (`0{...}`): the session id and the parameters the client must follow.
pub fn open(
    sid: &str,
    upgrades: &[&str],
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: usize,
) -> Outgoing {
    let body = serde_json::json!({
        "sid": sid,
        "upgrades": upgrades,
        "pingInterval": ping_interval_ms,
        "pingTimeout": ping_timeout_ms,
        "maxPayload": max_payload,
    });
    let mut text = b"0".to_vec();
    text.extend_from_slice(body.to_string().as_bytes());
    Outgoing::packet(&text)
}

/// Encodes packets as one long-polling payload (`\x1e`-separated, binary as `b` + base64).
pub fn encode_payload<'a>(packets: impl IntoIterator<Item = &'a Outgoing>) -> Bytes {
    let mut out = Vec::new();
    for (i, packet) in packets.into_iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        if packet.binary {
            out.push(b'b');
            base64::encode_into(packet.payload(), &mut out);
        } else {
            out.extend_from_slice(packet.payload());
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_argument_is_appended_to_an_encoded_event() {
        let shared = Outgoing::message(r#"2["chat-message",{"a":1}]"#);
        let own = shared.with_last_arg(r#""17""#);
        assert_eq!(own.payload(), br#"42["chat-message",{"a":1},"17"]"#);
        assert_eq!(&own.ws_frame()[2..], own.payload(), "a complete frame");
    }

    use super::*;

    #[test]
    fn decodes_text_packets() {
        assert_eq!(decode_text("4hello"), Ok(Packet::Text("hello".into())));
        assert_eq!(decode_text("4"), Ok(Packet::Text(String::new())));
        assert_eq!(decode_text("2probe"), Ok(Packet::Ping("probe".into())));
        assert_eq!(decode_text("3"), Ok(Packet::Pong(String::new())));
        assert_eq!(decode_text("1"), Ok(Packet::Close));
        assert_eq!(decode_text("5"), Ok(Packet::Upgrade));
        assert_eq!(decode_text("6"), Ok(Packet::Noop));
        assert_eq!(decode_text(""), Err(DecodeError::Empty));
        assert_eq!(decode_text("abc"), Err(DecodeError::UnknownType('a')));
        assert_eq!(decode_text("0{}"), Err(DecodeError::UnknownType('0')));
        assert_eq!(decode_text("7"), Err(DecodeError::UnknownType('7')));
    }

    #[test]
    fn decodes_payloads_strictly() {
        assert_eq!(
            decode_payload(b"4hello\x1ebAQIDBA==\x1e3").unwrap(),
            vec![
                Packet::Text("hello".into()),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
                Packet::Pong(String::new())
            ]
        );
        assert_eq!(
            decode_payload(b"4a\x1eabc"),
            Err(DecodeError::UnknownType('a'))
        );
        assert_eq!(decode_payload(b""), Err(DecodeError::Empty));
        assert_eq!(decode_payload(b"4a\x1e"), Err(DecodeError::Empty));
        assert_eq!(decode_payload(b"b!!!!"), Err(DecodeError::BadBase64));
        assert_eq!(decode_payload(&[b'4', 0xff]), Err(DecodeError::NotUtf8));
    }

    #[test]
    fn one_encoding_serves_both_transports() {
        let text = Outgoing::message("hello");
        assert_eq!(&text.ws_frame()[..], b"\x81\x064hello");
        assert_eq!(text.payload(), b"4hello");
        let bin = Outgoing::binary(&[1, 2, 3, 4]);
        assert_eq!(&bin.ws_frame()[..], &[0x82, 4, 1, 2, 3, 4]);
        assert_eq!(bin.polling_len(), "bAQIDBA==".len());
        let big = Outgoing::message(&"x".repeat(300));
        assert_eq!(big.payload().len(), 301);
        assert_eq!(
            &encode_payload([&text, &bin, &ping()])[..],
            b"4hello\x1ebAQIDBA==\x1e2"
        );
    }

    #[test]
    fn clones_share_one_encoding() {
        let packet = Outgoing::message("[\"notification\",{}]");
        let copy = packet.clone();
        assert_eq!(packet.ws_frame().as_ptr(), copy.ws_frame().as_ptr());
        assert_eq!(packet.payload().as_ptr(), copy.payload().as_ptr());
    }

    #[test]
    fn open_packet_lists_parameters() {
        let open = open("abc", &["websocket"], 300, 200, 1_000_000);
        let text = std::str::from_utf8(open.payload()).unwrap();
        assert!(text.starts_with('0'));
        let v: serde_json::Value = serde_json::from_str(&text[1..]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"sid":"abc","upgrades":["websocket"],"pingInterval":300,
                "pingTimeout":200,"maxPayload":1000000})
        );
    }
}
