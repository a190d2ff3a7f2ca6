"""Helpers the tests share: media makers (media.py), attack files (attacks.py), the ncnn reference runner
(ncnn_run.py), the seed-architecture cases (seed_archs.py), photos and metrics (photos.py), the
command-line helpers (cli.py) and torch's thread count pinned for a module (threads.py). Test modules import from here; no test module imports another."""
