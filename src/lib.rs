//! relay-hub: a realtime hub that turns Redis pub/sub into live WebSocket pushes.
//!
//! # Layout
//! - [`config`]: configuration from the environment.
//! - [`upgrade`]: WebSocket upgrades (path, origin, credentials) that start session actors.
//! - [`routes`]: `/health`, `/metrics`, the demo pages and the browser client.
//! - [`pages`]: the demo pages and the browser client, built into the binary.
//! - [`api`]: the HTTP API under `/api`.
//! - [`worker`]: the `relay-hub worker` subcommand (job worker with the demo handler).
//! - [`socketio_routes`]: Engine.IO/Socket.IO over HTTP (`/socket.io/`): long-polling routes,
//!   CORS, WebSocket upgrades handed to the `hub_actors::transports::engineio` session actors.
//! - [`compliance`]: the Socket.IO reference test application (`sio-compliance` binary).
//! - [`run`]: starts the actors and the HTTP server on a listener and stops them gracefully
//!   when the shutdown future resolves.
//!
//! The actor system itself lives in the `hub-actors` crate (`actors/`).

pub mod announce;
pub mod api;
pub mod cli;
pub mod compliance;
pub mod config;
pub mod handshake;
pub mod pages;
pub mod routes;
pub mod socketio_routes;
pub mod state;
pub mod token_keys;
pub mod upgrade;
pub mod worker;

use std::{
    future::Future,
    io,
    net::TcpListener,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use actix::{Actor, Addr, Arbiter};
use actix_http::HttpService;
use actix_service::{fn_factory, fn_service, map_config, IntoServiceFactory};
use actix_web::{dev::AppConfig, web, App};
use hub_actors::{
    common::auth::Authenticator,
    common::limits::ConnectionLimiter,
    common::metrics::Metrics,
    connections::publisher::Publisher,
    features::analytics::Analytics,
    features::canary::{self, Canary, CanaryState},
    features::history::History,
    features::inbox::Inbox,
    features::revocation::Revocations,
    features::room_access::RoomAccess,
    features::room_hook::RoomHook,
    features::roster::{RoomMembers, Roster, RosterConfig},
    features::session_resume::ResumeStore,
    features::user_limits::UserLimits,
    hub::client::{SessionEnv, JOIN_READS_IN_FLIGHT},
    hub::registry::Registry,
    hub::subscriber::{IngestSlot, Subscriber},
    messages::{AttachShard, CloseAll, Ingest, StopRoster, StopSubscriber},
    transports::engineio::{Endpoint, EngineConfig, EngineMetrics},
    transports::socketio::{hub::HubApp, SioConfig, SocketIo},
    transports::transport::close,
};
use log::{info, warn};

use crate::{
    config::Config,
    socketio_routes::{EngineMount, EngineMounts, Gate},
    state::AppState,
    upgrade::{UpgradeShared, Upgrader},
};

/// How long shutdown waits for sessions to finish their close handshake.
const SESSION_DRAIN: Duration = Duration::from_secs(2);
/// Paced closing stops pausing after this long, so that shutdown ends within 10 s.
const PACING_BUDGET: Duration = Duration::from_secs(3);

/// Closes every session with 1001, `batch` at a time (0 = all at once) with `pause` between
/// batches, so that clients reconnecting elsewhere do not all arrive at once. Returns how many
/// sessions were closed.
async fn close_sessions(shards: &[Addr<Registry>], batch: usize, pause: Duration) -> usize {
    let batch = if batch == 0 { usize::MAX } else { batch };
    let stop_pacing = Instant::now() + PACING_BUDGET;
    let mut told = 0;
    loop {
        let paced = Instant::now() < stop_pacing;
        let mut left = if paced { batch } else { usize::MAX };
        let mut closed_now = 0;
        for shard in shards {
            if left == 0 {
                break;
            }
            let n = shard
                .send(CloseAll {
                    code: close::GOING_AWAY,
                    reason: "server shutting down",
                    max: left,
                })
                .await
                .unwrap_or(0);
            closed_now += n;
            left -= n;
        }
        told += closed_now;
        if closed_now == 0 {
            return told;
        }
        if paced && !pause.is_zero() {
            actix_rt::time::sleep(pause).await;
        }
    }
}

/// Engine.IO parameters of the hub's `/socket.io/`: the reference server's heartbeat, and the
/// native protocol's limits (message size, queue, mailbox, send buffer, write timeout).
fn engine_config(limits: &hub_actors::common::limits::Limits) -> EngineConfig {
    EngineConfig {
        max_payload: limits.max_frame_bytes,
        queue_bytes: limits.queue_bytes,
        mailbox: limits.mailbox_frames,
        socket_sndbuf: limits.socket_sndbuf,
        write_timeout: limits.write_timeout,
        ..EngineConfig::default()
    }
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Runs a hub instance on `listener` until `shutdown` resolves, then stops accepting, closes
/// every session with 1001, unsubscribes from Redis and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let instance_id: Arc<str> = config.instance_id.as_str().into();
    let shards: Arc<Mutex<Vec<Addr<Registry>>>> = Arc::default();
    let analytics_shards: hub_actors::features::analytics::ShardList = Arc::default();
    let target = config.redis.target().map_err(other)?;
    let (analytics, analytics_sink) = Analytics::start(
        instance_id.clone(),
        metrics.clone(),
        analytics_shards.clone(),
    );
    let canary_state = CanaryState::new(config.canary_timeout, &metrics);
    let publisher =
        Publisher::new(&target, metrics.clone(), config.redis_failover_wait).map_err(other)?;
    let history = History::new(publisher.clone(), config.history.clone());
    let inbox = Inbox::new(publisher.clone(), config.inbox.clone())
        .with_library(hub_jobs::scripts::LIBRARY, hub_jobs::scripts::library());
    if let Err(e) = inbox.load().await {
        // Redis may be down at start: the subscriber loads it once Redis answers.
        warn!("{e}; loading it once Redis answers");
    }
    let room_hook = config
        .room_hook
        .clone()
        .map(|hook| RoomHook::new(hook, metrics.clone()));
    let ingest = config.ingest_connections;
    let shared = IngestSlot::default();
    let subscribers: Vec<Addr<Subscriber>> = (0..ingest)
        .map(|index| {
            let slot = IngestSlot::new(index, ingest, &shared);
            let (target, metrics, history, inbox, publisher) = (
                target.clone(),
                metrics.clone(),
                history.clone(),
                inbox.clone(),
                publisher.clone(),
            );
            let (config, instance_id) = (config.clone(), instance_id.clone());
            let (analytics_sink, canary_state) = (analytics_sink.clone(), canary_state.clone());
            let room_hook = room_hook.clone();
            // Each on a thread of its own: parsing and routing scale with the connections.
            Subscriber::start_in_arbiter(&Arbiter::new().handle(), move |_| {
                let subscriber = Subscriber::new(target, metrics)
                    .with_ingest_slot(slot)
                    .with_recovery(history, Some(inbox))
                    .with_backlog_cap(config.dispatch_backlog_bytes.div_ceil(ingest))
                    .with_command_timeout(config.pubsub_timeout);
                if index != 0 {
                    return subscriber;
                }
                let subscriber = subscriber
                    .with_job_gaps(publisher)
                    .with_sink(analytics_sink)
                    .with_sink(canary_state)
                    .with_canary(canary::channel(&instance_id));
                match room_hook {
                    Some(hook) => subscriber.with_sink(Arc::new(hook)),
                    None => subscriber,
                }
            })
        })
        .collect();
    let interest: Ingest = subscribers
        .iter()
        .map(|s| s.clone().recipient())
        .collect::<Vec<_>>()
        .into();
    Canary::new(
        canary_state.clone(),
        publisher.clone(),
        instance_id.clone(),
        config.canary_interval,
    )
    .start();
    let members = RoomMembers::new(publisher.connection(), config.room_presence_limit);
    let keys = token_keys::token_keys(&config, &metrics)
        .await
        .map_err(other)?;
    let auth = Arc::new(
        Authenticator::new(keys, config.jwt_audience.as_deref(), config.dev_auth)
            .with_issuer(config.jwt_issuer.as_deref())
            .with_failure_budget(config.auth_failures_per_minute)
            .with_max_lifetime(config.max_token_lifetime),
    );
    let revocations = Revocations::new(
        publisher.clone(),
        config.max_token_lifetime + Duration::from_secs(hub_actors::common::auth::LEEWAY_SECS),
    );
    let rooms = Arc::new(RoomAccess {
        open: config.dev_auth,
        public: config.public_rooms.clone(),
        hook: room_hook,
        auth: auth.clone(),
        revocations: revocations.clone(),
        metrics: metrics.clone(),
    });
    let user_limits = UserLimits::new(publisher.clone(), config.user_messages, config.user_joins);
    let limits = Arc::new(config.limits.clone());
    // The roster has a connection of its own: its batches never delay chat appends.
    let roster_conn = Publisher::new(&target, metrics.clone(), config.redis_failover_wait)
        .map_err(other)?
        .connection();
    let (roster, presence) = Roster::launch(
        roster_conn,
        RosterConfig {
            instance_id: instance_id.clone(),
            ttl: config.presence_ttl,
            room_limit: config.room_presence_limit,
        },
        metrics.clone(),
    );
    let next_shard = Arc::new(AtomicUsize::new(0));
    let upgrade_shared = Arc::new(UpgradeShared {
        config: config.clone(),
        shutting_down: AtomicBool::new(false),
        limiter: Arc::new(ConnectionLimiter::new(
            config.max_connections,
            config.max_connections_per_ip,
        )),
    });
    let jobs = Arc::new(state::JobsApi::new(
        publisher.connection(),
        publisher.is_cluster(),
        config.job_state_ttl,
        config.job_types.clone(),
        &metrics,
    ));
    let engine_metrics = Arc::new(EngineMetrics::register(
        &metrics.registry,
        Some(metrics.socketio_slow_consumers()),
    ));
    let socketio = Endpoint::<SocketIo<HubApp>>::new(engine_config(&limits), engine_metrics);
    let session_ids = Arc::new(AtomicU64::new(1));
    let resume = (!config.sio_recovery.is_zero()).then(|| {
        ResumeStore::new(publisher.clone(), config.sio_recovery)
            .with_caps(config.resume_caps, metrics.clone())
    });
    let saves = resume.clone();
    let join_reads = Arc::new(tokio::sync::Semaphore::new(JOIN_READS_IN_FLIGHT));
    let sio_config = Arc::new(SioConfig {
        connect_timeout: limits.auth_timeout,
        ..SioConfig::default()
    });
    let gate = Gate {
        origins: Some(config.clone()),
        limiter: Some(upgrade_shared.limiter.clone()),
        metrics: Some(metrics.clone()),
    };
    let state = AppState {
        jobs,
        metrics: metrics.clone(),
        instance_id: instance_id.clone(),
        started: Instant::now(),
        config: config.clone(),
        publisher: publisher.clone(),
        history: history.clone(),
        inbox: inbox.clone(),
        presence: presence.clone(),
        members: members.clone(),
        analytics,
        canary: canary_state,
        api_errors: api::register_error_counter(&metrics.registry),
        revocations: revocations.clone(),
        resume: resume.clone(),
    };

    let local_addr = listener.local_addr()?;
    let connections = metrics.connections.clone();
    let server = actix_server::Server::build()
        .workers(config.workers)
        .disable_signals()
        .shutdown_timeout(1)
        .listen("relay-hub", listener, {
            let (shards, analytics_shards, upgrade_shared, subscribers, interest, socketio) = (
                shards.clone(),
                analytics_shards.clone(),
                upgrade_shared.clone(),
                subscribers.clone(),
                interest.clone(),
                socketio.clone(),
            );
            move || {
                // Runs on each worker thread: the worker's registry shard lives there, next to
                // the sessions it accepts.
                let shard = next_shard.fetch_add(1, Ordering::Relaxed);
                let registry =
                    Registry::new(shard, interest.clone(), metrics.clone(), presence.clone())
                        .start();
                for subscriber in &subscribers {
                    subscriber.do_send(AttachShard {
                        id: shard,
                        addr: registry.clone().recipient(),
                    });
                }
                analytics_shards
                    .lock()
                    .expect("shard list lock poisoned")
                    .push(registry.clone().recipient());
                shards
                    .lock()
                    .expect("shard list lock poisoned")
                    .push(registry.clone());
                let env = Arc::new(SessionEnv {
                    registry,
                    publisher: publisher.clone(),
                    history: history.clone(),
                    inbox: inbox.clone(),
                    join_reads: join_reads.clone(),
                    members: members.clone(),
                    auth: auth.clone(),
                    limits: limits.clone(),
                    metrics: metrics.clone(),
                    instance_id: instance_id.clone(),
                    session_ids: session_ids.clone(),
                    resume: resume.clone(),
                    rooms: rooms.clone(),
                    revocations: revocations.clone(),
                    user_limits: user_limits.clone(),
                });
                let sio_config = sio_config.clone();
                let sio_env = env.clone();
                let engines = EngineMounts::new(
                    vec![EngineMount {
                        path: "/socket.io/",
                        service: Rc::new(socketio.worker(move |handshake| {
                            let peer = handshake.peer.map(|a| a.ip());
                            SocketIo::new(HubApp::new(sio_env.clone(), peer), sio_config.clone())
                        })),
                    }],
                    gate.clone(),
                );
                let upgrader = Rc::new(Upgrader {
                    env,
                    shared: upgrade_shared.clone(),
                    engines: engines.clone(),
                });
                let app = App::new()
                    .app_data(web::Data::new(state.clone()))
                    .configure(|cfg| engines.configure(cfg))
                    .configure(routes::configure);
                HttpService::build()
                    .client_request_timeout(Duration::from_secs(5))
                    .local_addr(local_addr)
                    .upgrade(fn_factory(move || {
                        let upgrader = upgrader.clone();
                        async move {
                            Ok::<_, ()>(fn_service(move |(req, framed)| {
                                upgrader.clone().handle(req, framed)
                            }))
                        }
                    }))
                    .finish(map_config(app.into_factory(), |_| AppConfig::default()))
                    .tcp()
            }
        })?
        .run();
    let handle = server.handle();
    let server = actix_rt::spawn(server);
    info!(
        "relay-hub {} listening on {local_addr} ({} workers)",
        config.instance_id, config.workers
    );

    shutdown.await;
    info!("shutting down: closing sessions");
    upgrade_shared.shutting_down.store(true, Ordering::Relaxed);
    socketio.refuse_new();
    handle.pause().await;
    let shards = shards.lock().expect("shard list lock poisoned").clone();
    let told = close_sessions(&shards, config.shutdown_batch, config.shutdown_pause).await
        + socketio.close_all();
    let deadline = Instant::now() + SESSION_DRAIN;
    // Sessions kept for recovery at shutdown are written before Redis is let go.
    let saving = || saves.as_ref().map_or(0, ResumeStore::saving);
    while (connections.get() > 0 || !socketio.is_empty() || saving() > 0)
        && Instant::now() < deadline
    {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    info!("closed {told} sessions ({} still open)", connections.get());
    if actix_rt::time::timeout(Duration::from_millis(2500), roster.send(StopRoster))
        .await
        .is_err()
    {
        warn!("removing this instance's room presence timed out");
    }
    let stops = subscribers.iter().map(|s| s.send(StopSubscriber));
    let stopped = futures_util::future::join_all(stops);
    if actix_rt::time::timeout(Duration::from_millis(1500), stopped)
        .await
        .is_err()
    {
        warn!("redis unsubscribe timed out");
    }
    handle.stop(true).await;
    let _ = server.await;
    info!("stopped");
    Ok(())
}
