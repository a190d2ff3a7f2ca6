"""`denoise,sr4` joined (one network trained to denoise and upscale) against the two networks apart, on noisy photos.

    python benchmarks/joined_chain.py [--sigmas 0,5,10,20]

The development kit's ×4 inputs (../shared/data/images/*/lr_x4.png, MATLAB-bicubic quarters of real photos)
get seeded Gaussian noise of each σ (0..255 scale), then go through `denoise,sr4` as it runs by default
(joined: `mc-denoise,oldfilm`; on a still picture `mc-denoise` has no neighbours and passes it through), the
same aliases kept apart (`denoise:keep_input=0.03,sr4`: any option keeps them apart; 0.03 is the alias's own
value), `sr4` alone and OpenCV's bicubic. Prints one Markdown row per σ: PSNR-Y against the clean photo
(crop border 4), by the kit's ``score.py``. The kit's old-film clips are `benchmarks/dev_kit.py`'s
(`--task video_oldfilm --chain denoise,sr4`). Needs the kit; without it, says so and exits 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from streamrestore.restore import PreparedChain

KIT = Path(__file__).resolve().parents[2] / "shared" / "data"
CHAINS = {"joined (`denoise,sr4`)": "denoise,sr4", "apart": "denoise:keep_input=0.03,sr4", "`sr4` alone": "sr4"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sigmas", default="0,5,10,20", help="noise levels, comma-separated (default 0,5,10,20)")
    args = parser.parse_args()
    items = sorted(path.parent for path in KIT.glob("images/*/lr_x4.png"))
    if not items or not (KIT / "score.py").exists():
        print(f"the development kit (photos and score.py) is not at {KIT}; nothing to measure", file=sys.stderr)
        return 1
    sys.path.insert(0, str(KIT))
    from score import compare, load_media  # the kit's decoding and metrics

    prepared = {name: PreparedChain(chain) for name, chain in CHAINS.items()}
    print(*prepared["joined (`denoise,sr4`)"].notices, sep="\n", end="\n\n")
    seconds = dict.fromkeys(CHAINS, 0.0)
    print("| noise σ | " + " | ".join(CHAINS) + " | bicubic |")
    print("|---:|" + "---:|" * (len(CHAINS) + 1))
    for sigma in (float(s) for s in args.sigmas.split(",")):
        scores: dict[str, list[float]] = {name: [] for name in [*CHAINS, "bicubic"]}
        for item in items:
            small, clean = load_media(str(item / "lr_x4.png"))[0][0], load_media(str(item / "gt.png"))[0]
            noise = np.random.default_rng(7).normal(0.0, sigma, small.shape)
            noisy = np.clip(np.rint(small + noise), 0, 255).astype(np.uint8)
            for name, chain in prepared.items():
                started = time.perf_counter()
                restored = chain.restore_array(noisy)
                seconds[name] += time.perf_counter() - started
                scores[name].append(compare(restored[None], clean, crop_border=4)["psnr_y"])
            bicubic = cv2.resize(noisy, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
            scores["bicubic"].append(compare(bicubic[None], clean, crop_border=4)["psnr_y"])
        print(f"| {sigma:g} | " + " | ".join(f"{np.mean(v):.2f}" for v in scores.values()) + " |", flush=True)
    count = len(items) * len(args.sigmas.split(","))
    print("\nseconds per photo: " + ", ".join(f"{name} {s / count:.2f}" for name, s in seconds.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
