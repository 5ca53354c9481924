"""Human tables by default, JSON for scripts: the two ways the CLI prints anything."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO


def emit_json(data: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    json.dump(data, out, indent=2, sort_keys=True, default=str)
    out.write("\n")


def table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], out: TextIO | None = None
) -> None:
    """Plain aligned columns, headers in upper case, like the gnt-* listings."""
    out = out or sys.stdout
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    out.write(
        "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n"
    )
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, float) and value > 1e9:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    if isinstance(value, list):
        return ",".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def key_values(data: dict[str, Any], out: TextIO | None = None, indent: str = "") -> None:
    # Streams are looked up per call, not bound at import, so redirections apply.
    out = out or sys.stdout
    for key in sorted(data):
        value = data[key]
        if isinstance(value, dict) and value:
            out.write(f"{indent}{key}:\n")
            key_values(value, out, indent + "  ")
        else:
            out.write(f"{indent}{key}: {fmt(value)}\n")


class Progress:
    """Writes job log lines as they arrive; 'progress' entries redraw one line on a tty."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self._open_line = False

    def __call__(self, entry: dict[str, Any]) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(entry["time"]))
        text = f"{stamp} {entry['message']}"
        if entry["type"] == "progress" and self.tty:
            self.out.write("\r\x1b[K" + text)
            self._open_line = True
        else:
            if self._open_line:
                self.out.write("\n")
                self._open_line = False
            self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        if self._open_line:
            self.out.write("\n")
            self._open_line = False
