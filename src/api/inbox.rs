//! A user's inbox over HTTP (`docs/http-api.md`): `GET /api/users/{userId}/inbox` lists it
//! with read flags, `POST .../inbox/read` marks notifications read, `DELETE
//! .../inbox/{inboxId}` deletes one. Marks and deletes go through the inbox's Redis functions,
//! which tell every session of the user (`inbox-state`), on every instance.

use actix_web::{web, HttpResponse};
use hub_wire::protocol::{is_valid_user_id, Marks, MessageId, INBOX_PAGE_DEFAULT, INBOX_PAGE_MAX};
use log::warn;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{ApiError, ApiResult, State};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/users/{userId}/inbox", "GET").route(web::get().to(list)))
        .service(super::resource("/users/{userId}/inbox/read", "POST").route(web::post().to(read)))
        .service(
            super::resource("/users/{userId}/inbox/{inboxId}", "DELETE")
                .route(web::delete().to(delete)),
        );
}

fn user(user: &str) -> Result<&str, ApiError> {
    if !is_valid_user_id(user) {
        return Err(ApiError::bad_request(
            "userId must be 1-128 characters of A-Z a-z 0-9 : _ . - @",
        ));
    }
    Ok(user)
}

fn inbox_id(what: &str, id: &str) -> Result<MessageId, ApiError> {
    MessageId::parse(id).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{what} must be an inbox id like \"1764520000123-0\""
        ))
    })
}

fn unavailable(route: &str, e: impl std::fmt::Display) -> ApiError {
    warn!("{route}: {e}");
    ApiError::unavailable("the inbox could not be reached; try again")
}

#[derive(Deserialize)]
struct ListQuery {
    before: Option<String>,
    limit: Option<String>,
}

/// `GET /api/users/{userId}/inbox?before=&limit=`: `200 {"items":[{"data","read"}],
/// "unread","more"}`, newest first.
async fn list(state: State, path: web::Path<String>, query: web::Query<ListQuery>) -> ApiResult {
    let user = user(&path)?;
    let before = match query.before.as_deref() {
        None | Some("") => None,
        Some(id) => Some(inbox_id("`before`", id)?),
    };
    let limit = match query.limit.as_deref() {
        None => INBOX_PAGE_DEFAULT,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if (1..=INBOX_PAGE_MAX).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "`limit` must be an integer from 1 to {INBOX_PAGE_MAX}"
                )))
            }
        },
    };
    let page = state
        .inbox
        .page(user, before, limit)
        .await
        .map_err(|e| unavailable("GET /api/users/{userId}/inbox", e))?;
    Ok(HttpResponse::Ok().json(json!({
        "items": page.items,
        "unread": page.unread,
        "more": page.more,
    })))
}

/// `POST /api/users/{userId}/inbox/read` with `{"ids":[...]}` or `{"upTo":"<inboxId>"}`:
/// `200 {"unread":N}`.
async fn read(
    state: State,
    path: web::Path<String>,
    body: web::Json<Map<String, Value>>,
) -> ApiResult {
    let user = user(&path)?;
    let mut body = body.into_inner();
    let marks = Marks::take(&mut body).map_err(|e| ApiError::bad_request(e.message))?;
    if let Some(key) = body.keys().next() {
        return Err(ApiError::bad_request(format!("unknown field `{key}`")));
    }
    let unread = state
        .inbox
        .mark_read(user, &marks)
        .await
        .map_err(|e| unavailable("POST /api/users/{userId}/inbox/read", e))?;
    Ok(HttpResponse::Ok().json(json!({ "unread": unread })))
}

/// `DELETE /api/users/{userId}/inbox/{inboxId}`: `200 {"unread":N}`, or `404 not_found` when
/// the inbox does not hold it.
async fn delete(state: State, path: web::Path<(String, String)>) -> ApiResult {
    let (user_id, id) = path.into_inner();
    let user = user(&user_id)?;
    let id = inbox_id("the inbox id", &id)?;
    let (deleted, unread) = state
        .inbox
        .delete(user, id)
        .await
        .map_err(|e| unavailable("DELETE /api/users/{userId}/inbox/{inboxId}", e))?;
    if !deleted {
        return Err(ApiError::not_found(format!(
            "the inbox of {user} holds no notification {id}"
        )));
    }
    Ok(HttpResponse::Ok().json(json!({ "unread": unread })))
}
