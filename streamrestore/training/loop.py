"""The training loop: build a spandrel architecture, train it on seeded patches, validate, checkpoint, export.

The schedule is fixed by ``steps`` (Adam, then cosine decay to 1 % of ``lr`` over exactly ``steps``), and
the data of each step is a pure function of (seed, step) (see ``data``). A checkpoint holds the network,
optimizer, scheduler, EMA weights, AMP scaler, torch RNG state and loss history, so ``resume`` continues
the same run bit for bit: stopping at step N (``stop_after``, or Ctrl-C after a checkpoint) and resuming
gives the losses and weights an uninterrupted run gives. A resume with different settings is refused.

A run starts from fresh weights of ``arch``, or fine-tunes ``init``: any weights file or model name the
``model`` stage loads (its architecture detected, its scale the task's), e.g. a packaged waifu2x network.
The exported file is the EMA weights as safetensors, in the architecture's official key layout, so the
``model`` stage detects it: ``restore_image(img, "model:model=DIR/sr2-compact.safetensors")``.
AMP (bf16 where supported, else fp16 with loss scaling) is used on CUDA only; the CPU trains in fp32.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import spandrel
import torch
import torch.nn.functional as F
from spandrel import SizeRequirements

from streamrestore.errors import ConfigError, WeightsError

from .data import Patches, split_folder
from .degrade import RESIZE_METHODS, Settings, cubic_kernel, scale_of
from .upstream import upstream_chain

ARCHS = ("compact", "esrgan", "nafnet", "swinir", "restormer", "mprnet", "gated")
LOSSES = ("l1", "charbonnier", "psnr")
# Settings that shape the run: a resume must match them exactly, or it would not be the same run.
_RUN_KEYS = ("task", "arch", "steps", "batch", "patch", "lr", "seed", "loss", "ema_decay", "features", "blocks",
             "val_fraction", "init", "resize", "blur_odds", "blur_sigma", "video_share",
             "noise_sigma", "after", "shrink", "min_detail")  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    task: str
    data: str
    out: str
    arch: str | None = None  # None: compact, or the architecture of init
    init: str | None = None  # weights (a path or a model name) to fine-tune instead of fresh ones
    resize: str = "area"  # the downscaling kernel of sr2/sr3/sr4 and oldfilm: area or bicubic (MATLAB's)
    blur_odds: tuple[float, float, float] = Settings.blur_odds  # deblur: Gaussian, straight streak, camera shake
    blur_sigma: tuple[float, float] = Settings.blur_sigma  # deblur: the range of the Gaussian kernels' σ
    video_share: float = Settings.video_p  # oldvideo, oldvideo4: share of old small-video patches
    noise_sigma: tuple[float, float] = Settings.noise_sigma  # denoise, oldvideo (plain share), oldfilm: σ range
    after: str | None = None  # a ×1 chain every degraded input goes through first (training.upstream)
    shrink: tuple[float, float] = (1.0, 1.0)  # clean patches: crops LO–HI× the patch side, shrunk to it
    min_detail: float = 0.0  # clean patches flatter than this are drawn again (training.data.detail)
    steps: int = 1000
    batch: int = 8
    patch: int = 64  # clean (target) patch side; the input is patch / scale
    lr: float = 5e-4
    seed: int = 0
    loss: str = "l1"
    ema_decay: float = 0.999
    features: int = 32  # compact: num_feat; esrgan: num_filters
    blocks: int = 8  # compact: num_conv; esrgan: RRDB blocks
    val_every: int = 100  # also how often a checkpoint is written
    val_fraction: float = 0.1
    resume: bool = False
    stop_after: int | None = None  # stop (with a checkpoint) after this many steps of the schedule
    device: str | None = None


@dataclass
class TrainResult:
    step: int
    losses: list[float] = field(default_factory=list)  # every step's loss since step 0
    validation: list[tuple[int, float, float]] = field(default_factory=list)  # (step, PSNR dB, SSIM), EMA weights
    weights: Path | None = None  # the exported file, once the schedule is complete


def build_network(arch: str, scale: int, features: int, blocks: int) -> torch.nn.Module:
    """A fresh network from spandrel's architecture classes, whose state dicts spandrel detects."""
    if arch == "compact":
        from spandrel.architectures.Compact import Compact

        return Compact(num_in_ch=3, num_out_ch=3, num_feat=features, num_conv=blocks, upscale=scale, act_type="prelu")
    if arch == "esrgan":
        from spandrel.architectures.ESRGAN import ESRGAN

        if scale not in (1, 2, 4):  # the old-arch upsampler doubles; no ×3
            raise ConfigError(f"--arch esrgan has no ×{scale}; use --arch compact")
        return ESRGAN(in_nc=3, out_nc=3, num_filters=features, num_blocks=blocks, scale=scale)
    if arch == "nafnet":
        from spandrel.architectures.NAFNet import NAFNet

        if scale != 1:  # a U-Net that restores at the input's size
            raise ConfigError(f"--arch nafnet restores at ×1 (denoise, deblur, jpeg); ×{scale} needs compact or esrgan")
        # NAFNet's shape (deeper at the coarse levels, where a block costs least), narrowed for small budgets.
        return NAFNet(img_channel=3, width=features, middle_blk_num=blocks, enc_blk_nums=[1, 1, 2, 4],
                      dec_blk_nums=[1, 1, 1, 1])  # fmt: skip
    if arch == "swinir":
        from spandrel.architectures.SwinIR import SwinIR

        heads = 6
        if features % heads:
            raise ConfigError(f"--arch swinir needs --features divisible by {heads} (SwinIR-light: 60), not {features}")
        # SwinIR-light's shape (Liang et al. 2021): window 8, MLP ratio 2, one-step pixel-shuffle upsampler;
        # --blocks residual Swin groups of six layers each. At ×1 the denoising layout (no upsampler).
        network = SwinIR(upscale=scale, img_size=64, window_size=8, img_range=1.0, embed_dim=features,
                         depths=[6] * blocks, num_heads=[heads] * blocks, mlp_ratio=2.0,
                         upsampler="pixelshuffledirect" if scale > 1 else "", resi_connection="1conv")  # fmt: skip
        if scale > 1:
            start_as_interpolation(network, scale)
        return network
    if arch in ("restormer", "mprnet"):
        return _extra_network(arch, scale, features, blocks)
    raise ConfigError(f"unknown --arch {arch!r} (known: {', '.join(ARCHS)})")


def start_as_interpolation(network: torch.nn.Module, scale: int) -> None:
    """Fresh SwinIR-light weights that compute cubic interpolation, so training learns only the detail.

    Its linear path is conv_first → (+ conv_after_body(body)) → one convolution → pixel shuffle. The first
    convolution copies R, G, B into features 0–2, the body's last convolution starts at zero, and the
    upsampler's 3×3 convolution interpolates each output sub-pixel from features 0–2 with Keys' cubic
    weights on the three nearest taps. A transformer started from random weights takes thousands of steps
    to reach bicubic on a CPU; from here every step improves on it. The layout is unchanged (official keys).
    """
    with torch.no_grad():
        first, after, upsampler = network.conv_first, network.conv_after_body, network.upsample[0]
        first.weight[:3].zero_()
        first.bias[:3].zero_()
        for channel in range(3):
            first.weight[channel, channel, 1, 1] = 1.0
        after.weight.zero_()
        after.bias.zero_()
        upsampler.weight.zero_()
        upsampler.bias.zero_()
        taps = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
        for sub in range(scale):
            for sub_x in range(scale):
                weight_y = _cubic_taps(taps - ((sub + 0.5) / scale - 0.5))
                weight_x = _cubic_taps(taps - ((sub_x + 0.5) / scale - 0.5))
                for channel in range(3):
                    upsampler.weight[channel * scale * scale + sub * scale + sub_x, channel] = torch.outer(
                        weight_y, weight_x).to(upsampler.weight.dtype)  # fmt: skip


def _cubic_taps(distance: torch.Tensor) -> torch.Tensor:
    """Keys' cubic at ``distance``, normalised to sum 1 over the taps."""
    weights = torch.from_numpy(cubic_kernel(distance.numpy()))
    return weights / weights.sum()


def _extra_network(arch: str, scale: int, features: int, blocks: int) -> torch.nn.Module:
    """Restormer and MPRNet (×1), narrowed: their official classes from spandrel-extra-arches (optional)."""
    if scale != 1:
        raise ConfigError(f"--arch {arch} restores at ×1 (denoise, deblur, jpeg); ×{scale} needs compact or esrgan")
    try:
        from spandrel_extra_arches.architectures.MPRNet import MPRNet
        from spandrel_extra_arches.architectures.Restormer import Restormer
    except ImportError:
        raise ConfigError(f"--arch {arch} needs the optional extra: pip install 'streamrestore[extra-arches]'") from None
    if arch == "restormer":
        if features % 8:
            raise ConfigError(f"--arch restormer needs --features divisible by 8 (Restormer: 48), not {features}")
        # Restormer's shape (Zamir et al. 2022: dim 48, blocks 4/6/6/8, 4 refinement, heads 1/2/4/8), narrowed:
        # --features is dim, --blocks the bottleneck's transformer blocks; one or two at the other levels.
        return Restormer(dim=features, num_blocks=[1, 2, 2, blocks], num_refinement_blocks=1, heads=[1, 2, 4, 8],
                         ffn_expansion_factor=2.66, bias=False, LayerNorm_type="WithBias")  # fmt: skip
    if features % 4:  # its channel attention reduces by 4; the loader reads the reduction back from n_feat
        raise ConfigError(f"--arch mprnet needs --features divisible by 4 (MPRNet: 40), not {features}")
    # MPRNet's shape (Zamir et al. 2021: n_feat 40 (deblur 96), U-Net +n/2 per level, ORSNet +0.4 n, 8 CABs), narrowed:
    # --features is n_feat, --blocks the CABs per original-resolution block.
    return MPRNet(n_feat=features, scale_unetfeats=features // 2, scale_orsnetfeats=features * 2 // 5,
                  num_cab=blocks, reduction=4, bias=False)  # fmt: skip


@dataclass
class InitialNetwork:
    """What a run starts from, and what of its weights file the export keeps."""

    network: torch.nn.Module
    arch: str  # lower case: "compact", "nafnet", "cunet", …
    size_requirements: SizeRequirements  # the input sizes the network takes
    half: bool  # fp16 autocast allowed
    bfloat16: bool
    markers: dict[str, torch.Tensor] = field(default_factory=dict)  # weight-less keys the loader reads
    metadata: dict[str, str] = field(default_factory=dict)  # how the stage pads it (border, mode)
    digest: str = ""  # sha256 of the weights file

    @classmethod
    def read(cls, descriptor: spandrel.ImageModelDescriptor, **from_file) -> InitialNetwork:
        """The network of ``descriptor``, with what the loader says about calling it."""
        return cls(descriptor.model, descriptor.architecture.id.lower(), descriptor.size_requirements,
                   descriptor.supports_half, descriptor.supports_bfloat16, **from_file)  # fmt: skip


def initial_network(config: TrainConfig, scale: int) -> InitialNetwork:
    """Fresh weights of ``config.arch``, or the network in ``config.init`` (checked against the task's scale)."""
    if config.arch == "gated":
        return _gated_deblur(config)
    if config.init is None:
        arch = config.arch or "compact"
        return _as_loaded(build_network(arch, scale, config.features, config.blocks), arch, scale)
    from safetensors import safe_open

    from streamrestore.models.archs.cunet import WAIFU2X_MARKER
    from streamrestore.models.entry import BORDER_KEY, BORDER_MODE_KEY
    from streamrestore.models.loader import load_model
    from streamrestore.models.weights import sha256_file

    loaded = load_model(config.init)
    path, descriptor = loaded.path, loaded.descriptor
    arch = descriptor.architecture.id
    if config.arch is not None and config.arch.lower() != arch.lower():
        raise ConfigError(f"--init {config.init} is a {arch} network, not --arch {config.arch}")
    if descriptor.scale != scale or descriptor.input_channels != 3:
        raise ConfigError(f"--init {config.init} is a ×{descriptor.scale} {arch} network with "
                          f"{descriptor.input_channels} input channel(s); --task {config.task} needs ×{scale} RGB")
    # Weight-less keys that tell the loader how to run the network: a waifu2x CUNet's marker (else it reads as
    # a Real-CUGAN, which pads differently) and a Real-CUGAN "pro"'s. The model's own state dict drops them.
    markers, metadata = {}, {}
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as handle:
            markers = {key: handle.get_tensor(key) for key in (WAIFU2X_MARKER, "pro") if key in handle.keys()}
            metadata = {key: value for key, value in (handle.metadata() or {}).items()
                        if key in (BORDER_KEY, BORDER_MODE_KEY)}  # fmt: skip
    return InitialNetwork.read(descriptor, markers=markers, metadata=metadata, digest=sha256_file(path))


def _gated_deblur(config: TrainConfig) -> InitialNetwork:
    """``--arch gated``: a gate over the deblurring network of ``--init`` (a NAFNet, or a gated file whose
    gate goes on training), the unsharp mask, the Gaussian deconvolution bank and the input. Only the gate
    learns; the network is frozen."""
    from streamrestore.models.archs.gated_deblur import (CANDIDATES, DECONVOLUTION_SIGMAS, Gate,
                                                         GatedDeblur)  # fmt: skip
    from streamrestore.models.loader import load_model
    from streamrestore.models.weights import sha256_file

    if config.task != "deblur" or config.init is None:
        raise ConfigError("--arch gated is a gate over a deblurring network: it needs --task deblur and --init "
                          "(a NAFNet deblur such as deblur-nafnet16, or a gated file)")
    loaded = load_model(config.init)
    network, arch = loaded.descriptor.model, loaded.descriptor.architecture.id
    if arch == "NAFNet" and loaded.scale == 1:
        bank = DECONVOLUTION_SIGMAS
        network = GatedDeblur(network, Gate(candidates=len(CANDIDATES) + len(bank)), deconvolution=bank)
    elif arch != "GatedDeblur":
        raise ConfigError(f"--arch gated needs a ×1 NAFNet or a gated deblur as --init, not a {arch} network")
    network.network.requires_grad_(False)
    return InitialNetwork(network, "gated", SizeRequirements(multiple_of=network.gate.factor), half=True,
                          bfloat16=True, digest=sha256_file(loaded.path))  # fmt: skip


def _read_checkpoint(path: Path, device: torch.device) -> dict:
    """``checkpoint.pt`` through the weights checks and torch's allow-list unpickler; a refusal is one line."""
    from streamrestore.models.safety import check_weights_file

    check_weights_file(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch's own text runs to many lines; the first says what was refused
        reason = (str(error).strip().splitlines() or [""])[0][:160]
        raise WeightsError(f"--resume: cannot read {path}: {type(error).__name__}: {reason}") from None
    needed = ("config", "network", "ema", "optimizer", "scheduler", "scaler", "rng", "step", "losses", "validation")
    if not isinstance(state, dict) or not all(key in state for key in needed):
        raise WeightsError(f"--resume: {path} is not a checkpoint of `streamrestore train`")
    return state


def _as_loaded(network: torch.nn.Module, arch: str, scale: int) -> InitialNetwork:
    """A fresh ``network`` read back by the loader, as its export will be: that its weights are detected as
    ``arch`` at ``scale`` is checked before training, and the loader says how it is called (sizes, fp16)."""
    from streamrestore.models.loader import model_loader  # ours and, where installed, Restormer, MPRNet, …

    try:
        descriptor = model_loader().load_from_state_dict(dict(network.state_dict()))
    except spandrel.UnsupportedModelError as error:
        raise ConfigError(f"a fresh --arch {arch} network is not detected by the loader") from error
    if descriptor.architecture.id.lower() != arch or descriptor.scale != scale:
        raise ConfigError(f"a fresh --arch {arch} ×{scale} reads back as {descriptor.architecture.id} "
                          f"×{descriptor.scale}")  # fmt: skip
    return InitialNetwork.read(descriptor)


def training_call(network: torch.nn.Module, requirements: SizeRequirements | None = None
                  ) -> Callable[[torch.Tensor], torch.Tensor]:  # fmt: skip
    """``network`` as a function of an input patch, padded as the model stage pads it: to the sizes the
    network takes (bottom/right, cropped after), and waifu2x's unpadded networks by their border."""
    from streamrestore.models.archs.waifu2x import CUNet, UpConv7, run_padded

    run = functools.partial(run_padded, network) if isinstance(network, (UpConv7, CUNet)) else network
    if requirements is None:
        return run
    if type(network).__name__ == "MPRNet":  # multi-stage output, the final image first
        return run

    def padded(x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_w, pad_h = requirements.get_padding(width, height)
        if not (pad_w or pad_h):
            return run(x)
        reflect_w, reflect_h = min(pad_w, width - 1), min(pad_h, height - 1)  # reflection needs the pixels
        x = F.pad(F.pad(x, (0, reflect_w, 0, reflect_h), "reflect"), (0, pad_w - reflect_w, 0, pad_h - reflect_h),
                  "replicate")  # fmt: skip
        out = run(x)
        factor = out.shape[-1] // x.shape[-1]
        return out[..., : height * factor, : width * factor]

    return padded


def charbonnier(out: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((out - target) ** 2 + eps * eps).mean()


def psnr_loss(out: torch.Tensor, target: torch.Tensor, floor: float = 1e-5) -> torch.Tensor:
    """Minus the mean PSNR of the patches (dB; each capped at 50 dB by ``floor``): every patch counts as much
    as the others, where a plain mean error lets the worst blurred patches outweigh the mildly blurred ones."""
    mse = ((out - target) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(mse + floor).mean()


def psnr(out: torch.Tensor, target: torch.Tensor) -> float:
    mse = F.mse_loss(out, target).item()
    return 10 * math.log10(1 / mse) if mse > 0 else float("inf")


def ssim(out: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM over the RGB channels (Gaussian window 11, σ 1.5, data range 1), as Wang et al."""
    x = torch.arange(11, dtype=out.dtype, device=out.device) - 5
    g = torch.exp(-(x**2) / (2 * 1.5**2))
    window = (g[:, None] * g[None, :] / g.sum() ** 2).expand(out.shape[1], 1, 11, 11)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=out.shape[1])

    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(out), blur(target)
    var_x, var_y = blur(out * out) - mu_x**2, blur(target * target) - mu_y**2
    cov = blur(out * target) - mu_x * mu_y
    return (((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))).mean().item()


@torch.no_grad()
def validate(network: torch.nn.Module, pairs: list, scale: int, device: torch.device,
             call: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[float, float]:  # fmt: skip
    """PSNR and SSIM of 8-bit outputs on the held-back pairs, ``scale`` pixels cropped at each edge."""
    call = call or network
    network.eval()
    scores = []
    for lq, gt in pairs:
        # A private copy: some networks (RCAN) scale their input in place, and the pairs are used again.
        out = call(lq.to(device).clone())
        out = out[0] if isinstance(out, (tuple, list)) else out  # multi-stage networks: the final image
        out = (out.float().clamp(0, 1) * 255).round() / 255
        out, gt = out[..., scale:-scale, scale:-scale], gt.to(device)[..., scale:-scale, scale:-scale]
        scores.append((psnr(out, gt), ssim(out, gt)))
    network.train()
    return sum(s[0] for s in scores) / len(scores), sum(s[1] for s in scores) / len(scores)


def train(config: TrainConfig, progress: bool = True) -> TrainResult:
    from tqdm import tqdm

    scale = scale_of(config.task)
    if config.loss not in LOSSES:
        raise ConfigError(f"unknown --loss {config.loss!r} (known: {', '.join(LOSSES)})")
    if config.steps < 1 or config.batch < 1 or config.val_every < 1:
        raise ConfigError("--steps, --batch and --val-every must be at least 1")
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # subnormal activations slowed a small gate's CPU steps tenfold
    out_dir = Path(config.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.resize not in RESIZE_METHODS:  # checked here too: oldfilm and sr only meet it on the first patch
        raise ConfigError(f"unknown --resize {config.resize!r} (known: {', '.join(RESIZE_METHODS)})")
    if len(config.blur_odds) != 3 or min(config.blur_odds) < 0 or sum(config.blur_odds) <= 0:
        raise ConfigError(f"--blur-odds needs three non-negative weights, not {config.blur_odds}")
    if len(config.blur_sigma) != 2 or not 0.1 <= config.blur_sigma[0] <= config.blur_sigma[1] <= 10:
        raise ConfigError(f"--blur-sigma needs 0.1 ≤ LO ≤ HI ≤ 10 pixels, not {config.blur_sigma}")
    if not 0.0 <= config.video_share <= 1.0:
        raise ConfigError(f"--video-share is a share between 0 and 1, not {config.video_share}")
    if len(config.shrink) != 2 or not 1.0 <= config.shrink[0] <= config.shrink[1] <= 8.0:
        raise ConfigError(f"--shrink needs 1 ≤ LO ≤ HI ≤ 8, not {config.shrink}")
    if not 0.0 <= config.min_detail <= 100.0:
        raise ConfigError(f"--min-detail is between 0 and 100 (0..255 steps), not {config.min_detail}")
    if len(config.noise_sigma) != 2 or not 0 <= config.noise_sigma[0] <= config.noise_sigma[1] <= 100:
        raise ConfigError(f"--noise-sigma needs 0 ≤ LO ≤ HI ≤ 100 on the 0..255 scale, not {config.noise_sigma}")
    settings = Settings(resize=config.resize, blur_odds=tuple(config.blur_odds), blur_sigma=tuple(config.blur_sigma),
                        video_p=config.video_share, noise_sigma=tuple(config.noise_sigma),
                        patch_shrink=tuple(config.shrink), min_detail=config.min_detail)  # fmt: skip
    upstream = upstream_chain(config.after) if config.after else None
    data = Patches(split_folder(config.data, config.val_fraction), config.task, config.patch, config.seed, settings,
                   upstream=upstream)  # fmt: skip

    torch.manual_seed(config.seed)
    start = initial_network(config, scale)
    config = replace(config, arch=start.arch)  # what the checkpoint and the export record
    network = start.network.to(device).train()
    ema = copy.deepcopy(network).requires_grad_(False)
    call, ema_call = training_call(network, start.size_requirements), training_call(ema, start.size_requirements)
    trainable = [p for p in network.parameters() if p.requires_grad]  # a gated deblur's network is frozen
    optimizer = torch.optim.Adam(trainable, lr=config.lr, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps, eta_min=config.lr * 0.01)
    amp_dtype = None
    if device.type == "cuda":  # bf16 where the GPU and the network take it, else fp16 where the network does
        if start.bfloat16 and torch.cuda.is_bf16_supported():
            amp_dtype = torch.bfloat16
        elif start.half:
            amp_dtype = torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    loss_fn = {"l1": F.l1_loss, "charbonnier": charbonnier, "psnr": psnr_loss}[config.loss]
    result = TrainResult(step=0)
    checkpoint_path = out_dir / "checkpoint.pt"

    if config.resume:
        if not checkpoint_path.is_file():
            raise ConfigError(f"--resume: no checkpoint at {checkpoint_path}")
        state = _read_checkpoint(checkpoint_path, device)
        ours = {key: asdict(config)[key] for key in _RUN_KEYS}
        # A key newer than the checkpoint had the value its default has now.
        defaults = {f.name: f.default for f in fields(TrainConfig)}
        theirs = {key: state["config"].get(key, defaults[key]) for key in _RUN_KEYS}
        changed = [f"{k}: {theirs[k]!r} → {ours[k]!r}" for k in _RUN_KEYS if theirs[k] != ours[k]]
        if changed:
            raise ConfigError(f"--resume with different settings than the checkpoint ({'; '.join(changed)})")
        network.load_state_dict(state["network"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), device)
        result = TrainResult(state["step"], list(state["losses"]), [tuple(v) for v in state["validation"]])

    def save_checkpoint() -> None:
        rng = {"torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        state = {"step": result.step, "config": {k: asdict(config)[k] for k in _RUN_KEYS},
                 "network": network.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": rng,
                 "losses": result.losses, "validation": [list(v) for v in result.validation]}  # fmt: skip
        partial = checkpoint_path.with_suffix(".pt.part")  # a crash mid-write keeps the previous checkpoint
        torch.save(state, partial)
        os.replace(partial, checkpoint_path)

    end = min(config.steps, config.stop_after if config.stop_after is not None else config.steps)
    bar = tqdm(total=config.steps, initial=result.step, unit="step", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, desc=f"train {config.task}/{config.arch}")  # fmt: skip
    network.train()
    try:
        while result.step < end:
            lq, gt = (t.to(device, non_blocking=True) for t in data.batch(result.step, config.batch))
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out = call(lq)
            # Multi-stage networks (MPRNet) are supervised at every stage, as in their papers.
            outs = out if isinstance(out, (tuple, list)) else (out,)
            loss = sum(loss_fn(o.float(), gt) for o in outs)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            # EMA warm-up (as TensorFlow's): early on the average follows the network, so short runs export something.
            decay = min(config.ema_decay, (1 + result.step) / (10 + result.step))
            with torch.no_grad():
                for averaged, current in zip(ema.state_dict().values(), network.state_dict().values()):
                    if averaged.dtype.is_floating_point:
                        averaged.lerp_(current, 1 - decay)
                    else:
                        averaged.copy_(current)
            result.losses.append(loss.item())
            result.step += 1
            postfix = {"loss": f"{sum(result.losses[-20:]) / len(result.losses[-20:]):.4f}"}
            if result.step % config.val_every == 0 or result.step == config.steps:
                value, structure = validate(ema, data.validation, scale, device, ema_call)
                result.validation.append((result.step, value, structure))
                bar.write(f"step {result.step}: validation PSNR {value:.2f} dB, SSIM {structure:.4f} (EMA)")
                save_checkpoint()
            if result.validation:
                postfix["psnr"] = f"{result.validation[-1][1]:.2f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
    finally:
        bar.close()
    if result.step % config.val_every and result.step < config.steps:
        save_checkpoint()  # stopped between validations (stop_after)
    if result.step == config.steps:
        result.weights = export(ema, out_dir / f"{config.task}-{config.arch}.safetensors", config, start)
    return result


def export(network: torch.nn.Module, path: Path, config: TrainConfig, start: InitialNetwork | None = None) -> Path:
    """The weights as safetensors (floats in float32), with what made them in the metadata; a fine-tuned
    network keeps its init file's loader markers and padding metadata."""
    from safetensors.torch import save_file

    # Copies: some networks tie weights (MPRNet shares one PReLU across its blocks), and safetensors stores
    # no shared tensors; the loader builds the tied module and reads the same value under each key.
    tensors = {key: (value.float() if value.is_floating_point() else value).detach().cpu().clone().contiguous()
               for key, value in network.state_dict().items()}  # fmt: skip
    shaped_by_init = ("features", "blocks") if config.init else ()  # the init file's network has its own shape
    metadata = {f"streamrestore.train.{key}": str(value) for key, value in asdict(config).items()
                if key in _RUN_KEYS and key not in shaped_by_init}  # fmt: skip
    if start is not None:
        tensors.update({key: value.contiguous() for key, value in start.markers.items()})
        metadata.update(start.metadata)
        if start.digest:
            metadata["streamrestore.train.init_sha256"] = start.digest
    save_file(tensors, str(path), metadata=metadata)
    return path
