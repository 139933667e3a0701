"""Landmark extraction throughput: detect the face once per clip (onset) vs on every frame.

    python benchmarks/bench_extract.py [--subjects 4 --clips 5 --repeats 3]

Builds a CASME II-layout fixture (astronaut photo, 512 x 512 frames, small warps) in a temp folder and runs
the real dlib path (``dlib_landmarks.extract_rows``) in this one process: baseline = face detection on all
three frames; ours = detection on the onset frame only, predictor on all three in that box. Also reports
the cost of the crop-size augmentation views and the frame-to-frame jitter of points that do not move in
the fixture (nose bridge, jaw): one box per clip keeps the three point sets consistent. Image reading is
included in every timing (it is part of extraction). Median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mer_model.data import casme2, dlib_landmarks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the fixture writer is test code
from real_fixtures import FixtureClip, write_casme2  # noqa: E402


def _timed(rows, sheet, repeats, **kw):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = dlib_landmarks.extract_rows(rows, sheet=sheet, **kw)
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--clips", type=int, default=5, help="clips per subject")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    kinds = ["12", "4", "4+L12", "R12A"]
    clips = [FixtureClip(s, "", 10 + 7 * c, 15 + 7 * c, 21 + 7 * c, kinds[(s + c) % 4], "others")
             for s in range(1, args.subjects + 1) for c in range(args.clips)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "CASME2"
        sheet = write_casme2(root, clips, full_frame=True)
        rows, _ = casme2.rows(sheet, root)
        dlib_landmarks.Extractor()  # load the predictor once, outside the timings
        n = len(rows)
        t_every, (every, _) = _timed(rows, sheet, args.repeats, crop_scales=(), detect_every_frame=True)
        t_once, (once, _) = _timed(rows, sheet, args.repeats, crop_scales=())
        t_aug, _ = _timed(rows, sheet, args.repeats)

    static = np.r_[0:5, 12:17, 27:31]  # jaw sides and nose bridge: no fixture warp moves them

    def jitter(x):
        return float(np.abs(x[:, 1:, static] - x[:, :1, static]).mean())
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, no GPU; {n} clips, 512x512 frames, "
          f"median of {args.repeats}")
    print(f"detect on every frame (baseline): {n / t_every:7.1f} clips/s")
    print(f"detect once per clip (onset)    : {n / t_once:7.1f} clips/s   x{t_every / t_once:.2f} speed-up")
    print(f"  + 3 crop-size views           : {n / t_aug:7.1f} clips/s   x{t_every / t_aug:.2f} vs baseline")
    print(f"static-point jitter onset->apex/offset: every frame {jitter(every):.3f} px, "
          f"once {jitter(once):.3f} px")


if __name__ == "__main__":
    main()
