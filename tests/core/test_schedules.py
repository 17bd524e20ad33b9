from __future__ import annotations

import pytest

from masksel_core.training.schedules import EarlyStopping, LambdaPlateau, PhaseSchedule, TargetPace, TauCooldown


def test_lambda_is_raised_only_after_patience_epochs_without_improvement() -> None:
    lam = LambdaPlateau(0.1, 1.25, patience=2)
    assert [lam.step(x) for x in (1.0, 0.9, 0.95, 0.93)] == [False, False, False, False]
    assert lam.step(0.92) is True
    assert lam.value == pytest.approx(0.125)
    assert lam.step(5.0) is False  # a new lambda is judged afresh


def test_lambda_plateau_resumes_exactly_from_its_state() -> None:
    losses = [1.0, 0.9, 0.95, 0.96, 0.97, 0.8, 0.85, 0.86, 0.87, 0.88]
    full = LambdaPlateau(0.1, 1.1, patience=1)
    expected = [full.step(x) for x in losses]
    first = LambdaPlateau(0.1, 1.1, patience=1)
    got = [first.step(x) for x in losses[:4]]
    second = LambdaPlateau(0.1, 1.1, patience=1)
    second.load_state_dict(first.state_dict())
    got += [second.step(x) for x in losses[4:]]
    assert got == expected and second.value == full.value


def test_tau_restarts_on_raise_and_otherwise_cools_down_to_its_minimum() -> None:
    tau = TauCooldown(10.0, 0.5, 0.01)
    values = []
    for restart in (False, False, True, False):
        tau.step(restart=restart)
        values.append(tau.value)
    assert values == [5.0, 2.5, 10.0, 5.0]
    for _ in range(50):
        tau.step(restart=False)
    assert tau.value == 0.01
    other = TauCooldown(10.0, 0.5, 0.01)
    other.load_state_dict(tau.state_dict())
    assert other.value == 0.01


def test_gamma_one_half_alternates_starting_with_fixation() -> None:
    phase = PhaseSchedule(0.5)
    assert [phase.next_is_exploration() for _ in range(6)] == [False, True, False, True, False, True]


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 0.8, 1.0])
def test_the_share_of_fixation_steps_is_gamma(gamma: float) -> None:
    phase = PhaseSchedule(gamma)
    steps = [phase.next_is_exploration() for _ in range(1000)]
    assert steps.count(False) / 1000 == pytest.approx(gamma, abs=0.002)
    resumed = PhaseSchedule(gamma)
    resumed.load_state_dict({"step_index": 500})
    assert [resumed.next_is_exploration() for _ in range(500)] == steps[500:]


def test_a_relative_threshold_counts_a_creeping_loss_as_a_plateau() -> None:
    creeping = [1.0, 0.998, 0.996, 0.994, 0.992]
    absolute = LambdaPlateau(0.1, 2.0, patience=2)
    assert not any(absolute.step(x) for x in creeping)
    relative = LambdaPlateau(0.1, 2.0, patience=2, threshold=0.01, threshold_mode="rel")
    assert [relative.step(x) for x in creeping] == [False, False, False, True, False]


def test_a_bump_raises_lambda_at_once_and_the_plateau_is_judged_afresh() -> None:
    lam = LambdaPlateau(0.1, 2.0, patience=0)
    assert lam.step(1.0) is False
    lam.bump()
    assert lam.value == 0.2
    assert lam.step(5.0) is False  # judged afresh after the raise: 5.0 is the new best, not worse than 1.0


def test_the_target_pace_is_geometric_and_reaches_the_target_at_the_deadline() -> None:
    pace = TargetPace(1.0, 0.01, deadline=4)
    assert [round(pace.planned(e), 6) for e in range(6)] == [1.0, 0.316228, 0.1, 0.031623, 0.01, 0.01]
    assert pace.behind(2, 0.2) and not pace.behind(2, 0.09)
    assert TargetPace(0.5, 0.8, deadline=3).planned(2) == 0.5  # a target above the start asks for nothing
    assert TargetPace(1.0, 0.0, deadline=2).planned(2) == pytest.approx(1e-4)
    resumed = TargetPace(0.3, 0.01, deadline=4)
    resumed.load_state_dict(pace.state_dict())
    assert resumed.planned(1) == pace.planned(1)


def test_early_stopping_keeps_the_first_of_equally_good_epochs() -> None:
    stop = EarlyStopping(patience=2)
    assert [stop.step(a, e) for e, a in enumerate([0.5, 0.7, 0.7, 0.6], start=1)] == [True, True, False, False]
    assert stop.exhausted and (stop.best, stop.best_epoch) == (0.7, 2)
    again = EarlyStopping(patience=2)
    again.load_state_dict(stop.state_dict())
    assert again.exhausted and again.best_epoch == 2
