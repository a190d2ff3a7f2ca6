"""The house's rules: no import circle between streamrestore's modules, the library never imports the built-in
plugins, and a network that a chain uses twice (``sr4`` = ×2 twice) is loaded once."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import torch
from spandrel.architectures.Compact import Compact

import streamrestore
from streamrestore.aliases import MODEL_STAGE, Alias
from streamrestore.models import loader
from streamrestore.registry import Registry
from streamrestore.restore import PreparedChain, RunSettings

PACKAGE = Path(streamrestore.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_imports(path: Path, modules: set[str]) -> set[str]:
    """The streamrestore modules ``path`` imports when it is imported (not inside functions or TYPE_CHECKING)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def test_no_module_of_streamrestore_imports_the_plugins() -> None:
    offenders = [str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")
                 if "streamrestore_plugins" in p.read_text(encoding="utf-8")]  # fmt: skip
    assert offenders == []


def test_there_is_no_import_circle() -> None:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: module_level_imports(path, set(paths)) for name, path in paths.items()}
    assert sum(map(len, graph.values())) > 20  # the parser sees the imports, so an empty answer means something
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError("import circle: " + " -> ".join([*trail[trail.index(name):], name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_a_network_repeated_in_a_chain_is_loaded_once(tmp_path: Path, monkeypatch) -> None:
    torch.manual_seed(0)
    path = tmp_path / "tiny_x2.pth"
    torch.save({"params": Compact(num_feat=8, num_conv=2, upscale=2).state_dict()}, path)
    loads = []
    real = loader.load_network
    monkeypatch.setattr(loader, "load_network", lambda p: loads.append(p) or real(p))
    # As the default `sr4` (a ×2 network twice), with a tiny network.
    twice = Alias(MODEL_STAGE, {"model": str(path)}, "×4: tiny ×2 twice", {"outscale": 4}, repeat=2)
    prepared = PreparedChain("sr4", RunSettings(device="cpu"), Registry(aliases={"sr4": twice}))
    assert len(prepared.stages) == 2 and prepared.stages[0].stage is prepared.stages[1].stage
    out = prepared.restore_array(np.full((12, 10, 3), 100, np.uint8))
    prepared.restore_array(np.full((12, 10, 3), 100, np.uint8))
    assert out.shape == (48, 40, 3) and prepared.scale == 4
    assert loads == [path]
