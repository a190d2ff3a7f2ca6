"""One progress display for a whole job (frames, fps, ETA, files and segments done) and the estimate behind it.

The ETA is the steady-state rate times the work left, plus the fixed costs still to come. What a
plain frames-per-second average gets wrong, and what ``Estimate`` does instead:

- Start-up (indexing, worker processes importing torch, weights loading, the first batch) is not
  frame work: the rate's clock starts at the first frames a file delivers, and those frames,
  computed during start-up, are not counted in it.
- Pieces kept from an interrupted run are done but were not restored now: they are never in the rate.
- Between files (many-file jobs) come a join and the next file's start-up: the rate excludes those
  gaps, and each file still to do adds them back, as measured on the files already done.
- Workers report frames in bursts: the rate is taken over the last half of the frames restored,
  between two reports, never between a report and an arbitrary instant.
- With several workers the last segments run with some workers idle: the file's remaining time is
  a list-scheduling of its pending segments over the workers, not frames ÷ total rate.

``Estimate`` takes a clock, so it is tested deterministically; ``JobProgress`` draws it with tqdm.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

JOIN_SECONDS = 1.0
JOIN_SECONDS_PER_FRAME = 0.005
"""Guess at a join (remux of the pieces plus the source's other streams) before one was measured: about 2 s for
240 frames of 720p here (benchmarks/RESULTS.md); replaced by the measured seconds per frame once a file joined."""


@dataclass
class _File:
    frames: int
    """Frames this run restores in the file (kept pieces excluded)."""
    segments: dict[int, int]
    """Pending segment index -> frame count, in the order the runner takes them."""
    workers: int
    started: float
    first_frames: float | None = None
    """When the file's first frames were reported (None: still starting)."""
    last_frames: float | None = None
    restored: int = 0
    in_pieces: int = 0
    """Of ``restored``, the frames of pieces already finished."""
    pieces: list[tuple[float, int]] = field(default_factory=list)
    """(time, ``in_pieces``) at each piece finished in this run."""
    between_segments: bool = False
    """One worker: a piece just finished, the next segment has not reported yet."""
    begun: dict[int, float] = field(default_factory=dict)
    """Several workers: when each in-flight segment was taken (the file's first report, or the piece that freed
    its worker), so the frames in flight are shared out by how long each has been running."""


@dataclass
class Estimate:
    """ETA of a job from its frame reports. ``total``: frames this run restores (resumed pieces excluded).

    Work is measured in *spans*: from a file's (or, with one worker, a segment's) first report to its
    last. The time before a span (start-up: opening, seeking, the encoder's lookahead, and for a file
    worker processes and weights) is overhead, and the frames of a span's first report, made during it,
    are not in the rate. Overheads are measured and added back for the segments and files still to come.
    """

    total: int
    clock: Callable[[], float] = time.monotonic
    restored: int = 0
    _points: list[tuple[float, int]] = field(default_factory=list)
    """(work seconds, frames counted in the rate) at each report."""
    _work: float = 0.0
    """Work seconds of the spans closed."""
    _span_from: float | None = None
    _rate_frames: int = 0
    _file: _File | None = None
    _startups: list[tuple[float, int]] = field(default_factory=list)
    """(seconds, frames of the first report) from each file's start to its first report."""
    _gaps: list[tuple[float, int]] = field(default_factory=list)
    """(seconds, frames of the first report) between one worker's segments: last report -> next first report."""
    _joins: list[tuple[float, int]] = field(default_factory=list)
    _queued: list[int] = field(default_factory=list)
    """Frame counts of the files after the current one."""
    _segment_rate: float | None = None
    """Frames per second from piece to piece (several workers), once known."""
    joins: bool = True
    """Whether files end with a join (a job) or not (one stream)."""

    def plan_files(self, frames: Sequence[int]) -> None:
        """Frame counts of the files still to do, in order (a many-file job); the first becomes current on begin_file."""
        self._queued = list(frames)

    def begin_file(self, frames: int, segments: dict[int, int] | None = None, workers: int = 1) -> int:
        """A file starts: ``frames`` to restore in ``segments`` (index -> frames). Returns the change to ``total``
        (a file planned as N frames may restore fewer: kept pieces, a range)."""
        expected = self._queued.pop(0) if self._queued else frames
        self.total += frames - expected
        self._file = _File(frames, dict(segments or {0: frames}), max(1, workers), self.clock())
        return frames - expected

    def frames(self, count: int) -> None:
        now = self.clock()
        f = self._file
        if f is None:
            self.begin_file(self.total - self.restored)
            f = self._file
        assert f is not None
        self.restored += count
        f.restored += count
        if f.first_frames is None:
            f.begun = {index: now for index in list(f.segments)[: f.workers]}
        if f.first_frames is None or f.between_segments:
            # A span opens; its first frames were made during the start-up before it: done, not in the rate.
            if f.first_frames is None:
                f.first_frames = now
                self._startups.append((now - f.started, count))
            else:
                assert f.last_frames is not None
                self._gaps.append((now - f.last_frames, count))
            f.between_segments = False
            f.last_frames = self._span_from = now
            self._points.append((self._work, self._rate_frames))
            return
        f.last_frames = now
        self._rate_frames += count
        assert self._span_from is not None
        self._points.append((self._work + now - self._span_from, self._rate_frames))

    def piece(self, index: int, frames: int) -> None:
        f = self._file
        if f is None or f.segments.pop(index, None) is None:
            return
        f.in_pieces += frames
        now = self.clock()
        f.pieces.append((now, f.in_pieces))
        f.begun.pop(index, None)
        for waiting in list(f.segments)[: f.workers]:
            f.begun.setdefault(waiting, now)
        if f.workers == 1:
            self._close_span()
            f.between_segments = bool(f.segments)
        else:
            self._segment_rate = _piece_rate(f) or self._segment_rate

    def end_file(self, ok: bool = True) -> None:
        """The current file is finished (joined) or failed; a failed file's frames are no longer to come."""
        f, self._file = self._file, None
        if f is None:  # failed before it began (e.g. not a media file)
            if not ok and self._queued:
                self.total -= self._queued.pop(0)
            return
        self._close_span(f)
        if ok and f.last_frames is not None:
            self._joins.append((self.clock() - f.last_frames, f.frames))
        if not ok:
            self.total -= f.frames - f.restored

    def _close_span(self, f: _File | None = None) -> None:
        f = f or self._file
        if self._span_from is not None and f is not None and f.last_frames is not None:
            self._work += f.last_frames - self._span_from
        self._span_from = None

    def rate(self) -> float | None:
        """Frames per second of work in spans, over the last half of the frames counted in it."""
        if len(self._points) < 2:
            return None
        work, frames = self._points[-1]
        then = next(p for p in self._points if p[1] >= frames / 2)
        if then == self._points[-1]:
            then = self._points[-2]
        if work <= then[0] or frames <= then[1]:
            return None
        return (frames - then[1]) / (work - then[0])

    def eta(self) -> float | None:
        """Seconds until the job is done (joins included); None until a rate is known."""
        rate = self.rate()
        if rate is None or self.total <= 0:  # an input that announces no frame count: no estimate
            return None
        now = self.clock()
        seconds = 0.0
        f = self._file
        startup = _overhead(self._startups, rate)
        if f is not None:
            seconds += self._file_seconds(f, rate) + self._join(f.frames)
            if f.first_frames is None:
                seconds += max(0.0, startup - (now - f.started))
            elif f.last_frames is not None:
                seconds -= now - f.last_frames  # work went on since the last report
        steady = self._segment_rate or rate
        for frames in self._queued:
            seconds += startup + frames / steady + self._join(frames)
        return max(0.0, seconds)

    def _file_seconds(self, f: _File, rate: float) -> float:
        """The current file's work left: its pending segments list-scheduled over its workers.

        One worker: each segment not yet begun costs the gap measured between segments (before one was,
        the file's start-up, the same steps with the chain built). Several: pieces finish out of step, so
        the rate from piece to piece (gaps included) is used once a whole round of pieces is done."""
        pending = list(f.segments.values())
        if f.workers == 1:
            overhead = _overhead(self._gaps or self._startups[-1:], rate)
            if f.between_segments and pending:  # the next segment is starting: part of its gap has gone by
                assert f.last_frames is not None
                head = max(0.0, overhead - (self.clock() - f.last_frames)) + pending[0] / rate
                return head + sum(overhead + count / rate for count in pending[1:]) + (self.clock() - f.last_frames)
            return finish_seconds(pending, f.restored - f.in_pieces, 1, rate, overhead)
        measured = _piece_rate(f)
        per_worker = (measured or rate) / f.workers
        now = self.clock()
        running = [now - f.begun.get(index, now) for index in list(f.segments)[: f.workers]]
        return finish_seconds(pending, f.restored - f.in_pieces, f.workers, per_worker, running=running)

    def _join(self, frames: int) -> float:
        if not self.joins:
            return 0.0
        if self._joins:
            return sum(s for s, _ in self._joins) / max(1, sum(n for _, n in self._joins)) * frames
        return JOIN_SECONDS + JOIN_SECONDS_PER_FRAME * frames


def _overhead(gaps: Sequence[tuple[float, int]], rate: float) -> float:
    """Mean seconds of a gap not spent on the frames of the report that ended it."""
    if not gaps:
        return 0.0
    return max(0.0, sum(seconds - frames / rate for seconds, frames in gaps) / len(gaps))


def finish_seconds(pending: Sequence[int], done_in_flight: int, workers: int, per_worker: float,
                   overhead: float = 0.0, running: Sequence[float] | None = None) -> float:
    """Seconds until ``workers`` workers, each taking the next pending segment when free, finish them all.

    The first ``workers`` segments are in flight and share ``done_in_flight`` frames (the reports do not say
    which worker made which frame): in proportion to ``running`` (seconds each has been running), else evenly.
    Each segment not yet begun also costs ``overhead``.
    """
    if not pending:
        return 0.0
    flying = list(pending[:workers])
    weights = list(running or []) if running and sum(running) > 0 else [1.0] * len(flying)
    shares = [done_in_flight * w / sum(weights) for w in weights]
    busy = [max(0.0, count - share) / per_worker for count, share in zip(flying, shares)]
    busy += [0.0] * (workers - len(flying))
    for count in pending[workers:]:
        free = busy.index(min(busy))
        busy[free] += overhead + count / per_worker
    return max(busy)


def _piece_rate(f: _File) -> float | None:
    """Frames per second from piece to piece over the last half of the file's pieces, at least W+1 of them
    (W workers finish W pieces close together: the interval must span a whole round)."""
    if len(f.pieces) < f.workers + 1:
        return None
    at, frames = f.pieces[-1]
    k = len(f.pieces) - 1 - f.workers
    while k > 0 and f.pieces[k - 1][1] >= frames / 2:
        k -= 1
    then, before = f.pieces[k]
    return (frames - before) / (at - then) if at > then else None


class JobProgress:
    """The display: ``3/10 segments, 1/3 files: 40%|████ | 96/240 [00:12<00:18, 7.90 fps]``.

    Give ``frames`` as the job's ``on_frames``, ``piece`` as ``on_piece``; call ``begin_file``
    before each file and ``end_file`` after it.
    """

    def __init__(self, total: int | None, done: int = 0, files: int = 1, quiet: bool = False, stream: Any = None,
                 clock: Callable[[], float] = time.monotonic, join: bool = True) -> None:
        """``total`` frames (None: unknown, no ETA), ``done`` of them before (kept pieces); ``join``: files end
        with a join (a job), not for one stream."""
        from tqdm import tqdm

        self.estimate = Estimate((total or 0) - done, clock, joins=join)
        self.files, self.files_done = files, 0
        self.segments, self.segments_done = 0, 0
        estimate = self.estimate

        class _Bar(tqdm):
            @property
            def format_dict(self) -> dict:
                values = super().format_dict
                eta, rate = estimate.eta(), estimate.rate()
                values["job_eta"] = "?" if eta is None else tqdm.format_interval(eta)
                values["job_rate"] = "? fps" if rate is None else f"{rate:.2f} fps"
                return values

        self._bar = _Bar(total=total, initial=done, unit="frame", disable=quiet, file=stream or sys.stderr,
                         dynamic_ncols=True, desc=self._describe(),
                         bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} "
                                    "[{elapsed}<{job_eta}, {job_rate}]")

    def begin_file(self, job: Any = None, frames: int = 1) -> None:
        """Before a file: its ``Job`` (planned; pending segments and workers are read from it), or None for an image."""
        if job is None:
            self._grow(self.estimate.begin_file(frames))
            return
        manifest = job.plan()
        pending = {s.index: s.count for s in manifest.segments if s.index not in manifest.pieces}
        self.segments, self.segments_done = len(manifest.segments), len(manifest.segments) - len(pending)
        self._grow(self.estimate.begin_file(sum(pending.values()), pending, planned_workers(job, len(pending))))
        self._redraw()

    def frames(self, count: int) -> None:
        self.estimate.frames(count)
        self._bar.update(count)

    def piece(self, result: Any) -> None:
        self.estimate.piece(result.index, result.frames)
        self.segments_done += 1
        self._redraw()

    def end_file(self, ok: bool = True) -> None:
        """After a file restored (``ok``) or failed."""
        self.estimate.end_file(ok)
        self.files_done += 1
        if not ok:
            self._bar.total = self._bar.n + self.estimate.total - self.estimate.restored
        self._redraw()

    def skip_file(self) -> None:
        """A file finished by an earlier run (its frames were never counted)."""
        self.files_done += 1
        self._redraw()

    def write(self, message: str) -> None:
        self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()

    def _grow(self, frames: int) -> None:
        if frames and self._bar.total is not None:
            self._bar.total += frames

    def _describe(self) -> str:
        parts = [f"{self.segments_done}/{self.segments} segments"] if self.segments else []
        if self.files > 1:
            parts.append(f"{self.files_done}/{self.files} files")
        return ", ".join(parts) or "restoring"

    def _redraw(self) -> None:
        self._bar.set_description(self._describe())  # refreshes


def planned_workers(job: Any, pending: int) -> int:
    """The worker count ``Job.run`` will use for ``pending`` segments (local runs; Ray: as many as asked or 1)."""
    from .job import default_workers

    options = job.options
    if pending <= 1:
        return 1
    if options.ray is not None:
        return min(pending, options.workers or 1)
    device = options.run.device
    listed = len(device.split(",")) if device else 0
    return min(pending, options.workers or default_workers(device, listed))
