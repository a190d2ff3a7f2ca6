"""Archive jobs: a file restored as segments that can be resumed, run in parallel and spread over a Ray cluster.

``Job`` (plan / run / resume / status) is the library API; ``restore_range`` restores a time or frame
range; ``restore_many`` restores a folder, glob or list of files. The CLI's ``job`` command calls these.

Modules: plan (keyframe segments), segment (one segment → one piece), join (pieces → output by
remuxing), manifest (the job directory's state), job (the API), local and ray_runner (where tasks
run), batch (many files), cli (the ``job`` command).
"""

from .batch import FileOutcome, restore_many
from .job import Job, JobOptions, JobReport, JobStatus, default_workers, restore_range

__all__ = ["FileOutcome", "Job", "JobOptions", "JobReport", "JobStatus", "default_workers", "restore_many",
           "restore_range"]
