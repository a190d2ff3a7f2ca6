"""The ``streamrestore job`` command: argument parsing and the one progress display; the work is in ``jobs``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import ConfigError, SomeFilesFailed
from . import DEFAULT_SEGMENT_SECONDS


def add_job_parser(commands: Any, chain_help: str) -> None:
    job = commands.add_parser(
        "job", help="restore a file (or a folder, glob or list of files) as a resumable job of segments",
        description="Restore as segments in a job directory: rerun the same command to resume after a crash.")
    job.add_argument("input", help="a video file, a folder (recursive), a glob in quotes, or a .txt list of paths")
    what = job.add_mutually_exclusive_group(required=True)
    what.add_argument("--chain", help=chain_help)
    what.add_argument("--config", metavar="YAML", help="a preset file, or a bundled preset's name")
    job.add_argument("-o", "--output", help="output file (default NAME.restored.EXT); a folder for several inputs")
    job.add_argument("--segment-seconds", type=float, default=DEFAULT_SEGMENT_SECONDS,
                     help=f"segment length, cut at the next keyframe (default {DEFAULT_SEGMENT_SECONDS:g})")
    job.add_argument("--workers", type=int, help="segments restored at once, each in its own process (default: "
                     "one per GPU; on the CPU one per 4 cores)")
    job.add_argument("--job", metavar="DIR", dest="job_dir", help="job directory (default: hidden, beside the output)")
    job.add_argument("--restart", action="store_true", help="discard the job directory's pieces and start over")
    job.add_argument("--keep-job", action="store_true", help="keep the job directory after a successful join")
    job.add_argument("--start", type=float, help="restore from this time (seconds from the first frame)")
    job.add_argument("--duration", type=float, help="restore this many seconds")
    job.add_argument("--frames", help="restore frames A:B (presentation order, B exclusive)")
    job.add_argument("--ray", metavar="auto|ADDRESS", help="run segments on a Ray cluster (pip install "
                     "'streamrestore[ray]'); the job directory must be on storage every node sees")
    job.add_argument("--overwrite", action="store_true", help="replace an existing output")
    job.add_argument("--codec", help="video encoder (libx264 default, libx265, ffv1, libsvtav1, …)")
    job.add_argument("--crf", type=float, help="constant quality for x264/x265/AV1 (default 18)")
    job.add_argument("--preset", help="encoder speed preset (x264/x265 default: medium)")
    job.add_argument("--pix-fmt", help="output pixel format (default: the source's)")
    job.add_argument("--encoder-threads", type=int, help="encoder threads per worker (default 0 = automatic)")
    job.add_argument("--format", help="container of the output (default: from its name)")
    job.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, or cuda:0,cuda:1 (one per worker)")
    job.add_argument("--content", choices=("photo", "anime"), default="photo", help="which models the aliases use")
    job.add_argument("--interlaced", choices=("auto", "deinterlace", "keep", "progressive"), default="auto",
                     help="interlaced input, as for `streamrestore run` (auto: bwdif at field rate before stages "
                     "that change pixels; keep: process each field, output stays interlaced)")
    job.add_argument("--batch", type=int, help="frames per batch through the stages")
    job.add_argument("--precision", choices=("auto", "float32", "float16", "bfloat16"), default="auto")
    job.add_argument("--tile", type=int, default=0, help="tile side in input pixels for tileable stages (default 0)")
    job.add_argument("--max-pixels", type=int, default=None, metavar="N",
                     help="refuse a chain whose frames are over N pixels (default 268435456; 0: no check)")
    job.add_argument("--cpu-threads", type=int, help="torch threads per worker (default: cores / workers)")
    job.add_argument("--strict", action="store_true", help="fail on damaged frames instead of repairing them")
    job.add_argument("-q", "--quiet", action="store_true", help="no progress display or summary")
    job.add_argument("--debug", action="store_true", help="show a traceback on errors")


def run_job_command(args: argparse.Namespace) -> int:
    from ..cli import _max_pixels
    from ..restore import OutputSettings, RunSettings
    from .batch import count_frames, expand_inputs, is_many, pending, restore_many
    from .job import Job, JobOptions
    from .progress import JobProgress

    chain = args.config if args.config else args.chain
    frames = _frames(args.frames) if args.frames else None
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    run = RunSettings(device=args.device, precision=None if args.precision == "auto" else args.precision,
                      batch_size=args.batch, cpu_threads=args.cpu_threads, tile=args.tile, content=args.content,
                      strict=args.strict, max_pixels=_max_pixels(args), interlaced=args.interlaced)
    output = OutputSettings(codec=args.codec, crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt,
                            encoder_threads=args.encoder_threads, format=args.format, overwrite=args.overwrite)
    options = JobOptions(run, output, segment_seconds=args.segment_seconds, workers=args.workers,
                         job_dir=args.job_dir, restart=args.restart, keep_job=args.keep_job, start=args.start,
                         duration=args.duration, frames=frames, ray=args.ray)
    if is_many(args.input):
        if not args.output:
            raise ConfigError("several input files need -o FOLDER")
        files = expand_inputs(args.input)
        # Frames of the files still to do only: finished ones are skipped and never counted.
        counts = [count_frames([f]) for f in pending(files, args.output, chain, options)]
        progress = JobProgress(sum(counts), files=len(files), quiet=args.quiet)
        progress.estimate.plan_files(counts)

        def on_file(outcome: Any) -> None:
            if outcome.status == "skipped":
                progress.skip_file()
                return
            progress.end_file(outcome.status == "done")
            if outcome.status == "failed":
                progress.write(f"streamrestore: {outcome.source}: {outcome.message}")

        try:
            outcomes = restore_many(args.input, args.output, chain, options, progress.frames, on_file,
                                    lambda source, job: progress.begin_file(job), progress.piece)
        finally:
            progress.close()
        if not args.quiet:
            print(summary_table(outcomes), file=sys.stderr)
        failed = [o for o in outcomes if o.status == "failed"]
        if failed:
            raise SomeFilesFailed(f"{len(failed)} of {len(outcomes)} files failed (see the summary)")
        return 0

    job = Job(args.input, args.output, chain, options)
    status = job.status()
    if job.fields.notice and not args.quiet:
        print(f"streamrestore: {job.fields.notice}", file=sys.stderr)
    progress = JobProgress(status.frames, status.frames_done, quiet=args.quiet)
    if status.segments_done and not args.quiet:
        progress.write(f"resuming {status.job_dir}: {status.segments_done} of {status.segments} segments done")
    try:
        progress.begin_file(job)
        report = job.run(on_frames=progress.frames, on_piece=progress.piece)
        progress.end_file()
    finally:
        progress.close()
    if not args.quiet:
        fps = report.frames / report.seconds if report.seconds else 0.0
        print(f"wrote {report.output}: {report.frames} frames in {report.segments} segments "
              f"({report.resumed_segments} kept from before, {report.workers} worker(s)), "
              f"{report.seconds:.1f} s ({fps:.2f} fps)", file=sys.stderr)
    return 0


def _frames(text: str) -> tuple[int, int]:
    try:
        first, end = (int(part) for part in text.split(":"))
    except ValueError:
        raise ConfigError(f"--frames {text!r}: expected A:B (integers)") from None
    return first, end


def summary_table(outcomes: list[Any]) -> str:
    width = max([len(o.source) for o in outcomes] + [4])
    lines = [f"{'FILE':<{width}}  {'STATUS':<7} {'FRAMES':>6} {'SECONDS':>8}  MESSAGE"]
    for o in outcomes:
        lines.append(f"{o.source:<{width}}  {o.status:<7} {o.frames:>6} {o.seconds:>8.1f}  {o.message}")
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    lines.append(f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed")
    return "\n".join(lines)
