from __future__ import annotations

import pytest

from masksel_core.schedules import LambdaPlateau, PhaseSchedule, TauCooldown


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
