"""Markdown tables printed row by row as results arrive, and the number formats and verdicts in their cells."""
import math


def fmt(value, digits=None):
    """A number for the table: ``digits`` decimals, or by default three significant figures."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if digits is None and 0 < abs(value) < 1:
        return f"{value:.3g}"
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


def ratio_cell(ratio):
    return fmt(ratio, 2) + "x" if ratio else "n/a"


def verdict(ratio, target, at_least=True):
    if target is None or ratio is None:
        return ""
    ok = ratio >= target if at_least else ratio <= target
    return ("yes" if ok else "**no**") + f" ({'>=' if at_least else '<='} {target:g}x)"


class Table:
    """A markdown table printed row by row as results arrive, and kept for RESULTS.md."""

    def __init__(self, title, header, out):
        self.title, self.header, self.rows, self.out = title, header, [], out
        self.notes = []
        self._print(f"\n### {title}\n")
        self._print("| " + " | ".join(header) + " |")
        self._print("|" + "---|" * len(header))

    def _print(self, line):
        if self.out is not None:
            print(line, file=self.out, flush=True)

    def add(self, row):
        self.rows.append([str(c) for c in row])
        self._print("| " + " | ".join(self.rows[-1]) + " |")

    def note(self, text):
        self.notes.append(text)
        self._print(f"\n{text}")

    def markdown(self):
        lines = [f"### {self.title}", "", "| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines + [""] + [n + "\n" for n in self.notes])
