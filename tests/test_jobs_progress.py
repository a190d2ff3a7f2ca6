"""The job ETA (jobs.progress.Estimate) on a fake clock: start-up, resumed pieces, bursts, files, workers' tail.

Each test plays a job whose true finishing time is known and checks the estimate against it.
"""

from __future__ import annotations

import io

import pytest

from streamrestore.jobs.progress import Estimate, JobProgress, finish_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def play(estimate: Estimate, clock: Clock, frames: int, fps: float, batch: int = 1) -> None:
    for _ in range(frames // batch):
        clock.now += batch / fps
        estimate.frames(batch)


def test_startup_and_first_batch_are_not_in_the_rate() -> None:
    # 20 s of start-up (workers, weights) and a first batch of 4, then 10 fps: a total-time average says
    # 0.2 fps at the first report, 50× too slow; the estimate waits for a second report and is exact.
    clock = Clock()
    estimate = Estimate(200, clock)
    estimate.begin_file(200)
    clock.now = 20.0
    estimate.frames(4)
    assert estimate.eta() is None  # one report: no rate yet ("?"), never a guess from start-up
    play(estimate, clock, 16, fps=10, batch=4)
    assert estimate.rate() == pytest.approx(10)
    left = 180 / 10
    assert estimate.eta() == pytest.approx(left + 1.0 + 0.005 * 200)  # plus the join guessed before any join


def test_resumed_pieces_are_not_fresh_work() -> None:
    # 100 of 200 frames kept from a killed run: the rate counts only frames restored now.
    clock = Clock()
    estimate = Estimate(200 - 100, clock)
    estimate.begin_file(100, {5: 50, 6: 50})
    clock.now = 3.0
    estimate.frames(2)
    play(estimate, clock, 48, fps=4, batch=2)
    assert estimate.rate() == pytest.approx(4)
    # Segment 6 has yet to start: it is charged this file's start-up (less the first batch's frames, which are
    # frame work) until a gap between two segments is measured.
    assert estimate.eta() == pytest.approx(50 / 4 + (3.0 - 2 / 4) + 1.0 + 0.5)


def test_bursts_from_workers_give_a_steady_rate() -> None:
    # Two workers deliver 24 frames every 2 s each, half a period apart: 24 fps overall.
    clock = Clock()
    estimate = Estimate(960, clock)
    estimate.begin_file(960)
    clock.now = 5.0
    estimate.frames(24)
    etas = []
    for _ in range(30):
        clock.now += 1.0
        estimate.frames(24)
        etas.append(estimate.eta() + clock.now)  # the predicted finishing time, should not move
    assert estimate.rate() == pytest.approx(24)
    finish = clock.now + (960 - estimate.restored) / 24 + 1.0 + 0.005 * 960
    assert max(etas) - min(etas) < 1e-6
    assert etas[-1] == pytest.approx(finish)


def test_each_segment_s_own_start_up_is_counted() -> None:
    # One worker, 6 segments of 12 frames: each segment spends 2 s opening, seeking and filling the encoder,
    # then 6 fps. The frame reports alone say 6 fps; a segment really takes 4 s.
    clock = Clock()
    estimate = Estimate(72, clock)
    estimate.begin_file(72, {i: 12 for i in range(6)})
    true_end = 6 * (2.0 - 2 / 6 + 2.0) + 1.0 + 0.005 * 72
    checks = []
    for index in range(6):
        clock.now += 2.0 - 2 / 6  # the segment's start-up, then its first 2 frames
        for _ in range(6):
            clock.now += 2 / 6
            estimate.frames(2)
            if estimate.eta() is not None:
                checks.append((index, clock.now + estimate.eta()))
        estimate.piece(index, 12)
    # The file's start-up (here the same 2 s) stands in for a segment's until a gap between segments is measured.
    assert all(end == pytest.approx(true_end) for _, end in checks)


def test_the_rate_follows_a_change_of_speed() -> None:
    # Another process takes half the machine halfway: the recent half of the work decides.
    clock = Clock()
    estimate = Estimate(400, clock)
    estimate.begin_file(400)
    clock.now = 1.0
    estimate.frames(1)
    play(estimate, clock, 100, fps=10)
    play(estimate, clock, 100, fps=5)
    assert estimate.rate() == pytest.approx(5, rel=0.02)


def test_files_still_to_come_add_their_start_up_and_join() -> None:
    # Three files of 100 frames: 6 s start-up each, 10 fps, a 2 s join. After the first file is
    # done the estimate knows both fixed costs and predicts the true end exactly.
    clock = Clock()
    estimate = Estimate(300, clock)
    estimate.plan_files([100, 100, 100])
    true_end = 3 * (6 + 90 / 10 + 2)
    checks = []
    for _ in range(3):
        estimate.begin_file(100)
        clock.now += 6
        estimate.frames(10)  # the first batch, made during start-up
        for _ in range(9):
            clock.now += 1
            estimate.frames(10)
            checks.append((clock.now, estimate.eta()))
        clock.now += 2
        estimate.end_file()
    assert clock.now == pytest.approx(true_end)
    # From the second file on, exact (the first file's join is a guess until one is measured).
    for at, eta in checks[9:]:
        assert at + eta == pytest.approx(true_end)
    at, eta = checks[0]
    assert abs(at + eta - true_end) / (true_end - at) < 0.3


def test_a_file_that_fails_leaves_the_total() -> None:
    clock = Clock()
    estimate = Estimate(300, clock)
    estimate.plan_files([100, 100, 100])
    estimate.end_file(ok=False)  # not a media file: fails before it begins
    assert estimate.total == 200
    estimate.begin_file(100)
    clock.now += 1
    estimate.frames(30)
    estimate.end_file(ok=False)  # fails a third of the way
    assert estimate.total == 130
    assert estimate.begin_file(60) == -40  # planned 100, restores 60 (pieces kept): the total follows
    assert estimate.total == 90


def test_workers_tail_is_list_scheduled() -> None:
    # 2 workers at 1 frame/s each, segments of 10: 3 segments take 20 s, not 15 (half the time one is idle).
    assert finish_seconds([10, 10, 10], 0, 2, 1.0) == pytest.approx(20)
    assert finish_seconds([10, 10, 10, 10], 0, 2, 1.0) == pytest.approx(20)
    assert finish_seconds([10, 10, 10], 10, 2, 1.0) == pytest.approx(15)  # in-flight ones half done
    assert finish_seconds([10], 4, 2, 1.0) == pytest.approx(6)  # fewer segments than workers

    clock = Clock()
    estimate = Estimate(30, clock)
    estimate.begin_file(30, {0: 10, 1: 10, 2: 10}, workers=2)
    clock.now = 4.0
    estimate.frames(2)  # first frames of both workers
    play(estimate, clock, 18, fps=2, batch=2)  # 2 fps overall, until both in-flight segments are done
    estimate.piece(0, 10)
    estimate.piece(1, 10)
    # Segment 2 alone, on one worker at 1 frame/s: 10 s (+ the join), although 10 frames at 2 fps is 5 s.
    assert estimate.eta() == pytest.approx(10 + 1.0 + 0.15)


def test_frames_in_flight_are_shared_by_how_long_each_segment_has_run() -> None:
    # 2 workers at 1 frame/s each, segments of 5, 10, 10, 10 frames: worker A takes segment 2 at 5 s,
    # worker B segment 3 at 10 s; the job ends at 20 s. At 12 s the 9 frames in flight are A's 7 and B's 2.
    clock = Clock()
    estimate = Estimate(35, clock)
    estimate.begin_file(35, {0: 5, 1: 10, 2: 10, 3: 10}, workers=2)
    finished = {5: (0, 5), 10: (1, 10), 15: (2, 10), 20: (3, 10)}
    join = 1.0 + 0.005 * 35
    for second in range(1, 21):
        clock.now = second
        estimate.frames(2 if second <= 15 else 1)  # from 15 s on, A has nothing left to take
        if second in finished:
            estimate.piece(*finished[second])
        if second >= 2:
            # Within 0.4 s: the first two segments count as taken at the first report (1 s), not at 0 s.
            assert clock.now + estimate.eta() == pytest.approx(20 + join, abs=0.4), second


def test_display_draws_eta_and_counts() -> None:
    clock = Clock()
    stream = io.StringIO()
    progress = JobProgress(120, done=20, quiet=False, stream=stream, clock=clock)

    class Plan:  # what begin_file reads from a Job
        segments = [type("S", (), {"index": i, "count": 20})() for i in range(6)]
        pieces = {0: {}}

    class FakeJob:
        options = type("O", (), {"workers": 1, "ray": None, "run": type("R", (), {"device": "cpu"})()})()

        def plan(self):
            return Plan

    progress.begin_file(FakeJob())
    clock.now = 2
    progress.frames(10)
    clock.now = 3
    progress.frames(10)
    progress.piece(type("P", (), {"index": 1, "frames": 20})())
    progress.close()
    drawn = stream.getvalue().replace("\r", "\n").splitlines()
    assert any("2/6 segments" in line and "40/120" in line and "10.00 fps" in line for line in drawn), drawn
