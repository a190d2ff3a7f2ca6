"""The library API for archive jobs: ``Job(source, output, chain).run()`` restores a file as segments.

    job = Job("film.mkv", "film.restored.mkv", "denoise,sr2",
              JobOptions(RunSettings(device="cuda"), OutputSettings(codec="libx265"), workers=2))
    job.plan()      # index the input, build the plan, check the job directory (resume or refuse)
    job.status()    # segments and frames done / total
    job.run()       # restore the pieces still missing, join them, remove the job directory

Running the same job again after a crash resumes it: pieces listed in the manifest are checked
against their SHA-256 and kept; the rest are redone. A job directory made for another input or
other settings is refused (``JobMismatchError``) unless ``restart`` is set.

What happens to interlaced fields (deinterlace, IVTC, field split) is decided once here, on the
file's first frames as ``restore_video`` decides it, and every segment applies that plan. With a
field filter each segment decodes one more source frame on each side, fed to the filter only (a
deinterlacer looks at the neighbouring frames). IVTC is planned as one segment: fieldmatch and
decimate drop one frame in five counted from the stream's start, so segments cut anywhere else
would keep other frames than ``run`` keeps.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

from .. import __version__
from ..engine.budget import check_frames
from ..errors import ConfigError, DiskFullError, JobMismatchError, OutputError
from ..media import encoder
from ..media.output import OutputTarget, default_output_path
from ..media.interlace import NO_FIELDS, FieldPlan
from ..media.reader import MediaReader, Span
from ..media.writer import EncodeSettings
from ..restore import OutputSettings, PreparedChain, RunSettings, encode_settings, output_video
from . import manifest as manifests
from .join import Window, check_output, join_pieces
from .plan import DEFAULT_SEGMENT_SECONDS, Segment, SourceIndex, frame_range, index_source, make_plan
from .segment import PieceResult, SegmentTask, file_digest, first_device, remember_chain


@dataclass(frozen=True)
class JobOptions:
    """Everything about a job except its input, output and chain. None: the documented default.

    ``run`` and ``output`` mean what they mean to ``restore_video`` (a device list, ``cuda:0,cuda:1``,
    gives one worker per device); the other fields are the job's own.
    """

    run: RunSettings = RunSettings()
    output: OutputSettings = OutputSettings()
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS
    workers: int | None = None
    job_dir: str | None = None
    restart: bool = False
    keep_job: bool = False
    start: float | None = None
    duration: float | None = None
    frames: tuple[int, int] | None = None
    ray: str | None = None
    """None: local workers; ``"auto"`` or a cluster address: Ray tasks."""


@dataclass(frozen=True)
class JobStatus:
    job_dir: str
    segments: int
    segments_done: int
    frames: int
    frames_done: int

    @property
    def complete(self) -> bool:
        return self.segments_done == self.segments


@dataclass(frozen=True)
class JobReport:
    output: str
    frames: int
    segments: int
    resumed_segments: int
    redone_segments: int
    damaged_frames: int
    seconds: float
    workers: int
    pieces: list[PieceResult] = field(default_factory=list)


def default_workers(device: str | None = None, listed: int = 0) -> int:
    """One per listed device (``cuda:0,cuda:1``), else one per GPU; on the CPU one per four cores."""
    from ..engine.placement import cpu_cores, cuda_available

    if listed > 1:
        return listed
    if device != "cpu" and cuda_available():
        import torch

        return max(1, torch.cuda.device_count())
    return max(1, cpu_cores() // 4)


def default_job_dir(output: str) -> Path:
    path = Path(output)
    return path.parent / f".{path.name}.streamrestore-job"


class Job:
    def __init__(self, source: str, output: str | None = None, chain: str = "",
                 options: JobOptions = JobOptions(), prepared: PreparedChain | None = None) -> None:
        """``prepared``: ``chain`` already built with ``options.run`` (a server's shared chain, its weights
        read once), used by a one-worker run instead of building it again."""
        self.source = source
        self.output = output or default_output_path(source)
        self.chain_text = chain
        self.options = options
        self._prepared = prepared
        self.job_dir = Path(options.job_dir) if options.job_dir else default_job_dir(self.output)
        self.manifest: manifests.Manifest | None = None
        self._built: PreparedChain | None = None
        self._index: SourceIndex | None = None
        self._range: tuple[int, int] | None = None
        self.fields: FieldPlan = NO_FIELDS
        """What is done with the fields, decided once for the whole file (``PreparedChain.plan_fields``)."""
        self._resumed = 0
        self._redone = 0
        self._fresh = False

    @property
    def notices(self) -> list[str]:
        """One line per joined alias pair in the chain (``PreparedChain.notices``), once the job is planned."""
        return self._built.notices if self._built is not None else []

    # -- plan ------------------------------------------------------------------------------------
    def plan(self) -> manifests.Manifest:
        """Index the input and plan segments; load the job directory's manifest (resume) or start one."""
        if self.manifest is not None:
            return self.manifest
        if not os.path.isfile(self.source):
            from ..errors import InputNotFoundError

            raise InputNotFoundError(f"input not found: {self.source!r}")
        opts = self.options
        self._built = self._prepared or PreparedChain(self.chain_text, first_device(opts.run))
        chain_plan = self._built.plan
        wanted = encode_settings(chain_plan.output, opts.output)
        runner = self._built.runner()
        before = sum(n.caps.frames_before for n in runner.nodes if n.caps.is_temporal)
        after = sum(n.caps.frames_after for n in runner.nodes if n.caps.is_temporal)
        reader = MediaReader(self.source)
        try:
            # Decided once, on the file's first frames as `run` does; every segment applies the same filter.
            self.fields = self._built.plan_fields(reader)
            reader.apply_fields(self.fields)
            info = reader.info
            check_frames(self._built.stages, info.height, info.width, opts.run.max_pixels)
            # The codec follows the source's, as in `streamrestore run` (media.encoder).
            self.encode = reproducible(encoder.resolve(wanted, info, reader.first_frame))
            self._source_info = reader.source_info
        finally:
            reader.close()
        self.scale = runner.scale
        self.video = output_video(self.encode, info, self.scale, self.fields)
        self._index = index_source(self.source)
        ranged = opts.start is not None or opts.duration is not None or opts.frames is not None
        self._range = frame_range(self._index, opts.start, opts.duration, opts.frames) if ranged else None
        self._lookahead = after
        segment_seconds = opts.segment_seconds
        total = len(self._index.pts)
        if self.fields.retime is not None:
            # IVTC: fieldmatch and decimate work in cycles of five frames counted from the stream's start, so
            # a segment cut anywhere else would drop other frames: the whole range is one segment, decoded
            # from the file's start.
            segment_seconds, before, after = math.inf, total, total
        elif self.fields.filters:
            # Context in source frames: enough for the stages' window over the filtered frames, plus one frame
            # each side fed only to the filter (a deinterlacer looks at the neighbouring frames).
            before = math.ceil(before / self.fields.rate) + 1
            after = math.ceil(after / self.fields.rate) + 1
        segments = make_plan(self._index, segment_seconds, before, after, self._range)
        # Everything that decides the frames or the bitstream: a resume under other values is refused.
        # (device, threads, timeout, strict and max_pixels decide where and whether, not what.) The chain as
        # built too, and the version: an upgrade may point an alias at another network or other options.
        run = opts.run
        fields = self.fields
        settings = {
            "chain": repr(chain_plan), "field_operations": repr(self._built.field_operations),
            "stages": repr([(built.spec.name, built.stage.settings) for built in self._built.stages]),
            "version": __version__,
            "fields": repr((fields.filters, fields.rate, fields.retime, fields.field_split, fields.output_order)),
            "content": run.content, "precision": run.precision, "batch": run.batch_size, "tile": run.tile,
            "interlaced": run.interlaced, "encoder": dataclasses.asdict(self.encode), "pix_fmt": self.video.pix_fmt,
            "segment_seconds": opts.segment_seconds, "span": list(self._range) if self._range else None,
        }
        source = manifests.input_identity(self.source)
        if os.path.abspath(self.job_dir) == os.path.abspath(self.output):
            raise ConfigError(f"--job and -o name the same path {self.output!r}; the job directory holds the pieces")
        if self.job_dir.exists() and not self.job_dir.is_dir():
            raise OutputError(f"the job directory {str(self.job_dir)!r} is not a directory; choose another --job")
        found = None
        if self.job_dir.exists() and not opts.restart:
            found = manifests.load(self.job_dir)
        if found is not None:
            found.check(source, settings)
            # The plan follows from the input and the settings just checked; one that differs was edited (or
            # is from a version that plans otherwise): its pieces would join into other frames than asked for.
            if found.segments != segments:
                raise JobMismatchError(f"the job directory's plan ({len(found.segments)} segments) is not this "
                                       f"input's ({len(segments)} segments); use --restart to start over")
            self.manifest = found
        else:
            self.manifest = manifests.Manifest(source, settings, segments)
        # A new manifest (none yet, or --restart): pieces already in the folder are not its own. run() removes
        # them under the job directory's lock (a run still using them would hold it), or tasks() does.
        self._fresh = found is None
        return self.manifest

    def status(self) -> JobStatus:
        manifest = self.plan()
        done = [s for s in manifest.segments if s.index in manifest.pieces]
        return JobStatus(str(self.job_dir), len(manifest.segments), len(done),
                         sum(s.count for s in manifest.segments), sum(s.count for s in done))

    def piece_path(self, index: int) -> Path:
        return self.job_dir / f"piece-{index:05d}.nut"

    def tasks(self) -> list[SegmentTask]:
        """The segments still to do, as tasks any runner (this process, a pool, Ray) can execute."""
        manifest = self.plan()
        assert self._index is not None
        manifests.ensure_folder(self.job_dir)
        self._forget_old_pieces()
        pending = []
        for seg in manifest.segments:
            if seg.index in manifest.pieces:
                continue
            # Absolute paths: a worker process or a Ray node may start in another directory.
            pending.append(SegmentTask(os.path.abspath(self.source), os.path.abspath(self.piece_path(seg.index)),
                                       seg, self._segment_span(seg), self.chain_text, self.options.run,
                                       self.encode, self.fields, self._primer() if seg.context_first > 0 else None))
        return pending

    def _forget_old_pieces(self) -> None:
        """A new manifest (none yet, or ``restart``): files of an earlier job in the folder are not its pieces."""
        if self._fresh:
            manifests.clear(self.job_dir)
            self._fresh = False

    def _segment_span(self, seg: Segment) -> Span:
        """The frames a segment decodes; with a field filter, the outer ones are fed to the filter only."""
        pts = self._index.pts
        margin = bool(self.fields.filters)
        # context_first is 0 when clamped at the file's start: the file's first frame is read as `run` reads it.
        deliver_from = pts[seg.context_first + 1] if margin and seg.context_first > 0 else pts[seg.context_first]
        until = pts[seg.context_last] if margin and seg.context_last < len(pts) - 1 else None
        return Span(seg.decode_from, pts[seg.context_first: seg.context_last + 1], deliver_from, until)

    def _primer(self) -> Span:
        pts = self._index.pts
        if not self.fields.filters:
            return Span(pts[0], pts[: self._lookahead + 1], pts[0])
        count = min(len(pts), math.ceil((self._lookahead + 1) / self.fields.rate) + 1)
        return Span(pts[0], pts[:count], pts[0], pts[count - 1] if count < len(pts) else None)

    # -- run -------------------------------------------------------------------------------------
    def run(self, on_frames: Callable[[int], None] = lambda count: None,
            on_piece: Callable[[PieceResult], None] = lambda result: None) -> JobReport:
        """Restore every missing piece, join, and (unless ``keep_job``) remove the job directory."""
        started = time.perf_counter()
        manifest = self.plan()
        opts = self.options
        joined = manifest.joined
        if joined is not None and _output_identity(self.output) == {"bytes": joined["bytes"], "mtime_ns": joined["mtime_ns"]}:
            return self._already_joined(manifest, started)
        target = OutputTarget(self.output, self.source, overwrite=opts.output.overwrite,
                              stream_format=opts.output.format)
        if target.is_stdout:
            raise OutputError("a job writes a file; give -o PATH (not -)")
        check_output(self.source, target.temporary, target.format, self.video, self.encode, target.container_options)
        if opts.workers is not None and opts.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {opts.workers}")
        manifests.ensure_folder(self.job_dir)
        with manifests.locked(self.job_dir, "the job directory"):
            return self._run_locked(manifest, target, started, on_frames, on_piece)

    def _run_locked(self, manifest: manifests.Manifest, target: OutputTarget, started: float,
                    on_frames: Callable[[int], None], on_piece: Callable[[PieceResult], None]) -> JobReport:
        opts = self.options
        self._forget_old_pieces()
        self._verify_pieces(manifest)
        for leftover in manifests.leftovers(self.job_dir):
            manifests.discard(leftover)
        manifests.save(self.job_dir, manifest)
        tasks = self.tasks()
        self._check_space(tasks)
        device = opts.run.device
        device_list = device.split(",") if device else []
        workers = 1 if not tasks else min(len(tasks), opts.workers or default_workers(device, len(device_list)))
        results: list[PieceResult] = []

        def finished(result: PieceResult) -> None:
            self.record(result)
            results.append(result)
            on_piece(result)

        if tasks:
            if opts.ray is not None:
                from .ray_runner import run_on_ray

                run_on_ray(tasks, opts.ray, finished, on_frames)
            elif workers == 1:
                from .local import run_here

                assert self._built is not None
                first = first_device(opts.run)
                remember_chain(self.chain_text, first, self._built)
                run_here([dataclasses.replace(t, run=first) for t in tasks], finished, on_frames)
            else:
                from .local import run_in_processes

                run_in_processes(tasks, workers, finished, on_frames)
        # A file still being written (a recording, a copy in progress) must not be joined with the audio of a
        # longer file than the pieces were planned from: the next run refuses it anyway (exit 14).
        manifest.check(manifests.input_identity(self.source), manifest.settings)
        pieces = [str(self.piece_path(s.index)) for s in manifest.segments]
        # A field filter retimes the frames: each piece lists its own; otherwise they are the source's.
        frame_pts = [manifest.pieces[s.index].get("pts") or list(self._index.pts[s.first: s.first + s.count])
                     for s in manifest.segments]
        try:
            frames = join_pieces(self.source, pieces, frame_pts, target.temporary, target.format,
                                 target.container_options, self._window(), video=self.video)
            manifest.joined = {**_output_identity(target.temporary), "frames": frames}  # a rename keeps both
            manifests.save(self.job_dir, manifest)
            target.commit()
        except BaseException:
            target.abort()
            raise
        if not opts.keep_job:
            manifests.remove(self.job_dir)  # only the job's own files: --job may name a folder with others in it
        return JobReport(self.output, frames, len(manifest.segments), self._resumed, self._redone,
                         sum(r.damaged_frames for r in results), time.perf_counter() - started, workers, results)

    def _already_joined(self, manifest: manifests.Manifest, started: float) -> JobReport:
        """The output this job joined is in place (a run was killed after its rename): only tidy up."""
        with manifests.locked(self.job_dir, "the job directory"):
            if not self.options.keep_job:
                manifests.remove(self.job_dir)
        self._resumed = len(manifest.pieces)
        return JobReport(self.output, manifest.joined["frames"], len(manifest.segments), self._resumed, 0, 0,
                         time.perf_counter() - started, 0)

    def record(self, result: PieceResult) -> None:
        """List a finished piece in the manifest (for a caller that ran ``tasks()`` on its own scheduler)."""
        manifest = self.plan()
        manifests.ensure_folder(self.job_dir)
        manifest.pieces[result.index] = {"sha256": result.sha256, "bytes": result.bytes, "frames": result.frames}
        if self.fields.filters:
            manifest.pieces[result.index]["pts"] = list(result.pts)
        manifests.save(self.job_dir, manifest)

    def resume(self, **callbacks) -> JobReport:
        """``run`` for a job that must already exist (its manifest is in the job directory)."""
        if manifests.load(self.job_dir) is None:
            raise ConfigError(f"no job to resume in {str(self.job_dir)!r}")
        return self.run(**callbacks)

    # -- helpers ---------------------------------------------------------------------------------
    def _verify_pieces(self, manifest: manifests.Manifest) -> None:
        """Keep the listed pieces whose checksum matches; forget the others (they are redone)."""
        for index, piece in list(manifest.pieces.items()):
            path = self.piece_path(index)
            pts = piece.get("pts")
            ok = (index < len(manifest.segments) and path.is_file() and not path.is_symlink()
                  and path.stat().st_size == piece["bytes"] and (pts is None or len(pts) == piece["frames"])
                  and file_digest(str(path))[0] == piece["sha256"])
            if ok:
                self._resumed += 1
            else:
                del manifest.pieces[index]
                if index < len(manifest.segments):  # an index beyond the plan was never a piece of it
                    self._redone += 1
                manifests.discard(path)

    def _check_space(self, tasks: list[SegmentTask]) -> None:
        """Pieces still to write plus the joined output must fit; say so before any work.

        The pieces go to the job directory and the output beside its final name: on one filesystem both
        must fit together, on two each must fit on its own.
        """
        frames = sum(t.segment.count for t in tasks)
        total = sum(s.count for s in self.plan().segments)
        per_frame = estimate_frame_bytes(self._source_info, self.scale, self.encode.codec, self.source,
                                         len(self._index.pts))
        per_frame *= float(self.fields.rate / (2 if self.fields.field_split else 1))  # frames per source frame
        pieces, joined = int(per_frame * frames), int(per_frame * total)
        output_folder = Path(os.path.abspath(self.output)).parent
        if filesystem_of(output_folder) == filesystem_of(self.job_dir):
            _check_free(self.job_dir, pieces + joined, "the job", "choose --job DIR elsewhere")
        else:
            _check_free(self.job_dir, pieces, "the job's pieces", "choose --job DIR elsewhere")
            _check_free(output_folder, joined, "the output", "choose another -o")

    def _window(self) -> Window | None:
        if self._range is None:
            return None
        assert self._index is not None
        first, end = self._range
        tb = self._index.time_base
        start_pts = self._index.pts[first]
        end_time = self._index.pts[end] * tb if end < len(self._index.pts) else None
        return Window(Fraction(start_pts) * tb, end_time)


def _output_identity(path: str) -> dict | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def filesystem_of(folder: Path) -> int:
    return os.stat(folder).st_dev


def _check_free(folder: Path, needed: int, what: str, remedy: str) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DiskFullError(f"{what} needs about {_size(needed)} and {str(folder)!r} has {_size(free)} free; "
                            f"free space or {remedy}")


def _size(count: int) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{count / 1e6:.0f} MB"


def reproducible(settings: EncodeSettings) -> EncodeSettings:
    """Encoder settings under which the same frames always give the same bitstream.

    libx264's macroblock-tree rate control is not reproducible run to run here (one 8-frame segment
    encoded 16 times gave 9 different bitstreams, even with one thread; with ``mbtree=0``, 16 equal
    ones), and a resumed or parallel job must give the bytes a one-worker run gives, so pieces are
    encoded without it (about the cost of one x264 preset step in size at the same CRF).
    """
    if settings.codec == "libx264" and "x264-params" not in settings.options:
        return dataclasses.replace(settings, options={**settings.options, "x264-params": "mbtree=0"})
    return settings


def estimate_frame_bytes(info, scale: int, codec: str, source: str, frames: int) -> float:
    """A generous size per output frame: lossless ~half the raw size, lossy 2× the source's bits per pixel."""
    pixels = info.width * info.height * scale * scale
    if codec in ("ffv1", "libx264rgb", "utvideo", "huffyuv", "ffvhuff"):
        return pixels * 3 * (2 if info.bit_depth > 8 else 1) * 0.6
    source_per_pixel = os.path.getsize(source) / max(1, frames) / max(1, info.width * info.height)
    return max(source_per_pixel * 2, 0.05) * pixels


def restore_range(source: str, output: str, chain: str = "", *, start: float | None = None,
                  duration: float | None = None, frames: tuple[int, int] | None = None,
                  options: JobOptions = JobOptions()) -> JobReport:
    """Restore only ``[start, start + duration)`` seconds (from the first frame) or frames ``[A, B)``.

    Frame-exact: the output holds exactly the source frames in the range, moved to start at 0, with
    audio and subtitle packets in that time span moved by the same amount (in sync within one
    audio frame). Temporal stages see the real frames around the range, so each frame equals the
    same frame of a whole-file run.
    """
    if frames is None and start is None and duration is None:
        raise ConfigError("restore_range needs start/duration or frames")
    ranged = dataclasses.replace(options, start=start, duration=duration, frames=frames)
    return Job(source, output, chain, ranged).run()
