//! Socket.IO v5 packets.

pub mod packet;
