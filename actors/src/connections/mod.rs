//! The two kinds of Redis connection an instance holds: the pub/sub connection, read only as
//! fast as the hub consumes it ([`pubsub`]), and the command connection ([`publisher`]); and
//! the one outside connection, to the identity provider's key set ([`jwks`]).
//! Depends on [`crate::common`].

pub mod jwks;
pub mod publisher;
pub mod pubsub;
