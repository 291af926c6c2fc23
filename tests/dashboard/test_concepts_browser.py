"""Concepts in a real headless Chromium (see test_browser.py): the concepts view, the feature
page's concepts card, and concept detection's test scores."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest

from .chromium import assert_nothing_injected, needs_chromium
from .conftest import CONCEPTS_TOP_N
from .test_concepts import concept_order, f1_order

pytestmark = needs_chromium()


def assert_score(text: str, value) -> None:
    """A score as the page shows it: 3 significant digits of its float16, "–" where undefined."""
    if value is None:
        assert text == "–"
    else:
        assert float(text) == pytest.approx(value, rel=6e-3, abs=1e-4)


SHOWN_CONCEPTS = """() => [...document.querySelectorAll('#concepts tbody.concept-group')].map(g => ({
    label: g.querySelector('.concept-label').textContent, level: g.querySelector('.concept-heading .badge').textContent,
    verdict: g.querySelector('.concept-verdict').firstChild.textContent,
    ahead: g.querySelector('.concept-verdict .badge')?.textContent,
    rows: [...g.querySelectorAll('tr')].slice(1).map(tr => [...tr.children].map(td => td.textContent))}))"""


def test_concepts_view_sets_sae_units_beside_dense_dimensions(page, built):
    """Per (label, level, criterion) of concepts.parquet, by rank: the SAE unit (a link, with its
    label) beside the dense dimension with its sign, calibration and test scores of both, and the
    rank-1 rows' test scores compared; a corpus label of markup reads as typed."""
    table = sorted(pq.read_table(built.saes[0].path("concepts")).to_pylist(), key=concept_order)
    groups = {}
    for r in table:
        groups.setdefault((r["label"], r["level"], r["criterion"]), {}).setdefault(r["source"], []).append(r)
    page.open()
    page.page.wait_for_selector("#overview .concepts-summary")
    assert page.page.locator("#nav-concepts").is_visible()
    page.page.locator("#nav-concepts").click()
    page.page.wait_for_selector("#concepts .concept-table")
    assert page.page.evaluate("location.hash") == "#view=concepts"
    assert page.page.locator("#concepts .concepts-sae").count() == 1  # "b" has no concept ranking
    shown = page.page.evaluate(SHOWN_CONCEPTS)
    assert [(g["label"], g["level"]) for g in shown] == [k[:2] for k in groups]
    assert "<b>bold</b>" in [g["label"] for g in shown]
    name = {"f1": "F1", "auroc": "AUROC"}
    for got, ((_, _, criterion), sides) in zip(shown, groups.items()):
        sae, dense = sides["sae"], sides["dense"]
        s, d = (side[0][f"test_{criterion}"] for side in (sae, dense))
        verdict = re.fullmatch(rf"best SAE test {name[criterion]} (\S+) vs best dense (\S+)", got["verdict"])
        assert_score(verdict[1], s)
        assert_score(verdict[2], d)
        if s is not None and d is not None:
            assert got["ahead"] == ("SAE ahead" if s > d else "dense ahead")
        assert len(got["rows"]) == len(sae) == len(dense) == CONCEPTS_TOP_N
        for cells, a, b in zip(got["rows"], sae, dense):
            assert cells[0] == str(a["rank"]) == str(b["rank"])
            assert cells[1].startswith(f"#{a['unit']}")
            assert cells[6] == f"dim {b['unit']} {'+' if b['sign'] == 1 else '−'}"
            for at, row in ((2, a), (7, b)):
                for k, column in enumerate(("calibration_f1", "test_f1", "calibration_auroc", "test_auroc")):
                    assert_score(cells[at + k], row[column])
    assert_nothing_injected(page)
    first = page.page.locator("#concepts .concept-unit a").first  # keyboard: focus the first unit, Enter
    unit = first.inner_text().lstrip("#")
    first.focus()
    page.page.keyboard.press("Enter")
    page.wait_title(f"Feature {unit}")
    page.page.go_back()
    page.page.wait_for_selector("#concepts:not([hidden]) .concept-table")
    page.check()


def test_feature_page_lists_the_concepts_it_detects(page, built):
    table = sorted(pq.read_table(built.saes[0].path("concepts")).to_pylist(), key=concept_order)
    sae_rows = [r for r in table if r["source"] == "sae"]
    f = max({r["unit"] for r in sae_rows}, key=lambda u: sum(r["unit"] == u for r in sae_rows))
    mine = [r for r in sae_rows if r["unit"] == f]
    dense = {(r["label"], r["level"], r["criterion"]): r for r in table if r["source"] == "dense" and r["rank"] == 1}
    page.open(f"#sae=a&feature={f}")
    page.page.wait_for_selector(".concepts-card tr")
    shown = page.page.evaluate("""() => [...document.querySelectorAll('.concepts-card tr')].slice(1).map(tr =>
        [...tr.children].map(td => td.textContent))""")
    name = {"f1": "F1", "auroc": "AUROC"}
    assert len(shown) == len(mine) > 1
    for cells, r in zip(shown, mine):
        assert cells[0] == r["label"] + r["level"]  # the level marked below the label
        assert cells[1] == f"#{r['rank']} {name[r['criterion']]}"
        assert_score(cells[2], r[f"calibration_{r['criterion']}"])
        assert_score(cells[3], r[f"test_{r['criterion']}"])
        assert_score(cells[4], dense[(r["label"], r["level"], r["criterion"])][f"test_{r['criterion']}"])
    other = next(u for u in json.loads(built.saes[0].path("unit_map").read_text())["kept_units"]
                 if u not in {r["unit"] for r in sae_rows})
    page.go(f"#sae=a&feature={other}")
    page.wait_title(f"Feature {other}")
    assert "Not among this SAE's best units for any label" in page.page.locator(".concepts-card").inner_text()
    page.go("#sae=b&feature=0")
    page.wait_title("Feature 0")
    assert page.page.locator(".concepts-card").count() == 0  # "b" has no concept ranking
    page.check()


def test_detection_card_shows_test_scores_of_both_levels(page, built):
    """Per unit its best (label, level) by test F1, with their test scores; "b" has the document
    level only."""
    for sae in built.saes:
        table = pq.read_table(sae.path("detection")).to_pylist()
        unit = table[0]["unit"]
        expected = sorted((r for r in table if r["unit"] == unit and r["split"] == "test"), key=f1_order)[:10]
        page.open(f"#sae={sae.name}&feature={unit}")
        page.page.wait_for_selector(".detection tr")
        shown = page.page.evaluate("""() => [...document.querySelectorAll('.detection tr')].slice(1).map(tr =>
            [tr.title, ...[...tr.children].map(td => td.textContent)])""")
        assert [cells[1] for cells in shown] == [r["label"] + r["level"] for r in expected]
        for cells, r in zip(shown, expected):
            assert_score(cells[0].removeprefix("threshold "), r["threshold"])
            for k, column in enumerate(("precision", "recall", "f1", "auroc")):
                assert_score(cells[2 + k], r[column])
        assert "On the test split" in page.page.locator(".detection").inner_text()
    page.check()
