from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from jobs import worker_services
from jobs.models import Run


def form_defaults(**overrides: Any) -> dict[str, Any]:
    """What a browser posts when the user changes only `overrides` in the new-run form."""
    from jobs.forms import RunForm

    fields = RunForm.base_fields
    data = {name: field.initial for name, field in fields.items() if field.initial is not None}
    return {**data, **overrides}


@pytest.fixture
def alice_web(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def test_pages_redirect_anonymous_users_to_login(db: Any) -> None:
    for path in ("/runs/", "/runs/new/", "/runs/1/"):
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), path


def test_the_new_run_form_creates_a_run_and_redirects_to_its_page(alice_web: Client, digits: Any) -> None:
    page = alice_web.get("/runs/new/")
    assert page.status_code == 200 and b"digits" in page.content and b"pixel-any" in page.content
    response = alice_web.post("/runs/new/", form_defaults(dataset=digits.pk, mask_type="pixel-any", model="lenet5",
                                                          epochs=4))
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert run.config["model"] == "lenet5" and run.config["epochs"] == 4 and run.total_epochs >= 4
    detail = alice_web.get(f"/runs/{run.pk}/")
    assert detail.status_code == 200 and b'id="chart"' in detail.content and b"uPlot.iife.min.js" in detail.content
    listing = alice_web.get("/runs/")
    assert listing.status_code == 200 and f"/runs/{run.pk}/".encode() in listing.content


def test_the_form_offers_a_mask_that_fits_the_data_set(alice_web: Client, digits: Any) -> None:
    page = alice_web.get(f"/runs/new/?dataset={digits.pk}").content.decode()
    assert '<option value="pixel-any" selected>' in page  # digits has one channel: not a channel mask
    assert 'id="default-masks"' in page and "run_new.js" in page
    refused = alice_web.post("/runs/new/", form_defaults(dataset=digits.pk, mask_type="channel-any"))
    assert refused.status_code == 200 and b"single channel" in refused.content and Run.objects.count() == 0


def test_a_bad_form_shows_the_error_next_to_the_field(alice_web: Client, digits: Any) -> None:
    response = alice_web.post("/runs/new/", form_defaults(dataset=digits.pk, epochs=0, tau_init=-1))
    assert response.status_code == 200
    assert b"has-error" in response.content and Run.objects.count() == 0


def test_another_users_run_page_is_404(alice_web: Client, bob: Any, digits: Any) -> None:
    run = Run.objects.create(owner=bob, dataset=digits, config={"mask_type": "pixel-any"}, total_epochs=1)
    assert alice_web.get(f"/runs/{run.pk}/").status_code == 404


def test_the_compare_page_shows_differences_and_exports_every_epoch(alice_web: Client, alice: Any,
                                                                    digits: Any) -> None:
    import numpy as np

    from jobs import worker_services
    from masksel_core import EpochRecord

    runs = []
    for lam in (0.1, 1.0):
        run = Run.objects.create(owner=alice, dataset=digits, config={"mask_type": "pixel-any", "lambda_init": lam,
                                                                      "seed": 0}, total_epochs=2)
        for epoch in (1, 2):
            worker_services.run_record_epoch(run, EpochRecord(epoch, 1.0, 0.5, 0.5 + lam / 10, lam, 10.0, 0.5,
                                                       np.ones((1, 8, 8), dtype=np.uint8)))
        runs.append(run)
    ids = f"{runs[0].pk},{runs[1].pk}"
    page = alice_web.get(f"/compare/?runs={ids}").content.decode()
    assert 'id="config-diff"' in page and "lambda_init" in page and "seed</td>" not in page
    assert 'id="compare-data"' in page
    csv_lines = alice_web.get(f"/compare/metrics.csv?runs={ids}").content.decode().splitlines()
    assert csv_lines[0] == "run,epoch,task_loss,mask_loss,val_accuracy,lambda,tau,fraction,phase"
    assert [line.split(",")[:2] for line in csv_lines[1:]] == [[str(runs[0].pk), "1"], [str(runs[0].pk), "2"],
                                                                [str(runs[1].pk), "1"], [str(runs[1].pk), "2"]]
    refused = alice_web.get("/compare/?runs=1,x")
    assert refused.status_code == 400 and b"runs must be a non-empty list of run ids" in refused.content
    assert alice_web.get(f"/compare/?runs={ids},999999").status_code == 404


def test_datasets_page_lists_builtins_and_the_preview_has_one_sample_per_class(alice_web: Client, alice: Any,
                                                                                  digits: Any) -> None:
    from rest_framework.test import APIClient

    page = alice_web.get("/datasets/").content.decode()
    assert "digits" in page and 'id="upload-form"' in page
    assert alice_web.get(f"/datasets/{digits.pk}/").status_code == 200
    api = APIClient()
    api.force_authenticate(alice)
    preview = api.get(f"/api/datasets/{digits.pk}/preview/").json()
    assert [s["label"] for s in preview["samples"]] == list(range(10))
    assert preview["height"] == 8 and len(preview["samples"][0]["channels"]) == 1


def test_clone_prefills_the_form_with_the_earlier_runs_options(alice_web: Client, alice: Any, digits: Any) -> None:
    run = Run.objects.create(owner=alice, dataset=digits, total_epochs=7,
                             config={"mask_type": "block-any", "model": "lenet5", "epochs": 7, "lambda_init": 0.25})
    page = alice_web.get(f"/runs/new/?clone={run.pk}").content.decode()
    assert 'value="block-any" selected' in page and 'value="7"' in page and 'value="0.25"' in page


def test_the_run_table_filters_searches_and_pages_with_a_fixed_number_of_queries(
        alice_web: Client, alice: Any, digits: Any, django_assert_max_num_queries: Any) -> None:
    from jobs import services

    runs = [Run.objects.create(owner=alice, dataset=digits, total_epochs=1,
                               config={"mask_type": "pixel-any" if i % 2 else "channel-any", "model": "mlp"},
                               status="succeeded" if i % 3 else "failed") for i in range(120)]
    services.run_annotate(runs[5], tags=["baseline"], notes="the very first sweep")
    with django_assert_max_num_queries(8):  # session, user, count, page, data sets for the filter
        page = alice_web.get("/runs/").content.decode()
    assert page.count('class="compare-pick"') == 50 and "page 1 of 3" in page
    with django_assert_max_num_queries(8):
        last = alice_web.get("/runs/?page=3").content.decode()
    assert last.count('class="compare-pick"') == 20
    failed = alice_web.get("/runs/?status=failed&mask=channel-any").content.decode()
    assert failed.count('class="compare-pick"') == len([i for i in range(120) if i % 3 == 0 and i % 2 == 0])
    tagged = alice_web.get("/runs/?tag=baseline").content.decode()
    assert tagged.count('class="compare-pick"') == 1 and f"/runs/{runs[5].pk}/" in tagged
    assert f"/runs/{runs[5].pk}/" in alice_web.get("/runs/?q=first+sweep").content.decode()
    assert alice_web.get(f"/runs/?q=%23{runs[7].pk}").content.decode().count('class="compare-pick"') == 1
    assert "No run matches" in alice_web.get("/runs/?tag=nothing").content.decode()


def test_the_sweep_form_submits_the_grid_and_shows_its_runs(alice_web: Client, digits: Any) -> None:
    from jobs.forms import SweepForm

    data = {name: field.initial for name, field in SweepForm.base_fields.items() if field.initial is not None}
    data.update(dataset=digits.pk, name="grid", seeds=2, epochs=1)
    response = alice_web.post("/runs/sweep/", data)
    assert response.status_code == 302 and response["Location"] == "/runs/?tag=grid"
    assert Run.objects.filter(tag_index__contains="|grid|").count() == 8
    bad = alice_web.post("/runs/sweep/", {**data, "lambda_inits": "0.1, lots"})
    assert bad.status_code == 200 and "give numbers separated by commas" in bad.content.decode()


def test_a_saved_configuration_prefills_the_new_run_form(alice_web: Client, alice: Any, bob: Any) -> None:
    from jobs import services

    saved = services.mask_config_create(owner=alice, name="blocks", config={"mask_type": "block-any",
                                                                           "lambda_init": 0.75})
    page = alice_web.get("/runs/new/").content.decode()
    assert f"?config={saved.pk}" in page and "blocks" in page
    filled = alice_web.get(f"/runs/new/?config={saved.pk}").content.decode()
    assert 'value="block-any" selected' in filled and 'value="0.75"' in filled
    other = Client()
    other.force_login(bob)
    assert other.get(f"/runs/new/?config={saved.pk}").status_code == 404
    for query in ("config=blocks", "config=0", "clone=x", "dataset=-1", f"config={saved.pk}&clone=1.5"):
        assert alice_web.get(f"/runs/new/?{query}").status_code == 404, query
    assert alice_web.get("/runs/new/?config=&clone=").status_code == 200  # blank is not given


def test_a_run_that_stopped_early_shows_a_full_bar_and_its_epochs(alice_web: Client, alice: Any, digits: Any) -> None:
    Run.objects.create(owner=alice, dataset=digits, config={"mask_type": "pixel-any"}, total_epochs=301,
                       epoch=164, status="succeeded")
    Run.objects.create(owner=alice, dataset=digits, config={"mask_type": "pixel-any"}, total_epochs=301,
                       epoch=12, status="running")
    page = alice_web.get("/runs/").content.decode()
    assert '<progress max="164" value="164"' in page and "164</span><span data-field=\"of\"> epochs" in page
    assert '<progress max="301" value="12"' in page and "12</span><span data-field=\"of\">/301" in page


def test_durations_count_seconds_and_run_until_now(alice_web: Client, alice: Any, digits: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from jobs.templatetags.run_display import duration_text

    assert [duration_text(s) for s in (0, 43.9, 125, 3 * 3600 + 7 * 60 + 5)] == ["0 s", "43 s", "2 min 05 s",
                                                                              "3 h 07 min"]
    now = timezone.now()
    Run.objects.create(owner=alice, dataset=digits, config={"mask_type": "pixel-any"}, total_epochs=10, epoch=10,
                       status="succeeded", started_at=now - timedelta(seconds=100),
                       finished_at=now - timedelta(seconds=57))
    Run.objects.create(owner=alice, dataset=digits, config={"mask_type": "pixel-any"}, total_epochs=10, epoch=2,
                       status="running", started_at=now - timedelta(seconds=125), name="still going")
    page = alice_web.get("/runs/").content.decode()
    assert ">43 s</td>" in page  # Django's timesince said "0 minutes"
    assert "2 min 0" in page and "still going" in page and "data-started=" in page and "format.js" in page


def test_the_run_page_shows_every_option_name_tags_and_notes(alice_web: Client, alice: Any, digits: Any) -> None:
    run = Run.objects.create(owner=alice, dataset=digits, name="baseline", tags=["paper", "k=39"],
                             notes="from the <b>sweep</b>", config={"mask_type": "pixel-any", "seed": 7,
                                                                     "lambda_init": 0.25, "model_lr": 0.001,
                                                                     "target_fraction": None}, total_epochs=10)
    page = alice_web.get(f"/runs/{run.pk}/").content.decode()
    assert 'id="run-title" class="run-title">baseline<' in page
    assert 'value="paper, k=39"' in page and "from the &lt;b&gt;sweep&lt;/b&gt;</textarea>" in page
    options = page[page.index('id="run-options"'):]
    for key, value in (("seed", "7"), ("lambda_init", "0.25"), ("model_lr", "0.001"), ("target_fraction", "–")):
        assert f"<dt>{key}</dt><dd>{value}</dd>" in options
    assert 'id="run-elapsed"' in page and 'id="run-eta"' in page and 'id="mask-legend"' in page


def test_the_favicon_is_served(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("favicon.svg")
    assert client.get(response["Location"]).status_code == 200


def test_a_mask_from_a_clone_or_saved_configuration_is_kept_by_the_page(alice_web: Client, alice: Any,
                                                                        digits: Any) -> None:
    plain = alice_web.get("/runs/new/").content.decode()
    assert "data-mask-chosen" not in plain  # the page may still fit the mask to another data set
    run = Run.objects.create(owner=alice, dataset=digits, config={"mask_type": "block-any"}, total_epochs=3)
    assert "data-mask-chosen" in alice_web.get(f"/runs/new/?clone={run.pk}").content.decode()
    from jobs.models import MaskConfig

    saved = MaskConfig.objects.create(owner=alice, name="pixels", config={"mask_type": "pixel-any"})
    assert "data-mask-chosen" in alice_web.get(f"/runs/new/?config={saved.pk}").content.decode()


def test_the_form_offers_every_option_in_three_sections(alice_web: Client, digits: Any) -> None:
    import dataclasses

    from masksel_core import TrainConfig

    page = alice_web.get("/runs/new/").content.decode()
    for option in dataclasses.fields(TrainConfig):
        if option.name != "pretrained":  # a file on the CLI; the page starts from a run instead
            assert f'id="id_{option.name}"' in page, option.name
    for extra in ("name", "tags", "notes", "pretrained_run", "priority"):
        assert f'id="id_{extra}"' in page
    assert page.count('<details class="form-group"') == 3 and page.count('<details class="form-group" open>') == 1
    assert ">Schedule and phases</summary>" in page and ">Advanced</summary>" in page


def test_list_options_tags_and_notes_reach_the_run(alice_web: Client, digits: Any) -> None:
    response = alice_web.post("/runs/new/", form_defaults(
        dataset=digits.pk, mask_type="block-any", grid="4 x 2", init_selected="0, 5", costs="[1, 2, 1, 1, 1, 1, 1, 1]",
        tags="paper, k=8 ,", notes="grid of eight", name="blocks"))
    assert response.status_code == 302, response.content.decode()[:2000]
    run = Run.objects.get()
    assert run.config["grid"] == [4, 2] and run.config["init_selected"] == [0, 5]
    assert run.config["costs"] == [1, 2, 1, 1, 1, 1, 1, 1]
    assert (run.name, run.tags, run.notes) == ("blocks", ["paper", "k=8"], "grid of eight")
    clone = alice_web.get(f"/runs/new/?clone={run.pk}").content.decode()
    assert 'value="4x2"' in clone and 'value="0, 5"' in clone and 'value="paper, k=8"' in clone


def test_errors_show_at_their_field_and_open_its_section(alice_web: Client, digits: Any) -> None:
    page = alice_web.post("/runs/new/", form_defaults(dataset=digits.pk, tau_decay=1.5, grid="3by3",
                                                      costs="[1, 2")).content.decode()
    assert Run.objects.count() == 0
    for field in ("grid", "costs"):  # refused by the form itself
        cell = page[page.index(f'id="id_{field}"') - 300:page.index(f'id="id_{field}"') + 600]
        assert 'class="field has-error"' in cell and 'role="alert"' in cell, field
    assert "costs must be a JSON list: the text ends before the JSON does (a closing ] or } missing?)" in page
    page = alice_web.post("/runs/new/", form_defaults(dataset=digits.pk, tau_decay=1.5)).content.decode()
    cell = page[page.index('for="id_tau_decay"') - 60:page.index('for="id_tau_decay"') + 600]
    assert 'class="field has-error"' in cell and "tau_decay must be" in cell  # refused by the service
    assert '<details class="form-group" open>\n    <summary>Schedule and phases' in page
    assert 'class="error form-error"' not in page  # no refusal of the whole form: the field's own
    assert '1 field needs attention:\n    <a href="#id_tau_decay">Tau decay</a>' in page  # and a link to it on top


def test_save_the_form_as_a_configuration_and_start_from_it(alice_web: Client, alice: Any, digits: Any) -> None:
    from jobs.models import MaskConfig

    refused = alice_web.post("/runs/new/", form_defaults(dataset=digits.pk, action="save", config_name=""))
    assert "Not saved: name is required" in refused.content.decode() and not MaskConfig.objects.exists()
    response = alice_web.post("/runs/new/", form_defaults(dataset=digits.pk, action="save", config_name="fine grid",
                                                          mask_type="block-any", grid="6x6", tau_init=5,
                                                          name="not kept", tags="neither"))
    saved = MaskConfig.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == f"/runs/new/?config={saved.pk}&dataset={digits.pk}"
    assert saved.name == "fine grid" and saved.config["grid"] == [6, 6] and saved.config["tau_init"] == 5
    assert not {"dataset", "name", "tags", "notes", "priority"} & set(saved.config) and Run.objects.count() == 0
    page = alice_web.get(response["Location"]).content.decode()
    assert "Filled in from “fine grid”" in page and 'value="6x6"' in page and "data-mask-chosen" in page


def test_the_sweep_form_names_its_seeds_and_counts_runs(alice_web: Client, digits: Any) -> None:
    page = alice_web.get("/runs/sweep/").content.decode()
    assert ">Runs per cell</label>" in page and ">First seed</label>" in page
    assert 'data-max-runs="200"' in page and 'id="sweep-count"' in page and "Save as configuration" not in page
    too_many = alice_web.post("/runs/sweep/", form_defaults(dataset=digits.pk, lambda_inits="0.1, 0.2, 0.3",
                                                            lambda_factors="1.1, 1.2, 1.3", seeds=30))
    assert "at most 200 runs, this one 270" in too_many.content.decode() and Run.objects.count() == 0


def test_the_datasets_pages_say_what_an_upload_became_and_offer_delete(alice_web: Client, alice: Any,
                                                                       digits: Any) -> None:
    from jobs.models import Dataset

    mine = Dataset.objects.create(name="survey", owner=alice, input_shape=[2, 6, 6], num_classes=3, num_train=96,
                                  num_test=24, test_held_out=True)
    listing = alice_web.get(f"/datasets/?uploaded={mine.pk}").content.decode()
    assert 'id="uploaded"' in listing and "96 training and 24 test samples" in listing
    assert "The file had no <code>x_test</code>, so\n  20 % of its training samples" in listing
    detail = alice_web.get(f"/datasets/{mine.pk}/").content.decode()
    assert 'id="split-note"' in detail and 'id="delete-dataset"' in detail and "disabled" not in detail
    Run.objects.create(owner=alice, dataset=mine, config={"mask_type": "pixel-any"}, total_epochs=3)
    used = alice_web.get(f"/datasets/{mine.pk}/").content.decode()
    assert 'disabled title="runs use it: delete them first"' in used and f'href="/runs/?dataset={mine.pk}">1<' in used
    builtin = alice_web.get(f"/datasets/{digits.pk}/").content.decode()
    assert 'id="delete-dataset"' not in builtin and 'id="split-note"' not in builtin


def test_a_cuda_run_says_it_waits_for_a_gpu_worker(alice_web: Client, alice: Any, digits: Any) -> None:

    run = Run.objects.create(owner=alice, dataset=digits, config={"mask_type": "pixel-any", "device": "cuda"},
                             total_epochs=3)
    worker_services.worker_report("w1@cpu-box:1", device={"device": "cpu"})
    assert 'id="run-waits-for-gpu"' in alice_web.get(f"/runs/{run.pk}/").content.decode()
    worker_services.worker_report("w2@gpu-box:2", device={"device": "cuda:NVIDIA H200", "gpu_memory_mb": 141000})
    assert 'id="run-waits-for-gpu"' not in alice_web.get(f"/runs/{run.pk}/").content.decode()


def test_a_finished_run_page_says_where_its_time_went(alice: Any, alice_web: Any, digits: Any) -> None:
    from jobs.templatetags.run_display import phase_seconds

    assert phase_seconds({"warmup": 3.24, "select": 125.0, "swap_check": 0.04, "finalize": 0.0}).replace(
        "\u00a0", " ") == "warm-up 3.2 s · selection 2 min 05 s · swap check <0.1 s"
    assert phase_seconds({}) == phase_seconds(None) == ""
    run = Run.objects.create(owner=alice, dataset=digits, config={"mask_type": "pixel-any"}, total_epochs=4,
                             epoch=4, status="succeeded", seconds_per_phase={"warmup": 1.5, "select": 12.0,
                                                                             "swap_check": 0.2, "finalize": 0})
    page = alice_web.get(f"/runs/{run.pk}/").content.decode()
    assert "warm-up 1.5 s · selection 12 s · swap check 0.2 s" in page.replace("\u00a0", " ")
    assert alice_web.get(f"/api/runs/{run.pk}/").json()["seconds_per_phase"]["swap_check"] == 0.2


def test_the_form_has_a_field_for_every_web_option_with_the_cores_text_and_bounds(alice_web: Client,
                                                                                   digits: Any) -> None:
    import dataclasses

    from jobs.forms import RunForm
    from masksel_core import OPTION_HELP, TrainConfig

    fields = RunForm.base_fields
    for option in dataclasses.fields(TrainConfig):
        if option.name == "pretrained":  # a file on the server: the command line's only
            assert option.name not in fields
            continue
        assert fields[option.name].help_text == OPTION_HELP[option.name], option.name
    page = alice_web.post("/runs/new/", form_defaults(dataset=digits.pk, epochs=0, max_accuracy_drop=2))
    errors = page.context["form"].errors
    assert set(errors) == {"epochs", "max_accuracy_drop"} and not Run.objects.exists()


def test_a_refused_option_is_marked_at_its_field_and_named_at_the_top(alice_web: Client, digits: Any) -> None:
    """A mask that cannot be built for the data is refused by the service: its message goes to the option it names,
    whose section opens, and the top of the form links to it (on a phone the field is screens below)."""
    page = alice_web.post("/runs/new/", form_defaults(dataset=digits.pk, init_selected="0, 1000000")).content.decode()
    assert Run.objects.count() == 0
    field = page[page.index('id="id_init_selected"') - 600:page.index('id="id_init_selected"') + 900]
    assert "has-error" in field and "init_selected index out of range: 1000000 (the indices run from 0 to 63)" in field
    assert "{#" not in page and "{% comment" not in page  # no template comment shows as text
    summary = page[page.index('id="form-error-summary"'):]
    assert summary.startswith('id="form-error-summary">1 field needs attention:') and \
        '<a href="#id_init_selected">' in summary[:400]
