"""What the web demo does, without Gradio: check an upload, turn the page's controls into a chain, keep the
library's prepared chains (``streamrestore.restore.PreparedChain``, so a model is read once) between requests,
restore and write a lossless PNG.

``app.py`` is a thin page over ``DemoSession``; the API and the tests use the same object. The chain is the
CLI's own syntax and goes through the CLI's parser and ``PreparedChain``: there is no second pipeline, and
placement, repeats (``sr4`` = ×2 twice) and tiling are the library's.

The page is meant for anyone who can reach it, so it is stricter than the CLI: only uploaded checkpoints or
known model names (no paths on the server), only bundled presets by name (no YAML paths), and a pixel cap on
the input and on the result. Stages that can be tiled run in tiles (``DemoSettings.tile``, the run's --tile),
which bounds their memory; a network that works on whole images only runs whole.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streamrestore.demo.settings import DemoSettings
from streamrestore.errors import ConfigError, MediaError, StreamRestoreError, TooLargeError, WeightsError
from streamrestore.engine.placement import cuda_available, place
from streamrestore.media.images import IMAGE_SUFFIXES as LIBRARY_IMAGE_SUFFIXES
from streamrestore.media.images import read_image, write_image
from streamrestore.models.catalog import default_catalog
from streamrestore.presets import ChainPlan, available_presets, join_pairs, parse_chain
from streamrestore.registry import MODEL_STAGE, Registry
from streamrestore.restore import PreparedChain, RunSettings
from streamrestore.stage import Capabilities, Option

# What PIL calls the formats the page takes (cameras' JPEGs often open as MPO: a JPEG with a second picture).
IMAGE_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "WEBP": "WebP", "TIFF": "TIFF"}
IMAGE_SUFFIXES = tuple(s for s in LIBRARY_IMAGE_SUFFIXES if s != ".bmp")  # the library's, less BMP (see IMAGE_FORMATS)
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")


# -- the image ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Upload:
    name: str
    format: str
    pixels: np.ndarray

    def describe(self) -> str:
        height, width = self.pixels.shape[:2]
        return f"{self.name}: {width}×{height} {self.format}, {self.pixels.dtype.itemsize * 8}-bit RGB"


def check_image(path: str | Path, name: str, max_pixels: int) -> Upload:
    """Read an uploaded image with the CLI's reader, after checking its kind and size from its header alone."""
    from PIL import Image, UnidentifiedImageError

    kinds = "PNG, JPEG, WebP or TIFF"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # reads the header only
                kind, (width, height) = image.format, image.size
                if kind in ("JPEG", "MPO"):
                    # OpenCV decodes a truncated JPEG with a warning on stderr and grey rows at the bottom;
                    # PIL raises. Decoding at 1/8 scale (DCT scaling) still reads the whole stream.
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                    image.load()
    except Image.DecompressionBombError:
        raise MediaError(f"{name} is far too large (over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP); "
                         f"this server takes at most {max_pixels / 1e6:g} MP") from None
    except UnidentifiedImageError:
        raise MediaError(f"{name} is not an image ({kinds} expected)") from None
    except (OSError, SyntaxError, ValueError) as error:  # PIL reports damaged data with any of these
        raise MediaError(f"{name} is damaged: {error}") from None
    if kind not in IMAGE_FORMATS:
        raise MediaError(f"{name} is a {kind} image; this page takes {kinds}")
    if width * height > max_pixels:
        raise MediaError(f"{name} is {width}×{height} ({width * height / 1e6:.1f} MP); "
                         f"this server takes at most {max_pixels / 1e6:g} MP")
    try:
        pixels = read_image(path)
    except MediaError:
        raise MediaError(f"{name} is damaged: its {IMAGE_FORMATS[kind]} data cannot be decoded") from None
    return Upload(name, IMAGE_FORMATS[kind], pixels)


def safe_name(name: str, default: str) -> str:
    """A file name that fits in a chain (no ``,:=``) and in a download header."""
    cleaned = re.sub(r"[^\w.\-]+", "_", Path(name).name).strip("._")
    return cleaned[:120] or default


# -- the chain ---------------------------------------------------------------------------------------
# The page's steps, in chain order, each a choice among the CLI's aliases (those the registry has).
CLEANUP = ("denoise", "nlm", "tdenoise", "jpeg")
SHARPEN = ("sharpen", "deblur")
RESIZE_STAGE = "resize"
NETWORK = "network"
"""The upscale method that means the alias itself (a network); the others are the resize stage's methods."""


@dataclass(frozen=True)
class Controls:
    """The page's controls. A preset wins over the rest; a checkpoint replaces the upscaling network."""

    preset: str
    cleanup: str  # "" or one of CLEANUP
    strength: float | None  # NLM's strength (nlm, tdenoise; the others have none); None: auto, from the picture
    sharpen: str  # "" or one of SHARPEN
    amount: float
    radius: float
    upscale: str  # "" or an upscaling alias: sr2, sr3, sr4, sr4-gan
    method: str  # NETWORK, or a method of the resize stage (lanczos, bicubic, …)
    checkpoint: str  # the uploaded checkpoint's (safe) file name, or ""


def chain_from_controls(c: Controls, registry: Registry) -> str:
    """The CLI chain the controls stand for, e.g. ``denoise,sr2`` or ``sr4=net.pth,sharpen:amount=0.8``.

    Options are written only where they differ from the alias's own, so the chain reads as a user would type it.
    """
    if c.preset:
        return c.preset
    parts = []
    if c.checkpoint:
        # The network sees the untouched picture, which is what restoration networks are trained on; with
        # an upscale alias its output is resized to that alias's scale (`sr4=x2.pth` runs ×2, then ×4).
        parts.append(f"{c.upscale}={c.checkpoint}" if c.upscale else f"{MODEL_STAGE}={c.checkpoint}")
    if c.cleanup:
        takes_strength = "strength" in registry.resolve(c.cleanup)[0].options
        parts.append(c.cleanup if c.strength is None or not takes_strength else f"{c.cleanup}:strength={c.strength:g}")
    if c.sharpen:
        # The sliders are the unsharp mask's (`sharpen`); `deblur` is a network and takes neither.
        declared = registry.resolve(c.sharpen)[0].options
        changed = [(k, v) for k, v in (("amount", c.amount), ("radius", c.radius))
                   if k in declared and abs(v - option_control(registry, c.sharpen, k)[1]) > 1e-9]  # fmt: skip
        parts.append("".join([c.sharpen, *(f":{k}={v:g}" for k, v in changed)]))
    if c.upscale and not c.checkpoint:
        if c.method == NETWORK:
            parts.append(c.upscale)
        else:
            scale = registry.aliases[c.upscale].model_settings.get("outscale", 2)
            parts.append(f"{RESIZE_STAGE}:scale={scale}:method={c.method}")
    return ",".join(parts)


def option_control(registry: Registry, alias: str, option: str) -> tuple[Option, Any]:
    """The declaration behind a control (range, choices, help) and the alias's default for it."""
    spec, settings = registry.resolve(alias, {})
    declared = spec.options[option]
    return declared, settings.get(option, declared.default)


def make_registry(content: str, device: str | None) -> Registry:
    """Aliases for ``content`` (photo, anime) and the device, as ``PreparedChain`` chooses them for the CLI."""
    return Registry(content=content, accelerated=device != "cpu" and cuda_available())


def format_chain(plan: ChainPlan) -> str:
    """A plan back in chain syntax: ``name[=model]:key=value:…`` joined by commas."""
    elements = []
    for request in plan.stages:
        settings = dict(request.settings)
        head = f"{request.name}={settings.pop('model')}" if "model" in settings else request.name
        elements.append(":".join([head, *(f"{k}={_text(v)}" for k, v in settings.items())]))
    return ",".join(elements)


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# -- prepared chains, shared ------------------------------------------------------------------------
class ChainCache:
    """Prepared chains shared by every request, one per (chain as it runs, content), so a model is read once."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._chains: OrderedDict[tuple[str, str], PreparedChain] = OrderedDict()
        self._seconds: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def get(self, plan: ChainPlan, content: str, registry: Registry, run: RunSettings
            ) -> tuple[PreparedChain, float | None]:  # fmt: skip
        """The prepared chain and the seconds building it and reading its weights took (None: shared).

        Weights are read here (placements ask the capabilities, which come from them), so a file that is not a
        model fails with one message before any pixel is touched.
        """
        key = (format_chain(plan), content)
        with self._lock:
            if key in self._chains:
                self._chains.move_to_end(key)
                return self._chains[key], None
            started = time.perf_counter()
            prepared = PreparedChain(plan, replace(run, content=content), registry)
            prepared.placements  # noqa: B018 - reads the weights now
            self._chains[key] = prepared
            self._seconds[key] = time.perf_counter() - started
            while len(self._chains) > self.capacity:
                self._seconds.pop(self._chains.popitem(last=False)[0], None)
            return prepared, self._seconds[key]

    def build_seconds(self, plan: ChainPlan, content: str) -> float:
        """What building the chain and reading its weights took when it was first asked for (a new run pays it)."""
        with self._lock:
            return self._seconds.get((format_chain(plan), content), 0.0)

    def files(self) -> set[str]:
        """The weights files the kept chains use."""
        with self._lock:
            return {str(b.stage.settings["model"]) for chain in self._chains.values() for b in chain.stages
                    if b.stage.settings.get("model")}  # fmt: skip


# -- a request ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    name: str  # the uploaded file's safe name, as the chain names it
    path: Path  # its content-addressed copy in the work directory


@dataclass(frozen=True)
class Result:
    output: Path  # the restored image, lossless PNG at the source's bit depth
    before: Path  # 8-bit previews of the same size, for the slider
    after: Path
    chain: str  # what ran, in CLI syntax (the uploaded checkpoint named by its file name)
    seconds: float  # restore_image alone
    device: str
    size: tuple[int, int]  # width, height of the result
    source: str  # the upload, described
    models: list[str] = field(default_factory=list)  # "net.pth loaded in 0.10 s" / "net.pth reused"

    def summary(self) -> str:
        width, height = self.size
        lines = [f"{self.source} → **{width}×{height}** in **{self.seconds:.2f} s** on **{self.device}**",
                 f"chain `{self.chain or '(none)'}`"]
        lines += [f"model {m}" for m in self.models]
        return "  \n".join(lines)


class DemoSession:
    """The demo's state for one server: settings, work directory, registry and shared stages."""

    def __init__(self, settings: DemoSettings, workdir: str | Path) -> None:
        place(Capabilities(devices=("cpu", "cuda")), settings.device)  # a bad --device fails at start
        self.settings = settings
        self.workdir = Path(workdir)
        self.registries: dict[str, Registry] = {}
        self.chains = ChainCache(settings.cached_chains)
        self.run = RunSettings(device=settings.device, tile=settings.tile, max_pixels=settings.max_pixels)
        # One request at a time touches the stages: they are shared, and one device runs one job well.
        self._run_lock = threading.Lock()

    def registry(self, content: str = "photo") -> Registry:
        if content not in self.registries:
            self.registries[content] = make_registry(content, self.settings.device)
        return self.registries[content]

    def inspect(self, image: str | Path) -> Upload:
        return check_image(image, safe_name(str(image), "image"), self.settings.max_pixels)

    def preview(self, image: str | Path) -> tuple[Upload, Path]:
        """Check an upload and write an 8-bit preview of it, shown before anything runs."""
        upload = self.inspect(image)
        path = self._result_folder() / "upload.png"
        _write_preview(path, upload.pixels)
        return upload, path

    def checkpoint(self, path: str | Path) -> Checkpoint:
        """Copy an uploaded checkpoint to ``models/SHA256[:16].EXT``: one file, hence one key, per content."""
        name = safe_name(str(path), "model.pth")
        suffix = Path(name).suffix.lower()
        if suffix not in CHECKPOINT_SUFFIXES:
            raise WeightsError(f"{name} is not a checkpoint (expected {', '.join(CHECKPOINT_SUFFIXES)})")
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        folder = self.workdir / "models"
        folder.mkdir(parents=True, exist_ok=True)
        stored = folder / f"{digest.hexdigest()[:16]}{suffix}"
        if not stored.exists():
            partial = stored.with_suffix(f"{suffix}.part")
            shutil.copyfile(path, partial)
            os.replace(partial, stored)
        os.utime(stored)  # kept while in use (see _prune)
        return Checkpoint(name, stored)

    def restore(self, image: str | Path, chain: str, checkpoint: str | Path | None = None,
                content: str = "photo") -> Result:  # fmt: skip
        """``restore_image`` on an upload, with the chain and content (photo, anime) as the CLI takes them."""
        return self.restore_upload(self.inspect(image), chain, checkpoint, content)

    def restore_upload(self, upload: Upload, chain: str, checkpoint: str | Path | None = None,
                       content: str = "photo") -> Result:  # fmt: skip
        """``restore`` on pixels already read (an upload, or a frame picked from a video)."""
        registry = self.registry(content)
        ckpt = self.checkpoint(checkpoint) if checkpoint else None
        plan = self._plan(chain, ckpt)
        with self._run_lock:
            try:
                prepared, loading = self.chains.get(_bind(plan, ckpt), content, registry, self.run)
                shown, models = self._describe(plan, prepared, loading)
                started = time.perf_counter()
                restored = prepared.restore_array(upload.pixels)  # checks the frames' size first (engine.budget)
                seconds = time.perf_counter() - started
            except TooLargeError as error:
                raise TooLargeError(on_page(error, "choose a smaller scale or image")) from error
            except StreamRestoreError as error:
                # Name the upload, not the server's copy of it.
                message = str(error).replace(str(ckpt.path), ckpt.name) if ckpt else str(error)
                raise type(error)(message) from error
            device = _describe_device(prepared)
        return self._write(upload, restored, format_chain(shown), seconds, device, models)

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- steps -----------------------------------------------------------------------------------------
    def _plan(self, chain: str, ckpt: Checkpoint | None) -> ChainPlan:
        """Parse the chain as the CLI does, refusing what a public page must not do: read server files."""
        text = chain.strip()
        if text.lower().endswith((".yaml", ".yml")):
            raise ConfigError(f"this page takes bundled presets by name ({', '.join(available_presets())}), "
                              "not preset files")
        plan = parse_chain(text)
        known = default_catalog()
        for request in plan.stages:
            ref = str(request.settings.get("model", ""))
            # Only the upload or a catalogue name: anything else (`~`, `/etc`, a relative name) would be
            # looked up on the server's disk, and its error would describe what is there.
            if ref and (ckpt is None or ref != ckpt.name) and ref not in known:
                hint = f" (the uploaded one is {ckpt.name})" if ckpt else ""
                shown = ref if len(ref) <= 40 else ref[:39] + "…"
                raise WeightsError(f"model {shown!r} is neither an uploaded checkpoint{hint} nor a packaged "
                                   "model name; this page loads no file from the server")
        return plan

    def _describe(self, plan: ChainPlan, prepared: PreparedChain, loading: float | None
                  ) -> tuple[ChainPlan, list[str]]:  # fmt: skip
        """The chain as it ran (the tile each element ran in, the upload by its name) and each model's loading."""
        shown, models, index, tiles = [], [], 0, prepared.tiles()
        plan = join_pairs(plan, prepared.registry.joined)[0]  # as PreparedChain runs it (`denoise,sr4` joined)
        for request in plan.stages:
            index += len(prepared.registry.leads(request.name, request.settings))  # shown as part of the alias
            built = prepared.stages[index]
            tile = tiles[index]
            index += prepared.registry.repeats(request.name, request.settings)
            settings = dict(request.settings)
            if tile and "tile" not in settings:
                settings["tile"] = tile
            shown.append(replace(request, settings=settings))
            if built.spec.name == MODEL_STAGE:
                ref = request.settings.get("model") or built.stage.settings["model"]  # the upload, or the alias's
                models.append(f"{ref} reused" if loading is None else f"{ref} loaded in {loading:.2f} s")
        return ChainPlan(shown), models

    def _write(self, upload: Upload, restored: np.ndarray, chain: str, seconds: float, device: str,
               models: list[str]) -> Result:  # fmt: skip
        folder = self._result_folder()
        output = folder / f"{Path(upload.name).stem}.restored.png"
        write_image(output, restored)
        height, width = restored.shape[:2]
        # The "before" preview is enlarged to the result's size (nearest neighbour: its own pixels, bigger),
        # so the slider compares both at the same zoom.
        before = cv2.resize(upload.pixels, (width, height), interpolation=cv2.INTER_NEAREST)
        previews = []
        for label, pixels in (("before", before), ("after", restored)):
            previews.append(folder / f"{label}.png")
            _write_preview(previews[-1], pixels)
        return Result(output, previews[0], previews[1], chain, seconds, device, (width, height), upload.describe(),
                      models)

    def _result_folder(self) -> Path:
        self._prune()
        folder = self.workdir / "results" / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder

    def _prune(self) -> None:
        """Delete results and unused uploaded checkpoints older than ``keep_files_s``."""
        limit = time.time() - self.settings.keep_files_s
        in_use = self.chains.files()
        for folder in (self.workdir / "results").glob("*"):
            if folder.stat().st_mtime < limit:
                shutil.rmtree(folder, ignore_errors=True)
        for path in (self.workdir / "models").glob("*"):
            if str(path) not in in_use and path.stat().st_mtime < limit:
                path.unlink(missing_ok=True)


def _bind(plan: ChainPlan, ckpt: Checkpoint | None) -> ChainPlan:
    """The uploaded checkpoint's name -> the path of its copy (other model names are catalogue names)."""
    if ckpt is None:
        return plan
    return ChainPlan([replace(r, settings={**r.settings, "model": str(ckpt.path)})
                      if str(r.settings.get("model")) == ckpt.name else r for r in plan.stages], plan.output)  # fmt: skip


def on_page(error: TooLargeError, advice: str) -> str:
    """The engine's size refusal (``engine.budget.check_frames``, the one check) with the page's advice in place
    of the CLI's: a visitor cannot pass ``--max-pixels``."""
    return f"{str(error).split('; ')[0]}; {advice}"


def _describe_device(prepared: PreparedChain) -> str:
    """Where the stages ran, e.g. ``cuda:0 (NVIDIA H100) float16, cpu float32``."""
    import torch

    names = []
    for placement in prepared.placements:
        device = placement.device
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            label = f"cuda:{index} ({torch.cuda.get_device_name(index)})"
        else:
            label = "cpu"
        text = f"{label} {str(placement.dtype).removeprefix('torch.')}"
        if text not in names:
            names.append(text)
    return ", ".join(names) or "cpu (no stages)"


def _write_preview(path: Path, pixels: np.ndarray) -> None:
    """8-bit PNG for the browser (fast compression: it is sent once and thrown away)."""
    if pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if not cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise MediaError(f"cannot write {path}")
