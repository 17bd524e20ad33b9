"""`make worker`: training workers on this host that join the service the environment names.

A worker needs only what the environment says: `REDIS_URL` (the queue), `DATABASE_URL` (the runs) and the
files' settings. `GPUS=0,1` starts one worker process per listed GPU, each pinned to it with
`CUDA_VISIBLE_DEVICES`, reading the GPU queue and the main one; without `GPUS`, one worker reads the main
queue, and the GPU queue too when this host has a GPU (`jobs.queues`). Ctrl-C or SIGTERM stops them all;
when one dies, the others are stopped and the command exits non-zero.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 30.0  # a worker stopping mid-run writes its checkpoint first


def storage_problem() -> str | None:
    """Why the file storage (MASKSEL_STORAGE) cannot be used, in one line; None when it answers. Asked of
    `manage.py masksel_check_storage` in its own process, so that this one need not start Django."""
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), "masksel_check_storage"], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return lines[-1].removeprefix("CommandError: ") if lines else f"the storage check exited {done.returncode}"


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def worker_queues(*, gpu: bool) -> list[str]:
    """The same names as `jobs.queues`, without starting Django here: MASKSEL_QUEUE and MASKSEL_QUEUE-gpu."""
    base = os.environ.get("MASKSEL_QUEUE", "train")
    return [base, f"{base}-gpu"] if gpu else [base]


def worker_command(name: str, queues: list[str]) -> list[str]:
    """One Celery worker process: one run at a time (solo pool), acknowledging a run once it ended."""
    return [sys.executable, "-m", "celery", "-A", "webapp", "worker", "--pool", "solo", "--concurrency", "1",
            "-Q", ",".join(queues), "--loglevel", "INFO", "-n", f"{name}@%h"]


def cpu_threads(workers: int) -> dict[str, str]:
    """The environment that shares this host's cores among `workers` processes (torch's intra-op threads): each
    would otherwise start one thread per core, and two workers on two cores ran a small run 2.7x slower than with
    one thread each (docs/design.md). Nothing where the operator set OMP_NUM_THREADS."""
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max((os.cpu_count() or 1) // max(workers, 1), 1))}


def plan(gpus: str | None, *, gpu_here: bool) -> list[tuple[dict[str, str], list[str]]]:
    """(extra environment, command) per worker process to start."""
    if gpus:
        ids = [part.strip() for part in gpus.split(",") if part.strip()]
        if not ids or not all(part.isdigit() for part in ids):
            raise ValueError(f"GPUS must list GPU numbers, e.g. GPUS=0,1 (got {gpus!r})")
        return [({"CUDA_VISIBLE_DEVICES": gpu, **cpu_threads(len(ids))},
                 worker_command(f"worker-gpu{gpu}-{os.getpid()}", worker_queues(gpu=True))) for gpu in ids]
    return [({}, worker_command(f"worker-{os.getpid()}", worker_queues(gpu=gpu_here)))]


def spawn(extra: dict[str, str], command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, **extra}, start_new_session=True)


def stop(children: list[tuple[str, subprocess.Popen[bytes]]], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM each child's process group, newest first; SIGKILL what is still there after `grace` seconds."""
    processes = [process for _, process in children]
    for process in reversed(processes):
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class StopOnSignal:
    """Set by SIGINT (Ctrl-C) or SIGTERM: the supervising loop then returns and its children are stopped."""

    def __init__(self) -> None:
        self.stopping = False
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True


def supervise(children: list[tuple[str, subprocess.Popen[bytes]]], flag: StopOnSignal) -> int:
    """Wait until a signal (0) or until a child exits (1, naming it): either way the caller stops the rest."""
    while not flag.stopping:
        for name, process in children:
            if process.poll() is not None:
                print(f"masksel: {name} exited with status {process.returncode}; stopping", flush=True)
                return 1
        time.sleep(0.3)
    print("masksel: stopping", flush=True)
    return 0


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    gpus = os.environ.get("GPUS", "").strip() or None
    try:
        workers = plan(gpus, gpu_here=gpus is None and has_gpu())
    except ValueError as exc:
        print(f"masksel worker: {exc}", file=sys.stderr)
        return 2
    problem = storage_problem()
    if problem:
        print(f"masksel worker: {problem}", file=sys.stderr)
        return 1
    flag = StopOnSignal()
    children = [(f"worker {index}", spawn(extra, command)) for index, (extra, command) in enumerate(workers, 1)]
    print(f"masksel: {len(children)} worker(s) reading {workers[0][1][workers[0][1].index('-Q') + 1]} "
          f"at {os.environ.get('REDIS_URL', 'redis://127.0.0.1:6379/0')}", flush=True)
    try:
        return supervise(children, flag)
    finally:
        stop(children)


if __name__ == "__main__":
    sys.exit(main())
