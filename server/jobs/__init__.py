"""Jobs of every kind: one lifecycle from the web (`service`) through the queue to the workers.

`service.JobService` is the web side; `queue` the queue's interface with an in-process
(`memory_queue`) and a Redis Streams (`redis_queue`) implementation; `records` the job
rows, which stay the truth; `kinds` checks each kind's request. The worker side is
`server.worker`, the only part that imports the engine.
"""

from server.jobs.queue import Lane, QueueFull, QueueUnavailable
from server.jobs.service import ImageGrant, JobService, WatchGrant, image_json, image_ref, job_json

__all__ = ["ImageGrant", "JobService", "Lane", "QueueFull", "QueueUnavailable", "WatchGrant", "image_json",
           "image_ref", "job_json"]
