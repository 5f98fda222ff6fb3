//! Streamed AI jobs (docs/jobs.md#streams-to-the-browser): a worker's chunks reach the user's
//! native and Socket.IO sessions on two hub instances live; a late tab on the other instance
//! catches up with `watch-job`; job state is pushed; cancel from a session (only the job's
//! user) and from the API. The worker speaks the Redis functions with plain `FCALL`s.

mod common;
mod sio_common;

use common::jobs::{enqueue_and_claim, fcall, JSON};
use common::{hub, Client, Redis};
use serde_json::{json, Value};
use sio_common::{Frame, Ws};

async fn chunk(redis: &Redis, id: &str, lease: &str, delta: &str) -> i64 {
    fcall(redis, "relay_job_chunk", &[id, lease, delta]).await
}

/// The next Socket.IO event named `name`: its first argument.
async fn sio_event(ws: &mut Ws, name: &str) -> Value {
    loop {
        let Frame::Text(text) = ws.next_skipping_pings().await else {
            panic!("the Socket.IO connection ended");
        };
        let Some(body) = text.strip_prefix("42") else {
            continue;
        };
        let args: Value = serde_json::from_str(body).unwrap();
        if args[0] == name {
            return args[1].clone();
        }
    }
}

fn chunk_data(frame: &Value) -> (u64, String) {
    let d = &frame["data"];
    (
        d["seq"].as_u64().unwrap(),
        d["delta"].as_str().unwrap().into(),
    )
}

#[tokio::test]
async fn chunks_reach_every_tab_on_both_instances_and_a_late_tab_catches_up() {
    let redis = Redis::start().await;
    let (one, two) = (hub(&redis, &[]).await, hub(&redis, &[]).await);
    let mut tab1 = one.user("5").await;
    let (mut sio, _) = sio_common::connect_with(two.port, &json!({"userId": "5"})).await;

    let lease = enqueue_and_claim(&one, &redis, "s-1", "5").await;
    // State pushed: queued, then running with the worker.
    let queued = tab1.recv_type("job-state").await["data"].clone();
    assert_eq!(
        (queued["jobId"].clone(), queued["state"].clone()),
        (json!("s-1"), json!("queued"))
    );
    let running = tab1.recv_type("job-state").await["data"].clone();
    assert_eq!(
        (
            running["state"].clone(),
            running["attempt"].clone(),
            running["worker"].clone()
        ),
        (json!("running"), json!(1), json!("w"))
    );
    assert_eq!(sio_event(&mut sio, "job-state").await["state"], "queued");

    for (i, delta) in ["Once", " upon", " a"].iter().enumerate() {
        assert_eq!(chunk(&redis, "s-1", &lease, delta).await, i as i64 + 1);
    }
    for (i, delta) in ["Once", " upon", " a"].iter().enumerate() {
        let frame = tab1.recv_type("ai-chunk").await;
        assert_eq!(chunk_data(&frame), (i as u64 + 1, delta.to_string()));
        assert_eq!(frame["data"].as_object().unwrap().len(), 3, "{frame}");
        let event = sio_event(&mut sio, "ai-chunk").await;
        assert_eq!(event, json!({"jobId": "s-1", "seq": i + 1, "delta": delta}));
    }

    // A second tab opens on the other instance mid-stream: the text so far, then live.
    let mut tab2 = two.user("5").await;
    tab2.send(json!({"type": "watch-job", "jobId": "s-1", "id": 1}))
        .await;
    let watched = tab2.recv_type("job-watched").await;
    assert_eq!(
        watched,
        json!({"type": "job-watched", "jobId": "s-1", "state": "running", "seq": 3, "id": 1,
               "chunks": [{"seq": 1, "delta": "Once"}, {"seq": 2, "delta": " upon"},
                          {"seq": 3, "delta": " a"}]})
    );
    tab2.send(json!({"type": "watch-job", "jobId": "s-1", "after": 2}))
        .await;
    assert_eq!(
        tab2.recv_type("job-watched").await["chunks"],
        json!([{"seq": 3, "delta": " a"}])
    );
    assert_eq!(chunk(&redis, "s-1", &lease, " time").await, 4);
    assert_eq!(
        chunk_data(&tab2.recv_type("ai-chunk").await),
        (4, " time".into())
    );
    assert_eq!(
        chunk_data(&tab1.recv_type("ai-chunk").await),
        (4, " time".into())
    );

    // Another user can neither watch nor cancel it (nor tell it exists).
    let mut eve: Client = two.user("6").await;
    eve.send(json!({"type": "watch-job", "jobId": "s-1", "id": 2}))
        .await;
    assert_eq!(eve.recv_type("error").await["code"], "forbidden");
    eve.send(json!({"type": "cancel-job", "jobId": "s-1", "id": 3}))
        .await;
    assert_eq!(eve.recv_type("error").await["code"], "forbidden");

    // The user's Socket.IO session cancels it: everyone gets the cancelled result, the worker
    // is told at its next call, nothing more is stored.
    sio.send(r#"427["cancel-job",{"jobId":"s-1"}]"#).await;
    loop {
        let Frame::Text(text) = sio.next_skipping_pings().await else {
            panic!("ended");
        };
        if let Some(ack) = text.strip_prefix("437") {
            let reply: Value = serde_json::from_str(ack).unwrap();
            assert_eq!(
                reply[0],
                json!({"type": "job-cancel", "jobId": "s-1", "status": "cancelled"})
            );
            break;
        }
    }
    let result = tab1.recv_type("ai-result").await["data"].clone();
    assert_eq!(
        result,
        json!({"jobId": "s-1", "userId": "5", "type": "stream_test", "status": "cancelled",
               "chunks": 4})
    );
    assert_eq!(tab2.recv_type("ai-result").await["data"], result);
    assert_eq!(chunk(&redis, "s-1", &lease, "!").await, -1);
    let (status, body) = one.http("DELETE", "/api/jobs/s-1", &[], "").await;
    assert_eq!(
        (status, body.contains("\"finished\"")),
        (200, true),
        "{body}"
    );
}

#[tokio::test]
async fn delete_cancels_a_queued_job_which_then_never_runs() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut user = hub.user("9").await;
    let job = json!({"id": "q-1", "type": "stream_test", "userId": 9, "payload": {},
                     "waitForWorker": true});
    let (status, _) = hub
        .http("POST", "/api/jobs", &[JSON], &job.to_string())
        .await;
    assert_eq!(status, 202);
    let (status, body) = hub.http("DELETE", "/api/jobs/q-1", &[], "").await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"id": "q-1", "status": "cancelled", "was": "queued"})
    );
    let queued = user.recv_type("job-state").await["data"].clone();
    assert_eq!(
        queued,
        json!({"jobId": "q-1", "state": "queued", "attempt": 0})
    );
    assert_eq!(user.recv_result().await["data"]["status"], "cancelled");
    assert_eq!(hub.metric("hub_jobs_cancelled_total").await, 1.0);
    let claim: Vec<String> = fcall(
        &redis,
        "relay_job_claim",
        &["w", "30000", "3", "60000", "100", "stream_test"],
    )
    .await;
    assert_eq!(claim[0], "none", "a cancelled job is never claimed");
    let (status, _) = hub.http("DELETE", "/api/jobs/nope", &[], "").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_demo_worker_streams_its_answer_when_the_payload_asks() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let mut user = hub.user("3").await;
    let _w = common::jobs::worker(&redis, "demo", &[("HUB_DEMO_LATENCY_MS", "20")])
        .ready()
        .await;
    let job = json!({"id": "d-1", "type": "llama_inference", "userId": 3,
                     "payload": {"text": "Redis keeps jobs. Jobs stream.", "stream": true}});
    let (status, body) = hub
        .http("POST", "/api/jobs", &[JSON], &job.to_string())
        .await;
    assert_eq!(status, 202, "{body}");
    let (mut text, mut seq) = (String::new(), 0);
    let result = loop {
        let frame = user.recv().await;
        match frame["type"].as_str() {
            Some("ai-chunk") => {
                let (s, delta) = chunk_data(&frame);
                assert_eq!(s, seq + 1);
                seq = s;
                text.push_str(&delta);
            }
            Some("ai-result") => break frame["data"].clone(),
            _ => {}
        }
    };
    let expected = "Your text has 30 characters, 5 words and 2 sentences. Its keywords: jobs, keeps, redis, stream.";
    assert_eq!(text, expected);
    assert_eq!(result["result"]["text"], expected);
    assert_eq!(result["chunks"], seq);
    assert_eq!(seq, 16);
}
