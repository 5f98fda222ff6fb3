//! What every layer shares: identities and tokens ([`auth`]), limits and the connection
//! limiter ([`limits`]), client addresses behind proxies ([`client_addr`]), metrics, errors, the bytes held per client ([`queued`]), the fan-out
//! backlog ([`backlog`]) and events encoded once per wire protocol ([`outbound`]). Depends on
//! `hub-wire` only.

pub mod auth;
pub mod auth_budget;
pub mod backlog;
pub mod client_addr;
pub mod error;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod outbound;
pub mod queued;
pub mod random;
