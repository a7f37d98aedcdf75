"""``pip install .`` into a fresh virtual environment, then ``convgraph bench`` from another folder: the command and
the benchmark code it needs are installed with the package, not read from the source checkout.

The venv reaches the dependencies (numpy, numba, setuptools, pip) through a ``.pth`` line naming this
interpreter's site-packages, so nothing is downloaded; a plain path line does not run that folder's own ``.pth``
files, so an editable install of the checkout there stays invisible."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_FILES = ["pyproject.toml", "README.md", "engine", "graph", "backends", "zoo"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def test_pip_install_then_convgraph_bench_from_another_folder(tmp_path):
    src = tmp_path / "src"  # a copy, so the build's egg-info/build folders stay out of the checkout
    src.mkdir()
    for name in PACKAGE_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    assert not (src / "bench").exists()  # the repository's bench/ folder is not what the command runs

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "main_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["CONVGRAPH_BACKEND"] = "numpy"  # numpy rows only: no numba JIT in the fresh install
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "--ignore-installed", str(src)], tmp_path, env)

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([str(py), "-c", "import zoo.bench, engine; print(zoo.bench.__file__, engine.__file__)"], work, env)
    assert all(Path(f).is_relative_to(site) for f in where.stdout.split()), where.stdout
    _run([str(venv / "bin" / "convgraph"), "bench", "--smoke", "--impls", "numpy", "--no-ops", "--workloads",
          "lenet5", "--json", "bench.json"], work, env)
    res = json.loads((work / "bench.json").read_text())
    (row,) = res["rows"]
    assert row["workload"] == "lenet5 train step b64" and row["impl"] == "numpy" and row["batch"] == 2
    assert res["smoke"] and row["median_ms"] > 0
