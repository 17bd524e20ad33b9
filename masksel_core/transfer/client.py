"""Fetch samples from a masksel server: only the parts a run's mask selects, ready for the trained model.

    from masksel_core.client import RemoteDataset
    remote = RemoteDataset("http://127.0.0.1:8000", token, dataset=1, run=7)
    for batch in remote:                       # pages of packed samples, unpacked
        prediction = model(batch.x).argmax(1)  # model.ts of run 7 takes batch.x as it is
    remote.bytes_received                      # what travelled (bodies of the HTTP responses)

Uses only the standard library's HTTP client, so the core stays free of web dependencies.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

from .packing import TransferPlan, Unpacked, unpack

MAX_PAGE_SAMPLES = 4096  # samples per request the server packs at most (`jobs.samples.MAX_COUNT`)


class RemoteError(RuntimeError):
    """The server refused a request or could not be reached; the message says why."""


def server_error(exc: urllib.error.HTTPError) -> str:
    """What the server said of a refused request: its JSON `error` (why a run has no model yet), else the body."""
    detail = exc.read().decode(errors="replace")
    try:
        return str(json.loads(detail).get("error", detail))
    except (ValueError, AttributeError):
        return detail or str(exc.reason)


class RemoteDataset:
    """Pages of a server-side data set's split, packed for `run`'s mask (or whole without `run`)."""

    def __init__(self, url: str, token: str, dataset: int, run: int | None = None, *, split: str = "test",
                 page: int = 512, dtype: str = "float32", compress: bool = False, timeout: float = 60.0,
                 whole: bool = False) -> None:
        self.url, self.token, self.dataset, self.run = url.rstrip("/"), token, int(dataset), run
        self.whole = whole  # with `run`: the run's split whole, to compare with what its mask sends
        if not 1 <= int(page) <= MAX_PAGE_SAMPLES:
            raise ValueError(f"page must be from 1 to {MAX_PAGE_SAMPLES} samples per request, got {page}")
        self.split, self.page, self.dtype, self.compress, self.timeout = split, int(page), dtype, compress, timeout
        self.bytes_received = 0
        self.requests = 0
        self.plan: TransferPlan | None = None
        self._total: int | None = None
        self.chunk: int | None = None  # a store's chunk along the samples, when the server names one

    def _get(self, path: str, params: dict[str, object]) -> tuple[bytes, dict[str, str]]:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        request = urllib.request.Request(f"{self.url}{path}?{query}", headers={"Authorization": f"Token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - the user's server
                body = response.read()
                headers = {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as exc:
            raise RemoteError(f"{self.url}{path}: HTTP {exc.code}: {server_error(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise RemoteError(f"cannot reach {self.url}: {exc}") from None
        self.bytes_received += len(body)
        self.requests += 1
        return body, headers

    def fetch(self, start: int, count: int) -> Unpacked:
        """Samples `start .. start+count-1`, unpacked (checked against the plan of the first page)."""
        body, headers = self._get(f"/api/datasets/{self.dataset}/samples/", {
            "run": self.run, "whole": int(self.whole) if self.whole else None, "start": start, "count": count,
            "split": self.split, "dtype": self.dtype, "compress": int(self.compress)})
        self._total = int(headers.get("x-masksel-total", self._total or 0))
        self.chunk = int(headers.get("x-masksel-chunk-samples", 0)) or self.chunk
        batch = unpack(body, self.plan)
        self.plan = self.plan or batch.plan
        return batch

    def __len__(self) -> int:
        if self._total is None:
            self.fetch(0, 1)
        return int(self._total or 0)

    def iter(self, limit: int | None = None) -> Iterator[Unpacked]:
        """Every sample (or the first `limit`) in pages of `page`."""
        start = 0
        while self._total is None or start < self._total:
            wanted = self.page if limit is None else min(self.page, limit - start)
            if self.chunk and wanted > self.chunk:  # end on a chunk's edge: no chunk is read for two pages
                wanted = (start + wanted) // self.chunk * self.chunk - start
            if wanted <= 0:
                return
            batch = self.fetch(start, wanted)
            if batch.x.shape[0] == 0:
                return
            yield batch
            start += batch.x.shape[0]

    def __iter__(self) -> Iterator[Unpacked]:
        return self.iter()
