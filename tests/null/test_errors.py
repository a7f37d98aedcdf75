"""Error messages users see: broadcasting and dtype mismatches, backward misuse, anomaly mode, bad vjp rules,
missing kernels; and that gradcheck catches a deliberately wrong vjp."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import engine
import engine.functional as F
from engine import Tensor
from engine.autograd import AnomalyError
from engine.gradcheck import GradcheckError
from engine.primitive import ELEMENTWISE, PRIMITIVES, primitive


def _f32(*shape):
    return Tensor(np.ones(shape, np.float32), requires_grad=True)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "greater", "equal"])
def test_broadcast_mismatch_names_op_and_shapes(op):
    with pytest.raises(engine.ShapeError) as info:
        getattr(F, op)(_f32(2, 3), _f32(4))
    msg = str(info.value)
    assert msg.startswith(f"{op}: operand shapes must be broadcast-compatible")
    assert "[2, 3] vs [4]" in msg


def test_broadcast_mismatch_through_operators_and_where():
    with pytest.raises(engine.ShapeError, match=r"add: .* \(got shapes=\[2, 3\] vs \[3, 2\]\)"):
        _f32(2, 3) + _f32(3, 2)
    with pytest.raises(engine.ShapeError, match=r"where: .* \(got shapes=\[2\] vs \[3\] vs \[1\]\)"):
        F.where(Tensor(np.ones(2, bool)), _f32(3), _f32(1))


@pytest.mark.parametrize("op", ["add", "mul", "maximum", "greater"])
def test_mixed_dtypes_promote_where_primitives_would_refuse(op):
    # the functions promote as PyTorch does (tests/null/test_tensor_api.py); the primitives still refuse
    a = Tensor(np.ones(3, np.float32))
    b = Tensor(np.ones(3, np.float64))
    assert getattr(F, op)(a, b).dtype == (np.bool_ if op == "greater" else np.float64)
    with pytest.raises(engine.ShapeError, match=rf"{op}: all operands must have the same dtype; convert with "
                                                r"\.astype\(\) \(got dtypes=float32 vs float64\)"):
        engine.bind(engine.get_primitive(op), a, b)


def test_backward_on_non_scalar_without_grad():
    y = _f32(2, 3) * 2.0
    with pytest.raises(RuntimeError, match=r"backward: grad can be implicitly created only for scalar outputs, but "
                                           r"the output has shape \[2, 3\]; pass grad="):
        y.backward()


def test_backward_errors():
    with pytest.raises(RuntimeError, match="backward: tensor does not require grad"):
        Tensor(np.ones(1, np.float32)).backward()
    y = _f32(2) * 2.0
    with pytest.raises(RuntimeError, match=r"backward: grad shape \[3\] does not match output shape \[2\]"):
        y.backward(np.ones(3, np.float32))


# --- anomaly mode -------------------------------------------------------------------------------------------
def test_anomaly_mode_names_the_first_primitive_producing_nan():
    x = Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    with engine.detect_anomaly(), np.errstate(invalid="ignore"):
        h = F.exp(x) - 10.0  # finite, negative
        with pytest.raises(AnomalyError, match=r"^log \(forward\) produced 2 non-finite value\(s\) in output 0 "
                                               r"of shape \[2\]"):
            F.log(h)


def test_anomaly_mode_names_the_primitive_whose_gradient_blew_up():
    x = Tensor(np.array([0.0, 1.0], np.float32), requires_grad=True)
    y = F.sqrt(x).sum()  # forward is finite; d sqrt / dx at 0 is inf
    with engine.detect_anomaly(), np.errstate(divide="ignore"):
        with pytest.raises(AnomalyError, match=r"backward of 'sqrt': div \(forward\) produced 1 non-finite"):
            y.backward()


def test_anomaly_mode_is_off_by_default_and_restored():
    with np.errstate(invalid="ignore"):
        assert np.isnan(F.log(Tensor(np.array([-1.0], np.float32))).item())
        with contextlib.suppress(AnomalyError), engine.detect_anomaly():
            F.log(Tensor(np.array([-1.0], np.float32)))
        assert np.isnan(F.log(Tensor(np.array([-1.0], np.float32))).item())


# --- throwaway primitives: wrong vjp rules, missing kernels -------------------------------------------------
@contextlib.contextmanager
def _throwaway(name, vjp, kernel=None):
    """Register a temporary elementwise primitive (and numpy kernel) and remove both afterwards."""
    p = primitive(name, ELEMENTWISE)
    p.def_shape(lambda x: x)
    p.def_vjp(vjp)
    numpy_backend = engine.get_backend("numpy")
    if kernel is not None:
        numpy_backend.register(name)(kernel)
    try:
        yield p
    finally:
        PRIMITIVES.pop(name, None)
        numpy_backend.kernels.pop(name, None)


def _double(x, out):
    out[...] = 2 * x


def test_gradcheck_detects_a_wrong_vjp():
    with _throwaway("test_double_wrong_vjp", lambda g, y, x: (g * 3.0,), _double) as p:
        x = Tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
        with pytest.raises(GradcheckError, match=r"input 0 \(shape \[3\]\): 3 of 3 elements differ; worst at flat "
                                                 r"index \d: analytic \S+ vs numeric \S+"):
            engine.gradcheck(lambda t: engine.bind(p, t), [x])
        assert not engine.gradcheck(lambda t: engine.bind(p, t), [x], raise_exception=False)
    assert "test_double_wrong_vjp" not in PRIMITIVES


def test_gradcheck_accepts_the_right_vjp_and_wants_float64():
    with _throwaway("test_double_right_vjp", lambda g, y, x: (g * 2.0,), _double) as p:
        assert engine.gradcheck(lambda t: engine.bind(p, t), [Tensor(np.ones((2, 2)), requires_grad=True)])
        with pytest.raises(TypeError, match="gradcheck: input 0 is float32; finite differences need float64"):
            engine.gradcheck(lambda t: engine.bind(p, t), [_f32(2)])


def test_gradcheck_handles_non_contiguous_inputs():
    x = Tensor(np.arange(6.0).reshape(2, 3).T, requires_grad=True)  # a transposed view
    assert not x.data.flags.c_contiguous
    assert engine.gradcheck(lambda t: (t * t).sum(1), [x])


def test_vjp_returning_the_wrong_number_of_gradients():
    with _throwaway("test_bad_arity_vjp", lambda g, y, x: (g, g), _double) as p:
        y = engine.bind(p, _f32(2)).sum()
        with pytest.raises(RuntimeError, match="vjp rule of 'test_bad_arity_vjp' returned 2 gradients for 1 inputs"):
            y.backward()


def test_vjp_returning_the_wrong_shape():
    with _throwaway("test_bad_shape_vjp", lambda g, y, x: (F.sum(g),), _double) as p:
        x = _f32(2)
        y = engine.bind(p, x).sum()
        with pytest.raises(RuntimeError, match=r"backward of 'test_bad_shape_vjp': gradient shape \[\] does not "
                                               r"match tensor shape \[2\]"):
            y.backward()
        y = engine.bind(p, x * 1.0).sum()  # an intermediate input is checked too
        with pytest.raises(RuntimeError, match=r"backward of 'test_bad_shape_vjp': gradient shape \[\] does not "
                                               r"match input shape \[2\]"):
            y.backward()


def test_missing_kernel_fails_by_name():
    with _throwaway("test_no_kernel", lambda g, y, x: (g,)) as p:
        with pytest.raises(NotImplementedError, match="backend 'numpy' has no kernel for primitive 'test_no_kernel'"):
            engine.bind(p, _f32(2))


def test_primitive_names_are_unique_and_lookup_errors_list_known_names():
    with pytest.raises(ValueError, match="primitive 'add' is already defined"):
        primitive("add", ELEMENTWISE)
    with pytest.raises(KeyError, match="unknown primitive 'nope'; known: .*'add'"):
        engine.get_primitive("nope")


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown or unavailable backend 'nope'"):
        engine.get_backend("nope")


def test_tensor_data_setter_checks_shape_and_dtype():
    t = Tensor(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"Tensor.data: new value float64\[3\] must match float32\[3\]"):
        t.data = np.zeros(3)
