//! Configuration from environment variables (`docs/configuration.md`). Every problem is reported
//! as one line naming the variable.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    path::PathBuf,
    time::Duration,
};

use hub_actors::{
    common::client_addr::TrustedProxies,
    common::limits::Limits,
    connections::jwks::{check_url, JwksSource},
    features::history::HistoryConfig,
    features::inbox::InboxConfig,
    features::resume_records::RecordCaps,
    features::room_hook::HookConfig,
    features::user_limits::Rate,
    messages::MAX_SHARDS,
};
use hub_jobs::WorkerConfig;
use hub_store::Store;
use hub_wire::protocol::RoomPatterns;

use crate::pages::Pages;

/// Everything the hub needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Bind address (`HUB_HOST`).
    pub host: String,
    /// HTTP and WebSocket port (`PORT`).
    pub port: u16,
    /// The Redis every instance shares (`REDIS_URL` or `REDIS_CLUSTER_URLS`).
    pub redis: RedisAddr,
    /// HS256 secret for client tokens (`HUB_JWT_SECRET`).
    pub jwt_secret: Option<String>,
    /// A PEM public key for RS256/ES256/EdDSA tokens (`HUB_JWT_PUBLIC_KEY_FILE`).
    pub jwt_public_key_file: Option<String>,
    /// The identity provider's JWKS and how often it is fetched again (`HUB_JWKS_URL`,
    /// `HUB_JWKS_REFRESH_SECS`).
    pub jwks: Option<JwksSource>,
    /// Required `aud` claim, if set (`HUB_JWT_AUDIENCE`).
    pub jwt_audience: Option<String>,
    /// Required `iss` claim, if set (`HUB_JWT_ISSUER`).
    pub jwt_issuer: Option<String>,
    /// Trust `?userId=` (`HUB_AUTH=dev`).
    pub dev_auth: bool,
    /// Dev mode may listen on a non-loopback address (`HUB_AUTH_DEV_ALLOW_REMOTE=1`).
    pub dev_allow_remote: bool,
    /// Bearer key for `/api/*` (`HUB_API_KEY`).
    pub api_key: Option<String>,
    /// `/api/*` is open to anyone: no key, and dev mode or `HUB_API_OPEN=1`. Without a key
    /// and without this, every `/api/*` request is refused (fail closed).
    pub api_open: bool,
    /// Browser origins allowed to open WebSockets and get CORS grants (`WEBAPP_URL` +
    /// `HUB_ALLOWED_ORIGINS`); the hub's own port on a loopback address is always allowed.
    pub allowed_origins: Vec<String>,
    /// HTTP worker threads, each with its own registry shard (`HUB_WORKERS`).
    pub workers: usize,
    /// Redis pub/sub connections, each read on a thread of its own, the user and room
    /// channels spread across them (`HUB_INGEST_CONNECTIONS`).
    pub ingest_connections: usize,
    /// Session limits (`HUB_MAX_FRAME_BYTES`, `HUB_RATE_PER_SEC`, ...).
    pub limits: Limits,
    /// Where the demo pages come from: built in, or `HUB_STATIC_DIR`.
    pub pages: Pages,
    /// This instance's id in `/health` and session ids (`HUB_INSTANCE_ID`).
    pub instance_id: String,
    /// Sessions closed per batch at shutdown, 0 = all at once (`HUB_SHUTDOWN_BATCH`).
    pub shutdown_batch: usize,
    /// Pause between shutdown batches (`HUB_SHUTDOWN_BATCH_PAUSE_MS`).
    pub shutdown_pause: Duration,
    /// Most open WebSocket connections, 0 = unlimited (`HUB_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Most open WebSocket connections per client IP, 0 = unlimited
    /// (`HUB_MAX_CONNECTIONS_PER_IP`, default [`DEFAULT_MAX_CONNECTIONS_PER_IP`]).
    pub max_connections_per_ip: usize,
    /// Failed authentications allowed per client address and minute, 0 = unlimited
    /// (`HUB_AUTH_FAILURES_PER_MINUTE`).
    pub auth_failures_per_minute: u32,
    /// How long a job's state is kept after its last change (`HUB_JOB_STATE_TTL_SECS`).
    pub job_state_ttl: Duration,
    /// Job types `POST /api/jobs` queues even when no worker advertised them (`HUB_JOB_TYPES`).
    pub job_types: Vec<String>,
    /// Chat history (`HUB_HISTORY_LIMIT`, `HUB_HISTORY_MAXLEN`, `HUB_HISTORY_TTL_SECS`).
    pub history: HistoryConfig,
    /// Notification inboxes (`HUB_INBOX_MAXLEN`, `HUB_INBOX_TTL_SECS`,
    /// `HUB_INBOX_LOW_PER_MINUTE`).
    pub inbox: InboxConfig,
    /// Heartbeat TTL of the instance's room presence in Redis (`HUB_PRESENCE_TTL_MS`).
    pub presence_ttl: Duration,
    /// Rooms with more users get no presence events and list only this many members
    /// (`HUB_ROOM_PRESENCE_LIMIT`).
    pub room_presence_limit: usize,
    /// How often the health canary is published (`HUB_CANARY_INTERVAL_MS`).
    pub canary_interval: Duration,
    /// Bytes of events waiting for fan-out above which the subscriber stops reading Redis
    /// (`HUB_DISPATCH_BACKLOG_BYTES`).
    pub dispatch_backlog_bytes: usize,
    /// How long a pub/sub command may go with nothing at all arriving from Redis before the
    /// connection is taken for dead (`HUB_PUBSUB_TIMEOUT_MS`).
    pub pubsub_timeout: Duration,
    /// On a cluster, how long a command whose slot has no reachable master is retried before
    /// it fails (`HUB_REDIS_FAILOVER_WAIT_MS`).
    pub redis_failover_wait: Duration,
    /// How long a canary may stay unanswered before `/health` is degraded
    /// (`HUB_CANARY_TIMEOUT_MS`).
    pub canary_timeout: Duration,
    /// How long a dropped Socket.IO session can be recovered, zero = no recovery
    /// (`HUB_SIO_RECOVERY_SECS`).
    pub sio_recovery: Duration,
    /// Most resume records per user and per client address (`HUB_RESUME_RECORDS_PER_USER`,
    /// `HUB_RESUME_RECORDS_PER_ADDRESS`).
    pub resume_caps: RecordCaps,
    /// Rooms any signed-in user may join (`HUB_PUBLIC_ROOMS`).
    pub public_rooms: RoomPatterns,
    /// The application's room hook (`HUB_ROOM_AUTH_URL`, `HUB_ROOM_AUTH_KEY`,
    /// `HUB_ROOM_AUTH_TIMEOUT_MS`).
    pub room_hook: Option<HookConfig>,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` headers are believed
    /// (`HUB_TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
    /// The longest token lifetime accepted, and how long a revocation is kept
    /// (`HUB_MAX_TOKEN_LIFETIME_SECS`).
    pub max_token_lifetime: Duration,
    /// Chat messages per user across every session (`HUB_USER_MESSAGES_PER_SEC`,
    /// `HUB_USER_MESSAGE_BURST`).
    pub user_messages: Rate,
    /// Joins per user across every session (`HUB_USER_JOINS_PER_SEC`, `HUB_USER_JOIN_BURST`).
    pub user_joins: Rate,
}

/// Everything `relay-hub worker` needs (no auth mode: a worker serves no clients).
#[derive(Clone, Debug)]
pub struct WorkerEnv {
    /// The Redis holding the queue (`REDIS_URL` or `REDIS_CLUSTER_URLS`).
    pub redis: RedisAddr,
    /// The runtime's settings (`HUB_WORKER_CONCURRENCY`, `HUB_JOB_VISIBILITY_MS`,
    /// `HUB_JOB_MAX_ATTEMPTS`, `HUB_JOB_RETRY_BACKOFF_MS`, `HUB_WORKER_DRAIN_MS`,
    /// `HUB_WORKER_ID`).
    pub worker: WorkerConfig,
    /// How long a job's state is kept after its last change (`HUB_JOB_STATE_TTL_SECS`).
    pub job_state_ttl: Duration,
    /// Simulated model time of the `llama_inference` demo handler (`HUB_DEMO_LATENCY_MS`).
    pub demo_latency: Duration,
    /// Also serve the test-only job types `test_sleep`, `test_gate`, `test_fail`
    /// (`HUB_WORKER_TEST_HANDLERS=1`).
    pub test_handlers: bool,
}

/// A source of variables: the process environment, or a map in tests.
pub trait Vars {
    /// The value of a variable, if set and not empty.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct Env;

impl Vars for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Vars for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

fn parse<T: std::str::FromStr>(
    vars: &dyn Vars,
    name: &str,
    default: T,
    what: &str,
) -> Result<T, String> {
    match vars.get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}: `{v}` is not {what}")),
    }
}

fn positive(vars: &dyn Vars, name: &str, default: u64) -> Result<u64, String> {
    let v = parse(vars, name, default, "a positive integer")?;
    if v == 0 {
        return Err(format!("{name}: must be greater than 0"));
    }
    Ok(v)
}

/// Default per-IP connection cap: generous for a NAT'd office, small enough that one host
/// cannot take all of an instance's file descriptors.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;

/// Most Redis pub/sub connections per instance.
pub const MAX_INGEST_CONNECTIONS: usize = 16;

/// Shortest accepted `HUB_JWT_SECRET` (HS256 keys shorter than the hash are guessable).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// True for `1`, `true` or `yes` (an explicit opt-in switch).
fn switch(vars: &dyn Vars, name: &str) -> Result<bool, String> {
    match vars.get(name).as_deref().map(str::trim) {
        None | Some("") | Some("0") | Some("false") | Some("no") => Ok(false),
        Some("1") | Some("true") | Some("yes") => Ok(true),
        Some(other) => Err(format!("{name}: `{other}` is not 1/true/yes or 0/false/no")),
    }
}

/// True when `host` (a bind address or a URL host) is a loopback address.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

fn random_id() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:08x}", h.finish() as u32)
}

fn millis(vars: &dyn Vars, name: &str, default: u64) -> Result<Duration, String> {
    Ok(Duration::from_millis(parse(
        vars,
        name,
        default,
        "a number of milliseconds",
    )?))
}

fn job_state_ttl(vars: &dyn Vars) -> Result<Duration, String> {
    Ok(Duration::from_secs(positive(
        vars,
        "HUB_JOB_STATE_TTL_SECS",
        24 * 3600,
    )?))
}

/// Where Redis is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisAddr {
    /// One server (`REDIS_URL`).
    Server(String),
    /// A Redis Cluster, through some of its nodes (`REDIS_CLUSTER_URLS`).
    Cluster(Vec<String>),
}

impl RedisAddr {
    /// The connection target.
    pub fn target(&self) -> Result<Store, String> {
        match self {
            RedisAddr::Server(url) => Store::server(url),
            RedisAddr::Cluster(urls) => Store::cluster(urls),
        }
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisAddr::Cluster(_))
    }
}

impl std::fmt::Display for RedisAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisAddr::Server(url) => write!(f, "{}", without_password(url)),
            RedisAddr::Cluster(urls) => {
                let urls: Vec<String> = urls.iter().map(|u| without_password(u)).collect();
                write!(f, "Redis Cluster via {}", urls.join(", "))
            }
        }
    }
}

/// `url` without the password it may carry (for logs).
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// `REDIS_URL` (one server, the default `redis://127.0.0.1:6379`) or `REDIS_CLUSTER_URLS`
/// (comma-separated node URLs of a Redis Cluster); not both.
fn redis_addr(vars: &dyn Vars) -> Result<RedisAddr, String> {
    let addr = match (vars.get("REDIS_CLUSTER_URLS"), vars.get("REDIS_URL")) {
        (Some(_), Some(_)) => {
            return Err(
                "set REDIS_URL (one Redis server) or REDIS_CLUSTER_URLS (a Redis \
                        Cluster), not both"
                    .into(),
            )
        }
        (Some(list), None) => {
            let urls: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect();
            RedisAddr::Cluster(urls)
        }
        (None, url) => RedisAddr::Server(url.unwrap_or_else(|| "redis://127.0.0.1:6379".into())),
    };
    let name = if addr.is_cluster() {
        "REDIS_CLUSTER_URLS"
    } else {
        "REDIS_URL"
    };
    addr.target().map_err(|e| format!("{name}: {e}"))?;
    Ok(addr)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

impl WorkerEnv {
    /// Reads the process environment.
    pub fn from_env() -> Result<WorkerEnv, String> {
        WorkerEnv::from_vars(&Env)
    }

    /// Reads the worker configuration from `vars`.
    pub fn from_vars(vars: &dyn Vars) -> Result<WorkerEnv, String> {
        let d = WorkerConfig::default();
        let test_handlers = match vars.get("HUB_WORKER_TEST_HANDLERS").as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => {
                return Err(format!("HUB_WORKER_TEST_HANDLERS: `{other}` is not 0 or 1"))
            }
        };
        let max_attempts = positive(vars, "HUB_JOB_MAX_ATTEMPTS", d.max_attempts as u64)?;
        Ok(WorkerEnv {
            redis: redis_addr(vars)?,
            worker: WorkerConfig {
                consumer: vars.get("HUB_WORKER_ID").unwrap_or_else(|| {
                    format!("{}-{}-{}", hostname(), std::process::id(), random_id())
                }),
                concurrency: positive(vars, "HUB_WORKER_CONCURRENCY", d.concurrency as u64)?
                    as usize,
                visibility: Duration::from_millis(positive(
                    vars,
                    "HUB_JOB_VISIBILITY_MS",
                    d.visibility.as_millis() as u64,
                )?),
                max_attempts: u32::try_from(max_attempts)
                    .map_err(|_| "HUB_JOB_MAX_ATTEMPTS: too large".to_string())?,
                retry_backoff: millis(
                    vars,
                    "HUB_JOB_RETRY_BACKOFF_MS",
                    d.retry_backoff.as_millis() as u64,
                )?,
                drain_timeout: millis(
                    vars,
                    "HUB_WORKER_DRAIN_MS",
                    d.drain_timeout.as_millis() as u64,
                )?,
            },
            job_state_ttl: job_state_ttl(vars)?,
            demo_latency: millis(vars, "HUB_DEMO_LATENCY_MS", 1000)?,
            test_handlers,
        })
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, String> {
        Config::from_vars(&Env)
    }

    /// Reads configuration from `vars`.
    pub fn from_vars(vars: &dyn Vars) -> Result<Config, String> {
        let port = parse(vars, "PORT", 8080u16, "a port number (0-65535)")?;
        let redis = redis_addr(vars)?;
        let jwt_secret = vars.get("HUB_JWT_SECRET");
        if let Some(secret) = &jwt_secret {
            if secret.len() < MIN_JWT_SECRET_BYTES {
                return Err(format!(
                    "HUB_JWT_SECRET: {} bytes is too short for HS256, use at least {MIN_JWT_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`)",
                    secret.len()
                ));
            }
        }
        let dev_auth = match vars.get("HUB_AUTH").as_deref() {
            None => false,
            Some("dev") => true,
            Some(other) => {
                return Err(format!(
                    "HUB_AUTH: `{other}` is not supported (the only value is `dev`)"
                ))
            }
        };
        let jwt_public_key_file = vars.get("HUB_JWT_PUBLIC_KEY_FILE");
        let jwks = match vars.get("HUB_JWKS_URL") {
            None => None,
            Some(url) => {
                check_url(&url).map_err(|e| format!("HUB_JWKS_URL: {e}"))?;
                let refresh = positive(vars, "HUB_JWKS_REFRESH_SECS", 300)?;
                Some(JwksSource {
                    url,
                    refresh: Duration::from_secs(refresh),
                })
            }
        };
        let keyed = jwt_secret.is_some() || jwt_public_key_file.is_some() || jwks.is_some();
        if !keyed && !dev_auth {
            return Err(
                "no auth mode: set HUB_JWT_SECRET (HS256), HUB_JWT_PUBLIC_KEY_FILE (a PEM key) or HUB_JWKS_URL (your identity provider's keys), or HUB_AUTH=dev (trusts ?userId=, local use only)"
                    .into(),
            );
        }
        if dev_auth && keyed {
            return Err(
                "HUB_AUTH=dev together with a token key (HUB_JWT_SECRET, HUB_JWT_PUBLIC_KEY_FILE or HUB_JWKS_URL): dev mode trusts ?userId= and would bypass the tokens; unset one of them"
                    .into(),
            );
        }
        // Dev mode listens on loopback unless told otherwise; production keeps 0.0.0.0.
        let host = vars
            .get("HUB_HOST")
            .unwrap_or_else(|| if dev_auth { "127.0.0.1" } else { "0.0.0.0" }.into());
        let dev_allow_remote = switch(vars, "HUB_AUTH_DEV_ALLOW_REMOTE")?;
        if dev_auth && !is_loopback(&host) && !dev_allow_remote {
            return Err(format!(
                "HUB_AUTH=dev on HUB_HOST={host}: dev mode lets anyone be anyone, so it only listens on loopback (127.0.0.1) unless HUB_AUTH_DEV_ALLOW_REMOTE=1"
            ));
        }
        let api_key = vars.get("HUB_API_KEY").filter(|k| !k.is_empty());
        let api_open = api_key.is_none() && (dev_auth || switch(vars, "HUB_API_OPEN")?);
        let mut allowed_origins: Vec<String> = vars
            .get("WEBAPP_URL")
            .into_iter()
            .chain(
                vars.get("HUB_ALLOWED_ORIGINS")
                    .map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>())
                    .unwrap_or_default(),
            )
            .map(|o| normalize_origin(&o))
            .filter(|o| !o.is_empty())
            .collect();
        allowed_origins.dedup();
        let default_workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = positive(vars, "HUB_WORKERS", default_workers as u64)? as usize;
        if workers > MAX_SHARDS {
            return Err(format!("HUB_WORKERS: at most {MAX_SHARDS}"));
        }
        let ingest_connections =
            positive(vars, "HUB_INGEST_CONNECTIONS", workers.div_ceil(2) as u64)? as usize;
        if ingest_connections > MAX_INGEST_CONNECTIONS {
            return Err(format!(
                "HUB_INGEST_CONNECTIONS: at most {MAX_INGEST_CONNECTIONS}"
            ));
        }
        let d = Limits::default();
        let positive_millis = |name: &str, default: Duration| -> Result<Duration, String> {
            Ok(Duration::from_millis(positive(
                vars,
                name,
                default.as_millis() as u64,
            )?))
        };
        let queue_bytes = positive(vars, "HUB_SESSION_QUEUE_BYTES", d.queue_bytes as u64)? as usize;
        let limits = Limits {
            max_frame_bytes: positive(vars, "HUB_MAX_FRAME_BYTES", d.max_frame_bytes as u64)?
                as usize,
            max_message_chars: positive(vars, "HUB_MAX_MESSAGE_CHARS", d.max_message_chars as u64)?
                as usize,
            max_rooms_per_session: positive(
                vars,
                "HUB_MAX_ROOMS_PER_SESSION",
                d.max_rooms_per_session as u64,
            )? as usize,
            rate_per_sec: positive(vars, "HUB_RATE_PER_SEC", d.rate_per_sec as u64)? as f64,
            rate_burst: positive(vars, "HUB_RATE_BURST", d.rate_burst as u64)? as f64,
            error_burst: positive(vars, "HUB_ERROR_BURST", d.error_burst as u64)? as f64,
            heartbeat: positive_millis("HUB_HEARTBEAT_MS", d.heartbeat)?,
            client_timeout: positive_millis("HUB_CLIENT_TIMEOUT_MS", d.client_timeout)?,
            auth_timeout: positive_millis("HUB_AUTH_TIMEOUT_MS", d.auth_timeout)?,
            // A backstop: by default the byte bound is always reached first.
            mailbox_frames: positive(
                vars,
                "HUB_SESSION_QUEUE_FRAMES",
                (queue_bytes / hub_actors::common::queued::DELIVERY_OVERHEAD + 1) as u64,
            )? as usize,
            queue_bytes,
            write_timeout: positive_millis("HUB_WRITE_TIMEOUT_MS", d.write_timeout)?,
            socket_sndbuf: parse(vars, "HUB_SOCKET_SNDBUF", d.socket_sndbuf, "a byte count")?,
        };
        let hd = HistoryConfig::default();
        let history = HistoryConfig {
            join_limit: positive(vars, "HUB_HISTORY_LIMIT", hd.join_limit as u64)? as usize,
            max_len: positive(vars, "HUB_HISTORY_MAXLEN", hd.max_len as u64)? as usize,
            ttl: match parse(
                vars,
                "HUB_HISTORY_TTL_SECS",
                hd.ttl.map_or(0, |t| t.as_secs()),
                "a number of seconds",
            )? {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            // At most half the session's queue: a `joined` frame never gets it kicked.
            max_bytes: (limits.queue_bytes / 2).clamp(1, hd.max_bytes),
            recovery_limit: positive(vars, "HUB_HISTORY_RECOVERY_LIMIT", hd.recovery_limit as u64)?
                as usize,
        };
        let id = InboxConfig::default();
        let inbox = InboxConfig {
            max_len: positive(vars, "HUB_INBOX_MAXLEN", id.max_len as u64)? as usize,
            ttl: Duration::from_secs(positive(vars, "HUB_INBOX_TTL_SECS", id.ttl.as_secs())?),
            max_bytes: history.max_bytes,
            low_per_minute: parse(
                vars,
                "HUB_INBOX_LOW_PER_MINUTE",
                id.low_per_minute,
                "a number",
            )?,
        };
        if history.join_limit > history.max_len {
            return Err(format!(
                "HUB_HISTORY_LIMIT: {} is more than HUB_HISTORY_MAXLEN ({}), the messages kept",
                history.join_limit, history.max_len
            ));
        }
        let presence_ttl = Duration::from_millis(positive(vars, "HUB_PRESENCE_TTL_MS", 15_000)?);
        if presence_ttl < Duration::from_millis(300) {
            return Err("HUB_PRESENCE_TTL_MS: must be at least 300".into());
        }
        let room_hook = match (vars.get("HUB_ROOM_AUTH_URL"), vars.get("HUB_ROOM_AUTH_KEY")) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err("HUB_ROOM_AUTH_KEY: set only with HUB_ROOM_AUTH_URL".into())
            }
            (Some(_), None) => {
                return Err(
                    "HUB_ROOM_AUTH_URL needs HUB_ROOM_AUTH_KEY, the bearer key the hub sends to the hook (e.g. `openssl rand -hex 32`)"
                        .into(),
                )
            }
            (Some(url), Some(key)) => {
                check_url(&url).map_err(|e| format!("HUB_ROOM_AUTH_URL: {e}"))?;
                Some(HookConfig {
                    url,
                    key,
                    timeout: Duration::from_millis(positive(
                        vars,
                        "HUB_ROOM_AUTH_TIMEOUT_MS",
                        2000,
                    )?),
                })
            }
        };
        let public_rooms =
            RoomPatterns::parse_list(&vars.get("HUB_PUBLIC_ROOMS").unwrap_or_default())
                .map_err(|e| format!("HUB_PUBLIC_ROOMS: {e}"))?;
        let trusted_proxies =
            TrustedProxies::parse(&vars.get("HUB_TRUSTED_PROXIES").unwrap_or_default())
                .map_err(|e| format!("HUB_TRUSTED_PROXIES: {e}"))?;
        let rate = |per_sec: &str, burst: &str, d: Rate| -> Result<Rate, String> {
            Ok(Rate {
                per_sec: parse(vars, per_sec, d.per_sec, "a number per second")?,
                burst: positive(vars, burst, u64::from(d.burst))? as u32,
            })
        };
        let pages = vars
            .get("HUB_STATIC_DIR")
            .map_or(Pages::Embedded, |dir| Pages::Dir(PathBuf::from(dir)));
        Ok(Config {
            host,
            port,
            redis,
            jwt_secret,
            jwt_public_key_file,
            jwks,
            jwt_audience: vars.get("HUB_JWT_AUDIENCE"),
            jwt_issuer: vars.get("HUB_JWT_ISSUER"),
            dev_auth,
            dev_allow_remote,
            api_key,
            api_open,
            allowed_origins,
            workers,
            ingest_connections,
            limits,
            pages,
            instance_id: vars.get("HUB_INSTANCE_ID").unwrap_or_else(random_id),
            shutdown_batch: parse(vars, "HUB_SHUTDOWN_BATCH", 0, "a number of sessions")?,
            shutdown_pause: millis(vars, "HUB_SHUTDOWN_BATCH_PAUSE_MS", 0)?,
            max_connections: parse(vars, "HUB_MAX_CONNECTIONS", 0, "a number of connections")?,
            max_connections_per_ip: parse(
                vars,
                "HUB_MAX_CONNECTIONS_PER_IP",
                DEFAULT_MAX_CONNECTIONS_PER_IP,
                "a number of connections",
            )?,
            auth_failures_per_minute: parse(
                vars,
                "HUB_AUTH_FAILURES_PER_MINUTE",
                hub_actors::common::auth::DEFAULT_AUTH_FAILURES_PER_MINUTE,
                "a number of failures",
            )?,
            job_state_ttl: job_state_ttl(vars)?,
            job_types: hub_jobs::parse_types(&vars.get("HUB_JOB_TYPES").unwrap_or_default())
                .map_err(|e| format!("HUB_JOB_TYPES: {e}"))?,
            history,
            inbox,
            presence_ttl,
            room_presence_limit: positive(vars, "HUB_ROOM_PRESENCE_LIMIT", 1000)? as usize,
            canary_interval: positive_millis("HUB_CANARY_INTERVAL_MS", Duration::from_secs(1))?,
            dispatch_backlog_bytes: positive(
                vars,
                "HUB_DISPATCH_BACKLOG_BYTES",
                hub_actors::hub::subscriber::BACKLOG_CAP as u64,
            )? as usize,
            pubsub_timeout: positive_millis(
                "HUB_PUBSUB_TIMEOUT_MS",
                hub_actors::hub::subscriber::COMMAND_TIMEOUT,
            )?,
            redis_failover_wait: positive_millis(
                "HUB_REDIS_FAILOVER_WAIT_MS",
                hub_store::FAILOVER_WAIT,
            )?,
            canary_timeout: positive_millis("HUB_CANARY_TIMEOUT_MS", Duration::from_secs(3))?,
            sio_recovery: Duration::from_secs(parse(
                vars,
                "HUB_SIO_RECOVERY_SECS",
                120,
                "a number of seconds",
            )?),
            resume_caps: RecordCaps {
                per_user: positive(
                    vars,
                    "HUB_RESUME_RECORDS_PER_USER",
                    RecordCaps::default().per_user as u64,
                )? as usize,
                per_address: positive(
                    vars,
                    "HUB_RESUME_RECORDS_PER_ADDRESS",
                    RecordCaps::default().per_address as u64,
                )? as usize,
            },
            public_rooms,
            room_hook,
            trusted_proxies,
            max_token_lifetime: Duration::from_secs(positive(
                vars,
                "HUB_MAX_TOKEN_LIFETIME_SECS",
                hub_actors::common::auth::DEFAULT_MAX_TOKEN_LIFETIME.as_secs(),
            )?),
            user_messages: rate(
                "HUB_USER_MESSAGES_PER_SEC",
                "HUB_USER_MESSAGE_BURST",
                Rate::DEFAULT_MESSAGES,
            )?,
            user_joins: rate(
                "HUB_USER_JOINS_PER_SEC",
                "HUB_USER_JOIN_BURST",
                Rate::DEFAULT_JOINS,
            )?,
        })
    }

    /// True when a browser at `origin` may open a session or get a CORS grant: a configured
    /// origin, or the hub's own port on a loopback host (its demo page under `make run`). The `Host`
    /// header is never trusted (DNS rebinding makes it the attacker's name).
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = normalize_origin(origin);
        if self.allowed_origins.contains(&origin) {
            return true;
        }
        let Some(("http" | "https", authority)) = origin.split_once("://") else {
            return false;
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>().ok()),
            _ => (authority, None),
        };
        is_loopback(host) && port == Some(self.port)
    }

    /// The lines the hub logs at startup about open doors, each one a warning.
    pub fn open_doors(&self) -> Vec<String> {
        let mut doors = Vec::new();
        if self.dev_auth {
            doors.push(format!(
                "DEV MODE (HUB_AUTH=dev): anyone can connect as any user with ?userId=, /api/dev/jobs is open; never use this in production{}",
                if is_loopback(&self.host) { String::new() } else { format!(", and it listens on {} (HUB_AUTH_DEV_ALLOW_REMOTE=1)", self.host) }
            ));
        }
        if self.api_open {
            doors.push(
                "HTTP API OPEN: /api/* needs no key (no HUB_API_KEY; dev mode or HUB_API_OPEN=1): anyone who reaches the port can post chat, notify and queue jobs".into(),
            );
        }
        if self.max_connections_per_ip == 0 {
            doors.push("no per-IP connection limit (HUB_MAX_CONNECTIONS_PER_IP=0)".into());
        }
        if self.dev_auth {
            doors.push("ROOMS OPEN: in dev mode every user may join and post in every room".into());
        } else if self.public_rooms.is_everything() {
            doors.push(
                "PUBLIC ROOMS: every signed-in user may join every room (HUB_PUBLIC_ROOMS=*)"
                    .into(),
            );
        }
        let everyone = ["0.0.0.0/0", "::/0"];
        if let Some(all) = self
            .trusted_proxies
            .blocks()
            .iter()
            .find(|b| everyone.contains(&b.to_string().as_str()))
        {
            doors.push(format!(
                "HUB_TRUSTED_PROXIES includes {all}: any client can set its own address with X-Forwarded-For and escape the per-address limits"
            ));
        }
        for (rate, name) in [
            (self.user_messages, "HUB_USER_MESSAGES_PER_SEC"),
            (self.user_joins, "HUB_USER_JOINS_PER_SEC"),
        ] {
            if rate.per_sec == 0 {
                doors.push(format!("no per-user limit ({name}=0)"));
            }
        }
        doors
    }

    /// How `/api/*` is protected, in one line for the startup log.
    pub fn api_mode(&self) -> &'static str {
        match (&self.api_key, self.api_open) {
            (Some(_), _) => "HTTP API: key required (HUB_API_KEY)",
            (None, true) => "HTTP API: OPEN, no key",
            (None, false) => {
                "HTTP API: closed, every /api/* request is refused until HUB_API_KEY is set (or HUB_API_OPEN=1)"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(&move |name: &str| map.get(name).cloned())
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn short_hs256_secrets_are_refused() {
        let err = config(&[("HUB_JWT_SECRET", "s")]).unwrap_err();
        assert!(
            err.starts_with("HUB_JWT_SECRET") && err.contains("32"),
            "{err}"
        );
        assert!(config(&[("HUB_JWT_SECRET", &SECRET[..31])]).is_err());
    }

    #[test]
    fn identity_provider_keys_are_an_auth_mode() {
        let jwks = ("HUB_JWKS_URL", "https://id.example.com/jwks.json");
        let c = config(&[jwks]).unwrap();
        let source = c.jwks.unwrap();
        assert_eq!(source.refresh, Duration::from_secs(300));
        assert!(config(&[("HUB_JWT_PUBLIC_KEY_FILE", "/etc/hub/key.pem")]).is_ok());
        let plain = config(&[("HUB_JWKS_URL", "http://id.example.com/jwks.json")]).unwrap_err();
        assert!(
            plain.starts_with("HUB_JWKS_URL") && plain.contains("https"),
            "{plain}"
        );
        assert!(config(&[("HUB_JWKS_URL", "http://127.0.0.1:9/jwks")]).is_ok());
        let dev = config(&[("HUB_AUTH", "dev"), jwks]).unwrap_err();
        assert!(dev.contains("HUB_JWKS_URL"), "{dev}");
    }

    #[test]
    fn dev_mode_is_never_an_accident() {
        let dev = ("HUB_AUTH", "dev");
        let both = config(&[dev, ("HUB_JWT_SECRET", SECRET)]).unwrap_err();
        assert!(both.contains("HUB_JWT_SECRET"), "{both}");
        let c = config(&[dev]).unwrap();
        assert_eq!(c.host, "127.0.0.1");
        assert!(c.open_doors()[0].contains("DEV MODE"));
        let remote = config(&[dev, ("HUB_HOST", "0.0.0.0")]).unwrap_err();
        assert!(remote.contains("HUB_AUTH_DEV_ALLOW_REMOTE"), "{remote}");
        assert!(config(&[dev, ("HUB_HOST", "::1")]).is_ok());
        let forced = config(&[
            dev,
            ("HUB_HOST", "0.0.0.0"),
            ("HUB_AUTH_DEV_ALLOW_REMOTE", "1"),
        ])
        .unwrap();
        assert!(forced.open_doors()[0].contains("0.0.0.0"));
        assert_eq!(
            config(&[("HUB_JWT_SECRET", SECRET)]).unwrap().host,
            "0.0.0.0"
        );
    }

    #[test]
    fn redis_is_one_server_or_a_cluster_never_both() {
        let dev = ("HUB_AUTH", "dev");
        let one = config(&[dev]).unwrap();
        assert_eq!(
            one.redis,
            RedisAddr::Server("redis://127.0.0.1:6379".into())
        );
        let nodes = ("REDIS_CLUSTER_URLS", "redis://a:7000, redis://:pw@b:7001,");
        let cluster = config(&[dev, nodes]).unwrap();
        assert_eq!(
            cluster.redis,
            RedisAddr::Cluster(vec!["redis://a:7000".into(), "redis://:pw@b:7001".into()])
        );
        assert_eq!(
            cluster.redis.to_string(),
            "Redis Cluster via redis://a:7000, redis://***@b:7001"
        );
        let both = config(&[dev, nodes, ("REDIS_URL", "redis://c:6379")]).unwrap_err();
        assert!(both.contains("not both"), "{both}");
        let bad = config(&[dev, ("REDIS_CLUSTER_URLS", "nonsense")]).unwrap_err();
        assert!(bad.starts_with("REDIS_CLUSTER_URLS: "), "{bad}");
    }

    #[test]
    fn the_api_fails_closed_without_a_key() {
        let jwt = ("HUB_JWT_SECRET", SECRET);
        let closed = config(&[jwt]).unwrap();
        assert!(!closed.api_open && closed.api_mode().contains("closed"));
        assert!(closed.open_doors().is_empty());
        let open = config(&[jwt, ("HUB_API_OPEN", "1")]).unwrap();
        assert!(open.api_open && open.open_doors()[0].contains("API OPEN"));
        let keyed = config(&[jwt, ("HUB_API_KEY", "k"), ("HUB_API_OPEN", "1")]).unwrap();
        assert!(!keyed.api_open);
        assert!(config(&[("HUB_AUTH", "dev")]).unwrap().api_open);
        assert!(config(&[jwt, ("HUB_API_OPEN", "maybe")]).is_err());
    }

    #[test]
    fn a_per_ip_connection_limit_by_default() {
        let c = config(&[("HUB_JWT_SECRET", SECRET)]).unwrap();
        assert_eq!(c.max_connections_per_ip, DEFAULT_MAX_CONNECTIONS_PER_IP);
        assert!(c.max_connections_per_ip > 0);
    }

    #[test]
    fn room_rules_proxies_and_user_limits() {
        let jwt = ("HUB_JWT_SECRET", SECRET);
        let c = config(&[jwt]).unwrap();
        assert!(c.public_rooms.is_empty() && c.room_hook.is_none());
        assert!(c.open_doors().is_empty(), "{:?}", c.open_doors());
        let hook = ("HUB_ROOM_AUTH_URL", "https://app.example.com/room-auth");
        let no_key = config(&[jwt, hook]).unwrap_err();
        assert!(no_key.contains("HUB_ROOM_AUTH_KEY"), "{no_key}");
        let no_url = config(&[jwt, ("HUB_ROOM_AUTH_KEY", "k")]).unwrap_err();
        assert!(no_url.starts_with("HUB_ROOM_AUTH_KEY"), "{no_url}");
        let plain = ("HUB_ROOM_AUTH_URL", "http://app.example.com/room-auth");
        let err = config(&[jwt, plain, ("HUB_ROOM_AUTH_KEY", "k")]).unwrap_err();
        assert!(err.starts_with("HUB_ROOM_AUTH_URL"), "{err}");
        let c = config(&[jwt, hook, ("HUB_ROOM_AUTH_KEY", "k")]).unwrap();
        assert_eq!(c.room_hook.unwrap().timeout, Duration::from_millis(2000));
        let bad = config(&[jwt, ("HUB_PUBLIC_ROOMS", "lobby, a b")]).unwrap_err();
        assert!(bad.starts_with("HUB_PUBLIC_ROOMS"), "{bad}");
        let all = config(&[jwt, ("HUB_PUBLIC_ROOMS", "*")]).unwrap();
        assert!(all.open_doors()[0].contains("PUBLIC ROOMS"));
        assert!(crate::announce::rooms_mode(&all).contains("public: *"));
        let bad = config(&[jwt, ("HUB_TRUSTED_PROXIES", "10.0.0.0/8,proxy")]).unwrap_err();
        assert!(bad.starts_with("HUB_TRUSTED_PROXIES"), "{bad}");
        let anyone = config(&[jwt, ("HUB_TRUSTED_PROXIES", "10.0.0.0/8, 0.0.0.0/0")]).unwrap();
        assert!(anyone.open_doors()[0].contains("0.0.0.0/0"));
        let unlimited = config(&[jwt, ("HUB_USER_MESSAGES_PER_SEC", "0")]).unwrap();
        assert!(unlimited.open_doors()[0].contains("HUB_USER_MESSAGES_PER_SEC=0"));
        assert_eq!(c.user_messages, Rate::DEFAULT_MESSAGES);
        let dev = config(&[("HUB_AUTH", "dev")]).unwrap();
        assert!(crate::announce::rooms_mode(&dev).contains("open"));
    }

    #[test]
    fn needs_an_auth_mode() {
        let err = config(&[]).unwrap_err();
        assert!(err.contains("HUB_JWT_SECRET"), "{err}");
        assert!(config(&[("HUB_AUTH", "dev")]).is_ok());
        assert!(config(&[("HUB_JWT_SECRET", SECRET)]).is_ok());
        assert!(config(&[("HUB_AUTH", "yes")])
            .unwrap_err()
            .starts_with("HUB_AUTH"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let dev = ("HUB_AUTH", "dev");
        assert!(config(&[dev, ("PORT", "http")])
            .unwrap_err()
            .starts_with("PORT"));
        assert!(config(&[dev, ("PORT", "70000")])
            .unwrap_err()
            .starts_with("PORT"));
        assert!(config(&[dev, ("REDIS_URL", "nope://x")])
            .unwrap_err()
            .starts_with("REDIS_URL"));
        assert!(config(&[dev, ("HUB_RATE_PER_SEC", "0")])
            .unwrap_err()
            .starts_with("HUB_RATE_PER_SEC"));
        assert!(config(&[
            dev,
            ("HUB_HISTORY_LIMIT", "20"),
            ("HUB_HISTORY_MAXLEN", "10")
        ])
        .unwrap_err()
        .starts_with("HUB_HISTORY_LIMIT"));
        assert!(config(&[dev, ("HUB_PRESENCE_TTL_MS", "10")])
            .unwrap_err()
            .starts_with("HUB_PRESENCE_TTL_MS"));
        let c = config(&[dev, ("HUB_HISTORY_TTL_SECS", "0")]).unwrap();
        assert_eq!(c.history.ttl, None);
    }

    #[test]
    fn the_worker_needs_no_auth_mode() {
        let map: HashMap<&str, &str> = [
            ("HUB_WORKER_CONCURRENCY", "2"),
            ("HUB_JOB_VISIBILITY_MS", "1500"),
            ("HUB_DEMO_LATENCY_MS", "0"),
            ("HUB_WORKER_ID", "w1"),
        ]
        .into();
        let w = WorkerEnv::from_vars(&move |n: &str| map.get(n).map(|v| v.to_string())).unwrap();
        assert_eq!(w.worker.concurrency, 2);
        assert_eq!(w.worker.visibility, Duration::from_millis(1500));
        assert_eq!(w.worker.consumer, "w1");
        assert_eq!(w.worker.max_attempts, 3);
        assert!(w.demo_latency.is_zero() && !w.test_handlers);
        let bad =
            WorkerEnv::from_vars(&|n: &str| (n == "HUB_JOB_MAX_ATTEMPTS").then(|| "0".to_string()))
                .unwrap_err();
        assert!(bad.starts_with("HUB_JOB_MAX_ATTEMPTS"), "{bad}");
    }

    #[test]
    fn origins() {
        let c = config(&[
            ("HUB_AUTH", "dev"),
            ("WEBAPP_URL", "https://app.example.com/"),
            (
                "HUB_ALLOWED_ORIGINS",
                "https://a.example.com, https://b.example.com",
            ),
        ])
        .unwrap();
        assert!(c.origin_allowed("https://app.example.com"));
        assert!(c.origin_allowed("https://B.example.com"));
        assert!(!c.origin_allowed("https://evil.example.com"));
        let none = config(&[("HUB_AUTH", "dev"), ("PORT", "8080")]).unwrap();
        assert!(!none.origin_allowed("https://any.example.com"));
        assert!(!none.origin_allowed("http://rebound.example.com:8080"));
        assert!(!none.origin_allowed("http://localhost:3000"));
        assert!(!none.origin_allowed("null"));
        assert!(none.origin_allowed("http://localhost:8080"));
        assert!(none.origin_allowed("http://127.0.0.1:8080/"));
        assert!(none.origin_allowed("http://[::1]:8080"));
    }
}
