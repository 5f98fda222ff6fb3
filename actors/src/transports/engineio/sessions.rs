//! An endpoint's sessions by id, with what they all share: generic over a session's address,
//! so that the session actor (which forgets itself when it stops) and the endpoint (which
//! starts sessions and finds them by id) both use it without using each other.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use dashmap::DashMap;

use super::{
    config::{EngineConfig, EngineEnv},
    metrics::EngineMetrics,
};

/// An endpoint's sessions by id, shared by every worker thread and every session.
pub struct Sessions<A> {
    env: Arc<EngineEnv>,
    by_id: DashMap<Arc<str>, A>,
    closing: AtomicBool,
}

impl<A: Clone> Sessions<A> {
    /// An endpoint with no sessions.
    pub fn new(config: EngineConfig, metrics: Arc<EngineMetrics>) -> Arc<Self> {
        Arc::new(Sessions {
            env: Arc::new(EngineEnv { config, metrics }),
            by_id: DashMap::new(),
            closing: AtomicBool::new(false),
        })
    }

    /// What every session shares.
    pub fn env(&self) -> &Arc<EngineEnv> {
        &self.env
    }

    pub(crate) fn insert(&self, sid: Arc<str>, session: A) {
        self.by_id.insert(sid, session);
    }

    pub(crate) fn forget(&self, sid: &str) {
        self.by_id.remove(sid);
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no session is open.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// A session by id.
    pub fn session(&self, sid: &str) -> Option<A> {
        self.by_id.get(sid).map(|s| s.value().clone())
    }

    /// True when `sid` names an open session.
    pub fn contains(&self, sid: &str) -> bool {
        self.by_id.contains_key(sid)
    }

    /// Every open session.
    pub fn each(&self, mut f: impl FnMut(&A)) {
        for session in self.by_id.iter() {
            f(session.value());
        }
    }

    /// Refuses new sessions from now on (shutdown).
    pub fn refuse_new(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// True once the endpoint refuses new sessions.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }
}
