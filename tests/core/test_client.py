"""`RemoteDataset` over real HTTP (a small server on loopback that speaks the samples endpoint's headers)."""
from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from masksel_core.transfer.client import RemoteDataset
from masksel_core.transfer.packing import full_plan, pack

TOTAL, SHAPE = 1000, (1, 2, 2)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[tuple[int, int]]]]:
    asked: list[tuple[int, int]] = []
    chunk = getattr(request, "param", None)

    class Samples(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            start, count = int(query["start"][0]), int(query["count"][0])
            asked.append((start, count))
            stop = min(start + count, TOTAL)
            x = torch.arange(start, stop, dtype=torch.float32)[:, None, None, None].expand(-1, *SHAPE)
            body = pack(x.contiguous(), full_plan(SHAPE), labels=torch.zeros(stop - start, dtype=torch.long))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Masksel-Total", str(TOTAL))
            if chunk:
                self.send_header("X-Masksel-Chunk-Samples", str(chunk))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Samples)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", asked
    httpd.shutdown()


@pytest.mark.parametrize("server", [96], indirect=True)
def test_pages_end_on_the_stores_chunk_edges_once_the_server_names_them(
        server: tuple[str, list[tuple[int, int]]]) -> None:
    url, asked = server
    seen = torch.cat([batch.x[:, 0, 0, 0] for batch in RemoteDataset(url, "t", 1, page=250)])
    assert seen.tolist() == list(range(TOTAL))  # every sample once, in order
    assert asked[0] == (0, 250)  # the first page learns the chunk: 96 samples
    assert all((start + count) % 96 == 0 for start, count in asked[1:-1])
    assert all(count <= 250 for _, count in asked)


def test_pages_keep_their_size_without_a_chunk(server: tuple[str, list[tuple[int, int]]]) -> None:
    url, asked = server
    assert sum(len(batch.x) for batch in RemoteDataset(url, "t", 1, page=300)) == TOTAL
    assert asked == [(0, 300), (300, 300), (600, 300), (900, 300)]
