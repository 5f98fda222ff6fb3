//! A slow client is not kicked for a fast model (`docs/jobs.md#streams-to-the-browser`).
//!
//! While the client is behind (the host's socket takes nothing, [`ClientIo::behind`], or a
//! resumable session's events wait for its proofs), an `ai-chunk` is not written as one more
//! frame: its `delta` is appended to what the session holds for its job. The held chunks go
//! out as one frame per job, `{"jobId","seq","delta","from"}` (`seq` the last piece's,
//! `from` the first's, present only when the frame carries more than one chunk), when the
//! host's writer drained ([`ClientCore::drained`]), once the client proved what it read, or
//! before anything else is written to the session (so their order with `ai-result`,
//! `job-state` and every other event is kept).
//!
//! What is held counts against the session's queue bound: per job its text plus
//! [`ENTRY_BYTES`] and its id, so a job's thousands of small chunks cost their text, not
//! their frames.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::*;

/// Bytes a held job counts against the queue bound besides its text and id (the merged
/// frame's envelope and the entry).
pub(crate) const ENTRY_BYTES: usize = 96;

/// The `data` of an `ai-chunk` the hub builds from `relay_job_chunk`.
#[derive(Deserialize)]
struct ChunkData<'a> {
    #[serde(rename = "jobId", borrow)]
    job: &'a RawValue,
    seq: u64,
    delta: String,
}

/// One job's held chunks.
struct Merged {
    /// The `jobId` as raw JSON (a string or a number).
    job: Box<str>,
    /// The first piece's seq.
    from: u64,
    /// The last piece's seq.
    seq: u64,
    delta: String,
    /// The only piece as it arrived (written unchanged when no other joined it).
    first: Option<Arc<Outbound>>,
    pieces: u64,
    /// Bytes counted in the session's queued bytes.
    counted: usize,
}

impl Merged {
    /// The event to write: the piece itself, or the merged frame.
    fn into_event(self) -> (Arc<Outbound>, u64) {
        if let Some(first) = self.first {
            return (first, 1);
        }
        let delta = serde_json::to_string(&self.delta).expect("a string serializes");
        let data = format!(
            r#"{{"jobId":{},"seq":{},"delta":{},"from":{}}}"#,
            self.job, self.seq, delta, self.from
        );
        let event = Outbound::envelope(OutKind::AiChunk, data.as_bytes());
        (Arc::new(event), self.pieces)
    }
}

/// The chunks a session holds while its client is behind, per job in order of arrival.
#[derive(Default)]
pub(super) struct HeldChunks {
    jobs: Vec<Merged>,
}

/// What [`HeldChunks::add`] did.
enum Added {
    /// Held, with this many more bytes.
    Held(usize),
    /// Not consecutive to the job's held chunks (or not a chunk the hub built): write what is
    /// held, then this one.
    Refused,
}

impl HeldChunks {
    fn add(&mut self, event: &Arc<Outbound>) -> Added {
        let Ok(data) = serde_json::from_slice::<ChunkData<'_>>(event.data()) else {
            return Added::Refused;
        };
        let job = data.job.get();
        match self.jobs.iter_mut().find(|m| &*m.job == job) {
            Some(m) if data.seq == m.seq + 1 => {
                m.first = None;
                m.delta.push_str(&data.delta);
                m.seq = data.seq;
                m.pieces += 1;
                m.counted += data.delta.len();
                Added::Held(data.delta.len())
            }
            Some(_) => Added::Refused,
            None => {
                let counted = ENTRY_BYTES + job.len() + data.delta.len();
                self.jobs.push(Merged {
                    job: job.into(),
                    from: data.seq,
                    seq: data.seq,
                    delta: data.delta,
                    first: Some(event.clone()),
                    pieces: 1,
                    counted,
                });
                Added::Held(counted)
            }
        }
    }
}

impl ClientCore {
    /// True when chunks are held for the client.
    pub fn holds_chunks(&self) -> bool {
        self.chunks.is_some()
    }

    /// True when an `ai-chunk` written now is held: the client is behind.
    fn holding(&self, io: &impl ClientIo) -> bool {
        io.behind() || self.resume.as_ref().is_some_and(|r| r.paced_waiting())
    }

    /// Writes an `ai-chunk` event the client wants: held while the client is behind.
    pub(super) fn write_chunk(
        &mut self,
        event: Arc<Outbound>,
        scope: Scope,
        counted: usize,
        io: &mut impl ClientIo,
    ) {
        if !self.holding(io) {
            // The client keeps up again: what is held goes first.
            self.release_chunks(io);
            return self.write_event(event, scope, None, counted, io);
        }
        let held = self.chunks.get_or_insert_default();
        match held.add(&event) {
            Added::Held(bytes) => {
                if !self.queued.try_add(bytes) {
                    io.kick(KickReason::QueueFull);
                }
            }
            Added::Refused => {
                self.release_chunks(io);
                if self.holding(io) {
                    if let Added::Held(bytes) = self.chunks.get_or_insert_default().add(&event) {
                        if !self.queued.try_add(bytes) {
                            io.kick(KickReason::QueueFull);
                        }
                        return;
                    }
                }
                self.write_event(event, scope, None, counted, io);
            }
        }
    }

    /// Writes the held chunks, one frame per job, in order of arrival (before anything else
    /// is written to the session).
    pub(super) fn release_chunks(&mut self, io: &mut impl ClientIo) {
        let Some(held) = self.chunks.take() else {
            return;
        };
        for merged in held.jobs {
            self.queued.sub(merged.counted);
            let (event, pieces) = merged.into_event();
            if pieces > 1 {
                self.env.metrics.ai_chunks_merged.inc_by(pieces);
            }
            let counted = event.native().len() + crate::common::queued::DELIVERY_OVERHEAD;
            self.write_event(event, Scope::User, None, counted, io);
        }
    }

    /// The host's writer drained (its socket took everything, or a long-polling client came
    /// for its packets): the held chunks go out, unless a resumable session's events still
    /// wait for proofs (then they go once those went).
    pub fn drained(&mut self, io: &mut impl ClientIo) {
        if self.chunks.is_none() || self.resume.as_ref().is_some_and(|r| r.paced_waiting()) {
            return;
        }
        self.release_chunks(io);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chunk(job: Value, seq: u64, delta: &str) -> Arc<Outbound> {
        let data = json!({"jobId": job, "seq": seq, "delta": delta}).to_string();
        Arc::new(Outbound::envelope(OutKind::AiChunk, data.as_bytes()))
    }

    fn data(event: &Outbound) -> Value {
        serde_json::from_slice(event.data()).unwrap()
    }

    #[test]
    fn consecutive_chunks_of_a_job_merge_with_from_and_the_last_seq() {
        let mut held = HeldChunks::default();
        let mut counted = 0;
        for (seq, delta) in [(3, "a\""), (4, "b"), (5, "cé")] {
            let Added::Held(n) = held.add(&chunk(json!("j"), seq, delta)) else {
                panic!("held");
            };
            counted += n;
        }
        assert!(matches!(held.add(&chunk(json!(7), 1, "x")), Added::Held(_)));
        assert!(
            matches!(held.add(&chunk(json!("j"), 7, "gap")), Added::Refused),
            "a gap in seq is never merged over"
        );
        let mut jobs = held.jobs.into_iter();
        let merged = jobs.next().unwrap();
        assert_eq!(merged.counted, counted);
        assert_eq!(counted, ENTRY_BYTES + "\"j\"".len() + "a\"bcé".len());
        let (event, pieces) = merged.into_event();
        assert_eq!(pieces, 3);
        assert_eq!(
            data(&event),
            json!({"jobId": "j", "seq": 5, "delta": "a\"bcé", "from": 3})
        );
        let native: Value = serde_json::from_slice(&event.native()[2..]).unwrap();
        assert_eq!(native["type"], "ai-chunk");
        let (alone, pieces) = jobs.next().unwrap().into_event();
        assert_eq!(pieces, 1);
        assert_eq!(
            data(&alone),
            json!({"jobId": 7, "seq": 1, "delta": "x"}),
            "a chunk held alone goes as it came (numeric job ids too)"
        );
    }

    #[test]
    fn an_event_that_is_not_a_hub_chunk_is_not_held() {
        let mut held = HeldChunks::default();
        let odd = Outbound::envelope(OutKind::AiChunk, br#"{"jobId":"j","seq":"1"}"#);
        assert!(matches!(held.add(&Arc::new(odd)), Added::Refused));
        assert!(held.jobs.is_empty());
    }
}
