"""An S3 HTTP endpoint on this machine: moto's standalone server (no S3 server installs here)."""
from __future__ import annotations

from typing import Any


def start_s3_server(log: Any) -> tuple[str, Any]:
    """Start moto's S3 server on a free loopback port (its output to `log`) and wait until it answers:
    (its URL, the process). The tests' `s3_endpoint` and the storage benchmarks use it."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            return url, process
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("moto's S3 server did not start") from None
            time.sleep(0.2)
