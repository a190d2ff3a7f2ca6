"""Read an ncnn model (``.param`` text graph + ``.bin`` weights) into plain Python and numpy.

The ``.bin`` file has no header and no index: every weight blob follows the previous one, in the order
the layers appear in the ``.param``, and only the layer type says how many blobs a layer owns and
whether each starts with a 4-byte storage tag. So a layer type we do not know cannot simply be skipped
(we would lose our place in the file); it is an error. The check that the bytes we consumed equal the
file size is what catches a wrong guess anywhere in the walk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import WeightsError

PARAM_MAGIC = 7767517

# Storage tags that open a "tagged" weight blob (ncnn ModelBinFromDataReader::load, type 0).
FP16_TAG = 0x01306B47
FP32_TAG = 0  # a zero tag means raw float32 follows

# Layers that own no blob in the .bin. Anything not here and not in _BLOB_READERS is refused.
_NO_BLOB_TYPES = frozenset(
    {
        "Input", "Split", "Concat", "Eltwise", "BinaryOp", "UnaryOp", "Interp", "PixelShuffle",
        "Crop", "Pooling", "ReLU", "Sigmoid", "Clip", "Reshape", "Flatten", "Noop", "Padding",
        "Slice", "Permute", "Softmax", "TanH",
    }
)

ParamValue = int | float | tuple[float, ...]


@dataclass(frozen=True)
class NcnnLayer:
    """One line of a ``.param`` file, with the weight blobs it owns in the ``.bin``."""

    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: dict[int, ParamValue]
    blobs: tuple[np.ndarray, ...] = ()
    blob_dtypes: tuple[str, ...] = ()  # how each blob was stored on disk: "fp16" or "fp32"

    def param(self, key: int, default: ParamValue = 0) -> ParamValue:
        return self.params.get(key, default)

    @property
    def activation(self) -> tuple[int, tuple[float, ...]]:
        """The activation ncnn fused into a Convolution/Deconvolution/InnerProduct (keys 9 and 10).

        ncnn's optimizer folds the following ReLU/LeakyReLU/Sigmoid into the layer; a converter that
        ignores these two keys produces output that looks plausible and is wrong. Type 0 is none,
        1 ReLU, 2 LeakyReLU (slope in the array), 3 Clip, 4 Sigmoid, 5 Mish, 6 HardSwish.
        """
        kind = int(self.params.get(9, 0))
        args = self.params.get(10, ())
        return kind, args if isinstance(args, tuple) else (float(args),)


@dataclass(frozen=True)
class NcnnGraph:
    """A parsed ncnn model: layers in file order, and where they came from."""

    param_path: Path
    bin_path: Path
    layers: tuple[NcnnLayer, ...]
    blob_count: int
    bin_size: int = field(default=0)

    def of_type(self, *types: str) -> list[NcnnLayer]:
        return [layer for layer in self.layers if layer.type in types]

    def weighted(self) -> list[NcnnLayer]:
        """The layers that own weights, in file order (which is also .bin order)."""
        return [layer for layer in self.layers if layer.blobs]


_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _value(text: str, where: str) -> int | float:
    # ncnn itself decides int vs float by looking for '.' or an exponent in the token.
    if not _NUMBER.match(text):
        raise WeightsError(f"{where}: bad parameter value {text!r}")
    return float(text) if any(c in text for c in ".eE") else int(text)


def _parse_params(tokens: list[str], where: str) -> dict[int, ParamValue]:
    params: dict[int, ParamValue] = {}
    for token in tokens:
        key_text, sep, value_text = token.partition("=")
        if not sep:
            raise WeightsError(f"{where}: parameter {token!r} has no '='")
        key = int(_value(key_text, where))
        if key <= -23300:
            # Array parameter: key -23300-k holds k's array, written "n,v1,...,vn".
            parts = value_text.split(",")
            count = int(_value(parts[0], where))
            if count != len(parts) - 1:
                raise WeightsError(f"{where}: array {token!r} announces {count} values")
            params[-23300 - key] = tuple(float(_value(p, where)) for p in parts[1:])
        else:
            params[key] = _value(value_text, where)
    return params


LayerLine = tuple[str, str, tuple[str, ...], tuple[str, ...], dict[int, ParamValue]]


def parse_param(param_path: Path) -> tuple[int, list[LayerLine]]:
    """The blob count and the layer lines (type, name, bottoms, tops, params) of a ``.param``."""
    try:
        lines = Path(param_path).read_text(encoding="ascii").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{param_path}: cannot read ncnn param file ({exc})") from exc
    lines = [line for line in lines if line.strip()]
    if len(lines) < 2 or lines[0].strip() != str(PARAM_MAGIC):
        raise WeightsError(f"{param_path}: not an ncnn param file (magic {PARAM_MAGIC} missing)")
    try:
        layer_count, blob_count = (int(v) for v in lines[1].split())
    except ValueError as exc:
        raise WeightsError(f"{param_path}: line 2 must be 'layers blobs'") from exc
    if len(lines) - 2 != layer_count:
        raise WeightsError(f"{param_path}: announces {layer_count} layers, has {len(lines) - 2}")

    layers = []
    for number, line in enumerate(lines[2:], start=3):
        where = f"{param_path}:{number}"
        tokens = line.split()
        try:
            kind, name, nbottom, ntop = tokens[0], tokens[1], int(tokens[2]), int(tokens[3])
        except (IndexError, ValueError) as exc:
            raise WeightsError(f"{where}: malformed layer line") from exc
        rest = tokens[4:]
        if len(rest) < nbottom + ntop:
            raise WeightsError(f"{where}: fewer blob names than announced")
        bottoms, tops = tuple(rest[:nbottom]), tuple(rest[nbottom : nbottom + ntop])
        params = _parse_params(rest[nbottom + ntop :], where)
        layers.append((kind, name, bottoms, tops, params))
    return blob_count, layers


class _BinReader:
    """Walks the headerless ``.bin`` the way ncnn's ModelBin does, counting every byte."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data = Path(path).read_bytes()
        except OSError as exc:
            raise WeightsError(f"{path}: cannot read ncnn bin file ({exc})") from exc
        self.offset = 0

    def _take(self, nbytes: int, what: str) -> bytes:
        end = self.offset + nbytes
        if end > len(self.data):
            raise WeightsError(f"{self.path}: ends at byte {len(self.data)} inside {what}")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def raw_fp32(self, count: int, what: str) -> np.ndarray:
        """An untagged float32 array (biases, PReLU slopes, Scale data)."""
        return np.frombuffer(self._take(4 * count, what), dtype="<f4").astype(np.float32)

    def tagged(self, count: int, what: str) -> tuple[np.ndarray, str]:
        """A weight array that starts with a 4-byte storage tag."""
        tag = int.from_bytes(self._take(4, what), "little")
        if tag == FP16_TAG:
            nbytes = 2 * count
            values = np.frombuffer(self._take(nbytes, what), dtype="<f2").astype(np.float32)
            self._take((4 - nbytes % 4) % 4, what)  # fp16 blobs are padded to 4 bytes
            return values, "fp16"
        if tag == FP32_TAG:
            return self.raw_fp32(count, what), "fp32"
        # int8 and the 256-entry quantisation table exist in ncnn but not in any model we ship.
        raise WeightsError(f"{self.path}: unsupported weight storage tag {tag:#010x} in {what}")


def _read_blobs(reader: _BinReader, kind: str, name: str, params: dict) -> list[tuple[np.ndarray, str]]:
    """The (array, on-disk dtype) pairs a layer of this type owns, read in ncnn's order."""
    what = f"{kind} {name}"
    if kind in ("Convolution", "Deconvolution", "ConvolutionDepthWise", "DeconvolutionDepthWise",
                "InnerProduct"):
        # Convolution: 0 out, 5 bias flag, 6 weight count. InnerProduct: 0 out, 1 bias, 2 count.
        out = int(params.get(0, 0))
        has_bias = int(params.get(1 if kind == "InnerProduct" else 5, 0))
        count = int(params.get(2 if kind == "InnerProduct" else 6, 0))
        blobs = [reader.tagged(count, what)]
        if has_bias:
            blobs.append((reader.raw_fp32(out, what + " bias"), "fp32"))
        return blobs
    if kind == "PReLU":
        return [(reader.raw_fp32(int(params.get(0, 0)), what), "fp32")]
    if kind == "Scale":
        size = int(params.get(0, 0))
        if size == -233:  # the scale comes from a second input blob, not from the file
            return []
        blobs = [(reader.raw_fp32(size, what), "fp32")]
        if int(params.get(1, 0)):
            blobs.append((reader.raw_fp32(size, what + " bias"), "fp32"))
        return blobs
    if kind == "BatchNorm":
        return [(reader.raw_fp32(int(params[0]), f"{what} {part}"), "fp32")
                for part in ("slope", "mean", "var", "bias")]
    if kind in _NO_BLOB_TYPES:
        return []
    raise WeightsError(f"{reader.path}: layer type {kind!r} ({name}) is not supported")


def load_ncnn(param_path: str | Path, bin_path: str | Path) -> NcnnGraph:
    """Parse ``param_path`` and read every weight blob from ``bin_path``.

    Raises WeightsError (naming the file) if either file is malformed, uses a layer type whose blob
    layout we do not know, or if the ``.bin`` is longer or shorter than the graph says it should be.
    """
    param_path, bin_path = Path(param_path), Path(bin_path)
    blob_count, lines = parse_param(param_path)
    reader = _BinReader(bin_path)
    layers = []
    for kind, name, bottoms, tops, params in lines:
        blobs = _read_blobs(reader, kind, name, params)
        arrays, dtypes = tuple(b[0] for b in blobs), tuple(b[1] for b in blobs)
        layers.append(NcnnLayer(kind, name, bottoms, tops, params, arrays, dtypes))
    if reader.offset != len(reader.data):
        raise WeightsError(
            f"{bin_path}: graph accounts for {reader.offset} bytes but the file has {len(reader.data)}"
        )
    return NcnnGraph(param_path, bin_path, tuple(layers), blob_count, len(reader.data))
