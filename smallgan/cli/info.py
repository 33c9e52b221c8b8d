"""`smallgan info`: the architecture a recipe builds, with parameter counts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional

import typer

from smallgan.cli.app import RecipeOption, SetOption, app
from smallgan.cli.common import config_from_options

if TYPE_CHECKING:
    from torch import nn

    from smallgan.config import Config


def _rows(module, prefix: str = "") -> list[tuple[str, str, int]]:
    """(name, type, params) for each block: containers are opened one level."""
    from torch import nn

    from smallgan.registry import count_params

    rows = []
    for name, child in module.named_children():
        if isinstance(child, (nn.ModuleList, nn.ModuleDict, nn.Sequential)) and len(child) > 1:
            rows += [(f"{prefix}{name}.{n}", type(c).__name__, count_params(c)) for n, c in child.named_children()]
        else:
            rows.append((f"{prefix}{name}", type(child).__name__, count_params(child)))
    return rows


@app.command()
def info(
    recipe: str = RecipeOption,
    sets: Optional[list[str]] = SetOption,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object (G_params, D_params, ...)."),
    n_classes: Optional[int] = typer.Option(None, "--classes", help="Classes to assume when the recipe says 0."),
) -> None:
    """Show the model a recipe builds: blocks and parameter counts of G and D."""
    import torch

    from smallgan.registry import build_discriminator, build_generator, count_params

    cfg = config_from_options(recipe, sets)
    n = cfg.model.n_classes or n_classes or 1
    # Shapes only: on the meta device nothing is allocated or initialised (ImageNet-128 builds instantly).
    with torch.device("meta"):
        G = build_generator(cfg.model, n_classes=n)
        D = build_discriminator(cfg.model, n_classes=n)
    summary = {
        "recipe": cfg.recipe,
        "arch": cfg.model.arch,
        "resolution": cfg.model.resolution,
        "ch": cfg.model.ch,
        "d_ch": cfg.model.d_ch or cfg.model.ch,
        "z_dim": cfg.model.z_dim,
        "n_classes": n,
        "G_params": count_params(G),
        "D_params": count_params(D),
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        _print_tables(cfg, G, D, summary)


def _print_tables(cfg: Config, G: nn.Module, D: nn.Module, summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from smallgan.registry import count_params

    console = Console()
    for title, net in (("Generator", G), ("Discriminator", D)):
        table = Table(title=f"{title} ({cfg.model.arch}, {cfg.model.resolution}px)", show_footer=True)
        table.add_column("block", footer="total")
        table.add_column("type")
        table.add_column("params", justify="right", footer=f"{count_params(net):,}")
        for name, kind, p in _rows(net):
            table.add_row(name, kind, f"{p:,}")
        console.print(table)
    console.print(
        f"G {summary['G_params'] / 1e6:.1f}M + D {summary['D_params'] / 1e6:.1f}M parameters; "
        f"z {cfg.model.z_dim}, {summary['n_classes']} class(es), width ch={summary['ch']} (D {summary['d_ch']})"
    )
