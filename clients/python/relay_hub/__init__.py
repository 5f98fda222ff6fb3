"""relay-hub AI jobs from Python: enqueue, and run workers that stream their answers.

Everything goes through the job queue's Redis functions (``docs/jobs.md``, "The worker
protocol"), which every relay-hub instance loads into Redis at startup.
"""

from .queue import Queue, JobCancelled, LeaseLost
from .worker import Job, JobError, Worker

__all__ = ["Queue", "Worker", "Job", "JobError", "JobCancelled", "LeaseLost"]
