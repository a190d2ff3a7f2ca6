"""The GPU check: every default chain agrees with the CPU, and the speed of a ×2 and a ×4 chain at 1080p.

    python benchmarks/gpu_check.py                          # on a CUDA machine: < 8 minutes on an H200
    python benchmarks/gpu_check.py --device cpu --small     # the CPU smoke run (tests/test_gpu_check.py)

(a) Agreement. Every default alias (photo and anime tables, as a GPU run resolves them), every preset
    in configs/, a CUDA→CPU→CUDA chain (``sr2,nlm,sr2``: ``nlm`` runs on the CPU), ``sr2,sharpen,sr2``,
    and a 10-bit clip through ``denoise`` and ``sr2``, each restored twice: on ``--device`` and on the
    CPU (float32, the reference), losslessly (FFV1, the source's pixel format). The outputs are decoded
    and compared frame by frame: same frame count and timestamps, the largest difference in output
    levels, and the worst frame's PSNR. A chain agrees when every frame is within ``--max-levels``
    levels (default 12 at 8 bits: bfloat16 networks differ by up to ~2, float16 ones by < 1, a frame
    read before its copy finished by far more) and above ``--min-psnr`` dB.
(b) Speed, for a ×2 (``sr2``) and a ×4 (``sr4``) chain on a 1080p clip (``--small``: 64×48): decode,
    model, encode and end-to-end fps, efficiency, engine vs the naive loop (benchmarks/throughput.py's
    parts, reused), GPU utilisation during the end-to-end run (pynvml or nvidia-smi, sampled every
    0.2 s) and peak device memory.

Everything goes to one JSON file (``--out``, default gpu_check.json) and a Markdown summary is
printed. The exit status is 1 when a chain disagrees.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: make_clip, throughput

import make_clip  # noqa: E402
import throughput  # noqa: E402

from streamrestore.aliases import CONTENTS, default_aliases  # noqa: E402
from streamrestore.engine.chain import ChainRunner  # noqa: E402
from streamrestore.engine.placement import Placement, configure_cpu_threads  # noqa: E402
from streamrestore.registry import Registry  # noqa: E402
from streamrestore.restore import OutputSettings, PreparedChain, RunSettings, encode_settings  # noqa: E402

PRESETS = Path(__file__).resolve().parents[1] / "configs"


# -- clips ------------------------------------------------------------------------------------------
def write_clip(path: Path, width: int, height: int, frames: int, ten_bit: bool = False) -> Path:
    """A panned photo: H.264 4:2:0 8-bit, or FFV1 4:2:0 10-bit (a 16-bit picture quantised once)."""
    if not ten_bit:
        make_clip.write_clip(str(path), width, height, frames, 24, "astronaut", "veryfast", 18)
        return path
    canvas = make_clip.photo_canvas("astronaut", width, height).astype(np.uint16) * 257
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p10le"
        stream.codec_context.colorspace = stream.codec_context.color_primaries = stream.codec_context.color_trc = 1
        for index in range(frames):
            rgb = np.ascontiguousarray(make_clip.frame_at(canvas, index, width, height))
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le").reformat(
                format="yuv420p10le", dst_colorspace=av.video.reformatter.Colorspace.ITU709)
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def decoded(path: Path) -> tuple[list[np.ndarray], list[int | None], int]:
    """Every frame as packed RGB at the file's depth, its timestamp, and the depth."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        depth = max(c.bits for c in stream.codec_context.format.components)
        fmt = "rgb48le" if depth > 8 else "rgb24"
        frames, stamps = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format=fmt))
            stamps.append(frame.pts)
    return frames, stamps, depth


# -- (a) agreement ----------------------------------------------------------------------------------
def chains() -> list[tuple[str, str, str]]:
    """(label, chain, content): every alias of both tables, every preset, and the mixed-device chains."""
    listed: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for content in CONTENTS:
        for name, alias in default_aliases(content, accelerated=True).items():
            key = (alias.target, json.dumps(alias.settings, sort_keys=True) + str(alias.repeat))
            if key not in seen:  # the anime table repeats the classical and shared aliases
                seen.add(key)
                listed.append((f"{name} ({content})" if content != "photo" else name, name, content))
    for preset in sorted(PRESETS.glob("*.yaml")):
        listed.append((f"preset {preset.stem}", preset.stem, "photo"))
    listed.append(("sr2,nlm,sr2 (CUDA→CPU→CUDA)", "sr2,nlm,sr2", "photo"))
    listed.append(("sr2,sharpen,sr2", "sr2,sharpen,sr2", "photo"))
    return listed


def restore(source: Path, out: Path, chain: str, content: str, device: str, precision: str | None) -> float:
    registry = Registry(content=content, accelerated=True)  # the GPU tables on both devices: same networks
    started = time.perf_counter()
    prepared = PreparedChain(chain, RunSettings(device=device, precision=precision, content=content), registry)
    prepared.restore_video(str(source), str(out), OutputSettings(codec="ffv1", overwrite=True))
    return time.perf_counter() - started


def compare(label: str, source: Path, chain: str, content: str, device: str, scratch: Path,
            max_levels: float, min_psnr: float) -> dict:
    name = "".join(c if c.isalnum() else "_" for c in label)
    on_device, on_cpu = scratch / f"{name}.device.mkv", scratch / f"{name}.cpu.mkv"
    entry: dict = {"chain": chain, "content": content, "source": source.name}
    try:
        entry["device_seconds"] = restore(source, on_device, chain, content, device, None)
        entry["cpu_seconds"] = restore(source, on_cpu, chain, content, "cpu", "float32")
    except Exception as error:  # reported, and the check goes on with the next chain
        entry.update(agree=False, error=f"{type(error).__name__}: {error}")
        return entry
    ours, stamps, depth = decoded(on_device)
    reference, reference_stamps, _ = decoded(on_cpu)
    peak = (1 << depth) - 1
    worst_levels, worst_psnr = 0.0, math.inf
    for got, want in zip(ours, reference):
        difference = np.abs(got.astype(np.float64) - want.astype(np.float64))
        worst_levels = max(worst_levels, float(difference.max()) * 255 / peak)  # in 8-bit levels
        mse = float((difference**2).mean())
        worst_psnr = min(worst_psnr, math.inf if mse == 0 else 10 * math.log10(peak**2 / mse))
    entry.update(frames=len(ours), depth=depth, max_levels_8bit=round(worst_levels, 3),
                 min_psnr=None if math.isinf(worst_psnr) else round(worst_psnr, 2))
    entry["agree"] = (len(ours) == len(reference) and stamps == reference_stamps and worst_levels <= max_levels
                      and worst_psnr >= min_psnr)
    return entry


# -- (b) speed --------------------------------------------------------------------------------------
class Utilisation:
    """The GPU's utilisation sampled every 0.2 s in a thread (pynvml, else nvidia-smi); None without either."""

    def __init__(self, device: torch.device) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._read = self._reader(device)
        if self._read is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    @staticmethod
    def _reader(device: torch.device):
        if device.type != "cuda":
            return None
        index = device.index or 0
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:  # not installed, or no NVML: the command line tool instead
            pass
        if shutil.which("nvidia-smi") is None:
            return None
        command = ["nvidia-smi", f"--id={index}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        return lambda: float(subprocess.run(command, capture_output=True, text=True, timeout=5).stdout.split()[0])

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.samples.append(self._read())
            except Exception:
                return

    def mean(self) -> float | None:
        self._stop.set()
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def speed(source: Path, chain: str, device: str, scratch: Path, frames: int) -> dict:
    """throughput.py's parts for one chain: decode, model, end-to-end, encode, naive."""
    prepared = PreparedChain(chain, RunSettings(device=device))
    built = prepared.stages
    runner = ChainRunner(built, device)
    placement = runner.input_placement
    meter = throughput.Meter(placement.device)
    figures: dict = {"chain": chain, "device": str(placement.device), "dtype": str(placement.dtype)}
    probe = throughput.MediaReader(str(source))
    info = probe.info
    probe.close()
    figures["input"] = f"{info.width}×{info.height}"
    count = [0]
    with meter.part("decode-only", count):
        images, stamps, count[0] = throughput.decode_all(str(source), frames)
    warm = ChainRunner(built, device)
    throughput.model_only(warm, images[:1], 1)  # untimed: kernels chosen, memory allocated
    batch = throughput.cpu_batch(info.height, info.width) if placement.device.type == "cpu" else 4
    with meter.part("model-only", [len(images)]):
        throughput.model_only(runner, images, batch)
        if placement.device.type == "cuda":
            torch.cuda.synchronize(placement.device)
    restored, done = scratch / f"e2e-{chain}.mkv", [0]
    busy = Utilisation(placement.device)
    with meter.part("end-to-end", done):
        report = prepared.restore_video(str(source), str(restored), OutputSettings(overwrite=True))
        done[0] = report.frames
    figures["gpu_utilisation_percent"] = busy.mean()
    settings = encode_settings(prepared.plan.output, OutputSettings())
    width, height = info.width * runner.scale, info.height * runner.scale
    video = throughput.OutputVideo(width, height, throughput.choose_pix_fmt(settings, info, width, height),
                                   info.color, info)
    outputs = throughput.restored_frames(str(restored), len(images))
    with meter.part("encode-only", [len(outputs)]):
        throughput.encode(str(scratch / f"encode-{chain}.mkv"), outputs, stamps, video, settings)
    del outputs
    naive_runner = ChainRunner(PreparedChain(chain, RunSettings(device=device)).stages, device)
    for node in naive_runner.nodes:  # float32, as the baseline script runs
        node.placement = Placement(node.placement.device, torch.float32)
        node.stage.to(node.placement.device, torch.float32)
    naive_count = [0]
    with meter.part("naive", naive_count):
        naive_count[0] = throughput.naive(str(source), str(scratch / f"naive-{chain}.mkv"), naive_runner, settings,
                                          runner.scale)
    for name, figure in meter.figures.items():
        figures[name] = {"fps": round(figure.fps, 3), "frames": figure.frames,
                         "cpu_s_per_frame": round(figure.cpu_seconds / max(1, figure.frames), 4),
                         "peak_device_mib": None if figure.peak_device is None else round(figure.peak_device / 2**20)}
    fps = {name: meter.figures[name].fps for name in ("decode-only", "model-only", "encode-only", "end-to-end")}
    figures["efficiency"] = round(fps["end-to-end"] / min(fps["decode-only"], fps["model-only"], fps["encode-only"]), 3)
    figures["engine_vs_naive"] = round(fps["end-to-end"] / meter.figures["naive"].fps, 3)
    return figures


# -- report -----------------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    lines = [f"GPU check {result['date']}: {result['machine']}", "",
             "| chain | source | frames | max diff (8-bit levels) | worst PSNR dB | device s | CPU s | agrees |",
             "|---|---|---|---|---|---|---|---|"]
    for entry in result["agreement"]:
        if "error" in entry:
            lines.append(f"| {entry['label']} | {entry['source']} | | | | | | **no**: {entry['error'][:80]} |")
            continue
        lines.append(f"| {entry['label']} | {entry['source']} | {entry['frames']} | {entry['max_levels_8bit']} | "
                     f"{entry['min_psnr'] or '∞'} | {entry['device_seconds']:.1f} | {entry['cpu_seconds']:.1f} | "
                     f"{'yes' if entry['agree'] else '**no**'} |")
    lines += ["", "| chain | input | decode fps | model fps | encode fps | end-to-end fps | efficiency | "
                  "engine/naive | GPU util % | peak device MiB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for figures in result["speed"]:
        peak = max((f["peak_device_mib"] or 0) for f in figures.values() if isinstance(f, dict) and "fps" in f)
        lines.append(f"| {figures['chain']} | {figures['input']} | {figures['decode-only']['fps']} | "
                     f"{figures['model-only']['fps']} | {figures['encode-only']['fps']} | {figures['end-to-end']['fps']} | "
                     f"{figures['efficiency']} | {figures['engine_vs_naive']} | {figures['gpu_utilisation_percent']} | "
                     f"{peak if figures['device'] != 'cpu' else 'n/a'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="the device checked against the CPU (default cuda)")
    parser.add_argument("--small", action="store_true", help="tiny clips and few frames (the CPU smoke run)")
    parser.add_argument("--out", default="gpu_check.json", help="where the figures go (JSON)")
    parser.add_argument("--max-levels", type=float, default=12.0, help="largest difference that agrees (8-bit levels)")
    parser.add_argument("--min-psnr", type=float, default=40.0, help="worst frame's PSNR that agrees (dB)")
    parser.add_argument("--only", action="append", default=[], help="check only these chains (their labels, as printed)")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    if args.device != "cpu" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device here (use --device cpu for the smoke run)")
    threads = configure_cpu_threads()
    small = (48, 32, 3) if args.small else (128, 96, 6)  # agreement clips: width, height, frames
    fast = (64, 48, 3) if args.small else (1920, 1080, 48)  # speed clip
    name = torch.cuda.get_device_name() if args.device != "cpu" else platform.processor() or platform.machine()
    result: dict = {"date": str(datetime.date.today()), "machine": f"{name}, {os.cpu_count()} cores ({threads} threads), "
                    f"torch {torch.__version__}, PyAV {av.__version__}", "device": args.device,
                    "agreement": [], "speed": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        eight = write_clip(scratch / "clip8.mp4", *small)
        ten = write_clip(scratch / "clip10.mkv", *small, ten_bit=True)
        checks = [(label, chain, content, eight) for label, chain, content in chains()]
        checks += [("denoise, 10-bit", "denoise", "photo", ten), ("sr2, 10-bit", "sr2", "photo", ten)]
        for label, chain, content, source in checks:
            if args.only and label not in args.only:
                continue
            entry = {"label": label, **compare(label, source, chain, content, args.device, scratch,
                                               args.max_levels, args.min_psnr)}
            print(json.dumps(entry), flush=True)
            result["agreement"].append(entry)
        if not args.skip_speed:
            clip = write_clip(scratch / "speed.mp4", *fast)
            for chain in ("sr2", "sr4"):
                print(f"speed: {chain} on {fast[0]}×{fast[1]}", flush=True)
                result["speed"].append(speed(clip, chain, args.device, scratch, fast[2]))
    result["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(markdown(result))
    print(f"{result['seconds']} s; figures in {args.out}")
    return 0 if all(entry["agree"] for entry in result["agreement"]) else 1


if __name__ == "__main__":
    sys.exit(main())
