"""The weights this project trained itself and ships inside the streamrestore package, by name.

Each file lies in ``streamrestore/models/`` (float16 safetensors in the architecture's official key
layout, so the loader detects it like any user checkpoint) and is pinned here by sha256. How each was
trained — data, degradations, steps, device, time — and what it scores is in the README's model cards;
the exact settings are also in each file's safetensors metadata (``streamrestore.train.*``).
"""

from __future__ import annotations

from typing import NamedTuple

from .entry import ModelEntry, PackagedFile

_LICENCE = "MIT (trained by streamrestore on Debian wallpapers and scikit-image photos)"
_TUNED = "fine-tuned by streamrestore on Debian wallpapers and scikit-image photos"
_FROM_WAIFU2X = f"MIT (waifu2x, nagadomi; {_TUNED})"
_FROM_REALESRGAN = f"BSD-3-Clause (Real-ESRGAN animevideov3, xinntao; {_TUNED})"


class Shipped(NamedTuple):
    name: str
    filename: str  # in streamrestore/models/
    sha256: str
    arch: str
    scale: int
    task: str
    description: str
    licence: str = _LICENCE


_SHIPPED: list[Shipped] = [
    Shipped("denoise-nafnet16", "denoise-nafnet16.safetensors",
            "a6dce43fd540c84cce7ac4b3934e12df517077a9f257b7991856319f4ca2dbbd", "NAFNet", 1, "denoise",
            "blind denoiser: Gaussian σ 0–50, film grain, 4:2:0 video and JPEG'd noise (NAFNet width 16, 3.9 M)"),
    # Not a default: on the kit it gains +1.9 dB on Gaussian blur (the unsharp mask gains +2.85) and +0.3 dB on
    # camera shake (where the unsharp mask loses 2 dB). README, model cards.
    Shipped("deblur-nafnet16", "deblur-nafnet16.safetensors",
            "35aceb5605b1b4a71a02bc60a4c8013f114b3c433441b4d2f3fac526f0df5626", "NAFNet", 1, "deblur",
            "blind deblur: Gaussian, motion and camera-shake kernels (NAFNet width 16, 3.9 M)"),
    # The `deblur` default: a gate (38 k parameters, trained here with deblur-nafnet16 frozen) weighs per region that
    # network, the unsharp mask 6/0.8, Gaussian deconvolutions of σ 0.8/1.2/1.8/2.7 and the input. Kit: Gaussian
    # 32.21 (the unsharp mask 31.70), shake 26.88 (input 26.81; the unsharp mask 24.82); never below the input in
    # the held-out sweep.
    Shipped("deblur-nafnet16-gated", "deblur-nafnet16-gated.safetensors",
            "f8dc39b5c8590602b027edae1d92d0cfa0642fe4c55d025de7b608bb80c118d6", "GatedDeblur", 1, "deblur",
            "blind deblur: deblur-nafnet16, the unsharp mask, Gaussian deconvolutions or the input, chosen per region "
            "by a trained gate"),
    # denoise-nafnet16 fine-tuned twice for what noise is in old, small video (grain, 4:2:0, H.264 and 8×8 blocks at
    # low resolution) and plain noise: --task oldvideo, 2000 steps, then 300 of 1000 at 96 px, lr 1e-4, σ 1–40, a
    # third old video. Better at every σ of the kit and on its noisy clips; the denoise default. README, card.
    Shipped("denoise-nafnet16-video", "denoise-nafnet16-video.safetensors",
            "9d2c8cce47c1c163cd83a1cc5acf4b2a2bc15acfc633e06066d9c448e2181400", "NAFNet", 1, "denoise",
            "blind denoiser for photos and old video: noise σ 0–50, grain, 4:2:0, blocks (NAFNet width 16, 3.9 M)"),
    # Seed networks, trained here from scratch on the 2-core CPU, far short of their papers' budgets; by name
    # only (each is below its alias's default). README, model cards. SwinIR started as cubic interpolation
    # (training.loop.start_as_interpolation): ×2 33.19 dB, ×4 28.38 on the kit (bicubic 32.42 / 27.93).
    Shipped("sr2-swinir24", "sr2-swinir24.safetensors",
            "8224d5e4a7cef7713b29f57b11b88f055785cb4977f78144f7e57572fa19d591", "SwinIR", 2, "sr",
            "SwinIR-light ×2, narrowed (embed 24, 2×6 Swin layers, 0.19 M), trained here: a seed"),
    Shipped("sr4-swinir24", "sr4-swinir24.safetensors",
            "a150b09a6966bbce804cba04dceb1d6032ed0b30f0ddab71f1b391418b733565", "SwinIR", 4, "sr",
            "SwinIR-light ×4, narrowed (embed 24, 2×6 Swin layers, 0.20 M), trained here: a seed"),
    Shipped("denoise-restormer16", "denoise-restormer16.safetensors",
            "c927d46f931cf4396665f2b73d9a491255dcffe155fe147c1bc2f6f82a3d42fa", "Restormer", 1, "denoise",
            "Restormer blind denoiser, narrowed (dim 16, 1.1 M), trained here: a seed (needs the extra-arches extra)"),
    Shipped("deblur-mprnet16", "deblur-mprnet16.safetensors",
            "400c9c50374fbf8b6d5cc3169b7ceab3e44b2369263038d3bbd7a7e02e986fa5", "MPRNet", 1, "deblur",
            "MPRNet blind deblur, narrowed (n_feat 16, 0.41 M), trained here: a seed (needs the extra-arches extra)"),
    # Fine-tuned from our fidelity ×4 (the sr4-compact run) on the old-film degradations: 31.20 dB, tMAD 5.50 on
    # the kit's old-film clips (bicubic 30.33 / 6.23; the Compact 48 trained from scratch it replaces 30.64 / 5.67).
    Shipped("oldfilm-compact64", "oldfilm-compact64.safetensors",
            "df60fce05a9145f0545e5ad693533f3b52721cef24e4af9d920195442cd72fc9", "Compact", 4, "oldfilm",
            "old film ×4: blur, downscale, grain/noise and compression, twice (Compact 64×16, 0.62 M)",
            _FROM_REALESRGAN),
    # waifu2x's CUNet ×2 fine-tuned for fidelity on bicubic downscales: 35.61 dB on the kit's ×2 task (the
    # packaged CUNet 35.43, UpConv7 35.20); twice, 29.61 at ×4. README, model cards.
    Shipped("sr2-cunet", "sr2-cunet.safetensors",
            "1efcdbd797c77389e2f0412c1ea111da0b3aa9907685816ce2f484f74b5ad472", "CUNet", 2, "sr",
            "fidelity ×2 for photos: waifu2x CUNet fine-tuned on bicubic downscales (1.28 M)", _FROM_WAIFU2X),
    # The same for the CPU: waifu2x's UpConv7 photo ×2 fine-tuned, 35.33 dB (the packaged one 35.20) at its speed.
    Shipped("sr2-upconv7", "sr2-upconv7.safetensors",
            "09e885b5899e6c15d7a0b99ff95ba6ccd655a8ac96df3e8f5e3b315ce59e4005", "UpConv7", 2, "sr",
            "fast fidelity ×2 for photos: waifu2x UpConv7 fine-tuned on bicubic downscales (0.55 M)", _FROM_WAIFU2X),
    # Not a default: 29.39 dB on the kit's ×4 task, below UpConv7 ×2 twice (29.53), but 1.43 s for a 480×270
    # frame against 4.64 on 2 CPU cores; the fast fidelity ×4. README, model cards.
    Shipped("sr4-compact", "sr4-compact.safetensors",
            "b54217f28689e89a1d80f89918a8d7f09d1f01b9af5fe27c6b6ca3772eb140eb", "Compact", 4, "sr",
            "fast fidelity ×4 for photos: Real-ESRGAN Compact fine-tuned on bicubic downscales (0.62 M)",
            _FROM_REALESRGAN),
]


def trained_entries() -> list[ModelEntry]:
    return [
        ModelEntry(name=s.name, description=s.description, filename=s.filename, sha256=s.sha256, licence=s.licence,
                   packaged=PackagedFile("streamrestore", f"models/{s.filename}"), arch=s.arch, scale=s.scale,
                   task=s.task, content="photo")  # fmt: skip
        for s in _SHIPPED
    ]
