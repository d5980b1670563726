"""How long re-capturing a pipeline at submit time costs (issue 11: ≤ 10 ms for 20 steps).

Every submit (``nbpipe.run``, ``Client.submit``, the magics) captures each component afresh
with the notebook globals and helpers it uses now (``Pipeline.capture``). This times that for
an unchanged 20-step pipeline whose components live in ``__main__`` (pickled by value, as in a
notebook) and use a helper, a module (numpy: cloudpickle looks through sys.modules for its
submodules on every pickling), a number and a dict, then with a global every step reads changed (all re-digested),
and the whole ``build_package`` (capture + zip, reused when nothing changed).

    .venv/bin/python benchmarks/capture.py [--steps 20] [--repeat 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import nbpipe

SCALE = 2
CONFIG = {"offset": 0.5, "names": ["a", "b"]}


def clean(xs: list) -> list:
    return [x for x in xs if x is not None]


def make_component(i: int) -> nbpipe.Component:
    ns = {"clean": clean, "SCALE": SCALE, "__name__": "__main__"}
    exec(f"def step_{i}(xs: list) -> list:\n    return [float(np.sqrt(x)) * SCALE + CONFIG['offset'] + {i} "
         "for x in clean(xs)]\n", globals(), ns)
    func = ns[f"step_{i}"]
    globals()[f"_step_{i}_func"] = func
    return nbpipe.component(func)


def timed(fn, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return min(samples), statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    comps = [make_component(i) for i in range(args.steps)]

    @nbpipe.pipeline
    def chain(xs: list = [1, 2, 3]):  # noqa: B006
        out = xs
        for c in comps:
            out = c(xs=out).output

    chain.capture()
    import os

    print(f"load average {os.getloadavg()[0]:.1f}, {len(sys.modules)} modules imported")
    lo, med = timed(chain.capture, args.repeat)
    print(f"re-capture, unchanged {args.steps}-step pipeline: min {lo:.2f} ms, median {med:.2f} ms")
    lo, med = timed(lambda: nbpipe.build_package(chain), args.repeat)
    print(f"build_package, unchanged:                        min {lo:.2f} ms, median {med:.2f} ms")

    def one_changed() -> None:
        globals()["SCALE"] = globals()["SCALE"] + 1  # every step reads it: all 20 are re-digested
        chain.capture()

    lo, med = timed(one_changed, max(20, args.repeat // 10))
    print(f"re-capture, a global all steps read changed:     min {lo:.2f} ms, median {med:.2f} ms")


if __name__ == "__main__":
    main()
