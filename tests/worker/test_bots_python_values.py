"""The python bot's dataset: bot.gaussian_values draws a Box-Muller pair
per loop step where the bot once called Random.gauss per value; the
numbers must stay the very ones Random.gauss gives (the bot's docstring:
the same dataset name always gives the same numbers), for every count,
odd ones included (the pair's second value dropped at the end).

Imports workers/bots/python/bot.py and compares, value for value, against
Random.gauss under the same seed: 300 dataset names x 8 sizes, and one
dataset of 100,000 values.
"""
import hashlib
import os
import random
import sys

import harness
from harness import check, log

sys.path.insert(0, os.path.join(harness.ROOT, "workers", "bots", "python"))
import bot  # noqa: E402


def draws(dataset):
    """The generator and the parameters bot.py's data_analysis uses."""
    seed = int.from_bytes(hashlib.sha256(dataset.encode("utf-8")).digest()[:8], "big")
    rng = random.Random(seed)
    base = rng.uniform(10, 1000)
    spread = rng.uniform(1, base / 4)
    return rng, base, spread


def by_gauss(dataset, size):
    rng, base, spread = draws(dataset)
    return [round(rng.gauss(base, spread), 4) for _ in range(size)]


def by_bot(dataset, size):
    rng, base, spread = draws(dataset)
    return bot.gaussian_values(rng, base, spread, size)


def main():
    names = ["default", "sales_2024", "bench", "", "\u00fcn\u00efcode"] + ["ds%d" % i for i in range(295)]
    sizes = [1, 2, 3, 7, 10, 999, 1000, 1001]
    differ = [(n, s) for n in names for s in sizes if by_bot(n, s) != by_gauss(n, s)]
    log("%d of %d (name, size) pairs differ" % (len(differ), len(names) * len(sizes)))
    check(not differ, "gaussian_values gives Random.gauss's numbers for every name and size",
          differ[:5])
    check(by_bot("big", 100000) == by_gauss("big", 100000), "and for 100,000 values")


if __name__ == "__main__":
    harness.main(main)
