"""spandrel support for waifu2x UpConv7: detection on key names and shapes, loading with every width read from them."""

from __future__ import annotations

from spandrel import Architecture, ImageModelDescriptor, StateDict

from .waifu2x import UpConv7, run_padded

_KEYS = frozenset(f"net.{i}.{part}" for i in range(0, 13, 2) for part in ("weight", "bias"))


def _detect(state_dict: StateDict) -> bool:
    # Exactly seven layers under "net.", the last a 4x4 transposed convolution ([in, out, 4, 4]).
    return set(state_dict) == _KEYS and tuple(state_dict["net.12.weight"].shape[-2:]) == (4, 4)


class UpConv7Arch(Architecture[UpConv7]):
    def __init__(self) -> None:
        super().__init__(id="UpConv7", name="waifu2x UpConv7", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[UpConv7]:
        in_channels = state_dict["net.0.weight"].shape[1]
        out_channels = state_dict["net.12.weight"].shape[1]
        widths = tuple(state_dict[f"net.{i}.weight"].shape[0] for i in range(0, 11, 2))
        model = UpConv7(in_channels, out_channels, widths)
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR",
            tags=[f"{widths[-1]}nf"],
            supports_half=True,
            supports_bfloat16=True,
            scale=model.scale,
            input_channels=in_channels,
            output_channels=out_channels,
            # Unpadded convolutions: the call pads by the 7 px the network eats, replicating edge pixels
            # as waifu2x does, so that any size goes in and ×2 comes out.
            call_fn=run_padded,
        )
