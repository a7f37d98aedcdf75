"""Every nn layer vs the torch module with the same (copied) weights: forward, input and parameter gradients,
and the buffers a forward updates (BatchNorm running statistics)."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine import Tensor, nn
from tests.helpers import compare_torch, import_torch, max_rel_err

torch = import_torch()  # without PyTorch only the comparisons with it skip


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _copy_weights(ours: nn.Module, theirs) -> None:
    sd = {k: torch.tensor(v.data.copy()) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(sd)


def check_module(ours: nn.Module, theirs, *arrays: np.ndarray, train: bool = True, fwd_tol: float = 1e-4,
                 grad_tol: float = 1e-3) -> None:
    _copy_weights(ours, theirs)
    ours.train(train)
    theirs.train(train)
    # the cotangent's seed differs from every input's: a cotangent proportional to the input would make the
    # BatchNorm input gradient vanish (and a relative error meaningless)
    compare_torch(lambda *a: ours(*a), lambda *a: theirs(*a), arrays, fwd_tol=fwd_tol, grad_tol=grad_tol,
                  seed=12345)
    t_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        tg = t_params[name].grad
        assert (p.grad is None) == (tg is None), f"{name}: gradient presence differs"
        if p.grad is not None:
            err = max_rel_err(p.grad.data, tg.numpy())
            assert err <= grad_tol, f"gradient of {name}: max relative error {err:.3g}"
    t_buffers = dict(theirs.named_buffers())
    for name, b in ours.named_buffers():
        err = max_rel_err(b.data, t_buffers[name].numpy())
        assert err <= fwd_tol, f"buffer {name} after forward: max relative error {err:.3g}"


LAYERS = [
    ("Conv2d(3, 8, 3, stride=2, padding=1)", (2, 3, 9, 9)),
    ("Conv2d(4, 6, (3, 2), dilation=(2, 1), bias=False)", (2, 4, 8, 7)),
    ("Conv2d(4, 8, 3, groups=2, padding='same')", (1, 4, 6, 6)),
    ("Conv1d(3, 5, 3, stride=2, padding=1)", (2, 3, 11)),
    ("Linear(6, 4)", (5, 6)),
    ("Linear(6, 4, bias=False)", (2, 3, 6)),
    ("MaxPool2d(3, 2, 1)", (2, 3, 9, 9)),
    ("MaxPool2d(2, ceil_mode=True)", (1, 2, 7, 7)),
    ("MaxPool1d(3, 2)", (2, 3, 10)),
    ("AvgPool2d(3, 2, 1, count_include_pad=False)", (2, 3, 8, 8)),
    ("AvgPool2d(2)", (1, 2, 6, 6)),
    ("AvgPool1d(4, 2, 1)", (2, 3, 10)),
    ("LPPool2d(2, 2)", (1, 3, 6, 6)),
    ("AdaptiveAvgPool2d((2, 3))", (2, 3, 7, 8)),
    ("AdaptiveMaxPool2d(3)", (2, 3, 7, 8)),
    ("LocalResponseNorm(3, alpha=0.1)", (2, 6, 4, 4)),
    ("ReLU()", (3, 7)),
    ("LeakyReLU(0.2)", (3, 7)),
    ("ELU(0.7)", (3, 7)),
    ("Sigmoid()", (3, 7)),
    ("Tanh()", (3, 7)),
    ("SiLU()", (3, 7)),
    ("Softmax(dim=1)", (3, 7)),
    ("LogSoftmax(dim=-1)", (3, 7)),
    ("Flatten()", (2, 3, 4, 5)),
    ("Identity()", (2, 3)),
    ("Dropout(0.5)", (4, 4)),  # in eval mode (checked below): the identity
]


def _build(expr: str, ns):
    return eval(expr, {name: getattr(ns, name) for name in dir(ns) if not name.startswith("_")})


@pytest.mark.parametrize("expr,shape", LAYERS, ids=[e for e, _ in LAYERS])
def test_layer_matches_torch(expr: str, shape: tuple[int, ...]):
    engine.manual_seed(0)
    check_module(_build(expr, nn), _build(expr, torch.nn), _x(*shape), train=not expr.startswith("Dropout"))


BATCHNORMS = [
    ("BatchNorm2d(4)", (3, 4, 5, 5)),
    ("BatchNorm2d(4, eps=1e-3, momentum=0.3)", (3, 4, 5, 5)),
    ("BatchNorm2d(4, momentum=None)", (3, 4, 5, 5)),
    ("BatchNorm2d(4, affine=False)", (3, 4, 5, 5)),
    ("BatchNorm2d(4, track_running_stats=False)", (3, 4, 5, 5)),
    ("BatchNorm1d(6)", (8, 6)),
    ("BatchNorm1d(6)", (4, 6, 5)),
]


@pytest.mark.parametrize("expr,shape", BATCHNORMS, ids=[f"{e}-{len(s)}d" for e, s in BATCHNORMS])
def test_batchnorm_train_then_eval_matches_torch(expr: str, shape: tuple[int, ...]):
    ours, theirs = _build(expr, nn), _build(expr, torch.nn)
    if ours.affine:  # non-trivial affine parameters
        ours.weight.data[...] = _x(shape[1], seed=5) * 0.5 + 1
        ours.bias.data[...] = _x(shape[1], seed=6)
    for step in range(3):  # three training steps move the running statistics (momentum=None: a running average)
        check_module(ours, theirs, _x(*shape, seed=step) * 2 + 1, train=True)
        theirs.zero_grad()
        ours.zero_grad()
    if ours.track_running_stats:
        assert int(ours.num_batches_tracked.data) == int(theirs.num_batches_tracked) == 3
    check_module(ours, theirs, _x(*shape, seed=9), train=False)


LOSSES = [
    ("CrossEntropyLoss()", False),
    ("CrossEntropyLoss(reduction='sum')", False),
    ("CrossEntropyLoss(reduction='none', ignore_index=1)", False),
    ("CrossEntropyLoss(label_smoothing=0.1)", False),
    ("CrossEntropyLoss(weight=W)", False),
    ("NLLLoss()", True),
    ("NLLLoss(weight=W, reduction='sum')", True),
]


@pytest.mark.parametrize("expr,log_probs", LOSSES, ids=[e for e, _ in LOSSES])
def test_classification_losses_match_torch(expr: str, log_probs: bool):
    logits = _x(6, 4)
    if log_probs:
        logits = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    target = np.array([0, 3, 1, 2, 1, 3])
    w = np.array([0.5, 1.0, 2.0, 1.5], np.float32)
    ours = eval(expr, {**{n: getattr(nn, n) for n in ("CrossEntropyLoss", "NLLLoss")}, "W": Tensor(w)})
    theirs = eval(expr, {**{n: getattr(torch.nn, n) for n in ("CrossEntropyLoss", "NLLLoss")}, "W": torch.tensor(w)})
    compare_torch(lambda x, t: ours(x, t), lambda x, t: theirs(x, t), [logits, target])
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_matches_torch(reduction: str):
    ours, theirs = nn.MSELoss(reduction=reduction), torch.nn.MSELoss(reduction=reduction)
    compare_torch(lambda a, b: ours(a, b), lambda a, b: theirs(a, b), [_x(3, 4), _x(3, 4, seed=1)])
    assert repr(ours) == repr(theirs)


def test_pooling_extras():
    x = _x(2, 3, 9, 7)
    spp = nn.SpatialPyramidPool((1, 2, 4))
    ref = torch.cat([torch.flatten(torch.nn.functional.adaptive_max_pool2d(torch.tensor(x), n), 1) for n in (1, 2, 4)],
                    1)
    assert spp(Tensor(x)).shape == (2, 3 * 21)
    assert max_rel_err(spp(Tensor(x)).data, ref.numpy()) <= 1e-6
    avg = nn.SpatialPyramidPool((1, 3), mode="avg")(Tensor(x))
    assert avg.shape == (2, 3 * 10)
    g = nn.GlobalAvgPool2d()(Tensor(x))
    assert g.shape == (2, 3, 1, 1) and max_rel_err(g.data, x.mean((2, 3), keepdims=True)) <= 1e-6
    with pytest.raises(ValueError, match="mode must be 'max' or 'avg'"):
        nn.SpatialPyramidPool(mode="min")


def test_strict_flag_is_passed_through():
    x = Tensor(_x(1, 2, 8, 8))
    nn.Conv2d(2, 2, 3, stride=2)(x)  # floor convention: drops the last row/column silently
    with pytest.raises(Exception, match="conv2d"):
        nn.Conv2d(2, 2, 3, stride=2, strict=True)(x)
    assert nn.Conv2d(2, 2, 3, stride=2, padding=1, strict=True)(Tensor(_x(1, 2, 9, 9))).shape == (1, 2, 5, 5)
    with pytest.raises(Exception, match="max_pool2d"):
        nn.MaxPool2d(3, 2, strict=True)(x)
    assert repr(nn.Conv2d(2, 2, 3, strict=True)).endswith("strict=True)")


def test_dropout_train_and_eval():
    engine.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = Tensor(np.ones((200, 50), np.float32))
    y = drop(x).data
    assert abs((y == 0).mean() - 0.25) < 0.02
    np.testing.assert_allclose(y[y != 0], 1 / 0.75, rtol=1e-6)
    drop.eval()
    assert drop(x) is x


def test_softmax_without_dim_uses_torchs_legacy_rule():
    x = _x(2, 3, 4)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        ours = nn.Softmax()(Tensor(x))
    with pytest.warns(UserWarning):
        theirs = torch.nn.Softmax()(torch.tensor(x))
    assert max_rel_err(ours.data, theirs.numpy()) <= 1e-6


def test_small_cnn_end_to_end_matches_torch():
    def build(lib):
        # no conv bias before BN: its true gradient is 0, so a relative error would compare rounding noise
        return lib.Sequential(lib.Conv2d(1, 4, 3, padding=1, bias=False), lib.BatchNorm2d(4), lib.ReLU(),
                              lib.MaxPool2d(2), lib.Conv2d(4, 8, 3), lib.ReLU(), lib.AdaptiveAvgPool2d(1),
                              lib.Flatten(), lib.Linear(8, 3))

    engine.manual_seed(0)
    check_module(build(nn), build(torch.nn), _x(4, 1, 10, 10))
