"""Make the worked example's data: a CSV of shop arithmetic in column names nobody here chose
(uid, name, item, start, added, total), from seeded arithmetic, not from any benchmark.

    python configs/examples/shop_arithmetic.py [--rows 400] [--out runs/examples/shop_arithmetic.csv]

`configs/examples/shop_arithmetic.yaml` reads it: the prompt is built from the columns, `total` is the gold
answer, and the `numeric` judge compares the number the model states with it.
"""
from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

NAMES = ["Ana", "Ben", "Chloe", "Dev", "Ema", "Femi", "Goro", "Hana", "Ivo", "Jun", "Kai", "Lea", "Mo", "Nia"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "books", "cards", "shells", "coins", "cookies", "stamps"]


def rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """`n` rows; `total` = start + added (small numbers: a 135M model gets some right, not all)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        start, added = rng.randint(2, 40), rng.randint(2, 30)
        out.append({"uid": f"shop-{i:04d}", "name": rng.choice(NAMES), "item": rng.choice(ITEMS),
                    "start": str(start), "added": str(added), "total": str(start + added)})
    return out


def write(path: Path, n: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = rows(n, seed)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(data[0]))
        writer.writeheader()
        writer.writerows(data)
    return path


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=400)
    p.add_argument("--out", type=Path, default=Path("runs/examples/shop_arithmetic.csv"))
    a = p.parse_args()
    print(write(a.out, a.rows))
