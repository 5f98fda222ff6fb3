//! The reference test application of the Socket.IO protocol (the server the official
//! `socket.io-protocol` and `engine.io-protocol` test suites are written against), served by
//! our own Engine.IO and Socket.IO layers:
//! - `/socket.io/`: `pingInterval` 300 ms, `pingTimeout` 200 ms, `maxPayload` 1,000,000,
//!   `connectTimeout` 1,000 ms, CORS `*`; namespaces `/` and `/custom` each emit `auth` with
//!   the handshake's auth payload [`AUTH_DELAY`] after the connect; on `/`, `message` is
//!   emitted back as `message-back` and `message-with-ack` is acknowledged, both with the same
//!   arguments and binary attachments; `emit-with-ack` is emitted back with an ack request, and the
//!   client's answer emitted as `emit-with-ack` again (an extension some suites use);
//!   namespace `/late` answers its CONNECT [`LATE_ANSWER`] after it came (past the connect
//!   timeout): accepted with auth `{"accept":true}`, refused otherwise (an extension for the
//!   connect timeout's tests).
//! - `/engine.io/`: a pure Engine.IO echo (text as text, binary as binary).
//! - `/metrics`: the Engine.IO metrics.
//!
//! Run it with `cargo run --bin sio-compliance` (port 3000 on 127.0.0.1 and ::1, `PORT` to
//! change it).

use std::{future::Future, io, net::TcpListener, rc::Rc, sync::Arc, time::Duration};

use actix_http::HttpService;
use actix_service::{fn_factory, fn_service, map_config, IntoServiceFactory};
use actix_web::{dev::AppConfig, web, App, HttpResponse};
use bytes::Bytes;
use hub_actors::{
    transports::engineio::{
        Endpoint, EngineConfig, EngineHandler, EngineIo, EngineMetrics, Message,
    },
    transports::socketio::{AckReply, Event, SioApp, SioConfig, SioIo, SocketIo},
};
use log::info;
use prometheus::{Encoder, Registry, TextEncoder};
use serde_json::Value;

use crate::socketio_routes::{self, EngineMount, EngineMounts, Gate};

/// The reference server's Engine.IO parameters.
pub fn engine_config() -> EngineConfig {
    EngineConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        // Room for the echo of a largest message (base64 in a poll) and a ping.
        queue_bytes: 2_000_000,
        ..EngineConfig::default()
    }
}

/// The reference server's Socket.IO parameters.
pub fn sio_config() -> SioConfig {
    SioConfig {
        connect_timeout: Duration::from_millis(1000),
        ..SioConfig::default()
    }
}

/// How long after accepting a namespace the app emits its `auth` event. The official suite
/// reads the CONNECT reply and the `auth` event with two successive one-shot listeners; its
/// WebSocket client delivers all the frames of one read in the same tick, so an `auth` that
/// arrives with the reply (in one write, or two writes the client reads at once) is missed.
/// Emitting it a little later, well inside the first `pingInterval`, keeps them apart.
pub const AUTH_DELAY: Duration = Duration::from_millis(100);

/// How long `/late` takes to answer a CONNECT: longer than the connect timeout.
pub const LATE_ANSWER: Duration = Duration::from_millis(1500);

/// The reference application, per connection.
#[derive(Default)]
pub struct Reference {
    /// Ids of `emit-with-ack` events waiting for the client's answer.
    pending_acks: Vec<u64>,
}

impl SioApp for Reference {
    fn serves(&self, nsp: &str) -> bool {
        nsp == "/" || nsp == "/custom" || nsp == "/late"
    }

    fn on_connect(&mut self, nsp: &str, auth: Value, io: &mut SioIo<'_, Self>) {
        if nsp == "/late" {
            let nsp = nsp.to_owned();
            io.run_later(LATE_ANSWER, move |_, io| {
                let _ = if auth["accept"] == true {
                    io.accept(&nsp).map(drop)
                } else {
                    io.refuse(&nsp, "refused late", None)
                };
            });
            return;
        }
        if io.accept(nsp).is_ok() {
            let nsp = nsp.to_owned();
            io.run_later(AUTH_DELAY, move |_, io| {
                // Not connected any more (the client left meanwhile): nothing to send.
                if io.is_connected(&nsp) {
                    let _ = io.emit(&nsp, "auth", &[auth], &[]);
                }
            });
        }
    }

    fn on_event(&mut self, nsp: &str, event: Event, io: &mut SioIo<'_, Self>) {
        if nsp != "/" {
            return;
        }
        let Event {
            name,
            args,
            attachments,
            ack,
        } = event;
        match (name.as_str(), ack) {
            ("message", _) => {
                let _ = io.emit(nsp, "message-back", &args, &attachments);
            }
            ("message-with-ack", Some(id)) => {
                let _ = io.ack(nsp, id, &args, &attachments);
            }
            ("emit-with-ack", _) => {
                if let Ok(id) = io.emit_with_ack(nsp, "emit-with-ack", &args, &attachments) {
                    // Bounded: a client that never answers cannot grow this past a few ids.
                    if self.pending_acks.len() >= 64 {
                        self.pending_acks.remove(0);
                    }
                    self.pending_acks.push(id);
                }
            }
            _ => {}
        }
    }

    fn on_ack(&mut self, nsp: &str, reply: AckReply, io: &mut SioIo<'_, Self>) {
        if let Some(i) = self.pending_acks.iter().position(|id| *id == reply.id) {
            self.pending_acks.remove(i);
            let _ = io.emit(nsp, "emit-with-ack", &reply.args, &reply.attachments);
        }
    }
}

/// The Engine.IO echo: every message sent back unchanged.
pub struct Echo;

impl EngineHandler for Echo {
    fn on_message(&mut self, message: Message, io: &mut EngineIo<'_, Self>) {
        let _ = match message {
            Message::Text(text) => io.send_text(&text),
            Message::Binary(data) => io.send_binary(&data),
        };
    }
}

/// Binds the reference server's listeners: `port` on 127.0.0.1 and, when the system has
/// IPv6, on ::1.
pub fn bind(port: u16) -> io::Result<Vec<TcpListener>> {
    let mut listeners = vec![TcpListener::bind(("127.0.0.1", port))?];
    let port = listeners[0].local_addr()?.port();
    match TcpListener::bind(("::1", port)) {
        Ok(l) => listeners.push(l),
        Err(e) => log::warn!("not listening on [::1]:{port}: {e}"),
    }
    Ok(listeners)
}

/// Serves the reference application on `listeners` until `shutdown` resolves.
pub async fn run(
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let registry = Arc::new(Registry::new());
    let metrics = Arc::new(EngineMetrics::register(&registry, None));
    let sio = Endpoint::<SocketIo<Reference>>::new(engine_config(), metrics.clone());
    let echo = Endpoint::<Echo>::new(engine_config(), metrics);
    let sio_config = Arc::new(sio_config());
    let factory = {
        let (sio, echo) = (sio.clone(), echo.clone());
        move || {
            let sio_config = sio_config.clone();
            let mounts = EngineMounts::new(
                vec![
                    EngineMount {
                        path: "/socket.io/",
                        service: Rc::new(sio.worker(move |_| {
                            SocketIo::new(Reference::default(), sio_config.clone())
                        })),
                    },
                    EngineMount {
                        path: "/engine.io/",
                        service: Rc::new(echo.worker(|_| Echo)),
                    },
                ],
                Gate::default(),
            );
            let registry = registry.clone();
            let app = App::new().configure(|cfg| mounts.configure(cfg)).route(
                "/metrics",
                web::get().to(move || {
                    let registry = registry.clone();
                    async move {
                        let mut out = Vec::new();
                        let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
                        HttpResponse::Ok()
                            .content_type("text/plain; version=0.0.4")
                            .body(Bytes::from(out))
                    }
                }),
            );
            HttpService::build()
                .client_request_timeout(Duration::from_secs(5))
                .upgrade(fn_factory(move || {
                    let mounts = mounts.clone();
                    async move {
                        Ok::<_, ()>(fn_service(
                            move |(req, framed): (actix_http::Request, _)| {
                                let mounts = mounts.clone();
                                async move {
                                    match mounts.find(req.path()) {
                                        Some(i) => {
                                            socketio_routes::upgrade(mounts, i, req, framed).await
                                        }
                                        None => {
                                            let body = br#"{"code":3,"message":"Bad request"}"#;
                                            let io = framed.into_parts().io;
                                            let response =
                                                hub_actors::transports::transport::http_error(
                                                    404,
                                                    "Not Found",
                                                    body,
                                                );
                                            let _ = hub_actors::transports::transport::write_all(
                                                &io, &response,
                                            )
                                            .await;
                                            Ok(())
                                        }
                                    }
                                }
                            },
                        ))
                    }
                }))
                .finish(map_config(app.into_factory(), |_| AppConfig::default()))
                .tcp()
        }
    };
    let mut builder = actix_server::Server::build()
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1);
    for listener in listeners {
        info!("sio-compliance listening on {}", listener.local_addr()?);
        builder = builder.listen("sio-compliance", listener, factory.clone())?;
    }
    let server = builder.run();
    let handle = server.handle();
    let server = actix_rt::spawn(server);
    shutdown.await;
    sio.close_all();
    echo.close_all();
    handle.stop(true).await;
    let _ = server.await;
    Ok(())
}
