//! `POST /api/cache/invalidate`: publish `{pattern, reason?}` to `cache:invalidate`.

use actix_web::{web, HttpResponse};
use hub_wire::protocol::{now_ms, parse_inbound, CACHE_INVALIDATE};
use serde_json::{Map, Value};

use super::{publish, ApiError, ApiResult, State};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/cache/invalidate", "POST").route(web::post().to(invalidate)));
}

/// Validates with the rules the subscriber applies to `cache:invalidate` payloads (a glob
/// `pattern` that parses, an optional string `reason`), fills `timestamp`, publishes, and
/// answers `202 {"status":"published"}`.
async fn invalidate(state: State, body: web::Json<Map<String, Value>>) -> ApiResult {
    let mut payload = body.into_inner();
    payload
        .entry("timestamp")
        .or_insert_with(|| Value::from(now_ms()));
    let bytes = serde_json::to_vec(&payload).expect("JSON maps serialize");
    parse_inbound(CACHE_INVALIDATE, &bytes).map_err(|e| ApiError::bad_request(e.to_string()))?;
    publish(&state, CACHE_INVALIDATE, &bytes).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({"status": "published"})))
}
