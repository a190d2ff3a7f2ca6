"""What an earlier chain leaves: ``streamrestore train --after CHAIN`` runs every degraded input through
CHAIN (a ×1 chain, e.g. ``denoise``) before the network being trained sees it, so an upscaler meant to run
after a denoiser learns from the denoiser's output, not from the raw damage.

The chain is built and run exactly as ``streamrestore run`` would (``PreparedChain`` on the CPU), one patch
at a time; it is deterministic, so seeded patches stay seeded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from streamrestore.errors import ConfigError


def upstream_chain(chain: str) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a degraded uint8 RGB patch to what ``chain`` makes of it (same size)."""
    from streamrestore.restore import PreparedChain, RunSettings

    prepared = PreparedChain(chain, RunSettings(device="cpu"))
    if prepared.scale != 1:
        raise ConfigError(f"--after {chain!r} changes the size (×{prepared.scale}); it must be a ×1 chain")
    return prepared.restore_array
