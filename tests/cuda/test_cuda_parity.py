"""The numba backend's kernel parity cases, run again on the cuda backend: each test below is imported from
tests/backend (so the cases exist once) and, collected here, its compare() calls check the cuda kernel against the
numpy reference (tests/cuda/conftest.py). Inputs go to the device with ``backend.from_host``, outputs come from
``backend.empty`` and are read back with ``backend.to_host`` (tests.helpers.run_kernel).

Left out: the numba-only tests (kernels vs their own Python body, numba's fast paths, eager autograd on the
numba backend) and the GEMM/convolution cases (tests/cuda/test_cuda_conv*)."""

from tests.backend.test_numba_activation_grad import (  # noqa: F401
    test_clamp_kernels,
    test_grad_kernels,
    test_strided_operands,
)
from tests.backend.test_numba_conv import test_adaptive_pools, test_batch_norm  # noqa: F401
from tests.backend.test_numba_conv import test_avg_pool as test_avg_pool_padding_cases  # noqa: F401
from tests.backend.test_numba_conv import test_max_pool as test_max_pool_dilation_cases  # noqa: F401
from tests.backend.test_numba_new_layers import test_gelu_kernels, test_row_norm_kernels  # noqa: F401
from tests.backend.test_numba_parity import (  # noqa: F401
    test_argmax,
    test_binary_broadcasting,
    test_binary_float64_and_special_values,
    test_channel_sum_fast_path_matches_reference,
    test_index_and_index_add,
    test_integer_reductions,
    test_max_and_argmax_with_nan,
    test_reductions,
    test_shape_ops,
    test_softmax,
    test_unary,
    test_unary_strided_input,
    test_unary_with_attrs,
    test_where_astype_dropout,
)
from tests.backend.test_numba_pool_fast import (  # noqa: F401
    test_avg_pool,
    test_avg_pool_nan_and_inf_stay_in_their_windows,
    test_max_pool_constant_input,
    test_max_pool_float64_and_many_planes,
    test_max_pool_minus_inf,
    test_max_pool_nan,
    test_max_pool_non_contiguous,
    test_max_pool_ties,
    test_max_pool_windows_of_only_padding,
)
