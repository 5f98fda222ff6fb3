//! The queue's Redis functions (library `relayhub_jobs`, `jobs.lua`): every operation that
//! changes a job is one function call, so the stream, the consumer group, the state hash,
//! the chunk stream, the counters and the publishes change together or not at all. Each
//! function takes one key, the queue prefix, and builds every key it touches from it, so on
//! Redis Cluster the prefix carries a hash tag (`{jobs}`, [`crate::queue::CLUSTER_PREFIX`])
//! that keeps the whole queue, and so each job's keys, in one slot. The calls, arguments and
//! replies are the worker protocol of `docs/jobs.md`.

use crate::stats::LATENCY_BUCKETS_MS;

/// The library's name (`FUNCTION LIST LIBRARYNAME relayhub_jobs`).
pub const LIBRARY: &str = "relayhub_jobs";

/// The functions, as `FCALL` names them.
pub mod function {
    /// Enqueue, idempotent by id.
    pub const ENQUEUE: &str = "relay_job_enqueue";
    /// A worker advertises its job types.
    pub const ADVERTISE: &str = "relay_job_advertise";
    /// Claim the highest priority runnable job with a lease.
    pub const CLAIM: &str = "relay_job_claim";
    /// Renew a lease.
    pub const RENEW: &str = "relay_job_renew";
    /// Ask whether leases still hold (or were cancelled).
    pub const CHECK: &str = "relay_job_check";
    /// Emit a chunk of a streamed result.
    pub const CHUNK: &str = "relay_job_chunk";
    /// Record the result.
    pub const COMPLETE: &str = "relay_job_complete";
    /// Record a failed attempt.
    pub const FAIL: &str = "relay_job_fail";
    /// Give a job back without counting the attempt.
    pub const RELEASE: &str = "relay_job_release";
    /// Cancel a job.
    pub const CANCEL: &str = "relay_job_cancel";
    /// Remove an idle consumer from the groups.
    pub const RETIRE: &str = "relay_job_retire";
    /// The queue's figures.
    pub const STATS: &str = "relay_job_stats";
    /// The kept chunks of a job.
    pub const CHUNKS: &str = "relay_job_chunks";
    /// Every function, in the order `docs/jobs.md` lists them.
    pub const ALL: [&str; 13] = [
        ENQUEUE, ADVERTISE, CLAIM, RENEW, CHECK, CHUNK, COMPLETE, FAIL, RELEASE, CANCEL, RETIRE,
        STATS, CHUNKS,
    ];
}

/// The library source for `FUNCTION LOAD REPLACE`.
pub fn library() -> String {
    let buckets: Vec<String> = LATENCY_BUCKETS_MS.iter().map(u64::to_string).collect();
    include_str!("jobs.lua").replace("__LATENCY_BUCKETS__", &buckets.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_registers_every_function_with_the_constants_of_the_crate() {
        let lib = library();
        assert!(lib.starts_with(&format!("#!lua name={LIBRARY}\n")));
        for f in function::ALL {
            assert!(lib.contains(&format!("'{f}'")), "{f} is not registered");
        }
        assert!(lib.contains("local LATENCY_BUCKETS = {5, 10, 25,"));
        assert!(lib.contains(&format!("local DEAD_MAX = {}\n", crate::DEAD_LETTER_MAX)));
        assert!(lib.contains(&format!(
            "local RESULTS = '{}'\n",
            hub_wire::protocol::AI_RESULTS
        )));
    }

    #[test]
    fn the_worker_protocol_in_the_docs_lists_every_function() {
        let docs = include_str!("../../docs/jobs.md");
        for f in function::ALL {
            assert!(
                docs.contains(&format!("| `{f}` |")),
                "docs/jobs.md lacks {f}"
            );
        }
    }
}
