"""``demo_seconds``: the bundled demo study in a subprocess from an empty cache, after the same study on the engine
before the speed issue (:mod:`demo_baseline`), with a run-by-run comparison of the two result stores."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench_common import DETAILS, emit, note
from bench_trainings import bundled_study


def bench_demo(quick: bool, baseline: str | None) -> None:
    """The bundled demo (``demo_tiny`` with --quick) from an empty cache; with ``baseline``, first the same study
    on the code of that commit (``demo_baseline``), then ours, and both stores compared run by run."""
    from demo_baseline import compare_results, export_source, time_study
    from protocol import original_protocol_trainings, our_protocol_trainings

    from biastransfer.store.sqlite import ResultStore

    name = "demo_tiny" if quick else "demo"
    study_file = Path(__file__).resolve().parent.parent / "src/biastransfer/studies" / f"{name}.yaml"
    with tempfile.TemporaryDirectory(prefix="bt-bench-demo-") as tmp:
        work = Path(tmp)
        before = None
        if baseline:
            try:
                source = export_source(baseline, work / "baseline-src")
            except (subprocess.CalledProcessError, OSError) as exc:
                note(f"baseline {baseline} not available ({exc}); timing ours only")
            else:
                before = time_study("baseline", study_file, work, pythonpath=source)
                if before.returncode != 0:
                    note(f"baseline demo failed ({before.returncode}): {before.stderr}")
                    before = None
        ours = time_study("ours", study_file, work)
        if ours.returncode != 0:
            note(f"demo failed ({ours.returncode}): {ours.stderr}")
            emit(f"{name}_seconds", "failed")
            return
        emit(f"{name}_seconds", ours.seconds, "{:.1f}")
        details: dict[str, Any] = {"ours": vars(ours)}
        if before is not None:
            emit(f"{name}_seconds_baseline_{baseline}", before.seconds, "{:.1f}")
            emit(f"{name}_speedup_vs_baseline", before.seconds / ours.seconds, "{:.2f}")
            same = compare_results(before.out_dir, ours.out_dir)
            emit(f"{name}_baseline_runs_matched", f"{same['matched']}/{same['runs_b']}")
            emit(f"{name}_baseline_max_result_difference", same["max_abs_difference"], "{:.3g}")
            note(f"load average: baseline {before.load_before:.1f} -> {before.load_after:.1f}, "
                 f"ours {ours.load_before:.1f} -> {ours.load_after:.1f}")
            details.update(baseline=vars(before), comparison=same)
        store = ResultStore(ours.out_dir)
        last = store.get_meta("last_run") or {}
        store.close()
        study = bundled_study(f"{name}.yaml")
        planned = our_protocol_trainings(study)["total"]
        DETAILS[name] = {**details, "planned_trainings": planned}
        if "trainings" in last:
            emit(f"{name}_trainings_measured", last["trainings"])
            emit(f"{name}_trainings_planned", planned)
            emit(f"{name}_trainings_ratio", last["trainings"] / original_protocol_trainings(study), "{:.4f}")

