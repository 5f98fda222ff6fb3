//! Socket.IO v5 on top of [`crate::engineio`]: what `socket.io-client` 4.x speaks.
//!
//! # Layout
//! - [`packet`]: the packet codec (strict decoding, encoders for every packet the server
//!   sends, `event_raw` for arguments serialized once for many connections).
//! - [`socket`]: [`SocketIo`], the Engine.IO handler that runs namespaces, events, acks and
//!   binary attachments for an application ([`SioApp`], acting through [`SioIo`]).
//!
//! # Using it
//! ```text
//! let endpoint = Endpoint::<SocketIo<MyApp>>::new(engine_config, metrics);   // shared
//! let worker = endpoint.worker(move |handshake| SocketIo::new(MyApp::new(..), sio_config.clone()));
//! // mount `worker` (an EngineService) at /socket.io/ in the HTTP layer
//! ```

pub mod hub;
pub mod packet;
pub mod socket;

pub use socket::{
    AckReply, DisconnectReason, EmitError, Event, SioApp, SioConfig, SioIo, SioState, SocketIo,
};

/// An application that serves no namespace: every `CONNECT` is refused with
/// `Invalid namespace`, and the connection closes after the connect timeout. What an endpoint
/// serves until an application is mounted on it.
pub struct NoNamespaces;

impl SioApp for NoNamespaces {
    fn serves(&self, _nsp: &str) -> bool {
        false
    }

    fn on_connect(&mut self, nsp: &str, _auth: serde_json::Value, io: &mut SioIo<'_, Self>) {
        let _ = io.refuse(nsp, "Invalid namespace", None);
    }

    fn on_event(&mut self, _nsp: &str, _event: Event, _io: &mut SioIo<'_, Self>) {}
}
