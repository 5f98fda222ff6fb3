//! Engine.IO v4 packets and the base64 of binary packets in long-polling payloads.

pub mod base64;
pub mod packet;
