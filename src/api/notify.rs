//! `POST /api/notify`: append a Notification to the user's inbox and publish it to
//! `user:notifications:{userId}` (one Redis function, see `hub_actors::features::inbox`).

use actix_web::{web, HttpResponse};
use hub_wire::protocol::{now_ms, parse_inbound, HUB_INBOX_ID, HUB_KEY, USER_PREFIX};
use log::warn;
use serde_json::{json, Map, Value};

use super::{ApiError, ApiResult, State};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/notify", "POST").route(web::post().to(notify)));
}

/// Validates with the same rules the subscriber applies to Redis payloads, fills
/// `timestamp`, appends and publishes, and answers `202 {"status":"published","inboxId":..}`.
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
    if let Some(key) = [HUB_KEY, HUB_INBOX_ID]
        .into_iter()
        .find(|k| payload.contains_key(*k))
    {
        return Err(ApiError::bad_request(format!(
            "`{key}` is reserved for the hub's own messages; leave it out"
        )));
    }
    let channel = format!("{USER_PREFIX}{user}");
    payload.remove("inboxId"); // set by the inbox
    let bytes = serde_json::to_vec(&payload).expect("JSON maps serialize");
    parse_inbound(&channel, &bytes)
        .map_err(|e| ApiError::bad_request(super::plain_message(&e.to_string())))?;
    let (id, _) = state.inbox.notify(&user, &bytes).await.map_err(|e| {
        warn!("POST /api/notify: {e}");
        ApiError::unavailable("the notification could not be stored; try again")
    })?;
    Ok(HttpResponse::Accepted().json(json!({"status": "published", "inboxId": id.to_string()})))
}
