//! `POST /api/notify`: publish a Notification to `user:notifications:{userId}`.

use actix_web::{web, HttpResponse};
use hub_actors::protocol::{now_ms, parse_inbound, USER_PREFIX};
use serde_json::{Map, Value};

use super::{publish, ApiError, ApiResult, State};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/notify", "POST").route(web::post().to(notify)));
}

/// Validates with the same rules the subscriber applies to Redis payloads, fills
/// `timestamp`, publishes, and answers `202 {"status":"published","receivers":n}`.
async fn notify(state: State, body: web::Json<Map<String, Value>>) -> ApiResult {
    let mut payload = body.into_inner();
    payload
        .entry("timestamp")
        .or_insert_with(|| Value::from(now_ms()));
    let user = match payload.get("userId") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(ApiError::bad_request(
                "`userId` (string or number) is required",
            ))
        }
    };
    let channel = format!("{USER_PREFIX}{user}");
    let bytes = serde_json::to_vec(&payload).expect("JSON maps serialize");
    parse_inbound(&channel, &bytes)
        .map_err(|e| ApiError::bad_request(super::plain_message(&e.to_string())))?;
    publish(&state, &channel, &bytes).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({"status": "published"})))
}
