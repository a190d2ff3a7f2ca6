"""The web demo: a photo or a video in, a chain of stages, before/after at the same zoom, the result out.

    streamrestore demo [--host 127.0.0.1] [--port 7860] [--max-pixels 32000000] [--device auto]
                       [--max-upload-mb 2048] [--max-video-seconds 3600] [--preview-seconds 4]
                       [--preview-pixels 2100000]
    python demo/app.py [the same options]

A thin Gradio page over ``streamrestore.demo.logic.DemoSession``, which calls ``restore_image`` as the CLI
does. Nothing leaves the machine: Gradio's analytics are off, the Hub client is offline, no weights are
downloaded, and every temporary file lives in one directory that is deleted when the server stops.
The page's API (``/restore``: image, chain, checkpoint, content) serves ``gradio_client`` too. The caps
and their flags are in ``demo/settings.py``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from streamrestore.demo.logic import (
    CHECKPOINT_SUFFIXES, CLEANUP, IMAGE_SUFFIXES, NETWORK, RESIZE_STAGE, SHARPEN, Controls, DemoSession,
    chain_from_controls, option_control, safe_name,
)  # fmt: skip

from streamrestore.demo.settings import DemoSettings
from streamrestore.demo.video import VIDEO_SUFFIXES, VideoSession
from streamrestore.errors import StreamRestoreError
from streamrestore.presets import available_presets
from streamrestore.registry import CONTENTS

if TYPE_CHECKING:
    import gradio as gr

# Set before Gradio (and huggingface_hub, which reads its flag when imported) is imported.
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "STREAMRESTORE_OFFLINE": "1"}
NO_PRESET = "(none)"


def build(session: DemoSession) -> gr.Blocks:
    """The page. Every control only rewrites the chain text; ``Restore`` sends image, chain, checkpoint, content."""
    import gradio as gr

    registry = session.registry(CONTENTS[0])  # for the controls: which aliases exist, their options' ranges

    def aliases(names) -> list[tuple[str, str]]:
        return [("off", ""), *((n, n) for n in names if n in registry.aliases)]

    def slider(alias: str, option: str, label: str, step: float) -> gr.Slider:
        declared, default = option_control(registry, alias, option)  # range and default as the stage declares
        if default is None:  # an "auto" option: the slider starts a tenth of the way along, for when auto is off
            default = declared.minimum + (declared.maximum - declared.minimum) / 10
        return gr.Slider(declared.minimum, declared.maximum, value=default, step=step, label=label, min_width=120)

    with gr.Blocks(title="streamrestore", analytics_enabled=False,
                   delete_cache=(600, int(session.settings.keep_files_s))) as page:  # fmt: skip
        gr.Markdown("## streamrestore\nUpload one photo, choose what to fix, compare before and after, "
                    "download the result as a lossless PNG. Or upload a video: pick a frame, compare two chains "
                    "on it, preview a few restored seconds.")
        with gr.Tab("Photo", elem_id="photo-tab"), gr.Row():
            with gr.Column(scale=2, min_width=360):
                image = gr.File(label="Image: PNG, JPEG, WebP or TIFF, 8 or 16 bit", file_types=list(IMAGE_SUFFIXES),
                                elem_id="image", height=90)  # fmt: skip
                with gr.Row(equal_height=True):
                    preset = gr.Dropdown([NO_PRESET, *available_presets()], value=NO_PRESET, label="Preset",
                                         info="replaces the steps below", elem_id="preset", min_width=160)  # fmt: skip
                    content = gr.Radio(list(CONTENTS), value=CONTENTS[0], label="Content",
                                       info="which networks the aliases use", elem_id="content")  # fmt: skip
                with gr.Row(equal_height=True):
                    cleanup = gr.Radio(aliases(CLEANUP), value="", label="Clean up", elem_id="cleanup", min_width=200)
                    # Only the NLM aliases take a strength (nlm, tdenoise: the same range); the networks ignore it.
                    strength = slider("nlm", "strength", "NLM strength", 0.5)
                    strength_auto = gr.Checkbox(label="auto", value=True, info="from the noise", min_width=90)
                with gr.Row(equal_height=True):
                    sharpen = gr.Radio(aliases(SHARPEN), value="", label="Sharpen", elem_id="sharpen", min_width=200)
                    amount = slider(SHARPEN[0], "amount", "amount", 0.05)
                    radius = slider(SHARPEN[0], "radius", "radius", 0.1)
                with gr.Row(equal_height=True):
                    upscale = gr.Radio(aliases(n for n in registry.aliases if n.startswith("sr")), value="",
                                       label="Upscale", elem_id="upscale", min_width=200)  # fmt: skip
                    declared, _ = option_control(registry, RESIZE_STAGE, "method")
                    method = gr.Radio([NETWORK, *declared.choices], value=NETWORK, label="by",
                                      info="the alias's network, or interpolation", min_width=200)  # fmt: skip
                checkpoint = gr.File(label="Checkpoint (optional; architecture detected): runs first, resized to "
                                           "the upscale factor if one is chosen", file_types=list(CHECKPOINT_SUFFIXES),
                                     elem_id="checkpoint", height=120)  # fmt: skip
                chain = gr.Textbox(label="Chain (as the CLI's --chain; edit freely)", elem_id="chain")
                run = gr.Button("Restore", variant="primary", elem_id="run")
            with gr.Column(scale=3):
                # Only fullscreen: the slider's own download would hand out the 8-bit preview, not the result.
                compare = gr.ImageSlider(label="Before / after (same zoom)", type="filepath", format="png",
                                         interactive=False, elem_id="compare", max_height=560,
                                         buttons=["fullscreen"])  # fmt: skip
                info = gr.Markdown(elem_id="info")
                download = gr.File(label="Download: lossless PNG (16-bit for a 16-bit source)", interactive=False,
                                   elem_id="download", height=70)  # fmt: skip

        def sharpen_defaults(alias: str):
            """Choosing sharpen sets the sliders to its own values; deblur (a network) takes no slider."""
            if not alias:
                return gr.update(), gr.update()
            declared = registry.resolve(alias)[0].options
            return tuple(gr.update(value=option_control(registry, alias, k)[1], interactive=True) if k in declared
                         else gr.update(interactive=False) for k in ("amount", "radius"))  # fmt: skip

        sharpen.change(sharpen_defaults, sharpen, [amount, radius], api_visibility="private", queue=False)

        controls = [preset, cleanup, strength, strength_auto, sharpen, amount, radius, upscale, method, checkpoint]

        def rewrite_chain(preset, cleanup, strength, strength_auto, sharpen, amount, radius, upscale, method,
                          checkpoint) -> str:  # fmt: skip
            return chain_from_controls(Controls(
                "" if preset == NO_PRESET else preset, cleanup or "", None if strength_auto else strength,
                sharpen or "", amount, radius, upscale or "", method,
                safe_name(checkpoint, "model.pth") if checkpoint else "",
            ), registry)  # fmt: skip

        gr.on([c.change for c in controls], rewrite_chain, controls, chain, api_visibility="private",
              show_progress="hidden", queue=False)  # fmt: skip

        def show_upload(path: str | None):
            if not path:
                return None, ""
            try:
                upload, preview = session.preview(path)
            except StreamRestoreError as error:
                raise gr.Error(str(error), duration=None, print_exception=False) from error
            return (preview, preview), upload.describe()

        image.change(show_upload, image, [compare, info], api_visibility="private")
        video_tab(session)

        def restore(path: str | None, chain_text: str, checkpoint_path: str | None, content_name: str):
            if not path:
                raise gr.Error("upload an image first", duration=None, print_exception=False)
            try:
                result = session.restore(path, chain_text or "", checkpoint_path, content_name or CONTENTS[0])
            except StreamRestoreError as error:
                raise gr.Error(str(error), duration=None, print_exception=False) from error
            return (str(result.before), str(result.after)), result.summary(), str(result.output)

        # One job at a time on the device (the stages and their models are shared); others wait in the queue.
        run.click(restore, [image, chain, checkpoint, content], [compare, info, download], api_name="restore",
                  concurrency_limit=1, concurrency_id="device")  # fmt: skip
    return page


def video_tab(session: DemoSession) -> None:
    """The video part: upload a clip, pick a frame by time, compare two chains on it, preview a few seconds."""
    import gradio as gr

    videos = VideoSession(session)
    settings = session.settings

    def fail(error: StreamRestoreError):
        return gr.Error(str(error), duration=None, print_exception=False)

    with gr.Tab("Video", elem_id="video-tab"), gr.Row():
        with gr.Column(scale=2, min_width=360):
            video = gr.File(label="Video: MP4, MKV, MOV, TS, AVI or WebM", file_types=list(VIDEO_SUFFIXES),
                            elem_id="video", height=90)  # fmt: skip
            video_info = gr.Markdown(elem_id="video-info")
            moment = gr.Slider(0, 1, value=0, step=0.01, label="Time (s): the frame to look at", elem_id="time")
            picked = gr.Image(label="Picked frame", type="filepath", format="png", interactive=False,
                              elem_id="picked", height=260)  # fmt: skip
            picked_info = gr.Markdown(elem_id="picked-info")
            with gr.Row(equal_height=True):
                chain_a = gr.Textbox("denoise,sr2", label="Chain A", elem_id="chain-a")
                chain_b = gr.Textbox("old_film", label="Chain B (a preset name works)", elem_id="chain-b")
            video_content = gr.Radio(list(CONTENTS), value=CONTENTS[0], label="Content", elem_id="video-content")
            run_compare = gr.Button("Compare A and B on this frame", variant="primary", elem_id="run-compare")
            with gr.Row(equal_height=True):
                which = gr.Radio(["A", "B"], value="A", label="Preview chain", elem_id="preview-chain")
                length = gr.Slider(0.5, settings.preview_seconds, value=min(2.0, settings.preview_seconds), step=0.5,
                                   label="Preview seconds", elem_id="preview-seconds")  # fmt: skip
            run_preview = gr.Button("Preview a few seconds", elem_id="run-preview")
        with gr.Column(scale=3):
            with gr.Row():
                shown = [gr.Image(label=label, type="filepath", format="png", interactive=False, elem_id=elem,
                                  buttons=["fullscreen"]) for label, elem in
                         (("Original", "cmp-original"), ("A", "cmp-a"), ("B", "cmp-b"))]  # fmt: skip
            compare_info = gr.Markdown(elem_id="compare-info")
            compare_files = gr.File(label="Download A and B: lossless PNG", file_count="multiple",
                                    interactive=False, elem_id="compare-download", height=70)  # fmt: skip
            with gr.Row():
                before = gr.Video(label="Before", interactive=False, elem_id="preview-before")
                after = gr.Video(label="After", interactive=False, elem_id="preview-after")
            preview_info = gr.Markdown(elem_id="preview-info")
            preview_file = gr.File(label="Download the preview (H.264 MP4)", interactive=False,
                                   elem_id="preview-download", height=70)  # fmt: skip

    def open_video(path: str | None):
        if not path:
            return gr.update(maximum=1, value=0), "", None, ""
        try:
            upload, frame, image = videos.pick(path, 0.0)
        except StreamRestoreError as error:
            raise fail(error) from error
        last = max(0.01, upload.duration - 1 / upload.rate)
        return gr.update(maximum=round(last, 2), value=0), upload.describe(), str(image), _picked(frame)

    def pick(path: str | None, t: float):
        if not path:
            raise gr.Error("upload a video first", duration=None, print_exception=False)
        try:
            _, frame, image = videos.pick(path, t)
        except StreamRestoreError as error:
            raise fail(error) from error
        return str(image), _picked(frame)

    def compare(path: str | None, t: float, a: str, b: str, content: str):
        if not path:
            raise gr.Error("upload a video first", duration=None, print_exception=False)
        try:
            result = videos.compare(path, t, [a or "", b or ""], content or CONTENTS[0])
        except StreamRestoreError as error:
            raise fail(error) from error
        return (str(result.original), *map(str, result.restored), result.summary(), [str(p) for p in result.outputs])

    def preview(path: str | None, t: float, chain: str, seconds: float, content: str,
                progress=gr.Progress()):  # fmt: skip
        if not path:
            raise gr.Error("upload a video first", duration=None, print_exception=False)
        progress(0, desc="restoring")
        try:
            upload, result = videos.preview(path, t, chain or "", seconds, content or CONTENTS[0],
                                            lambda done: progress(done, desc="restoring"))  # fmt: skip
        except StreamRestoreError as error:
            raise fail(error) from error
        return str(result.before), str(result.after), result.summary(upload), str(result.after)

    def preview_which(path, t, which, a, b, seconds, content, progress=gr.Progress()):
        return preview(path, t, a if which == "A" else b, seconds, content, progress)

    video.change(open_video, video, [moment, video_info, picked, picked_info], api_name="open_video",
                 concurrency_limit=4, concurrency_id="frames")  # fmt: skip
    moment.change(pick, [video, moment], [picked, picked_info], api_name="pick", trigger_mode="always_last",
                  concurrency_limit=4, concurrency_id="frames")  # fmt: skip
    run_compare.click(compare, [video, moment, chain_a, chain_b, video_content],
                      [*shown, compare_info, compare_files], api_name="compare", concurrency_limit=1,
                      concurrency_id="device")  # fmt: skip
    run_preview.click(preview_which, [video, moment, which, chain_a, chain_b, length, video_content],
                      [before, after, preview_info, preview_file], api_name="preview", concurrency_limit=1,
                      concurrency_id="device")  # fmt: skip


def _picked(frame) -> str:
    return (f"frame {frame.index} at **{frame.time:.3f} s**, picked by **{frame.backend}** in "
            f"{frame.seconds * 1000:.0f} ms")


def start(host: str = "127.0.0.1", port: int = 7860, settings: DemoSettings | None = None,
          workdir: str | Path | None = None, quiet: bool = False) -> tuple[gr.Blocks, DemoSession]:  # fmt: skip
    """Start the server in a background thread; ``stop`` ends it and deletes its work directory."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="streamrestore-demo-"))
    try:
        # The process's environment, on purpose: Gradio and huggingface_hub read these flags, and Gradio puts
        # its uploads and cached outputs under GRADIO_TEMP_DIR, which then lies inside the directory we delete.
        os.environ.update(OFFLINE_ENV, GRADIO_TEMP_DIR=str(workdir / "gradio"))
        session = DemoSession(settings or DemoSettings(), workdir)
        page = build(session)
        page.queue(max_size=64)
        try:
            page.launch(server_name=host, server_port=port, prevent_thread_lock=True, show_error=True, quiet=quiet,
                        max_file_size=session.settings.max_upload_bytes, allowed_paths=[str(workdir)],
                        footer_links=["api"])  # fmt: skip
        except OSError as error:  # the port is taken, the address is not ours
            raise StreamRestoreError(f"cannot serve on {host}:{port}: {error}") from error
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return page, session


def stop(page: gr.Blocks, session: DemoSession) -> None:
    page.close(verbose=False)
    session.close()


def serve(host: str, port: int, settings: DemoSettings) -> int:
    """Run until Ctrl-C or SIGTERM (the CLI turns both into KeyboardInterrupt), then stop and clean up."""
    started = None
    try:
        started = start(host, port, settings)  # cleans up after itself if interrupted while starting
        started[0].block_thread()
    except KeyboardInterrupt:
        pass  # stopping is what was asked for, at any moment
    finally:
        if started is not None:
            stop(*started)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python demo/app.py [--host …]`` is ``streamrestore demo [--host …]``: one parser, one way to fail."""
    from streamrestore.cli import main as cli_main

    return cli_main(["demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
