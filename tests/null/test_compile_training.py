"""Compiled training (issue: training through the compiler): compile() in train mode and compile_step against
eager training on the numpy reference backend in float64, plus one regression test per defect that made
compiling a training model silently wrong (frozen dropout masks, BN statistics, stale folded weights, no grad)."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest

import engine
import engine.functional as F
import engine.nn as nn
import engine.optim as optim
import graph
import graph.remat as remat
from engine import Tensor
from graph.memory import plan_memory


def _model(dropout: float = 0.3, dtype=np.float64) -> nn.Module:
    engine.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(dropout),
                      nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    return m.double() if dtype == np.float64 else m


X = np.random.default_rng(1).standard_normal((2, 3, 6, 6))
Y = np.array([1, 3])


def _state_close(a: nn.Module, b: nn.Module, atol: float) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_allclose(np.asarray(sb[k].data, np.float64), np.asarray(sa[k].data, np.float64),
                                   rtol=atol, atol=atol, err_msg=k)


# --- the four defects --------------------------------------------------------------------------------------
def test_dropout_mask_is_drawn_per_call_and_matches_eager_seeded():
    m = _model(0.5)
    m.train()
    state = engine.get_rng_state()
    cm = graph.compile(m, Tensor(X), backend="numpy")
    assert engine.get_rng_state() == state, "compile() consumed random numbers"
    a, b = cm(Tensor(X)).data, cm(Tensor(X)).data
    assert not np.array_equal(a, b), "two compiled calls drew the same dropout mask"
    engine.manual_seed(7)
    compiled = cm(Tensor(X)).data
    m2 = _model(0.5)
    m2.train()
    engine.manual_seed(7)
    np.testing.assert_array_equal(m2(Tensor(X)).data, compiled)


@pytest.mark.parametrize("abstract", [True, False])
def test_compile_leaves_batchnorm_state_alone_and_calls_update_it(abstract):
    m = _model()
    m.train()
    before = {k: v.data.copy() for k, v in m.state_dict().items()}
    cm = graph.compile(m, Tensor(X), backend="numpy", abstract=abstract)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v.data, before[k], err_msg=f"compile() changed {k}")
    ref = _model()
    ref.train()
    for _ in range(2):
        engine.manual_seed(3)
        cm(Tensor(X))
        engine.manual_seed(3)
        ref(Tensor(X))
    assert int(m[1].num_batches_tracked.data) == 2
    _state_close(ref, m, 1e-12)


def test_eval_module_refreshes_folded_weights_after_an_optimizer_step():
    m = _model()
    m.eval()
    cm = graph.compile(m, Tensor(X), backend="numpy")
    assert not cm.graph.find("batch_norm_infer")  # BN folded into the conv: a copied weight
    cm(Tensor(X))
    cm(Tensor(X))  # no write since the last call's check: the versions are not scanned again
    opt = optim.SGD(m.parameters(), lr=0.5)
    m.train()
    F.cross_entropy(m(Tensor(X)), Tensor(Y)).backward()
    opt.step()
    m.eval()
    with engine.no_grad():
        want = m(Tensor(X)).data
    np.testing.assert_allclose(cm(Tensor(X)).data, want, rtol=1e-10, atol=1e-12)
    m[5].weight.data = m[5].weight.data * 2.0  # plain .data assignment is seen too
    with engine.no_grad():
        want = m(Tensor(X)).data
    np.testing.assert_allclose(cm(Tensor(X)).data, want, rtol=1e-10, atol=1e-12)


def test_compiled_training_output_is_differentiable_and_fills_model_grads():
    me, mc = _model(), _model()
    me.train()
    mc.train()
    cm = graph.compile(mc, Tensor(X), backend="numpy")
    engine.manual_seed(5)
    le = F.cross_entropy(me(Tensor(X)), Tensor(Y))
    le.backward()
    engine.manual_seed(5)
    out = cm(Tensor(X))
    assert out.requires_grad
    lc = F.cross_entropy(out, Tensor(Y))
    lc.backward()
    assert lc.item() == pytest.approx(le.item(), rel=1e-12)
    for (n, a), (_, b) in zip(me.named_parameters(), mc.named_parameters()):
        assert b.grad is not None, n
        np.testing.assert_allclose(b.grad.data, a.grad.data, rtol=1e-10, atol=1e-12, err_msg=n)
    phases = {n.meta.get("phase") for n in cm.graph.nodes}
    assert phases == {"forward", "backward"}
    assert cm.report["training"] and cm.report["parts"]["saved_for_backward"]


def test_trace_warns_where_python_reads_a_traced_value():
    class Gate(nn.Module):
        def forward(self, x):
            return x * 2.0 if float(x.sum()) > 0 else x

    with pytest.warns(graph.TracerWarning, match="test_compile_training.py"):
        graph.trace(Gate(), Tensor(X))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph.trace(_model(), Tensor(X))  # reading parameters or nothing at all: no warning


# --- compile_step ------------------------------------------------------------------------------------------
OPTIMIZERS = {
    "sgd_nesterov_wd": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "sgd_dampening": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.5),
    "adam": lambda ps: optim.Adam(ps, lr=1e-2),
    "adam_amsgrad": lambda ps: optim.Adam(ps, lr=1e-2, amsgrad=True, weight_decay=1e-2),
    "adamw": lambda ps: optim.AdamW(ps, lr=1e-2),
    "rmsprop": lambda ps: optim.RMSprop(ps, lr=1e-2, momentum=0.5, centered=True),
    "adagrad": lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.01),
}


def _eager_steps(make_opt, steps: int, sched=None):
    m = _model()
    m.train()
    opt = make_opt(m.parameters())
    s = sched(opt) if sched else None
    engine.manual_seed(5)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(m(Tensor(X)), Tensor(Y))
        loss.backward()
        opt.step()
        if s:
            s.step()
        losses.append(loss.item())
    return m, opt, losses


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_compile_step_equals_eager_steps(name):
    me, oe, le = _eager_steps(OPTIMIZERS[name], 3)
    mc = _model()
    mc.train()
    oc = OPTIMIZERS[name](mc.parameters())
    step = graph.compile_step(mc, F.cross_entropy, oc, Tensor(X), Tensor(Y), backend="numpy")
    engine.manual_seed(5)
    lc = [step(Tensor(X), Tensor(Y)).item() for _ in range(3)]
    np.testing.assert_allclose(lc, le, rtol=1e-10)
    _state_close(me, mc, 1e-10)
    for pe, pc in zip(me.parameters(), mc.parameters()):  # optimizer state too, so eager steps can follow
        for k, v in oe.state[pe].items():
            np.testing.assert_allclose(np.asarray(oc.state[pc][k], np.float64), np.asarray(v, np.float64),
                                       rtol=1e-10, atol=1e-12, err_msg=k)
    assert step.report["updates"] == len(list(mc.parameters()))
    assert {"passes", "memory", "stats", "kernels"} <= set(step.report)


def test_compile_step_follows_a_scheduler_and_mixes_with_eager_steps():
    sched = lambda opt: optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # noqa: E731
    me, _, le = _eager_steps(OPTIMIZERS["adam"], 4, sched)
    mc = _model()
    mc.train()
    oc = OPTIMIZERS["adam"](mc.parameters())
    s = sched(oc)
    step = graph.compile_step(mc, F.cross_entropy, oc, Tensor(X), Tensor(Y), backend="numpy")
    engine.manual_seed(5)
    lc = []
    for i in range(4):
        if i == 2:  # an eager step in the middle sees the state the compiled steps left
            oc.zero_grad()
            loss = F.cross_entropy(mc(Tensor(X)), Tensor(Y))
            loss.backward()
            oc.step()
            lc.append(loss.item())
        else:
            lc.append(step(Tensor(X), Tensor(Y)).item())
        s.step()
    np.testing.assert_allclose(lc, le, rtol=1e-10)
    _state_close(me, mc, 1e-10)


def test_compile_step_returns_outputs_on_request_and_renders(tmp_path):
    m = _model(0.0)
    m.train()
    step = graph.compile_step(m, F.cross_entropy, optim.SGD(m.parameters(), lr=0.1), Tensor(X), Tensor(Y),
                              backend="numpy", return_outputs=True)
    loss, out = step(Tensor(X), Tensor(Y))
    assert out.shape == (2, 5) and loss.shape == ()
    path = step.render(str(tmp_path / "step.svg"))
    assert path is not None


def test_compile_step_rejects_bad_arguments():
    m = _model()
    with pytest.raises(TypeError, match="compile_step: optimizer"):
        graph.compile_step(m, F.cross_entropy, object(), Tensor(X), Tensor(Y))
    with pytest.raises(TypeError, match="loss targets"):
        graph.compile_step(m, F.cross_entropy, optim.SGD(m.parameters(), lr=0.1), Tensor(X))


# --- memory: the joint plan and rematerialization ------------------------------------------------------------
def _resnetish():
    engine.manual_seed(0)

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
            self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

        def forward(self, x):
            return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))

    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                      *(Block(4) for _ in range(6)), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    return m.double()


XR = np.random.default_rng(2).standard_normal((4, 3, 8, 8))
YR = np.array([0, 1, 2, 3])


def _budget_run(budget):
    m = _resnetish()
    m.train()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    step = graph.compile_step(m, F.cross_entropy, opt, Tensor(XR), Tensor(YR), backend="numpy", memory_budget=budget)
    losses = [step(Tensor(XR), Tensor(YR)).item() for _ in range(2)]
    return m, step, losses


@pytest.mark.parametrize("budget,policy", [(0.9, "cheap"), (0.45, "cheap+convs"), (0.33, "cheap+convs"),
                                           (0.4, "segments")])
def test_memory_budget_recomputes_and_gradients_stay_bit_identical(budget, policy, monkeypatch):
    if policy == "segments":  # the fallback: here cheap+convs would fit too, and with fewer extra FLOPs
        monkeypatch.setattr(remat, "_BOUND_STRIDES", ())
    m0, s0, l0 = _budget_run(None)
    m1, s1, l1 = _budget_run(budget)
    assert s1.report["remat"]["policy"] == policy
    recomputed_kinds = {n.op.kind for n in s1.graph.nodes if n.meta.get("recomputed")}
    assert ("conv" in recomputed_kinds) == (policy != "cheap")
    assert l1 == l0  # bit for bit
    for (k, a), b in zip(m0.state_dict().items(), m1.state_dict().values()):
        np.testing.assert_array_equal(b.data, a.data, err_msg=k)
    r = s1.report["remat"]
    assert r["recomputed"] > 0 and r["extra_flops"] > 0
    assert r["planned_peak_bytes"] <= budget * r["peak_no_recompute_bytes"]
    assert s1.report["memory"]["arena_bytes"] == r["planned_peak_bytes"]
    assert any(n.meta.get("recomputed") for n in s1.graph.nodes)
    # the saved-for-backward report: forward values the backward reads, by the op that made them
    assert sum(s0.report["saved_for_backward"].values()) > sum(s1.report["saved_for_backward"].values())


def test_smallest_feasible_budget_fits_with_deep_private_chains_and_bit_identical_gradients():
    with pytest.raises(graph.BudgetError) as e:
        _budget_run(1)
    m0, _, l0 = _budget_run(None)
    m1, s1, l1 = _budget_run(e.value.smallest + 1)
    assert s1.report["remat"]["policy"].endswith("(deep)")  # the shallow search's floor is higher here
    assert s1.report["memory"]["arena_bytes"] == e.value.smallest
    assert l1 == l0
    for (k, a), b in zip(m0.state_dict().items(), m1.state_dict().values()):
        np.testing.assert_array_equal(b.data, a.data, err_msg=k)


def test_memory_budget_too_small_names_the_smallest_feasible_budget():
    with pytest.raises(graph.BudgetError, match="smallest feasible planned peak is [0-9,]+ bytes"):
        _budget_run(0.01)
    with pytest.raises(ValueError, match="memory_budget must be a positive number"):
        _budget_run(-1)


def test_compile_with_memory_budget_keeps_gradients():
    grads = []
    for budget in (None, 0.5):
        m = _resnetish()
        m.train()
        cm = graph.compile(m, Tensor(XR), backend="numpy", memory_budget=budget)
        F.cross_entropy(cm(Tensor(XR)), Tensor(YR)).backward()
        grads.append([p.grad.data for p in m.parameters()])
        if budget:
            assert cm.report["remat"]["recomputed"] > 0
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)


def test_training_graph_render_marks_backward_update_and_recomputed_nodes(tmp_path):
    from graph.render import to_dot

    _, step, _ = _budget_run(0.45)
    src = to_dot(step.graph).source
    assert "#1f5fbf" in src and "#2e7d32" in src  # backward and update borders
    assert "recomputed" in src and "dashed" in src


def test_compile_step_covers_sample_norms_and_gelu_including_instance_norm_running_stats():
    def mk():
        engine.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.InstanceNorm2d(4, affine=True, track_running_stats=True),
                             nn.GroupNorm(2, 4), nn.GELU(), nn.Flatten(), nn.LayerNorm(64), nn.Linear(64, 3)).double()

    a, b = mk(), mk()
    a.train()
    b.train()
    oa, ob = optim.Adam(a.parameters(), lr=1e-2), optim.Adam(b.parameters(), lr=1e-2)
    y = Tensor(np.array([0, 2]))
    for _ in range(2):
        oa.zero_grad()
        F.cross_entropy(a(Tensor(X)), y).backward()
        oa.step()
    step = graph.compile_step(b, F.cross_entropy, ob, Tensor(X), y, backend="numpy")
    for _ in range(2):
        step(Tensor(X), y)
    assert np.any(b[1].running_mean.data != 0)
    _state_close(a, b, 1e-12)


def test_batch_norm_backward_writes_its_input_gradient_over_a_dying_input():
    _, step, _ = _budget_run(None)
    plan = step.plan
    bn = [n for n in plan.inplace if n.op.name == "batch_norm_train_grad"]
    assert bn  # gx shares storage with gy or x (both of its shape), at no extra buffer
    for n in bn:
        src = plan.inplace[n]
        assert any(src is n.inputs[k] for k in (0, 1))
        assert plan.offsets[n.outputs[0]] == plan.offsets[src]


def _resnetish_step_targets():
    """The numpy training graph of the small ResNet-like model in train mode, the stem conv's saved output and the
    first four saved block inputs (relu outputs)."""
    m = _resnetish()
    m.train()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    g = graph.compile_step(m, F.cross_entropy, opt, Tensor(XR), Tensor(YR), backend="numpy").graph
    saved = remat.saved_values(g)
    stem = next(v for v in saved if v.producer.op.name == "conv2d")
    return g, stem, [v for v in saved if v.producer.op.name == "relu"][:4]


def test_recomputing_a_later_input_clones_an_earlier_target_privately():
    """The stem conv's output is saved for the stem BN backward (the last backward node) and also reached when the
    block inputs are recomputed: each such chain gets its own clone, and the stem BN backward reads one made right
    before it, so no clone stays live across the blocks in between."""
    g, stem, block_inputs = _resnetish_step_targets()
    g2, _, _ = remat.recompute(g, [stem, *block_inputs], anchors=set())
    clones = [n for n in g2.nodes if n.meta.get("recomputed") == stem.producer.name]
    assert len(clones) >= 2
    pos = {id(n): i for i, n in enumerate(g2.nodes)}
    for c in clones:  # each clone is read right where it is made
        assert max(pos[id(u)] for u in c.outputs[0].users) - pos[id(c)] <= 2
    last = max(clones, key=lambda n: pos[id(n)])
    assert [u.op.name for u in last.outputs[0].users] == ["batch_norm_train_grad"]


def test_shared_clones_recompute_each_value_once_and_keep_gradients(monkeypatch):
    """With ``share`` a target reached while recomputing another is cloned once for both readers (the search tries
    it beside private clones and keeps the fitting rewrite with fewer FLOPs): no node runs twice, and training is
    bit for bit the unbudgeted one."""
    g, stem, block_inputs = _resnetish_step_targets()
    for share, once in ((False, False), (True, True)):
        g2, _, _ = remat.recompute(g, [stem, *block_inputs], anchors=set(), share=share)
        made = [n.meta["recomputed"] for n in g2.nodes if n.meta.get("recomputed")]
        assert (len(made) == len(set(made))) == once
    recompute = remat.recompute
    monkeypatch.setattr(remat, "recompute", lambda *a, **k: recompute(*a, **{**k, "share": True}))
    m0, _, l0 = _budget_run(None)
    m1, s1, l1 = _budget_run(0.45)
    made = [n.meta["recomputed"] for n in s1.graph.nodes if n.meta.get("recomputed")]
    assert s1.report["remat"]["policy"] == "cheap+convs" and len(made) == len(set(made))
    assert any(n.op.kind == "conv" for n in s1.graph.nodes if n.meta.get("recomputed"))
    assert l1 == l0
    for (k, a), b in zip(m0.state_dict().items(), m1.state_dict().values()):
        np.testing.assert_array_equal(b.data, a.data, err_msg=k)


@pytest.mark.parametrize("budget", [0.45, 0.33])
def test_budget_plan_keeps_every_value_it_can_keep_at_fewer_flops(budget):
    """The chosen rewrite is a local optimum: keeping any one of the values it recomputes, or sharing its clone
    with the other chains that reach it, either breaks the budget or saves no FLOPs (before the refinement, e.g.
    recomputed block convolutions whose outputs are dead at the planned peak stayed recomputed). The rewrite is
    rebuilt independently from what its backward reads and how often it clones each value."""
    g, _, _ = _resnetish_step_targets()
    r = remat.rematerialize(g, budget, False)
    g.nodes = plan_memory(g, reorder=True, prefix_views=False).schedule  # the order rematerialize starts from
    fwd = {v.name: v for v in g.values() if v.producer is not None and remat._phase(v.producer) == "forward"}
    # forward values the rewritten backward still reads from the forward: kept; every other saved value: recomputed
    kept = {v.name for n in r.graph.nodes if remat._phase(n) == "backward" for v in n.inputs
            if v.producer is not None and remat._phase(v.producer) == "forward" and v.name in fwd}
    targets = [v for v in remat.saved_values(g) if v.name not in kept]
    anchors = {id(fwd[k]) for k in kept}
    limit = int(budget * r.peak_before)
    # a target cloned once is shared (a private one is cloned again in each chain that reaches it)
    clones = Counter(n.meta["recomputed"] for n in r.graph.nodes if n.meta.get("recomputed"))
    share = {id(v) for v in targets if clones[v.producer.name] == 1}
    deep = r.policy.endswith("(deep)")
    assert remat.recompute(g, targets, anchors, deep=deep, share=share)[2] == r.extra_flops  # rebuilt
    for t in targets:
        for keep in (True, False):
            g3, _, e = remat.recompute(g, [v for v in targets if v is not t or not keep],
                                       anchors | ({id(t)} if keep else set()), verify=False, deep=deep,
                                       share=share | ({id(t)} if not keep else set()))
            assert e >= r.extra_flops or remat.planned_peak(g3, False) > limit, (t.name, keep)
