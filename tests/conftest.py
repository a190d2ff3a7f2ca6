"""Fixtures every test module may use; helpers that are not fixtures live in tests/support/.

Test modules import helpers from ``support`` (tests/ is on sys.path: pytest's rootdir-relative import of this
conftest), never from one another. The one clip factory is support/media.py.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from streamrestore.cli import main

from support.cli import Outcome
from support.media import make_stream_clip
from support.photos import held_out_astronaut


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """A 256×256 crop of a photo held out from every shipped model's training (asserted)."""
    return held_out_astronaut()


@pytest.fixture(scope="session")
def stream_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "ts": make_stream_clip(folder / "clip.ts", "mpegts"),
        "mkv": make_stream_clip(folder / "clip.mkv"),
        "mp4": make_stream_clip(folder / "clip.mp4"),
        "fragmented": make_stream_clip(folder / "fragmented.mp4", "mp4", options={"movflags": "frag_keyframe+empty_moov"}),
        # Large enough that the media data does not fit FFmpeg's read buffer ahead of the index.
        "plain_big": make_stream_clip(folder / "plain_big.mp4", frames=12, size=(160, 120), audio=False, noise=True),
        "faststart": make_stream_clip(folder / "faststart.mp4", "mp4", frames=48, size=(160, 120), noise=True,
                                      options={"movflags": "faststart"}),
        "audio_only": make_stream_clip(folder / "audio_only.mka", video=False),
        "long_ts": make_stream_clip(folder / "long.ts", "mpegts", frames=120),
        "slow": make_stream_clip(folder / "slow.mp4", frames=120, size=(320, 240), audio=False),
    }


@pytest.fixture
def cli(capsys):
    """``streamrestore.cli.main`` in this process (faster than a subprocess); returns code and output."""
    previous = signal.getsignal(signal.SIGTERM)  # main() installs its own SIGTERM handler

    def run(*argv: object) -> Outcome:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as stop:  # argparse's own errors
            code = stop.code
        out, err = capsys.readouterr()
        return Outcome(code, out, err)

    yield run
    signal.signal(signal.SIGTERM, previous)
