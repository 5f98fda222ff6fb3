//! A job's text across a session resume (docs/jobs.md#streams-to-the-browser,
//! docs/delivery.md#session-resume): a client whose connection dies while a job streams to it
//! comes back with its token and last offset on the other instance, native `resume` or
//! Socket.IO recovery, and gets the chunks it missed without asking (`watch-job` is never
//! sent), then the live ones: every chunk once and in order, while the worker keeps
//! streaming through the resume.
//!
//! The client comes back with the offset of chunk 2 although chunk 3 reached it: what a
//! connection that died may not have delivered. The hub must replay from the chunk the
//! offset proves, not from the last one it sent.
//!
//! With a slow client (docs/jobs.md#a-slow-client): a client that stops reading while a job
//! streams has most chunks held for it (never written, no offset) when its connection dies
//! with a reset; resumed on the other instance from the last offset it read, it gets them all
//! the same. And a merged frame (one offset for chunks `from`..`seq`) the client read before
//! the drop is replayed from `seq + 1`, one it did not read from `from`.

mod common;
mod sio_common;

use common::{
    eventually, hub,
    jobs::{HandJob, JobText},
    resume::{kept, reset, resume_native, rita, silent_rita, silent_sio_rita},
    Client, Hub, RawClient, Redis,
};
use serde_json::{json, Value};
use sio_common::{connect_with, resume_sio, Ws};

/// The chunks the worker records while the client is away.
const AWAY: [&str; 3] = [" d", " e", " f"];
/// The last chunk the worker records, from the resume on.
const LAST: u64 = 30;

/// Chunk `seq`'s text.
fn delta(seq: u64) -> String {
    match seq {
        1..=3 => [" a", " b", " c"][seq as usize - 1].to_owned(),
        4..=6 => AWAY[seq as usize - 4].to_owned(),
        _ => format!(" {seq}"),
    }
}

/// The whole text up to `last`.
fn text_to(last: u64) -> String {
    (1..=last).map(delta).collect()
}

/// Records chunks `from..=to`.
async fn stream(redis: &Redis, job: &HandJob, from: u64, to: u64) {
    let mut conn = redis.conn().await;
    for seq in from..=to {
        job.chunk(&mut conn, seq, &delta(seq)).await;
    }
}

/// The next `ai-chunk` of a native client (after `job-state` frames): its payload and offset.
async fn native_chunk(client: &mut Client) -> (Value, u64) {
    loop {
        let frame = client.recv().await;
        if frame["type"] == "ai-chunk" {
            let offset = frame["offset"]
                .as_u64()
                .unwrap_or_else(|| panic!("{frame}"));
            return (frame["data"].clone(), offset);
        }
        assert_eq!(frame["type"], "job-state", "{frame}");
    }
}

/// The next `ai-chunk` event of a Socket.IO client: its payload and offset.
async fn sio_chunk(ws: &mut Ws) -> (Value, String) {
    loop {
        let text = ws.text_skipping_pings().await;
        let Some(body) = text.strip_prefix("42") else {
            continue;
        };
        let args: Value = serde_json::from_str(body).unwrap();
        if args[0] == "ai-chunk" {
            let offset = args[2]
                .as_str()
                .unwrap_or_else(|| panic!("{args}"))
                .to_owned();
            return (args[1].clone(), offset);
        }
    }
}

/// The replay on `then` counted the chunks the client missed (3 to 6), or more when live
/// chunks were recorded before its read; never fewer.
async fn replay_counted(then: &Hub) {
    let replayed = then.metric("hub_chunks_replayed_total").await;
    assert!(replayed >= 4.0, "chunks 3 to 6 replayed: {replayed}");
}

#[tokio::test]
async fn a_native_client_killed_mid_stream_gets_every_chunk_once_on_the_other_instance() {
    let redis = Redis::start().await;
    let (one, two) = (hub(&redis, &[]).await, hub(&redis, &[]).await);
    let (mut client, connected) = rita(&one, "resume=true").await;
    let token = connected["resume"].as_str().expect("a token").to_owned();

    let job = HandJob::start(&mut redis.conn().await, "jobs", "r-1", "rita").await;
    stream(&redis, &job, 1, 3).await;
    let mut offsets = Vec::new();
    for seq in 1..=3 {
        let (data, offset) = native_chunk(&mut client).await;
        assert_eq!(
            data,
            json!({"jobId": "r-1", "seq": seq, "delta": delta(seq)})
        );
        offsets.push(offset);
    }
    drop(client);
    kept(&redis, &token).await;
    stream(&redis, &job, 4, 6).await;

    // The worker goes on while the client comes back.
    let (mut client, ()) = tokio::join!(
        resume_native(&two, &token, offsets[1]),
        stream(&redis, &job, 7, LAST)
    );
    let mut text = JobText::after(2, &text_to(2));
    let mut last_offset = offsets[1];
    while text.last < LAST {
        let (data, offset) = native_chunk(&mut client).await;
        assert!(
            offset > last_offset,
            "offsets grow: {offset} after {last_offset}"
        );
        last_offset = offset;
        text.apply(&data);
    }
    assert_eq!(text.text, text_to(LAST));
    assert!(text.merged >= 1, "the missed run comes merged: {text:?}");
    replay_counted(&two).await;
}

#[tokio::test]
async fn a_socketio_client_killed_mid_stream_recovers_every_chunk_once_on_the_other_instance() {
    let redis = Redis::start().await;
    let (one, two) = (hub(&redis, &[]).await, hub(&redis, &[]).await);
    let (mut ws, reply) = connect_with(one.port, &json!({"userId": "rita"})).await;
    let pid = reply["pid"].as_str().expect("a pid").to_owned();

    let job = HandJob::start(&mut redis.conn().await, "jobs", "r-2", "rita").await;
    stream(&redis, &job, 1, 3).await;
    let mut offsets = Vec::new();
    for seq in 1..=3 {
        let (data, offset) = sio_chunk(&mut ws).await;
        assert_eq!(
            data,
            json!({"jobId": "r-2", "seq": seq, "delta": delta(seq)})
        );
        offsets.push(offset);
    }
    drop(ws);
    kept(&redis, &pid).await;
    stream(&redis, &job, 4, 6).await;

    let (mut ws, ()) = tokio::join!(
        resume_sio(&two, &pid, &offsets[1]),
        stream(&redis, &job, 7, LAST)
    );
    let mut text = JobText::after(2, &text_to(2));
    let mut last_offset: u64 = offsets[1].parse().unwrap();
    while text.last < LAST {
        let (data, offset) = sio_chunk(&mut ws).await;
        let offset: u64 = offset.parse().unwrap();
        assert!(
            offset > last_offset,
            "offsets grow: {offset} after {last_offset}"
        );
        last_offset = offset;
        text.apply(&data);
    }
    assert_eq!(text.text, text_to(LAST));
    replay_counted(&two).await;
}

/// Chunks recorded while a slow client reads nothing: far more than a resumable session hands
/// out before its client proves what it read (256 events), so most are held for it.
const HELD: u64 = 1_000;
/// Chunks recorded while the client resumes, after [`HELD`].
const MORE: u64 = 100;
/// A few KiB of kernel buffer: the slow client's socket is full at once.
const RCVBUF: u32 = 4096;

/// Both ways in.
#[derive(Clone, Copy)]
enum Way {
    Native,
    SocketIo,
}

/// A resumable `rita` on a bare socket with a tiny receive buffer that reads only when the
/// test says, and proves what it read (answers the pings that ask) only when told.
struct Slow {
    raw: RawClient,
    way: Way,
    token: String,
}

impl Slow {
    async fn connect(way: Way, hub: &Hub) -> Slow {
        let (raw, token) = match way {
            Way::Native => silent_rita(hub, RCVBUF).await,
            Way::SocketIo => silent_sio_rita(hub, RCVBUF).await,
        };
        Slow { raw, way, token }
    }

    /// The next `ai-chunk` (after `job-state` events): its payload and offset. Pings are
    /// answered when `prove`, ignored otherwise.
    async fn chunk(&mut self, prove: bool) -> (Value, u64) {
        loop {
            let text = match self.raw.read_frame().await {
                (0x1, payload) => String::from_utf8(payload).unwrap(),
                (0x9, payload) if prove => {
                    self.raw.send_frame(0xA, &payload).await;
                    continue;
                }
                _ => continue,
            };
            let (kind, data, offset) = match self.way {
                Way::Native => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    let offset = frame["offset"].as_u64();
                    (frame["type"].clone(), frame["data"].clone(), offset)
                }
                Way::SocketIo if text == "2" => {
                    if prove {
                        self.raw.send_text("3").await;
                    }
                    continue;
                }
                Way::SocketIo => {
                    let event = text.strip_prefix("42").unwrap_or_else(|| panic!("{text}"));
                    let args: Value = serde_json::from_str(event).unwrap();
                    let offset = args[2].as_str().and_then(|o| o.parse().ok());
                    (args[0].clone(), args[1].clone(), offset)
                }
            };
            if kind == "ai-chunk" {
                return (data, offset.unwrap_or_else(|| panic!("an offset: {text}")));
            }
            assert_eq!(kind, "job-state", "{text}");
        }
    }
}

/// The client resumed on the other instance.
enum Back {
    Native(Client),
    SocketIo(Ws),
}

impl Back {
    /// Resumes `token` on `hub` from `offset` (asserts it resumed).
    async fn resume(way: Way, hub: &Hub, token: &str, offset: u64) -> Back {
        match way {
            Way::Native => Back::Native(resume_native(hub, token, offset).await),
            Way::SocketIo => Back::SocketIo(resume_sio(hub, token, &offset.to_string()).await),
        }
    }

    /// The next `ai-chunk` payload.
    async fn chunk(&mut self) -> Value {
        match self {
            Back::Native(client) => native_chunk(client).await.0,
            Back::SocketIo(ws) => sio_chunk(ws).await.0,
        }
    }
}

/// Starts job `id` of `rita` and records chunks 1 to [`HELD`] while the client reads nothing;
/// waits until `hub` read them all (its states and chunks) from Redis.
async fn stream_unread(hub: &Hub, redis: &Redis, id: &str) -> HandJob {
    let job = HandJob::start(&mut redis.conn().await, "jobs", id, "rita").await;
    stream(redis, &job, 1, HELD).await;
    eventually("the hub to read every chunk", || async {
        let read = hub
            .metric("hub_redis_messages_total{channel=\"ai:jobs\"}")
            .await;
        (read >= (HELD + 2) as f64).then_some(())
    })
    .await;
    job
}

/// Resets the slow client's connection, resumes it on `two` from `offset` while the worker
/// records [`MORE`] chunks, and reads, from the text up to chunk `had`: every chunk once and
/// in order, then one recorded once the client had them all (no copy of an earlier one came
/// before it).
async fn reset_and_resume(
    slow: Slow,
    two: &Hub,
    redis: &Redis,
    job: &HandJob,
    offset: u64,
    had: u64,
) {
    let (way, token) = (slow.way, slow.token.clone());
    reset(slow.raw);
    kept(redis, &token).await;
    let last = HELD + MORE;
    let (mut back, ()) = tokio::join!(
        Back::resume(way, two, &token, offset),
        stream(redis, job, HELD + 1, last)
    );
    let mut text = JobText::after(had, &text_to(had));
    while text.last < last {
        text.apply(&back.chunk().await);
    }
    stream(redis, job, last + 1, last + 1).await;
    text.apply(&back.chunk().await);
    assert_eq!(text.text, text_to(last + 1));
    let replayed = two.metric("hub_chunks_replayed_total").await;
    assert!(replayed >= (HELD - had) as f64, "replayed: {replayed}");
}

/// The slow client reads its first 50 chunks (proving nothing), so the rest of the
/// [`HELD`] chunks are unread in its socket, waiting in the hub, or held; its connection is
/// reset and it resumes from chunk 50's offset.
async fn held_chunks_survive_a_reset(way: Way) {
    let redis = Redis::start().await;
    let (one, two) = (hub(&redis, &[]).await, hub(&redis, &[]).await);
    let mut slow = Slow::connect(way, &one).await;
    let job = stream_unread(&one, &redis, "h-1").await;
    let (mut text, mut offset) = (JobText::default(), 0);
    for _ in 0..50 {
        let (data, at) = slow.chunk(false).await;
        text.apply(&data);
        offset = at;
    }
    reset_and_resume(slow, &two, &redis, &job, offset, text.last).await;
}

/// The slow client reads (proving what it read) until the first merged frame, `from`..`seq`
/// with one offset; its connection is reset and it resumes from that offset (`read`) or the
/// one before: the replay starts after `seq`, or at `from`.
async fn a_merged_frame_read_or_not(way: Way, read: bool) {
    let redis = Redis::start().await;
    let (one, two) = (hub(&redis, &[]).await, hub(&redis, &[]).await);
    let mut slow = Slow::connect(way, &one).await;
    let job = stream_unread(&one, &redis, "h-2").await;
    let mut text = JobText::default();
    let (from, offset) = loop {
        let (data, offset) = slow.chunk(true).await;
        let from = text.last + 1;
        text.apply(&data);
        if text.merged == 1 {
            break (from, offset);
        }
    };
    assert!(text.last > from, "a merged frame: {from}..{}", text.last);
    if read {
        let had = text.last;
        reset_and_resume(slow, &two, &redis, &job, offset, had).await;
    } else {
        reset_and_resume(slow, &two, &redis, &job, offset - 1, from - 1).await;
    }
}

#[tokio::test]
async fn a_native_client_whose_held_chunks_die_with_its_connection_gets_them_on_resume() {
    held_chunks_survive_a_reset(Way::Native).await;
}

#[tokio::test]
async fn a_socketio_client_whose_held_chunks_die_with_its_connection_recovers_them() {
    held_chunks_survive_a_reset(Way::SocketIo).await;
}

#[tokio::test]
async fn a_native_merged_frame_read_before_the_drop_is_not_replayed() {
    a_merged_frame_read_or_not(Way::Native, true).await;
}

#[tokio::test]
async fn a_native_merged_frame_not_read_before_the_drop_is_replayed_from_its_first_chunk() {
    a_merged_frame_read_or_not(Way::Native, false).await;
}

#[tokio::test]
async fn a_socketio_merged_frame_read_before_the_drop_is_not_replayed() {
    a_merged_frame_read_or_not(Way::SocketIo, true).await;
}

#[tokio::test]
async fn a_socketio_merged_frame_not_read_before_the_drop_is_replayed_from_its_first_chunk() {
    a_merged_frame_read_or_not(Way::SocketIo, false).await;
}
