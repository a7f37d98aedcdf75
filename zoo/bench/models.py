"""Model-level benchmark workloads and runners, shared by ``convgraph bench`` (zoo/cli/bench.py) and
bench/test_models_bench.py.

Workloads (issue 5, section 2): ResNet-18 224x224 inference at batch 1 and 8, LeNet-5 training step at batch 64
(forward + cross_entropy + backward + SGD step) and ResNet-18 CIFAR (32x32) training step at batch 32.

Implementations:

* ``numpy``          engine eager on the numpy reference backend
* ``numba``          engine eager on the numba backend
* ``numba-compiled`` ``graph.compile(model, x, backend="numba")`` for inference (eval mode);
                     ``graph.compile_step(model, F.cross_entropy, opt, x, y, backend="numba")`` for training steps
* ``cuda``, ``cuda-compiled``  the same two on the cuda backend, model and batch on the GPU (every timed call
                     ends with ``synchronize()``: kernel launches are asynchronous)
* ``onnxruntime``    inference only: the zoo model exported with ``graph.onnx.export`` and run by an onnxruntime
                     InferenceSession (CPU execution provider, intra-op threads = numba's); the export and the
                     session creation count into the first call
* ``torch``          PyTorch CPU eager, same thread count as numba (``torch.no_grad()`` + ``eval()`` for inference),
                     timed in a child process with PyTorch's own OpenMP settings (:func:`torch_row_isolated`)
* ``torch-compile``  inference only: the ``torch`` row's model under ``torch.compile`` (inductor) with
                     ``torch._inductor.config.freezing`` on, same threads, in a child process like ``torch``; the
                     compile is the first call (``first_call_ms``) and is also reported as ``compile_ms``. Where
                     inductor cannot compile (no C++ compiler, ...) the row is skipped with a one-line reason

Timing: the first call (JIT compile, graph compile, first-touch) is timed on its own and reported as
``first_call_ms``; then ``warmup`` untimed calls, then the median of ``repeats`` timed calls.
Peak memory: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after the row, i.e. the process high-water mark so far
(monotonic over the engine rows; rows run in workload order, smallest workloads first); a PyTorch row reports its
own child process's.
"""

from __future__ import annotations

import gc
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .workloads import without_missing_torch

IMPLS = ("numpy", "numba", "numba-compiled", "cuda", "cuda-compiled", "onnxruntime", "torch", "torch-compile")
INFER_ONLY = ("onnxruntime", "torch-compile")  # peers that run inference workloads only
PEER_IMPLS = ("onnxruntime", "torch", "torch-compile")  # not the engine: no engine profile, no op-table row
RSS_METHOD = "resource.getrusage(RUSAGE_SELF).ru_maxrss: process high-water mark after the row"


@dataclass(frozen=True)
class ModelWorkload:
    name: str
    model: str  # zoo name
    kind: str  # "infer" or "train"
    batch: int
    input: tuple[int, int, int]  # C, H, W
    num_classes: int

    def scaled(self, batch: int, input: tuple[int, int, int] | None = None) -> ModelWorkload:
        """The same workload at another batch / input size (tiny variants for tests)."""
        return ModelWorkload(self.name, self.model, self.kind, batch, input or self.input, self.num_classes)


MODEL_WORKLOADS = [
    ModelWorkload("lenet5 train step b64", "lenet5", "train", 64, (1, 28, 28), 10),
    ModelWorkload("resnet18 224 infer b1", "resnet18", "infer", 1, (3, 224, 224), 1000),
    ModelWorkload("resnet18_cifar train step b32", "resnet18_cifar", "train", 32, (3, 32, 32), 10),
    ModelWorkload("resnet18 224 infer b8", "resnet18", "infer", 8, (3, 224, 224), 1000),
]


# Opt-in workloads: only run when ``--workloads`` names them (ResNet-50 is the issue-15 onnxruntime comparison;
# with ResNet-18 batch 8 these are issue 16's four peer rows).
EXTRA_WORKLOADS = [
    ModelWorkload("resnet50 224 infer b1", "resnet50", "infer", 1, (3, 224, 224), 1000),
    ModelWorkload("mobilenet_v2 224 infer b1", "mobilenet_v2", "infer", 1, (3, 224, 224), 1000),
    ModelWorkload("densenet121 224 infer b1", "densenet121", "infer", 1, (3, 224, 224), 1000),
]


# Inputs of the tiny variants (smoke runs): the smallest each model accepts without changing its layers.
TINY_INPUT = {"resnet18": (3, 32, 32), "resnet18_cifar": (3, 8, 8), "lenet5": (1, 28, 28), "resnet50": (3, 32, 32),
              "mobilenet_v2": (3, 32, 32), "densenet121": (3, 32, 32)}


def tiny(wl: ModelWorkload) -> ModelWorkload:
    """``wl`` at batch 2 on a small input: runs every layer in well under a second (smoke runs, tests)."""
    return wl.scaled(batch=2, input=TINY_INPUT[wl.model])


def peak_rss_mib(own: bool = False) -> float:
    """The process's peak resident set, MiB. ``own``: this process's own high-water mark (Linux VmHWM), which a
    child started by fork + exec does not inherit from its parent the way ``ru_maxrss`` does."""
    if own:
        try:
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2**10
        except (OSError, StopIteration):
            pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 2**10  # bytes on macOS, KiB on Linux


def _data(wl: ModelWorkload, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((wl.batch, *wl.input), dtype=np.float32)
    y = rng.integers(0, wl.num_classes, wl.batch).astype(np.int64)
    return x, y


# ---- engine (numpy / numba eager, numba compiled) ----------------------------------------------------------------
def engine_model_runner(impl: str, wl: ModelWorkload) -> Callable[[], None]:
    """A zero-argument callable doing one step of ``wl`` on the engine. The first call may JIT / compile."""
    import engine
    import engine.functional as F
    import zoo

    engine.manual_seed(0)
    backend = impl.removesuffix("-compiled")
    compiled_impl = impl.endswith("-compiled")
    b = engine.get_backend(backend)
    with engine.use_backend(backend):
        model = zoo.get(wl.model, num_classes=wl.num_classes).to(b.device)
    xa, ya = _data(wl)
    x, y = engine.tensor(xa).to(b.device), engine.tensor(ya).to(b.device)

    if wl.kind == "train":
        model.train()
        opt = engine.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        if compiled_impl:  # the whole step as one graph: graph.compile_step
            import graph

            compiled: dict = {}

            def compiled_step() -> None:
                if "step" not in compiled:  # graph compile counts into the first call
                    compiled["step"] = graph.compile_step(model, F.cross_entropy, opt, x, y, backend=backend)
                compiled["step"](x, y)
                b.synchronize()

            compiled_step.model = model
            return compiled_step

        def step() -> None:
            with engine.use_backend(backend):
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
            b.synchronize()

        step.model = model  # for profile_workload's layer names
        return step

    model.eval()
    if compiled_impl:
        import graph

        state: dict = {}

        def run_compiled() -> None:
            if "cm" not in state:  # graph compile counts into the first call
                state["cm"] = graph.compile(model, x, backend=backend)
            state["cm"](x)
            b.synchronize()

        run_compiled.model = model
        return run_compiled

    def infer() -> None:
        with engine.use_backend(backend), engine.no_grad():
            model(x)
        b.synchronize()

    infer.model = model
    return infer


# ---- PyTorch reference models (torchvision-equivalent definitions; torchvision is not a dependency) -------------
def _torch_models():
    import torch
    import torch.nn as tnn
    import torch.nn.functional as tF

    class LeNet5(tnn.Module):
        def __init__(self, num_classes: int = 10):
            super().__init__()
            self.conv1, self.conv2 = tnn.Conv2d(1, 20, 5), tnn.Conv2d(20, 50, 5)
            self.fc1, self.dropout, self.fc2 = tnn.Linear(800, 500), tnn.Dropout(0.5), tnn.Linear(500, num_classes)

        def forward(self, x):
            x = tF.max_pool2d(tF.relu(self.conv1(x)), 2)
            x = tF.max_pool2d(tF.relu(self.conv2(x)), 2)
            return self.fc2(self.dropout(tF.relu(self.fc1(x.flatten(1)))))

    class BasicBlock(tnn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            out = tF.relu(self.bn1(self.conv1(x)))
            return tF.relu(self.bn2(self.conv2(out)) + idt)

    class ResNet18(tnn.Module):
        def __init__(self, num_classes: int, cifar: bool):
            super().__init__()
            if cifar:  # 3x3/1 stem, no max pool (zoo.resnet18_cifar)
                self.stem = tnn.Sequential(tnn.Conv2d(3, 64, 3, 1, 1, bias=False), tnn.BatchNorm2d(64), tnn.ReLU())
            else:
                self.stem = tnn.Sequential(tnn.Conv2d(3, 64, 7, 2, 3, bias=False), tnn.BatchNorm2d(64), tnn.ReLU(),
                                           tnn.MaxPool2d(3, 2, 1))
            layers, cin = [], 64
            for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
                cin = cout
            self.layers = tnn.Sequential(*layers)
            self.fc = tnn.Linear(512, num_classes)

        def forward(self, x):
            x = self.layers(self.stem(x))
            return self.fc(tF.adaptive_avg_pool2d(x, 1).flatten(1))

    class Bottleneck(tnn.Module):
        def __init__(self, cin: int, width: int, stride: int):
            super().__init__()
            cout = width * 4
            self.conv1, self.bn1 = tnn.Conv2d(cin, width, 1, bias=False), tnn.BatchNorm2d(width)
            self.conv2, self.bn2 = tnn.Conv2d(width, width, 3, stride, 1, bias=False), tnn.BatchNorm2d(width)
            self.conv3, self.bn3 = tnn.Conv2d(width, cout, 1, bias=False), tnn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            out = tF.relu(self.bn1(self.conv1(x)))
            out = tF.relu(self.bn2(self.conv2(out)))
            return tF.relu(self.bn3(self.conv3(out)) + idt)

    class ResNet50(tnn.Module):
        def __init__(self, num_classes: int):
            super().__init__()
            self.stem = tnn.Sequential(tnn.Conv2d(3, 64, 7, 2, 3, bias=False), tnn.BatchNorm2d(64), tnn.ReLU(),
                                       tnn.MaxPool2d(3, 2, 1))
            layers, cin = [], 64
            for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
                for i in range(blocks):
                    layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
                    cin = width * 4
            self.layers = tnn.Sequential(*layers)
            self.fc = tnn.Linear(2048, num_classes)

        def forward(self, x):
            return self.fc(tF.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1))

    class DenseLayer(tnn.Module):
        def __init__(self, cin: int, growth: int = 32, bn_size: int = 4):
            super().__init__()
            self.norm1, self.conv1 = tnn.BatchNorm2d(cin), tnn.Conv2d(cin, bn_size * growth, 1, bias=False)
            self.norm2 = tnn.BatchNorm2d(bn_size * growth)
            self.conv2 = tnn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

        def forward(self, feats):
            x = torch.cat(feats, 1)
            return self.conv2(tF.relu(self.norm2(self.conv1(tF.relu(self.norm1(x))))))

    class DenseNet121(tnn.Module):
        def __init__(self, num_classes: int):
            super().__init__()
            self.stem = tnn.Sequential(tnn.Conv2d(3, 64, 7, 2, 3, bias=False), tnn.BatchNorm2d(64), tnn.ReLU(),
                                       tnn.MaxPool2d(3, 2, 1))
            self.blocks, self.transitions, c = tnn.ModuleList(), tnn.ModuleList(), 64
            for i, n in enumerate((6, 12, 24, 16)):
                self.blocks.append(tnn.ModuleList(DenseLayer(c + j * 32) for j in range(n)))
                c += n * 32
                if i < 3:
                    self.transitions.append(tnn.Sequential(tnn.BatchNorm2d(c), tnn.ReLU(),
                                                           tnn.Conv2d(c, c // 2, 1, bias=False), tnn.AvgPool2d(2, 2)))
                    c //= 2
            self.norm, self.fc = tnn.BatchNorm2d(c), tnn.Linear(c, num_classes)

        def forward(self, x):
            x = self.stem(x)
            for i, block in enumerate(self.blocks):
                feats = [x]
                for layer in block:
                    feats.append(layer(feats))
                x = torch.cat(feats, 1)
                if i < len(self.transitions):
                    x = self.transitions[i](x)
            return self.fc(tF.adaptive_avg_pool2d(tF.relu(self.norm(x)), 1).flatten(1))

    def conv_bn_relu6(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> tnn.Sequential:
        return tnn.Sequential(tnn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                              tnn.BatchNorm2d(cout), tnn.ReLU6())

    class InvertedResidual(tnn.Module):
        def __init__(self, cin: int, cout: int, stride: int, t: int):
            super().__init__()
            hidden = cin * t
            layers = [conv_bn_relu6(cin, hidden, 1)] if t != 1 else []
            layers += [conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                       tnn.Conv2d(hidden, cout, 1, bias=False), tnn.BatchNorm2d(cout)]
            self.conv, self.residual = tnn.Sequential(*layers), stride == 1 and cin == cout

        def forward(self, x):
            return x + self.conv(x) if self.residual else self.conv(x)

    class MobileNetV2(tnn.Module):  # width 1.0: zoo.mobilenet_v2 (torchvision) channel counts
        def __init__(self, num_classes: int):
            super().__init__()
            features, cin = [conv_bn_relu6(3, 32, 3, 2)], 32
            for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                               (6, 160, 3, 2), (6, 320, 1, 1)):
                for i in range(n):
                    features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            features.append(conv_bn_relu6(cin, 1280, 1))
            self.features = tnn.Sequential(*features)
            self.classifier = tnn.Sequential(tnn.Dropout(0.2), tnn.Linear(1280, num_classes))

        def forward(self, x):
            return self.classifier(tF.adaptive_avg_pool2d(self.features(x), 1).flatten(1))

    return {"lenet5": lambda n: LeNet5(n), "resnet18": lambda n: ResNet18(n, cifar=False),
            "resnet18_cifar": lambda n: ResNet18(n, cifar=True), "resnet50": lambda n: ResNet50(n),
            "densenet121": lambda n: DenseNet121(n), "mobilenet_v2": lambda n: MobileNetV2(n)}


def _torch_model_and_data(wl: ModelWorkload):
    """The seeded PyTorch model of ``wl`` and its input / target tensors, with PyTorch on numba's thread count."""
    import numba
    import torch

    torch.set_num_threads(numba.config.NUMBA_NUM_THREADS)  # same thread budget as the numba kernels
    torch.manual_seed(0)
    model = _torch_models()[wl.model](wl.num_classes)
    xa, ya = _data(wl)
    return model, torch.from_numpy(xa), torch.from_numpy(ya)


def torch_model_runner(wl: ModelWorkload) -> Callable[[], None]:
    import torch

    model, x, y = _torch_model_and_data(wl)
    if wl.kind == "train":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step() -> None:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        return step

    model.eval()

    def infer() -> None:
        with torch.no_grad():
            model(x)

    return infer


class TorchCompileUnavailable(RuntimeError):
    """torch.compile could not compile the model on this machine (its row is skipped, not failed)."""


def torch_compile_model_runner(wl: ModelWorkload, backend: str | Callable = "inductor") -> Callable[[], None]:
    """One inference step of the ``torch`` row's model under ``torch.compile(model, backend=backend)`` with
    ``torch._inductor.config.freezing`` on (weights folded into the compiled graph as constants), restored after
    the compile. The first call compiles and records its time as ``compile_ms`` on the returned callable; a
    compile that fails raises :class:`TorchCompileUnavailable` with a one-line reason. ``backend`` is
    ``"inductor"`` for the row; tests pass a recording backend (dynamo only, no C++ compile: an inductor compile
    takes tens of seconds even for a tiny model) to run this code cheaply."""
    if wl.kind != "infer":
        raise ValueError(f"bench: torch-compile runs inference workloads only (got {wl.name!r})")
    import torch
    import torch._inductor.config as inductor_config

    model, x, _ = _torch_model_and_data(wl)
    model.eval()
    state: dict = {}

    def infer() -> None:
        if "compiled" not in state:
            frozen = inductor_config.freezing
            inductor_config.freezing = True
            t0 = time.perf_counter()
            try:
                with torch.no_grad():
                    compiled = torch.compile(model, backend=backend)
                    compiled(x)  # dynamo traces and inductor compiles on the first call
            except Exception as e:  # inductor's failures (no C++ compiler, ...) are many types: all skip the row
                while (getattr(e, "inner_exception", None) or e.__cause__) is not None:  # dynamo wraps the cause
                    e = getattr(e, "inner_exception", None) or e.__cause__
                reason = (str(e).strip().splitlines() or [""])[0][:200]
                name = backend if isinstance(backend, str) else getattr(backend, "__name__", "backend")
                raise TorchCompileUnavailable(f"torch-compile: {name} could not compile {wl.name} here "
                                              f"({type(e).__name__}: {reason}); row skipped") from None
            finally:
                inductor_config.freezing = frozen
            state["compiled"] = compiled
            infer.compile_ms = (time.perf_counter() - t0) * 1e3
            return
        with torch.no_grad():
            state["compiled"](x)

    infer.compile_ms, infer.model = None, model
    return infer


def onnxruntime_model_runner(wl: ModelWorkload) -> Callable[[], None]:
    """One inference step of ``wl``'s zoo model exported to ONNX and run by onnxruntime (the same seeded weights
    and input as the engine rows); the export counts into the first call."""
    if wl.kind != "infer":
        raise ValueError(f"bench: onnxruntime runs inference workloads only (got {wl.name!r})")
    import engine
    import zoo

    from .onnx_peer import numba_threads, onnxruntime_runner

    engine.manual_seed(0)
    model = zoo.get(wl.model, num_classes=wl.num_classes)
    model.eval()
    x, _ = _data(wl)
    state: dict = {}

    def infer() -> None:
        if "step" not in state:
            import graph.onnx as gx

            proto = gx.export(model, x, check=False)
            state["step"] = onnxruntime_runner(proto.SerializeToString(), x, numba_threads())[0]
        state["step"]()

    return infer


def model_runner(impl: str, wl: ModelWorkload) -> Callable[[], None]:
    if impl == "onnxruntime":
        return onnxruntime_model_runner(wl)
    if impl == "torch-compile":
        return torch_compile_model_runner(wl)
    return torch_model_runner(wl) if impl == "torch" else engine_model_runner(impl, wl)


# ---- timing -----------------------------------------------------------------------------------------------------
PAUSE_S = 0.2  # between two impls' turns: a peer's spinning thread pool goes idle before the next impl runs


def time_interleaved(wl: ModelWorkload, impls: list[str], repeats: int, warmup: int, rounds: int,
                     log: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Per impl, :func:`time_workload`'s fields over ``rounds`` rounds in which every impl's runner (all built
    first, each first call timed apart) makes ``repeats`` timed calls in turn, the order rotating by one each
    round; plus ``round_medians_ms``. A short pause between turns lets a peer's spinning thread pool (onnxruntime's)
    go idle before the next impl runs. ``peak_rss_mib`` is the process's, with every runner loaded."""
    fns, first = {}, {}
    for impl in impls:
        if log:
            log(f"{wl.name} / {impl} (interleaved, {rounds} rounds) ...")
        fns[impl] = model_runner(impl, wl)
        first[impl] = first_call_ms(fns[impl], warmup)
    times: dict[str, list[float]] = {i: [] for i in impls}
    medians: dict[str, list[float]] = {i: [] for i in impls}
    for r in range(rounds):
        k = r % len(impls)
        for impl in impls[k:] + impls[:k]:
            time.sleep(PAUSE_S)
            ts = timed_calls_ms(fns[impl], repeats)
            times[impl] += ts
            medians[impl].append(float(np.median(ts)))
    rss = peak_rss_mib()
    return {i: {"first_call_ms": first[i], "median_ms": float(np.median(times[i])), "min_ms": min(times[i]),
                "repeats": len(times[i]), "round_medians_ms": medians[i], "peak_rss_mib": rss} for i in impls}


def first_call_ms(fn: Callable[[], None], warmup: int = 1) -> float:
    """The first call of ``fn`` timed (JIT / graph compile, first touch; ms), then ``warmup`` untimed calls."""
    gc.collect()
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(warmup):
        fn()
    return first * 1e3


def timed_calls_ms(fn: Callable[[], None], repeats: int) -> list[float]:
    """``repeats`` (at least one) timed calls of ``fn``, ms each."""
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def time_workload(fn: Callable[[], None], repeats: int, warmup: int = 1) -> dict:
    """First call timed separately (JIT / graph compile, first touch), ``warmup`` untimed calls, then ``repeats``
    timed calls; returns ``first_call_ms``, ``median_ms``, ``min_ms``, ``repeats``."""
    first = first_call_ms(fn, warmup)
    times = timed_calls_ms(fn, repeats)
    return {"first_call_ms": first, "median_ms": float(np.median(times)), "min_ms": min(times),
            "repeats": len(times)}


def available_impls(impls: list[str]) -> list[str]:
    """``impls`` checked against :data:`IMPLS`, less ``torch`` when PyTorch is not installed and less
    ``onnxruntime`` when onnxruntime or onnx (the export) is not."""
    unknown = [i for i in impls if i not in IMPLS]
    if unknown:
        raise ValueError(f"bench: unknown impl {unknown[0]!r}; choose from {', '.join(IMPLS)}")
    if "onnxruntime" in impls:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError:
            print("# onnxruntime: onnxruntime or onnx not installed, skipped", file=sys.stderr)
            impls = [i for i in impls if i != "onnxruntime"]
    return without_missing_torch(impls)


def profile_workload(impl: str, wl: ModelWorkload, steps: int = 2):
    """An :class:`engine.profiler.Profile` of ``steps`` steps of ``wl`` on an engine impl, after one untimed call
    (JIT / graph compile): where the time goes, per layer and per op."""
    import engine

    fn = model_runner(impl, wl)
    fn()
    with engine.profile(fn.model) as prof:
        for _ in range(steps):
            fn()
    return prof


_TORCH_CHILD = r"""
import json, sys
sys.path.insert(0, {root!r})
from zoo.bench.models import ModelWorkload, TorchCompileUnavailable, model_runner, peak_rss_mib, time_workload
wl = ModelWorkload(*json.loads({wl!r}))
fn = model_runner({impl!r}, wl)
try:
    t = time_workload(fn, {repeats}, {warmup})
except TorchCompileUnavailable as e:
    print(json.dumps({{"skipped": str(e)}}))
else:
    extra = {{"compile_ms": fn.compile_ms}} if hasattr(fn, "compile_ms") else {{}}
    print(json.dumps(dict(t, peak_rss_mib=peak_rss_mib(own=True), **extra)))
"""


def torch_row_isolated(wl: ModelWorkload, repeats: int, warmup: int, impl: str = "torch") -> dict:
    """Time a PyTorch row (``impl``: ``torch`` or ``torch-compile``) in a child process with PyTorch's own OpenMP
    defaults: the engine sets ``OMP_WAIT_POLICY``/``GOMP_SPINCOUNT`` for its numba kernels (``engine.ENV_SET``),
    and in one process they also apply to PyTorch's OpenMP runtime (it ran 10-35% faster or slower depending on
    the setting), and the two runtimes' worker threads compete for the 2 cores. Returns :func:`time_workload`'s
    dict plus the child's ``peak_rss_mib`` (and ``compile_ms`` for torch-compile), or ``{"skipped": reason}``."""
    import dataclasses
    import json
    import os
    import subprocess

    from engine import ENV_SET

    env = {k: v for k, v in os.environ.items() if ENV_SET.get(k) != v}
    import zoo

    root = os.path.dirname(os.path.dirname(os.path.abspath(zoo.__file__)))  # where this process imports zoo from
    code = _TORCH_CHILD.format(root=root, wl=json.dumps(dataclasses.astuple(wl)), impl=impl, repeats=repeats,
                               warmup=warmup)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_models(impls: list[str], workloads: list[ModelWorkload] | None = None, repeats: int = 10, warmup: int = 1,
               skip: Callable[[ModelWorkload, str], bool] | None = None, log: Callable[[str], None] | None = None,
               rounds: int = 1) -> list[dict]:
    """Time every (workload, impl) pair in this process (the PyTorch rows in a child each); one row per pair, with
    ``ratio_to_torch`` filled in. onnxruntime and torch-compile have rows for the inference workloads only; a
    torch-compile row that cannot compile here is left out with its one-line reason on stderr.

    ``rounds`` > 1: a workload's in-process impls are all built first, then timed in ``rounds`` rounds of ``repeats``
    calls each, taking turns in an order that rotates from round to round (:func:`time_interleaved`), so a burst of
    other work on the machine falls on every impl alike; their rows add ``round_medians_ms`` and, beside an
    onnxruntime row, ``ratio_to_onnxruntime`` (the median of the per-round ratios)."""
    rows = []
    for wl in workloads if workloads is not None else MODEL_WORKLOADS:
        todo = [i for i in impls
                if not ((skip is not None and skip(wl, i)) or (i in INFER_ONLY and wl.kind != "infer"))]
        together = [i for i in todo if i not in ("torch", "torch-compile")] if rounds > 1 else []
        timed = time_interleaved(wl, together, repeats, warmup, rounds, log) if together else {}
        for impl in todo:
            if log and impl not in timed:
                log(f"{wl.name} / {impl} ...")
            if impl in timed:
                t = timed[impl]
            elif impl in ("torch", "torch-compile"):
                t = torch_row_isolated(wl, repeats, warmup, impl)
                if "skipped" in t:
                    print(f"# {t['skipped']}", file=sys.stderr)
                    continue
            else:
                fn = model_runner(impl, wl)
                t = dict(time_workload(fn, repeats, warmup), peak_rss_mib=peak_rss_mib())
                del fn
            rows.append({"workload": wl.name, "model": wl.model, "kind": wl.kind, "batch": wl.batch,
                         "input": list(wl.input), "impl": impl, **t,
                         "images_per_s": wl.batch / (t["median_ms"] / 1e3)})
    for r in rows:
        ort = next((q for q in rows if q["impl"] == "onnxruntime" and q["workload"] == r["workload"]), None)
        if ort is not None and r is not ort and "round_medians_ms" in r and "round_medians_ms" in ort:
            r["ratio_to_onnxruntime"] = float(np.median(np.array(r["round_medians_ms"]) /
                                                        np.array(ort["round_medians_ms"])))
    for r in rows:
        ref = next((q for q in rows if q["impl"] == "torch" and q["workload"] == r["workload"]), None)
        r["ratio_to_torch"] = r["median_ms"] / ref["median_ms"] if ref else None
    return rows
