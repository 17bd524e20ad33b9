"""Writes for studies: create, cancel, delete, and the tell-and-ask that follows each trial's run to its end.

The service is Optuna's only writer (its ask-and-tell interface; no Optuna storage): when a trial's run ends, the
transaction that records the end also records the trial's values, then asks Optuna for the trials that take the
free places, with the study's row locked, so two runs ending at once never start more than `parallel` trials.
Optuna's study is rebuilt in memory from the trial rows for every question: a restart of any process loses
nothing, and two web servers or workers never hold two versions of it.
"""
from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import optuna
from django.db import transaction
from django.utils import timezone

from . import messages, progress, run_submission, study_spec
from .errors import NotFound, ServiceError
from .models import FINAL_STATUSES, MAX_NAME, Run, RunStatus, Study, StudyStatus, Trial, TrialState
from .selectors import dataset_get

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)
#: Trials failed one after another before a study stops asking: its base options, not luck, are at fault.
FAILURES_IN_A_ROW = 5
MAX_SEED = 2**31 - 1  # the study's seed column is a 32-bit integer on PostgreSQL
_OPTUNA_STATES = {TrialState.COMPLETE: optuna.trial.TrialState.COMPLETE,
                  TrialState.FAILED: optuna.trial.TrialState.FAIL,
                  TrialState.RUNNING: optuna.trial.TrialState.RUNNING}


def study_create(*, owner: Any, data: Any) -> Study:
    """Check a study request whole (every bad field named), then queue its first `parallel` trials."""
    if not isinstance(data, dict):
        raise ServiceError("the body must be a JSON object")
    dataset = _dataset(owner, data.get("dataset"))
    spec = study_spec.check(data, dataset.input_shape)
    name = data.get("name") or ""
    if not isinstance(name, str) or len(name.strip()) > 200:
        raise study_spec.InvalidStudy({"name": "must be text of at most 200 characters"})
    name = name.strip() or f"study-{timezone.now():%Y%m%d-%H%M%S}"  # blank is not a name: the default one
    seed = data["seed"] if "seed" in data else spec.base.get("seed", 0) % (MAX_SEED + 1)  # a run's may be larger
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise study_spec.InvalidStudy({"seed": f"must be a whole number from 0 to {MAX_SEED}, got {seed!r}"})
    with transaction.atomic():
        run_submission.check_open_runs(owner, adding=spec.parallel)  # the places its trials will hold
        study = Study.objects.create(owner=owner, name=name, dataset=dataset, base=spec.base, space=spec.space,
                                     objectives=spec.objectives, trials=spec.trials, parallel=spec.parallel, seed=seed)
        _advance(study)
    return study


def _dataset(owner: Any, dataset_id: Any) -> Any:
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, (int, str)):
        raise study_spec.InvalidStudy({"dataset": "must be a dataset id"})
    try:
        return dataset_get(owner, dataset_id)
    except NotFound:
        raise study_spec.InvalidStudy({"dataset": f"no dataset with id {dataset_id!r}"}) from None


def trial_ended(run_id: int, outcome: dict[str, float | None] | None, *, reason: str) -> None:
    """Tell the study of the trial trained by this run, if any, how it ended, and ask for the next trials. Called
    inside the transaction that records the run's end. `outcome`: the run's metrics when it succeeded (a trial
    whose objectives cannot all be read from it is failed), None when it failed or was cancelled."""
    study_id = Trial.objects.filter(run_id=run_id, state=TrialState.RUNNING).values_list("study_id", flat=True).first()
    if study_id is None:
        return
    study = Study.objects.select_for_update().get(pk=study_id)
    trial = Trial.objects.filter(run_id=run_id, state=TrialState.RUNNING).first()  # read again under the lock
    if trial is None:
        return
    values, missing = _values(study, outcome)
    if values is None:
        trial.state, trial.error = TrialState.FAILED, missing or reason
    else:
        trial.state, trial.values = TrialState.COMPLETE, values
    trial.save(update_fields=["state", "values", "error"])
    _advance(study, changed=[trial])


def _values(study: Study, outcome: dict[str, float | None] | None) -> tuple[list[float] | None, str]:
    if outcome is None:
        return None, ""
    values = []
    for objective in study.objectives:
        value = outcome.get(objective["metric"])
        if value is None or not math.isfinite(value):
            return None, f"its run gave no {objective['metric']}"
        values.append(float(value))
    return values, ""


def _advance(study: Study, *, changed: list[Trial] | None = None) -> None:
    """Ask for trials while places are free, end the study when its last trial ended, keep its front; with the
    study's row locked by the caller's transaction. Broadcast what changed once the transaction commits."""
    changed = list(changed or [])
    rows = list(study.trial_rows.order_by("number"))
    if study.status == StudyStatus.RUNNING and _failures_in_a_row(rows) >= FAILURES_IN_A_ROW and not study.error:
        study.error = (f"{FAILURES_IN_A_ROW} trials in a row failed; the study asks for no more (the last: "
                       f"{rows[-1].error})")
    sampler_study = _optuna_study(study, rows)  # once per tell: asking and the front both read it
    if study.status == StudyStatus.RUNNING and not study.error:
        changed += _ask(study, rows, sampler_study)
    running = sum(row.state == TrialState.RUNNING for row in rows)
    if study.status == StudyStatus.RUNNING and running == 0 and (len(rows) >= study.trials or study.error):
        complete = any(row.state == TrialState.COMPLETE for row in rows)
        study.status = StudyStatus.FINISHED if complete else StudyStatus.FAILED
        study.finished_at = timezone.now()
    # Trials asked just now are running in `sampler_study`: the front (complete trials only) is the rows' front.
    study.pareto = [trial.user_attrs["run"] for trial in sampler_study.best_trials
                    if trial.user_attrs.get("run") is not None]
    study.save(update_fields=["status", "error", "finished_at", "pareto"])
    message = messages.study_update(study, changed)
    transaction.on_commit(lambda: progress.broadcast_to(progress.study_group(study.pk), message))


def _failures_in_a_row(rows: list[Trial]) -> int:
    count = 0
    for row in reversed(rows):
        if row.state == TrialState.RUNNING:
            continue
        if row.state != TrialState.FAILED:
            break
        count += 1
    return count


def trial_name(study_name: str, number: int) -> str:
    """A trial's run name: the study's, shortened where it would not fit with the trial's number."""
    suffix = f" · trial {number}"
    return study_name[:MAX_NAME - len(suffix)] + suffix


def _ask(study: Study, rows: list[Trial], sampler_study: optuna.Study) -> list[Trial]:
    """Trials for the free places (at most `parallel` running, `trials` in all): Optuna's next options, each
    submitted as a run; options that cannot make a run fail their trial at once (and count as a failure)."""
    asked: list[Trial] = []
    distributions = study_spec.distributions(study.space)
    while sum(row.state == TrialState.RUNNING for row in rows) < study.parallel and len(rows) < study.trials:
        if _failures_in_a_row(rows) >= FAILURES_IN_A_ROW:
            break
        proposal = sampler_study.ask(distributions)
        options = study_spec.to_options(study.space, proposal.params)
        trial = Trial(study=study, number=len(rows), params=options)
        try:
            run = run_submission.run_create(
                owner=study.owner, dataset=study.dataset_id, options={**study.base, **options},
                name=trial_name(study.name, trial.number), group_tags=[study_tag(study)], check_limit=False)
        except ServiceError as exc:
            trial.state, trial.error = TrialState.FAILED, f"could not start: {exc}"
            sampler_study.tell(proposal, state=optuna.trial.TrialState.FAIL)
        else:
            trial.run = run
        trial.save()
        rows.append(trial)
        asked.append(trial)
    return asked


def study_tag(study: Study) -> str:
    """The tag of a study's runs, so the runs list can show them together."""
    return f"study-{study.pk}"


def _optuna_study(study: Study, rows: list[Trial]) -> optuna.Study:
    """Optuna's study rebuilt from the trial rows. The sampler's seed moves on with each trial: a sampler rebuilt
    with the same seed would propose again what it proposed for the last trial."""
    distributions = study_spec.distributions(study.space)
    startup = min(10, max(study.parallel, study.trials // 3))
    with warnings.catch_warnings():  # multivariate TPE is flagged experimental; it models options jointly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # numpy's seeds stop at 2**32 - 1.
        sampler = optuna.samplers.TPESampler(seed=(study.seed * 1009 + len(rows)) % 2**32, n_startup_trials=startup,
                                             multivariate=True, constant_liar=True)
    rebuilt = optuna.create_study(directions=[objective["direction"] for objective in study.objectives],
                                  sampler=sampler)
    for row in rows:
        rebuilt.add_trial(optuna.trial.create_trial(
            state=_OPTUNA_STATES[TrialState(row.state)], params=study_spec.to_params(study.space, row.params),
            distributions=distributions, values=row.values if row.state == TrialState.COMPLETE else None,
            user_attrs={"run": row.run_id}))
    return rebuilt


def study_cancel(study: Study) -> Study:
    """Stop a running study: no more trials, and its queued and running runs are cancelled."""
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study.pk)
        if study.status != StudyStatus.RUNNING:
            raise ServiceError(f"study {study.pk} is already {study.status}")
        study.status, study.finished_at = StudyStatus.CANCELLED, timezone.now()
        study.save(update_fields=["status", "finished_at"])
        for run in Run.objects.filter(trial__study=study).exclude(status__in=FINAL_STATUSES):
            if run_submission.cancel_if_open(run.pk):
                Trial.objects.filter(run=run, state=TrialState.RUNNING).update(
                    state=TrialState.FAILED, error="the study was cancelled")
                transaction.on_commit(lambda run_id=run.pk: progress.broadcast(
                    run_id, messages.status(RunStatus.CANCELLED)))
        _advance(study, changed=list(study.trial_rows.all()))
    return study


def study_delete(study: Study) -> None:
    """Delete a study that ended, and its trial records; its runs stay, with their tag (`study_tag`)."""
    if study.status == StudyStatus.RUNNING:
        raise ServiceError(f"study {study.pk} is running; cancel it before deleting it")
    Study.objects.filter(pk=study.pk).delete()
