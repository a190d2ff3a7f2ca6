"""The GPU check (benchmarks/gpu_check.py) runs end to end on the CPU: its smoke run, ready for the first GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
# One of each kind (a full CPU run of every alias takes many minutes here: sr4-gan is RRDB ×4):
# a classical stage, a network, a preset, the CUDA→CPU→CUDA chain, and the 10-bit clip.
CHECKED = ["sharpen", "sr2", "preset upscale2x", "sr2,nlm,sr2 (CUDA→CPU→CUDA)", "denoise, 10-bit"]


@pytest.mark.slow
def test_gpu_check_smoke_run_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    only = [argument for label in CHECKED for argument in ("--only", label)]
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--small", "--out", str(out), *only],
                          capture_output=True, text=True, timeout=1800, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [entry["label"] for entry in result["agreement"]] == CHECKED
    for entry in result["agreement"]:
        # The same device twice: the same frames, so every chain agrees exactly.
        assert entry["agree"] and entry["frames"] == 3 and entry["max_levels_8bit"] == 0, entry
    assert [e["depth"] for e in result["agreement"] if "10-bit" in e["label"]] == [10]
    assert [figures["chain"] for figures in result["speed"]] == ["sr2", "sr4"]
    for figures in result["speed"]:
        for part in ("decode-only", "model-only", "encode-only", "end-to-end", "naive"):
            assert figures[part]["fps"] > 0 and figures[part]["frames"] == 3
        assert figures["engine_vs_naive"] > 0 and figures["gpu_utilisation_percent"] is None
    assert "| sr2 |" in done.stdout  # the Markdown summary
