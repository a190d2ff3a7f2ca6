"""Chain strings and YAML presets: syntax, validation with names and lines, bundled presets."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrestore.errors import ConfigError, UnknownStageError
from streamrestore.presets import available_presets, build_chain, parse_chain
from streamrestore.registry import Registry


def test_chain_string_with_options_and_model_shorthand() -> None:
    plan = parse_chain("nlm:strength=12:search=15, sr4=weights/x.pth:tile=256")
    assert [(s.name, s.settings) for s in plan.stages] == [
        ("nlm", {"strength": "12", "search": "15"}),
        ("sr4", {"model": "weights/x.pth", "tile": "256"}),
    ]


def test_options_are_converted_and_range_checked() -> None:
    chain = build_chain(parse_chain("nlm:strength=12,resize:scale=3:method=bicubic"), Registry())
    assert chain[0].stage.settings["strength"] == 12.0
    assert chain[1].stage.capabilities.scale == 3
    with pytest.raises(ConfigError, match="option 'strength' needs float, got 'abc'"):
        build_chain(parse_chain("nlm:strength=abc"), Registry())
    with pytest.raises(ConfigError, match="'strength' must be ≤ 100"):
        build_chain(parse_chain("nlm:strength=500"), Registry())
    with pytest.raises(ConfigError, match="has no option 'foo'"):
        build_chain(parse_chain("nlm:foo=1"), Registry())
    with pytest.raises(ConfigError, match="key=value"):
        parse_chain("nlm:strength")


def test_bundled_presets_load_and_build() -> None:
    names = available_presets()
    assert "old_film" in names
    for name in names:
        chain = build_chain(parse_chain(name), Registry())
        assert chain, name
    old_film = parse_chain("old_film")
    assert [s.name for s in old_film.stages] == ["mc-denoise", "oldfilm"]
    assert old_film.output["crf"] == 18.0
    classical = parse_chain("old_film_classical")
    assert [s.name for s in classical.stages] == ["tdenoise", "sharpen", "resize"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "preset.yaml"
    path.write_text(text)
    return path


def test_yaml_bad_key_is_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "chain:\n  - denoise\noutptu:\n  crf: 3\n")
    with pytest.raises(ConfigError, match=r"preset.yaml line 3: unknown key 'outptu'"):
        parse_chain(str(path))


def test_yaml_bad_stage_option_is_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "chain:\n  - sr2\n  - stage: nlm\n    strenght: 3\n")
    with pytest.raises(ConfigError, match=r"preset.yaml line 3: .*no option 'strenght'"):
        build_chain(parse_chain(str(path)), Registry())


def test_yaml_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line 4: output 'crf' has a bad value 'best'"):
        parse_chain(str(write(tmp_path, "chain:\n  - sr2\noutput:\n  crf: best\n")))
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_chain(str(write(tmp_path, "chain: [sr2\n")))
    with pytest.raises(ConfigError, match="missing key 'chain'"):
        parse_chain(str(write(tmp_path, "output:\n  crf: 3\n")))
    with pytest.raises(UnknownStageError, match=r"line 2: unknown stage 'sr5'"):
        build_chain(parse_chain(str(write(tmp_path, "chain:\n  - sr5\n"))), Registry())
    with pytest.raises(ConfigError, match="preset file not found"):
        parse_chain(str(tmp_path / "missing.yaml"))


def test_alias_given_a_weights_file_becomes_the_model_stage() -> None:
    # Building does not read the file (it is read when the chain runs), so any path will do here.
    chain = build_chain(parse_chain("denoise=w/a.pth,sr4=w/b.pth:tile=128,sharpen,model=w/c.safetensors"), Registry())
    assert [(c.name, c.spec.name) for c in chain] == [
        ("denoise", "model"), ("sr4", "model"), ("sharpen", "unsharp"), ("model", "model")]
    # tile is run policy for that element (BuiltStage.tile), not a model option.
    assert chain[0].stage.settings == {"model": "w/a.pth", "tile_overlap": 16, "outscale": 1,
                                       "border": None, "color_fix": False, "ensemble": 1, "keep_input": 0.0}
    assert chain[0].tile is None
    assert chain[1].stage.settings["outscale"] == 4 and chain[1].tile == 128
    assert chain[2].stage.settings == {"amount": 1.2, "radius": 1.6, "threshold": 0.0}
    assert chain[3].stage.settings["outscale"] == 0  # the network's own scale
    # The user's own options win over the alias's.
    assert build_chain(parse_chain("sr4=w/b.pth:outscale=2"), Registry())[0].stage.settings["outscale"] == 2


def test_yaml_model_key_under_an_alias(tmp_path: Path) -> None:
    path = write(tmp_path, "chain:\n  - stage: sr2\n    model: weights/x2.pth\n    tile: 256\n  - denoise\n")
    chain = build_chain(parse_chain(str(path)), Registry())
    assert chain[0].spec.name == "model"
    assert chain[0].stage.settings == {"model": "weights/x2.pth", "tile_overlap": 16, "outscale": 2,
                                       "border": None, "color_fix": False, "ensemble": 1, "keep_input": 0.0}
    assert chain[0].tile == 256
    assert [c.spec.name for c in chain[1:]] == ["mc-denoise", "model"]  # `denoise` averages in time first
    assert chain[2].stage.settings["model"] == "denoise-nafnet16-video"  # its own
    with pytest.raises(ConfigError, match=r"line 2: .*'resize' has no option 'model'"):
        build_chain(parse_chain(str(write(tmp_path, "chain:\n  - stage: resize\n    model: x.pth\n"))), Registry())


def test_default_aliases_point_at_packaged_networks_and_repeat() -> None:
    cpu = Registry(accelerated=False)
    chain = build_chain(parse_chain("sr4,sr2,jpeg,denoise,nlm,tdenoise"), cpu)
    assert [(c.name, c.spec.name) for c in chain] == [
        ("sr4", "model"), ("sr4", "model"), ("sr2", "model"), ("jpeg", "model"), ("denoise", "mc-denoise"),
        ("denoise", "model"), ("nlm", "nlm-denoise"), ("tdenoise", "nlm-temporal")]
    assert chain[0].stage.settings["model"] == "waifu2x-upconv7-photo-x2"  # ×2 twice: the measured best ×4 on CPU
    assert chain[2].stage.settings["model"] == "sr2-upconv7"  # ours: the packaged UpConv7, fine-tuned
    # Our own denoiser everywhere: photo and anime, CPU and GPU.
    for content in ("photo", "anime"):
        for accelerated in (False, True):
            built = build_chain(parse_chain("denoise"), Registry(content=content, accelerated=accelerated))
            assert [c.spec.name for c in built] == ["mc-denoise", "model"], (content, accelerated)
            assert built[1].stage.settings["model"] == "denoise-nafnet16-video", (content, accelerated)
    gpu = build_chain(parse_chain("sr2"), Registry(accelerated=True))
    assert gpu[0].stage.settings["model"] == "sr2-cunet"  # ours, fine-tuned from waifu2x's CUNet
    anime = build_chain(parse_chain("sr4"), Registry(content="anime", accelerated=False))
    assert [c.stage.settings["model"] for c in anime] == ["realesr-animevideov3-x4"]
    # A user's own weights replace the alias's network and are applied once, at the alias's scale.
    own = build_chain(parse_chain("sr4=w/x2.pth"), cpu)
    assert len(own) == 1 and own[0].stage.settings["outscale"] == 4
    with pytest.raises(ConfigError, match="--content must be one of photo, anime"):
        Registry(content="cartoon")
