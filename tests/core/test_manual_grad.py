"""The chain's hand-written backward (the training path) gives autograd's gradients, values and random draws."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from masksel_core import TrainConfig, adam_kernel, build, kernels, load_dataset
from masksel_core.chain import build_chain
from masksel_core.input_grad import InputGradTap
from masksel_core.optim import MaskAdam
from masksel_core.train import masked_step, prepare_inputs


@pytest.fixture(params=["kernels", "torch"], autouse=True)
def both_paths(request, monkeypatch):  # type: ignore[no-untyped-def]
    """Every test here runs on the compiled kernels (`kernels.py`, the CPU default) and on the torch code."""
    monkeypatch.setattr(kernels, "ENABLED", request.param == "kernels")
    return request.param


SPECS = ["channel-any", "pixel-any", "block-any", "channel-xor", "pixel-xor", "jpeg-xor", "thumb-xor",
         "jpeg-xor+pixel-any", "jpeg-xor+block-any", "pixel-any+channel-any", "block-any+pixel-xor"]


def _reference(chain, x, weights, lam, tau, explore):  # type: ignore[no-untyped-def]
    """Autograd through the stages' own `forward`: masked batch, Q, and the logits' and batch's gradients."""
    chain = copy.deepcopy(chain)
    x = x.clone().requires_grad_(True)
    masked, q = chain(x, tau=tau, explore=explore, generator=torch.Generator().manual_seed(3), reference=True)
    ((masked * weights).sum() + lam * q).backward()
    return masked.detach(), q.detach(), [s.logits.grad for s in chain.select_stages], x.grad


def _close(got: torch.Tensor, expected: torch.Tensor) -> None:
    # Relative to the largest entry: the same sums, added in another order.
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * max(1.0, float(expected.abs().max())))


@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("explore", [False, True])
@pytest.mark.parametrize("spec", SPECS)
def test_forward_manual_and_backward_manual_match_autograd(spec: str, explore: bool, rescale: bool,
                                                           track: bool) -> None:
    """With `track` autograd gives dL/dmasked; without (as when the tap gives it; the kernels' per-chain plan)
    the test hands it over itself: the loss is sum(masked * weights), so dL/dmasked = weights."""
    chain = build_chain(spec, (3, 8, 6), init_logit=0.4, rescale=rescale, generator=torch.Generator().manual_seed(1))
    x = torch.rand(5, *chain.stage_input_shape, generator=torch.Generator().manual_seed(2)) + 0.1
    weights = torch.randn(5, *chain.output_shape, generator=torch.Generator().manual_seed(4))
    masked_ref, q_ref, grads_ref, _ = _reference(chain, x, weights, 0.7, 0.6, explore)

    masked, q, saved = chain.forward_manual(x, tau=0.6, explore=explore, generator=torch.Generator().manual_seed(3),
                                            track=track)
    assert masked.grad_fn is None and masked.requires_grad is track  # the masks are not in the graph
    assert not q.requires_grad
    if track:
        (masked * weights).sum().backward()
    chain.backward_manual(saved, masked.grad if track else weights, 0.7)

    assert torch.equal(masked.detach(), masked_ref)  # the same random draws and the same values
    assert q.item() == pytest.approx(q_ref.item(), rel=1e-6)
    for stage, expected in zip(chain.select_stages, grads_ref, strict=True):
        assert expected.abs().sum() > 0
        _close(stage.logits.grad, expected)


@pytest.mark.parametrize("spec", SPECS)
def test_the_fused_autograd_node_matches_the_reference_including_the_batch_gradient(spec: str) -> None:
    chain = build_chain(spec, (3, 8, 6), init_logit=0.4, generator=torch.Generator().manual_seed(1))
    x = torch.rand(5, *chain.stage_input_shape, generator=torch.Generator().manual_seed(2)) + 0.1
    weights = torch.randn(5, *chain.output_shape, generator=torch.Generator().manual_seed(4))
    masked_ref, q_ref, grads_ref, x_grad_ref = _reference(chain, x, weights, 0.7, 0.6, True)

    xg = x.clone().requires_grad_(True)
    masked, q = chain(xg, tau=0.6, explore=True, generator=torch.Generator().manual_seed(3))
    assert type(masked.grad_fn).__name__ == "_FusedChainBackward"
    ((masked * weights).sum() + 0.7 * q).backward()
    assert torch.equal(masked.detach(), masked_ref)
    for stage, expected in zip(chain.select_stages, grads_ref, strict=True):
        _close(stage.logits.grad, expected)
    _close(xg.grad, x_grad_ref)


def test_frozen_logits_get_no_gradient_and_the_others_still_do() -> None:
    chain = build_chain("jpeg-xor+pixel-any", (2, 8, 8), generator=torch.Generator().manual_seed(0))
    first, second = chain.select_stages
    first.logits.requires_grad_(False)
    masked, _, saved = chain.forward_manual(torch.rand(3, *chain.stage_input_shape), tau=1.0, explore=True,
                                            generator=torch.Generator().manual_seed(1))
    masked.sum().backward()
    chain.backward_manual(saved, masked.grad, 0.5)
    assert first.logits.grad is None and second.logits.grad is not None


@pytest.mark.parametrize(("model_name", "tap_active"), [("lenet5", True), ("mlp", False)])
@pytest.mark.parametrize("spec", ["pixel-any", "jpeg-xor+pixel-any", "channel-xor"])
def test_a_training_step_gives_the_reference_gradients_to_masks_and_network(spec: str, model_name: str,
                                                                         tap_active: bool) -> None:
    """`train.masked_step` (the tap's input gradient where the first layer is a convolution, autograd's
    otherwise) against one autograd backward of `task + lam * Q` through the stages' own graph."""
    data = load_dataset("digits")
    chain, model = build(TrainConfig(mask_type=spec, model=model_name), data.input_shape, data.num_classes,
                         torch.Generator().manual_seed(0))
    prepared = prepare_inputs(chain, data)
    x, y = prepared.x_train[:48], prepared.y_train[:48]
    ref_chain, ref_model = copy.deepcopy(chain), copy.deepcopy(model)
    masked, q = ref_chain(x, tau=0.8, explore=True, generator=torch.Generator().manual_seed(1), reference=True)
    (nn.functional.cross_entropy(ref_model(masked), y) + 0.3 * q).backward()

    tap = InputGradTap(model, chain.output_shape, torch.device("cpu"))
    assert tap.active is tap_active
    seen: dict[str, list[torch.Tensor]] = {}

    class Recorder:  # stands in for both optimisers: keeps the gradients each one would apply
        def __init__(self, name: str, params) -> None:  # type: ignore[no-untyped-def]
            self.name, self.params = name, list(params)

        def zero_grad(self, set_to_none: bool = True) -> None:
            pass

        def step(self) -> None:
            seen[self.name] = [p.grad.clone() for p in self.params]

    task, q_got = masked_step(model, chain, tap, nn.CrossEntropyLoss(), x, y, Recorder("model", model.parameters()),
                              Recorder("masks", chain.parameters()), lam=0.3, tau=0.8, explore=True,
                              generator=torch.Generator().manual_seed(1))
    tap.remove()
    assert q_got.item() == pytest.approx(q.item())
    for got, expected in zip(seen["masks"], [p.grad for p in ref_chain.parameters()], strict=True):
        _close(got, expected)
    for got, expected in zip(seen["model"], [p.grad for p in ref_model.parameters()], strict=True):
        _close(got, expected)


def test_cached_prices_follow_changed_costs_and_weights() -> None:
    """The price map kept between steps is recomputed when the chain's prices or a stage's weights change."""
    chain = build_chain("jpeg-xor", (2, 4, 4))
    chain.select_stages[0].weights.fill_(0.5)  # not all 1, so the stage keeps a price map of its own
    x = torch.rand(3, *chain.stage_input_shape)
    _, q_before, _ = chain.forward_manual(x, tau=1.0, explore=False)
    chain.set_version_costs(torch.tensor([2.0, 1.0, 1.0, 1.0, 1.0]))  # in place: same tensor, new version
    _, q_after, _ = chain.forward_manual(x, tau=1.0, explore=False)
    # The first version (quality 90, priced 0.9 by default) is the one kept, on every value.
    assert q_before.item() == pytest.approx(0.45) and q_after.item() == pytest.approx(1.0)
    pixel = build_chain("pixel-any", (1, 4, 4))
    _, q_ones, _ = pixel.forward_manual(torch.rand(2, 1, 4, 4), tau=1.0, explore=False)
    pixel.select_stages[0].weights.mul_(3.0)
    _, q_three, _ = pixel.forward_manual(torch.rand(2, 1, 4, 4), tau=1.0, explore=False)
    assert q_three.item() == pytest.approx(3 * q_ones.item())


def test_a_jpeg_chains_gradients_follow_new_version_prices() -> None:
    """After `set_version_costs` (in place, between steps) the xor's price term uses the new prices."""
    chain = build_chain("jpeg-xor", (1, 4, 4), generator=torch.Generator().manual_seed(0))
    x = torch.rand(3, *chain.stage_input_shape)

    def logits_grad() -> torch.Tensor:
        masked, _, saved = chain.forward_manual(x, tau=1.0, explore=False)
        chain.backward_manual(saved, torch.zeros_like(masked), 1.0)  # only the price term is left
        grad = chain.select_stages[0].logits.grad
        chain.select_stages[0].logits.grad = None
        return grad

    before = logits_grad()
    chain.set_version_costs(torch.tensor([0.9, 0.7, 0.5, 0.3, 5.0]))
    after = logits_grad()
    masked, q = chain(x, tau=1.0, explore=False, reference=True)
    (masked.sum() * 0 + q).backward()
    torch.testing.assert_close(after, chain.select_stages[0].logits.grad)
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("spec", ["pixel-any", "channel-xor", "pixel-xor", "jpeg-xor+pixel-any"])
def test_the_kernels_run_where_they_apply_and_not_where_they_are_off(spec: str, both_paths: str) -> None:
    from masksel_core import kernels

    chain = build_chain(spec, (2, 6, 5))
    _, _, saved = chain.forward_manual(torch.rand(3, *chain.stage_input_shape), tau=1.0, explore=True)
    kind = type(saved[0]).__name__
    if spec == "jpeg-xor+pixel-any":  # the paper's chain runs as one kernel, or as a merged pair and a stage
        assert kind == ("_KernelChain" if both_paths == "kernels" else "_MergedPair")
    else:
        assert (saved[0][0] == "kernel") is (both_paths == "kernels")
    assert kernels.ENABLED is (both_paths == "kernels")


@pytest.mark.parametrize("rescale", [False, True])
def test_a_frozen_first_stage_gets_no_gradient_and_the_later_one_the_reference_one(rescale: bool) -> None:
    chain = build_chain("pixel-any+channel-any", (3, 8, 6), init_logit=0.4, rescale=rescale,
                        generator=torch.Generator().manual_seed(1))
    chain.select_stages[0].logits.requires_grad_(False)
    x = torch.rand(5, *chain.stage_input_shape, generator=torch.Generator().manual_seed(2)) + 0.1
    weights = torch.randn(5, *chain.output_shape, generator=torch.Generator().manual_seed(4))
    _, _, grads_ref, _ = _reference(chain, x, weights, 0.7, 0.6, True)
    for track in (True, False):
        masked, _, saved = chain.forward_manual(x, tau=0.6, explore=True, generator=torch.Generator().manual_seed(3),
                                                track=track)
        chain.backward_manual(saved, weights, 0.7)
        first, second = chain.select_stages
        assert first.logits.grad is None
        _close(second.logits.grad, grads_ref[1])
        second.logits.grad = None


def test_backward_manual_asks_for_a_gradient_instead_of_guessing_its_shape() -> None:
    chain = build_chain("jpeg-xor", (1, 4, 4))
    masked, _, saved = chain.forward_manual(torch.rand(2, *chain.stage_input_shape), tau=1.0, explore=False)
    with pytest.raises(TypeError, match="zeros_like"):
        chain.backward_manual(saved, None, 0.1)
    chain.backward_manual(saved, torch.zeros_like(masked), 0.1)  # the price term alone
    assert chain.select_stages[0].logits.grad.abs().sum() > 0


def test_a_copied_chain_does_not_reuse_the_originals_caches() -> None:
    """Caches are keyed on version counters, which a deep copy restarts: a copy starts without them."""
    chain = build_chain("pixel-any", (1, 4, 4))
    stage = chain.select_stages[0]
    stage.weights.fill_(1.0)
    stage.weights.fill_(1.0)  # version 2
    chain.forward_manual(torch.rand(2, 1, 4, 4), tau=1.0, explore=False)  # fills the caches
    twin = copy.deepcopy(chain)
    twin.select_stages[0].weights.fill_(0.5)
    _, q, _ = twin.forward_manual(torch.rand(2, 1, 4, 4), tau=1.0, explore=False)
    assert q.item() == pytest.approx(0.5)


class _Unfused:
    """The masks' optimiser behind a stand-in, so that `masked_step` stores the gradients and steps it apart."""

    def __init__(self, optimizer: MaskAdam) -> None:
        self.optimizer = optimizer

    def step(self) -> None:
        self.optimizer.step()


@pytest.mark.parametrize("spec", ["pixel-any", "channel-xor", "jpeg-xor", "jpeg-xor+pixel-any", "block-any"])
def test_the_step_fused_into_the_masks_backward_is_the_separate_step(spec: str) -> None:
    """Where the chain's compiled backward also takes the masks' Adam step, logits and optimiser state come out
    bit for bit as with the gradient stored and `MaskAdam.step` after it."""
    data = load_dataset("digits")
    config = TrainConfig(mask_type=spec, model="lenet5")
    chain, model = build(config, data.input_shape, data.num_classes, torch.Generator().manual_seed(0))
    prepared = prepare_inputs(chain, data)
    runs = []
    for fused in (True, False):
        run_chain, run_model = copy.deepcopy(chain), copy.deepcopy(model)
        tap = InputGradTap(run_model, run_chain.output_shape, torch.device("cpu"))
        model_opt = torch.optim.Adam(run_model.parameters(), lr=1e-4, amsgrad=True)
        mask_opt = MaskAdam(run_chain.parameters(), lr=0.01)
        generator = torch.Generator().manual_seed(5)
        fused_steps = []
        for step in range(6):
            x, y = prepared.x_train[step * 32:(step + 1) * 32], prepared.y_train[step * 32:(step + 1) * 32]
            before = mask_opt._arrays
            masked_step(run_model, run_chain, tap, nn.CrossEntropyLoss(), x, y, model_opt,
                        mask_opt if fused else _Unfused(mask_opt), lam=0.2, tau=2.0, explore=step % 2 == 0,
                        generator=generator)
            fused_steps.append(bool(before) and fused)
        runs.append((run_chain.state_dict(), mask_opt.state_dict(), fused_steps))
    (fused_chain, fused_opt, steps_fused), (plain_chain, plain_opt, _) = runs
    assert any(steps_fused) == (kernels.ENABLED and adam_kernel.VECTOR_WIDTH is not None)
    for name, value in fused_chain.items():
        assert torch.equal(value, plain_chain[name]), name
    assert str(fused_opt) == str(plain_opt)
