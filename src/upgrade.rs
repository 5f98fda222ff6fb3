//! WebSocket upgrades. actix-http hands every `Connection: Upgrade` request here with the raw
//! connection; this module decides (path, origin, credentials, limits), answers with a plain
//! HTTP error or `101 Switching Protocols`, and starts a session actor that owns the socket.
//! Nothing of the HTTP dispatcher (and none of its buffers) stays alive for the connection.
//! Upgrades under an Engine.IO endpoint (`/socket.io/`) go to [`crate::socketio_routes`],
//! behind the same origin check and connection limits.

use std::{
    collections::HashMap,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use actix::Actor;
use actix_http::{h1, ws, Request};
use actix_rt::net::TcpStream;
use actix_web::{web::Query, HttpMessage};
use hub_actors::{
    common::auth::{AuthError, Identity},
    common::limits::{ConnectionLimiter, ConnectionPermit, LimitExceeded},
    features::session_resume::Pid,
    hub::client::{Ask, SessionEnv},
    transports::session::Session,
    transports::transport,
};
use hub_wire::protocol::{self, MessageId};
use log::debug;
use serde_json::json;

use crate::{config::Config, handshake::UpgradeError, socketio_routes::EngineMounts};

/// Shared by the upgrade handlers of all workers.
pub struct UpgradeShared {
    /// Instance configuration (origins).
    pub config: Arc<Config>,
    /// Set at shutdown: new upgrades get 503.
    pub shutting_down: AtomicBool,
    /// `HUB_MAX_CONNECTIONS` and `HUB_MAX_CONNECTIONS_PER_IP`.
    pub limiter: Arc<ConnectionLimiter>,
}

/// The upgrade handler of one worker.
pub struct Upgrader {
    /// What the worker's sessions share.
    pub env: Arc<SessionEnv>,
    /// What all workers share.
    pub shared: Arc<UpgradeShared>,
    /// Engine.IO endpoints (`/socket.io/`) of this worker.
    pub engines: Rc<EngineMounts>,
}

struct Refusal {
    status: u16,
    reason: &'static str,
    code: &'static str,
    metric: &'static str,
    message: String,
}

fn refusal(
    status: u16,
    reason: &'static str,
    code: &'static str,
    metric: &'static str,
    message: impl Into<String>,
) -> Refusal {
    Refusal {
        status,
        reason,
        code,
        metric,
        message: message.into(),
    }
}

impl Upgrader {
    /// Answers one upgrade request.
    pub async fn handle(
        self: Rc<Self>,
        req: Request,
        framed: actix_codec::Framed<TcpStream, h1::Codec>,
    ) -> Result<(), UpgradeError> {
        if let Some(i) = self.engines.find(req.path()) {
            return crate::socketio_routes::upgrade(self.engines.clone(), i, req, framed).await;
        }
        let decision = self.decide(&req);
        let parts = framed.into_parts();
        let io = parts.io;
        match decision {
            Err(r) => {
                self.env.metrics.reject(r.metric);
                debug!("upgrade refused: {} {}", r.status, r.message);
                let body = json!({"error": {"code": r.code, "message": r.message}}).to_string();
                let response = transport::http_error(r.status, r.reason, body.as_bytes());
                transport::write_all(&io, &response)
                    .await
                    .map_err(UpgradeError)?;
                Ok(())
            }
            Ok((accept, identity, (since, resume, peer), permit)) => {
                transport::write_all(&io, &transport::switching_protocols(&accept))
                    .await
                    .map_err(UpgradeError)?;
                let leftover = parts.read_buf.to_vec();
                let id = self.env.next_session_id();
                let mut session =
                    Session::new(id, self.env.clone(), io, leftover, identity, Some(permit));
                session.set_inbox_since(since);
                session.set_resume_ask(resume);
                session.set_peer(peer);
                session.start();
                Ok(())
            }
        }
    }

    /// Checks the request; returns the `Sec-WebSocket-Accept` value, the identity (`None`
    /// when the client will authenticate with its first frame), the last `inboxId` the client
    /// saw (`?since=`) and the connection's permit. Per-address limits count the client's
    /// address: the socket's peer, or behind a trusted proxy the one it forwards.
    fn decide(&self, req: &Request) -> Result<Accepted, Refusal> {
        if req.path() != "/ws" {
            return Err(refusal(
                404,
                "Not Found",
                "not_found",
                "not_found",
                "WebSocket endpoint is /ws",
            ));
        }
        if self.shared.shutting_down.load(Ordering::Relaxed) {
            return Err(refusal(
                503,
                "Service Unavailable",
                "unavailable",
                "shutting_down",
                "this instance is shutting down; reconnect",
            ));
        }
        ws::verify_handshake(req.head()).map_err(|e| {
            refusal(
                400,
                "Bad Request",
                "bad_request",
                "bad_handshake",
                format!("bad WebSocket handshake: {e}"),
            )
        })?;
        if let Some(origin) = req.headers().get("origin").and_then(|o| o.to_str().ok()) {
            if !self.shared.config.origin_allowed(origin) {
                return Err(refusal(
                    403,
                    "Forbidden",
                    "forbidden",
                    "forbidden_origin",
                    format!("origin {origin} is not allowed"),
                ));
            }
        }
        let peer = req.peer_addr().map(|a| {
            let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
            self.shared.config.trusted_proxies.client(
                a.ip(),
                header("forwarded"),
                header("x-forwarded-for"),
            )
        });
        let failures = self.env.auth.failures();
        if peer.is_some_and(|ip| failures.exhausted(ip)) {
            return Err(refusal(
                429,
                "Too Many Requests",
                "rate_limited",
                "auth_failures",
                "too many failed authentications from your address; try again later",
            ));
        }
        let identity = self
            .identity(req.uri().query().unwrap_or(""))
            .map_err(|e| {
                // An expired token was once good: no attacker's guess, and no reason to lock
                // the address out (a laptop waking up with an old one).
                let metric = if e.counts_as_failure() {
                    if let Some(ip) = peer {
                        failures.record(ip);
                    }
                    "unauthorized"
                } else {
                    "expired_token"
                };
                refusal(401, "Unauthorized", "unauthorized", metric, e.to_string())
            })?;
        let since = inbox_since(req.uri().query().unwrap_or(""))
            .map_err(|e| refusal(400, "Bad Request", "bad_request", "bad_since", e))?;
        let resume = resume_ask(req.uri().query().unwrap_or(""))
            .map_err(|e| refusal(400, "Bad Request", "bad_request", "bad_resume", e))?;
        let permit = self
            .shared
            .limiter
            .try_acquire(peer)
            .map_err(|limit| match limit {
                LimitExceeded::Total => refusal(
                    503,
                    "Service Unavailable",
                    "unavailable",
                    "connection_limit",
                    "this instance is at its connection limit; try another or retry later",
                ),
                LimitExceeded::PerIp => refusal(
                    429,
                    "Too Many Requests",
                    "rate_limited",
                    "ip_limit",
                    "too many connections from your address",
                ),
            })?;
        let key = req
            .headers()
            .get("sec-websocket-key")
            .map(|k| ws::hash_key(k.as_bytes()))
            .expect("verify_handshake checked the key");
        Ok((key, identity, (since, resume, peer), permit))
    }

    fn identity(&self, query: &str) -> Result<Option<Identity>, AuthError> {
        let params = Query::<HashMap<String, String>>::from_query(query)
            .map_err(|e| AuthError::Invalid(format!("bad query string: {e}")))?
            .into_inner();
        let auth = &self.env.auth;
        if let Some(token) = params.get("token") {
            return auth.verify_token(token).map(Some);
        }
        if let Some(user) = params.get("userId") {
            return auth
                .dev_identity(user, params.get("name").map(String::as_str))
                .map(Some);
        }
        if auth.jwt_enabled() {
            Ok(None) // first-frame `auth` within the auth timeout
        } else {
            Err(AuthError::Missing)
        }
    }
}

/// What an accepted upgrade carries on to the session: the `Sec-WebSocket-Accept` value, the
/// identity, the inbox `since` with what the client asked of session resume and the client's
/// address (behind trusted proxies), and the connection's permit.
type Accepted = (
    [u8; 28],
    Option<Identity>,
    (Option<MessageId>, Option<Ask>, Option<std::net::IpAddr>),
    ConnectionPermit,
);

/// `?resume=true` (a resumable session) or `?resume=<token>&offset=<n>` (resume one).
fn resume_ask(query: &str) -> Result<Option<Ask>, String> {
    let params = Query::<HashMap<String, String>>::from_query(query)
        .map_err(|e| format!("bad query string: {e}"))?
        .into_inner();
    let offset = params
        .get("offset")
        .map(|o| o.parse::<u64>())
        .transpose()
        .map_err(|_| "`offset` must be a non-negative integer".to_string())?;
    Ok(match (params.get("resume").map(String::as_str), offset) {
        (None | Some("false"), None) => None,
        (Some("true"), None) => Some(Ask::Start),
        (Some(token), offset) if !matches!(token, "true" | "false") => Some(Ask::Continue {
            pid: Pid::parse(token),
            offset: Some(offset.unwrap_or(0)),
        }),
        _ => return Err("`offset` goes with a `resume` token".into()),
    })
}

/// The `since` query parameter (the last `inboxId` a reconnecting client saw), if any.
fn inbox_since(query: &str) -> Result<Option<MessageId>, String> {
    let params = Query::<HashMap<String, String>>::from_query(query)
        .map_err(|e| format!("bad query string: {e}"))?
        .into_inner();
    params
        .get("since")
        .map(|s| protocol::parse_since(s).map_err(|e| e.message.to_string()))
        .transpose()
}
