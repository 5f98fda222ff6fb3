//! `room-hook`: what the application's room hook (`HUB_ROOM_AUTH_URL`) costs a join storm.
//! Starts its own redis-server, a hook server in this process (answering at once) and a hub
//! in token mode; `--clients` users connect, then all of them join a room of their own at
//! once, three times: a public room (no hook), a hooked room whose answers are not cached
//! (`ttlSecs: 0`: every join asks the hook), and a hooked room whose answer each instance
//! already holds (the same user joined it before, on a connection closed since). Reports each
//! storm's join latency (`join-room` sent to `joined` read) and the hook requests.

use std::{
    path::PathBuf,
    rc::Rc,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::{
    args::Args,
    client::{self, Client},
    report::{self, histogram},
    stack::{wait_until, HubProcess, RedisServer, Scratch},
    verdict::Verdict,
};

use super::{metric_sum, source_ip};

const SECRET: &str = "hub-bench-room-hook-secret-of-32-bytes";

/// Runs the scenario.
pub async fn run(mut args: Args) -> Result<Value, String> {
    let clients: usize = args.get("clients", 1000)?;
    let workers: u64 = args.get("workers", 2)?;
    let hub_bin: PathBuf = args.get("hub-bin", PathBuf::from("target/release/relay-hub"))?;
    let redis_bin: String = args.get("redis-server", "redis-server".to_string())?;
    args.finish()?;

    let scratch = Scratch::new("room-hook")?;
    let redis = RedisServer::start(&redis_bin, &scratch.dir, false)?;
    let hook = HookServer::start().await?;
    let env = [
        ("HUB_AUTH", String::new()),
        ("HUB_JWT_SECRET", SECRET.to_string()),
        ("HUB_API_OPEN", "1".to_string()),
        ("HUB_WORKERS", workers.to_string()),
        ("HUB_PUBLIC_ROOMS", "public-*".to_string()),
        ("HUB_ROOM_AUTH_URL", hook.url.clone()),
        ("HUB_ROOM_AUTH_KEY", "bench".to_string()),
    ];
    let hub = HubProcess::start(&hub_bin, &redis.url(), &env, &scratch.dir, "hub")?;
    eprintln!(
        "room-hook: {clients} users join a room of their own at once: public, hooked and \
         uncached, hooked and cached ({workers} workers)"
    );

    let mut storms = serde_json::Map::new();
    let mut verdict = Verdict::default();
    let first = connect(hub.addr, clients, 0).await?;
    let (public, first) = storm(first, "public").await;
    verdict.check(
        "every public join",
        public.1 == 0,
        format!("{} failed", public.1),
    );
    storms.insert("public".into(), public.0);

    hook.ttl.store(0, Ordering::Relaxed);
    let before = hook.requests();
    let (uncached, first) = storm(first, "uncached").await;
    let asked = hook.requests() - before;
    verdict.check(
        "every uncached join asked the hook",
        uncached.1 == 0 && asked == clients as u64,
        format!("{} failed, {asked} hook requests", uncached.1),
    );
    storms.insert("hook_uncached".into(), with_requests(uncached.0, asked));

    // Warm the cache from these connections, close them, and join again from new ones.
    hook.ttl.store(600, Ordering::Relaxed);
    let (_, first) = storm(first, "cached").await;
    drop(first);
    wait_until(
        "the warming sessions to close",
        Duration::from_secs(30),
        || metric_sum(hub.addr, "hub_connections") == Some(0.0),
    )?;
    let second = connect(hub.addr, clients, clients as u64).await?;
    let before = hook.requests();
    let (cached, _second) = storm(second, "cached").await;
    let asked = hook.requests() - before;
    verdict.check(
        "every cached join answered from the cache",
        cached.1 == 0 && asked == 0,
        format!("{} failed, {asked} hook requests", cached.1),
    );
    storms.insert("hook_cached".into(), with_requests(cached.0, asked));
    verdict.print("room-hook");

    let mut out = serde_json::Map::new();
    out.insert("scenario".into(), json!("room-hook"));
    out.insert("clients".into(), json!(clients));
    out.insert("workers".into(), json!(workers));
    out.insert("storms".into(), Value::Object(storms));
    out.extend(verdict.fields());
    Ok(Value::Object(out))
}

fn with_requests(mut storm: Value, requests: u64) -> Value {
    storm["hook_requests"] = json!(requests);
    storm
}

/// A token for user `u{i}`.
fn token(i: usize) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": format!("u{i}"), "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).expect("an HS256 key"),
    )
    .expect("a token")
}

/// Connects `n` users (`u0`...), 100 handshakes at a time, each from its own source address.
async fn connect(
    target: std::net::SocketAddr,
    n: usize,
    first_source: u64,
) -> Result<Vec<Client>, String> {
    let gate = Rc::new(tokio::sync::Semaphore::new(100));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let gate = gate.clone();
            tokio::task::spawn_local(async move {
                let _turn = gate.acquire().await.expect("semaphore open");
                let source = source_ip(first_source + i as u64);
                client::open_with_token(target, Some(source), &token(i)).await
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(n);
    for h in handles {
        let c = h
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        clients.push(c);
    }
    Ok(clients)
}

/// Every client joins `{prefix}-{i}` at once; returns the latency summary, the failures, and
/// the clients.
async fn storm(clients: Vec<Client>, prefix: &str) -> ((Value, u64), Vec<Client>) {
    let start = Instant::now();
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let room = format!("{prefix}-{i}");
            tokio::task::spawn_local(async move {
                let sent = Instant::now();
                let joined = c.join(&room).await;
                (c, joined.map(|_| sent.elapsed()))
            })
        })
        .collect();
    let mut h = histogram();
    let (mut failed, mut back) = (0, Vec::new());
    for handle in handles {
        let (c, took) = handle.await.expect("join task");
        match took {
            Ok(took) => report::record(&mut h, took.as_micros() as u64),
            Err(_) => failed += 1,
        }
        back.push(c);
    }
    let summary = json!({
        "join_latency_us": report::latency(&h),
        "storm_secs": report::round(start.elapsed().as_secs_f64(), 3),
        "failed": failed,
    });
    ((summary, failed), back)
}

/// The application's room hook: allows every join at once, with the TTL the scenario sets.
struct HookServer {
    url: String,
    ttl: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

impl HookServer {
    async fn start() -> Result<HookServer, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("hook: {e}"))?;
        let url = format!(
            "http://{}/room-auth",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let (ttl, requests) = (Arc::new(AtomicU64::new(60)), Arc::new(AtomicU64::default()));
        let (t, r) = (ttl.clone(), requests.clone());
        tokio::task::spawn_local(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::task::spawn_local(serve(stream, t.clone(), r.clone()));
            }
        });
        Ok(HookServer { url, ttl, requests })
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Answers the requests of one keep-alive connection.
async fn serve(mut stream: tokio::net::TcpStream, ttl: Arc<AtomicU64>, requests: Arc<AtomicU64>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() < end + 4 + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        }
        buf.drain(..end + 4 + length);
        requests.fetch_add(1, Ordering::Relaxed);
        let body = json!({"allow": true, "ttlSecs": ttl.load(Ordering::Relaxed)}).to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}
