"""The web demo end to end: a real browser, the gradio_client API, bad input, one model shared by two clients.

The server (demo/app.py's ``start``) runs in this process, in Gradio's own thread, on 127.0.0.1 and a free
port; it is stopped at the end and its work directory must then be gone. While it runs, a socket this process
opens to anything but loopback fails the module, and the browser's requests beyond the server are blocked
and fail the browser test: the demo must work with no network at all.

The browser is Debian's ``chromium`` (``apt-get install chromium``), driven by Playwright; nothing is
downloaded. ``STREAMRESTORE_DEMO_SCREENSHOT=docs/demo.png pytest tests/test_demo.py -k browser`` refreshes
the README's screenshot.
"""

from __future__ import annotations

import ipaddress
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from spandrel.architectures.Compact import Compact

from streamrestore.demo.app import start, stop
from streamrestore.demo.logic import DemoSession, make_registry
from streamrestore.demo.settings import DemoSettings
from streamrestore.restore import RunSettings, read_image, restore_image

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
MAX_PIXELS = 1_500_000  # the photo (451×300) ×2 fits, ×4 (2.2 MP) does not
TILE = 128  # model stages run in tiles of this size: the test images are larger, so tiling is exercised
TIMEOUT_MS = 60_000

# Gradio's queue calls pandas in ways pandas 3 deprecates; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")


def write_rgb(path: Path, pixels: np.ndarray, params: tuple[int, ...] = ()) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), list(params))
    return path


def read_rgb(path: str | Path) -> np.ndarray:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert data is not None, f"{path} is not a readable image"
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)


# -- the server, and a guard on the network --------------------------------------------------------------
@pytest.fixture(scope="module")
def offline_network():
    """Fail any connection from this process to a non-loopback address (recorded, then refused)."""
    outside: list[str] = []
    real = (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)

    def is_local(host: object) -> bool:
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return host in (None, "localhost", "")

    def guarded(real):
        def connect(self, address):
            if self.family in (socket.AF_INET, socket.AF_INET6) and not is_local(address[0]):
                outside.append(f"connect {address}")
                raise OSError(f"the demo test allows no network: {address}")
            return real(self, address)
        return connect

    def getaddrinfo(host, *args, **kwargs):
        if not is_local(host):
            outside.append(f"resolve {host}")
            raise socket.gaierror(f"the demo test allows no network: {host}")
        return real[2](host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex = guarded(real[0]), guarded(real[1])
    socket.getaddrinfo = getaddrinfo
    try:
        yield outside
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = real
    assert not outside, f"the demo reached for the network: {outside}"


@dataclass(frozen=True)
class Server:
    url: str
    session: DemoSession
    workdir: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(offline_network, tmp_path_factory):
    saved = dict(os.environ)
    workdir = tmp_path_factory.mktemp("demo") / "work"
    settings = DemoSettings(max_pixels=MAX_PIXELS, tile=TILE, device="cpu", max_video_seconds=60,
                            preview_pixels=200_000)  # fmt: skip
    port = free_port()
    page, session = start("127.0.0.1", port, settings, workdir, quiet=True)
    try:
        yield Server(f"http://127.0.0.1:{port}/", session, workdir)
    finally:
        stop(page, session)
        os.environ.clear()
        os.environ.update(saved)
    assert not workdir.exists(), "the demo left its work directory behind"


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    return Client(server.url, verbose=False, analytics_enabled=False,
                  download_files=str(tmp_path_factory.mktemp("downloads")))  # fmt: skip


def restore_via_api(client, image: Path, chain: str, checkpoint: Path | None = None, content: str = "photo"):
    from gradio_client import handle_file

    return client.predict(handle_file(str(image)), chain, handle_file(str(checkpoint)) if checkpoint else None,
                          content, api_name="/restore")  # fmt: skip


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    return write_rgb(tmp_path_factory.mktemp("photos") / "chelsea.png", skimage.data.chelsea())  # 451×300


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> np.ndarray:
    return np.ascontiguousarray(skimage.data.chelsea()[60:260, 100:380])  # 280×200, a real photo's texture


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A random-weight ×2 Compact network (Real-ESRGAN's SRVGGNetCompact) in its published key layout."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "tiny_x2.pth"
    torch.save({"params": Compact(num_feat=8, num_conv=2, upscale=2).state_dict()}, path)
    return path


# -- a real browser ----------------------------------------------------------------------------------------
@contextmanager
def offline_page(server, height: int):
    """A Chromium page that can reach only the demo server; on leaving, nothing else must have been asked for."""
    if not Path(CHROMIUM).exists():
        pytest.fail("the browser test needs Debian's chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []

    def only_the_server(route) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, timeout=TIMEOUT_MS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": height}, accept_downloads=True)
            page.set_default_timeout(TIMEOUT_MS)
            page.route("**/*", only_the_server)
            yield page
        finally:
            browser.close()
    assert not blocked, f"the page asked for something beyond the server: {blocked}"


def save_download(page, link: str, folder: Path) -> Path:
    """Click the download link ``link`` (a CSS selector) and save what the browser gets under its own name."""
    with page.expect_download() as started:
        page.locator(link).first.click()
    saved = folder / started.value.suggested_filename
    started.value.save_as(saved)
    return saved


def screenshot(page, path: Path) -> Path:
    """The whole page, from the top."""
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.mark.slow
def test_browser_restores_and_downloads_what_the_library_gives(server, photo, tmp_path):
    from playwright.sync_api import expect

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("these are notes, not pixels\n")
    with offline_page(server, height=860) as page:
        # A file that is not an image: a message in the page.
        page.goto(server.url)
        page.locator("#image input[type=file]").set_input_files(not_an_image)
        expect(page.get_by_text("notes.png is not an image").first).to_be_visible()

        # The server still serves: a fresh page, a real photo, denoise and ×2 chosen with the controls.
        page.goto(server.url)
        page.locator("#image input[type=file]").set_input_files(photo)
        expect(page.locator("#info")).to_contain_text("451×300 PNG, 8-bit RGB")
        page.get_by_test_id("denoise-radio-label").click()
        page.get_by_test_id("sr2-radio-label").click()
        chain = page.locator("#chain textarea")
        expect(chain).to_have_value("denoise,sr2")
        page.locator("#run").click()
        expect(page.locator("#info")).to_contain_text("902×600", timeout=TIMEOUT_MS)
        expect(page.locator("#info")).to_contain_text("cpu")
        expect(page.locator("#info")).to_contain_text(f"denoise:tile={TILE},sr2:tile={TILE}")
        expect(page.locator("#compare img")).to_have_count(2)

        saved = save_download(page, "#download a", tmp_path)
        shot = screenshot(page, tmp_path / "demo.png")

    assert saved.name == "chelsea.restored.png"
    result = read_rgb(saved)
    # The page ran both networks, our denoiser and the photo content's ×2, in tiles (the page says so:
    # "chain `denoise:tile=128,sr2:tile=128`").
    expected = restore_image(read_image(photo), f"denoise:tile={TILE},sr2:tile={TILE}", RunSettings(device="cpu"))
    assert result.shape == (600, 902, 3) and result.dtype == np.uint8
    assert np.array_equal(result, expected), "the download differs from restore_image's output"
    assert shot.stat().st_size > 10_000
    if os.environ.get("STREAMRESTORE_DEMO_SCREENSHOT"):
        save_screenshot(shot, Path(os.environ["STREAMRESTORE_DEMO_SCREENSHOT"]))


def save_screenshot(shot: Path, destination: Path) -> None:
    """A 256-colour PNG: the page is flat UI around one photo, so it stays well under 300 KB."""
    from PIL import Image

    with Image.open(shot) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(destination, optimize=True)


# -- the API (gradio_client) ------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "bits", "params"), [
    ("photo16.png", 16, ()),
    ("photo16.tif", 16, ()),
    ("photo.webp", 8, (cv2.IMWRITE_WEBP_QUALITY, 90)),
    ("photo.jpg", 8, (cv2.IMWRITE_JPEG_QUALITY, 90)),
])  # fmt: skip
def test_api_keeps_bit_depth_and_matches_the_library(client, small, tmp_path, name, bits, params):
    pixels = small.astype(np.uint16) * 257 + np.uint16(40) if bits == 16 else small  # 16-bit: not just 8 shifted
    source = write_rgb(tmp_path / name, pixels, params)
    chain = "sharpen:amount=0.8,resize:scale=2:method=bicubic"
    _, summary, output = restore_via_api(client, source, chain)
    result = read_rgb(output)
    assert Path(output).suffix == ".png"
    assert result.dtype == (np.uint16 if bits == 16 else np.uint8)
    assert result.shape == (400, 560, 3)
    assert np.array_equal(result, restore_image(read_image(source), chain, RunSettings(device="cpu")))
    assert f"{bits}-bit RGB" in summary and f"chain `{chain}`" in summary


def tiny_image(tmp_path: Path) -> Path:
    return write_rgb(tmp_path / "tiny.png", np.full((8, 8, 3), 128, np.uint8))


def corrupt_png(tmp_path: Path, photo: Path) -> Path:
    data = bytearray(photo.read_bytes())
    data[5000:9000] = bytes(4000)
    (tmp_path / "corrupt.png").write_bytes(bytes(data))
    return tmp_path / "corrupt.png"


def truncated_jpeg(tmp_path: Path, photo: Path) -> Path:
    full = write_rgb(tmp_path / "full.jpg", read_rgb(photo))
    (tmp_path / "cut.jpg").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return tmp_path / "cut.jpg"


def huge_png(tmp_path: Path, photo: Path) -> Path:
    return write_rgb(tmp_path / "huge.png", np.zeros((1100, 1400, 3), np.uint8))  # 1.54 MP > 1.5 MP


def text_file(tmp_path: Path, photo: Path) -> Path:
    (tmp_path / "notes.png").write_text("not pixels")
    return tmp_path / "notes.png"


def random_bytes(name: str):
    def make(tmp_path: Path, photo: Path) -> Path:
        (tmp_path / name).write_bytes(np.random.default_rng(1).bytes(4096))
        return tmp_path / name
    return make


# (image maker, chain, checkpoint maker, message the page shows)
BAD_REQUESTS = {
    "not an image": (text_file, "denoise", None, "notes.png is not an image"),
    "corrupt image": (corrupt_png, "denoise", None, "corrupt.png is damaged"),
    "truncated jpeg": (truncated_jpeg, "denoise", None, "cut.jpg is damaged"),
    "huge image": (huge_png, "denoise", None, "huge.png is 1400×1100 (1.5 MP); this server takes at most 1.5 MP"),
    "huge result": (None, "resize:scale=4", None, "the output would be 451×300 → 1804×1200 (2.2 MP), over the cap "
                    "of 1.5 MP a frame; choose a smaller scale or image"),
    "not a checkpoint": (None, "sr2=weights.pth", random_bytes("weights.pth"), "cannot load weights.pth as a model"),
    "checkpoint suffix": (None, "sr2=notes.txt", random_bytes("notes.txt"), "Invalid file type"),  # Gradio's check
    "server path": (None, "sr2=/etc/hostname", None, "loads no file from the server"),
    "preset file": (None, "/etc/streamrestore.yaml", None, "bundled presets by name"),
    "unknown stage": (None, "denoize", None, "did you mean 'denoise'"),
    "bad option": (None, "nlm:strength=-3", None, "option 'strength' must be ≥ 0"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_is_reported_and_the_server_keeps_serving(client, photo, tmp_path, case):
    from gradio_client.exceptions import AppError

    make_image, chain, make_checkpoint, message = BAD_REQUESTS[case]
    image = make_image(tmp_path, photo) if make_image else photo
    checkpoint = make_checkpoint(tmp_path, photo) if make_checkpoint else None
    with pytest.raises(AppError) as raised:
        restore_via_api(client, image, chain, checkpoint)
    assert message in str(raised.value)
    _, summary, output = restore_via_api(client, tiny_image(tmp_path), "")
    assert "8×8" in summary and read_rgb(output).shape == (8, 8, 3)


# -- hostile checkpoints and chains (issue #12) -----------------------------------------------------------
@pytest.mark.parametrize("case", [".pt", ".pth", ".ckpt", "deflate bomb", "border 1500", "scale 1000"])
def test_hostile_checkpoints_run_nothing_and_are_refused(client, server, small, tmp_path, case):
    from support.attacks import deflate_bomb, safetensors_with, torchscript_writer
    from gradio_client.exceptions import AppError

    marker = tmp_path / "marker"
    if case.startswith("."):
        upload, message = torchscript_writer(tmp_path / f"evil{case}", marker), f"evil{case} is a TorchScript archive"
    elif case == "deflate bomb":
        upload, message = deflate_bomb(tmp_path / "bomb.pth", 2), "bomb.pth expands from"
    else:
        key, value = case.split()
        upload = safetensors_with(tmp_path / "liar.safetensors", {f"streamrestore.{key}": value})
        message = f"streamrestore.{key} must be a whole number"
    image = write_rgb(tmp_path / "cat.png", np.ascontiguousarray(small[:48, :64]))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; the server runs in this process
    with pytest.raises(AppError) as raised:
        restore_via_api(client, image, f"sr2={upload.name}", upload)
    assert message in str(raised.value) and str(server.workdir) not in str(raised.value)
    assert not marker.exists()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 512 * 1024  # the bomb was not inflated
    _, summary, _ = restore_via_api(client, tiny_image(tmp_path), "")
    assert "8×8" in summary


@pytest.mark.parametrize("ref", ["~", "..", ".", "etc", "/etc/passwd", "../models/x.pth", "~root"])
def test_a_chain_names_no_server_path(client, photo, ref):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as raised:
        restore_via_api(client, photo, f"sr2={ref}")
    text = str(raised.value)
    assert "neither an uploaded checkpoint nor a packaged model name" in text
    assert str(Path.home()) not in text and "cannot load" not in text and "not found" not in text


def test_padding_counts_in_the_pixel_cap(client, small, tiny_model, tmp_path):
    from gradio_client.exceptions import AppError

    # 64×48 with border=256: the network works on 576×560 → 1152×1120 = 1.29 MP; the cap here is 1.5 MP, so
    # the page takes it; a 200×150 picture makes that 712×662 → 1424×1324 = 1.9 MP, over the cap.
    image = write_rgb(tmp_path / "cat.png", np.ascontiguousarray(small[:150, :200]))
    with pytest.raises(AppError) as raised:
        restore_via_api(client, image, "sr2=tiny_x2.pth:border=256", tiny_model)
    assert "200×150 → 400×300: the chain works on frames of 1.9 MP (padding counted)" in str(raised.value)


# -- one model, shared ----------------------------------------------------------------------------------
def test_two_clients_share_one_loaded_model(server, small, tiny_model, tmp_path, monkeypatch):
    import spandrel
    from gradio_client import Client

    loads = []
    real_load = spandrel.ModelLoader.load_from_state_dict

    def counting_load(self, state_dict):
        loads.append(threading.current_thread().name)
        return real_load(self, state_dict)

    monkeypatch.setattr(spandrel.ModelLoader, "load_from_state_dict", counting_load)
    image = write_rgb(tmp_path / "cat.png", small)
    clients = [Client(server.url, verbose=False, analytics_enabled=False, download_files=str(tmp_path / f"c{i}"))
               for i in range(2)]  # fmt: skip
    from gradio_client import handle_file

    # Both upload the checkpoint at once; the queue runs them one after the other on the shared stage.
    jobs = [c.submit(handle_file(str(image)), "sr2=tiny_x2.pth", handle_file(str(tiny_model)), "photo",
                     api_name="/restore") for c in clients]  # fmt: skip
    results = [job.result(timeout=120) for job in jobs]

    assert len(loads) == 1, f"the model was loaded {len(loads)} times"
    summaries = sorted(summary for _, summary, _ in results)
    assert sum("tiny_x2.pth loaded in" in s for s in summaries) == 1
    assert sum("tiny_x2.pth reused" in s for s in summaries) == 1
    assert f"chain `sr2=tiny_x2.pth:tile={TILE}`" in summaries[0]
    expected = restore_image(small, f"sr2={tiny_model}:tile={TILE}", RunSettings(device="cpu"))  # 280×200 in 96-pixel tiles
    for _, _, output in results:
        assert np.array_equal(read_rgb(output), expected)


def test_a_whole_image_network_is_built_untiled_and_then_shared(tmp_path):
    """The demo tiles what can be tiled; a network that cannot be is run whole, and built (read) once. (The page
    takes catalogue names only, so the stand-in stage is given one; it reads nothing.)"""
    from streamrestore.registry import MODEL_STAGE, Registry, spec_from_class
    from streamrestore.stage import Capabilities, Option, Stage

    loads, sizes = [], []

    class WholeImageModel(Stage):
        options = {"model": Option(str, "", "weights")}

        @property
        def capabilities(self) -> Capabilities:
            loads.append(self.settings["model"]) if not loads else None  # "reads the weights" once per stage
            return Capabilities(tileable=False)

        def process(self, batch):
            sizes.append(tuple(batch.pixels.shape[-2:]))
            return batch

    session = DemoSession(DemoSettings(max_pixels=MAX_PIXELS, tile=64, device="cpu"), tmp_path / "work")
    session.registries["photo"] = Registry(entry_points_=[], extra=[spec_from_class(MODEL_STAGE, WholeImageModel, "tests")])
    image = write_rgb(tmp_path / "flat.png", np.full((100, 150, 3), 90, np.uint8))
    first = session.restore(image, "model=denoise-nafnet16")
    built = [b.stage for chain in session.chains._chains.values() for b in chain.stages]
    second = session.restore(image, "model=denoise-nafnet16")
    again = [b.stage for chain in session.chains._chains.values() for b in chain.stages]
    assert sizes == [(100, 150), (100, 150)]  # whole frames, never 64-pixel tiles
    assert again == built and len(built) == 1 and loads == ["denoise-nafnet16"]  # built once, then shared
    assert "chain `model=denoise-nafnet16`" in first.summary()  # no tile: it ran whole
    assert first.models == ["denoise-nafnet16 loaded in " + first.models[0].split(" loaded in ")[1]]
    assert second.models == ["denoise-nafnet16 reused"]


@pytest.mark.parametrize(("controls", "chain"), [
    (dict(cleanup="denoise", upscale="sr2"), "denoise,sr2"),
    (dict(cleanup="tdenoise", strength=12.5, sharpen="sharpen", amount=0.8),
     "tdenoise:strength=12.5,sharpen:amount=0.8"),
    (dict(cleanup="jpeg", strength=12.5, sharpen="deblur", amount=6.0, radius=0.8), "jpeg,deblur"),
    (dict(sharpen="deblur", amount=3.0, radius=2.0), "deblur"),  # a network: the unsharp sliders do not apply
    (dict(upscale="sr3", method="bicubic"), "resize:scale=3:method=bicubic"),
    (dict(upscale="sr4", checkpoint="x2.pth", cleanup="nlm", strength=8.0), "sr4=x2.pth,nlm:strength=8"),
    (dict(cleanup="denoise", strength=8.0), "denoise"),  # a network: no strength to set
    (dict(checkpoint="net.pth"), "model=net.pth"),
    (dict(preset="old_film", cleanup="denoise"), "old_film"),
    (dict(), ""),
])  # fmt: skip
def test_controls_become_the_cli_chain(controls, chain):
    from streamrestore.demo.logic import NETWORK, Controls, chain_from_controls

    defaults = dict(preset="", cleanup="", strength=None, sharpen="", amount=1.2, radius=1.6, upscale="",
                    method=NETWORK, checkpoint="")  # fmt: skip
    assert chain_from_controls(Controls(**{**defaults, **controls}), make_registry("photo", "cpu")) == chain


def test_content_chooses_the_aliases_networks(client, small, tmp_path):
    image = write_rgb(tmp_path / "drawing.png", np.ascontiguousarray(small[:96, :128]))
    _, summary, output = restore_via_api(client, image, "sr2", content="anime")
    expected = restore_image(read_image(image), f"sr2:tile={TILE}", RunSettings(device="cpu", content="anime"))
    assert np.array_equal(read_rgb(output), expected)
    network = make_registry("anime", "cpu").aliases["sr2"].settings["model"]
    assert f"model {network} " in summary and f"chain `sr2:tile={TILE}`" in summary


# -- the command line -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_streamrestore_demo_serves_and_cleans_up_on_sigterm(tmp_path, tmp_path_factory, clip):
    from gradio_client import Client, handle_file

    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    command = [str(Path(sys.executable).with_name("streamrestore")), "demo", "--port", str(port),
               "--max-upload-mb", "0.01"]  # fmt: skip
    server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as reply:
                    assert b'"analytics_enabled":false' in reply.read().replace(b" ", b"")
                break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode(errors="replace")
                assert time.monotonic() < deadline, "the demo did not start within 60 s"
                time.sleep(0.3)
        assert [p.name for p in tmp_path.iterdir()][0].startswith("streamrestore-demo-")
        # The flag's cap: a 10 kB upload limit turns the clip away before it is stored.
        assert clip.stat().st_size > 10_000
        api = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False,
                     download_files=str(tmp_path_factory.mktemp("refused")))  # fmt: skip
        with pytest.raises(Exception, match="exceeds the maximum file size of 10000 bytes"):
            api.predict(handle_file(str(clip)), api_name="/open_video")
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0, server.stdout.read().decode(errors="replace")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert not list(tmp_path.iterdir()), "the demo left temporary files behind"


def test_launcher_flags_set_the_caps(tmp_path):
    from streamrestore.demo.settings import parse_arguments, settings_from_args
    from streamrestore.demo.video import VideoSession
    from streamrestore.errors import ConfigError, MediaError, TooLargeError
    from support.media import make_clip, panned_frames

    def settings(*flags: str) -> DemoSettings:
        return settings_from_args(parse_arguments(flags))

    assert settings() == DemoSettings()
    chosen = settings("--preview-seconds", "1", "--preview-pixels", "10000", "--max-video-seconds", "3",
                      "--max-upload-mb", "0.5", "--max-pixels", "90000", "--device", "cpu")  # fmt: skip
    assert chosen == DemoSettings(preview_seconds=1.0, preview_pixels=10_000, max_video_seconds=3.0,
                                  max_upload_mb=0.5, max_pixels=90_000, device="cpu")  # fmt: skip
    assert chosen.max_upload_bytes == 500_000
    with pytest.raises(ConfigError, match="--preview-seconds must be above 0, got 0"):
        settings("--preview-seconds", "0")
    # Each cap acts on a 4 s clip of 96×64.
    clip = make_clip(tmp_path / "four.mp4", panned_frames(4 * CLIP_RATE, 96, 64), rate=CLIP_RATE).path
    session = DemoSession(chosen, tmp_path / "work")
    try:
        videos = VideoSession(session)
        with pytest.raises(MediaError, match="four.mp4 lasts 4 s; this server takes clips up to 3 s"):
            videos.inspect(clip)
        session.settings = replace(chosen, max_video_seconds=60)
        _, preview = videos.preview(clip, 2.0, "", 4.0)  # asked for 4 s, given --preview-seconds
        assert preview.frames == CLIP_RATE
        with pytest.raises(TooLargeError, match=r"preview: the output would be 96×64 → 192×128"):
            videos.preview(clip, 2.0, "resize:scale=2", 1.0)
    finally:
        session.close()


# -- video: pick a frame, compare two chains, preview a range -------------------------------------------
CLIP_SECONDS, CLIP_RATE = 3, 24


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """3 s of a panned photo at 24 fps, 160×120, with a tone: small enough for a quick browser test."""
    from support.media import AudioTrack, make_clip, panned_frames

    path = tmp_path_factory.mktemp("clips") / "pan.mp4"
    make_clip(path, panned_frames(CLIP_SECONDS * CLIP_RATE, 160, 120), rate=CLIP_RATE,
              audio=[AudioTrack(seconds=CLIP_SECONDS)])  # fmt: skip
    return path


def pyav_rgb(path: Path, t: float, fmt: str = "rgb24") -> np.ndarray:
    """The last frame at or before t seconds, decoded from the start (no seeking)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f for f in container.decode(stream)]
    first = frames[0].pts
    chosen = [f for f in frames if (f.pts - first) * stream.time_base <= t + 1e-6][-1]
    return chosen.to_ndarray(format=fmt)


def decoded(path: str | Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if error == 0 else 10 * np.log10(255**2 / error)


def shown_chain(summary: str, label: str) -> str:
    """The chain as it ran (tiles included), from the compare summary's line ``**A**: `chain` …``."""
    return summary.split(f"**{label}**: `")[1].split("`")[0]


def video_api(client, name: str, *args):
    from gradio_client import handle_file

    return client.predict(handle_file(str(args[0])), *args[1:], api_name=f"/{name}")


def test_api_open_and_pick_match_pyav(client, clip, tmp_path):
    from support.media import make_clip, panned_frames

    update, info, image, picked = video_api(client, "open_video", clip)
    assert update["maximum"] == pytest.approx(2.96) and "160×120 h264 yuv420p (8-bit), 3.00 s at 24 fps" in info
    assert np.array_equal(read_rgb(image), pyav_rgb(clip, 0.0)) and "frame 0 at" in picked
    for t in (0.0, 1.03, 2.95):
        image, picked = video_api(client, "pick", clip, t)
        assert np.array_equal(read_rgb(image), pyav_rgb(clip, t)) and "picked by **decord**" in picked, t
    # 10-bit: decord would reduce it wrongly, so PyAV serves it, at 16 bits per channel.
    deep = tmp_path / "deep.mkv"
    pictures = [p.astype(np.uint16) * 257 for p in panned_frames(12, 96, 64)]
    make_clip(deep, pictures, rate=CLIP_RATE, pix_fmt="yuv420p10le")
    _, info, _, _ = video_api(client, "open_video", deep)
    image, picked = video_api(client, "pick", deep, 0.3)
    assert "(10-bit)" in info and "picked by **PyAV**" in picked and "frame 7 at **0.292 s**" in picked
    # The shown picture is 8-bit; the compare restores the 16-bit frame.
    expected = pyav_rgb(deep, 0.3, "rgb48le")
    assert np.array_equal(read_rgb(image), ((expected.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8))
    *_, outputs = video_api(client, "compare", deep, 0.3, "sharpen", "", "photo")
    assert np.array_equal(read_rgb(outputs[1]), expected)  # the empty chain: the frame itself, 16-bit
    assert np.array_equal(read_rgb(outputs[0]), restore_image(expected, "sharpen", RunSettings(device="cpu")))


def test_api_compare_matches_restore_image(client, clip):
    video_api(client, "open_video", clip)  # the slider's range is the session's clip's (as in a browser)
    original, a, b, summary, outputs = video_api(client, "compare", clip, 1.0, "sharpen", "resize:scale=2:method=bicubic",
                                                 "photo")  # fmt: skip
    frame = pyav_rgb(clip, 1.0)
    assert read_rgb(original).shape == read_rgb(a).shape == read_rgb(b).shape == (240, 320, 3)  # one zoom
    for output, label in zip(outputs, "AB"):
        assert np.array_equal(read_rgb(output), restore_image(frame, shown_chain(summary, label), RunSettings(device="cpu")))
    assert "picked by decord" in summary and "/frame on **cpu float32**" in summary


def cli_range_restore(clip: Path, output: Path, chain: str, start: float, duration: float) -> Path:
    """``streamrestore job CLIP --chain CHAIN --start S --duration D`` with the preview's encoder settings, in a
    subprocess: the command a user would type to get the preview's frames for the whole range."""
    from streamrestore.demo.video import PREVIEW_ENCODER
    from support.cli import run_command

    encoder = [f"--{key.replace('_', '-')}={value}" for key, value in PREVIEW_ENCODER.items()]
    done = run_command("job", clip, "--chain", chain, "-o", output, "--start", start, "--duration", duration,
                       "--device", "cpu", *encoder, "-q")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return output


def test_api_preview_is_the_cli_range_restore(client, clip, tmp_path):
    from streamrestore.demo.video import preview_options
    from streamrestore.jobs import restore_range
    from support.cli import decode

    video_api(client, "open_video", clip)
    before, after, info, download = video_api(client, "preview", clip, 2.9, "B", "nlm", "sharpen", 2.0, "photo")
    assert "48 frames from 1.00 s" in info and "whole file (72 frames) at this speed: **about" in info
    ran = info.split("chain `")[1].split("`")[0]
    got, want = decoded(download), decoded(cli_range_restore(clip, tmp_path / "cli.mp4", ran, 1.0, 2.0))
    assert len(got) == 48 and all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    # "Before" is the same range through the same machinery with the empty chain: the source's frames 24–71.
    identity = tmp_path / "identity.mp4"
    restore_range(str(clip), str(identity), "", start=1.0, duration=2.0,
                  options=preview_options(RunSettings(device="cpu"), 1.0, 2.0))
    assert all(np.array_equal(a, b) for a, b in zip(decoded(before), decoded(identity), strict=True))
    assert min(psnr(a, b) for a, b in zip(decoded(before), decoded(clip)[24:72], strict=True)) > 30
    assert abs(decode(Path(download)).audio_samples / 48000 - 2.0) < 0.05  # the range's audio comes along


# The kinds of upload the page names: (file name, make_clip options, the reader that must serve it). decord
# serves 8-bit progressive video in codecs whose decoding is exact by their standard; PyAV the rest.
UPLOADS = {
    "MP4": ("clip.mp4", {}, "decord"),
    "MKV": ("clip.mkv", {}, "decord"),
    "MOV": ("clip.mov", {}, "decord"),
    "TS": ("clip.ts", {}, "decord"),
    "AVI": ("clip.avi", {"codec": "mpeg4", "time_base": Fraction(1, CLIP_RATE)}, "PyAV"),  # Xvid/DivX-style
    "WebM": ("clip.webm", {"codec": "libvpx-vp9", "audio": "libopus"}, "decord"),
    "10-bit": ("deep.mkv", {"pix_fmt": "yuv420p10le"}, "PyAV"),
    "interlaced": ("woven.mkv", {"interlace": True}, "PyAV"),
}


def upload_clip(folder: Path, name: str, options: dict) -> Path:
    """A 1 s clip of a panned photo, 96×64; interlaced: two frames woven into one by FFmpeg's ``interlace``."""
    from support.media import AudioTrack, make_clip, panned_frames

    options = dict(options)
    pictures = panned_frames(CLIP_RATE, 96, 64)
    if options.get("pix_fmt", "").endswith("10le"):
        pictures = [p.astype(np.uint16) * 257 + np.uint16(40) for p in pictures]  # 16 bits, not 8 shifted
    audio = options.pop("audio", "aac")
    if options.pop("interlace", False):
        progressive = make_clip(folder / "progressive.mp4", pictures, rate=CLIP_RATE).path
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", progressive, "-vf", "interlace", "-c:v", "libx264",
                        "-flags", "+ilme+ildct", "-top", "1", "-preset", "ultrafast", str(folder / name)],
                       check=True, timeout=60)  # fmt: skip
        return folder / name
    tone = [AudioTrack(codec=audio, seconds=1.0)]
    return Path(make_clip(folder / name, pictures, rate=CLIP_RATE, audio=tone, **options).path)


@pytest.mark.parametrize("kind", list(UPLOADS))
def test_every_kind_of_upload_picks_pyavs_frame_and_previews(kind, tmp_path):
    from streamrestore.demo.video import VideoSession

    name, options, reader = UPLOADS[kind]
    clip = upload_clip(tmp_path, name, options)
    session = DemoSession(DemoSettings(device="cpu", tile=TILE), tmp_path / "work")
    videos = VideoSession(session)
    try:
        for t in (0.0, 0.3, 0.95):
            upload, frame, _ = videos.pick(clip, t)
            expected = pyav_rgb(clip, t, "rgb48le" if upload.bits > 8 else "rgb24")
            assert frame.backend == reader and np.array_equal(frame.pixels, expected), t
        assert ("10-bit" in upload.describe()) == (kind == "10-bit")
        assert ("interlaced" in upload.describe()) == (kind == "interlaced")
        _, preview = videos.preview(clip, 0.5, "sharpen", 0.5)
        assert len(decoded(preview.before)) == round(upload.rate / 2) and preview.frames == len(decoded(preview.after))
        if kind != "interlaced":  # an interlaced source may be restored at field rate (the jobs' --interlaced)
            assert preview.frames == round(upload.rate / 2)
    finally:
        session.close()


@pytest.mark.slow
def test_compare_and_previews_read_the_network_once(tmp_path, monkeypatch):
    """The preview's job runs on the server's shared chain: one read of the weights for a compare and two
    previews with the same network."""
    from streamrestore.demo.video import VideoSession
    from streamrestore.models import loader

    loads = []
    real = loader.load_network
    monkeypatch.setattr(loader, "load_network", lambda path: loads.append(path) or real(path))
    clip = upload_clip(tmp_path, "clip.mp4", {})
    session = DemoSession(DemoSettings(device="cpu", tile=TILE), tmp_path / "work")
    videos = VideoSession(session)
    try:
        videos.compare(clip, 0.5, ["denoise", ""])
        for t in (0.2, 0.7):
            _, preview = videos.preview(clip, t, "denoise", 0.25)
            assert preview.frames == 6
    finally:
        session.close()
    assert len(loads) == 1, loads


def test_a_preview_of_the_joined_pair_shows_the_stages_it_ran(tmp_path):
    """`denoise,sr4` runs joined (`mc-denoise,oldfilm`) in a video preview and on a photo, and the page says so."""
    from streamrestore.demo.video import VideoSession
    from streamrestore.media.images import write_image
    from support.media import photo

    clip = upload_clip(tmp_path, "clip.mp4", {})
    session = DemoSession(DemoSettings(device="cpu", tile=TILE), tmp_path / "work")
    try:
        upload, preview = VideoSession(session).preview(clip, 0.5, "denoise,sr4", 0.25)
        assert preview.frames == 6
        assert preview.chain.startswith("mc-denoise,oldfilm"), preview.chain
        assert preview.size == (upload.width * 4, upload.height * 4)
        picture = tmp_path / "small.png"
        write_image(picture, photo("astronaut", 64, 48))
        result = session.restore(picture, "denoise,sr4")  # a photo: the same stages, `mc-denoise` passing it through
        assert result.chain.startswith("mc-denoise,oldfilm") and result.size == (256, 192)
        assert len(result.models) == 1 and result.models[0].startswith("oldfilm-compact64 "), result.models
    finally:
        session.close()


def test_the_estimate_counts_fixed_costs_once():
    """4 s to plan, load and warm up before the first frame, 0.5 s a frame after it, 1 s to join: a 1000-frame
    file takes 4 + 1000 × 0.5 + 1 - 0.5 s (the first frame's own half second is in the 4), not 1000 × the
    preview's 14.5 s / 20 frames = 725 s."""
    from streamrestore.demo.video import Estimate

    written = [4.0 + 0.5 * k for k in range(20)]
    estimate = Estimate.measure(0.0, written[-1] + 1.0, written, 1000)
    assert estimate.per_frame == pytest.approx(0.5) and estimate.fixed == pytest.approx(4.5)
    assert estimate.seconds == pytest.approx(504.5)
    # Reading the weights (2 s when the server first built the chain) is paid again by a new run.
    assert Estimate.measure(0.0, written[-1] + 1.0, written, 1000, loading=2.0).seconds == pytest.approx(506.5)


def long_clip(tmp_path: Path) -> Path:
    from support.media import make_clip

    return make_clip(tmp_path / "long.mp4", [np.full((16, 16, 3), 90, np.uint8)] * 2, rate=Fraction(1, 40)).path


# (clip maker, message)
BAD_VIDEOS = {
    "not a video": (lambda tmp, clip: text_video(tmp), "notes.mp4 is not a video this server can read"),
    "truncated": (lambda tmp, clip: cut_file(tmp, clip), "cut.mp4 is not a video this server can read"),
    "huge": (lambda tmp, clip: huge_clip(tmp), "big.mkv is 1400×1100 (1.5 MP); this server takes at most 1.5 MP"),
    "too long": (lambda tmp, clip: long_clip(tmp), "long.mp4 lasts 80 s; this server takes clips up to 60 s"),
}


def text_video(tmp_path: Path) -> Path:
    (tmp_path / "notes.mp4").write_text("not frames")
    return tmp_path / "notes.mp4"


def cut_file(tmp_path: Path, clip: Path) -> Path:
    (tmp_path / "cut.mp4").write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    return tmp_path / "cut.mp4"


def huge_clip(tmp_path: Path) -> Path:
    from support.media import make_clip

    return make_clip(tmp_path / "big.mkv", [np.zeros((1100, 1400, 3), np.uint8)], rate=CLIP_RATE).path


@pytest.mark.parametrize("case", list(BAD_VIDEOS))
def test_bad_videos_are_reported_and_the_server_keeps_serving(client, clip, tmp_path, case):
    from gradio_client.exceptions import AppError

    make, message = BAD_VIDEOS[case]
    with pytest.raises(AppError) as raised:
        video_api(client, "open_video", make(tmp_path, clip))
    assert message in str(raised.value)
    video_api(client, "open_video", clip)  # the slider's range is the session's clip's (as in a browser)
    image, _ = video_api(client, "pick", clip, 0.5)
    assert np.array_equal(read_rgb(image), pyav_rgb(clip, 0.5))


def test_preview_caps_pixels(client, clip):
    from gradio_client.exceptions import AppError

    video_api(client, "open_video", clip)
    refused = r"preview: the output would be 160×120 → 640×480 \(0.3 MP\), over the cap of 0.2 MP a frame; choose"
    with pytest.raises(AppError, match=refused):
        video_api(client, "preview", clip, 1.0, "A", "resize:scale=4:method=bicubic", "", 1.0, "photo")


@pytest.mark.slow
def test_browser_picks_compares_and_previews_a_video(server, clip, tmp_path):
    from playwright.sync_api import expect

    def image_at(page, selector: str) -> np.ndarray:
        src = page.locator(f"{selector} img").first.get_attribute("src")
        data = page.request.get(src if src.startswith("http") else server.url.rstrip("/") + src).body()
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    with offline_page(server, height=1000) as page:
        page.goto(server.url)
        page.get_by_role("tab", name="Video").click()
        page.locator("#video input[type=file]").set_input_files(clip)
        expect(page.locator("#video-info")).to_contain_text("160×120 h264 yuv420p (8-bit), 3.00 s at 24 fps")
        expect(page.locator("#picked-info")).to_contain_text("frame 0 at")
        time_box = page.locator("#time input[type=number]")
        time_box.fill("1.5")
        time_box.press("Enter")
        expect(page.locator("#picked-info")).to_contain_text("frame 36 at 1.500 s", timeout=TIMEOUT_MS)
        expect(page.locator("#picked-info")).to_contain_text("picked by decord")
        picked = image_at(page, "#picked")

        page.locator("#chain-a textarea").fill("sharpen")
        page.locator("#chain-b textarea").fill("nlm")
        page.locator("#run-compare").click()
        expect(page.locator("#compare-info")).to_contain_text("nlm", timeout=TIMEOUT_MS)
        summary = page.locator("#compare-info").inner_text()
        shown = [image_at(page, f"#cmp-{k}") for k in ("original", "a", "b")]

        page.locator("#preview-seconds input[type=number]").fill("2")
        page.locator("#preview-seconds input[type=number]").press("Enter")
        page.locator("#run-preview").click()
        expect(page.locator("#preview-info")).to_contain_text("whole file (72 frames)", timeout=TIMEOUT_MS)
        expect(page.locator("#preview-after video")).to_have_count(1)
        expect(page.locator("#preview-before video")).to_have_count(1)
        preview_text = page.locator("#preview-info").inner_text()
        saved = save_download(page, "#preview-download a", tmp_path)
        shot = screenshot(page, tmp_path / "demo-video.png")

    frame = pyav_rgb(clip, 1.5)
    assert np.array_equal(picked, frame), "the picked frame is not PyAV's frame at 1.5 s"
    assert np.array_equal(shown[0], frame)
    # The page's summary text drops Markdown's backticks; the chains it names are the ones that ran.
    lines = {line.split(":")[0].strip(): line for line in summary.splitlines()}
    for image, label, chain in ((shown[1], "A", "sharpen"), (shown[2], "B", "nlm")):
        ran = lines[label].split(": ", 1)[1].split(" ")[0]
        assert ran.split(":")[0] == chain
        assert np.array_equal(image, restore_image(frame, ran, RunSettings(device="cpu"))), f"chain {label}"
    assert saved.name == "pan.preview.mp4"
    assert "48 frames from 0.50 s" in preview_text and "cpu" in preview_text
    ran = preview_text.split("chain ")[1].split()[0].strip("`")
    # The downloaded preview decodes to exactly the frames `streamrestore job --start 0.5 --duration 2` gives.
    got, want = decoded(saved), decoded(cli_range_restore(clip, tmp_path / "cli.mp4", ran, 0.5, 2.0))
    assert len(got) == 48 and all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    if os.environ.get("STREAMRESTORE_DEMO_VIDEO_SCREENSHOT"):
        save_screenshot(shot, Path(os.environ["STREAMRESTORE_DEMO_VIDEO_SCREENSHOT"]))
