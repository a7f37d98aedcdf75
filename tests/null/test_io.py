"""engine.io: state files round trip, checkpoints resume bit for bit, damaged files fail clearly and atomically."""

from __future__ import annotations

import math
import os
import shutil
import zipfile

import numpy as np
import pytest

import engine
from engine import Tensor, io, nn, optim
from engine.io import CheckpointError
from engine.optim import lr_scheduler


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Dropout(0.3), nn.Linear(4 * 5 * 5, 3))


def _batch(i: int) -> tuple[Tensor, Tensor]:
    rng = np.random.default_rng(100 + i)
    return Tensor(rng.standard_normal((6, 2, 5, 5)).astype(np.float32)), Tensor(
        rng.standard_normal((6, 3)).astype(np.float32))


def _train(model, opt, sched, steps: range) -> list[float]:
    losses = []
    for i in steps:
        x, y = _batch(i)
        opt.zero_grad()
        d = model(x) - y  # dropout draws from engine's generator, so the RNG state matters for resuming
        loss = (d * d).mean()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.data))
    return losses


def _setup(seed: int = 3):
    engine.manual_seed(seed)
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    return model, opt, lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)


def test_round_trip_nested_state(tmp_path):
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "t": Tensor(np.ones(2, np.float64)),
             "i": np.array(7, np.int64), "s": np.float32(1.5), "n": None, "f": math.inf, "nan": math.nan,
             "b": True, "str": "héllo", "tup": (1, 2.5, "x"), "list": [1, {"k": np.zeros(0, np.uint8)}],
             3: "int key", "__weird": 1, "big": 2**100, "empty": {}}
    path = tmp_path / "state.npz"
    io.save(state, path)
    back = io.load(path)
    assert list(back) == list(state)
    np.testing.assert_array_equal(back["w"], state["w"])
    assert back["w"].dtype == np.float32
    assert isinstance(back["t"], Tensor) and back["t"].dtype == np.float64
    assert back["i"].dtype == np.int64 and back["i"].shape == ()
    assert isinstance(back["s"], np.float32) and back["s"] == 1.5
    assert back["n"] is None and back["f"] == math.inf and math.isnan(back["nan"]) and back["b"] is True
    assert back["str"] == "héllo" and back["tup"] == (1, 2.5, "x") and back[3] == "int key"
    assert back["__weird"] == 1 and back["big"] == 2**100 and back["empty"] == {}
    assert back["list"][1]["k"].dtype == np.uint8
    with np.load(path, allow_pickle=False) as z:  # a plain npz, readable without pickle
        assert "__meta__" in z.files and z["__meta__"].dtype == np.uint8


def test_save_rejects_unstorable_values_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "s.npz"
    io.save({"a": np.ones(3)}, path)
    with pytest.raises(TypeError, match=r"set.*\['b'\]"):
        io.save({"a": np.zeros(3), "b": {1, 2}}, path)
    with pytest.raises(TypeError, match="object arrays"):
        io.save({"a": np.array([None, 1], dtype=object)}, path)
    np.testing.assert_array_equal(io.load(path)["a"], np.ones(3))
    assert os.listdir(tmp_path) == ["s.npz"]


def test_interrupted_write_leaves_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    io.save({"v": np.ones(4)}, path)

    def crash(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(io.os, "fsync", crash)
    with pytest.raises(OSError, match="simulated"):
        io.save({"v": np.zeros(4)}, path)
    monkeypatch.undo()
    np.testing.assert_array_equal(io.load(path)["v"], np.ones(4))
    assert os.listdir(tmp_path) == ["ckpt.npz"], "the temporary file must be cleaned up"


def test_model_state_dict_round_trip(tmp_path):
    engine.manual_seed(0)
    a = _model()
    engine.manual_seed(1)
    b = _model()
    io.save(a.state_dict(), tmp_path / "m.npz")
    b.load_state_dict(io.load(tmp_path / "m.npz"))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        np.testing.assert_array_equal(va.data, vb.data)


def test_checkpoint_resume_is_bit_exact(tmp_path):
    model, opt, sched = _setup()
    reference = _train(model, opt, sched, range(4))
    ref_params = [p.data.copy() for p in model.parameters()]
    ref_buffers = [b.data.copy() for b in model.buffers()]

    model, opt, sched = _setup()
    first = _train(model, opt, sched, range(2))
    io.save_checkpoint(tmp_path / "ckpt.npz", model=model, optimizer=opt, scheduler=sched, epoch=2,
                       extra={"best": first[-1]})
    _train(model, opt, sched, range(2, 3))  # diverge (params, optimizer, scheduler and RNG) before loading

    engine.manual_seed(999)
    model2 = _model()
    opt2 = optim.SGD(model2.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    sched2 = lr_scheduler.StepLR(opt2, step_size=1, gamma=0.7)
    info = io.load_checkpoint(tmp_path / "ckpt.npz", model2, opt2, sched2)
    assert info["epoch"] == 2 and info["extra"] == {"best": first[-1]}
    rest = _train(model2, opt2, sched2, range(2, 4))

    assert first + rest == reference
    for p, r in zip(model2.parameters(), ref_params):
        np.testing.assert_array_equal(p.data, r)
    for b, r in zip(model2.buffers(), ref_buffers):
        np.testing.assert_array_equal(b.data, r)
    assert sched2.get_last_lr() == pytest.approx([0.05 * 0.7**4])


def _good_checkpoint(tmp_path) -> tuple[str, nn.Module]:
    model, opt, sched = _setup()
    path = str(tmp_path / "good.npz")
    io.save_checkpoint(path, model=model, optimizer=opt, scheduler=sched, epoch=1)
    return path, model


def test_truncated_file_gives_clear_error_and_original_still_loads(tmp_path):
    path, model = _good_checkpoint(tmp_path)
    size = os.path.getsize(path)
    for cut in (0, 10, size // 2, size - 10):
        bad = str(tmp_path / f"cut{cut}.npz")
        shutil.copyfile(path, bad)
        with open(bad, "r+b") as f:
            f.truncate(cut)
        with pytest.raises(CheckpointError) as e:
            io.load(bad)
        assert bad in str(e.value) and ("truncated" in str(e.value) or "corrupted" in str(e.value))
    fresh, opt, sched = _setup(seed=5)
    io.load_checkpoint(path, fresh, opt, sched)
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values()):
        np.testing.assert_array_equal(a.data, b.data)


def test_flipped_byte_is_detected(tmp_path):
    path, _ = _good_checkpoint(tmp_path)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("a0.npy")
        offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 128 + 4  # inside the array data
    bad = str(tmp_path / "flipped.npz")
    shutil.copyfile(path, bad)
    with open(bad, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(CheckpointError, match="flipped.npz.*(corrupted|checksum)"):
        io.load(bad)


def test_rewritten_member_is_detected_by_checksum(tmp_path):
    path, _ = _good_checkpoint(tmp_path)
    with np.load(path, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    members["a0"] = members["a0"] + 1  # a consistent zip, but not what was saved
    bad = str(tmp_path / "edited.npz")
    np.savez(bad, **members)
    with pytest.raises(CheckpointError, match="edited.npz: checksum mismatch"):
        io.load(bad)


def test_foreign_files_are_rejected(tmp_path):
    npz = str(tmp_path / "plain.npz")
    np.savez(npz, x=np.ones(2))
    with pytest.raises(CheckpointError, match="plain.npz: not a state file"):
        io.load(npz)
    npy = str(tmp_path / "arr.npy")
    np.save(npy, np.ones(2))
    with pytest.raises(CheckpointError, match="arr.npy"):
        io.load(npy)
    txt = str(tmp_path / "junk.npz")
    with open(txt, "w") as f:
        f.write("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.npz"):
        io.load(txt)
    with pytest.raises(FileNotFoundError):
        io.load(tmp_path / "missing.npz")
    state_only = str(tmp_path / "sd.npz")
    io.save({"a": 1}, state_only)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        io.load_checkpoint(state_only, _model())


def test_failed_checkpoint_load_changes_nothing(tmp_path):
    path, _ = _good_checkpoint(tmp_path)
    engine.manual_seed(42)
    model = _model()
    before = {k: v.data.copy() for k, v in model.state_dict().items()}
    wrong_opt = optim.SGD([nn.Parameter(np.zeros(2, np.float32))], lr=0.1)  # one param: groups do not match
    rng_state = engine.get_rng_state()
    with pytest.raises(ValueError, match="parameter group 0"):
        io.load_checkpoint(path, model, wrong_opt)
    for k, v in model.state_dict().items():  # the model was loaded first, then rolled back
        np.testing.assert_array_equal(v.data, before[k])
    assert engine.get_rng_state() == rng_state
