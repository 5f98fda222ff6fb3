//! `POST /api/analytics` publishes an analytics event to `analytics:events`;
//! `GET /api/analytics` answers this instance's aggregate snapshot (every instance sees every
//! event, so any instance gives the full picture).

use actix_web::{web, HttpResponse};
use hub_actors::messages::GetSnapshot;
use hub_wire::protocol::{now_ms, parse_inbound, ANALYTICS_EVENTS};
use serde_json::{Map, Value};

use super::{publish, ApiError, ApiResult, State};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::resource("/analytics", "GET, POST")
            .route(web::post().to(record))
            .route(web::get().to(snapshot)),
    );
}

/// Validates with the rules the subscriber applies to `analytics:events` payloads (`event`
/// name, `data` object, typed `model`/`latencyMs`/`tokens`/`cost`), fills `timestamp`,
/// publishes, and answers `202 {"status":"published"}`.
async fn record(state: State, body: web::Json<Map<String, Value>>) -> ApiResult {
    let mut payload = body.into_inner();
    payload
        .entry("timestamp")
        .or_insert_with(|| Value::from(now_ms()));
    let bytes = serde_json::to_vec(&payload).expect("JSON maps serialize");
    parse_inbound(ANALYTICS_EVENTS, &bytes).map_err(|e| ApiError::bad_request(e.to_string()))?;
    publish(&state, ANALYTICS_EVENTS, &bytes).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({"status": "published"})))
}

/// The aggregate snapshot (the same JSON the `analytics` topic pushes).
async fn snapshot(state: State) -> ApiResult {
    let snapshot = state
        .analytics
        .send(GetSnapshot)
        .await
        .map_err(|e| ApiError::unavailable(format!("analytics aggregator: {e}")))?;
    Ok(HttpResponse::Ok().json(snapshot))
}
