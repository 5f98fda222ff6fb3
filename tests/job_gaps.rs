//! Job chunks recorded while the hub's pub/sub connection is down (docs/jobs.md#streams-to-the-browser,
//! docs/delivery.md): the hub reads them from the job's chunk stream once `ai:jobs` is
//! subscribed again and delivers them before the live ones, each once and in order. The
//! outage is made deterministic by refusing SUBSCRIBE (ACL) until the chunks are recorded.

mod common;

use common::{
    eventually, hub,
    jobs::{HandJob, JobText},
    Client, Hub, Redis,
};
use serde_json::Value;

/// Chunk `seq`'s text.
fn delta(seq: u64) -> String {
    format!(" {seq}")
}

/// Records chunks `from..=to` of `job`.
async fn stream(redis: &Redis, job: &HandJob, from: u64, to: u64) {
    let mut conn = redis.conn().await;
    for seq in from..=to {
        job.chunk(&mut conn, seq, &delta(seq)).await;
    }
}

/// The next `ai-chunk` payload (after `job-state` frames).
async fn next_chunk(client: &mut Client) -> Value {
    loop {
        let frame = client.recv().await;
        if frame["type"] == "ai-chunk" {
            return frame["data"].clone();
        }
        assert_eq!(frame["type"], "job-state", "{frame}");
    }
}

/// Cuts the hub's pub/sub connection and refuses SUBSCRIBE until [`Redis::allow_subscribe`];
/// returns once the hub reports Redis down.
async fn cut(redis: &Redis, hub: &Hub) {
    redis.cut_pubsub().await;
    eventually("the hub to notice the outage", || async {
        (hub.health().await.0 == 503).then_some(())
    })
    .await;
}

#[tokio::test]
async fn chunks_recorded_during_a_pubsub_outage_reach_the_session_once_and_in_order() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut client = hub.user("gus").await;
    let job = HandJob::start(&mut redis.conn().await, "jobs", "g-1", "gus").await;
    stream(&redis, &job, 1, 2).await;
    let mut text = JobText::default();
    while text.last < 2 {
        text.apply(&next_chunk(&mut client).await);
    }

    cut(&redis, &hub).await;
    // Published while nobody can subscribe: only the job's chunk stream has them.
    stream(&redis, &job, 3, 5).await;
    // The worker goes on while the hub subscribes again.
    let ((), ()) = tokio::join!(redis.allow_subscribe(), stream(&redis, &job, 6, 30));
    while text.last < 30 {
        text.apply(&next_chunk(&mut client).await);
    }
    assert_eq!(text.text, (1..=30).map(delta).collect::<String>());
    assert_eq!(
        text.merged, 0,
        "gap-filled chunks go as live ones, one per frame"
    );
    let filled = hub.metric("hub_job_chunks_gap_filled_total").await;
    assert!(
        filled >= 3.0,
        "chunks 3 to 5 filled from the stream: {filled}"
    );

    // Nothing twice: the next live chunk follows chunk 30.
    stream(&redis, &job, 31, 31).await;
    text.apply(&next_chunk(&mut client).await);
    assert_eq!(text.last, 31);
}

/// A retry that started during the outage: the earlier attempt's missed chunk was deleted at
/// the claim, so the session gets the new attempt's chunks (their seqs continue the job's),
/// then the live ones, each once.
#[tokio::test]
async fn a_retry_during_the_outage_delivers_the_new_attempts_chunks() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut client = hub.user("gus").await;
    let job = HandJob::start(&mut redis.conn().await, "jobs", "g-2", "gus").await;
    stream(&redis, &job, 1, 3).await;
    let mut text = JobText::default();
    while text.last < 3 {
        text.apply(&next_chunk(&mut client).await);
    }

    cut(&redis, &hub).await;
    stream(&redis, &job, 4, 4).await;
    let job = job.retry(&mut redis.conn().await).await;
    stream(&redis, &job, 5, 6).await;
    redis.allow_subscribe().await;

    let mut retried = JobText::after(4, "");
    while retried.last < 6 {
        retried.apply(&next_chunk(&mut client).await);
    }
    stream(&redis, &job, 7, 7).await;
    retried.apply(&next_chunk(&mut client).await);
    assert_eq!(retried.text, " 5 6 7", "the new attempt's text, once");
    assert_eq!(hub.metric("hub_job_chunks_gap_filled_total").await, 2.0);
}
