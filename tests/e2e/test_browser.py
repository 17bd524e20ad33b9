"""The dashboard in headless Chromium: log in, submit the form, watch the chart grow, download."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import Stack, log_in, upload

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_submit_watch_the_chart_grow_live_and_download_the_mask(stack: Stack, browser: Any, slow_npz: Path,
                                                                tmp_path: Path) -> None:
    upload(stack, slow_npz, "slow-browser")
    page = browser.new_page(accept_downloads=True)
    log_in(page, stack)
    page.click("text=New run")
    page.select_option("#id_dataset", label="slow-browser")
    page.select_option("#id_mask_type", "pixel-any")
    page.select_option("#id_model", "lenet5")
    page.fill("#id_epochs", "6")
    page.click("summary:has-text('Schedule and phases')")  # collapsed until opened
    page.click("summary:has-text('Advanced')")
    page.fill("#id_warmup_epochs", "2")
    page.fill("#id_finalize_epochs", "0")
    page.fill("#id_batch_size", "32")
    page.click("#new-run-form button[type=submit]")
    page.wait_for_url("**/runs/*/")

    counts: list[int] = []
    mask_epochs: set[str] = set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        counts.append(int(page.get_attribute("#chart", "data-points") or 0))
        if page.text_content("#run-status") == "succeeded":
            break
        mask_epochs.add(page.text_content("#mask-epoch") or "")
        page.wait_for_timeout(50)
    counts.append(int(page.get_attribute("#chart", "data-points") or 0))
    growth = sorted(set(counts))
    assert counts[-1] == 8, counts
    assert len([c for c in growth if 0 < c < 8]) >= 2, f"the chart should gain points while training: {growth}"
    assert len(mask_epochs - {"–", "", "8"}) >= 2, f"the mask panel should follow the epochs live: {mask_epochs}"
    state = page.evaluate("window.maskselRun")
    assert state["live"] >= 2 and state["epochs"] == list(range(1, 9))
    assert state["phases"] == ["warmup"] * 2 + ["select"] * 6 and page.text_content("#run-phase") == "selection"
    assert page.get_attribute("#run-phase", "data-phase") == "select"
    assert page.text_content("#run-phase-label") == "Last phase"  # not "Now": the run has ended
    assert page.text_content("#run-test-accuracy") != "–" and page.is_visible(".phase-key")
    spent = page.text_content("#run-phase-seconds").replace("\u00a0", " ")
    assert "warm-up" in spent and "selection" in spent  # filled live from the run's end, without a reload
    assert page.locator("#mask-view canvas").count() == 2  # one heatmap per channel
    assert page.text_content("#mask-epoch") == "8"  # follows the latest epoch
    page.eval_on_selector("#epoch-slider", "s => { s.value = '3'; s.dispatchEvent(new Event('input')); }")
    assert page.text_content("#mask-epoch") == "3" and page.evaluate("window.maskselRun.selectedEpoch") == 3
    assert len(page.evaluate("Object.keys(window.maskselRun.masks)")) == 8  # every epoch's mask is at hand

    with page.expect_download() as info:
        page.click("#dl-mask-npy")
    target = tmp_path / "mask.npy"
    info.value.save_as(target)
    mask = np.load(target)
    assert mask.shape == (2, 16, 16) and mask.dtype == np.uint8

    with page.expect_download() as info:
        page.click("#dl-bundle")
    bundle = tmp_path / "bundle.zip"
    info.value.save_as(bundle)
    check_bundle_predicts_like_the_model(bundle, slow_npz)
    page.close()


def check_bundle_predicts_like_the_model(bundle: Path, data: Path) -> None:
    """The bundle's TorchScript model, given full inputs, predicts what the network on masked inputs does."""
    import zipfile

    import torch

    from masksel_core import create_model

    folder = bundle.parent / "bundle"
    zipfile.ZipFile(bundle).extractall(folder)
    x = torch.from_numpy(np.load(data)["x_train"][:16])  # full inputs, as stored on the server
    mask = torch.from_numpy(np.load(folder / "mask.npy")).float()
    network = create_model("lenet5", (2, 16, 16), 4)
    network.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    network.eval()
    scripted = torch.jit.load(str(folder / "model.ts"))
    with torch.no_grad():
        expected = network(x * mask).argmax(dim=1)
        assert torch.equal(scripted(x).argmax(dim=1), expected)
    assert "torch.jit.load" in (folder / "README.txt").read_text()


def short_run(page: Any, *, epochs: int, warmup: int) -> None:
    """Fill the form for a short run: its selection epochs, then warm-up and no finalize (a collapsed section)."""
    page.fill("#id_epochs", str(epochs))
    page.click("summary:has-text('Schedule and phases')")
    page.fill("#id_warmup_epochs", str(warmup))
    page.fill("#id_finalize_epochs", "0")


def test_pages_need_a_login(stack: Stack, browser: Any) -> None:
    page = browser.new_page()
    for path in ("/runs/", "/runs/new/", "/runs/1/"):
        page.goto(f"{stack.base_url}{path}")
        assert "/accounts/login/" in page.url, path
    page.close()


def test_compare_three_runs_from_the_list(stack: Stack, browser: Any, tmp_path: Path) -> None:
    with stack.client() as client:
        digits = next(d for d in client.get("/api/datasets/").json() if d["builtin"] == "digits")
        ids = [client.post("/api/runs/", json={"dataset": digits["id"], "mask_type": "pixel-any", "model": "mlp",
                                               "epochs": 4, "seed": seed, "lambda_init": 0.5, "warmup_epochs": 3,
                                               "finalize_epochs": 0}).json()["id"] for seed in range(3)]
        deadline = time.monotonic() + 120
        while any(client.get(f"/api/runs/{i}/").json()["status"] != "succeeded" for i in ids):
            assert time.monotonic() < deadline
            time.sleep(0.3)
    page = browser.new_page(accept_downloads=True, viewport={"width": 1200, "height": 900})
    log_in(page, stack)
    for run_id in ids:
        page.check(f".compare-pick[value='{run_id}']")
    page.click("#compare-button")
    page.wait_for_url("**/compare/?runs=*")
    page.wait_for_function("window.maskselCompare && window.maskselCompare.drawn === 3")
    compare = page.evaluate("window.maskselCompare")
    assert compare["runs"] == 3 and len(compare["fronts"]) == 3 and all(n >= 1 for n in compare["fronts"])
    assert "seed" in page.text_content("#config-diff")
    with page.expect_download() as info:
        page.click("#compare-csv")
    target = tmp_path / "compare.csv"
    info.value.save_as(target)
    assert len(target.read_text().splitlines()) == 1 + 3 * (3 + 4)  # every run's warm-up and selection epochs
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    page.close()


def test_a_dynamic_runs_gallery_follows_the_slider_and_compares_with_a_static_run(stack: Stack,
                                                                                  browser: Any) -> None:
    with stack.client() as client:
        digits = next(d for d in client.get("/api/datasets/").json() if d["builtin"] == "digits")
        common = {"dataset": digits["id"], "model": "mlp", "epochs": 4, "lambda_init": 1.0, "warmup_epochs": 2,
                  "finalize_epochs": 0, "grid": [4, 4]}
        dynamic = client.post("/api/runs/", json={**common, "mask_type": "dynamic-block-any"}).json()["id"]
        static = client.post("/api/runs/", json={**common, "mask_type": "block-any"}).json()["id"]
        deadline = time.monotonic() + 120
        while any(client.get(f"/api/runs/{i}/").json()["status"] != "succeeded" for i in (dynamic, static)):
            assert time.monotonic() < deadline
            time.sleep(0.3)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, stack)
    page.goto(f"{stack.base_url}/runs/{dynamic}/")
    page.wait_for_function("document.querySelectorAll('#gallery-view canvas').length === 8")
    warmup = "document.querySelector('#gallery-view canvas').title"
    page.evaluate("(() => { const s = document.getElementById('epoch-slider'); s.value = '1';"
                  " s.dispatchEvent(new Event('input')); })()")
    assert page.evaluate(warmup).endswith(": 100 % of channel 0 sent")  # the warm-up sends everything
    assert "how often each cell is sent" in page.text_content("#mask-legend")
    page.goto(f"{stack.base_url}/compare/?runs={dynamic},{static}")
    page.wait_for_function("window.maskselCompare && window.maskselCompare.drawn === 3")
    assert page.locator("#compare-masks figure").count() == 2
    assert "dynamic-block-any" in page.text_content("#compare-masks")
    assert not errors, errors
    page.close()


def test_upload_a_dataset_in_the_page_see_refusals_and_the_preview(stack: Stack, browser: Any,
                                                                  tmp_path: Path) -> None:
    from tests.conftest import make_npz

    good = make_npz(tmp_path / "good.npz", n=60, channels=3, size=8, classes=3)
    bad = make_npz(tmp_path / "bad.npz", x_train=np.full((4, 1, 3, 3), np.nan, dtype=np.float32),
                   y_train=np.array([0, 1, 0, 1]))
    page = browser.new_page()
    log_in(page, stack)
    page.click("text=Datasets")
    page.set_input_files("#upload-file", str(bad))
    page.click("#upload-form button[type=submit]")
    page.wait_for_function("document.getElementById('upload-message').textContent.startsWith('Refused')")
    assert "NaN" in page.text_content("#upload-message")
    page.fill("#upload-name", "three-channels")
    page.set_input_files("#upload-file", str(good))
    page.click("#upload-form button[type=submit]")
    link = "#datasets-table a:has-text('three-channels')"
    page.wait_for_selector(link)  # the list reloads with the new data set
    page.click(link)
    page.wait_for_function("document.getElementById('preview').dataset.samples === '3'")
    assert page.locator("#preview canvas").count() == 9  # 3 classes x 3 channels
    page.close()


def test_the_run_page_falls_back_to_polling_when_websockets_never_work(stack: Stack, browser: Any) -> None:
    with stack.client() as client:
        digits = next(d for d in client.get("/api/datasets/").json() if d["builtin"] == "digits")
        run_id = client.post("/api/runs/", json={"dataset": digits["id"], "mask_type": "pixel-any", "model": "mlp",
                                                 "epochs": 2, "warmup_epochs": 1, "finalize_epochs": 0}).json()["id"]
    page = browser.new_page()
    log_in(page, stack)
    page.route_web_socket("**/ws/runs/**", lambda socket: socket.close())  # a proxy that drops websockets
    page.goto(f"{stack.base_url}/runs/{run_id}/")
    page.wait_for_function("window.maskselRun.polling === true", timeout=30_000)
    page.wait_for_function("document.getElementById('run-status').textContent === 'succeeded'", timeout=120_000)
    page.wait_for_function("document.getElementById('chart').dataset.points === '3'", timeout=10_000)
    assert page.evaluate("window.maskselRun.snapshots") == 0
    page.close()


def test_cancel_a_running_run_from_its_page(stack: Stack, browser: Any, slow_npz: Path) -> None:
    dataset = upload(stack, slow_npz, "slow-cancel-page")
    with stack.client() as client:
        run_id = client.post("/api/runs/", json={"dataset": dataset["id"], "mask_type": "pixel-any",
                                                 "model": "lenet5", "epochs": 300, "batch_size": 32,
                                                 "warmup_epochs": 1}).json()["id"]
    page = browser.new_page()
    log_in(page, stack)
    page.goto(f"{stack.base_url}/runs/{run_id}/")
    page.wait_for_function("window.maskselRun.epochs.length >= 1", timeout=60_000)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-run")
    page.wait_for_function("document.getElementById('run-status').textContent === 'cancelled'", timeout=30_000)
    assert page.is_hidden("#cancel-run")
    with stack.client() as client:
        deadline = time.monotonic() + 60
        while client.get(f"/api/runs/{run_id}/model.pt").status_code != 200:  # the worker stopped and saved
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert client.get(f"/api/runs/{run_id}/").json()["epoch"] < 301
    page.close()


def test_a_sweep_from_the_form_lists_its_runs(stack: Stack, browser: Any) -> None:
    page = browser.new_page()
    log_in(page, stack)
    page.goto(f"{stack.base_url}/runs/sweep/")
    page.fill("#id_name", "browser-grid")
    short_run(page, epochs=1, warmup=1)
    page.fill("#id_lambda_inits", "0.1, 1.0")
    page.fill("#id_lambda_factors", "1.25")
    page.fill("#id_seeds", "2")
    assert page.text_content("#sweep-count").startswith("This sweep starts 4 runs")  # counted as typed
    page.fill("#id_seeds", "100")
    page.fill("#id_lambda_inits", "0.1, 1.0, 2.0")
    assert page.text_content("#sweep-count").startswith("This sweep starts 300 runs")
    assert "more than the limit of 200" in page.text_content("#sweep-count")
    page.fill("#id_lambda_inits", "0.1, 1.0")
    page.fill("#id_seeds", "2")
    page.click("#new-run-form button[type=submit]")
    page.wait_for_url("**/runs/?tag=browser-grid")
    assert page.locator("#runs-table tbody tr").count() == 4
    assert page.locator("#runs-table a.tag:has-text('browser-grid')").count() == 4
    page.close()


def test_raise_a_queued_runs_priority_on_the_workers_page(web_only: Stack, browser: Any) -> None:
    """No worker runs here, so the three runs stay queued; the page reorders them by the new priority."""
    with web_only.client() as api:
        digits = next(d["id"] for d in api.get("/api/datasets/").json() if d["name"] == "digits")
        ids = [str(api.post("/api/runs/", json={"dataset": digits, "epochs": 1}).json()["id"]) for _ in range(3)]
    page = browser.new_page()
    log_in(page, web_only)
    page.goto(f"{web_only.base_url}/workers/")
    rows = page.locator("#queue tbody tr")
    assert [rows.nth(i).get_attribute("data-run") for i in range(3)] == ids

    last = page.locator(f"input[name=priority-{ids[2]}]")
    last.fill("5")
    with page.expect_navigation():
        last.dispatch_event("change")
    assert [rows.nth(i).get_attribute("data-run") for i in range(3)] == [ids[2], ids[0], ids[1]]
    assert page.locator("#queue tbody tr td.place").first.text_content() == "1"

    first_old = page.locator(f"input[name=priority-{ids[0]}]")
    first_old.fill("50")
    first_old.dispatch_event("change")
    error = page.locator(f"tr[data-run='{ids[0]}'] .priority-error")
    error.wait_for(state="visible")
    assert "priority must be a whole number from -10 to 10" in (error.text_content() or "")
    page.close()


def fits(page: Any, width: int) -> None:
    """No horizontal page scroll: what does not fit scrolls inside its own card."""
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{page.url} is {scroll} px wide at a {width} px viewport"


@pytest.mark.parametrize("width", [390, 1280])
def test_the_whole_flow_fits_a_phone_and_a_laptop(stack: Stack, browser: Any, tmp_path: Path, width: int) -> None:
    """Log in, upload, start a run from a saved configuration, watch it live, name and tag it, compare it with
    another, download its mask: every page at this width, and no console error on the way."""
    from tests.conftest import make_npz

    errors: list[str] = []
    page = browser.new_page(accept_downloads=True, viewport={"width": width, "height": 860})
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, stack)
    fits(page, width)
    page.goto(f"{stack.base_url}/datasets/")
    page.fill("#upload-name", f"flow-{width}")
    page.set_input_files("#upload-file", str(make_npz(tmp_path / "flow.npz", n=80, channels=2, size=8)))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector(f"#datasets-table a:has-text('flow-{width}')")
    fits(page, width)

    page.goto(f"{stack.base_url}/runs/new/")
    page.select_option("#id_mask_type", "pixel-any")
    short_run(page, epochs=3, warmup=1)
    page.fill("#config-name", f"flow-{width}")
    page.click("#save-config")
    page.wait_for_url("**/runs/new/?config=*")
    assert page.text_content("#config-loaded") == f"Filled in from “flow-{width}”: change anything before you start."
    fits(page, width)
    saved = page.url
    run_ids = []
    for _ in range(2):
        page.goto(saved)
        page.select_option("#id_dataset", label=f"flow-{width}")
        page.click("#new-run-form button[type=submit]")
        page.wait_for_url("**/runs/*/")
        run_ids.append(page.url.rstrip("/").rsplit("/", 1)[1])
    page.wait_for_function("document.getElementById('run-status').textContent === 'succeeded'", timeout=120_000)
    assert page.evaluate("window.maskselRun.epochs.length") == 4 and page.locator("#mask-legend .swatch").count() == 2
    assert page.text_content("#run-eta") == "none" and page.text_content("#run-elapsed").endswith("s")
    fits(page, width)

    page.click("#run-about summary")
    page.fill("#run-name", "phone check")
    page.fill("#run-tags", "flow, small ,")
    page.click("#run-annotations button")
    page.wait_for_function("document.getElementById('annotations-message').textContent === 'saved'")
    assert page.text_content("#run-title") == "phone check" and page.input_value("#run-tags") == "flow, small"
    assert "<dt>seed</dt>" in page.inner_html("#run-options")
    fits(page, width)

    page.goto(f"{stack.base_url}/runs/")
    row = page.locator(f"tr[data-run='{run_ids[1]}']")
    assert row.locator(".run-name").text_content() == "phone check"
    page.wait_for_function("ids => ids.every(id => document.querySelector(`tr[data-run='${id}'] "
                           "[data-field=status]`).textContent === 'succeeded')", arg=run_ids, timeout=120_000)
    fits(page, width)
    for run_id in run_ids:
        page.check(f".compare-pick[value='{run_id}']")
    page.click("#compare-button")
    page.wait_for_function("window.maskselCompare && window.maskselCompare.drawn === 3")  # two charts, one scatter
    assert page.evaluate("window.maskselCompare.runs") == 2
    fits(page, width)

    page.goto(f"{stack.base_url}/runs/{run_ids[1]}/")
    with page.expect_download() as info:
        page.click("#dl-mask-npy")
    info.value.save_as(tmp_path / "mask.npy")
    assert np.load(tmp_path / "mask.npy").shape == (2, 8, 8)
    for path in ("/runs/sweep/", "/workers/"):
        page.goto(f"{stack.base_url}{path}")
        fits(page, width)
    page.goto(f"{stack.base_url}/datasets/")
    page.click(f"#datasets-table a:has-text('flow-{width}')")
    page.wait_for_function("document.getElementById('preview').dataset.samples === '3'")
    fits(page, width)
    page.screenshot(path=str(tmp_path / f"flow-{width}.png"), full_page=True)
    assert errors == []
    page.close()
