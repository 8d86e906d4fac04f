"""The salience experiment: its golden report and its typed options."""

from __future__ import annotations

from inline_snapshot import snapshot

from biastransfer.plan import parse_study
from report_snapshot import page_snapshot
from tiny_study import tiny_study_dict


def test_report_golden(kind_report) -> None:
    assert page_snapshot(kind_report("salience").html) == snapshot(
        {
            "summary": {"numbers": ["2", "2", "0", "2", "1", "1", "0", "95"]},
            "reading": {"headings": ["Reading"], "tables": [], "figures": [], "numbers": [[]]},
            "salience": {
                "headings": ["Salience relative to the sensitive attribute"],
                "tables": [
                    [
                        ["attribute", "salience", "set X = a", "inverse X = not a", "AUC(a)", "AUC(X)", "seeds"],
                        ["t0", "0.472", "0.499", "0.445", "0.519", "0.546", "1"],
                    ]
                ],
                "figures": ["plots/salience.png"],
                "numbers": [["0.5", "0.5"]],
            },
            "results": {
                "headings": [
                    "Results per setting",
                    "salience",
                ],
                "tables": [
                    [
                        ["task", "base", "inverse", "seeds", "auc_a", "auc_x", "salience"],
                        ["t0", "scratch", "False", "1", "0.515", "0.516", "0.499"],
                        ["t0", "scratch", "True", "1", "0.522", "0.577", "0.445"],
                    ]
                ],
                "figures": [],
                "numbers": [["95"], []],
            },
        }
    )


def test_options_reach_the_runs_and_runs_come_in_set_and_inverse_pairs() -> None:
    study = tiny_study_dict()
    study["experiments"] = [
        {
            "name": "sal",
            "kind": "salience",
            "tasks": ["t0", "t1"],
            "n_train": 32,
            "seeds": [0, 1],
            "options": {"test_size": 100, "lr": 0.01},
        }
    ]
    specs = parse_study(study).expand()
    assert len(specs) == 2 * 2 * 2
    assert {(s.level, s.options["inverse"]) for s in specs} == {(1.0, False), (0.0, True)}
    assert {s.test_size for s in specs} == {100} and {s.test for s in specs} == {0.5}
    assert all(s.options["lr"] == 0.01 for s in specs)
