//! The two kinds of Redis connection an instance holds: the pub/sub connection, read only as
//! fast as the hub consumes it ([`pubsub`]), and the command connection ([`publisher`]).
//! Depends on [`crate::common`].

pub mod publisher;
pub mod pubsub;
