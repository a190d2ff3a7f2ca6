"""The engine: everything that runs a built chain over frames, and nothing that knows what a stage computes.

- ``threads``   decode, compute and encode threads with bounded queues between them (``run_stream``)
- ``chain``     the chain runner: each stage's node, temporal context, contract checks, flushing
- ``placement`` device and precision per stage, CPU threads, batch size (``BatchSizer``)
- ``framing``   the one owner of a stage call's geometry: border and size-multiple padding, tiles, crop
- ``backoff``   out of device memory: fewer frames per call, then tiles (through ``framing``)
- ``tiling``    overlapping tiles with cross-faded seams
- ``transfer``  host↔device copies and quantisation
"""
