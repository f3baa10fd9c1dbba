"""Summarise a py-spy raw (collapsed stacks) profile: the functions with the most samples
on top of the stack (self) and anywhere in it (total), each as a share of all samples.

Usage: .venv/bin/python bench/pyspy_top.py PROFILE.raw [--top 25] [--match lumiku/]
                                           [--exclude importlib --exclude create_user]
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path
from typing import Final

# "name (path/file.py:123)": the line number is dropped so a function counts once.
_FRAME: Final = re.compile(r"^(?P<name>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


def function_of(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    return f"{match['name']} ({match['file']})"


def summarise(
    path: Path, exclude: tuple[str, ...] = ()
) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    """(samples, self samples per function, total samples per function), leaving out the
    stacks that contain any of `exclude` (start-up: imports, migrations, fixtures)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit() or any(text in stack for text in exclude):
            continue
        count = int(count_text)
        samples += count
        functions = [function_of(frame) for frame in stack.split(";")]
        own[functions[-1]] += count
        for function in set(functions):
            total[function] += count
    return samples, own, total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only functions whose text contains this")
    parser.add_argument("--exclude", action="append", default=[], help="drop stacks with this")
    args = parser.parse_args()
    samples, own, total = summarise(args.profile, tuple(args.exclude))
    for title, counter in (("self", own), ("total", total)):
        print(f"-- {title} ({samples} samples)")
        shown = [(f, n) for f, n in counter.most_common() if args.match in f][: args.top]
        for function, count in shown:
            print(f"{100 * count / samples:6.1f} %  {function}")


if __name__ == "__main__":
    main()
