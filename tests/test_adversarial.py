"""Issue 18: hostile files, faults and careless users. Each case failed (traceback, hang, silent acceptance,
destroyed file or wrong result) before its fix; every bad input must now be one line and exit 2.

Search-space cases are raw YAML text (duplicate keys, aliases and non-UTF-8 bytes cannot be written with
``yaml.safe_dump``), run through the real CLI; none may start Ray or create a store.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
from click.testing import CliRunner

from orchestrator.cli import main

HEAD = """\
dataset: {name: synthme-tiny, knobs: {n_subjects: 3, n_clips: 30}}
train: {epochs: 1}
"""
ARM = "grid:\n  - {name: base, table: V}\n"


def _bomb(levels: int) -> str:
    """A YAML alias bomb: each level lists the previous one 10 times (10**levels scalars once expanded)."""
    lines = ["x0: &x0 [a, a, a, a, a, a, a, a, a, a]"]
    for i in range(1, levels):
        lines.append(f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]")
    return "\n".join(lines)


def _ints(start: int) -> str:
    return ",".join(str(start + i) for i in range(100))


# (id, file body as bytes or text, substring of the one-line error)
SPEC_CASES = [
    ("non-utf8 bytes", HEAD.encode() + b"grid:\n  - {name: \xff\xfe}\n", "not UTF-8 text"),
    ("duplicate grid key", HEAD + ARM + "grid:\n  - {name: other}\n", "duplicate key 'grid'"),
    ("duplicate nested key", HEAD + "grid:\n  - {name: a, beta: 1, beta: 2}\n", "duplicate key 'beta'"),
    ("alias bomb in knobs",
     "dataset:\n  name: synthme-tiny\n  knobs:\n    " + _bomb(7).replace("\n", "\n    ") + "\n" + ARM,
     "YAML nodes"),
    ("alias count", "dataset: {name: synthme-tiny, knobs: {n_subjects: 3, noise: &a 0.1, extra: ["
     + ", ".join(["*a"] * 150) + "]}}\n" + ARM, "aliases"),
    ("template attribute access", HEAD + "grid:\n  - {product: {beta: [0.5, 1.0]}, name: 'b{beta.real}'}\n",
     "placeholder {beta.real}"),
    ("template index access", HEAD + "grid:\n  - {product: {beta: [0.5, 1.0]}, name: 'b{beta[0]}'}\n",
     "placeholder {beta[0]}"),
    ("negative dataset seed", "dataset: {name: synthme-tiny, seed: -1}\ntrain: {epochs: 1}\n" + ARM,
     "dataset.seed:"),
    ("overflowing protocol seed", HEAD + "protocol: {seed: 99999999999999999999}\n" + ARM, "protocol.seed:"),
    ("cpu_per_fold inf", HEAD + ARM + "resources: {cpu_per_fold: .inf}\n", "resources.cpu_per_fold:"),
    ("magnification inf", "dataset: {name: synthme-tiny, magnification: .inf}\n" + ARM,
     "dataset.magnification:"),
    ("step with log",
     HEAD + "search: {n_trials: 2, params: {lr: {low: 0.001, high: 0.1, step: 0.01, log: true}}}\n",
     "step and log"),
    ("log with low 0", HEAD + "search: {n_trials: 2, params: {beta: {low: 0, high: 1, log: true}}}\n",
     "log: true needs low > 0"),
    ("grid sampler too fine",
     HEAD + "search: {sampler: grid, n_trials: 2, params: {beta: {low: 0, high: 1, step: 1.0e-9}}}\n",
     "1000000001 points"),
    ("product of 1e6",
     HEAD + "grid:\n  - product: {beta: [" + _ints(0) + "], lr: [" + _ints(1) + "], batch_size: ["
     + _ints(1) + "]}\n    name: 'b{beta}-{lr}-{batch_size}'\n", "expands to 1000000 configurations"),
    ("empty subjects", HEAD + "protocol: {subjects: []}\n" + ARM, "protocol.subjects:"),
    ("exclude removes everything",
     HEAD + "grid:\n  - product: {lam: [true, false]}\n    name: 'l{lam}'\n"
     "    exclude: [{lam: true}, {lam: false}]\n",
     "removes all 2 combinations"),
    ("misspelt exclude key",
     HEAD + "grid:\n  - product: {lam: [true, false]}\n    name: 'l{lam}'\n    exclude: [{lma: true}]\n",
     "key 'lma' is not varied"),
    ("arm named like a trial",
     HEAD + "grid:\n  - {name: search-0}\nsearch: {n_trials: 2, params: {beta: {low: 0.1, high: 1}}}\n",
     "form of an Optuna trial"),
]


@pytest.mark.parametrize("body,needle", [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES])
def test_bad_search_space_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             body: str | bytes, needle: str) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "space.yaml"
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        path.write_text(body)
    r = CliRunner().invoke(main, ["sweep", str(path), "--num-cpus", "1"])
    assert r.exit_code == 2, (r.output, r.exception)
    err = r.stderr.strip()
    assert "\n" not in err and err.startswith(f"{path}: "), err
    assert needle in err, err
    assert not ray.is_initialized()
    assert not (tmp_path / "mer-runs").exists()
