//! Chat rooms over HTTP: `POST /api/chat/{roomId}` publishes a ChatMessage through the
//! room's history (like a session's `chat-message`), `GET /api/rooms/{roomId}` tells who is
//! in a room on any instance and how many messages its history holds.

use actix_web::{http::StatusCode, web, HttpResponse};
use hub_wire::protocol::{
    check_message, is_valid_room, now_ms, parse_inbound, user_id_json, RoomId, HUB_CHAT_ID,
    ROOM_PREFIX,
};
use serde_json::{json, Map, Value};

use super::{ApiError, ApiResult, State};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/chat/{roomId}", "POST").route(web::post().to(post_message)))
        .service(super::resource("/rooms/{roomId}", "GET").route(web::get().to(room_info)));
}

/// A room name from a route's path (`400 invalid_room` otherwise).
pub(super) fn room_from_path(room: &str) -> Result<RoomId, ApiError> {
    if is_valid_room(room) {
        Ok(room.into())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_room",
            "room names are 1-64 characters of A-Z a-z 0-9 : _ . -",
        ))
    }
}

/// Body: `{userId, username, message, timestamp?, ...}` (extra keys are kept; `roomId`, if
/// given, must match the path; an `id` is replaced by the history id). Answers
/// `202 {"status":"published","id":...}`.
async fn post_message(
    state: State,
    room: web::Path<String>,
    body: web::Json<Map<String, Value>>,
) -> ApiResult {
    let room = room_from_path(&room)?;
    let mut payload = body.into_inner();
    payload.remove("id");
    if payload.contains_key(HUB_CHAT_ID) {
        return Err(ApiError::bad_request(format!(
            "`{HUB_CHAT_ID}` is reserved for the hub's own messages; leave it out"
        )));
    }
    match payload.get("roomId") {
        None => {
            payload.insert("roomId".into(), Value::from(&*room));
        }
        Some(Value::String(r)) if *r == *room => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "`roomId` in the body must match the room in the path",
            ))
        }
    }
    match payload.get("message") {
        Some(Value::String(m)) => {
            check_message(m, &state.config.limits)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code.as_str(), e.message))?;
        }
        _ => return Err(ApiError::bad_request("`message` (a string) is required")),
    }
    match payload.get("timestamp") {
        None => {
            payload.insert("timestamp".into(), Value::from(now_ms()));
        }
        Some(Value::Number(_)) => {}
        Some(_) => return Err(ApiError::bad_request("`timestamp` must be a number (ms)")),
    }
    let bytes = serde_json::to_vec(&payload).expect("JSON maps serialize");
    let channel = format!("{ROOM_PREFIX}{room}");
    parse_inbound(&channel, &bytes)
        .map_err(|e| ApiError::bad_request(super::plain_message(&e.to_string())))?;
    let id = state
        .history
        .append(&room, &bytes)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(HttpResponse::Accepted().json(json!({"status": "published", "id": id.to_string()})))
}

/// `{"roomId", "members": [{userId, username}], "memberCount", "messageCount",
/// "lastMessageId"}`: members on every instance (at most `HUB_ROOM_PRESENCE_LIMIT` listed),
/// messages held in the room's history.
async fn room_info(state: State, room: web::Path<String>) -> ApiResult {
    let room = room_from_path(&room)?;
    let local = state.presence.members(&room);
    let (stats, members) =
        futures_util::future::join(state.history.stats(&room), state.members.list(&room, local))
            .await;
    let stats = stats.map_err(|e| ApiError::unavailable(e.to_string()))?;
    let members = members.map_err(|e| ApiError::unavailable(e.to_string()))?;
    let list: Vec<Value> = members
        .members
        .iter()
        .map(|m| json!({"userId": user_id_json(&m.user_id), "username": &*m.username}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "roomId": &*room,
        "members": list,
        "memberCount": members.count,
        "messageCount": stats.count,
        "lastMessageId": stats.last_id.map(|id| id.to_string()),
    })))
}
