"""Writing a results folder's report (``run``, ``report``, ``recommend``)."""

from __future__ import annotations

from pathlib import Path

from biastransfer.cli.console import err
from biastransfer.cli.console import fail as _fail


def _base_pools(stored: list[dict]) -> dict[str, dict]:
    """What the runs recorded of each trained base: its cache key and the pool it trained on (split, number of
    rows, fingerprint of the rows)."""
    out: dict[str, dict] = {}
    for row in stored:
        for name, info in (row["provenance"].get("bases") or {}).items():
            if isinstance(info, dict) and "pool" in info:
                out.setdefault(name, {"key": info.get("key"), "pool": info["pool"]})
    return out


def write_report(out_dir: Path, quiet: bool, target: Path | None = None) -> Path:
    """Write DIR/report.html (or into ``target``) from the current study's runs in DIR."""
    from biastransfer.cli.export import left_out, open_store
    from biastransfer.report.page import build_report
    from biastransfer.store.current import split_runs
    from biastransfer.store.export import hparams_frame, runs_frame
    from biastransfer.versions import package_versions

    store = open_store(out_dir)
    stored, others = split_runs(store)
    runs, hparams = runs_frame(store, stored), hparams_frame(store)
    study = store.get_meta("study") or {}
    last = store.get_meta("last_run") or {}
    provenance = {"versions": package_versions(), "study_yaml": store.get_meta("study_yaml", ""),
                  "data_hash": sorted({r["provenance"].get("data_hash", "") for r in stored}),
                  "seeds": sorted(set(runs["seed"].tolist())), "base_roles": store.get_meta("roles") or {},
                  "bases": _base_pools(stored), "last_run": last}
    if others:
        provenance["runs left out"] = left_out(others, study.get("name", "?"))
        if not quiet:
            err.print(f"[yellow]note:[/] {provenance['runs left out']}")
    store.close()
    if runs.empty:
        _fail(f"no finished runs in {out_dir}; nothing to report")
    target = out_dir if target is None else target
    if target.exists() and not target.is_dir():
        _fail(f"-o {target} is a file: give a folder for report.html and plots/")
    try:
        path = build_report(runs, target, title=f"biastransfer report: {study.get('name', out_dir.name)}",
                            hparams=hparams, provenance=provenance)
    except OSError as exc:
        _fail(f"cannot write the report into {target} ({exc.strerror or exc}): give a writable folder with -o DIR")
    if not quiet:
        err.print(f"Report: {path}")
    return path
