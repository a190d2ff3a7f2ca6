"""Prints the web demo's memory and time per request with two clients sharing one model.

    python benchmarks/demo_clients.py [--blocks 23] [--size 96] [--device cpu]

Starts ``streamrestore demo`` in a subprocess, saves a random-weight ESRGAN ×4 (RRDB, as Real-ESRGAN
x4plus: 23 blocks, 16.7 M parameters, 67 MB), then: client A alone, clients A and B at once (both
uploading the same checkpoint), and B again. After each step it prints the server's resident memory
(VmRSS) and what the page reported (time, device, model loaded or reused). Also times a classical chain
and the photo ×2 alias (a packaged network) on a 512×512 photo. Nothing here is asserted;
tests/test_demo.py checks that the model is loaded once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import skimage.data
import torch
from gradio_client import Client, handle_file
from spandrel.architectures.ESRGAN import ESRGAN


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=23, help="RRDB blocks (23 = Real-ESRGAN x4plus)")
    parser.add_argument("--size", type=int, default=96, help="side of the test image, pixels")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    os.environ.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
    work = Path(tempfile.mkdtemp(prefix="demo-bench-"))
    torch.manual_seed(0)
    net = ESRGAN(num_filters=64, num_blocks=args.blocks, scale=4)
    checkpoint = work / "esrgan_x4.pth"
    torch.save(net.state_dict(), checkpoint)
    print(f"checkpoint: {sum(p.numel() for p in net.parameters()) / 1e6:.1f} M parameters, "
          f"{checkpoint.stat().st_size / 1e6:.0f} MB")
    del net
    photo = skimage.data.astronaut()
    small = work / "small.png"
    cv2.imwrite(str(small), cv2.cvtColor(cv2.resize(photo, (args.size, args.size), interpolation=cv2.INTER_AREA),
                                         cv2.COLOR_RGB2BGR))  # fmt: skip
    big = work / "astronaut.png"
    cv2.imwrite(str(big), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))

    port = free_port()
    command = [str(Path(sys.executable).with_name("streamrestore")), "demo", "--port", str(port)]
    server = subprocess.Popen([*command, "--device", args.device], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2).close()
                break
            except OSError:
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/"
        print(f"server started: RSS {rss_mb(server.pid):.0f} MB")
        a, b = (Client(url, verbose=False, analytics_enabled=False, download_files=str(work / n)) for n in "ab")

        def request(client: Client, image: Path, chain: str, ckpt: Path | None):
            return client.submit(handle_file(str(image)), chain, handle_file(str(ckpt)) if ckpt else None, "photo",
                                 api_name="/restore")  # fmt: skip

        def report(step: str, jobs, started: float) -> None:
            results = [job.result(timeout=600) for job in jobs]
            wall = time.perf_counter() - started
            print(f"{step}: {wall:.2f} s wall, RSS {rss_mb(server.pid):.0f} MB")
            for _, summary, _ in results:
                print("   ", summary.replace("**", "").replace("  \n", " | "))

        for step, chain, client in (("classical, 512×512 (client A)", "nlm,resize:scale=2", a),
                                    ("classical again (client B)", "nlm,resize:scale=2", b),
                                    ("packaged ×2 network, 512×512 (client A)", "nlm,sr2", a),
                                    ("packaged ×2 network again (client B)", "nlm,sr2", b)):
            started = time.perf_counter()
            report(step, [request(client, big, chain, None)], started)
        chain = "sr4=esrgan_x4.pth"
        started = time.perf_counter()
        report(f"model, client A alone ({args.size}×{args.size})", [request(a, small, chain, checkpoint)], started)
        started = time.perf_counter()
        report("model, clients A and B at once", [request(c, small, chain, checkpoint) for c in (a, b)], started)
        started = time.perf_counter()
        report("model, client B again", [request(b, small, chain, checkpoint)], started)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
