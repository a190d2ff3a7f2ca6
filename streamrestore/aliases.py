"""The alias tables: the short chain names users type (``denoise``, ``sr4``) and the stage and options each
stands for, per content (photo, anime) and device (GPU or CPU), with the measurements that chose them.

Stage discovery is ``registry``'s; this module only says what each name means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

MODEL_STAGE = "model"
"""The stage an alias given a weights file (``sr4=x.pth``) resolves to."""


@dataclass(frozen=True)
class Alias:
    """A short chain name (``denoise``, ``sr4``) that points at a stage with preset options."""

    target: str
    settings: dict[str, Any]
    summary: str
    model_settings: dict[str, Any] = field(default_factory=dict)
    """Preset options of the ``model`` stage, used instead when the user gives the alias a weights file."""
    repeat: int = 1
    """How many times the stage is applied in a row (``sr4`` = a ×2 network twice)."""
    lead: tuple[tuple[str, dict[str, Any]], ...] = ()
    """Stages, (name, options), that run before the alias's own: ``denoise`` first averages each video frame
    with its motion-compensated neighbours. A user's weights file (``denoise=x.pth``) runs without them."""


CONTENTS = ("photo", "anime")


def _model(name: str, summary: str, repeat: int = 1, **settings: Any) -> tuple[str, dict[str, Any], str, int]:
    return MODEL_STAGE, {"model": name, **settings}, summary, repeat


# The names users type, chosen by measurement on the development kit (README, "Default models";
# benchmarks/dev_kit.py reproduces every figure). Re-pointing an alias changes nothing else: the
# pipeline only ever sees the stage it resolves to. Given a weights file (`sr4=x.pth`) an alias keeps
# its meaning as an output scale: a ×2 network is resized to ×4, a ×4 network brought back to ×1.
# Where the GPU default differs, it is the better-scoring network that is too slow for the CPU.
_CLASSICAL = {
    "nlm": ("nlm-denoise", {}, "non-local means, strength from the estimated noise"),
    "tdenoise": ("nlm-temporal", {}, "temporal non-local means (5-frame window)"),
    "sharpen": ("unsharp", {}, "gentle unsharp mask"),
}
_NEURAL = {
    # ×2: ours, waifu2x's UpConv7 photo fine-tuned on bicubic downscales, 35.33 dB (the packaged one 35.20) at the
    # same speed. ×4: the packaged one twice, 29.53 (ours twice 29.51; our Compact ×4, faster, 29.39).
    ("photo", False): {
        "sr2": _model("sr2-upconv7", "×2: streamrestore's fidelity UpConv7 (fine-tuned waifu2x)"),
        "sr3": _model("sr2-upconv7", "×3: streamrestore's fidelity UpConv7 ×2, resized", outscale=3),
        "sr4": _model("waifu2x-upconv7-photo-x2", "×4: waifu2x UpConv7 photo ×2, twice", repeat=2),
    },
    # Ours: waifu2x's CUNet fine-tuned on bicubic downscales; 35.61 dB at ×2 (the packaged CUNet 35.43) and,
    # twice, 29.61 at ×4 (29.58).
    ("photo", True): {
        "sr2": _model("sr2-cunet", "×2: streamrestore's fidelity CUNet (fine-tuned waifu2x)"),
        "sr3": _model("sr2-cunet", "×3: streamrestore's fidelity CUNet ×2, resized", outscale=3),
        "sr4": _model("sr2-cunet", "×4: streamrestore's fidelity CUNet ×2, twice", repeat=2),
    },
    ("anime", False): {
        "sr2": _model("waifu2x-upconv7-art-x2", "×2: waifu2x UpConv7 anime-style art"),
        "sr3": _model("realesr-animevideov3-x3", "×3: Real-ESRGAN animevideov3"),
        "sr4": _model("realesr-animevideov3-x4", "×4: Real-ESRGAN animevideov3"),
    },
    ("anime", True): {
        "sr2": _model("realcugan-se-x2", "×2: Real-CUGAN"),
        "sr3": _model("realcugan-se-x3", "×3: Real-CUGAN"),
        "sr4": _model("realesrgan-x4plus-anime", "×4: Real-ESRGAN x4plus anime"),
    },
}
# The same network whatever the content and device.
_EVERY_TABLE = {
    # Our own blind denoiser for photos and old video (trained here, shipped in the package), with 3 % of the
    # input mixed back in: the network smooths a little too much, most at low noise. On the kit's photos
    # 33.98/31.79/28.87 dB at σ15/25/50 (the network alone 33.88/31.71/28.86) against 31.89/28.84/25.76 for NLM
    # tuned to each level; on its noisy clips 37.29 dB (tMAD 3.21; alone 37.31 / 3.15) against per-frame NLM's
    # 33.07 (4.41). `nlm` keeps the classical one.
    "denoise": _model("denoise-nafnet16-video", "blind denoiser, noise up to σ 50, grain and old-video blocks: "
                      "streamrestore's NAFNet 16", keep_input=0.03),
    # Ours too: on the kit's old-film clips ×4 31.20 dB, tMAD 5.50, against bicubic's 30.33 / 6.23.
    "oldfilm": _model("oldfilm-compact64", "old film ×4: grain, blur and compression removed while upscaling "
                                           "(streamrestore's Compact 64)"),
    "jpeg": _model("waifu2x-cunet-noise2-x1", "JPEG/compression artefacts: waifu2x CUNet noise 2"),
    # Ours: a trained gate weighs, region by region, our deblur network, the unsharp mask that was `deblur` before
    # (amount 6, radius 0.8, tuned on one kit photo), Gaussian deconvolutions of four σ and the input. Kit: Gaussian
    # 32.21 (the unsharp mask 31.70), camera shake 26.88 (input 26.81, the unsharp mask 24.82); in the held-out sweep
    # never below the input (the unsharp mask: −15 dB). The unsharp mask alone is `sharpen:amount=6:radius=0.8`.
    "deblur": _model("deblur-nafnet16-gated", "blind deblur (defocus, motion, camera shake): streamrestore's "
                     "NAFNet 16, the unsharp mask, Gaussian deconvolutions or the input, chosen per region"),
    # The perceptual ×4 (sharpest by eye, below bicubic in PSNR; see README), its colour shift corrected by
    # back-projection (+1.29 dB on the kit, above bicubic).
    "sr4-gan": _model("realesrgan-x4plus", "×4 perceptual: Real-ESRGAN x4plus (GAN), colours kept", color_fix=True),
}
# Stages an alias runs before its own. `denoise` on video first averages each frame with its 3 neighbours on
# either side, moved back into place by optical flow (`mc-denoise`; a still image has none and passes through):
# grain and noise are new in every frame, so time gives the network a cleaner picture without smoothing it. Kit:
# noisy clips 37.29 -> 38.68 dB (tMAD 3.21 -> 2.32); old film, the two networks apart, 30.39 -> 30.52 (README).
_LEAD = {"denoise": (("mc-denoise", {}),)}
# Pairs of aliases that run as one network trained for both jobs, with the first alias's lead stages: a denoiser
# and then a ×4 network trained on clean pictures lose what the denoiser smoothed away at low resolution and
# sharpen what it left. Kit, `denoise,sr4` on the old-film clips: 30.52 dB (tMAD 5.53) as two networks, 31.36
# (5.28) joined (bicubic 30.33 / 6.23); on the kit's ×4 photos with noise σ 0/5/10/20 the joined network is
# 0.75-0.93 dB ahead (benchmarks/joined_chain.py). Any option on either element keeps them apart.
_JOINED = {("denoise", "sr4"): ("mc-denoise", "oldfilm")}
_OUTSCALE = {"denoise": 1, "nlm": 1, "tdenoise": 1, "deblur": 1, "sharpen": 1, "jpeg": 1, "oldfilm": 4,
             "sr2": 2, "sr3": 3, "sr4": 4, "sr4-gan": 4}


def joined_pairs(content: str = "photo") -> dict[tuple[str, str], tuple[str, ...]]:
    """Alias pairs that run as other stages when written side by side without options (photo content only:
    the joined network was trained on photographs)."""
    return dict(_JOINED) if content == "photo" else {}


def default_aliases(content: str = "photo", accelerated: bool | None = None) -> dict[str, Alias]:
    """The alias table for ``content`` (photo or anime), for a GPU run or a CPU one."""
    if content not in CONTENTS:
        raise ConfigError(f"--content must be one of {', '.join(CONTENTS)}, got {content!r}")
    if accelerated is None:
        import torch

        accelerated = torch.cuda.is_available()
    table: dict[str, tuple[str, dict[str, Any], str, int]] = {
        name: (target, settings, summary, 1) for name, (target, settings, summary) in _CLASSICAL.items()
    }
    table.update(_NEURAL[(content, bool(accelerated))])
    table.update(_EVERY_TABLE)
    return {
        name: Alias(target, settings, summary, {"outscale": _OUTSCALE[name]}, repeat, _LEAD.get(name, ()))
        for name, (target, settings, summary, repeat) in table.items()
    }


