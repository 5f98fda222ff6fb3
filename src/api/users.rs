//! Users over HTTP: `POST /api/users/{userId}/disconnect` closes every session of a user on
//! every instance, through a `disconnect` hub message on the user's channel
//! (`docs/protocol.md#hub-messages`), deletes the user's resume records and, when asked,
//! revokes the user's tokens. `DELETE` and `PUT /api/rooms/{room}/members/{userId}` take a
//! user out of a room, or put it in, on every instance (`room-remove`, `room-add`).

use actix_web::{web, HttpResponse};
use hub_wire::protocol::{
    is_valid_user_id, room_access_payload, HubCommand, HubMessage, RoomId, ROOM_ACCESS,
};
use log::warn;
use serde_json::{json, Map, Value};

use super::{ApiError, ApiResult, State};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::resource("/users/{userId}/disconnect", "POST").route(web::post().to(disconnect)),
    )
    .service(
        super::resource("/rooms/{roomId}/members/{userId}", "DELETE, PUT")
            .route(web::delete().to(remove_member))
            .route(web::put().to(add_member)),
    );
}

/// The room and user of a members route, validated.
fn member(path: &(String, String)) -> Result<(RoomId, &str), ApiError> {
    let (room, user) = path;
    let room = super::chat::room_from_path(room)?;
    if !is_valid_user_id(user) {
        return Err(ApiError::bad_request(
            "userId must be 1-128 characters of A-Z a-z 0-9 : _ . - @",
        ));
    }
    Ok((room, user))
}

/// `DELETE /api/rooms/{roomId}/members/{userId}`: every session of the user leaves the room
/// on every instance (`left` with reason `removed`), every instance forgets its cached room
/// hook answers for the pair, and the user's resume records forget the room. Answers `202 {"status":"published","instances":N}`.
async fn remove_member(state: State, path: web::Path<(String, String)>) -> ApiResult {
    let (room, user) = member(&path)?;
    let forget = room_access_payload(user, &room);
    super::publish(&state, ROOM_ACCESS, &forget).await?;
    let message = HubMessage::Command(HubCommand::RoomRemove { room: room.clone() });
    let answer = publish_to(&state, user, &message).await?;
    // A session kept for resume must not come back into the room either.
    if let Some(resume) = &state.resume {
        resume.forget_room(user, &room).await.map_err(|e| {
            warn!("DELETE /api/rooms/{room}/members/{user}: {e}");
            ApiError::unavailable("the user's resume records could not be updated; try again")
        })?;
    }
    Ok(answer)
}

/// `PUT /api/rooms/{roomId}/members/{userId}`: every session of the user joins the room on
/// every instance, as if it had asked (it gets `joined`), without the room's access check.
/// Answers `202 {"status":"published","instances":N}`.
async fn add_member(state: State, path: web::Path<(String, String)>) -> ApiResult {
    let (room, user) = member(&path)?;
    let message = HubMessage::Command(HubCommand::RoomAdd { room });
    publish_to(&state, user, &message).await
}

async fn publish_to(state: &State, user: &str, message: &HubMessage) -> ApiResult {
    let instances = state
        .publisher
        .publish_hub(user, message)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(HttpResponse::Accepted().json(json!({"status": "published", "instances": instances})))
}

/// The body of a route whose body is optional: nothing, or a JSON object.
fn optional_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!(
            "the body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

/// With `{"revokeTokens": true}`, first revokes the user's tokens (`iat` at or before now);
/// then publishes `disconnect` to the user's channel, and deletes the user's resume records.
/// Answers `202 {"status":"published","instances":N,"revoked":bool,"resumeRecords":K}` (N: the
/// hub instances holding the user, each of which closes its sessions of the user; K: the
/// records deleted).
async fn disconnect(state: State, user: web::Path<String>, body: web::Bytes) -> ApiResult {
    if !is_valid_user_id(&user) {
        return Err(ApiError::bad_request(
            "userId must be 1-128 characters of A-Z a-z 0-9 : _ . - @",
        ));
    }
    let body = optional_object(&body)?;
    let revoke = match body.get("revokeTokens") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(revoke)) => *revoke,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`revokeTokens` must be true or false",
            ))
        }
    };
    let unavailable = |what: String| {
        warn!("POST /api/users/{user}/disconnect: {what}");
        ApiError::unavailable("the user could not be disconnected; try again")
    };
    // Revoked before the sessions close: a client reconnecting at once is refused.
    if revoke {
        state
            .revocations
            .revoke(&user)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
    }
    let message = HubMessage::Command(HubCommand::Disconnect);
    let instances = state
        .publisher
        .publish_hub(&user, &message)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let records = match &state.resume {
        Some(resume) => resume
            .forget_user(&user)
            .await
            .map_err(|e| unavailable(e.to_string()))?,
        None => 0,
    };
    Ok(HttpResponse::Accepted().json(json!({
        "status": "published",
        "instances": instances,
        "revoked": revoke,
        "resumeRecords": records,
    })))
}
