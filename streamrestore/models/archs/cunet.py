"""spandrel support for CUNet (waifu2x CUNet ×1/×2, Real-CUGAN's SE-less "nose" ×2): detection and loading.

A waifu2x CUNet ×2 has exactly the keys and shapes of spandrel's Real-CUGAN ×2 (Real-CUGAN inherited
the layout), yet pads differently (replicating edge pixels, not reflecting them), which changes the
output by up to 16/255. The weights cannot tell them apart, so a converted waifu2x CUNet carries one
extra key, ``WAIFU2X_MARKER`` (as spandrel's Real-CUGAN "pro" models carry ``pro``), and this
architecture is asked before RealCUGAN. A CUNet ×1 (its ``unet1.conv_bottom`` is a plain 3×3 conv)
or one without SE blocks is unambiguous and needs no marker.
"""

from __future__ import annotations

from spandrel import Architecture, ImageModelDescriptor, ModelTiling, SizeRequirements, StateDict

from .waifu2x import CUNet, run_padded

WAIFU2X_MARKER = "waifu2x"
"""A key whose presence says: this CUNet is waifu2x's (its value is ignored)."""

_KEYS = (
    "unet1.conv1.conv.0.weight", "unet1.conv1_down.weight", "unet1.conv2.conv.0.weight", "unet1.conv2_up.weight",
    "unet1.conv3.weight", "unet1.conv_bottom.weight", "unet2.conv1.conv.0.weight", "unet2.conv3.conv.0.weight",
    "unet2.conv4_up.weight", "unet2.conv5.weight", "unet2.conv_bottom.weight",
)  # fmt: skip
_SE = "unet1.conv2.seblock.conv1.weight"


def _is_x1(state_dict: StateDict) -> bool:
    # x2 ends UNet1 in a 4x4 transposed conv ([64, out, 4, 4]); x1 in a 3x3 conv ([out, 64, 3, 3]).
    return state_dict["unet1.conv_bottom.weight"].shape[-1] == 3


def _detect(state_dict: StateDict) -> bool:
    if not all(key in state_dict for key in _KEYS) or "conv_final.weight" in state_dict:
        return False  # conv_final: Real-CUGAN ×4 / fast, which spandrel loads itself
    return WAIFU2X_MARKER in state_dict or _SE not in state_dict or _is_x1(state_dict)


class CUNetArch(Architecture[CUNet]):
    def __init__(self) -> None:
        super().__init__(id="CUNet", name="CUNet (waifu2x / Real-CUGAN nose)", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[CUNet]:
        se = _SE in state_dict
        # Only Real-CUGAN published a CUNet without SE blocks, and Real-CUGAN reflects at borders.
        waifu2x = WAIFU2X_MARKER in state_dict or se
        state_dict = {key: value for key, value in state_dict.items() if key != WAIFU2X_MARKER}
        scale = 1 if _is_x1(state_dict) else 2
        in_channels = state_dict["unet1.conv1.conv.0.weight"].shape[1]
        out_channels = state_dict["unet2.conv_bottom.weight"].shape[0]
        mode = "replicate" if waifu2x else "reflect"
        model = CUNet(scale, in_channels, out_channels, se=se, pad_mode=mode)
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR" if scale > 1 else "Restoration",
            tags=["waifu2x" if waifu2x else "nose", *(["se"] if se else [])],
            supports_half=True,
            supports_bfloat16=True,
            scale=scale,
            input_channels=in_channels,
            output_channels=out_channels,
            # The call pads by the border and to the size multiple itself; reflection needs more
            # pixels than it pads.
            size_requirements=SizeRequirements(minimum=model.border + 1 if mode == "reflect" else 0),
            # SE blocks weigh channels by a whole-tile average: tiles work, but each sees its own.
            tiling=ModelTiling.DISCOURAGED if se else ModelTiling.SUPPORTED,
            call_fn=run_padded,  # in the network's pad_mode
        )
