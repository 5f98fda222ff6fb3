//! The ways in: the native WebSocket session ([`session`] over [`transport`], the socket
//! I/O), and Engine.IO ([`engineio`]) with Socket.IO on top ([`socketio`], whose
//! [`socketio::hub`] makes a Socket.IO connection a hub session). A transport hosts a
//! [`crate::hub::client::ClientCore`] and gives the core a
//! [`crate::messages::SessionAddr`]; adding one touches nothing below.

pub mod engineio;
pub mod heartbeat;
pub mod session;
pub mod socketio;
pub mod transport;
