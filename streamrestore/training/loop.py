"""The training loop: build a spandrel architecture, train it on seeded patches, validate, checkpoint, export.

The schedule is fixed by ``steps`` (Adam, then cosine decay to 1 % of ``lr`` over exactly ``steps``), and
the data of each step is a pure function of (seed, step) (see ``data``). A checkpoint holds the network,
optimizer, scheduler, EMA weights, AMP scaler, torch RNG state and loss history, so ``resume`` continues
the same run bit for bit: stopping at step N (``stop_after``, or Ctrl-C after a checkpoint) and resuming
gives the losses and weights an uninterrupted run gives. A resume with different settings is refused.

The exported file is the EMA weights as safetensors, in the architecture's official key layout, so the
``model`` stage detects it: ``restore_image(img, "model:model=DIR/sr2-compact.safetensors")``.
AMP (bf16 where supported, else fp16 with loss scaling) is used on CUDA only; the CPU trains in fp32.
"""

from __future__ import annotations

import copy
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from streamrestore.errors import ConfigError

from .data import Patches, split_folder
from .degrade import Settings, scale_of

ARCHS = ("compact", "esrgan", "nafnet")
LOSSES = ("l1", "charbonnier")
# Settings that shape the run: a resume must match them exactly, or it would not be the same run.
_RUN_KEYS = ("task", "arch", "steps", "batch", "patch", "lr", "seed", "loss", "ema_decay", "features", "blocks",
             "val_fraction")  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    task: str
    data: str
    out: str
    arch: str = "compact"
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
    raise ConfigError(f"unknown --arch {arch!r} (known: {', '.join(ARCHS)})")


def charbonnier(out: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((out - target) ** 2 + eps * eps).mean()


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
def validate(network: torch.nn.Module, pairs: list, scale: int, device: torch.device) -> tuple[float, float]:
    """PSNR and SSIM of 8-bit outputs on the held-back pairs, ``scale`` pixels cropped at each edge."""
    network.eval()
    scores = []
    for lq, gt in pairs:
        out = (network(lq.to(device)).float().clamp(0, 1) * 255).round() / 255
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
    out_dir = Path(config.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = Patches(split_folder(config.data, config.val_fraction), config.task, config.patch, config.seed, Settings())

    torch.manual_seed(config.seed)
    network = build_network(config.arch, scale, config.features, config.blocks).to(device)
    ema = copy.deepcopy(network).requires_grad_(False)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps, eta_min=config.lr * 0.01)
    amp_dtype = None
    if device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    loss_fn = F.l1_loss if config.loss == "l1" else charbonnier
    result = TrainResult(step=0)
    checkpoint_path = out_dir / "checkpoint.pt"

    if config.resume:
        if not checkpoint_path.is_file():
            raise ConfigError(f"--resume: no checkpoint at {checkpoint_path}")
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        ours = {key: asdict(config)[key] for key in _RUN_KEYS}
        changed = [f"{k}: {state['config'][k]!r} → {ours[k]!r}" for k in _RUN_KEYS if state["config"][k] != ours[k]]
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
                out = network(lq)
            loss = loss_fn(out.float(), gt)
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
                value, structure = validate(ema, data.validation, scale, device)
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
        result.weights = export(ema, out_dir / f"{config.task}-{config.arch}.safetensors", config)
    return result


def export(network: torch.nn.Module, path: Path, config: TrainConfig) -> Path:
    """The weights as float32 safetensors, with what made them in the metadata."""
    from safetensors.torch import save_file

    tensors = {key: value.detach().float().cpu().contiguous() for key, value in network.state_dict().items()}
    metadata = {f"streamrestore.train.{key}": str(value) for key, value in asdict(config).items()
                if key in _RUN_KEYS}  # fmt: skip
    save_file(tensors, str(path), metadata=metadata)
    return path
