"""streamrestore: restore and remaster video files and live streams (denoise, deblur, super-resolve).

    from streamrestore import restore_video, restore_image
    restore_video("old_film.mp4", chain="denoise,sr4")

The names are imported on first use, so ``import streamrestore`` stays cheap and side-effect free.
"""

__version__ = "0.1.0"
__all__ = ["restore_video", "restore_image", "read_image", "write_image", "__version__"]


def __getattr__(name: str):
    if name in ("restore_video", "restore_image", "read_image", "write_image"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'streamrestore' has no attribute {name!r}")
