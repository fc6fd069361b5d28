"""Task-weighting strategies on a tiny 2-task model (shared Linear trunk, two Linear heads)."""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
from torch import Tensor, nn

from mtl.weighting import WEIGHTINGS
from mtl.weighting.base import Weighting
from mtl.weighting.dwa import DWA
from mtl.weighting.famo import FAMO
from mtl.weighting.fixed import Fixed
from mtl.weighting.gradnorm import GradNorm
from mtl.weighting.pcgrad import PCGrad

TASKS = ("a", "b")
OPTIONS = {"dwa": {"period": 2}}  # so DWA's state changes within a few steps


class Tiny(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.trunk = nn.Linear(4, 4)
        self.heads = nn.ModuleDict({t: nn.Linear(4, 1) for t in TASKS})
        self.x = torch.randn(8, 4)
        self.y = {t: torch.randn(8, 1) for t in TASKS}

    def losses(self, tasks: tuple[str, ...] = TASKS, *, factor: float = 1.0) -> dict[str, Tensor]:
        h = torch.tanh(self.trunk(self.x))
        return {t: factor * ((self.heads[t](h) - self.y[t]) ** 2).mean() for t in tasks}


def make(name: str, model: Tiny, **kw: object) -> Weighting:
    kw = {**OPTIONS.get(name, {}), **kw}
    shared = list(model.trunk.parameters())
    return WEIGHTINGS[name].load()(TASKS, init_weights={"a": 0.3, "b": 2.0}, shared_params=shared, **kw)


def grads(module: nn.Module) -> list[Tensor | None]:
    return [None if p.grad is None else p.grad.clone() for p in module.parameters()]


# --- base validation -----------------------------------------------------------------------


def test_base_rejects_bad_input() -> None:
    m = Tiny()
    with pytest.raises(ValueError, match=r"`init_weights` must give every task a weight, but \['b'\]"):
        Fixed(TASKS, init_weights={"a": 1.0}, shared_params=[])
    with pytest.raises(ValueError, match=r"finite and >= 0, but got \{'a': -1.0\}"):
        Fixed(TASKS, init_weights={"a": -1.0, "b": 1.0}, shared_params=[])
    w = make("fixed", m)
    with pytest.raises(ValueError, match=r"enabled tasks \['a', 'b'\], but got \['zz'\]"):
        w.backward({"zz": torch.tensor(1.0)}, 0)
    with pytest.raises(ValueError, match="at least one task"):
        w.backward({}, 0)
    for cls in (GradNorm, PCGrad):
        with pytest.raises(ValueError, match="needs at least one shared parameter"):
            cls(TASKS, init_weights={"a": 1.0, "b": 1.0}, shared_params=[])


# --- fixed ---------------------------------------------------------------------------------


def test_fixed_matches_hand_weighted_sum_and_accumulates() -> None:
    m = Tiny()
    w = make("fixed", m)
    l = m.losses()
    expected = torch.autograd.grad(0.3 * l["a"] + 2.0 * l["b"], list(m.parameters()), retain_graph=True)
    assert w.backward(l, 0) == pytest.approx({"a": 0.3, "b": 2.0})
    for p, e in zip(m.parameters(), expected):
        torch.testing.assert_close(p.grad, e)
    w.backward(m.losses(), 1)
    for p, e in zip(m.parameters(), expected):
        torch.testing.assert_close(p.grad, 2 * e)


# --- uncertainty ---------------------------------------------------------------------------


def test_uncertainty_downweights_the_large_loss_and_round_trips() -> None:
    m = Tiny()
    w = make("uncertainty", m)
    l = m.losses()
    assert w.backward(l, 0) == pytest.approx({"a": 0.5, "b": 0.5})  # init_weights ignored
    # d/ds (0.5 exp(-s) L + 0.5 s) at s=0 is 0.5 - 0.5 L
    torch.testing.assert_close(w.log_vars.grad, 0.5 - 0.5 * torch.stack([l["a"], l["b"]]).detach())
    opt = torch.optim.Adam(w.parameters(), lr=0.1)
    for step in range(20):
        opt.zero_grad()
        l = m.losses()
        w.backward({"a": 100 * l["a"], "b": l["b"]}, step)
        opt.step()
    after = w.weights(m.losses(), 20)
    assert after["a"] < 0.5 * after["b"]
    fresh = make("uncertainty", Tiny())
    fresh.load_state_dict(w.state_dict())
    torch.testing.assert_close(fresh.weights(m.losses(), 20), after)


# --- dwa -----------------------------------------------------------------------------------


def _const(v: float) -> Tensor:
    return torch.tensor(v, requires_grad=True)


def test_dwa_favours_the_task_whose_loss_stopped_falling() -> None:
    w = DWA(TASKS, init_weights={"a": 1.0, "b": 1.0}, shared_params=[], temperature=2.0, period=2)
    steps = [{"a": 5.0, "b": 1.0}, {"a": 3.0, "b": 1.0}, {"a": 2.0, "b": 1.0}, {"b": 1.0}]
    for step, losses in enumerate(steps):  # "a" averages 4 then 2; equal weights meanwhile
        got = w.backward({t: _const(v) for t, v in losses.items()}, step)
        assert got == dict.fromkeys(losses, 1.0)
    got = w.backward({"a": _const(1.0), "b": _const(1.0)}, 4)
    r = torch.tensor([2.0 / 4.0, 1.0 / 1.0])  # a halved, b flat
    want = 2 * torch.softmax(r / 2.0, dim=0)
    assert got == pytest.approx({"a": float(want[0]), "b": float(want[1])})
    assert got["b"] > got["a"]
    assert sum(got.values()) == pytest.approx(2.0)


def test_dwa_task_without_samples_keeps_ratio_one() -> None:
    w = DWA(TASKS, init_weights={"a": 1.0, "b": 1.0}, shared_params=[], period=1)
    w.backward({"a": _const(3.0), "b": _const(4.0)}, 0)
    w.backward({"b": _const(2.0)}, 1)  # no "a" in period 1
    got = w.weights({"a": _const(1.0), "b": _const(1.0)}, 2)
    want = 2 * torch.softmax(torch.tensor([1.0, 0.5]) / 2.0, dim=0)
    torch.testing.assert_close(torch.stack([got["a"], got["b"]]), want)


def test_dwa_skipped_periods_have_no_average_and_step_cannot_go_back() -> None:
    w = DWA(TASKS, init_weights={"a": 1.0, "b": 1.0}, shared_params=[], period=1)
    w.backward({"a": _const(4.0), "b": _const(1.0)}, 0)
    w.backward({"a": _const(2.0), "b": _const(1.0)}, 1)
    assert w.backward({"a": _const(1.0), "b": _const(1.0)}, 3) == {"a": 1.0, "b": 1.0}  # period 2 empty
    with pytest.raises(ValueError, match=r"`step` must not go back to an earlier period, but got step=2"):
        w.weights({"a": _const(1.0)}, 2)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"temperature": 0.0}, r"`temperature > 0` must hold, but got temperature=0.0"),
        ({"temperature": math.nan}, r"`temperature > 0` must hold, but got temperature=nan"),
        ({"period": 0}, r"`period` must be an integer >= 1, but got period=0"),
        ({"period": 2.5}, r"`period` must be an integer >= 1, but got period=2.5"),
    ],
)
def test_dwa_validates(kw: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DWA(TASKS, init_weights={"a": 1.0, "b": 1.0}, shared_params=[], **kw)


# --- gradnorm ------------------------------------------------------------------------------


def test_gradnorm_weights_sum_to_k_and_get_grads() -> None:
    m = Tiny()
    w = make("gradnorm", m)
    assert w.weights(m.losses(), 0) == {"a": 1.0, "b": 1.0}
    with torch.no_grad():
        w.raw_weights.copy_(torch.tensor([-3.0, 2.0]))
    assert float(sum(w.weights(m.losses(), 0).values()).detach()) == pytest.approx(2.0)
    w.backward(m.losses(), 0)
    assert w.raw_weights.grad is not None and w.raw_weights.grad.abs().sum() > 0
    assert m.heads["a"].weight.grad is not None


def test_gradnorm_initial_losses_survive_state_dict() -> None:
    m = Tiny()
    w = make("gradnorm", m)
    l0 = {t: float(v.detach()) for t, v in m.losses().items()}
    w.backward(m.losses(), 0)
    fresh = make("gradnorm", Tiny(seed=1))
    assert fresh.initial_losses.isnan().all()
    fresh.load_state_dict(w.state_dict())
    torch.testing.assert_close(fresh.initial_losses, torch.tensor([l0["a"], l0["b"]]))


def test_gradnorm_downweights_the_task_with_10x_gradient() -> None:
    m = Tiny()
    w = make("gradnorm", m, alpha=1.5)
    opt = torch.optim.Adam(w.parameters(), lr=0.05)
    for step in range(10):
        opt.zero_grad()
        l = m.losses(("a",))["a"]  # same loss through the same head: only the 10x differs
        w.backward({"a": 10 * l, "b": l}, step)
        opt.step()
        got = {t: v.detach() for t, v in w.weights(m.losses(), step).items()}
        assert float(got["a"] + got["b"]) == pytest.approx(2.0)
    assert got["a"] < 0.8 * got["b"]


@pytest.mark.parametrize("alpha", [0.0, 2.0])
def test_gradnorm_raw_grad_matches_hand_computation(alpha: float) -> None:
    p = nn.Parameter(torch.tensor([1.0, 0.0]))  # q = p.p = 1, grad q = 2p, ||grad q|| = 2
    w = GradNorm(TASKS, init_weights={"a": 1.0, "b": 1.0}, shared_params=[p], alpha=alpha)
    w.backward({"a": p @ p, "b": p @ p}, 0)  # records L(0) = (1, 1); equal norms: no pull
    w.raw_weights.grad = None
    w.backward({"a": 0.5 * (p @ p), "b": p @ p}, 1)
    # G = (1, 2), mean 1.5; rates (0.5, 1) / 0.75 = (2/3, 4/3); target = 1.5 * rate**alpha:
    # alpha 0 -> (1.5, 1.5): sign(G - target) = (-1, 1); alpha 2 -> (2/3, 8/3): (1, -1).
    # d|.|/dw = sign * (1, 2); at raw = 0, dw_i/draw_j = (delta_ij - 1/2) / (2 ln 2).
    dw = torch.tensor([-1.0, 2.0]) if alpha == 0.0 else torch.tensor([1.0, -2.0])
    torch.testing.assert_close(w.raw_weights.grad, (dw - dw.mean()) / (2 * math.log(2)))


def test_gradnorm_validates_alpha() -> None:
    with pytest.raises(ValueError, match=r"`alpha >= 0` must hold, but got alpha=-0.5"):
        make("gradnorm", Tiny(), alpha=-0.5)


# --- pcgrad --------------------------------------------------------------------------------


def _pcgrad_on(
    vectors: dict[str, list[float]], seed: int, pre: Tensor | None = None
) -> tuple[Tensor, list[int]]:
    """PCGrad on L_t = p . v_t (unit weights); returns p's grad and the task order drawn."""
    p = nn.Parameter(torch.zeros(2))
    p.grad = None if pre is None else pre.clone()
    w = PCGrad(tuple(vectors), init_weights=dict.fromkeys(vectors, 1.0), shared_params=[p])
    torch.manual_seed(seed)
    order = torch.randperm(len(vectors)).tolist()
    torch.manual_seed(seed)
    w.backward({t: p @ torch.tensor(v) for t, v in vectors.items()}, 0)
    return p.grad, order


def test_pcgrad_two_conflicting_tasks_both_orders() -> None:
    # a=(1,0), b=(-1,1), a.b=-1: a' = a - (-1/2) b = (0.5, 0.5); b' = b - (-1/1) a = (0, 1).
    orders = set()
    for seed in range(20):
        got, order = _pcgrad_on({"a": [1.0, 0.0], "b": [-1.0, 1.0]}, seed)
        orders.add(tuple(order))
        torch.testing.assert_close(got, torch.tensor([0.5, 1.5]))
    assert orders == {(0, 1), (1, 0)}


def test_pcgrad_three_tasks_order_matters() -> None:
    # a=(1,0), b=(-1,1), c=(0,-1); a.b=-1, a.c=0, b.c=-1.
    # a: b first -> (0.5,0.5), then .c=-0.5 -> (0.5,0); c first -> no change, then b -> (0.5,0.5).
    # b: either way -> (0,0).  c: a first -> no change, then b -> (-0.5,-0.5);
    # b first -> (-0.5,-0.5), then .a=-0.5 -> (0,-0.5).
    seen = set()
    for seed in range(20):
        got, order = _pcgrad_on({"a": [1.0, 0.0], "b": [-1.0, 1.0], "c": [0.0, -1.0]}, seed)
        pos = {t: order.index(i) for i, t in enumerate("abc")}
        a = [0.5, 0.0] if pos["b"] < pos["c"] else [0.5, 0.5]
        c = [-0.5, -0.5] if pos["a"] < pos["b"] else [0.0, -0.5]
        torch.testing.assert_close(got, torch.tensor(a) + torch.tensor(c))
        seen.add(tuple(got.tolist()))
    assert len(seen) > 1


def test_pcgrad_plain_sum_without_conflict_and_accumulates() -> None:
    got, _ = _pcgrad_on({"a": [1.0, 0.0], "b": [1.0, 1.0]}, 0)
    torch.testing.assert_close(got, torch.tensor([2.0, 1.0]))
    got, _ = _pcgrad_on({"a": [1.0, 0.0], "b": [-1.0, 1.0]}, 0, pre=torch.tensor([10.0, -10.0]))
    torch.testing.assert_close(got, torch.tensor([10.5, -8.5]))


def test_pcgrad_heads_get_plain_grads() -> None:
    m, ref = Tiny(), Tiny()
    make("pcgrad", m).backward(m.losses(), 0)
    make("fixed", ref).backward(ref.losses(), 0)
    for t in TASKS:
        for p, q in zip(m.heads[t].parameters(), ref.heads[t].parameters()):
            torch.testing.assert_close(p.grad, q.grad)


# --- FAMO ----------------------------------------------------------------------------------


def _famo(**kw: float) -> FAMO:
    return FAMO(TASKS, init_weights={"a": 1.0, "b": 1.0}, shared_params=[], **kw)


def _losses(a: float, b: float) -> dict[str, Tensor]:
    return {"a": torch.tensor(a, requires_grad=True), "b": torch.tensor(b, requires_grad=True)}


def test_famo_weights_are_inverse_losses_under_equal_logits() -> None:
    w = _famo().weights(_losses(1.0, 3.0), 0)
    # z = (1/2, 1/2): w_t = n * (z_t / L_t) / sum(z / L) = 2 * (1/L_t) / (1 + 1/3)
    torch.testing.assert_close(torch.stack([w["a"], w["b"]]), torch.tensor([1.5, 0.5]))
    assert not w["a"].requires_grad  # the model's gradient only: the logits move on their own


def test_famo_first_logit_step_is_one_learning_rate_toward_the_slow_task() -> None:
    f = _famo(gamma=0.0, w_lr=0.1)
    f.backward(_losses(1.0, 1.0), 0)
    f.backward(_losses(1.0, 1.0), 0)  # a second micro-batch of step 0: nothing moves
    assert f.logits.abs().sum() == 0
    f.backward(_losses(0.5, 1.0), 1)  # step 0 ended: nothing to compare yet
    assert f.logits.abs().sum() == 0
    f.backward(_losses(0.5, 1.0), 2)  # step 1 ended: a fell (log 2), b did not
    # Adam's first step moves each logit by w_lr against the sign of its gradient z * (delta - z.delta)
    torch.testing.assert_close(f.logits, torch.tensor([-0.1, 0.1]))
    w = f.weights(_losses(1.0, 1.0), 3)
    assert w["b"] > w["a"]  # the task whose loss did not fall gains weight


def test_famo_balances_the_rates_at_which_losses_fall() -> None:
    f = _famo(w_lr=0.05, gamma=0.0)
    a, b = 1.0, 1.0
    rates = []
    for step in range(200):  # each loss falls in proportion to its weight; b ten times slower per unit
        w = f.weights(_losses(a, b), step)
        f.backward(_losses(a, b), step)
        rates.append((0.01 * float(w["a"]), 0.001 * float(w["b"])))
        a *= 1 - rates[-1][0]
        b *= 1 - rates[-1][1]
    assert rates[0][0] / rates[0][1] == pytest.approx(10.0)  # equal weights: a falls 10x faster
    assert rates[-1][0] / rates[-1][1] == pytest.approx(1.0, abs=0.05)  # FAMO: both at one rate
    assert torch.softmax(f.logits, 0)[1] > 0.8  # by weighting the slow task


def test_famo_validates() -> None:
    with pytest.raises(ValueError, match="w_lr > 0"):
        _famo(w_lr=0.0)
    with pytest.raises(ValueError, match="gamma >= 0"):
        _famo(gamma=-1.0)


# --- every strategy ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_missing_task(name: str) -> None:
    m = Tiny()
    w = make(name, m)
    for step in range(2):
        assert set(w.backward(m.losses(("a",)), step)) == {"a"}
    assert m.heads["b"].weight.grad is None
    assert all(g is None or g.isfinite().all() for g in grads(m) + grads(w))
    assert set(w.backward(m.losses(), 2)) == {"a", "b"}
    assert all(g is None or g.isfinite().all() for g in grads(m) + grads(w))


@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_gradients_accumulate(name: str) -> None:
    m = Tiny()
    w = make(name, m, **({"period": 50} if name == "dwa" else {}))
    runs = []
    for step in range(2):
        torch.manual_seed(0)
        w.backward(m.losses(), step)
        runs.append(grads(m) + grads(w))
    assert all(g is not None for g in runs[0])
    for once, twice in zip(*runs):
        torch.testing.assert_close(twice, 2 * once)


@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_scale_applies_to_every_backpropagated_loss(name: str) -> None:
    runs = []
    for scale in (None, lambda x: 3 * x):
        m = Tiny()
        w = make(name, m)
        torch.manual_seed(0)
        w.backward(m.losses(), 0, scale=scale)
        runs.append(grads(m) + grads(w))
    for plain, scaled in zip(*runs):
        assert (plain is None) == (scaled is None)
        if plain is not None:
            torch.testing.assert_close(scaled, 3 * plain)


@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_state_dict_round_trip_continues_identically(name: str) -> None:
    m = Tiny()
    w = make(name, m)
    opt = torch.optim.SGD([*m.parameters(), *w.parameters()], lr=0.1)
    for step in range(5):  # DWA (period 2): step 5 stays in step 4's period, step 6 rolls it
        opt.zero_grad()
        w.backward(m.losses(("a",) if step == 0 else TASKS, factor=1.0 / (step + 1)), step)
        opt.step()
    m2 = copy.deepcopy(m)
    w2 = make(name, m2)
    w2.load_state_dict(w.state_dict())
    out = []
    for model, weighting in ((m, w), (m2, w2)):
        run = []
        for step in (5, 6):
            model.zero_grad()
            weighting.zero_grad()
            torch.manual_seed(step)
            in_force = weighting.backward(model.losses(factor=1.0 / (step + 1)), step)
            run.append((in_force, grads(model) + grads(weighting)))
        out.append(run)
    for (w1, g1s), (w2, g2s) in zip(*out):
        assert w1 == w2
        for g1, g2 in zip(g1s, g2s):
            torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("name", sorted(set(WEIGHTINGS) - {"fixed"}))
def test_docstring_cites_a_paper_year(name: str) -> None:
    assert re.search(r"\((19|20)\d{2}\)", WEIGHTINGS[name].load().__doc__ or "")
