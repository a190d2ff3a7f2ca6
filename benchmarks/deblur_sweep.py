"""Deblur chains against blur strength and kind, on photos held out from training (not the dev kit).

    python benchmarks/deblur_sweep.py
    python benchmarks/deblur_sweep.py --chain deblur --chain model=deblur-nafnet16 --chain sharpen

The dev kit has one Gaussian blur (σ 1.6) and one camera-shake kernel. This sweep asks the question a user
with unknown footage asks, "does this chain ever make my picture worse?": each scikit-image photo on the
evaluation kits' exclusion list and never in the dev kit (astronaut, coffee) is blurred by Gaussians from
nearly sharp to strong, by straight streaks and by seeded camera-shake paths (the kernels of
``streamrestore train --task deblur``), rounded to 8 bits, restored by each chain through
``PreparedChain`` (built once per chain), and scored by PSNR-Y (BT.601, as the kit's ``score.py``) against
the clean photo.
Prints one Markdown row per blur: the input's PSNR, then each chain's gain over the input (dB). The photos come
with scikit-image, which the test extra installs (``pip install ".[test]"``).
"""

from __future__ import annotations

import argparse
import hashlib
import math
from pathlib import Path

import numpy as np

try:
    import skimage.data as skdata
except ImportError:
    raise SystemExit('benchmarks/deblur_sweep.py needs scikit-image: pip install ".[test]"') from None

from streamrestore.restore import PreparedChain
from streamrestore.training.data import excluded_digests
from streamrestore.training.degrade import convolve, gaussian_kernel, motion_kernel, shake_kernel

PHOTOS = ("astronaut", "coffee")
KERNEL = 25
BLURS = (
    [(f"Gaussian σ {s}", lambda s=s: gaussian_kernel(s, KERNEL)) for s in (0.5, 1.0, 1.6, 2.5)]
    + [(f"streak {n} px", lambda n=n: motion_kernel(n, math.radians(30), KERNEL)) for n in (5, 12)]
    + [(f"shake {n} px", lambda n=n: shake_kernel(np.random.default_rng(n), n, KERNEL)) for n in (5, 10, 15, 20)]
)


def held_out(name: str) -> np.ndarray:
    source = Path(skdata.__file__).parent / f"{name}.png"
    if hashlib.sha256(source.read_bytes()).hexdigest() not in excluded_digests():
        raise SystemExit(f"{name} is not on the exclusion list: it may have been trained on")
    return getattr(skdata, name)()


def luma(rgb: np.ndarray) -> np.ndarray:
    return 16.0 + rgb.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255.0


def psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255.0**2 / np.mean((luma(a) - luma(b)) ** 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chain", action="append", help="a chain to score (repeatable; default: deblur, its two "
                        "halves model=deblur-nafnet16 and the unsharp mask sharpen:amount=6:radius=0.8, and sharpen)")
    chains = parser.parse_args().chain or ["deblur", "model=deblur-nafnet16", "sharpen:amount=6:radius=0.8", "sharpen"]
    photos = [held_out(name) for name in PHOTOS]
    prepared = {chain: PreparedChain(chain) for chain in chains}  # each network is read once, not per picture
    print("| blur | input PSNR-Y | " + " | ".join(f"`{c}` gain" for c in chains) + " |")
    print("|---|---|" + "---|" * len(chains))
    worst = {c: math.inf for c in chains}
    for label, make_kernel in BLURS:
        kernel = make_kernel()
        blurred = [np.clip(np.round(convolve(p.astype(np.float32), kernel)), 0, 255).astype(np.uint8) for p in photos]
        base = np.mean([psnr_y(b, p) for b, p in zip(blurred, photos)])
        gains = []
        for chain in chains:
            gain = np.mean([psnr_y(prepared[chain].restore_array(b), p) for b, p in zip(blurred, photos)]) - base
            worst[chain] = min(worst[chain], gain)
            gains.append(gain)
        print(f"| {label} | {base:.2f} | " + " | ".join(f"{g:+.2f}" for g in gains) + " |", flush=True)
    print("| **worst gain** | | " + " | ".join(f"**{worst[c]:+.2f}**" for c in chains) + " |")


if __name__ == "__main__":
    main()
