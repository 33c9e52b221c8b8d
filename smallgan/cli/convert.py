"""`smallgan convert`: a pretrained BigGAN checkpoint -> a smallgan run folder (smallgan/convert/ does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from smallgan.cli.app import SetOption, app

convert_app = typer.Typer(
    help="Turn a pretrained BigGAN checkpoint into a smallgan run folder (sample it, inspect it).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(convert_app, name="convert")


@convert_app.command("biggan-pytorch")
def biggan_pytorch(
    src: Path = typer.Argument(..., help="Folder with the authors' G.pth, D.pth, G_ema.pth and state_dict.pth."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to create (must not exist or be empty)."),
    suffix: str = typer.Option("", "--suffix", help="Which saved copy: --suffix _best0 reads G_best0.pth etc."),
    sets: Optional[list[str]] = SetOption,
) -> None:
    """Convert a checkpoint of the BigGAN authors' code (ajbrock/BigGAN-PyTorch, BigGAN.py)."""
    from rich.console import Console

    from smallgan.convert import check_output_folder, convert_biggan_pytorch, write_run

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    check_output_folder(out)
    converted = convert_biggan_pytorch(src, suffix, sets or [])
    for note in converted.notes:
        console.print(f"note: {note}")
    write_run(out, converted)
    m = converted.cfg.model
    print(f"wrote {out}: biggan {m.resolution} px, ch {m.ch}, d_ch {m.d_ch}, z {m.z_dim}"
          f"{' (hierarchical)' if m.hier else ''}, {m.n_classes} classes, attention G {m.g_attention} "
          f"D {m.d_attention}, from {converted.source['architecture_from']}")
    print(f"sample it: smallgan sample --run {out} --class 0 --grid;  inspect it: smallgan info --recipe "
          f"{out / 'recipe.toml'}")


@convert_app.command("hf-biggan-deep")
def hf_biggan_deep(
    src: Path = typer.Argument(..., help="pytorch-pretrained-BigGAN folder (pytorch_model.bin) or the .bin file."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder to create."),
) -> None:
    """huggingface/pytorch-pretrained-BigGAN (BigGAN-deep 128/256/512): recognised and refused, with the reason."""
    from smallgan.convert import refuse_hf_biggan_deep

    refuse_hf_biggan_deep(src)
