"""A job on a real local Ray cluster (raylet and workers on 127.0.0.1): a worker killed mid-segment is
retried and the output equals a one-worker local run of the same plan.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from support.media import AudioTrack, make_clip, packets, panned_frames, video_frames
from streamrestore.jobs import Job, JobOptions
from streamrestore.restore import OutputSettings

pytestmark = pytest.mark.slow  # a real local Ray cluster (about 80 s)

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'streamrestore[ray]'")

PTS = [0, 40, 80, 200, 240, 250, 400, 433, 466, 700, 740, 1000, 1040, 1080, 1200, 1240]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_job_survives_a_killed_worker(cluster, tmp_path):
    src = tmp_path / "clip.mkv"
    make_clip(src, panned_frames(len(PTS), 96, 64), pts=PTS, time_base=Fraction(1, 1000),
              options={"preset": "medium", "bframes": "3", "g": "4"}, audio=[AudioTrack("aac", seconds=1.3)])
    # A temporal chain (slow enough that a segment is still running when its worker is killed).
    chain = "tdenoise:search=9:template=5"
    options = dict(segment_seconds=0.3, output=OutputSettings(preset="veryfast"))
    local = tmp_path / "local.mkv"
    Job(str(src), str(local), chain, JobOptions(workers=1, **options)).run()

    job_dir = tmp_path / "job"
    killed: list[int] = []

    def kill_one_worker() -> None:
        # A running task writes its piece as piece-N.nut.<worker pid>.partial: kill that process.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not killed:
            for partial in job_dir.glob("*.partial") if job_dir.exists() else []:
                pid = int(partial.name.split(".")[-2])
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed.append(pid)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    report = Job(str(src), str(tmp_path / "ray.mkv"), chain,
                 JobOptions(ray="auto", job_dir=str(job_dir), **options)).run()
    killer.join()

    assert killed, "a Ray worker process was killed mid-segment"
    assert report.frames == len(PTS) and report.segments >= 3
    out = tmp_path / "ray.mkv"
    ours = [f.to_ndarray() for f in video_frames(out)]
    reference = [f.to_ndarray() for f in video_frames(local)]
    assert all(np.array_equal(a, b) for a, b in zip(ours, reference, strict=True))
    assert [f.pts * f.time_base for f in video_frames(out)] == [f.pts * f.time_base for f in video_frames(src)]
    assert [p.sha256 for p in packets(out)[1]] == [p.sha256 for p in packets(src)[1]]
    assert not Path(job_dir).exists()
