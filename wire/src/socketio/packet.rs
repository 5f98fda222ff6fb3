//! Socket.IO v5 packets: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]`.
//!
//! Decoding is strict, as the reference parser: an unknown type, a bad attachment count, an
//! invalid payload for the type (an EVENT must be a non-empty array starting with a
//! non-reserved event name, an ACK an array, a CONNECT an object, a DISCONNECT nothing) or a
//! placeholder naming no attachment is an error, and the connection is closed. Binary
//! attachments appear in the payload as `{"_placeholder":true,"num":n}` and travel as the
//! following `n + 1` binary messages.

use serde_json::Value;

/// Packet types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    /// `0`: connect to a namespace (client, with an optional auth object), or accepted
    /// (server, with `{sid}`).
    Connect = 0,
    /// `1`: leave a namespace.
    Disconnect = 1,
    /// `2`: an event.
    Event = 2,
    /// `3`: the answer to an event that asked for one.
    Ack = 3,
    /// `4`: connection to a namespace refused (server only).
    ConnectError = 4,
    /// `5`: an event with binary attachments.
    BinaryEvent = 5,
    /// `6`: an acknowledgement with binary attachments.
    BinaryAck = 6,
}

impl PacketType {
    fn from_char(c: u8) -> Option<PacketType> {
        Some(match c {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}

/// A decoded packet (its attachments, if any, follow as binary messages).
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    /// Type.
    pub kind: PacketType,
    /// Namespace (`/` when absent).
    pub nsp: String,
    /// Binary attachments that follow (binary types only).
    pub attachments: usize,
    /// Acknowledgement id.
    pub id: Option<u64>,
    /// The JSON payload.
    pub data: Option<Value>,
}

/// Why a packet was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Empty or unknown packet type.
    UnknownType,
    /// A binary packet without a valid `<n>-` attachment count, or too many attachments.
    BadAttachments,
    /// An ack id that is not a number that fits.
    BadId,
    /// The payload is not JSON.
    BadJson,
    /// The payload does not suit the packet type.
    InvalidPayload,
    /// A placeholder names no attachment.
    BadPlaceholder,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecodeError::UnknownType => "unknown packet type",
            DecodeError::BadAttachments => "illegal attachments",
            DecodeError::BadId => "invalid ack id",
            DecodeError::BadJson => "payload is not JSON",
            DecodeError::InvalidPayload => "invalid payload",
            DecodeError::BadPlaceholder => "placeholder without its attachment",
        })
    }
}

/// Event names a client may not use (they are the API's own events).
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Decodes a text packet; a binary one may declare at most `max_attachments` attachments.
pub fn decode(text: &str, max_attachments: usize) -> Result<Packet, DecodeError> {
    let bytes = text.as_bytes();
    let kind = bytes
        .first()
        .and_then(|&c| PacketType::from_char(c))
        .ok_or(DecodeError::UnknownType)?;
    let mut i = 1;
    let mut attachments = 0;
    if kind.is_binary() {
        let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || bytes.get(i + digits) != Some(&b'-') || digits > 6 {
            return Err(DecodeError::BadAttachments);
        }
        attachments = text[i..i + digits]
            .parse()
            .map_err(|_| DecodeError::BadAttachments)?;
        if attachments > max_attachments {
            return Err(DecodeError::BadAttachments);
        }
        i += digits + 1;
    }
    let mut nsp = "/".to_owned();
    if bytes.get(i) == Some(&b'/') {
        let end = text[i..].find(',').map_or(text.len(), |p| i + p);
        nsp = text[i..end].to_owned();
        i = (end + 1).min(text.len());
    }
    let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    let id = if digits > 0 {
        let id = text[i..i + digits]
            .parse()
            .map_err(|_| DecodeError::BadId)?;
        i += digits;
        Some(id)
    } else {
        None
    };
    let data = if i < text.len() {
        Some(serde_json::from_str::<Value>(&text[i..]).map_err(|_| DecodeError::BadJson)?)
    } else {
        None
    };
    check_payload(kind, id, &data)?;
    if let Some(data) = &data {
        check_placeholders(data, attachments)?;
    }
    Ok(Packet {
        kind,
        nsp,
        attachments,
        id,
        data,
    })
}

fn check_payload(
    kind: PacketType,
    id: Option<u64>,
    data: &Option<Value>,
) -> Result<(), DecodeError> {
    let valid = match kind {
        PacketType::Connect => matches!(data, None | Some(Value::Object(_))),
        PacketType::Disconnect => data.is_none(),
        PacketType::Event | PacketType::BinaryEvent => match data {
            Some(Value::Array(args)) => match args.first() {
                Some(Value::String(name)) => !RESERVED_EVENTS.contains(&name.as_str()),
                Some(Value::Number(_)) => true,
                _ => false,
            },
            _ => false,
        },
        PacketType::Ack | PacketType::BinaryAck => {
            id.is_some() && matches!(data, Some(Value::Array(_)))
        }
        PacketType::ConnectError => matches!(data, Some(Value::Object(_) | Value::String(_))),
    };
    if valid {
        Ok(())
    } else {
        Err(DecodeError::InvalidPayload)
    }
}

/// True for a `{"_placeholder":true,"num":n}` object.
fn placeholder_num(value: &Value) -> Option<Option<u64>> {
    let obj = value.as_object()?;
    (obj.get("_placeholder") == Some(&Value::Bool(true)))
        .then(|| obj.get("num").and_then(Value::as_u64))
}

/// Every placeholder must name an attachment below `count`.
fn check_placeholders(value: &Value, count: usize) -> Result<(), DecodeError> {
    if let Some(num) = placeholder_num(value) {
        return match num {
            Some(n) if (n as usize) < count => Ok(()),
            _ => Err(DecodeError::BadPlaceholder),
        };
    }
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| check_placeholders(v, count)),
        Value::Object(map) => map.values().try_for_each(|v| check_placeholders(v, count)),
        _ => Ok(()),
    }
}

/// Appends the header of a packet: type, attachment count, namespace, ack id.
fn header(out: &mut String, kind: PacketType, attachments: usize, nsp: &str, id: Option<u64>) {
    use std::fmt::Write;
    out.push((b'0' + kind as u8) as char);
    if kind.is_binary() {
        let _ = write!(out, "{attachments}-");
    }
    if nsp != "/" {
        out.push_str(nsp);
        out.push(',');
    }
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
}

/// Encodes a packet with a JSON payload (`data`); a binary type when `attachments` > 0.
pub fn encode(
    kind: PacketType,
    nsp: &str,
    id: Option<u64>,
    attachments: usize,
    data: Option<&Value>,
) -> String {
    let mut out = String::new();
    header(&mut out, kind, attachments, nsp, id);
    if let Some(data) = data {
        out.push_str(&data.to_string());
    }
    out
}

/// Encodes an EVENT (BINARY_EVENT when `attachments` > 0) named `event` with `args`.
pub fn event(
    nsp: &str,
    event: &str,
    args: &[Value],
    id: Option<u64>,
    attachments: usize,
) -> String {
    let raw: Vec<String> = args.iter().map(Value::to_string).collect();
    let raw: Vec<&str> = raw.iter().map(String::as_str).collect();
    let kind = if attachments > 0 {
        PacketType::BinaryEvent
    } else {
        PacketType::Event
    };
    let mut out = String::new();
    header(&mut out, kind, attachments, nsp, id);
    push_array(&mut out, Some(event), &raw);
    out
}

/// Encodes an EVENT whose arguments are already serialized JSON (serialize once, send to
/// many: e.g. a Redis payload that was validated but not re-encoded).
pub fn event_raw(nsp: &str, event: &str, raw_args: &[&str]) -> String {
    let mut out = String::new();
    header(&mut out, PacketType::Event, 0, nsp, None);
    push_array(&mut out, Some(event), raw_args);
    out
}

/// Encodes an ACK of ack id `id` with pre-encoded JSON arguments (no attachments).
pub fn ack_raw(nsp: &str, id: u64, raw_args: &[&str]) -> String {
    let mut out = String::new();
    header(&mut out, PacketType::Ack, 0, nsp, Some(id));
    push_array(&mut out, None, raw_args);
    out
}

/// Encodes an ACK (BINARY_ACK when `attachments` > 0) of ack id `id` with `args`.
pub fn ack(nsp: &str, id: u64, args: &[Value], attachments: usize) -> String {
    let raw: Vec<String> = args.iter().map(Value::to_string).collect();
    let raw: Vec<&str> = raw.iter().map(String::as_str).collect();
    let kind = if attachments > 0 {
        PacketType::BinaryAck
    } else {
        PacketType::Ack
    };
    let mut out = String::new();
    header(&mut out, kind, attachments, nsp, Some(id));
    push_array(&mut out, None, &raw);
    out
}

/// Encodes the server's CONNECT reply `{sid}`.
pub fn connected(nsp: &str, sid: &str) -> String {
    connected_with_pid(nsp, sid, None, None)
}

/// Encodes the CONNECT reply `{sid, pid?, unread?}`; `pid` is the private id of connection
/// state recovery, `unread` the user's unread notifications.
pub fn connected_with_pid(nsp: &str, sid: &str, pid: Option<&str>, unread: Option<u64>) -> String {
    let mut body = serde_json::json!({ "sid": sid });
    if let Some(pid) = pid {
        body["pid"] = Value::from(pid);
    }
    if let Some(unread) = unread {
        body["unread"] = Value::from(unread);
    }
    encode(PacketType::Connect, nsp, None, 0, Some(&body))
}

/// Encodes a CONNECT_ERROR `{message, data?}`.
pub fn connect_error(nsp: &str, message: &str, data: Option<&Value>) -> String {
    let mut body = serde_json::Map::new();
    body.insert("message".into(), Value::String(message.into()));
    if let Some(data) = data {
        body.insert("data".into(), data.clone());
    }
    encode(
        PacketType::ConnectError,
        nsp,
        None,
        0,
        Some(&Value::Object(body)),
    )
}

/// Encodes a DISCONNECT.
pub fn disconnect(nsp: &str) -> String {
    encode(PacketType::Disconnect, nsp, None, 0, None)
}

fn push_array(out: &mut String, name: Option<&str>, raw: &[&str]) {
    out.push('[');
    let mut first = true;
    if let Some(name) = name {
        out.push_str(&Value::String(name.to_owned()).to_string());
        first = false;
    }
    for arg in raw {
        if !first {
            out.push(',');
        }
        out.push_str(arg);
        first = false;
    }
    out.push(']');
}

/// A placeholder for attachment `num`, to put in the arguments of an event or ack that has
/// attachments.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({"_placeholder": true, "num": num})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(text: &str) -> Packet {
        decode(text, 10).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn decodes_the_protocol_examples() {
        let p = ok("0");
        assert_eq!(
            (p.kind, p.nsp.as_str(), p.data),
            (PacketType::Connect, "/", None)
        );
        let p = ok("0/admin,{\"token\":\"123\"}");
        assert_eq!(p.nsp, "/admin");
        assert_eq!(p.data, Some(json!({"token": "123"})));
        assert_eq!(ok("40/random".get(1..).unwrap()).nsp, "/random");
        assert_eq!(ok("0/custom,").nsp, "/custom");
        let p = ok("2/admin,13[\"foo\"]");
        assert_eq!((p.kind, p.id), (PacketType::Event, Some(13)));
        let p = ok("51-14[\"foo\",{\"_placeholder\":true,\"num\":0}]");
        assert_eq!(
            (p.kind, p.attachments, p.id),
            (PacketType::BinaryEvent, 1, Some(14))
        );
        let p = ok("62-/admin,789[1,{\"_placeholder\":true,\"num\":1}]");
        assert_eq!(
            (p.kind, p.nsp.as_str(), p.id),
            (PacketType::BinaryAck, "/admin", Some(789))
        );
        assert_eq!(ok("312[]").data, Some(json!([])));
        assert_eq!(ok("1/admin,").kind, PacketType::Disconnect);
        assert_eq!(ok("2[42,\"x\"]").data, Some(json!([42, "x"])));
    }

    #[test]
    fn refuses_malformed_packets() {
        use DecodeError::*;
        let cases = [
            ("", UnknownType),
            ("abc", UnknownType),
            ("7", UnknownType),
            ("2{}", InvalidPayload),
            ("2[]", InvalidPayload),
            ("2", InvalidPayload),
            ("2[\"connect\"]", InvalidPayload),
            ("2[null]", InvalidPayload),
            ("2abc[\"message-with-ack\",1]", BadJson),
            ("3[]", InvalidPayload),
            ("31{}", InvalidPayload),
            ("0[]", InvalidPayload),
            ("1{}", InvalidPayload),
            ("5[\"a\"]", BadAttachments),
            ("5x-[\"a\"]", BadAttachments),
            ("511-[\"a\"]", BadAttachments),
            (
                "51-[\"a\",{\"_placeholder\":true,\"num\":1}]",
                BadPlaceholder,
            ),
            ("51-[\"a\",{\"_placeholder\":true}]", BadPlaceholder),
            ("2[\"a\",{\"_placeholder\":true,\"num\":0}]", BadPlaceholder),
            ("299999999999999999999999[\"a\"]", BadId),
            ("2[\"a\"", BadJson),
        ];
        for (text, err) in cases {
            assert_eq!(decode(text, 10), Err(err), "{text}");
        }
    }

    #[test]
    fn encodes_the_protocol_examples() {
        assert_eq!(connected("/", "abc"), "0{\"sid\":\"abc\"}");
        assert_eq!(connected("/admin", "abc"), "0/admin,{\"sid\":\"abc\"}");
        assert_eq!(
            connect_error("/random", "Invalid namespace", None),
            "4/random,{\"message\":\"Invalid namespace\"}"
        );
        assert_eq!(event("/", "foo", &[], None, 0), "2[\"foo\"]");
        assert_eq!(event("/admin", "bar", &[], None, 0), "2/admin,[\"bar\"]");
        assert_eq!(
            event("/", "baz", &[placeholder(0)], Some(14), 1),
            "51-14[\"baz\",{\"_placeholder\":true,\"num\":0}]"
        );
        assert_eq!(ack("/", 12, &[], 0), "312[]");
        assert_eq!(ack("/admin", 13, &[json!("bar")], 0), "3/admin,13[\"bar\"]");
        assert_eq!(
            ack("/", 15, &[json!("bar"), placeholder(0)], 1),
            "61-15[\"bar\",{\"_placeholder\":true,\"num\":0}]"
        );
        assert_eq!(disconnect("/admin"), "1/admin,");
        assert_eq!(disconnect("/"), "1");
        assert_eq!(
            event_raw("/", "notification", &["{\"a\":1}"]),
            "2[\"notification\",{\"a\":1}]"
        );
    }
}
