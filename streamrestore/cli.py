"""Command line: parses arguments, calls the library, turns errors into one line and an exit code.

Exit codes: 0 success, 1 other one-line failures (output pipe closed, demo cannot start), 2 bad
option/chain/preset, 3 input not found, 4 not a media file or unreadable media, 5 no video stream,
6 truncated input, 7 damaged input with --strict, 8 unknown stage, 9 broken plugin, 10 output not
writable, 11 disk full, 12 weights, 13 a stage failed, 14 a job directory made for another input or
settings, 15 some files of a many-file job failed, 16 frames over
--max-pixels or memory, 130 Ctrl-C; 70 internal error is a bug, never the
answer to an input file.
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from . import __version__
from .errors import ConfigError, Interrupted, StreamRestoreError

if TYPE_CHECKING:
    from .restore import OutputSettings, RunSettings

INTERNAL_ERROR = 70
MAX_MESSAGE = 500  # characters of an error line

CHAIN_HELP = (
    "stages separated by commas, e.g. 'denoise,sr4'; options as NAME:KEY=VALUE[:KEY=VALUE], "
    "e.g. 'nlm:strength=12,sr4:tile=256' (tile: that stage's --tile); a preset name or .yaml file also works"
)


def add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments ``run`` and ``job`` share: the chain, the output and how frames are computed and encoded.

    ``settings_from_args`` turns them into ``RunSettings`` and ``OutputSettings``, for both commands."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--chain", help=CHAIN_HELP)
    what.add_argument("--config", metavar="YAML", help="a preset file (see configs/), or a bundled preset's name")
    parser.add_argument("-o", "--output", help="output path ('-' for standard output); default NAME.restored.EXT "
                        "beside the input; a folder when the input names several files")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--codec", help="video encoder (default: follows the source: HEVC -> libx265, ProRes -> "
                        "prores_ks, FFV1 -> ffv1, anything else -> libx264; also libsvtav1, …)")
    parser.add_argument("--crf", type=float, help="constant quality for x264/x265/AV1 (default 18; lower is better)")
    parser.add_argument("--preset", help="encoder speed preset (x264/x265 default: medium)")
    parser.add_argument("--pix-fmt", help="output pixel format (default: the source's chroma layout and bit depth)")
    parser.add_argument("--encoder-threads", type=int, help="encoder threads (per worker in a job; default 0 = "
                        "automatic)")
    parser.add_argument("--format", help="output container: for -o - mpegts (default), matroska or mp4 (fragmented); "
                        "for a file, default from its name")
    parser.add_argument("--device", help="auto (default), cpu, cuda or cuda:N; a job also takes a list, "
                        "cuda:0,cuda:1 (one worker per device)")
    parser.add_argument("--content", choices=("photo", "anime"), default="photo",
                        help="which pretrained models the aliases (sr2, sr4, jpeg, …) use (default photo)")
    parser.add_argument("--interlaced", choices=("auto", "deinterlace", "keep", "progressive"), default="auto",
                        help="interlaced input: auto (default) deinterlaces with bwdif at field rate before stages "
                        "that change pixels; deinterlace: always; keep: process each field, output stays interlaced; "
                        "progressive: the input is progressive whatever its tags and idet say")
    parser.add_argument("--batch", type=int, help="frames per batch through the stages (default: planned from the "
                        "free GPU memory, or about a megapixel of input per batch on the CPU)")
    parser.add_argument("--precision", choices=("auto", "float32", "float16", "bfloat16"), default="auto",
                        help="compute precision of neural stages (auto: fp16/bf16 on CUDA where the model allows, "
                        "float32 on the CPU; bfloat16 on a CPU with AVX512-BF16 is ~1.6× faster, within 9/255)")
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help="refuse a chain whose output, or any frame it works on, is over N pixels, or that needs "
                        "more memory than is available (default 268435456 = 16384×16384; 0: no check)")
    parser.add_argument("--tile", type=int, default=0, help="cut frames into tiles of at most N input pixels a side "
                        "for the stages that can be tiled (default 0: whole frames, tiled only after running out of "
                        "memory)")
    parser.add_argument("--cpu-threads", type=int, help="torch threads (default: every core; in a job, cores / "
                        "workers per worker)")
    parser.add_argument("--strict", action="store_true", help="fail on damaged frames instead of repairing them")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress display or summary")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")


def settings_from_args(args: argparse.Namespace) -> tuple[RunSettings, OutputSettings]:
    """``add_restore_arguments``'s values as the library's settings (the one conversion, for run and job)."""
    from .restore import OutputSettings, RunSettings

    run = RunSettings(device=args.device, precision=None if args.precision == "auto" else args.precision,
                      batch_size=args.batch, cpu_threads=args.cpu_threads, tile=args.tile, content=args.content,
                      strict=args.strict, timeout=getattr(args, "timeout", 15.0), max_pixels=_max_pixels(args),
                      interlaced=args.interlaced)
    output = OutputSettings(codec=args.codec, crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt,
                            encoder_threads=args.encoder_threads, format=args.format, overwrite=args.overwrite,
                            encoder_log=args.debug)
    return run, output


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamrestore", description="Restore and remaster video files and streams.")
    parser.add_argument("--version", action="version", version=f"streamrestore {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="restore a video, stream or image; with a job option, or several files, as a resumable job",
        description="Restore a video, stream or image. With any job option (--segment-seconds, --workers, --job, "
        "--restart, --keep-job, --start/--duration/--frames, --ray), or a folder, glob or .txt list as input, the "
        "work is a job of segments that resumes when the same command is run again (as `streamrestore job`).")
    run.add_argument("input", help="video/image file, '-' for standard input, a tcp/udp/rtsp/http URL, or (a job) a "
                     "folder (recursive), a glob in quotes or a .txt list of paths")
    add_restore_arguments(run)
    run.add_argument("--timeout", type=float, default=15.0, help="seconds to wait on a network input (default 15)")
    from .jobs.cli import add_job_arguments

    add_job_arguments(run.add_argument_group("job options (any of them runs the input as a job)"))

    job = commands.add_parser(
        "job", help="restore a file (or a folder, glob or list of files) as a resumable job of segments",
        description="Restore as segments in a job directory: rerun the same command to resume after a crash. "
        "The same as `streamrestore run` with a job option.")
    job.add_argument("input", help="a video file, a folder (recursive), a glob in quotes, or a .txt list of paths")
    add_restore_arguments(job)
    add_job_arguments(job.add_argument_group("job options"))

    stages = commands.add_parser("stages", help="list the available stages, aliases and presets")
    stages.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    models = commands.add_parser("models", help="list the pretrained models known by name (sr2=NAME, model=NAME)")
    models.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    # The demo's options are parsed by the demo itself (``demo.settings``, imported only for that command), so
    # the other commands never import the demo package.
    demo = commands.add_parser("demo", add_help=False,
                               help="the web page for photos and videos (pip install 'streamrestore[demo]'; "
                                    "`streamrestore demo --help` lists its options)")
    demo.set_defaults(debug=False)

    train = commands.add_parser("train", help="train a small network on clean images (synthetic degradations)")
    train.add_argument("--task", required=True, help="denoise, deblur, jpeg, sr2, sr3, sr4, oldfilm, oldvideo (×1: "
                       "old-video noise and blocks) or oldvideo4 (×4: the same at a quarter of the size)")
    train.add_argument("--arch", help="compact (default), esrgan, swinir, or nafnet, restormer, mprnet (×1 tasks; "
                       "the last two need the extra-arches extra); with --init, the file's; gated (deblur, with "
                       "--init a NAFNet: trains only a gate between that network, the unsharp mask, Gaussian deconvolutions and "
                       "the input)")
    train.add_argument("--init", metavar="WEIGHTS", help="fine-tune these weights (a file or a model name from "
                       "`streamrestore models`) instead of training fresh ones; the architecture is detected")
    train.add_argument("--resize", default="area", choices=("area", "bicubic"),
                       help="downscaling kernel of the sr tasks and oldfilm: area (default) or bicubic "
                            "(MATLAB's antialiased imresize, the one SR benchmarks use)")
    train.add_argument("--blur-odds", default="0.4,0.2,0.4", metavar="G,S,C",
                       help="deblur: odds of a Gaussian, straight-motion and camera-shake kernel (default 0.4,0.2,0.4)")
    train.add_argument("--after", metavar="CHAIN",
                       help="run every degraded input through this ×1 chain first, as `run` would (e.g. denoise): "
                            "an upscaler meant to follow a denoiser learns from what the denoiser leaves")
    train.add_argument("--blur-sigma", default="0.2,3", metavar="LO,HI",
                       help="deblur: the range the Gaussian kernels' σ is drawn from, in pixels (default 0.2,3)")
    train.add_argument("--noise-sigma", default="1,50", metavar="LO,HI",
                       help="denoise, oldvideo (its plain-noise share) and oldfilm: the range noise σ is drawn from, on the "
                            "0..255 scale (default 1,50)")
    train.add_argument("--video-share", type=float, default=0.5, metavar="P",
                       help="oldvideo, oldvideo4: share of patches that are old small video (the rest: plain noise, or "
                            "the clean quarter; default 0.5)")
    train.add_argument("--shrink", default="1,1", metavar="LO,HI",
                       help="clean patches are crops LO–HI times the patch side, shrunk to it: denser detail, as in "
                            "small frames (default 1,1: plain crops; oldvideo has its own, 1–4)")
    train.add_argument("--min-detail", type=float, default=0.0, metavar="D",
                       help="draw a clean patch again (up to 20 times) while it is flatter than D: the mean step "
                            "between neighbouring pixels across plus down, 0..255 (default 0: keep every patch)")
    train.add_argument("--data", required=True, metavar="FOLDER", help="clean images; some held back for validation")
    train.add_argument("--steps", type=int, required=True, help="schedule length (cosine decay over exactly this)")
    train.add_argument("--out", required=True, metavar="DIR", help="checkpoint.pt and exported TASK-ARCH.safetensors")
    train.add_argument("--resume", action="store_true", help="continue DIR/checkpoint.pt exactly where it stopped")
    train.add_argument("--stop-after", type=int, help="stop (checkpointed) after N steps; --resume goes on")
    train.add_argument("--batch", type=int, default=8, help="patches per step (default 8)")
    train.add_argument("--patch", type=int, default=64, help="clean patch side in pixels (default 64)")
    train.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default 5e-4)")
    train.add_argument("--loss", default="l1",
                       help="l1 (default), charbonnier, or psnr (minus each patch's PSNR, averaged)")
    train.add_argument("--features", type=int, default=32, help="network width (default 32)")
    train.add_argument("--blocks", type=int, default=8, help="depth: convs (compact), RRDBs (esrgan) or middle blocks (nafnet); default 8")
    train.add_argument("--seed", type=int, default=0, help="seeds the weights and every patch (default 0)")
    train.add_argument("--val-every", type=int, default=100, help="validate and checkpoint every N steps (default 100)")
    train.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    train.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, demo_argv = parser.parse_known_args(argv)
    if demo_argv and args.command != "demo":
        parser.error(f"unrecognized arguments: {' '.join(demo_argv)}")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == "stages":
            print(list_stages())
            return 0
        if args.command == "models":
            print(list_known_models())
            return 0
        if args.command == "demo":
            return run_demo(args, demo_argv)
        if args.command == "train":
            return run_train(args)
        if args.command == "job" or (args.command == "run" and _is_job(args)):
            from .jobs.cli import run_job_command

            return run_job_command(args)
        return run_command(args)
    except KeyboardInterrupt:
        return _fail(Interrupted("interrupted; the partial output was removed"), args.debug)
    except StreamRestoreError as error:
        return _fail(error, args.debug)
    except BrokenPipeError:
        return 0 if args.output == "-" else _fail(StreamRestoreError("output pipe closed"), args.debug)
    except Exception as error:  # the last resort: still one line, unless --debug
        if args.debug:
            traceback.print_exc()
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        print(f"streamrestore: internal error: {type(error).__name__}: {reason} (run with --debug for details)",
              file=sys.stderr)
        return INTERNAL_ERROR


def _is_job(args: argparse.Namespace) -> bool:
    """Whether ``run`` was asked for a job: a job option, or an input naming several files."""
    from .jobs.cli import asks_for_job

    return asks_for_job(args)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _fail(error: StreamRestoreError, debug: bool) -> int:
    if debug:
        traceback.print_exception(error)
    message = str(error).replace("\n", " ")
    if len(message) > MAX_MESSAGE:  # a value quoted from a hostile preset or chain must not flood the terminal
        message = message[: MAX_MESSAGE - 1] + "…"
    print(f"streamrestore: error: {message}", file=sys.stderr)
    return error.exit_code


def run_command(args: argparse.Namespace) -> int:
    from .media.images import is_image_path

    chain = args.config if args.config else args.chain
    if args.config and not args.config.endswith((".yaml", ".yml")):
        from .presets import available_presets

        if args.config not in available_presets():
            raise ConfigError(f"--config {args.config!r}: no such preset (bundled: {', '.join(available_presets())})")
    from .restore import PreparedChain

    run, _ = settings_from_args(args)
    prepared = PreparedChain(chain, run)
    if not args.quiet:
        for notice in prepared.notices:
            print(f"streamrestore: {notice}", file=sys.stderr)
    if is_image_path(args.input):
        return _run_image(args, prepared)
    return _run_video(args, prepared)


def _run_image(args: argparse.Namespace, prepared) -> int:
    source = Path(args.input)
    destination = args.output or str(source.with_name(f"{source.stem}.restored.png"))
    restored = prepared.restore_image_file(source, destination, overwrite=args.overwrite)
    if not args.quiet:
        print(f"wrote {destination} ({restored.shape[1]}×{restored.shape[0]})", file=sys.stderr)
    return 0


def _run_video(args: argparse.Namespace, prepared) -> int:
    from .jobs.progress import JobProgress

    from .durations import format_duration

    bar: list[JobProgress] = []
    drawing: list[bool] = []
    announced: list[bool] = []

    def on_start(reader) -> None:
        info = reader.info
        if not args.quiet:
            print(f"{args.input}: {info.width}×{info.height} {info.pix_fmt}, {info.color.describe()}", file=sys.stderr)
            drawing.append(True)
        # The job display: its ETA is the steady rate's (start-up and the first batch are not frame work).
        bar.append(JobProgress(info.frame_count, quiet=args.quiet, join=False))

    def on_frames(count: int) -> None:
        if not bar:
            return
        bar[0].frames(count)
        left = bar[0].estimate.eta()
        if not args.quiet and not announced and left is not None:
            # Once the steady rate is known (the second batch), say how long the rest will take, once.
            announced.append(True)
            per_frame = 1 / bar[0].estimate.rate()
            bar[0].write(f"expected: about {format_duration(left)} more for "
                         f"{bar[0].estimate.total - bar[0].estimate.restored} frames left "
                         f"({per_frame:.2f} s/frame at the steady rate)")

    def on_notice(message: str) -> None:
        print(f"streamrestore: {message}", file=sys.stderr)

    try:
        _, output = settings_from_args(args)
        report = prepared.restore_video(args.input, args.output, output, on_start=on_start, on_frames=on_frames,
                                        on_notice=on_notice)
    finally:
        if bar:
            bar[0].close()
        elif drawing:
            # Ctrl-C while tqdm drew its first line, before it was handed back: end that line, so
            # the error message gets one of its own.
            print(file=sys.stderr)
    for warning in report.warnings:
        print(f"streamrestore: warning: {warning}", file=sys.stderr)
    if report.damaged_frames:
        print(f"streamrestore: warning: {report.damaged_frames} damaged frame(s) in the input; "
              f"{report.repaired_frames} replaced by the previous good frame (frame count kept)", file=sys.stderr)
    if not args.quiet and report.output != "-":
        fps = report.frames / report.seconds if report.seconds else 0.0
        source = f" from {report.source_frames} source frames" if report.source_frames != report.frames else ""
        print(f"wrote {report.output}: {report.frames} frames{source}, {report.width}×{report.height} {report.codec} "
              f"{report.pix_fmt}, {report.color}, {report.seconds:.1f} s ({fps:.2f} fps)", file=sys.stderr)
    return 0


def _max_pixels(args: argparse.Namespace) -> int:
    from .engine.budget import DEFAULT_MAX_PIXELS

    if args.max_pixels is None:
        return DEFAULT_MAX_PIXELS
    if args.max_pixels < 0:
        raise ConfigError(f"--max-pixels must be 0 (no check) or more, got {args.max_pixels}")
    return args.max_pixels


def list_stages() -> str:
    from .presets import available_presets
    from .registry import Registry

    registry = Registry()
    lines = ["stages:"]
    for name, spec in sorted(registry.specs.items()):
        caps = spec.build({}).capabilities
        temporal = f", window -{caps.frames_before}/+{caps.frames_after}" if caps.is_temporal else ""
        lines.append(f"  {name:<14} [{spec.package}] {spec.summary}")
        lines.append(f"  {'':<14} scale ×{caps.scale}{temporal}, dtypes {'/'.join(caps.dtypes)}, "
                     f"devices {'/'.join(caps.devices)}, size multiple {caps.size_multiple}, "
                     f"{'tileable' if caps.tileable else 'not tiled'}")
        if spec.options:
            lines.append(f"  {'':<14} options: {spec.factory.describe_options()}")
    lines.append("field operations (first in a chain; applied to the decoded frames, may change the frame count):")
    from .media.interlace import FIELD_OPERATIONS, FIELD_SUMMARIES

    for name, options in FIELD_OPERATIONS.items():
        described = ", ".join(f"{key}={'|'.join(option.choices)} (default {option.default})"
                              for key, option in options.items())
        lines.append(f"  {name:<14} {FIELD_SUMMARIES[name]}")
        lines.append(f"  {'':<14} options: {described}")
    lines.append("aliases (photo content; --content anime and a GPU change the neural defaults):")
    for name, alias in sorted(registry.aliases.items()):
        settings = "".join(f":{k}={v}" for k, v in alias.settings.items())
        neural = "".join(f":{k}={v}" for k, v in alias.model_settings.items())
        twice = f" ×{alias.repeat}" if alias.repeat > 1 else ""
        after = "".join(f" after {stage}" for stage, _ in alias.lead)
        lines.append(f"  {name:<14} -> {alias.target}{settings}{twice}{after}  ({alias.summary}); "
                     f"{name}=WEIGHTS -> model{neural}")
    from .aliases import joined_pairs

    for (first, second), stages in joined_pairs().items():
        lines.append(f"  {first + ',' + second:<14} -> {','.join(stages)}  (joined: one network trained to do both; "
                     "any option keeps them apart)")
    lines.append("presets: " + ", ".join(available_presets()))
    for name, reason in sorted(registry.broken.items()):
        lines.append(f"broken plugin {name}: {reason}")
    return "\n".join(lines)


def list_known_models() -> str:
    from .models.catalog import list_models
    from .models.weights import availability

    lines = [f"{'NAME':<32} {'ARCH':<10} {'SCALE':<5} {'TASK':<10} {'CONTENT':<7} {'LICENCE':<12} AVAILABLE"]
    for entry in list_models():
        licence = entry.licence.split(" ", 1)[0]  # the SPDX id; the rest names the project
        lines.append(f"{entry.name:<32} {entry.arch:<10} {f'×{entry.scale}':<5} {entry.task:<10} "
                     f"{entry.content:<7} {licence:<12} {availability(entry)}")
    return "\n".join(lines)


def run_demo(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Serve the web demo (demo/, installed as streamrestore.demo) until Ctrl-C; ``argv``: its own options."""
    import importlib.util

    try:
        from .demo.settings import parse_arguments, settings_from_args
    except ModuleNotFoundError:
        raise StreamRestoreError("the web demo is not installed with this copy of streamrestore "
                                 "(pip install 'streamrestore[demo]')") from None
    options = parse_arguments(argv)  # --help prints the options and exits, Gradio or not
    args.debug = options.debug
    if importlib.util.find_spec("gradio") is None:
        raise StreamRestoreError("the web demo needs Gradio: pip install 'streamrestore[demo]'")
    from .demo.app import serve

    return serve(options.host, options.port, settings_from_args(options))


def _numbers(option: str, text: str, expected: str) -> tuple[float, ...]:
    """A comma-separated list of numbers from the command line; how many is the training loop's check."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{option} {text!r}: {expected}") from None


def run_train(args: argparse.Namespace) -> int:
    """Train, validate and export (streamrestore.training.loop); a finished run prints the weights' path."""
    from .training.loop import TrainConfig, train

    blur_odds = _numbers("--blur-odds", args.blur_odds, "three numbers separated by commas")
    blur_sigma = _numbers("--blur-sigma", args.blur_sigma, "two numbers separated by a comma")
    noise_sigma = _numbers("--noise-sigma", args.noise_sigma, "two numbers separated by a comma")
    shrink = _numbers("--shrink", args.shrink, "two numbers separated by a comma")
    config = TrainConfig(task=args.task, arch=args.arch, init=args.init, resize=args.resize, blur_odds=blur_odds,
                         blur_sigma=blur_sigma, after=args.after, video_share=args.video_share,
                         noise_sigma=noise_sigma, shrink=shrink, min_detail=args.min_detail, data=args.data,
                         out=args.out, steps=args.steps, batch=args.batch, patch=args.patch, lr=args.lr,
                         loss=args.loss, features=args.features, blocks=args.blocks, seed=args.seed,
                         val_every=args.val_every, resume=args.resume, stop_after=args.stop_after,
                         device=args.device)  # fmt: skip
    result = train(config, progress=not args.quiet)
    if result.weights is not None:
        print(f"wrote {result.weights} (EMA weights; use with --chain model:model={result.weights})", file=sys.stderr)
    else:
        print(f"stopped at step {result.step} of {args.steps}; --resume continues", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
