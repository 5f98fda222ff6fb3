//! The jobs' part of a session's resume state ([`crate::features::session_resume`]): a job's
//! chunks (`ai-chunk`, numbered by `seq` from 1 per job) are a stream like a room's history,
//! and a job's cursor is the last chunk seq the session sent. Each chunk sent takes a ring
//! entry (its offset, its job, the job's cursor before it), so an offset a client comes back
//! with gives, per job, the last chunk it read; the resume reads the chunks after that from
//! Redis (`relay_job_chunks`) and sends them before the live ones.
//!
//! A session follows at most [`JOBS_MAX`] jobs, the ones that streamed to it most recently: a
//! job that streamed before those is forgotten, its ring entries with it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Most jobs a session keeps a cursor for.
pub const JOBS_MAX: usize = 16;

/// One chunk sent (an `ai-chunk` frame; a merged frame counts as one, its `seq` the last).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkSent {
    /// Its offset.
    pub seq: u64,
    /// Its job.
    pub job: String,
    /// The job's cursor before it (0: no chunk of the job sent before).
    pub prev: u64,
}

/// The jobs a session streamed, with their cursors, and the ring entries of their chunks.
#[derive(Debug, Default)]
pub struct JobCursors {
    /// Each job with the last chunk seq sent, least recently streamed first.
    seen: Vec<(String, u64)>,
    ring: VecDeque<ChunkSent>,
}

impl JobCursors {
    /// Cursors continuing a resumed session (no ring entries yet).
    pub fn resumed(seen: Vec<(String, u64)>) -> JobCursors {
        JobCursors {
            seen,
            ring: VecDeque::new(),
        }
    }

    /// Ring entries held.
    pub fn ring_len(&self) -> usize {
        self.ring.len()
    }

    /// The offset of the oldest ring entry.
    pub fn oldest(&self) -> Option<u64> {
        self.ring.front().map(|e| e.seq)
    }

    /// Drops the oldest ring entry; its offset.
    pub fn drop_oldest(&mut self) -> Option<u64> {
        self.ring.pop_front().map(|e| e.seq)
    }

    /// Chunk `seq` of `job` went out at `offset`: the job becomes the most recent one (the
    /// least recent beyond [`JOBS_MAX`] is forgotten) and its cursor moves (never back).
    pub fn sent(&mut self, offset: u64, job: &str, seq: u64) {
        let prev = match self.seen.iter().position(|(j, _)| j == job) {
            Some(i) => self.seen.remove(i).1,
            None => 0,
        };
        self.seen.push((job.to_owned(), prev.max(seq)));
        if self.seen.len() > JOBS_MAX {
            let (gone, _) = self.seen.remove(0);
            self.ring.retain(|e| e.job != gone);
        }
        self.ring.push_back(ChunkSent {
            seq: offset,
            job: job.to_owned(),
            prev,
        });
    }

    /// The client proved it read everything up to `offset`.
    pub fn proved(&mut self, offset: u64) {
        while self.ring.front().is_some_and(|e| e.seq <= offset) {
            self.ring.pop_front();
        }
        if self.ring.is_empty() {
            self.ring = VecDeque::new();
        }
    }

    /// Forgets the ring entries (a session that starts over); the cursors stay.
    pub fn clear_ring(&mut self) {
        self.ring = VecDeque::new();
    }

    /// The cursors and ring entries, for a record.
    pub fn record(&self) -> (Vec<(String, u64)>, Vec<ChunkSent>) {
        (self.seen.clone(), self.ring.iter().cloned().collect())
    }
}

/// Per job, the last chunk seq a client that read up to `offset` saw: the cursor before the
/// job's first ring entry after `offset`, or its cursor after everything sent.
pub fn plan(seen: &[(String, u64)], ring: &[ChunkSent], offset: u64) -> Vec<(String, u64)> {
    seen.iter()
        .map(|(job, cursor)| {
            let before = ring
                .iter()
                .find(|e| e.seq > offset && e.job == *job)
                .map_or(*cursor, |e| e.prev);
            (job.clone(), before)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_gives_each_job_the_last_chunk_read() {
        let mut c = JobCursors::default();
        c.sent(1, "a", 1);
        c.sent(2, "b", 1);
        c.sent(4, "a", 2);
        c.sent(5, "a", 4);
        let (seen, ring) = c.record();
        assert_eq!(seen, vec![("b".into(), 1), ("a".into(), 4)]);
        let at = |o| plan(&seen, &ring, o);
        assert_eq!(at(0), vec![("b".into(), 0), ("a".into(), 0)]);
        assert_eq!(at(1), vec![("b".into(), 0), ("a".into(), 1)]);
        assert_eq!(at(3), vec![("b".into(), 1), ("a".into(), 1)]);
        assert_eq!(at(4), vec![("b".into(), 1), ("a".into(), 2)]);
        assert_eq!(at(5), vec![("b".into(), 1), ("a".into(), 4)]);
        c.proved(4);
        assert_eq!(c.ring_len(), 1);
        assert_eq!(c.oldest(), Some(5));
    }

    #[test]
    fn at_most_jobs_max_jobs_are_followed() {
        let mut c = JobCursors::default();
        for i in 0..=JOBS_MAX as u64 {
            c.sent(i + 1, &format!("j{i}"), 3);
        }
        let (seen, ring) = c.record();
        assert_eq!(seen.len(), JOBS_MAX);
        assert_eq!(seen[0].0, "j1", "the least recent job is forgotten");
        assert!(ring.iter().all(|e| e.job != "j0"), "with its ring entries");
        c.sent(99, "j1", 2);
        assert_eq!(c.record().0.last(), Some(&("j1".into(), 3)), "never back");
    }
}
