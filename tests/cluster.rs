//! The hub on a real Redis Cluster (`REDIS_CLUSTER_URLS`; docs/cluster.md): local clusters
//! started per test on free ports. Every feature across two instances; a job's chunks to a
//! native and a Socket.IO session on two instances, and a `watch-job` mid-stream; a slot that
//! holds subscribed channels moved to another master; a master killed and its replica taking
//! over.

mod common;
mod sio_common;

use std::process::{Child, Command, Stdio};

use common::{
    cache::CacheBackend,
    cluster::Cluster,
    eventually, hub_with_url,
    jobs::{HandJob, JobText},
    Client, Hub,
};
use serde_json::{json, Value};

const KEY: &str = "cluster-test-key";

/// A hub on `cluster` (API key [`KEY`]), with `env` on top; returns once Redis is connected.
async fn hub_on(cluster: &Cluster, env: &[(&str, &str)]) -> Hub {
    let urls = cluster.urls();
    let mut all = vec![("REDIS_CLUSTER_URLS", urls.as_str()), ("HUB_API_KEY", KEY)];
    all.extend_from_slice(env);
    let hub = hub_with_url("", &all).await;
    eventually("the hub to connect to the cluster", || async {
        (hub.health().await.1["redis"]["connected"] == true).then_some(())
    })
    .await;
    hub
}

/// A `relay-hub worker` on `cluster`; killed on drop.
struct WorkerProc(Child);

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(cluster: &Cluster) -> WorkerProc {
    let child = Command::new(env!("CARGO_BIN_EXE_relay-hub"))
        .arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_CLUSTER_URLS", cluster.urls())
        .env("HUB_DEMO_LATENCY_MS", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start relay-hub worker");
    WorkerProc(child)
}

async fn api(hub: &Hub, method: &str, path: &str, body: &Value) -> (u16, String) {
    let auth = format!("Bearer {KEY}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    hub.http(method, path, &headers, &body.to_string()).await
}

fn note(user: &str, title: &str) -> Value {
    json!({"userId": user, "type": "info", "title": title, "message": "m"})
}

/// `POST /api/notify` (202 expected).
async fn notify(hub: &Hub, user: &str, title: &str) {
    let (status, body) = api(hub, "POST", "/api/notify", &note(user, title)).await;
    assert_eq!(status, 202, "{body}");
}

/// `FCALL relay_notify` as a service calls it on a cluster; returns the inbox id.
async fn fcall(cluster: &Cluster, user: &str, title: &str) -> String {
    let mut conn = cluster.conn().await;
    let (id, _): (String, i64) = redis::cmd("FCALL")
        .arg("relay_notify")
        .arg(1)
        .arg(format!("inbox:{{user:notifications:{user}}}"))
        .arg(note(user, title).to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    id
}

/// The next notification's title.
async fn title(client: &mut Client) -> String {
    let frame = client.recv_type("notification").await;
    frame["data"]["title"].as_str().unwrap().to_string()
}

/// The next chat message's `(message, id)`.
async fn chat(client: &mut Client) -> (String, String) {
    let m = client.recv_type("chat-message").await["data"].clone();
    (
        m["message"].as_str().unwrap().to_string(),
        m["id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn every_feature_works_across_two_instances_on_a_cluster() {
    let cluster = Cluster::start(3, 0).await;
    let one = hub_on(&cluster, &[]).await;
    let two = hub_on(&cluster, &[("HUB_INGEST_CONNECTIONS", "2")]).await;
    let _worker = worker(&cluster);

    // Notifications: users spread over the masters, half on each instance, three ways in.
    let users: Vec<String> = (0..8).map(|i| format!("u{i}")).collect();
    let mut masters = Vec::new();
    for u in &users {
        masters.push(cluster.master_of(&format!("user:notifications:{u}")).await);
    }
    masters.sort();
    masters.dedup();
    assert_eq!(masters.len(), 3, "the users' channels are on every master");
    let mut clients = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let hub = if i % 2 == 0 { &one } else { &two };
        clients.push(hub.user(u).await);
    }
    let mut conn = cluster.conn().await;
    for (u, client) in users.iter().zip(&mut clients) {
        notify(&one, u, "api").await;
        assert_eq!(title(client).await, "api");
        let id = fcall(&cluster, u, "fcall").await;
        let frame = client.recv_type("notification").await;
        assert_eq!(frame["data"]["inboxId"], json!(id), "FCALL reaches {u}");
        let receivers: i64 = redis::cmd("SPUBLISH")
            .arg(format!("user:notifications:{u}"))
            .arg(note(u, "spublish").to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(receivers, 1, "one instance holds {u}");
        assert_eq!(title(client).await, "spublish");
    }

    // Chat across the instances, presence, then history recovery after a reconnect.
    let mut ann = one.user("ann").await.with_presence();
    let mut bob = two.user("bob").await;
    ann.join("lobby").await;
    bob.join("lobby").await;
    // A session also gets its own user's join: ann's comes first, then bob's.
    for user in ["ann", "bob"] {
        let joined = ann.recv_type("presence").await;
        assert_eq!(
            (joined["event"].clone(), joined["userId"].clone()),
            (json!("join"), json!(user))
        );
    }
    ann.send(json!({"type": "chat-message", "room": "lobby", "message": "hi"}))
        .await;
    let (text, id) = chat(&mut bob).await;
    assert_eq!(text, "hi");
    assert_eq!(chat(&mut ann).await, (text, id.clone()));
    bob.close().await;
    let left = ann.recv_type("presence").await;
    assert_eq!(
        (left["event"].clone(), left["userId"].clone()),
        (json!("leave"), json!("bob"))
    );
    for m in ["while", "away"] {
        ann.send(json!({"type": "chat-message", "room": "lobby", "message": m}))
            .await;
        chat(&mut ann).await;
    }
    let mut bob = two.user("bob").await;
    bob.send(json!({"type": "join-room", "room": "lobby", "since": id}))
        .await;
    let joined = bob.recv_type("joined").await;
    let missed: Vec<&str> = joined["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        (missed, joined["recovered"].clone()),
        (vec!["while", "away"], json!(true))
    );
    let back = ann.recv_type("presence").await;
    assert_eq!(
        (back["event"].clone(), back["userId"].clone()),
        (json!("join"), json!("bob"))
    );

    // The job queue end to end: enqueued on one instance, run by the worker, result pushed.
    let job = json!({"id": "cluster-job", "type": "llama_inference", "userId": "ann",
        "payload": {"text": "Redis Cluster shards the hub."}});
    let (status, body) = api(&two, "POST", "/api/jobs", &job).await;
    assert_eq!(status, 202, "{body}");
    let result = ann.recv_result().await;
    assert_eq!(
        (
            result["data"]["jobId"].clone(),
            result["data"]["status"].clone()
        ),
        (json!("cluster-job"), json!("success"))
    );
    let (status, body) = api(&one, "GET", "/api/jobs/cluster-job", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["state"],
        "done"
    );

    // Cache invalidation (a fixed channel: classic pub/sub, which every node carries): two
    // backend instances keep their local caches in sync, and sessions on topic cache see it.
    let urls = cluster.urls();
    let env = [("REDIS_CLUSTER_URLS", urls.as_str())];
    let (a, b) = (
        CacheBackend::start(&env, "a").await,
        CacheBackend::start(&env, "b").await,
    );
    a.put("color", "red").await;
    // The write's invalidation reaches b on its own time: read only once it has, or it can
    // evict what b just cached.
    eventually("the first write's invalidation applied at b", || async {
        (b.invalidations().await == 1).then_some(())
    })
    .await;
    assert_eq!(b.get("color").await["value"], "red");
    assert_eq!(b.get("color").await["source"], "cache");
    b.put("color", "blue").await;
    for backend in [&a, &b] {
        eventually("both writes' invalidations applied", || async {
            (backend.invalidations().await == 2).then_some(())
        })
        .await;
    }
    assert_eq!(a.get("color").await["value"], "blue");
    bob.send(json!({"type": "subscribe", "topic": "cache"}))
        .await;
    bob.recv_type("subscribed").await;
    let (status, body) = api(
        &one,
        "POST",
        "/api/cache/invalidate",
        &json!({"pattern": "user:*"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let frame = bob.recv_type("cache-invalidate").await;
    assert_eq!(frame["data"]["pattern"], "user:*");
}

/// The payload of the next `ai-chunk` frame of a native client (after `job-state` frames).
async fn native_chunk(client: &mut Client) -> Value {
    loop {
        let frame = client.recv().await;
        if frame["type"] == "ai-chunk" {
            return frame["data"].clone();
        }
        assert_eq!(frame["type"], "job-state", "{frame}");
    }
}

/// The payload of the next `ai-chunk` event of a Socket.IO client.
async fn sio_chunk(ws: &mut sio_common::Ws) -> Value {
    loop {
        let text = ws.text_skipping_pings().await;
        let Some(body) = text.strip_prefix("42") else {
            continue;
        };
        let args: Value = serde_json::from_str(body).unwrap();
        if args[0] == "ai-chunk" {
            return args[1].clone();
        }
    }
}

/// A job's chunks on a cluster (the job functions under the `{jobs}` prefix, in its slot):
/// a native session on one instance and a Socket.IO session on the other get them live; a
/// tab that opens on the second instance mid-stream asks `watch-job` and gets the text so
/// far, then the live chunks, each once and in order.
#[tokio::test]
async fn a_jobs_chunks_stream_to_both_ways_in_and_a_watch_catches_up_on_a_cluster() {
    let cluster = Cluster::start(3, 0).await;
    let one = hub_on(&cluster, &[]).await;
    let two = hub_on(&cluster, &[]).await;
    let mut tab = one.user("jo").await;
    let (mut sio, _) = sio_common::connect_with(two.port, &json!({"userId": "jo"})).await;

    let mut conn = cluster.conn().await;
    let job = HandJob::start(&mut conn, "{jobs}", "cj-1", "jo").await;
    let deltas = ["Shards", " keep", " the", " text", " whole"];
    for (seq, delta) in (1..).zip(&deltas[..3]) {
        job.chunk(&mut conn, seq, delta).await;
    }
    for seq in 1..=3u64 {
        let expected = json!({"jobId": "cj-1", "seq": seq, "delta": deltas[seq as usize - 1]});
        assert_eq!(native_chunk(&mut tab).await, expected);
        assert_eq!(sio_chunk(&mut sio).await, expected);
    }

    let mut late = two.user("jo").await;
    late.send(json!({"type": "watch-job", "jobId": "cj-1", "id": 1}))
        .await;
    let watched = late.recv_type("job-watched").await;
    assert_eq!(
        (watched["state"].clone(), watched["seq"].clone()),
        (json!("running"), json!(3)),
        "{watched}"
    );
    let mut text = JobText::default();
    for c in watched["chunks"].as_array().expect("chunks") {
        text.apply(&json!({"seq": c["seq"], "delta": c["delta"]}));
    }
    for (seq, delta) in (4..).zip(&deltas[3..]) {
        job.chunk(&mut conn, seq, delta).await;
    }
    while text.last < 5 {
        text.apply(&native_chunk(&mut late).await);
    }
    assert_eq!(text.text, deltas.concat());
    for seq in 4..=5u64 {
        assert_eq!(native_chunk(&mut tab).await["seq"], seq);
        assert_eq!(sio_chunk(&mut sio).await["seq"], seq);
    }
}

#[tokio::test]
async fn a_slot_moved_to_another_master_keeps_delivering_its_channels() {
    let cluster = Cluster::start(3, 0).await;
    let hub = hub_on(&cluster, &[]).await;
    let mut ann = hub.user("ann").await;
    ann.join("moving").await;
    let channel = "user:notifications:ann";
    let before = cluster.master_of(channel).await;
    notify(&hub, "ann", "before").await;
    assert_eq!(title(&mut ann).await, "before");

    let to = *cluster
        .masters()
        .await
        .iter()
        .find(|p| **p != before)
        .unwrap();
    cluster.move_slot_of(channel, to).await;
    // Published right after the move: live once the hub resubscribed on the new master, or
    // from the inbox (which moved with the slot) when it was published before that.
    notify(&hub, "ann", "after").await;
    assert_eq!(title(&mut ann).await, "after");
    eventually("the hub to subscribe on the slot's new master", || async {
        let mut conn = common::cluster::node_conn(to).await?;
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg(channel)
            .query_async(&mut conn)
            .await
            .ok()?;
        (counts.first().map(|c| c.1) == Some(1)).then_some(())
    })
    .await;
    notify(&hub, "ann", "later").await;
    assert_eq!(title(&mut ann).await, "later");
    // The room's channel (on whatever master) still works too.
    ann.send(json!({"type": "chat-message", "room": "moving", "message": "still here"}))
        .await;
    assert_eq!(chat(&mut ann).await.0, "still here");
    assert!(hub.metric("hub_redis_reconnects_total").await >= 1.0);
}

#[tokio::test]
async fn a_failed_master_is_replaced_and_delivery_resumes() {
    let mut cluster = Cluster::start(3, 1).await;
    let hub = hub_on(&cluster, &[]).await;
    let mut ann = hub.user("ann").await;
    ann.join("failover").await;
    let channel = "user:notifications:ann";
    let master = cluster.master_of(channel).await;
    let id = fcall(&cluster, "ann", "before").await;
    assert_eq!(title(&mut ann).await, "before");
    // Replicated before the kill, so the replica that takes over has it.
    cluster.replicated(master).await;

    // The hub may not subscribe anywhere until the test allows it, so what is published after
    // the failover is surely published while the hub cannot receive it.
    cluster.set_acl("-ssubscribe").await;
    cluster.kill_master(master).await;
    eventually("the hub to see its pub/sub connection gone", || async {
        (hub.health().await.1["redis"]["connected"] == false).then_some(())
    })
    .await;
    fcall(&cluster, "ann", "after").await;
    cluster.set_acl("+ssubscribe").await;
    // Filled in from the inbox on the new master once the hub is back, and counted.
    assert_eq!(title(&mut ann).await, "after", "delivery resumed");
    assert_eq!(hub.metric("hub_notifications_gap_filled_total").await, 1.0);
    ann.send(json!({"type": "chat-message", "room": "failover", "message": "still here"}))
        .await;
    assert_eq!(chat(&mut ann).await.0, "still here");
    assert!(hub.metric("hub_redis_reconnects_total").await >= 1.0);
    // The inbox survived on the new master: a reconnect with the first id gets the second.
    let mut again = Client::connect(&hub.ws_url(&format!("userId=ann&since={id}"))).await;
    let hello = again.recv_type("connected").await;
    assert_eq!(hello["recovered"], true);
    assert_eq!(title(&mut again).await, "after");
}

/// `FCALL relay_notify` straight on the master on `port` (which serves the user's slot).
async fn fcall_on(port: u16, user: &str, title: &str) {
    let mut conn = common::cluster::node_conn(port).await.unwrap();
    let _: redis::Value = redis::cmd("FCALL")
        .arg("relay_notify")
        .arg(1)
        .arg(format!("inbox:{{user:notifications:{user}}}"))
        .arg(note(user, title).to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// Subscribers of the classic channel `channel` on the node on `port` (classic
/// subscriptions are per node).
async fn numsub(port: u16, channel: &str) -> i64 {
    let mut conn = common::cluster::node_conn(port).await.unwrap();
    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut conn)
        .await
        .unwrap();
    counts[0].1
}

/// The master the hub reads the fixed channels from.
async fn fixed_master(cluster: &Cluster) -> u16 {
    for port in cluster.masters().await {
        if numsub(port, "ai:results").await == 1 {
            return port;
        }
    }
    panic!("no master carries the hub's fixed channels");
}

/// A user (`{prefix}N`) whose channel is on the master `port`.
async fn user_on(cluster: &Cluster, port: u16, prefix: &str) -> String {
    for i in 0.. {
        let user = format!("{prefix}{i}");
        if cluster
            .master_of(&format!("user:notifications:{user}"))
            .await
            == port
        {
            return user;
        }
    }
    unreachable!()
}

/// A room whose channel is on the master `port`.
async fn room_on(cluster: &Cluster, port: u16) -> String {
    for i in 0.. {
        let room = format!("r{i}");
        if cluster.master_of(&format!("chat:room:{room}")).await == port {
            return room;
        }
    }
    unreachable!()
}

/// Waits until `/health` says `status` with `redis.nodesDown` == `down`.
async fn health_is(hub: &Hub, status: &str, down: i64) {
    eventually(&format!("/health to say {status}, {down} down"), || async {
        let (_, health) = hub.health().await;
        (health["status"] == status && health["redis"]["nodesDown"] == down).then_some(())
    })
    .await
}

#[tokio::test]
async fn a_master_that_stops_answering_is_noticed_while_the_others_send() {
    let cluster = Cluster::start(3, 0).await;
    // Redis keeps serving the other masters' slots while one is unreachable.
    cluster
        .config_set("cluster-require-full-coverage", "no")
        .await;
    let hub = hub_on(&cluster, &[("HUB_PUBSUB_TIMEOUT_MS", "500")]).await;
    // The hung master is not the one carrying the fixed channels: the canary keeps bytes
    // coming from that one the whole time.
    let fixed = fixed_master(&cluster).await;
    let masters = cluster.masters().await;
    let hung = *masters.iter().find(|p| **p != fixed).unwrap();
    let (stuck_user, late_user, fine_user) = (
        user_on(&cluster, hung, "s").await,
        user_on(&cluster, hung, "l").await,
        user_on(&cluster, fixed, "f").await,
    );
    let mut stuck = hub.user(&stuck_user).await;

    cluster.signal(hung, "STOP");
    // Noticed by its own unanswered PING, and reported.
    health_is(&hub, "degraded", 1).await;
    assert_eq!(hub.metric("hub_redis_unresponsive_total").await, 1.0);
    // A session whose channel is on the hung master waits for its subscription; the other
    // masters' channels keep working: a session there is connected (its subscribe is not
    // stuck behind the hung master) and delivered to.
    let mut late = Client::connect(&hub.ws_url(&format!("userId={late_user}"))).await;
    let mut fine = hub.user(&fine_user).await;
    fcall_on(fixed, &fine_user, "meanwhile").await;
    assert_eq!(title(&mut fine).await, "meanwhile");

    cluster.signal(hung, "CONT");
    health_is(&hub, "ok", 0).await;
    assert_eq!(
        late.recv_type("connected").await["userId"],
        json!(late_user)
    );
    for (client, user) in [(&mut stuck, &stuck_user), (&mut late, &late_user)] {
        fcall_on(hung, user, "back").await;
        assert_eq!(title(client).await, "back", "{user} is subscribed again");
    }
}

#[tokio::test]
async fn a_failed_master_stops_only_its_slots_and_theirs_are_filled_after_the_failover() {
    let mut cluster = Cluster::start(3, 1).await;
    cluster
        .config_set("cluster-require-full-coverage", "no")
        .await;
    // The test says when the replica takes over.
    cluster
        .config_set("cluster-replica-no-failover", "yes")
        .await;
    let hub = hub_on(&cluster, &[("HUB_INGEST_CONNECTIONS", "2")]).await;
    // The failed master carries the fixed channels too.
    let failed = fixed_master(&cluster).await;
    let replica = cluster.replica_of(failed).await;
    let other = *cluster
        .masters()
        .await
        .iter()
        .find(|p| **p != failed)
        .unwrap();
    let (gone_user, kept_user, new_user) = (
        user_on(&cluster, failed, "g").await,
        user_on(&cluster, other, "k").await,
        user_on(&cluster, other, "n").await,
    );
    let mut gone = hub.user(&gone_user).await;
    let mut kept = hub.user(&kept_user).await;
    let room = room_on(&cluster, failed).await;
    gone.join(&room).await;
    // The replica has everything up to here (the inbox function included).
    fcall_on(failed, &gone_user, "before").await;
    assert_eq!(title(&mut gone).await, "before");
    cluster.replicated(failed).await;

    cluster.kill(failed);
    // One master down, counted by each ingest connection.
    health_is(&hub, "degraded", 2).await;
    // The other masters' channels go on: live notifications, a new session.
    fcall_on(other, &kept_user, "during").await;
    assert_eq!(title(&mut kept).await, "during");
    let mut new = hub.user(&new_user).await;
    fcall_on(other, &new_user, "hello").await;
    assert_eq!(title(&mut new).await, "hello");
    // The fixed channels moved to a master that answers.
    let moved = eventually("the fixed channels to move", || async {
        for port in cluster.masters().await {
            if port != failed && numsub(port, "ai:results").await == 1 {
                return Some(port);
            }
        }
        None
    })
    .await;
    let result = json!({"jobId": "j", "userId": kept_user, "status": "success", "result": {}});
    let mut conn = common::cluster::node_conn(moved).await.unwrap();
    let _: redis::Value = redis::cmd("PUBLISH")
        .arg("ai:results")
        .arg(result.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept.recv_type("ai-result").await["data"]["jobId"], "j");

    // The hub may not subscribe until the test allows it, so what is published after the
    // failover is surely published while the hub cannot receive it.
    cluster.set_acl("-ssubscribe").await;
    cluster.take_over(replica).await;
    fcall(&cluster, &gone_user, "after").await;
    let chat_body = json!({"userId": "svc", "username": "svc", "message": "missed"});
    let (status, body) = api(&hub, "POST", &format!("/api/chat/{room}"), &chat_body).await;
    assert_eq!(status, 202, "{body}");
    cluster.set_acl("+ssubscribe").await;
    // Filled from the inbox and the history (per channel, so in either order).
    let mut filled = Vec::new();
    for _ in 0..2 {
        let frame = gone.recv().await;
        filled.push(match frame["type"].as_str() {
            Some("notification") => frame["data"]["title"].clone(),
            Some("chat-message") => frame["data"]["message"].clone(),
            _ => panic!("unexpected {frame}"),
        });
    }
    filled.sort_by_key(|v| v.to_string());
    assert_eq!(filled, [json!("after"), json!("missed")]);
    assert_eq!(hub.metric("hub_notifications_gap_filled_total").await, 1.0);
    assert_eq!(hub.metric("hub_chat_gap_filled_total").await, 1.0);
    health_is(&hub, "ok", 0).await;
    fcall(&cluster, &kept_user, "later").await;
    assert_eq!(title(&mut kept).await, "later");
}

/// A resume asked while the master holding its record has just died, before any replica
/// took over (the test starts the failover only once the hub is seen waiting): the hub waits
/// for the replica (`HUB_REDIS_FAILOVER_WAIT_MS`) instead of refusing, and the client gets
/// what it missed. On a hub that does not wait, the record read fails and the resume is
/// refused.
#[tokio::test]
async fn a_resume_during_a_failover_waits_for_the_replica_and_misses_nothing() {
    use common::resume::{resumable_rita, saves_counted};
    let mut cluster = Cluster::start(3, 1).await;
    // No failover until the test asks for one.
    cluster
        .config_set("cluster-replica-no-failover", "yes")
        .await;
    let hub = hub_on(&cluster, &[("HUB_REDIS_FAILOVER_WAIT_MS", "60000")]).await;
    let (mut client, token) = resumable_rita(&hub).await;
    fcall(&cluster, "rita", "before").await;
    let before = client.recv_type("notification").await;
    let offset = before["offset"].as_u64().expect("an offset");
    drop(client);
    saves_counted(&hub, 1.0).await;
    fcall(&cluster, "rita", "missed").await;

    let master = cluster.master_of(&format!("sio:recovery:{token}")).await;
    let replica = cluster.replica_of(master).await;
    // The record (and anything else on that master) replicated before the kill.
    cluster.replicated(master).await;
    cluster.kill(master);
    let url = hub.ws_url(&format!("userId=rita&resume={token}&offset={offset}"));
    let resume = tokio::spawn(async move {
        let mut client = Client::connect(&url).await;
        let connected = client.recv_type("connected").await;
        (client, connected)
    });
    eventually("the hub to wait for the failed master", || async {
        (hub.metric("hub_redis_failover_waits_total").await >= 1.0).then_some(())
    })
    .await;
    cluster.take_over(replica).await;
    let (mut client, connected) = resume.await.unwrap();
    assert_eq!(connected["resumed"], true, "{connected}");
    let missed = client.recv_type("notification").await;
    assert_eq!(missed["data"]["title"], "missed", "{missed}");
}

/// One try of a cluster command has a deadline whatever redis-rs does inside it: a command to
/// a master that answers nothing (stopped), on a connection whose reply timeout is far away,
/// fails at the deadline, and the connection is replaced, so that commands work again once
/// the master answers. (After a failover under load, a redis-rs cluster connection was seen to
/// wedge: its commands never returned while every node answered, and the hub stalled.)
#[tokio::test]
async fn a_cluster_command_past_its_deadline_fails_and_its_connection_is_replaced() {
    use std::time::Duration;
    let cluster = Cluster::start(3, 0).await;
    let urls: Vec<String> = cluster.urls().split(',').map(str::to_owned).collect();
    let store = hub_store::Store::cluster(&urls).unwrap();
    let settings = hub_store::ConnSettings {
        response_timeout: Duration::from_secs(600),
        request_deadline: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let mut conn = store.connect(settings).unwrap();
    let key = "deadline-key";
    let master = cluster.master_of(key).await;
    let set = |value: &'static str| redis::cmd("SET").arg(key).arg(value).clone();
    let () = set("before").query_async(&mut conn).await.unwrap();

    cluster.signal(master, "STOP");
    let stalled = tokio::time::timeout(common::WAIT, set("stalled").query_async::<()>(&mut conn))
        .await
        .expect("the command fails at its deadline instead of waiting for the reply timeout");
    let err = stalled.expect_err("no answer from a stopped master");
    assert!(err.to_string().contains("replaced"), "{err}");
    cluster.signal(master, "CONT");
    let value: String = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(["before", "stalled"].contains(&value.as_str()), "{value}");
}
