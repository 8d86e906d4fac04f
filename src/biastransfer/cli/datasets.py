"""``biastransfer datasets``: list the registered datasets and check a local copy of one.

Mounted by the main CLI with ``app.add_typer(datasets_app, name="datasets")``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
import yaml
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from biastransfer import plugins  # noqa: F401  (registers every dataset)
from biastransfer.data.registry import DATASETS, load_dataset
from biastransfer.data.table import LABEL, SPLITS, DataError, LoadedDataset
from biastransfer.paths import data_cache_dir
from biastransfer.registry import UnknownNameError

__all__ = ["datasets_app", "parse_param"]

datasets_app = typer.Typer(help="List registered datasets and check a local copy of one.",
                           no_args_is_help=True)


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (``3``, ``0.2``, ``true``, ``[a, b]``, ``{x: 1}``, text)."""
    if "=" not in text:
        raise typer.BadParameter(f"expected key=value, got {text!r}", param_hint="--param")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise typer.BadParameter(f"empty parameter name in {text!r}", param_hint="--param")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key, parsed


@datasets_app.command("list")
def list_datasets() -> None:
    """Registered datasets, what they are and whether they need --root."""
    table = Table(title="datasets")
    table.add_column("name", style="bold")
    table.add_column("needs --root")
    table.add_column("description")
    for name, cls in DATASETS.items():
        table.add_row(Text(name), "yes" if cls.needs_root else "no", Text(cls.description))
    Console().print(table)


def _rate(values: np.ndarray) -> str:
    known = values[values >= 0]
    if known.size == 0:
        return "-"
    unknown = values.size - known.size
    return f"{known.mean():.3f}" + (f" ({unknown} ?)" if unknown else "")


def report(data: LoadedDataset, console: Console, split: str | None = None) -> None:
    """Print examples per split, attribute prevalence per split and the a×y cells of every task."""
    t = data.table
    frame = t.frame
    splits = [*(s for s in SPLITS if t.has_split(s)),
              *sorted(set(t.frame['split']) - set(SPLITS))]
    console.print(Text(f"{data.name}: {len(t)} examples, images {tuple(data.images.array.shape)} uint8, "
                       f"fingerprint {data.fingerprint}"))
    console.print(Text(f"sensitive attribute a = {t.sensitive} (a=0: {t.group_names[0]}, "
                       f"a=1: {t.group_names[1]}); {len(t.tasks)} task(s)"))
    sizes = Table(title="examples per split")
    for s in splits:
        sizes.add_column(s, justify="right")
    sizes.add_row(*(str(int((frame["split"] == s).sum())) for s in splits))
    console.print(sizes)

    prev = Table(title="prevalence (share of 1s among known values)")
    prev.add_column("attribute")
    prev.add_column("role")
    for s in splits:
        prev.add_column(s, justify="right")
    masks = {s: (frame["split"] == s).to_numpy() for s in splits}
    for attr in t.attributes:
        if t.is_multiclass(attr):
            continue
        col = frame[attr].to_numpy()
        role = "a" if attr == t.sensitive else ("task" if attr in t.tasks else "")
        prev.add_row(Text(attr), role, *(_rate(col[masks[s]]) for s in splits))
    console.print(prev)
    if t.classes:
        per_class = Table(title=f"examples per class ({len(t.classes)} classes, column {LABEL!r})")
        per_class.add_column("class")
        for s in splits:
            per_class.add_column(s, justify="right")
        labels = frame[LABEL].to_numpy()
        for k, name in enumerate(t.classes):
            per_class.add_row(Text(name), *(str(int((labels[masks[s]] == k).sum())) for s in splits))
        console.print(per_class)

    rows = np.ones(len(frame), dtype=bool) if split is None else (frame["split"] == split).to_numpy()
    where = "all splits" if split is None else f"split {split!r}"
    cells = Table(title=f"a × y cells per task ({where}); c = N(a=1, y=1) / N(y=1)")
    for name in ("task", "a=0,y=0", "a=0,y=1", "a=1,y=0", "a=1,y=1", "c"):
        cells.add_column(name, justify="right" if name != "task" else "left")
    a = frame[t.sensitive].to_numpy()[rows]
    for task in t.tasks:
        y = frame[task].to_numpy()[rows]
        n = [int(((a == ai) & (y == yi)).sum()) for ai in (0, 1) for yi in (0, 1)]
        pos = n[1] + n[3]
        cells.add_row(Text(task), *map(str, n), f"{n[3] / pos:.3f}" if pos else "-")
    console.print(cells)


_ROOT_HELP = "the dataset's folder"
_PARAM_HELP = "dataset parameter key=value (value read as YAML); repeatable"
_SPLIT_HELP = "count the a×y cells in one split only"


@datasets_app.command("check")
def check(
    name: Annotated[str, typer.Argument(help="registered dataset name (see `datasets list`)")],
    root: Annotated[Path | None, typer.Option("--root", help=_ROOT_HELP)] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help=_PARAM_HELP)] = None,
    resolution: Annotated[int, typer.Option("--resolution", min=1, help="decoded image side")] = 32,
    cache_dir: Annotated[Path | None, typer.Option(
        "--cache-dir", help="cache folder, as for 'run' (default: $BIASTRANSFER_CACHE or ~/.cache/biastransfer); "
                            "images are decoded into its data/ folder, where 'run' finds them")] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="drop missing/corrupt images")] = False,
    split: Annotated[str | None, typer.Option("--split", help=_SPLIT_HELP)] = None,
) -> None:
    """Load a dataset; print its splits, attribute prevalences and a×y cells. Exit 1 if anything is wrong."""
    params = dict(parse_param(p) for p in (param or []))
    if skip_bad:
        params["skip_bad"] = True
    if split is not None and split not in SPLITS and not split.startswith("pretrain"):
        raise typer.BadParameter(f"unknown split {split!r}; allowed: {', '.join(SPLITS)} or a dataset's own "
                                 f"pretraining pool (pretrain_…)", param_hint="--split")
    console = Console()
    err = Console(stderr=True)
    handler = RichHandler(console=err, show_path=False)
    pkg_logger = logging.getLogger("biastransfer")
    old_level = pkg_logger.level
    pkg_logger.addHandler(handler)
    pkg_logger.setLevel(logging.INFO)
    try:
        data = load_dataset(name, root=root, cache_dir=data_cache_dir(cache_dir),
                            resolution=resolution, params=params)
        if split is not None:
            data.table.split_indices(split)
    except (DataError, UnknownNameError, ValueError, TypeError, OSError) as exc:
        err.print(Text("error: ", style="bold red") + Text(str(exc)))
        raise typer.Exit(1) from None
    finally:
        pkg_logger.removeHandler(handler)
        pkg_logger.setLevel(old_level)
    report(data, console, split)
