"""Rewrite a results folder's keys to include the data's fingerprint (once, by ``ResultStore.upgrade``).

Before the fingerprint was part of the run and search keys (:mod:`biastransfer.spec`), a folder's keys said
what a run was but not which data it ran on. Every run recorded that in its provenance (``data_hash``), so the
rewrite is exact: each run's spec gains ``data_fingerprint`` and its key is recomputed (its artifacts follow);
each stored search gains the fingerprint of the dataset its runs used and is rekeyed. A search whose dataset no
run or more than one version of the data used cannot be attributed and is dropped (it is searched again when
needed; nothing is pooled by guessing). One transaction: a folder is rewritten entirely or not at all.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from biastransfer.spec import RunSpec, content_key


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def put_data_in_keys(conn: sqlite3.Connection) -> dict[str, int]:
    """Rewrite the runs and searches of the store behind ``conn``; return how many runs were rekeyed, how many
    had no recorded fingerprint (kept under their old key: they are never part of a study on known data), and how
    many searches were rekeyed and dropped."""
    fingerprints: dict[str, set[str]] = {}
    run_moves: list[tuple[str, str, str]] = []
    unknown = 0
    for key, spec_text, provenance_text in conn.execute("SELECT key, spec, provenance FROM runs").fetchall():
        spec, provenance = json.loads(spec_text), json.loads(provenance_text)
        fingerprint = spec.get("data_fingerprint") or provenance.get("data_hash")
        if not fingerprint:
            unknown += 1
            continue
        fingerprints.setdefault(_canonical(spec.get("dataset")), set()).add(fingerprint)
        if spec.get("data_fingerprint"):
            continue
        spec["data_fingerprint"] = fingerprint
        run_moves.append((RunSpec.from_dict(spec).key, _canonical(spec), key))
    search_moves: list[tuple[str, str, str]] = []
    dropped: list[str] = []
    for key, record_text in conn.execute("SELECT key, spec FROM hparams").fetchall():
        record = json.loads(record_text)
        if "data_fingerprint" in record:
            continue
        payload = {k: v for k, v in record.items() if k != "base_name"}
        known = fingerprints.get(_canonical(payload.get("dataset")), set())
        if len(known) != 1 or content_key(payload) != key:
            dropped.append(key)
            continue
        fingerprint = next(iter(known))
        search_moves.append((content_key({**payload, "data_fingerprint": fingerprint}),
                             _canonical({**record, "data_fingerprint": fingerprint}), key))
    conn.execute("BEGIN IMMEDIATE")
    try:
        for new, spec_text, old in run_moves:
            conn.execute("UPDATE runs SET key = ?, spec = ? WHERE key = ?", (new, spec_text, old))
            conn.execute("UPDATE artifacts SET key = ? WHERE key = ?", (new, old))
        for new, record_text, old in search_moves:
            conn.execute("UPDATE hparams SET key = ?, spec = ? WHERE key = ?", (new, record_text, old))
        for old in dropped:
            conn.execute("DELETE FROM hparams WHERE key = ?", (old,))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return {"runs": len(run_moves), "runs_without_fingerprint": unknown, "searches": len(search_moves),
            "searches_dropped": len(dropped)}
