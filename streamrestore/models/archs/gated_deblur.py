"""A deblur that chooses, region by region, between a deblurring network, classical filters and the input.

Neither kind is safe alone: the classical filters are best on defocus (isotropic, Gaussian-like blur) but
cannot undo motion blur and make it worse, and a small blind network undoes motion blur but hedges on
defocus. ``GatedDeblur`` runs them all, and a small gate network, which sees the input and every result,
weighs the candidates per pixel (a softmax, decided at 1/2**levels resolution and smoothly upsampled, so
that neighbouring regions blend instead of switching). The candidates:

1. the input, untouched (for sharp or nearly sharp pictures, which both others over-sharpen);
2. the network's output;
3. the unsharp mask ``x + amount * (x - gaussian(x, radius))``, computed by the ``unsharp`` stage's own tensor
   code (``streamrestore.tensor_filters``: OpenCV's kernel and BORDER_REFLECT edges): amount 6, radius 0.8 in
   the shipped files, the unsharp mask ``deblur`` was before this network;
4. optionally, the input deconvolved by Gaussian blurs of a few σ (``tensor_filters.gaussian_deconvolution``,
   a regularised inverse filter): a bank spanning mild to strong defocus, from which the gate picks, per
   region, the σ that sharpens without ringing (or a blend of two neighbours).

Keys: ``network.*`` (a NAFNet, in its own layout, so that its file's network is read as is), ``gate.body.*``
(the gate's convolutions), ``unsharp`` (amount and radius, in thousandths) and, in files with the bank,
``deconvolution`` (the regulariser λ in millionths, then each σ in thousandths). The gate is trained with the
network frozen: ``streamrestore train --task deblur --arch gated --init deblur-nafnet16``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from spandrel import Architecture, ImageModelDescriptor, SizeRequirements, StateDict
from torch import nn

from ...tensor_filters import deconvolution_reach, gaussian_deconvolution, unsharp_mask

CANDIDATES = ("input", "network", "unsharp")
"""The candidates every gated file has, in this order; the deconvolutions (one per σ) follow them."""
MAX_AMOUNT, MIN_RADIUS, MAX_RADIUS = 10.0, 0.1, 20.0  # the unsharp stage's option bounds
DECONVOLUTION_SIGMAS = (0.8, 1.2, 1.8, 2.7)
"""The bank a new gate gets (``--arch gated --init NAFNET``): ratio 1.5, across the training blurs' σ 0.2–3."""
DECONVOLUTION_REGULARISATION = 1e-3
"""λ of the bank: chosen on held-out photos (astronaut, coffee) among 1e-3 / 3e-3 / 1e-2 / 3e-2."""
MAX_DECONVOLUTIONS, MAX_SIGMA = 8, 20.0  # bounds of a file's bank: each σ pads frames by 12σ + 16 px
MAX_LEVELS = 5
"""The most halvings a file's gate may have: frames are padded to a multiple of 2**levels."""
LOGIT_BOUND = 4.0
"""Gate logits are squashed into ±this: no candidate's weight reaches exactly 0 or 1, so training cannot
lock the gate onto one candidate (a saturated softmax passes no gradient to the others)."""


class Gate(nn.Module):
    """Per-pixel weights of the candidates from the input and the other candidates (3 channels each)."""

    def __init__(self, width: int = 16, levels: int = 3, candidates: int = len(CANDIDATES)) -> None:
        super().__init__()
        act = lambda: nn.LeakyReLU(0.1)  # noqa: E731
        layers: list[nn.Module] = [nn.Conv2d(3 * candidates, width, 3, 1, 1), act()]
        channels = width
        for level in range(levels):  # each halves the resolution
            wider = 2 * width if level else width
            layers += [nn.Conv2d(channels, wider, 3, 2, 1), act()]
            channels = wider
        # Context at the coarsest level, then one logit per candidate.
        layers += [nn.Conv2d(channels, channels, 3, 1, 2, dilation=2), act(),
                   nn.Conv2d(channels, channels, 3, 1, 4, dilation=4), act(), nn.Conv2d(channels, candidates, 1)]
        self.body = nn.Sequential(*layers)
        # PyTorch's default initialisation: a gate whose logits start at zero learned far more slowly (its
        # softmax went to one candidate within 50 steps and stayed there for hundreds).
        self.factor = 2**levels

    def forward(self, x: torch.Tensor, candidates: list[torch.Tensor]) -> torch.Tensor:
        # Differences to the input, amplified: they are small next to the picture itself.
        features = torch.cat([x] + [4.0 * (c - x) for c in candidates[1:]], 1)
        height, width = x.shape[-2:]
        pad_h, pad_w = (-height) % self.factor, (-width) % self.factor
        logits = self.body(F.pad(features, (0, pad_w, 0, pad_h), mode="replicate"))
        logits = LOGIT_BOUND * torch.tanh(logits / LOGIT_BOUND)
        logits = F.interpolate(logits, scale_factor=self.factor, mode="bilinear", align_corners=False)
        return logits[..., :height, :width].softmax(1)


class GatedDeblur(nn.Module):
    def __init__(self, network: nn.Module, gate: Gate, amount: float = 6.0, radius: float = 0.8,
                 deconvolution: tuple[float, ...] = (), regularisation: float = DECONVOLUTION_REGULARISATION) -> None:
        super().__init__()
        self.network = network
        self.gate = gate
        # Stored as integers, σ and amounts in thousandths, λ in millionths: shipping halves float tensors, and σ 0.8
        # in float16 is 0.7998. Run from the same integers as plain numbers, so that a frame on a GPU does not wait
        # to read them back from the buffers.
        unsharp = [round(amount * 1000), round(radius * 1000)]
        bank = [round(regularisation * 1e6)] + [round(sigma * 1000) for sigma in deconvolution]
        self.register_buffer("unsharp", torch.tensor(unsharp, dtype=torch.int32))
        if deconvolution:  # files without the bank keep their exact key set
            self.register_buffer("deconvolution", torch.tensor(bank, dtype=torch.int32))
        self.amount, self.radius = (v / 1000 for v in unsharp)
        self.regularisation, self.sigmas = bank[0] / 1e6, [v / 1000 for v in bank[1:]]
        self.padder_size = getattr(network, "padder_size", 1)  # NAFNet's: the loader pads frames to it
        # The context a tile needs (the model stage's tile_overlap is at least this): the deconvolutions reach far,
        # and a tile's output is used up to half its overlap from the cut.
        self.tile_context = 2 * deconvolution_reach(max(deconvolution)) if deconvolution else 0

    def candidates(self, x: torch.Tensor) -> list[torch.Tensor]:
        fixed = [x, self.network(x).clamp(0.0, 1.0), unsharp_mask(x, self.amount, self.radius, threshold=0.0)]
        return fixed + gaussian_deconvolution(x, self.sigmas, self.regularisation) if self.sigmas else fixed

    def blend(self, x: torch.Tensor, candidates: list[torch.Tensor]) -> torch.Tensor:
        weights = self.gate(x, candidates)
        return sum(weights[:, i : i + 1] * c for i, c in enumerate(candidates))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blend(x, self.candidates(x))


def _deconvolutions(state_dict: StateDict) -> int:
    bank = state_dict.get("deconvolution")
    return 0 if bank is None else max(bank.numel() - 1, 0)


def _gate_shape(state_dict: StateDict) -> tuple[int, int] | None:
    """(width, levels) of the gate's convolutions, or None when they are not a gate's."""
    convs = sorted(int(key.split(".")[2]) for key in state_dict
                   if key.startswith("gate.body.") and key.endswith(".weight"))  # fmt: skip
    if not convs or convs != list(range(0, 2 * len(convs), 2)) or len(convs) < 5:
        return None
    first = state_dict["gate.body.0.weight"]
    if first.ndim != 4 or first.shape[1] != 3 * (len(CANDIDATES) + _deconvolutions(state_dict)):
        return None
    return int(first.shape[0]), len(convs) - 4  # input conv, levels, two context convs, the logits


def _deconvolution_bank(state_dict: StateDict) -> tuple[tuple[float, ...], float]:
    """(σ list, λ) of a file's bank, checked against the bounds: ((), λ) when it has none."""
    if "deconvolution" not in state_dict:
        return (), DECONVOLUTION_REGULARISATION
    regularisation, *sigmas = (int(v) for v in state_dict["deconvolution"].flatten())
    sigmas_px = tuple(s / 1000 for s in sigmas)
    if not sigmas_px or len(sigmas_px) > MAX_DECONVOLUTIONS:
        raise ValueError(f"deconvolution bank of {len(sigmas_px)} σ (1–{MAX_DECONVOLUTIONS})")
    if not all(MIN_RADIUS <= s <= MAX_SIGMA for s in sigmas_px) or not 1 <= regularisation <= 1_000_000:
        raise ValueError(f"deconvolution σ {', '.join(f'{s:g}' for s in sigmas_px)} / λ {regularisation / 1e6:g} "
                         f"outside {MIN_RADIUS:g}–{MAX_SIGMA:g} / 1e-06–1")
    return sigmas_px, regularisation / 1e6


def _detect(state_dict: StateDict) -> bool:
    return "unsharp" in state_dict and "network.intro.weight" in state_dict and _gate_shape(state_dict) is not None


class GatedDeblurArch(Architecture[GatedDeblur]):
    def __init__(self) -> None:
        super().__init__(id="GatedDeblur", name="Gated deblur (network / unsharp mask / input)", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[GatedDeblur]:
        from spandrel.architectures.NAFNet import NAFNetArch

        inner = {key[len("network."):]: value for key, value in state_dict.items() if key.startswith("network.")}
        network = NAFNetArch().load(inner).model
        width, levels = _gate_shape(state_dict)  # type: ignore[misc]  # detect() has checked it
        if levels > MAX_LEVELS:  # a crafted file: 2**levels would be the frame padding's multiple
            raise ValueError(f"gate with {levels} levels (at most {MAX_LEVELS})")
        amount, radius = (int(v) / 1000 for v in state_dict["unsharp"])
        # The unsharp stage's own bounds: a crafted radius would otherwise ask for a kernel of any size.
        if not (0.0 <= amount <= MAX_AMOUNT and MIN_RADIUS <= radius <= MAX_RADIUS):
            raise ValueError(f"unsharp amount {amount:g} / radius {radius:g} outside 0–{MAX_AMOUNT:g} / "
                             f"{MIN_RADIUS:g}–{MAX_RADIUS:g}")
        sigmas, regularisation = _deconvolution_bank(state_dict)
        model = GatedDeblur(network, Gate(width, levels, len(CANDIDATES) + len(sigmas)), amount, radius,
                            sigmas, regularisation)  # fmt: skip
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="Restoration",
            tags=[f"gate{width}", f"1/{2**levels}"],
            supports_half=True,
            supports_bfloat16=True,
            scale=1,
            input_channels=3,
            output_channels=3,
            size_requirements=SizeRequirements(multiple_of=model.gate.factor),
        )
