"""Scores chains on the development evaluation kit (../shared/data) with the kit's own score.py.

    python benchmarks/dev_kit.py --task denoise_s25 --chain nlm-denoise:strength=15
    python benchmarks/dev_kit.py --task video_noisy --chain tdenoise:strength=12 --task video_noisy --chain denoise
    python benchmarks/dev_kit.py --classical          # the built-in classical chains on every task

Each restored result is written losslessly (PNG, or FFV1 4:4:4 for clips) to a temporary folder and
scored with ``score.py --json``; the script prints one Markdown row per (task, chain): mean PSNR-Y,
SSIM-Y, tMAD-Y for clips, and seconds per frame. Exits with a message if the kit is not there.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@dataclass(frozen=True)
class Task:
    name: str
    inputs: str
    """Input file name inside each item's folder."""
    crop: int
    video: bool = False


TASKS = {
    t.name: t
    for t in [
        Task("sr2", "lr_x2.png", 2),
        Task("sr4", "lr_x4.png", 4),
        Task("denoise_s15", "noise_s15.png", 0),
        Task("denoise_s25", "noise_s25.png", 0),
        Task("denoise_s50", "noise_s50.png", 0),
        Task("deblur_gauss", "blur_gauss.png", 0),
        Task("deblur_motion", "blur_motion.png", 0),
        Task("jpeg_q20", "jpeg_q20.jpg", 0),
        Task("video_noisy", "noisy_s25.mp4", 0, video=True),
        Task("video_oldfilm", "oldfilm_x4.mp4", 4, video=True),
    ]
}

CLASSICAL = [
    ("denoise_s15", "nlm-denoise:strength=8"),
    ("denoise_s25", "nlm-denoise:strength=15"),
    ("denoise_s50", "nlm-denoise:strength=30"),
    ("sr2", "sr2:method=bicubic"),
    ("sr2", "sr2"),
    ("sr4", "sr4"),
    ("deblur_gauss", "deblur"),
    ("deblur_motion", "deblur"),
    ("jpeg_q20", "nlm-denoise:strength=4"),
    ("video_noisy", "nlm-denoise:strength=18"),
    ("video_noisy", "tdenoise:strength=12"),
    ("video_oldfilm", "sr4"),
    ("video_oldfilm", "old_film"),
]


def score(restored: Path, reference: Path, crop: int) -> dict:
    result = subprocess.run(
        [sys.executable, str(KIT / "score.py"), str(restored), str(reference), "--crop-border", str(crop), "--json"],
        capture_output=True, text=True, check=True,
    )
    return json.loads(result.stdout)


def run_task(task: Task, chain: str, workdir: Path) -> dict:
    from streamrestore import read_image, restore_video, write_image
    from streamrestore.restore import OutputSettings, PreparedChain

    folder = KIT / ("videos" if task.video else "images")
    items = sorted(p for p in folder.iterdir() if (p / task.inputs).exists())
    scores, seconds, frames = [], 0.0, 0
    prepared = None if task.video else PreparedChain(chain)  # built once: loading weights is not per-frame time
    for item in items:
        source = item / task.inputs
        if task.video:
            out = workdir / f"{item.name}.mkv"
            report = restore_video(str(source), str(out), chain,
                                   output=OutputSettings(codec="ffv1", pix_fmt="yuv444p", overwrite=True))
            seconds += report.seconds
            frames += report.frames
            reference = item / "gt.mkv"
        else:
            out = workdir / f"{item.name}.png"
            started = time.perf_counter()
            write_image(out, prepared.restore_array(read_image(source)))
            seconds += time.perf_counter() - started
            frames += 1
            reference = item / "gt.png"
        scores.append(score(out, reference, task.crop))
    mean = lambda key: sum(s[key] for s in scores) / len(scores)  # noqa: E731
    row = {"task": task.name, "chain": chain, "psnr_y": mean("psnr_y"), "ssim_y": mean("ssim_y"),
           "s_per_frame": seconds / frames, "items": len(scores)}
    if task.video:
        row["tmad_y"] = mean("tmad_y")
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", default=[], choices=sorted(TASKS))
    parser.add_argument("--chain", action="append", default=[])
    parser.add_argument("--classical", action="store_true", help="score the classical chains on every task")
    args = parser.parse_args()
    if not (KIT / "score.py").exists():
        print(f"the development kit is not at {KIT}; nothing to score", file=sys.stderr)
        return 2
    pairs = list(zip(args.task, args.chain)) + (CLASSICAL if args.classical else [])
    if not pairs:
        parser.error("give --task/--chain pairs or --classical")
    print("| task | chain | PSNR-Y | SSIM-Y | tMAD-Y | s/frame |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, chain in pairs:
            row = run_task(TASKS[name], chain, Path(tmp))
            tmad = f"{row['tmad_y']:.3f}" if "tmad_y" in row else ""
            print(f"| {name} | `{chain}` | {row['psnr_y']:.2f} | {row['ssim_y']:.4f} | {tmad} | {row['s_per_frame']:.3f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
