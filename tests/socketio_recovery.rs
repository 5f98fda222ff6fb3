//! Socket.IO connection state recovery with the real `socket.io-client`
//! (`tests/socketio/recovery.mjs`): a client whose TCP connection is destroyed reconnects by
//! itself, to the same instance or to another one, and gets its room back and every
//! notification and chat message it missed, once and in order, with `socket.recovered`
//! true; once the window has passed it gets a normal connect (`recovered` false).

mod common;
mod sio_common;

use std::{path::Path, process::Stdio};

use sio_common::Ws;

use common::{
    eventually, hub,
    resume::{chat, notify, record_exists, resume_key, saves_counted, Loss},
    Client, Hub, Redis,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};

/// The recovery scenario in Node, driven over stdin/stdout.
struct Node {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Node {
    async fn start(first: &Hub, then: &Hub, user: &str) -> Node {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/socketio");
        assert!(
            dir.join("node_modules/socket.io-client").is_dir(),
            "socket.io-client is not installed: run `npm ci --prefix tests/socketio`"
        );
        let mut child = tokio::process::Command::new("node")
            .arg(dir.join("recovery.mjs"))
            .arg(format!("http://127.0.0.1:{}", first.port))
            .arg(format!("http://127.0.0.1:{}", then.port))
            .arg(user)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run node (Node 18+ must be installed)");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        Node {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        }
    }

    async fn line(&mut self) -> String {
        common::node_line(&mut self.lines).await
    }

    /// Waits for `READY {"phase": phase, ...}`.
    async fn ready(&mut self, phase: &str) -> Value {
        let line = self.line().await;
        let info: Value = serde_json::from_str(
            line.strip_prefix("READY ")
                .unwrap_or_else(|| panic!("expected READY, got {line}")),
        )
        .unwrap();
        assert_eq!(info["phase"], phase, "{info}");
        info
    }

    async fn say(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
    }

    async fn result(mut self) -> Value {
        let line = self.line().await;
        let status = self.child.wait().await.unwrap();
        assert!(status.success(), "scenario failed after printing {line}");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("scenario output: {line}"))
    }
}

fn titles(out: &Value, event: &str, field: &str) -> Vec<String> {
    out["seen"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == event)
        .map(|e| e[field].as_str().unwrap().to_owned())
        .collect()
}

/// Connects to `first`, loses the connection, publishes while the client is away, lets it
/// reconnect to `then`; checks that everything was recovered once and in order.
async fn recovers_everything(redis: &Redis, first: &Hub, then: &Hub, loss: Loss) {
    let mut native = Client::connect(&then.ws_url("userId=native")).await;
    native.recv_type("connected").await;
    native.join("room-r").await;
    let mut node = Node::start(first, then, "rita").await;
    let pid = node.ready("joined").await["pid"]
        .as_str()
        .expect("a pid in the CONNECT reply")
        .to_owned();
    notify(redis, "rita", "n1").await;
    chat(&mut native, "c1").await;
    node.ready("live").await;

    match loss {
        Loss::Drop => node.say("DROP").await,
        Loss::Shutdown => {
            node.say("SHUTDOWN").await;
            first.signal(libc::SIGTERM);
        }
    }
    node.ready("dropped").await;
    eventually("the session kept in Redis", || async {
        record_exists(redis, &pid).await.then_some(())
    })
    .await;
    notify(redis, "rita", "n2").await;
    chat(&mut native, "c2").await;
    notify(redis, "rita", "n3").await;

    node.say("GO").await;
    assert_eq!(node.ready("reconnected").await["recovered"], true);
    assert!(!record_exists(redis, &pid).await, "one recovery per record");
    // Live again, in the room it never joined on this connection.
    chat(&mut native, "c4").await;
    notify(redis, "rita", "end").await;
    let out = node.result().await;

    assert_eq!(out["second"]["pid"], pid, "the same pid");
    assert_eq!(out["second"]["recovered"], true);
    assert_eq!(out["reasons"], json!(["transport close"]));
    assert_eq!(
        titles(&out, "notification", "title"),
        ["n1", "n2", "n3", "end"]
    );
    assert_eq!(titles(&out, "chat-message", "message"), ["c1", "c2", "c4"]);
    let offsets: Vec<u64> = out["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].as_str().expect("an offset").parse().unwrap())
        .collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "offsets grow: {offsets:?}"
    );
    assert_eq!(
        then.metric("hub_sio_recoveries_total{result=\"recovered\"}")
            .await,
        1.0
    );
    if loss == Loss::Drop {
        saves_counted(first, 1.0).await;
    }
}

#[tokio::test]
async fn a_dropped_client_recovers_everything_on_the_same_instance() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    recovers_everything(&redis, &hub, &hub, Loss::Drop).await;
}

#[tokio::test]
async fn a_dropped_client_recovers_everything_on_another_instance() {
    let redis = Redis::start().await;
    let first = hub(&redis, &[]).await;
    let second = hub(&redis, &[]).await;
    recovers_everything(&redis, &first, &second, Loss::Drop).await;
}

#[tokio::test]
async fn a_client_of_an_instance_that_shuts_down_recovers_on_another() {
    let redis = Redis::start().await;
    let first = hub(&redis, &[]).await;
    let second = hub(&redis, &[]).await;
    recovers_everything(&redis, &first, &second, Loss::Shutdown).await;
}

#[tokio::test]
async fn after_the_window_the_client_connects_anew() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_SIO_RECOVERY_SECS", "1")]).await;
    let mut node = Node::start(&hub, &hub, "late").await;
    let pid = node.ready("joined").await["pid"]
        .as_str()
        .unwrap()
        .to_owned();
    notify(&redis, "late", "n1").await;
    let mut native = Client::connect(&hub.ws_url("userId=native")).await;
    native.recv_type("connected").await;
    native.join("room-r").await;
    chat(&mut native, "c1").await;
    node.ready("live").await;

    node.say("DROP").await;
    node.ready("dropped").await;
    eventually("the session kept in Redis", || async {
        record_exists(&redis, &pid).await.then_some(())
    })
    .await;
    eventually("the record to expire", || async {
        (!record_exists(&redis, &pid).await).then_some(())
    })
    .await;
    notify(&redis, "late", "missed").await;
    node.say("GO").await;
    assert_eq!(node.ready("reconnected").await["recovered"], false);
    notify(&redis, "late", "end").await;
    let out = node.result().await;
    assert_eq!(out["second"]["recovered"], false);
    assert_ne!(out["second"]["pid"], pid, "a new pid");
    assert_eq!(titles(&out, "notification", "title"), ["n1", "end"]);
    assert_eq!(
        hub.metric("hub_sio_recoveries_total{result=\"expired\"}")
            .await,
        1.0
    );
}

/// Opens a WebSocket Engine.IO session and CONNECTs with `auth`; the CONNECT reply.
async fn connect(hub: &Hub, auth: Value) -> (Ws, Value) {
    sio_common::connect_with(hub.port, &auth).await
}

#[tokio::test]
async fn a_pid_resumes_only_its_own_users_session_takes_a_live_one_over_and_is_spent_by_a_goodbye()
{
    let redis = Redis::start().await;
    let hub = hub(&redis, &[]).await;
    let (ws, reply) = connect(&hub, json!({"userId": "alice"})).await;
    let pid = reply["pid"].as_str().expect("a pid").to_owned();
    assert_eq!(pid.len(), 32);
    drop(ws); // the TCP connection ends without a close: a transport drop
    eventually("the session kept in Redis", || async {
        record_exists(&redis, &pid).await.then_some(())
    })
    .await;

    let (_mallory, reply) = connect(
        &hub,
        json!({"userId": "mallory", "pid": pid, "offset": "0"}),
    )
    .await;
    assert_ne!(reply["pid"], pid, "another user's pid does not resume");
    assert!(
        record_exists(&redis, &pid).await,
        "nor does it spend the record"
    );
    assert_eq!(
        hub.metric("hub_sio_recoveries_total{result=\"refused\"}")
            .await,
        1.0
    );

    let (mut alice, reply) =
        connect(&hub, json!({"userId": "alice", "pid": pid, "offset": "0"})).await;
    assert_eq!(reply["pid"], pid, "resumed");
    assert!(
        !record_exists(&redis, &pid).await,
        "one recovery per record"
    );
    // Presented again while that session lives: it takes the session over.
    let (mut late, reply) =
        connect(&hub, json!({"userId": "alice", "pid": pid, "offset": "0"})).await;
    assert_eq!(reply["pid"], pid, "taken over");
    assert_eq!(
        alice.text_skipping_pings().await,
        "41",
        "the old one gets a server disconnect"
    );
    // A goodbye spends it.
    late.send("41").await;
    eventually("the goodbye to spend the pid", || async {
        resume_key(&redis, &pid).await.is_none().then_some(())
    })
    .await;
    let (_spent, reply) =
        connect(&hub, json!({"userId": "alice", "pid": pid, "offset": "0"})).await;
    assert_ne!(reply["pid"], pid, "a spent pid does not resume");
    assert_eq!(
        hub.metric("hub_sio_recoveries_total{result=\"expired\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn with_recovery_off_there_is_no_pid_and_no_offset() {
    let redis = Redis::start().await;
    let hub = hub(&redis, &[("HUB_SIO_RECOVERY_SECS", "0")]).await;
    let (mut ws, reply) = connect(&hub, json!({"userId": "plain"})).await;
    assert!(reply.get("pid").is_none(), "{reply}");
    notify(&redis, "plain", "hello").await;
    let text = ws.text().await;
    let event: Value = serde_json::from_str(text.strip_prefix("42").unwrap()).unwrap();
    assert_eq!(event.as_array().unwrap().len(), 2, "no offset: {event}");
}
