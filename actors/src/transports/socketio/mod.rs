//! Socket.IO v5 on top of [`crate::transports::engineio`]: what `socket.io-client` 4.x speaks.
//!
//! # Layout
//! - [`packet`]: the packet codec (strict decoding, encoders for every packet the server
//!   sends, `event_raw` for arguments serialized once for many connections).
//! - [`socket`]: [`SocketIo`], the Engine.IO handler that runs namespaces, events, acks and
//!   binary attachments for an application ([`SioApp`], acting through [`SioIo`]).
//! - [`hub`]: the hub as a Socket.IO application: a connection is a hub session hosting the
//!   same [`crate::hub::client::ClientCore`] as a native `/ws` session.
//!
//! # Using it
//! ```text
//! let endpoint = Endpoint::<SocketIo<MyApp>>::new(engine_config, metrics);   // shared
//! let worker = endpoint.worker(move |handshake| SocketIo::new(MyApp::new(..), sio_config.clone()));
//! // mount `worker` (an EngineService) at /socket.io/ in the HTTP layer
//! ```

pub mod hub;
pub use hub_wire::socketio::packet;
pub mod socket;

pub use socket::{
    AckReply, DisconnectReason, EmitError, Event, SioApp, SioConfig, SioIo, SioState, SocketIo,
};
