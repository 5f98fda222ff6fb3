//! The features built on Redis, each in its own module: chat [`history`], notification
//! [`inbox`]es, gap [`recovery`] after a pub/sub outage (with the history and the inboxes),
//! local [`presence`] and the cross-instance [`roster`], Socket.IO [`session_resume`], live [`analytics`] and the health
//! [`canary`]. They depend on [`crate::common`], [`crate::messages`] and
//! [`crate::connections`], never on the hub's actors or the transports.

pub mod analytics;
pub mod canary;
pub mod history;
pub mod inbox;
pub mod presence;
pub mod recovery;
pub mod roster;
pub mod session_resume;
