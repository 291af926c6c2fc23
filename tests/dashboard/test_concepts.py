"""Concept detection and the concept ranking, decoded from the dashboard, equal their tables:
detection's test-split scores per unit, and every row of concepts.parquet with its summary."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from saeflow.dashboard import build_dashboard
from saeflow.dashboard.artifacts import SaeArtifacts
from saeflow.errors import SaeflowError

from .decode import Dashboard
from .test_pack import nan_for_none, rows


def f1_order(r) -> tuple:
    """Best F1 first, undefined F1 last."""
    return (r["f1"] is None, -(r["f1"] or 0))


def test_detection_keeps_each_units_best_test_scores(built):
    """Per unit its 10 (label, level) of highest test F1, with their test scores; both levels for
    "a", the document level only for "b"."""
    board = Dashboard(built.html)
    for sae, levels in zip(built.saes, (["document", "token"], ["document"])):
        payload, _ = board.index(sae.name)
        table = rows(sae.path("detection"))
        assert {r["level"] for r in table} == set(levels) and {r["split"] for r in table} == {"calibration", "test"}
        for unit in {r["unit"] for r in table}:
            expected = sorted((r for r in table if r["unit"] == unit and r["split"] == "test"), key=f1_order)[:10]
            _, arrays = board.chunk(sae.name, unit)
            at = board.rows(sae.name, "det", unit)
            assert [(payload["detection_labels"][arrays["det.label"][i]], payload["detection_levels"][arrays["det.level"][i]])
                    for i in at] == [(r["label"], r["level"]) for r in expected]
            for column in ("threshold", "precision", "recall", "f1", "auroc"):
                np.testing.assert_allclose(arrays[f"det.{column}"][at.start : at.stop].astype(float),
                                           nan_for_none(r[column] for r in expected), rtol=1e-3)
        assert any(r["f1"] is None for r in table)  # shown last, as no value


CONCEPT_ORDER = {"level": ["document", "token"], "criterion": ["f1", "auroc"], "source": ["sae", "dense"]}


def concept_order(r) -> tuple:
    """label, level, criterion, source, rank: the blob's order."""
    return (r["label"], *(CONCEPT_ORDER[c].index(r[c]) for c in ("level", "criterion", "source")), r["rank"])


def test_concepts_round_trip(built):
    """Every row of concepts.parquet, in the order the view shows them; "b" has none."""
    board = Dashboard(built.html)
    expected = sorted(rows(built.saes[0].path("concepts")), key=concept_order)
    got = board.concepts("a")
    assert len(got) == len(expected) == 3 * 2 * 2 * 2 * 3  # labels x levels x sources x criteria x top_n
    assert [{c: g[c] for c in ("label", "level", "source", "criterion", "rank", "unit", "sign")} for g in got] == \
        [{c: r[c] for c in ("label", "level", "source", "criterion", "rank", "unit", "sign")} for r in expected]
    for column in ("threshold", *(f"{s}_{m}" for s in ("calibration", "test") for m in ("precision", "recall", "f1", "auroc"))):
        np.testing.assert_allclose([g[column] for g in got], nan_for_none(r[column] for r in expected), rtol=1e-3)
    assert any(r["test_auroc"] is None for r in expected) and any(r["sign"] == -1 for r in expected)
    assert board.sae("b")["concepts"] is None


def test_concepts_summary_counts_where_the_sae_beats_dense_on_test(built):
    table = rows(built.saes[0].path("concepts"))
    best = {(r["label"], r["level"], r["criterion"], r["source"]): r[f"test_{r['criterion']}"]
            for r in table if r["rank"] == 1}
    ahead = {}
    for criterion in ("f1", "auroc"):
        pairs = [(best[k], best[(*k[:3], "dense")]) for k in best if k[2] == criterion and k[3] == "sae"]
        pairs = [(s, d) for s, d in pairs if s is not None and d is not None]
        ahead[criterion] = [sum(s > d for s, d in pairs), len(pairs)]
    summary = Dashboard(built.html).sae("a")["concepts"]
    assert {k: v for k, v in summary.items() if k != "blob"} == \
        {"labels": 3, "levels": ["document", "token"], "ahead": ahead}
    assert 0 < ahead["f1"][0] < ahead["f1"][1] == 6  # the view has both outcomes to show


def test_concept_tables_that_break_the_contract_fail_clearly(built, tmp_path):
    sae = built.saes[0]
    old = pq.read_table(sae.path("detection")).drop_columns(["level", "split", "threshold"])
    pq.write_table(old, tmp_path / "detection.parquet")
    with pytest.raises(SaeflowError, match=r"detection.parquet: lacks columns \['level', 'split', 'threshold'\]"):
        build_dashboard(tmp_path / "d.html", built.run, [SaeArtifacts("a", {**sae.paths, "detection": tmp_path / "detection.parquet"})])
    table = pq.read_table(sae.path("concepts"))
    for column, value, message in (("source", "neuron", r"source must be one of \('sae', 'dense'\)"),
                                   ("unit", 48, "feature ids must lie in 0..47")):
        at = table.schema.get_field_index(column)
        values = table[column].to_pylist()
        values[table["source"].to_pylist().index("sae")] = value
        pq.write_table(table.set_column(at, column, pa.array(values, table.schema.field(column).type)), tmp_path / "c.parquet")
        with pytest.raises(SaeflowError, match=message):
            build_dashboard(tmp_path / "d.html", built.run, [SaeArtifacts("a", {**sae.paths, "concepts": tmp_path / "c.parquet"})])
