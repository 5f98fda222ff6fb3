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

mod common;
mod sio_common;

use common::{
    hub,
    jobs::{HandJob, JobText},
    resume::{kept, resume_native, rita},
    Client, Hub, Redis,
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
