//! HTTP wiring of Engine.IO endpoints (`/socket.io/`, and the compliance server's
//! `/engine.io/`): long-polling `GET`/`POST` as actix-web routes, CORS, and WebSocket upgrades
//! handed over from [`crate::upgrade`]. The protocol itself lives in `hub_actors::transports::engineio`;
//! this module only translates HTTP and applies the instance's gate (origins, connection
//! limits) to new sessions.

use std::{collections::HashMap, io, rc::Rc, sync::Arc};

use actix_http::{h1, ws, Request};
use actix_rt::net::TcpStream;
use actix_web::{
    http::{header, Method as HttpMethod, StatusCode},
    web, HttpMessage, HttpRequest, HttpResponse,
};
use bytes::BytesMut;
use futures_util::StreamExt;
use hub_actors::{
    common::limits::{ConnectionLimiter, ConnectionPermit, LimitExceeded},
    common::metrics::Metrics,
    transports::engineio::{
        request, EngineQuery, EngineService, ErrorCode, Handshake, HttpReply, Method, PostFailure,
        Route, TransportKind,
    },
    transports::transport,
};
use log::debug;

use crate::{config::Config, handshake::UpgradeError};

/// Who may open a session: applied to handshakes (and origins to upgrades too).
#[derive(Clone, Default)]
pub struct Gate {
    /// Allowed browser origins; `None` allows any (and CORS answers `*`).
    pub origins: Option<Arc<Config>>,
    /// Connection limits; a session holds a slot from its handshake to its end (counted by
    /// the client's address: behind a trusted proxy, the one it forwards).
    pub limiter: Option<Arc<ConnectionLimiter>>,
    /// Where refused connections are counted (`hub_connections_rejected_total`).
    pub metrics: Option<Arc<Metrics>>,
}

/// Headers of a request the gate looks at.
struct Caller<'a> {
    origin: Option<&'a str>,
    peer: Option<std::net::SocketAddr>,
}

impl Gate {
    /// The client's address: the socket's peer, or behind a trusted proxy
    /// (`HUB_TRUSTED_PROXIES`) the address its forwarding headers name.
    fn client(
        &self,
        peer: Option<std::net::SocketAddr>,
        headers: &actix_http::header::HeaderMap,
    ) -> Option<std::net::SocketAddr> {
        let (Some(peer), Some(config)) = (peer, &self.origins) else {
            return peer;
        };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let ip = config.trusted_proxies.client(
            peer.ip(),
            header("forwarded"),
            header("x-forwarded-for"),
        );
        Some(std::net::SocketAddr::new(ip, peer.port()))
    }

    fn reject(&self, reason: &str) {
        if let Some(m) = &self.metrics {
            m.reject(reason);
        }
    }

    /// True when a browser at `origin` may use the endpoint.
    fn origin_ok(&self, caller: &Caller<'_>) -> bool {
        match (&self.origins, caller.origin) {
            (Some(config), Some(origin)) => config.origin_allowed(origin),
            _ => true,
        }
    }

    /// The `Access-Control-Allow-Origin` value for a caller, if any.
    fn cors_origin(&self, caller: &Caller<'_>) -> Option<String> {
        match &self.origins {
            None => Some("*".to_owned()),
            Some(_) => caller
                .origin
                .filter(|_| self.origin_ok(caller))
                .map(str::to_owned),
        }
    }

    fn check_origin(
        &self,
        service: &dyn EngineService,
        caller: &Caller<'_>,
    ) -> Result<(), HttpReply> {
        if self.origin_ok(caller) {
            return Ok(());
        }
        self.reject("forbidden_origin");
        service.metrics().refused(ErrorCode::Forbidden);
        let origin = caller.origin.unwrap_or_default();
        Err(HttpReply::error_with(
            403,
            ErrorCode::Forbidden,
            &format!("origin {origin} is not allowed"),
        ))
    }

    /// Admits a new session: not shutting down, allowed origin, within the limits.
    fn admit(
        &self,
        service: &dyn EngineService,
        caller: &Caller<'_>,
    ) -> Result<Option<ConnectionPermit>, HttpReply> {
        if service.is_closing() {
            self.reject("shutting_down");
            return Err(HttpReply::error_with(
                503,
                ErrorCode::BadRequest,
                "this instance is shutting down; reconnect",
            ));
        }
        self.check_origin(service, caller)?;
        let Some(limiter) = &self.limiter else {
            return Ok(None);
        };
        match limiter.try_acquire(caller.peer.map(|a| a.ip())) {
            Ok(permit) => Ok(Some(permit)),
            Err(LimitExceeded::Total) => {
                self.reject("connection_limit");
                Err(HttpReply::error_with(
                    503,
                    ErrorCode::BadRequest,
                    "this instance is at its connection limit; try another or retry later",
                ))
            }
            Err(LimitExceeded::PerIp) => {
                self.reject("ip_limit");
                Err(HttpReply::error_with(
                    429,
                    ErrorCode::BadRequest,
                    "too many connections from your address",
                ))
            }
        }
    }
}

/// An endpoint mounted at a path (with a trailing slash, as clients ask for it).
pub struct EngineMount {
    /// E.g. `/socket.io/`.
    pub path: &'static str,
    /// The endpoint's service on this worker.
    pub service: Rc<dyn EngineService>,
}

/// The endpoints of one worker thread and the gate in front of them.
pub struct EngineMounts {
    mounts: Vec<EngineMount>,
    gate: Gate,
}

impl EngineMounts {
    /// Endpoints behind a gate.
    pub fn new(mounts: Vec<EngineMount>, gate: Gate) -> Rc<Self> {
        Rc::new(EngineMounts { mounts, gate })
    }

    /// The index of the endpoint serving `path` (with or without the trailing slash).
    pub fn find(&self, path: &str) -> Option<usize> {
        self.mounts
            .iter()
            .position(|m| path == m.path || path == m.path.trim_end_matches('/'))
    }

    /// Registers the long-polling routes (register before catch-all routes).
    pub fn configure(self: &Rc<Self>, cfg: &mut web::ServiceConfig) {
        for (i, mount) in self.mounts.iter().enumerate() {
            for path in [mount.path, mount.path.trim_end_matches('/')] {
                let mounts = self.clone();
                cfg.route(
                    path,
                    web::route().to(move |req: HttpRequest, body: web::Payload| {
                        polling(mounts.clone(), i, req, body)
                    }),
                );
            }
        }
    }
}

/// The Engine.IO parameters of a query string.
fn engine_query(query: &str) -> EngineQuery {
    let mut params = web::Query::<HashMap<String, String>>::from_query(query)
        .map(web::Query::into_inner)
        .unwrap_or_default();
    EngineQuery {
        eio: params.remove("EIO"),
        transport: params.remove("transport"),
        sid: params.remove("sid"),
    }
}

/// A long-polling request (or a CORS preflight).
async fn polling(
    mounts: Rc<EngineMounts>,
    index: usize,
    req: HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    let service = &*mounts.mounts[index].service;
    let headers = req.headers();
    let caller = Caller {
        origin: headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        peer: mounts.gate.client(req.peer_addr(), headers),
    };
    let cors = mounts.gate.cors_origin(&caller);
    if req.method() == HttpMethod::OPTIONS {
        let mut response = HttpResponse::NoContent();
        add_cors(&mut response, cors.as_deref());
        response
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"));
        if let Some(wanted) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            response.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, wanted.clone()));
        }
        return response.finish();
    }
    let method = match *req.method() {
        HttpMethod::GET => Method::Get,
        HttpMethod::POST => Method::Post,
        _ => Method::Other,
    };
    let reply = match request::route(method, &engine_query(req.query_string()), false) {
        Err(code) => {
            service.metrics().refused(code);
            HttpReply::error(code)
        }
        Ok(Route::Open(transport)) => match mounts.gate.admit(service, &caller) {
            Err(reply) => reply,
            Ok(permit) => service.open_polling(Handshake {
                transport,
                query: req.query_string().to_owned(),
                origin: caller.origin.map(str::to_owned),
                peer: caller.peer,
                permit,
            }),
        },
        Ok(Route::Poll(sid)) => service.poll(&sid).await,
        Ok(Route::Post(sid)) => match service.begin_post(&sid).await {
            Err(reply) => reply,
            Ok(guard) => {
                let body = read_body(body, service.config().max_payload).await;
                guard.deliver(body).await
            }
        },
        Ok(Route::Upgrade(_)) => HttpReply::error(ErrorCode::BadRequest),
    };
    let mut response =
        HttpResponse::build(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST));
    add_cors(&mut response, cors.as_deref());
    response
        .content_type(reply.content_type)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(reply.body)
}

fn add_cors(response: &mut actix_web::HttpResponseBuilder, origin: Option<&str>) {
    let Some(origin) = origin else { return };
    response.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin));
    if origin != "*" {
        response
            .insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"))
            .insert_header((header::VARY, "Origin"));
    }
}

/// Reads a `POST` body up to `max` bytes.
async fn read_body(mut body: web::Payload, max: usize) -> Result<bytes::Bytes, PostFailure> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| PostFailure::Aborted)?;
        if buf.len() + chunk.len() > max {
            return Err(PostFailure::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn reason_phrase(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

/// A WebSocket upgrade request for an endpoint: a new WebSocket session, or the upgrade of a
/// long-polling one. Refusals are answered with the protocol's error response.
pub async fn upgrade(
    mounts: Rc<EngineMounts>,
    index: usize,
    req: Request,
    framed: actix_codec::Framed<TcpStream, h1::Codec>,
) -> Result<(), UpgradeError> {
    upgrade_io(mounts, index, req, framed)
        .await
        .map_err(UpgradeError)
}

async fn upgrade_io(
    mounts: Rc<EngineMounts>,
    index: usize,
    req: Request,
    framed: actix_codec::Framed<TcpStream, h1::Codec>,
) -> io::Result<()> {
    let service = &*mounts.mounts[index].service;
    let parts = framed.into_parts();
    let io = parts.io;
    let headers = req.headers();
    let caller = Caller {
        origin: headers.get("origin").and_then(|v| v.to_str().ok()),
        peer: mounts.gate.client(req.peer_addr(), headers),
    };
    let method = if req.method() == HttpMethod::GET {
        Method::Get
    } else {
        Method::Other
    };
    let query = req.uri().query().unwrap_or("");
    let decision = request::route(method, &engine_query(query), true)
        .map_err(|code| {
            service.metrics().refused(code);
            HttpReply::error(code)
        })
        .and_then(|route| {
            ws::verify_handshake(req.head()).map_err(|e| {
                debug!("engine.io upgrade: bad handshake: {e}");
                service.metrics().refused(ErrorCode::BadRequest);
                HttpReply::error(ErrorCode::BadRequest)
            })?;
            let accept = headers
                .get("sec-websocket-key")
                .map(|k| ws::hash_key(k.as_bytes()))
                .expect("verify_handshake checked the key");
            match &route {
                Route::Open(_) => Ok((route, accept, mounts.gate.admit(service, &caller)?)),
                Route::Upgrade(sid) => {
                    mounts.gate.check_origin(service, &caller)?;
                    if !service.has_session(sid) {
                        service.metrics().refused(ErrorCode::UnknownSid);
                        return Err(HttpReply::error(ErrorCode::UnknownSid));
                    }
                    Ok((route, accept, None))
                }
                _ => Err(HttpReply::error(ErrorCode::BadRequest)),
            }
        });
    let (route, accept, permit) = match decision {
        Ok(d) => d,
        Err(reply) => {
            let response =
                transport::http_error(reply.status, reason_phrase(reply.status), &reply.body);
            return transport::write_all(&io, &response).await;
        }
    };
    let leftover = parts.read_buf.to_vec();
    let socket = io.into_std()?;
    match route {
        Route::Upgrade(sid) => service.upgrade(&sid, socket, leftover, accept),
        _ => service.open_websocket(
            Handshake {
                transport: TransportKind::WebSocket,
                query: query.to_owned(),
                origin: caller.origin.map(str::to_owned),
                peer: caller.peer,
                permit,
            },
            socket,
            leftover,
            accept,
        ),
    }
    Ok(())
}
