"""Jobs on the command line: the job options, whether ``run`` was asked for a job, and running one (``run``/``job``)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, SomeFilesFailed
from . import DEFAULT_SEGMENT_SECONDS

if TYPE_CHECKING:
    from .job import JobOptions


def add_job_arguments(group: Any) -> None:
    """The job's own options (``run`` and ``job`` both take them; given to ``run``, any of them makes it a job)."""
    group.add_argument("--segment-seconds", type=float,
                       help=f"segment length, cut at the next keyframe (default {DEFAULT_SEGMENT_SECONDS:g})")
    group.add_argument("--workers", type=int, help="segments restored at once, each in its own process (default: "
                       "one per GPU; on the CPU one per 4 cores)")
    group.add_argument("--job", metavar="DIR", dest="job_dir", help="job directory (default: hidden, beside the "
                       "output)")
    group.add_argument("--restart", action="store_true", help="discard the job directory's pieces and start over")
    group.add_argument("--keep-job", action="store_true", help="keep the job directory after a successful join")
    group.add_argument("--start", type=float, help="restore from this time (seconds from the first frame)")
    group.add_argument("--duration", type=float, help="restore this many seconds")
    group.add_argument("--frames", help="restore frames A:B (presentation order, B exclusive)")
    group.add_argument("--ray", metavar="auto|ADDRESS", help="run segments on a Ray cluster (pip install "
                       "'streamrestore[ray]'); the job directory must be on storage every node sees")


JOB_VALUES = ("segment_seconds", "workers", "job_dir", "start", "duration", "frames", "ray")
JOB_SWITCHES = ("restart", "keep_job")


def asks_for_job(args: argparse.Namespace) -> bool:
    """Whether ``run``'s arguments ask for a job: a job option given, or an input naming several files."""
    from ..media.reader import is_network_url
    from .batch import is_many

    if any(getattr(args, name) is not None for name in JOB_VALUES) or any(getattr(args, n) for n in JOB_SWITCHES):
        return True
    return args.input != "-" and not is_network_url(args.input) and is_many(args.input)


def job_options(args: argparse.Namespace) -> JobOptions:
    """The job's options from ``run``'s or ``job``'s arguments (the frame and encoder settings through the one
    conversion both commands use)."""
    from ..cli import settings_from_args
    from .job import JobOptions

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    run, output = settings_from_args(args)
    # Pieces are encoded in workers without an encoder log, and --debug must not change the settings that a
    # many-file job's ledger compares (a rerun with --debug would redo finished files).
    output = dataclasses.replace(output, encoder_log=False)
    return JobOptions(run, output, workers=args.workers, job_dir=args.job_dir, restart=args.restart,
                      segment_seconds=DEFAULT_SEGMENT_SECONDS if args.segment_seconds is None else args.segment_seconds,
                      keep_job=args.keep_job, start=args.start, duration=args.duration,
                      frames=_frames(args.frames) if args.frames else None, ray=args.ray)


def run_job_command(args: argparse.Namespace) -> int:
    from ..media.reader import is_network_url
    from .batch import count_frames, expand_inputs, is_many, outside, pending, restore_many
    from .job import Job
    from .progress import JobProgress

    # A job reads a file it can seek in and writes files it can resume; one line says what is wrong.
    if args.input == "-" or is_network_url(args.input):
        raise ConfigError(f"a job needs a file, folder, glob or list as input, not {args.input!r} (stdin or network: "
                          "drop the job options)")
    if args.output == "-":
        raise ConfigError("a job writes files: give -o PATH, not -o - (standard output: drop the job options)")
    from ..media.images import is_image_path

    if is_image_path(args.input):
        raise ConfigError(f"{args.input!r} is an image: a job restores videos (drop the job options)")
    chain = args.config if args.config else args.chain
    options = job_options(args)
    if is_many(args.input):
        if not args.output:
            raise ConfigError("several input files need -o FOLDER")
        files = outside(expand_inputs(args.input), args.output)  # an output folder in the tree holds no inputs
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
    for notice in [*job.notices, job.fields.notice] if not args.quiet else []:
        if notice:
            print(f"streamrestore: {notice}", file=sys.stderr)
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
        # The rate counts the frames this run restored: pieces kept from before cost only their check.
        restored = sum(piece.frames for piece in report.pieces)
        rate = f"{restored / report.seconds:.2f} fps" if restored and report.seconds else "all kept: joined only"
        print(f"wrote {report.output}: {report.frames} frames in {report.segments} segments "
              f"({report.resumed_segments} kept from before, {report.workers} worker(s)), "
              f"{report.seconds:.1f} s ({rate})", file=sys.stderr)
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
