//! An application's room hook, served by the test process over real HTTP: it records every
//! request the hub makes and answers as the test says (allow or deny with a TTL, garbage, a
//! status, or nothing until released).

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

/// How the hook answers a request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// `200 {"allow": <allow>, "ttlSecs": <ttl>}` (`ttl` left out when `None`).
    Decide { allow: bool, ttl: Option<u64> },
    /// `200` with this body.
    Body(&'static str),
    /// This status, empty body.
    Status(u16),
    /// Nothing until [`Hook::release`], then `200 {"allow": true}`.
    Hold,
}

impl Answer {
    /// `200 {"allow": true}`.
    pub const ALLOW: Answer = Answer::Decide {
        allow: true,
        ttl: None,
    };
}

/// One request the hub made.
#[derive(Clone, Debug)]
pub struct Asked {
    /// The body (`{"userId","room","action"}`).
    pub body: Value,
    /// The `authorization` header.
    pub authorization: Option<String>,
}

type Policy = dyn Fn(&Value) -> Answer + Send + Sync;

/// The hook server.
pub struct Hook {
    /// `http://127.0.0.1:PORT/room-auth`.
    pub url: String,
    asked: Arc<Mutex<Vec<Asked>>>,
    policy: Arc<Mutex<Box<Policy>>>,
    released: Arc<Semaphore>,
}

impl Hook {
    /// Serves `policy` (called with each request's body).
    pub async fn serve(policy: impl Fn(&Value) -> Answer + Send + Sync + 'static) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/room-auth", listener.local_addr().unwrap());
        let hook = Hook {
            url,
            asked: Arc::default(),
            policy: Arc::new(Mutex::new(Box::new(policy))),
            released: Arc::new(Semaphore::new(0)),
        };
        let (asked, policy, released) = (
            hook.asked.clone(),
            hook.policy.clone(),
            hook.released.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (asked, policy, released) = (asked.clone(), policy.clone(), released.clone());
                tokio::spawn(async move {
                    let _ = answer(stream, asked, policy, released).await;
                });
            }
        });
        hook
    }

    /// The hub's settings for this hook (`HUB_ROOM_AUTH_URL`, `HUB_ROOM_AUTH_KEY` = `k`).
    pub fn env(&self) -> [(&str, &str); 2] {
        [("HUB_ROOM_AUTH_URL", &self.url), ("HUB_ROOM_AUTH_KEY", "k")]
    }

    /// Answers from now on with `policy`.
    pub fn set(&self, policy: impl Fn(&Value) -> Answer + Send + Sync + 'static) {
        *self.policy.lock().unwrap() = Box::new(policy);
    }

    /// Every request so far.
    pub fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }

    /// How many requests were about `room` with `action`.
    pub fn count(&self, room: &str, action: &str) -> usize {
        self.asked()
            .iter()
            .filter(|a| a.body["room"] == room && a.body["action"] == action)
            .count()
    }

    /// Lets every held request (and every later one) answer `allow`.
    pub fn release(&self) {
        self.released.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

/// Reads one request (headers and a `content-length` body) and answers it.
async fn answer(
    mut stream: TcpStream,
    asked: Arc<Mutex<Vec<Asked>>>,
    policy: Arc<Mutex<Box<Policy>>>,
    released: Arc<Semaphore>,
) -> std::io::Result<()> {
    loop {
        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            raw.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_lowercase();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
        };
        let length: usize = header("content-length").map_or(0, |l| l.trim().parse().unwrap());
        while raw.len() < head_end + length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            raw.extend_from_slice(&chunk[..n]);
        }
        let body: Value = serde_json::from_slice(&raw[head_end..head_end + length]).unwrap();
        // The header's value as sent (the head was lowercased to find the names).
        let authorization = String::from_utf8_lossy(&raw[..head_end])
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(": ")?;
                k.eq_ignore_ascii_case("authorization")
                    .then(|| v.to_string())
            });
        asked.lock().unwrap().push(Asked {
            body: body.clone(),
            authorization,
        });
        let decided = (policy.lock().unwrap())(&body);
        let (status, body) = match decided {
            Answer::Decide { allow, ttl } => {
                let mut answer = json!({"allow": allow});
                if let Some(ttl) = ttl {
                    answer["ttlSecs"] = json!(ttl);
                }
                (200, answer.to_string())
            }
            Answer::Body(text) => (200, text.to_string()),
            Answer::Status(status) => (status, String::new()),
            Answer::Hold => {
                let _ = released.acquire().await;
                (200, json!({"allow": true}).to_string())
            }
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
    }
}
