"""IGNN (streamrestore.models.archs.ignn): the sczhou/IGNN key layout, the forward pass against an independent
loop-based reference (tests/support/seed_archs_ignn.py), detection from an official checkpoint, and a run
through the ``model`` stage. Small networks with random weights, small images, float64 for the comparisons.
"""

from __future__ import annotations

import numpy as np
import pytest
import spandrel
import torch

from streamrestore.frames import image_to_tensor
from streamrestore.models.archs.ignn import IGNN, IGNNArch, minimum_size, son_image
from streamrestore.models.loader import load_model
from streamrestore.restore import restore_image
from streamrestore.training.degrade import matlab_imresize

from support import seed_archs as earlier
from support import seed_archs_more as more
from support.seed_archs_ignn import official_shapes, reference_forward
from support.threads import torch_threads

FEATS, BLOCKS = 8, (1, 2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tensors here are tiny: a second thread costs more than it saves (7× the CPU time on a busy machine)."""
    with torch_threads(1):
        yield


def ignn(scale: int, **kwargs) -> IGNN:
    return earlier.calm(IGNN(scale, FEATS, BLOCKS, **kwargs), 0.5).eval()


def official_checkpoint(net: IGNN) -> dict:
    """What sczhou/IGNN's ``save_checkpoint`` writes: the DataParallel state dict beside the solver's."""
    solver = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    return {"epoch_idx": 80, "best_PSNR": 27.3, "best_epoch": 77,
            "net_state_dict": {f"module.{key}": value for key, value in net.state_dict().items()},
            "solver_state_dict": solver.state_dict()}  # fmt: skip


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_state_dict_has_the_official_keys_and_loads_strictly(scale: int) -> None:
    shapes = official_shapes(FEATS, BLOCKS, scale)
    assert {key: tuple(value.shape) for key, value in IGNN(scale, FEATS, BLOCKS).state_dict().items()} == shapes
    torch.manual_seed(scale)
    state = {key: torch.randn(shape) for key, shape in shapes.items()}
    state["graph.embedcnn.model.0.weight"] = state["vggnet.model.0.weight"]  # one module under two names
    net = IGNN(scale, FEATS, BLOCKS)
    net.load_state_dict(state, strict=True)
    assert torch.equal(net.graph.embedcnn.model[0].weight, state["vggnet.model.0.weight"])
    assert torch.equal(net.tail[-1][0].weight, state[f"tail.{1 if scale == 4 else 0}.0.weight"])


@pytest.mark.parametrize("height, width", [(16, 16), (29, 37), (31, 18)])
@pytest.mark.parametrize("s", [2, 3])
def test_son_image_is_matlabs_imresize(s: int, height: int, width: int) -> None:
    image = np.random.default_rng(s).uniform(0, 255, (height, width, 3))
    expected = matlab_imresize(image[: height // s * s, : width // s * s], (height // s, width // s)).clip(0, 255)
    got = son_image(torch.from_numpy(image).permute(2, 0, 1)[None], s)[0].permute(1, 2, 0).numpy()
    assert np.abs(got - expected).max() < 1e-9


@pytest.mark.parametrize(
    "scale, window, size, other",
    [(4, 3, (24, 26), {"window": 30}),  # a son grid (6×7 patches) larger than the window: windowed search
     (3, 30, (19, 20), {"k": 4})],  # the whole son grid (3×3 patches) for every query
    ids=["x4-windowed", "x3-whole-grid"],
)
def test_forward_equals_the_loop_reference(scale: int, window: int, size: tuple[int, int], other: dict) -> None:
    torch.manual_seed(scale)
    net = ignn(scale, window=window).double()
    image = torch.rand(1, 3, *size, dtype=torch.float64)
    with torch.inference_mode():
        ours = net(image)
        for name, value in other.items():  # another search: the comparison must be able to see it
            setattr(net, name, value)
        changed = net(image)
    reference = reference_forward(net.state_dict(), image, scale, window=window)
    assert ours.shape == reference.shape == (1, 3, size[0] * scale, size[1] * scale)
    assert (ours - reference).abs().max() < 1e-10
    assert (changed - reference).abs().max() > 1e-6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    net = ignn(4)
    path = tmp_path_factory.mktemp("ignn") / "IGNN_x4.pth"
    torch.save(official_checkpoint(net), path)
    return path, net


def test_detected_from_an_official_checkpoint_with_its_configuration(checkpoint) -> None:
    path, net = checkpoint
    loaded = load_model(path)
    descriptor, model = loaded.descriptor, loaded.descriptor.model
    assert descriptor.architecture.id == "IGNN" and descriptor.scale == loaded.scale == 4
    assert (model.head[0].out_channels, len(model.body1), len(model.body2) - 1, model.s) == (FEATS, *BLOCKS, 2)
    assert model.rgb_range == 255 and (model.k, model.window) == (5, 30)
    assert descriptor.size_requirements.minimum == minimum_size(2) == 12
    assert descriptor.tiling == spandrel.ModelTiling.DISCOURAGED and loaded.tile_align == 1
    state = {key: value for key, value in net.state_dict().items()}
    assert more.claimed_by(state) == {"IGNN"}
    for scale in (2, 3):
        other = IGNNArch().load(IGNN(scale, 16, (2, 3)).state_dict()).model
        assert (other.scale, other.s, len(other.body1), len(other.body2) - 1) == (scale, scale, 2, 3)


@pytest.mark.parametrize("case", earlier.CASES + more.CASES, ids=earlier.IDS + more.IDS)
def test_earlier_seed_files_are_not_claimed(case) -> None:
    torch.manual_seed(0)
    state = {f"{case.wrap}{key}": value for key, value in case.build().state_dict().items()} | (case.extra or {})
    assert not IGNNArch().detect(spandrel.canonicalize_state_dict(state))


def test_runs_through_the_chain_on_an_odd_frame(checkpoint) -> None:
    path, net = checkpoint
    image = earlier.photo()  # 29×37
    out = restore_image(image, f"model:model={path}")
    assert out.shape == (29 * 4, 37 * 4, 3)
    expected = earlier.direct(net, image_to_tensor(image), 3)
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert out.std() > 1
    # Smaller than the 12 px the patch search needs at ×4: padded to it and cropped back.
    assert restore_image(earlier.photo(7, 9), f"model:model={path}").shape == (28, 36, 3)
