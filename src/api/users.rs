//! Users over HTTP: `POST /api/users/{userId}/disconnect` closes every session of a user on
//! every instance, through a `disconnect` hub message on the user's channel
//! (`docs/protocol.md#hub-messages`).

use actix_web::{web, HttpResponse};
use hub_wire::protocol::{is_valid_user_id, HubCommand, HubMessage};
use log::warn;
use serde_json::{json, Map, Value};

use super::{ApiError, ApiResult, State};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::resource("/users/{userId}/disconnect", "POST").route(web::post().to(disconnect)),
    );
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

/// Publishes `disconnect` to the user's channel; answers
/// `202 {"status":"published","instances":N}` (N: the hub instances holding the user, each of
/// which closes its sessions of the user).
async fn disconnect(state: State, user: web::Path<String>, body: web::Bytes) -> ApiResult {
    if !is_valid_user_id(&user) {
        return Err(ApiError::bad_request(
            "userId must be 1-128 characters of A-Z a-z 0-9 : _ . - @",
        ));
    }
    optional_object(&body)?;
    let message = HubMessage::Command(HubCommand::Disconnect);
    let instances = state
        .publisher
        .publish_hub(&user, &message)
        .await
        .map_err(|e| {
            warn!("POST /api/users/{user}/disconnect: {e}");
            ApiError::unavailable("the user could not be disconnected; try again")
        })?;
    Ok(HttpResponse::Accepted().json(json!({"status": "published", "instances": instances})))
}
