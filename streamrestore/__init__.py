"""streamrestore: restore and remaster video files and live streams (denoise, deblur, super-resolve).

    from streamrestore import restore_video, restore_image
    restore_video("old_film.mp4", chain="denoise,sr4")

    from streamrestore import PreparedChain, RunSettings
    prepared = PreparedChain("denoise,sr2", RunSettings(device="cpu", tile=512))
    prepared.restore_video("a.mp4"); prepared.restore_image_file("b.png")

The names are imported on first use, so ``import streamrestore`` stays cheap and side-effect free.
"""

__version__ = "0.1.0"
_API = ("PreparedChain", "RunSettings", "OutputSettings", "restore_video", "restore_image", "read_image",
        "write_image")
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        from . import restore

        return getattr(restore, name)
    raise AttributeError(f"module 'streamrestore' has no attribute {name!r}")
