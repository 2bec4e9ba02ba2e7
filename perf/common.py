"""What every perf script shares: a titled markdown table on stdout (pasted into PERFORMANCE.md)."""
from __future__ import annotations


def print_table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(row) + " |")
