"""Archive jobs: a file restored as segments that can be resumed, run in parallel and spread over a Ray cluster.

``Job`` (plan / run / resume / status) is the library API; ``restore_range`` restores a time or frame
range; ``restore_many`` restores a folder, glob or list of files. The CLI's ``job`` command calls these.
"""

from .job import Job, JobOptions, JobReport, JobStatus, default_workers, restore_range

__all__ = ["Job", "JobOptions", "JobReport", "JobStatus", "default_workers", "restore_range"]
