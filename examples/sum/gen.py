#!/usr/bin/env python3
"""Generate examples/sum/tests/*.in and *.out deterministically.

Standard library only, fixed seeds: running it again rewrites byte-identical
files (the generated tests are committed too).

    python3 examples/sum/gen.py            # writes next to this script
    python3 examples/sum/gen.py --check    # verify committed files match
"""

import argparse
import random
import sys
from pathlib import Path

MAX_N = 2 * 10**6
MAX_A = 10**9

TESTS_DIR = Path(__file__).resolve().parent / "tests"


def render(values):
    return f"{len(values)}\n{' '.join(map(str, values))}\n"


def cases():
    """Yield (name, list of integers) in test order."""
    yield "01_sample", [1, 2, 3]
    yield "02_single", [5]
    yield "03_single_min", [-MAX_A]
    yield "04_negative", [-7, -1, -100, -3, -999999999, -42]
    yield "05_mixed", [10, -20, 30, -40, 50, -60, 70, -80, 90, -100]
    rng = random.Random(20240605)
    yield "06_zeros", [0] * 1000
    # Sums past 2^31 - 1: 32-bit accumulators overflow here.
    yield "07_max_values", [MAX_A] * 3000
    yield "08_min_values", [-MAX_A] * 3000
    yield "09_random_small", [rng.randint(-MAX_A, MAX_A) for _ in range(5000)]
    # Big tests, several MiB each: these separate fast from slow solutions.
    rng = random.Random(1)
    yield "10_big_random", [rng.randint(-MAX_A, MAX_A) for _ in range(10**6)]
    rng = random.Random(2)
    yield "11_big_max_n", [rng.randint(-9, 9) for _ in range(MAX_N)]
    rng = random.Random(3)
    yield "12_big_positive", [rng.randint(MAX_A - 1000, MAX_A) for _ in range(500000)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the files on disk instead of writing")
    args = parser.parse_args()
    TESTS_DIR.mkdir(exist_ok=True)
    bad = 0
    for name, values in cases():
        assert 1 <= len(values) <= MAX_N, name
        assert all(abs(v) <= MAX_A for v in values), name
        total = sum(values)
        assert -(2**63) <= total < 2**63, name
        files = {TESTS_DIR / f"{name}.in": render(values),
                 TESTS_DIR / f"{name}.out": f"{total}\n"}
        for path, text in files.items():
            if args.check:
                if not path.exists() or path.read_text() != text:
                    print(f"differs: {path}", file=sys.stderr)
                    bad += 1
            else:
                path.write_text(text)
    if args.check:
        print("ok" if not bad else f"{bad} file(s) differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
