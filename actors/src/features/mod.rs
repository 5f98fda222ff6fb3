//! The features built on Redis, each in its own module: chat [`history`], notification
//! [`inbox`]es, gap [`recovery`] after a pub/sub outage (with the history and the inboxes),
//! local [`presence`] and the cross-instance [`roster`], Socket.IO [`session_resume`] (with the jobs' [`job_cursors`]), live [`analytics`] and the health
//! [`canary`]; who may join and post in a room ([`room_access`], with the application's
//! [`room_hook`]), token [`revocation`], per-user limits ([`user_limits`]) and the caps on
//! resume records ([`resume_records`]). They depend on [`crate::common`], [`crate::messages`] and
//! [`crate::connections`], never on the hub's actors or the transports.

pub mod analytics;
pub mod canary;
pub mod history;
pub mod inbox;
pub mod job_cursors;
pub mod job_gaps;
pub mod presence;
pub mod recovery;
pub mod resume_records;
pub mod revocation;
pub mod room_access;
pub mod room_hook;
pub mod roster;
pub mod session_resume;
pub mod user_limits;
