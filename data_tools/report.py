"""What a preparation did: counts for report.json and the summary table printed at the end."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data_tools.dedupe import EXACT, PERCEPTUAL
from data_tools.images import SKIP_REASONS as DECODE_REASONS

NO_CLASS = "no_class"  # with --labels auto and class folders, a file directly in the root has no class
SKIP_REASONS = (*DECODE_REASONS, NO_CLASS)
DUPLICATE_KINDS = (EXACT, PERCEPTUAL)


@dataclass
class Report:
    """Every candidate file is accounted for: found = used + sum(skipped) + sum(duplicates)."""

    source: str
    output: str
    found: int = 0                  # files with an image extension (or rows of a Hugging Face dataset)
    used: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    duplicates: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DUPLICATE_KINDS, 0))
    per_class: dict[str, int] = field(default_factory=dict)
    ignored: int = 0                # other files (not counted in found)
    ignored_extensions: dict[str, int] = field(default_factory=dict)
    hidden_dirs: int = 0
    symlink_loops: int = 0
    upscaled: int = 0               # used images whose crop was smaller than the resolution
    seconds: float = 0.0
    images_per_second: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    skipped_files: list[dict[str, str]] = field(default_factory=list)   # {path, reason, detail}
    duplicate_files: list[dict[str, Any]] = field(default_factory=list)  # {path, kind, kept, distance}

    def skip(self, path: str, reason: str, detail: str = "") -> None:
        self.skipped[reason] += 1
        self.skipped_files.append({"path": path, "reason": reason, "detail": detail})

    def duplicate(self, path: str, kind: str, kept: str, distance: int) -> None:
        self.duplicates[kind] += 1
        self.duplicate_files.append({"path": path, "kind": kind, "kept": kept, "distance": distance})

    def accounted(self) -> bool:
        return self.found == self.used + sum(self.skipped.values()) + sum(self.duplicates.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def print_summary(report: Report, console: Any) -> None:
    """The summary table (found, used, skipped by reason, duplicates, per-class counts)."""
    from rich.table import Table

    table = Table(title="smallgan prepare", title_justify="left")
    table.add_column("", style="bold")
    table.add_column("count", justify="right")
    table.add_row("found", str(report.found))
    table.add_row("used", f"[green]{report.used}[/]")
    for reason, n in report.skipped.items():
        if n:
            table.add_row(f"skipped: {reason}", f"[yellow]{n}[/]")
    for kind, n in report.duplicates.items():
        if n:
            table.add_row(kind.replace("_", ": ", 1), f"[yellow]{n}[/]")
    if report.ignored:
        exts = ", ".join(f"{e} {n}" for e, n in sorted(report.ignored_extensions.items(), key=lambda x: -x[1])[:5])
        table.add_row("ignored (not images)", f"{report.ignored}  ({exts})")
    if report.upscaled:
        table.add_row("upscaled (smaller than resolution)", str(report.upscaled))
    table.add_section()
    for name, n in report.per_class.items():
        table.add_row(f"class {name}", str(n))
    console.print(table)
    console.print(
        f"{report.source} -> {report.output}: {report.found} inputs in {report.seconds:.1f} s "
        f"({report.images_per_second:.0f} images/s); details in report.json there",
        highlight=False,
    )
