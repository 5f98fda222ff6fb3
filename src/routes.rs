//! HTTP routes besides the WebSocket upgrade: `/health`, `/metrics`, the demo pages and the
//! browser client (`/client/relay-hub.js` and its modules).

use actix_web::{http::StatusCode, web, HttpResponse};

use crate::state::AppState;
use serde_json::json;

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(crate::api::configure)
        .route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics))
        .route("/", web::get().to(index))
        .route("/client/{file}", web::get().to(client_file))
        .route("/{file}", web::get().to(static_file));
}

/// `GET /health`: 200 `ok`, or 503 `degraded` while Redis (or a master of the cluster,
/// counted in `redis.nodesDown`) is unreachable or the pub/sub subscription no longer
/// delivers (the canary does not come back). `redis.reconnects`
/// counts pub/sub connections lost and re-established (e.g. Redis dropping the hub for its
/// pub/sub output-buffer limit), so a past outage stays visible after recovery.
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    let connected = m.redis_connected.get() == 1;
    let canary = state.canary.status();
    let healthy = connected && canary.delivering;
    let status = if healthy { "ok" } else { "degraded" };
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(code).json(json!({
        "status": status,
        "websocket": {
            "connections": m.connections.get(),
            "rooms": m.rooms.get(),
            "users": m.users.get(),
        },
        "redis": {
            "connected": connected,
            "reconnects": m.redis_reconnects.get(),
            "nodesDown": m.redis_nodes_down.get(),
            "delivering": canary.delivering,
            "canaryRoundTripMs": canary.round_trip_ms,
        },
        "instanceId": &*state.instance_id,
        "uptimeSeconds": state.started.elapsed().as_secs(),
    }))
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.jobs.refresh_metrics().await;
    state.canary.status(); // refreshes hub_canary_delivering
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.encode())
}

async fn index(state: web::Data<AppState>) -> HttpResponse {
    page(&state, "index.html").await
}

async fn static_file(state: web::Data<AppState>, file: web::Path<String>) -> HttpResponse {
    page(&state, &file).await
}

/// `GET /client/{file}`: the browser client's modules (`relay-hub.js` imports the others).
async fn client_file(file: web::Path<String>) -> HttpResponse {
    match checked(&file) {
        Some(mime) => found(mime, crate::pages::client_file(&file)),
        None => not_found(),
    }
}

fn content_type(name: &str) -> Option<&'static str> {
    match name.rsplit_once('.')?.1 {
        "html" => Some("text/html; charset=utf-8"),
        "js" => Some("text/javascript; charset=utf-8"),
        "css" => Some("text/css; charset=utf-8"),
        "svg" => Some("image/svg+xml"),
        "png" => Some("image/png"),
        "ico" => Some("image/x-icon"),
        "json" => Some("application/json"),
        _ => None,
    }
}

/// The content type of `name` when it is a flat file name of a known type.
fn checked(name: &str) -> Option<&'static str> {
    let safe = !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    safe.then(|| content_type(name)).flatten()
}

/// Serves a demo page (flat names only, known types only), built in or from `HUB_STATIC_DIR`.
async fn page(state: &AppState, name: &str) -> HttpResponse {
    match checked(name) {
        Some(mime) => found(mime, state.config.pages.page(name).await),
        None => not_found(),
    }
}

fn found(mime: &str, body: Option<std::borrow::Cow<'static, [u8]>>) -> HttpResponse {
    match body {
        Some(body) => HttpResponse::Ok()
            .content_type(mime)
            .insert_header(("cache-control", "no-cache"))
            .body(match body {
                std::borrow::Cow::Borrowed(bytes) => bytes::Bytes::from_static(bytes),
                std::borrow::Cow::Owned(bytes) => bytes::Bytes::from(bytes),
            }),
        None => not_found(),
    }
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .json(json!({"error": {"code": "not_found", "message": "no such page"}}))
}
