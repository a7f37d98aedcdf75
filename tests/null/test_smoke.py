"""The engine core end to end: a tiny net's gradients against finite differences."""


import engine.functional as F
from tests.helpers import check_grads


def test_mlp_gradients_match_finite_differences(rng):
    x, w1, w2 = rng.standard_normal((4, 3)), rng.standard_normal((5, 3)), rng.standard_normal((2, 5))
    check_grads(lambda x, w1, w2: F.log_softmax(F.linear(F.tanh(F.linear(x, w1)), w2), 1), [x, w1, w2])


def test_backend_is_numpy_in_tests():
    import engine

    assert engine.active_backend().name == "numpy"
