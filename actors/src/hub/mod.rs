//! The actor system's core: the [`registry`] shards that hold sessions and fan events out,
//! the Redis [`subscriber`] that feeds them, and the protocol-independent session core
//! ([`client`]) that every transport hosts. It addresses sessions only through
//! [`crate::messages::SessionAddr`], so it knows no transport.

pub mod client;
pub mod registry;
pub mod subscriber;
