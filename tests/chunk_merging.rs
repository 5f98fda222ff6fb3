//! A slow client is not kicked for a fast model (docs/jobs.md#a-slow-client): while a client
//! does not read, a job's chunks are held and merged per job, so what the hub holds for it
//! grows with the text, not with the number of chunks. The client then gets the whole text
//! once and in order, partly as merged frames (`from`..`seq`), on `/ws` and on Socket.IO over
//! a WebSocket and over long-polling (with one recovery offset per frame written). The worker
//! speaks the Redis functions with plain `FCALL`s.

mod common;
mod sio_common;

use std::collections::VecDeque;

use common::jobs::{enqueue_and_claim, fcall};
use common::{eventually, hub, Hub, RawClient, Redis};
use serde_json::{json, Value};
use sio_common::Polling;

/// Chunks the job streams: as frames about 1.1 MB, more than four times the queue bound.
const CHUNKS: u64 = 20_000;
/// The queue bound of the hub under test: far less than the chunks' frames, more than their
/// text (about 110 KB).
const QUEUE_BYTES: &str = "262144";
/// Kernel buffers of a few KiB on both sides, so the client's socket is full at once.
const RCVBUF: u32 = 4096;

/// The hub: a small queue bound and send buffer; a write timeout the test never nears.
async fn slow_client_hub(redis: &Redis) -> Hub {
    let env = [
        ("HUB_SESSION_QUEUE_BYTES", QUEUE_BYTES),
        ("HUB_SOCKET_SNDBUF", "4096"),
        ("HUB_WRITE_TIMEOUT_MS", "120000"),
    ];
    hub(redis, &env).await
}

/// The delta of chunk `seq`.
fn delta(seq: u64) -> String {
    format!("{seq} ")
}

/// Streams [`CHUNKS`] chunks of job `id` (in pipelines, each checked for its seq) and waits
/// until the hub read every one from Redis.
async fn stream_job(hub: &Hub, redis: &Redis, id: &str, lease: &str) {
    let mut conn = redis.conn().await;
    let mut seq = 0;
    while seq < CHUNKS {
        let mut pipe = redis::pipe();
        let batch = (CHUNKS - seq).min(200);
        for s in seq + 1..=seq + batch {
            pipe.cmd("FCALL")
                .arg("relay_job_chunk")
                .arg(1)
                .arg("jobs")
                .arg(id)
                .arg(lease)
                .arg(delta(s));
        }
        let seqs: Vec<u64> = pipe.query_async(&mut conn).await.unwrap();
        assert_eq!(seqs, (seq + 1..=seq + batch).collect::<Vec<_>>());
        seq += batch;
    }
    // The job's states (queued, running) and its chunks.
    eventually("the hub to read every chunk", || async {
        let read = hub
            .metric("hub_redis_messages_total{channel=\"ai:jobs\"}")
            .await;
        (read >= (CHUNKS + 2) as f64).then_some(())
    })
    .await;
}

/// Completes job `id`: its `ai-result` follows the chunks.
async fn complete(redis: &Redis, id: &str, lease: &str) {
    let done: i64 = fcall(
        redis,
        "relay_job_complete",
        &[id, lease, r#"{"ok":true}"#, "5", "60000"],
    )
    .await;
    assert_eq!(done, 1);
}

/// What a client read of one job's stream, checked as it came: every chunk once, in order.
#[derive(Default)]
struct Stream {
    text: String,
    /// The next seq expected.
    next: u64,
    frames: u64,
    merged: u64,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            next: 1,
            ..Stream::default()
        }
    }

    /// Every chunk arrived.
    fn whole(&self) -> bool {
        self.next > CHUNKS
    }

    fn take(&mut self, data: &Value) {
        assert!(!self.whole(), "no chunk after the last: {data}");
        let seq = data["seq"].as_u64().expect("seq");
        let from = match data.get("from") {
            Some(from) => {
                self.merged += 1;
                let from = from.as_u64().expect("from");
                assert!(from < seq, "`from` only on merged frames: {data}");
                from
            }
            None => seq,
        };
        assert_eq!(from, self.next, "chunks in order, none twice, none missing");
        self.next = seq + 1;
        self.frames += 1;
        self.text.push_str(data["delta"].as_str().expect("delta"));
    }

    /// The whole text once and in order, partly merged.
    fn check(&self) {
        assert_eq!(self.next, CHUNKS + 1, "every chunk arrived");
        let expected: String = (1..=CHUNKS).map(delta).collect();
        assert!(self.text == expected, "the text, once and in order");
        assert!(self.merged >= 1, "a merged frame");
        assert!(
            self.frames < CHUNKS,
            "fewer frames than chunks: {}",
            self.frames
        );
    }
}

/// A client of one of the hub's transports that reads only when the test says.
enum Reader {
    Native(RawClient),
    SocketIo(RawClient),
    Polling(Polling, String, VecDeque<String>),
}

impl Reader {
    /// The next event: its type, its data, and its recovery offset (Socket.IO). Answers the
    /// Engine.IO pings that ask the client to prove what it read.
    async fn next(&mut self) -> (String, Value, Option<u64>) {
        let text = loop {
            let text = match self {
                Reader::Native(client) => {
                    let frame: Value =
                        serde_json::from_str(&client.read_frames_until_text().await).unwrap();
                    let kind = frame["type"].as_str().expect("type").to_owned();
                    return (kind, frame["data"].clone(), None);
                }
                Reader::SocketIo(client) => client.read_frames_until_text().await,
                Reader::Polling(polling, sid, queued) => match queued.pop_front() {
                    Some(packet) => packet,
                    None => {
                        queued.extend(polling.get_packets(sid).await);
                        continue;
                    }
                },
            };
            if text != "2" {
                break text;
            }
            match self {
                Reader::SocketIo(client) => client.send_text("3").await,
                Reader::Polling(polling, sid, _) => polling.post_ok(sid, b"3").await,
                Reader::Native(_) => unreachable!(),
            }
        };
        let args: Value = serde_json::from_str(text.strip_prefix("42").expect("an event"))
            .unwrap_or_else(|e| panic!("{e}: {text}"));
        let offset = args[2].as_str().expect("an offset").parse().unwrap();
        (
            args[0].as_str().unwrap().to_owned(),
            args[1].clone(),
            Some(offset),
        )
    }
}

/// Streams a job of user `slow` while `reader` reads nothing, then reads: the job's states,
/// every chunk once and in order, partly merged (the job completes once the client has every
/// chunk, so the held chunks went when its connection took again), then the `ai-result`;
/// one recovery offset per event written, none skipped; no kick.
async fn stream_to_a_client_that_stopped_reading(hub: &Hub, redis: &Redis, mut reader: Reader) {
    let lease = enqueue_and_claim(hub, redis, "m-1", "slow").await;
    stream_job(hub, redis, "m-1", &lease).await;

    let (mut stream, mut states, mut offsets) = (Stream::new(), Vec::new(), Vec::new());
    loop {
        let (kind, data, offset) = reader.next().await;
        offsets.extend(offset);
        match kind.as_str() {
            "ai-chunk" => {
                stream.take(&data);
                if stream.whole() {
                    complete(redis, "m-1", &lease).await;
                }
            }
            "job-state" => {
                assert_eq!(stream.frames, 0, "the states came before the chunks");
                states.push(data["state"].clone());
            }
            "ai-result" => {
                assert!(stream.whole(), "the result after every chunk");
                assert_eq!(data["chunks"], CHUNKS, "{data}");
                break;
            }
            _ => panic!("unexpected event {kind}: {data}"),
        }
    }
    assert_eq!(states, [json!("queued"), json!("running")]);
    stream.check();
    if let Some(&first) = offsets.first() {
        let expected: Vec<u64> = (first..first + offsets.len() as u64).collect();
        assert!(
            offsets == expected,
            "one offset per event written, none skipped"
        );
    }
    assert_eq!(hub.kicks().await, 0.0, "the slow client was not kicked");
    assert!(hub.metric("hub_ai_chunks_merged_total").await >= 2.0);
}

#[tokio::test]
async fn a_native_client_that_stops_reading_gets_the_whole_text_merged_and_is_not_kicked() {
    let redis = Redis::start().await;
    let hub = slow_client_hub(&redis).await;
    let mut client = RawClient::connect_with_rcvbuf(hub.port, "userId=slow", RCVBUF).await;
    let connected: Value = serde_json::from_str(&client.read_frames_until_text().await).unwrap();
    assert_eq!(connected["type"], "connected");
    stream_to_a_client_that_stopped_reading(&hub, &redis, Reader::Native(client)).await;
}

#[tokio::test]
async fn a_socketio_client_that_stops_reading_gets_the_whole_text_merged_with_one_offset_each() {
    let redis = Redis::start().await;
    let hub = slow_client_hub(&redis).await;
    let path = "/socket.io/?EIO=4&transport=websocket";
    let mut client = RawClient::connect_to_with_rcvbuf(hub.port, path, RCVBUF).await;
    assert!(client.read_frames_until_text().await.starts_with("0{"));
    client.send_text(r#"40{"userId":"slow"}"#).await;
    let connect = client.read_frames_until_text().await;
    assert!(
        connect.contains("\"pid\""),
        "a recoverable session: {connect}"
    );
    stream_to_a_client_that_stopped_reading(&hub, &redis, Reader::SocketIo(client)).await;
}

#[tokio::test]
async fn a_long_polling_client_that_does_not_poll_gets_the_whole_text_merged() {
    let redis = Redis::start().await;
    let hub = slow_client_hub(&redis).await;
    let polling = Polling {
        port: hub.port,
        path: "/socket.io/",
    };
    let sid = polling.sid().await;
    polling.post_ok(&sid, br#"40{"userId":"slow"}"#).await;
    let connect = polling.get_packets(&sid).await;
    assert!(
        connect[0].contains("\"pid\""),
        "a recoverable session: {connect:?}"
    );
    let reader = Reader::Polling(polling, sid, VecDeque::new());
    stream_to_a_client_that_stopped_reading(&hub, &redis, reader).await;
}
