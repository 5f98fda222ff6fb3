//! A client that comes back before the hub noticed its drop (a network switch: the old TCP
//! connection lingers on the hub until a ping or idle timeout) takes its live session over,
//! on any instance: the old connection is closed as replaced (4004 on `/ws`, a server
//! disconnect on Socket.IO) and kept, and the new one resumes from its offset
//! (docs/protocol.md#session-resume, docs/socketio.md#connection-state-recovery).

mod common;
#[path = "common/redis_proxy.rs"]
mod redis_proxy;
mod sio_common;

use common::{
    hub,
    resume::{
        chat, expect_chat, expect_notification, notify, reset, resume_native, rita, saves_counted,
        silent_rita, silent_sio_rita,
    },
    ChannelWatch, Client, Ending, Hub, Redis,
};
use hub_actors::hub::client::{HANDOVER_LIMIT, HANDOVER_WAIT};
use redis_proxy::RedisProxy;
use serde_json::{json, Value};
use sio_common::{connect_with, resume_sio, Frame, Ws};

/// Two hubs on one Redis, and a `chatter` in `room-r` on the second.
async fn two_hubs(redis: &Redis, env: &[(&str, &str)]) -> (Hub, Hub, Client) {
    let first = hub(redis, env).await;
    let second = hub(redis, &[]).await;
    let mut chatter = second.user("chatter").await;
    chatter.join("room-r").await;
    (first, second, chatter)
}

#[tokio::test]
async fn a_native_client_back_before_the_hub_noticed_takes_its_session_over() {
    let redis = Redis::start().await;
    let (first, second, mut chatter) = two_hubs(&redis, &[]).await;
    let (mut old, connected) = rita(&first, "resume=true").await;
    let token = connected["resume"].as_str().unwrap().to_owned();
    old.join("room-r").await;
    notify(&redis, "rita", "n1").await;
    let offset = old.recv_type("notification").await["offset"]
        .as_u64()
        .unwrap();

    // The network switches: the old connection still looks open to `first`; what is sent now
    // goes to it, and is never read.
    notify(&redis, "rita", "n2").await;
    chat(&mut chatter, "c1").await;
    let mut new = resume_native(&second, &token, offset).await;
    expect_notification(&mut new, "n2").await;
    expect_chat(&mut new, "c1").await;
    assert_eq!(
        old.expect_close().await,
        Ending::Close(4004),
        "the old connection is closed as replaced"
    );
    assert_eq!(first.metric("hub_sio_takeovers_total").await, 1.0);

    chat(&mut chatter, "c2").await;
    notify(&redis, "rita", "n3").await;
    expect_chat(&mut new, "c2").await;
    expect_notification(&mut new, "n3").await;
}

#[tokio::test]
async fn a_socketio_client_back_before_the_hub_noticed_takes_its_session_over() {
    let redis = Redis::start().await;
    let (first, second, _chatter) = two_hubs(&redis, &[]).await;
    let (mut old, reply) = connect_with(first.port, &json!({"userId": "rita"})).await;
    let pid = reply["pid"].as_str().expect("a pid").to_owned();
    notify(&redis, "rita", "n1").await;
    let n1 = old.text_skipping_pings().await;
    let n1: Value = serde_json::from_str(n1.strip_prefix("42").unwrap()).unwrap();
    let offset = n1[2].as_str().expect("an offset").to_owned();

    notify(&redis, "rita", "n2").await;
    let mut new = resume_sio(&second, &pid, &offset).await;
    let n2 = new.text_skipping_pings().await;
    let n2: Value = serde_json::from_str(n2.strip_prefix("42").unwrap()).unwrap();
    assert_eq!(n2[1]["title"], "n2", "{n2}");
    // The old connection got n2, then the server disconnect.
    loop {
        match old.next_skipping_pings().await {
            Frame::Text(t) if t == "41" => break,
            Frame::Text(t) if t.starts_with("42") => continue,
            other => panic!("expected the server disconnect, got {other:?}"),
        }
    }
    assert_eq!(first.metric("hub_sio_takeovers_total").await, 1.0);
}

/// The race between the old session being kept and the new one taking it, on two instances:
/// the old connection drops on its own (its instance keeps it) after the new one asked it to
/// hand over, and the ask never reached the old instance, so nobody answered it. The new
/// connection still resumes: every kept session says so on the user's channel. Made to happen
/// on purpose: the old instance connects to Redis as a user of its own, whose subscriptions
/// are then cut, so that it cannot hear the ask (it still writes and publishes).
#[tokio::test]
async fn a_session_kept_on_its_own_while_its_takeover_is_asked_still_resumes() {
    let redis = Redis::start().await;
    let mut admin = redis.conn().await;
    let acl = |rules: &[&str]| {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg("first").arg(rules);
        cmd
    };
    let () = acl(&["on", ">pw", "~*", "&*", "+@all"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let url = format!("redis://first:pw@127.0.0.1:{}", redis.port);
    let first = common::hub_with_url(&url, &[]).await;
    let second = hub(&redis, &[]).await;
    let (old, token) = silent_rita(&first, 1 << 20).await;
    notify(&redis, "rita", "n1").await;
    let mut watch = ChannelWatch::start(&redis, "user:notifications:rita").await;
    // `first` hears nothing more from the user's channel.
    let () = acl(&["-subscribe", "-psubscribe", "-ssubscribe"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg("first")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .unwrap();

    let query = format!("resume={token}&offset=0");
    let ((mut new, connected), ()) = tokio::join!(rita(&second, &query), async {
        loop {
            let message = watch.next().await;
            if message["$hub"] == "takeover" && message.get("kept").is_none() {
                break;
            }
        }
        // Asked, unheard: now the old connection drops, and `first` keeps the session.
        reset(old);
    });
    assert_eq!(connected["resumed"], true, "{connected}");
    expect_notification(&mut new, "n1").await;
    assert_eq!(
        first.metric("hub_sio_takeovers_total").await,
        0.0,
        "the old session dropped on its own: nobody was replaced"
    );
    saves_counted(&first, 1.0).await;
}

/// An instance killed before it kept its sessions leaves their tokens marked live: a client
/// presenting one waits for a handover that never comes, then connects anew.
#[tokio::test]
async fn a_token_of_a_killed_instance_connects_anew() {
    let redis = Redis::start().await;
    let (first, second, _chatter) = two_hubs(&redis, &[]).await;
    let (_old, connected) = rita(&first, "resume=true").await;
    let token = connected["resume"].as_str().unwrap().to_owned();
    first.signal(libc::SIGKILL);

    let (_new, connected) = rita(&second, &format!("resume={token}&offset=0")).await;
    assert_eq!(connected["resumed"], false, "{connected}");
    assert_ne!(connected["resume"], token, "a fresh token: {connected}");
    assert_eq!(
        second
            .metric("hub_sio_recoveries_total{result=\"expired\"}")
            .await,
        1.0
    );
}

/// A hub whose subscriptions lag (out of CPU: its ingest behind) hears a takeover ask late, and
/// so does the old session it holds; the new connection's wait starts when its own ask came
/// back, so it still resumes instead of answering `resumed:false` as if the old session's
/// instance were dead. Made to happen on purpose: a proxy holds the ask on the hub's
/// subscription for longer than `HANDOVER_WAIT`.
#[tokio::test]
async fn a_takeover_heard_late_by_a_lagging_hub_still_resumes() {
    let redis = Redis::start().await;
    let proxy = RedisProxy::start(redis.port).await;
    let hub = common::hub_with_url(&proxy.url(), &[]).await;
    let (old, token) = silent_rita(&hub, 1 << 20).await;
    notify(&redis, "rita", "n1").await;
    proxy.hold_push(
        r#""$hub":"takeover""#,
        HANDOVER_WAIT + std::time::Duration::from_secs(1),
    );
    let mut new = resume_native(&hub, &token, 0).await;
    expect_notification(&mut new, "n1").await;
    drop(old);
}

/// A Socket.IO CONNECT the hub answers after the connect timeout (`HUB_AUTH_TIMEOUT_MS`, 1 s
/// here) passed, because its takeover's ask came back late, is still answered and resumes:
/// the timeout is the client's time to send CONNECT, not the hub's to answer it. Before, the
/// hub closed such connections with `1000 connect timeout` and the session they were taking
/// over was lost (the next resume found no record).
#[tokio::test]
async fn a_socketio_takeover_answered_after_the_connect_timeout_still_resumes() {
    let redis = Redis::start().await;
    let proxy = RedisProxy::start(redis.port).await;
    let hub = common::hub_with_url(&proxy.url(), &[("HUB_AUTH_TIMEOUT_MS", "1000")]).await;
    let (old, pid) = silent_sio_rita(&hub, 1 << 20).await;
    notify(&redis, "rita", "n1").await;
    proxy.hold_push(r#""$hub":"takeover""#, std::time::Duration::from_secs(3));
    let (mut new, _) = Ws::open(hub.port, "/socket.io/").await;
    let auth = json!({"userId": "rita", "pid": &pid, "offset": "0"});
    new.send(&format!("40{auth}")).await;
    let reply = new.next_skipping_pings().await;
    let Frame::Text(reply) = reply else {
        panic!("the CONNECT is answered, the connection is not closed: {reply:?}");
    };
    let Some(reply) = reply.strip_prefix("40") else {
        panic!("a CONNECT reply, not the close packet `1`: {reply}");
    };
    let reply: Value = serde_json::from_str(reply).unwrap();
    assert_eq!(reply["pid"], pid, "resumed: {reply}");
    let n1 = new.text_skipping_pings().await;
    let n1: Value = serde_json::from_str(n1.strip_prefix("42").unwrap()).unwrap();
    assert_eq!(n1[1]["title"], "n1", "{n1}");
    assert_eq!(
        hub.metric("hub_engineio_sessions_closed_total{reason=\"connect_timeout\"}")
            .await,
        0.0
    );
    drop(old);
}

/// The handover waits docs/protocol.md states are the ones the hub uses.
#[test]
fn the_documented_handover_waits_are_the_hubs() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md")).unwrap();
    for (name, wait) in [
        ("HANDOVER_WAIT", HANDOVER_WAIT),
        ("HANDOVER_LIMIT", HANDOVER_LIMIT),
    ] {
        let stated = format!("`{name}` ({} s)", wait.as_secs());
        assert!(
            doc.contains(&stated),
            "docs/protocol.md should say {stated}"
        );
    }
}
