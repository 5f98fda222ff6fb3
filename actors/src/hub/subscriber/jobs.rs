//! Job events on `ai:jobs` and `ai:results`, and the chunks jobs recorded while those were not
//! subscribed ([`crate::features::job_gaps`]): read once the fixed channels are back, at most
//! [`GAP_READS`] reads at once with the channels' gaps, each tried up to [`GAP_READ_TRIES`]
//! times.

use super::*;
use crate::features::job_gaps::{result_job, JobEvent, JobEventKind};

impl Subscriber {
    /// Dispatches a live job event, unless its job's gap is being read (then it waits) or a
    /// gap fill already dispatched it.
    pub(super) fn dispatch_job(&mut self, event: JobEvent) -> u64 {
        let event = match self.job_gaps.as_mut() {
            Some(gaps) => gaps.live(event, &self.metrics),
            None => Some(event),
        };
        match event {
            Some(event) => {
                let kind = event.out_kind();
                self.dispatch_fixed(ChannelKey::User(event.user), &event.frame, kind)
            }
            None => 0,
        }
    }

    /// An `ai-result`: the end of its job's stream.
    pub(super) fn dispatch_result(
        &mut self,
        user: hub_wire::protocol::UserId,
        frame: Vec<u8>,
    ) -> u64 {
        let job = match self.job_gaps {
            Some(_) => result_job(&frame),
            None => None,
        };
        match job {
            Some(job) => self.dispatch_job(JobEvent {
                job,
                user,
                frame,
                kind: JobEventKind::Result,
            }),
            None => self.dispatch_fixed(ChannelKey::User(user), &frame, OutKind::AiResult),
        }
    }

    /// The fixed channels are subscribed: queues the gap reads of the jobs whose events are
    /// held since they were lost ([`Self::read_gaps`] starts them).
    pub(super) fn start_job_gaps(&mut self) {
        if let Some(gaps) = self.job_gaps.as_mut() {
            let jobs = gaps.start();
            self.job_queue.extend(jobs.into_iter().map(|job| (job, 0)));
        }
    }

    /// Forgets the jobs idle for [`crate::features::job_gaps::JOB_IDLE`].
    pub(super) fn forget_idle_jobs(&mut self) {
        if let Some(gaps) = self.job_gaps.as_mut() {
            gaps.forget_idle(Instant::now());
        }
    }

    /// Starts queued job gap reads while fewer than [`GAP_READS`] gap reads run.
    pub(super) fn read_job_gaps(&mut self, ctx: &mut Context<Self>) {
        while self.gap_reads < GAP_READS {
            let Some((job, tries)) = self.job_queue.pop_front() else {
                return;
            };
            let Some(read) = self.job_gaps.as_ref().and_then(|g| g.read(&job)) else {
                continue;
            };
            self.spawn_gap_read(
                ctx,
                job,
                tries,
                read,
                |job| format!("chunks of job {job}"),
                |act, job, tries| act.job_queue.push_back((job, tries)),
                |act, job, res| {
                    let events = match act.job_gaps.as_mut() {
                        Some(gaps) => gaps.finish(&job, res, &act.metrics),
                        None => Vec::new(),
                    };
                    for event in events {
                        let kind = event.out_kind();
                        act.dispatch_fixed(ChannelKey::User(event.user), &event.frame, kind);
                    }
                    if act.fixed_subscribed {
                        // A job whose read overlapped another loss is read again.
                        act.start_job_gaps();
                    }
                },
            );
        }
    }
}
