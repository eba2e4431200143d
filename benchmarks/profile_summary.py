"""The functions a py-spy profile (raw collapsed stacks, ``--py-spy FILE`` of a benchmark) spent its
samples in: each function's share of all samples, counting a sample once per function on its stack
(inclusive), the largest first. A profiled run is slowed by the profiler; its shares, not its times, count.

    .venv/bin/python benchmarks/profile_summary.py FILE [--top 40] [--under FUNCTION]
"""

from __future__ import annotations

import argparse
from collections import Counter


def frame_name(frame: str) -> str:
    """``function (path/to/file.py:12)`` -> ``function (file.py)``: a function once, whatever the line."""
    function, _, where = frame.partition(" (")
    return f"{function} ({where.rsplit(':', 1)[0].rsplit('/', 1)[-1]})" if where else function


def summarize(lines, under: str | None = None) -> tuple[int, Counter]:
    total, inclusive = 0, Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        frames = [frame_name(f) for f in stack.split(";")]
        if under is not None and not any(under in f for f in frames):
            continue
        total += int(count)
        for name in set(frames):
            inclusive[name] += int(count)
    return total, inclusive


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--under", help="only the samples with this function on the stack")
    args = parser.parse_args(argv)
    with open(args.file, encoding="utf-8") as profile:
        total, inclusive = summarize(profile, args.under)
    print(f"{total} samples" + (f" under {args.under}" if args.under else ""))
    for name, count in inclusive.most_common(args.top):
        print(f"{100 * count / max(total, 1):5.1f} %  {name}")


if __name__ == "__main__":
    main()
