"""Adaptive blocks (a kind with the ``Adaptive`` capability: :meth:`Adaptive.next_runs`, docs/recommend.md): the
driver's loop that asks such a block for its next runs, adopts the equal runs the folder already has, and trains the
rest within the block's budget. Only the driver calls it; the store is written here on the driver's behalf (adopted
runs), and trainings go through the ``train`` callable the driver passes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from rich.console import Console

from biastransfer.plan import Block, result_key
from biastransfer.spec import RunSpec
from biastransfer.store.sqlite import ResultStore


def search_block(store: ResultStore, block: Block, specs: list[RunSpec], max_new: int | None,
                 train: Callable[[list[RunSpec]], int], console: Console) -> tuple[int, int, int]:
    """Drive one adaptive block (:meth:`Adaptive.next_runs`): ask it for its next runs given those finished,
    adopt the equal runs the folder already has (:func:`adopt`), train the rest (``train(specs)`` runs
    them and returns its trainings), and ask again, until it wants
    nothing or its budget (:meth:`Adaptive.run_budget`, and ``max_new``) of new runs is spent. Returns (new
    runs, trainings, runs adopted)."""
    limits = [n for n in (block.plugin.run_budget(block.fields), max_new) if n is not None]
    limit = min(limits) if limits else None
    keys = {s.key for s in specs}
    spent = trainings = adopted = 0
    index: dict[str, dict[str, Any]] | None = None
    while True:
        results = {r["key"]: r["result"] for r in store.runs() if r["key"] in keys}
        want = [s for s in block.plugin.next_runs(block.fields, specs, results) or [] if s.key not in results]
        if not want:
            break
        if index is None:
            index = stored_index(store)
        if n := adopt(store, want, index):
            adopted += n
            continue
        room = want if limit is None else want[: limit - spent]
        if not room:
            console.print(f"[yellow]{block.name}:[/] its budget of {limit} new runs is spent; the answer is read "
                          "from the runs done (rerun with a larger budget to go on)", highlight=False)
            break
        trainings += train(room)
        spent += len(room)
    return spent, trainings, adopted


def stored_index(store: ResultStore, keep: Callable[[str], bool] | None = None) -> dict[str, dict[str, Any]]:
    """The stored runs (of the kinds ``keep`` accepts; default every kind) by the key of their result."""
    out: dict[str, dict[str, Any]] = {}
    for run in store.runs():
        if keep is None or keep(run["spec"]["kind"]):
            with contextlib.suppress(TypeError, ValueError):
                if (key := result_key(RunSpec.from_dict(run["spec"]))) is not None:
                    out[key] = run
    return out


def adopt(store: ResultStore, specs: list[RunSpec], index: dict[str, dict[str, Any]]) -> int:
    """Store, under each spec's own key, the result of an equal run already in the folder (same
    :func:`~biastransfer.plan.result_key`, e.g. a correlation sweep's run on the same settings), marked
    ``reused_from`` its key; trains nothing. Returns how many were adopted."""
    n = 0
    for spec in specs:
        found = index.get(result_key(spec) or "")
        if found is None or found["key"] == spec.key:
            continue
        try:
            artifacts = store.artifacts(found["key"])
        except KeyError:
            artifacts = {}
        store.add_run(spec.key, spec.to_dict(), {**found["result"], "reused_from": found["key"]},
                      {**found["provenance"], "reused_from": found["key"]}, artifacts, found["seconds"])
        n += 1
    return n
