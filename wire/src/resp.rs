//! RESP2, as a Redis pub/sub connection speaks it: replies parsed in place (a [`Frame`] holds
//! ranges into the buffer it was parsed from, so a message's channel and payload are never
//! copied) and commands encoded as arrays of bulk strings.

use std::ops::Range;

/// Appends a command as a RESP array of bulk strings.
pub fn encode(out: &mut Vec<u8>, args: &[&str]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// One RESP2 value, as ranges into the buffer it was parsed from.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// `+...`: a status line.
    Simple(Range<usize>),
    /// `-...`: an error line.
    Error(Range<usize>),
    /// `:n`.
    Int(i64),
    /// `$n` bulk string, `None` for the null bulk string.
    Bulk(Option<Range<usize>>),
    /// `*n` array.
    Array(Vec<Frame>),
}

/// Parses one value at the start of `buf`: `Ok(None)` while it is incomplete.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    parse_at(buf, 0, 0)
}

fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    memchr_crlf(&buf[from..]).map(|i| from + i)
}

fn memchr_crlf(s: &[u8]) -> Option<usize> {
    s.windows(2).position(|w| w == b"\r\n")
}

fn int(buf: &[u8], range: Range<usize>) -> Result<i64, String> {
    std::str::from_utf8(&buf[range])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "bad integer".to_string())
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Frame, usize)>, String> {
    if depth > 8 {
        return Err("nesting too deep".into());
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some(end) = line_end(buf, at + 1) else {
        return Ok(None);
    };
    let line = at + 1..end;
    let next = end + 2;
    Ok(Some(match kind {
        b'+' => (Frame::Simple(line), next),
        b'-' => (Frame::Error(line), next),
        b':' => (Frame::Int(int(buf, line)?), next),
        b'$' => {
            let len = int(buf, line)?;
            if len < 0 {
                (Frame::Bulk(None), next)
            } else {
                let stop = next + len as usize;
                if buf.len() < stop + 2 {
                    return Ok(None);
                }
                (Frame::Bulk(Some(next..stop)), stop + 2)
            }
        }
        b'*' => {
            let len = int(buf, line)?;
            if len < 0 {
                (Frame::Array(Vec::new()), next)
            } else {
                let mut items = Vec::with_capacity(len.min(16) as usize);
                let mut pos = next;
                for _ in 0..len {
                    match parse_at(buf, pos, depth + 1)? {
                        None => return Ok(None),
                        Some((item, after)) => {
                            items.push(item);
                            pos = after;
                        }
                    }
                }
                (Frame::Array(items), pos)
            }
        }
        other => return Err(format!("unexpected type byte {other:#04x}")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_messages_and_confirmations() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$4\r\nch:1\r\n$5\r\nhello\r\n";
        let (frame, used) = parse(msg).unwrap().unwrap();
        assert_eq!(used, msg.len());
        let Frame::Array(items) = frame else {
            panic!("array expected")
        };
        assert_eq!(items[2], Frame::Bulk(Some(31..36)));
        assert_eq!(&msg[31..36], b"hello");
        let sub = b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n";
        assert_eq!(parse(sub).unwrap().unwrap().1, sub.len());
        assert_eq!(
            parse(b"-ERR no\r\n").unwrap(),
            Some((Frame::Error(1..7), 9))
        );
    }

    #[test]
    fn incomplete_input_waits() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$4\r\nch:1\r\n$5\r\nhello\r\n";
        for cut in 0..msg.len() {
            assert_eq!(parse(&msg[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(b"?what\r\n").is_err());
        assert!(parse(b"$x\r\n").is_err());
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode(&mut out, &["SUBSCRIBE", "a"]);
        assert_eq!(out, b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n");
    }
}

/// Fuzzing of the RESP2 parser (`make fuzz` raises the case count).
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    use crate::fuzz_cases as cases;

    /// RESP-looking input: type bytes, numbers (also negative and huge), CRLFs, junk.
    fn resp_like() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"*".to_vec()),
            Just(b"$".to_vec()),
            Just(b"+".to_vec()),
            Just(b"-".to_vec()),
            Just(b":".to_vec()),
            Just(b"\r\n".to_vec()),
            "-?[0-9]{1,20}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..8),
        ];
        prop::collection::vec(piece, 1..24).prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

        /// Any bytes: a value within the buffer, incomplete, or an error; never a panic.
        #[test]
        fn resp_from_arbitrary_bytes(buf in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(Some((_, consumed))) = parse(&buf) {
                prop_assert!(consumed <= buf.len());
            }
        }

        #[test]
        fn resp_from_its_vocabulary(buf in resp_like()) {
            if let Ok(Some((_, consumed))) = parse(&buf) {
                prop_assert!(consumed <= buf.len());
            }
        }
    }
}
