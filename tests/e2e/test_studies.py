"""Studies with the real parts: Celery workers on PostgreSQL tell and ask as their runs end, one worker SIGKILLed
mid-trial and the web server restarted mid-study; and the study page in Chromium, live, with its front."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.jobs.test_studies import brute_force_front

from .conftest import Stack, free_port, log_in, prepared_env, start_web, start_worker, upload

pytestmark = pytest.mark.e2e
OBJECTIVES = [{"metric": "test_accuracy", "direction": "maximize"}, {"metric": "fraction", "direction": "minimize"}]
QUICK = {"mask_type": "pixel-any", "model": "mlp", "epochs": 3, "batch_size": 64, "warmup_epochs": 1,
         "finalize_epochs": 0}


def study_runs(client: httpx.Client, study: dict[str, Any]) -> list[dict[str, Any]]:
    ids = ",".join(str(trial["run"]) for trial in study["trials"] if trial["run"])
    return client.get(f"/api/runs/?ids={ids}").json() if ids else []


def test_a_study_survives_a_killed_worker_and_a_restarted_web_server(redis_url: str, database: str, slow_npz: Path,
                                                                     tmp_path: Path) -> None:
    env = prepared_env(redis_url, tmp_path / "web", DATABASE_URL=database, MASKSEL_HEARTBEAT_SECONDS="0.5",
                       MASKSEL_STALE_SECONDS="2")
    port = free_port()
    web = Stack(f"http://127.0.0.1:{port}", env, tmp_path / "web", start_web(env, port))
    workers = [start_worker(env, tmp_path / f"worker-{index}.log") for index in range(2)]
    try:
        dataset = upload(web, slow_npz, "slow")
        base = {"mask_type": "pixel-any", "model": "lenet5", "epochs": 6, "batch_size": 32, "warmup_epochs": 1,
                "finalize_epochs": 0}
        with web.client() as client:
            answer = client.post("/api/studies/", json={
                "name": "survives", "dataset": dataset["id"], "base": base, "objectives": OBJECTIVES,
                # no target: selection runs its 6 epochs, so a trial's run is still training when its worker dies;
                # 3 trials: two at once, one of them killed, and one asked for after a tell
                "space": {"lambda_init": {"low": 0.01, "high": 0.3, "log": True}}, "trials": 3, "parallel": 2})
            assert answer.status_code == 201, answer.text
            study_id = answer.json()["id"]
            most_open, victim = 0, None
            deadline = time.monotonic() + 120
            while victim is None and time.monotonic() < deadline:  # a trial's run in selection: kill its worker
                runs = study_runs(client, client.get(f"/api/studies/{study_id}/").json())
                most_open = max(most_open, sum(run["status"] in ("queued", "running") for run in runs))
                victim = next((run for run in runs if run["status"] == "running" and run["epoch"] >= 2), None)
                time.sleep(0.1)
            assert victim is not None, "no trial's run reached selection"
            killed = next(w for w in workers if victim["worker"].endswith(f":{w.pid}"))
            os.killpg(killed.pid, signal.SIGKILL)
            killed.wait(timeout=10)
            assert client.get(f"/api/runs/{victim['id']}/").json()["status"] == "running"  # killed mid-run
        web.process.terminate()  # the web server restarted mid-study: the study lives in the database
        web.process.wait(timeout=20)
        web.process = start_web(env, port)
        with web.client() as client:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                study = client.get(f"/api/studies/{study_id}/").json()
                runs = study_runs(client, study)
                most_open = max(most_open, sum(run["status"] in ("queued", "running") for run in runs))
                if study["status"] != "running":
                    break
                time.sleep(0.2)
            assert study["status"] == "finished", study
            assert [t["number"] for t in study["trials"]] == list(range(3)) and most_open <= 2
            assert all(t["state"] == "complete" for t in study["trials"]), study["trials"]
            assert set(study["pareto"]) == brute_force_front(study["trials"], ["maximize", "minimize"])
            resumed = client.get(f"/api/runs/{victim['id']}/").json()
            assert resumed["status"] == "succeeded" and resumed["attempts"] == 2
            assert "lost" in resumed["retries"][0]["reason"]
            epochs = [m["epoch"] for m in client.get(f"/api/runs/{victim['id']}/metrics/").json()]
            assert epochs == list(range(1, resumed["epoch"] + 1))  # every epoch once, across the two workers
            for run in study_runs(client, study):
                assert run["status"] == "succeeded" and f"study-{study_id}" in run["tags"]
    finally:
        for process in [web.process, *workers]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM) if process in workers else process.terminate()
                process.wait(timeout=30)


def test_the_study_page_draws_its_trials_live_and_compares_the_front(stack: Stack, browser: Any) -> None:
    with stack.client() as client:
        digits = next(d for d in client.get("/api/datasets/").json() if d["builtin"] == "digits")
        study_id = client.post("/api/studies/", json={
            "name": "live page", "dataset": digits["id"], "base": QUICK, "objectives": OBJECTIVES,
            "space": {"target_fraction": {"low": 0.05, "high": 0.6, "log": True}}, "trials": 4,
            "parallel": 2}).json()["id"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        log_in(page, stack)
        page.goto(f"{stack.base_url}/studies/{study_id}/")
        page.wait_for_function("document.getElementById('study-status').textContent === 'finished'", timeout=180_000)
        state = page.evaluate("window.maskselStudy")
        assert state["live"] >= 1  # changes arrived over the socket, not a reload
        assert page.locator("#trials-table tbody tr").count() == 4
        with stack.client() as client:
            study = client.get(f"/api/studies/{study_id}/").json()
        complete = [t for t in study["trials"] if t["state"] == "complete"]
        assert len(state["points"]) == len(complete) and sum(p["front"] for p in state["points"]) == len(
            {t["run"] for t in complete if t["run"] in study["pareto"]})
        assert page.locator("#trials-table tr.on-front").count() == len(study["pareto"])
        page.click("#compare-front")
        page.wait_for_url("**/compare/?runs=*")
        assert sorted(int(i) for i in page.url.split("runs=")[1].split(",")) == sorted(study["pareto"])
        page.wait_for_function("window.maskselCompare && window.maskselCompare.drawn >= 3")
        assert page.evaluate("window.maskselCompare.runs") == len(study["pareto"])
    finally:
        page.close()


def test_a_preset_starts_from_the_form_and_the_study_is_cancelled_from_its_page_on_a_phone(stack: Stack,
                                                                                           browser: Any) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})
    try:
        log_in(page, stack)
        page.goto(f"{stack.base_url}/studies/new/")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.click("#space-add")  # the space editor writes the JSON field the form sends
        row = "#space-editor tbody tr:nth-child(2)"
        page.select_option(f"{row} .space-option", "mask_type")
        page.fill(f"{row} .space-from", "pixel-any, block-any")
        assert json.loads(page.input_value("#id_space")) == {
            "target_fraction": {"low": 0.03, "high": 0.6, "log": True},
            "mask_type": {"choices": ["pixel-any", "block-any"]}}
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.click("button[value=pixels-digits]")
        page.wait_for_url("**/studies/*/")
        study_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.wait_for_function("document.getElementById('live').classList.contains('on')")
        page.click("#cancel-study")
        page.wait_for_function("document.getElementById('study-status').textContent === 'cancelled'")
        with stack.client() as client:
            study = client.get(f"/api/studies/{study_id}/").json()
            runs = study_runs(client, study)
        assert study["status"] == "cancelled" and study["n_trials"] == 12 and len(study["trials"]) == 2
        assert {run["status"] for run in runs} <= {"cancelled", "succeeded"}
        page.goto(f"{stack.base_url}/studies/")
        assert page.locator(f"#studies-table tr[data-study='{study_id}'] .status").inner_text() == "cancelled"
    finally:
        page.close()
