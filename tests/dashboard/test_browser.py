"""The dashboard in a real headless Chromium, opened from file:// with the network off.

Skipped only where no chromium binary exists (CI installs Debian's); with one present these
must run. Every test also checks the page logged no error, opened no dialog and requested
nothing but its own file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from .chromium import Watched, assert_nothing_injected, needs_chromium
from .decode import assert_shown_acts
from .conftest import (DEAD, LLM_NEEDLE, NEEDLE, NEEDLE_LABEL, XSS_FEATURE, XSS_IMG, XSS_LABEL, XSS_LABEL_FEATURE,
                       XSS_PROMPT, XSS_SCRIPT, XSS_STEERED)
from .test_pack import expected_pieces

pytestmark = needs_chromium()

ARTIFACTS = Path(__file__).parent / "artifacts"  # screenshots for people to look at (git-ignored)

# Per example: each token's piece, whether it is shown as a special token, its activation, the
# max's index, and the strip's text as rendered (innerText: what people read and copy).
SHOWN_EXAMPLES = """sel => [...document.querySelectorAll(sel + ' .ex')].map(ex => {
  const toks = [...ex.querySelectorAll('.tok')];
  return {tokens: toks.map(t => t.textContent), special: toks.map(t => t.classList.contains('special')),
          acts: toks.map(t => Number(t.dataset.act)), max: toks.findIndex(t => t.classList.contains('max')),
          text: ex.querySelector('.strip').innerText};
})"""


def test_overview_loads_offline(page, built):
    page.open()
    page.page.wait_for_selector("#overview .metrics")
    names = page.page.locator("#overview .metrics td.name").all_text_contents()
    assert names == ["a", "b"]
    assert page.page.locator("#overview .plot").count() == 4 + 2  # training curves + densities per SAE
    assert "16 documents, 1,536 tokens" in page.page.locator("#overview").inner_text()
    page.check()


def test_deep_link_shows_the_parquet_examples(page, built):
    page.open("#sae=a&feature=0")
    page.page.wait_for_selector(".top-examples .ex")
    table = pq.read_table(built.saes[0].path("top_examples")).to_pylist()
    expected = sorted((r for r in table if r["feature"] == 0), key=lambda r: r["rank"])
    shown = page.page.evaluate(SHOWN_EXAMPLES, ".top-examples")
    assert len(shown) == len(expected) == 20
    for got, row in zip(shown, expected):
        assert (got["tokens"], got["special"]) == expected_pieces(built.corpus, row)
        assert_shown_acts(got["acts"], row["acts"], row["activation"])
        assert got["max"] == int(np.argmax(row["acts"]))
    quantile = pq.read_table(built.saes[0].path("quantile_examples")).to_pylist()
    bands = {r["band"] for r in quantile if r["feature"] == 0}
    assert page.page.locator(".quantile-examples .band-head").count() == len(bands)
    assert page.page.locator(".quantile-examples .ex").count() == sum(r["feature"] == 0 for r in quantile)
    page.check()


def test_strips_show_the_documents_text_as_written(page, built):
    """Each strip reads as the document: its content tokens' text is exactly the document's text
    from the first one's start to the last one's end (spaces, tabs, line breaks, tokens glued into
    one word), and the special token [CLS] stands apart, no part of it."""
    texts = pq.read_table(built.run.documents).column("text").to_pylist()
    tokens = pq.read_table(built.run.tokens)
    doc, start, end = (tokens[c].to_numpy() for c in ("doc", "start", "end"))
    L = built.corpus.spec.seq_len
    top = pq.read_table(built.saes[0].path("top_examples")).to_pylist()
    line_breaks = specials = 0
    for f in (0, 1, 2, NEEDLE):
        page.open(f"#sae=a&feature={f}")
        page.page.wait_for_selector(".top-examples .ex")
        rows = sorted((r for r in top if r["feature"] == f), key=lambda r: r["rank"])
        for got, row in zip(page.page.evaluate(SHOWN_EXAMPLES, ".top-examples"), rows, strict=True):
            first = row["seq"] * L + row["pos"] - int(np.argmax(row["acts"]))
            content = [j for j, special in enumerate(got["special"]) if not special]
            lo, hi = first + content[0], first + content[-1]
            written = texts[doc[lo]][start[lo] : end[hi]]
            assert "".join(got["tokens"][j] for j in content) == written
            assert got["text"] == ("[CLS]" if got["special"][0] else "") + written
            line_breaks += "\n" in written
            specials += got["special"][0]
        if page.page.locator(".top-examples .nl").count():  # a line break is also marked, by CSS only
            assert page.page.evaluate("getComputedStyle(document.querySelector('.nl'), '::before').content") == '"↵"'
        if page.page.locator(".top-examples .tok.special").count():
            style = "getComputedStyle(document.querySelector('.tok.special')).borderStyle"
            assert page.page.evaluate(style) == "dashed"
    assert line_breaks and specials
    page.check()


def test_wordpiece_text_and_tokens_show_no_marks(browser, built_wordpiece):
    page = Watched(browser, built_wordpiece.html).open("#sae=wp&feature=0")
    page.page.wait_for_selector(".top-examples .ex")
    shown = page.page.evaluate(SHOWN_EXAMPLES, ".top-examples")
    assert [got["text"] for got in shown] == ["[CLS]Tokenization of unbelievable", "[CLS]Tokenization again.",
                                              "[CLS]Tokenization![SEP]"]
    chips = page.page.locator(".chip.pos .chip-token")
    assert chips.all_inner_texts() == ["ization"] and chips.first.get_attribute("class") == "chip-token inner"
    assert "##" not in page.page.locator("#feature").inner_text()
    page.check()
    page.page.close()


def test_search_by_label_id_and_token(page, built):
    page.open("#sae=a")
    page.page.wait_for_selector("#list .row")
    search = page.page.locator("#search")
    search.fill(NEEDLE_LABEL[:9].upper())
    assert page.list_ids() == [NEEDLE]
    search.fill("12")
    assert page.list_ids()[0] == 12
    search.fill("onerror=alert(1)")  # a token where feature XSS_FEATURE peaks
    assert XSS_FEATURE in page.list_ids()
    search.fill(NEEDLE_LABEL)
    page.page.locator("#list .row").first.click()
    page.wait_title(f"Feature {NEEDLE}")
    assert page.page.evaluate("location.hash") == f"#sae=a&feature={NEEDLE}"
    page.check()


def test_hash_changes_navigate_and_history_works(page, built):
    page.open("#sae=a&feature=1")
    page.wait_title("Feature 1")
    page.go("#sae=b&feature=2")
    page.wait_title("Feature 2")
    assert "b · layer-5" in page.page.locator("#feature .badges").inner_text()
    neighbour = page.page.locator("#feature .neighbours a").first
    other = int(neighbour.inner_text().lstrip("#"))
    neighbour.click()
    page.wait_title(f"Feature {other}")
    page.page.go_back()
    page.wait_title("Feature 2")
    page.page.go_back()
    page.wait_title("Feature 1")
    assert page.page.locator("#sae-select").input_value() == "a"
    page.page.go_forward()
    page.wait_title("Feature 2")
    page.page.locator("#list").press("ArrowDown")
    page.wait_title("Feature 3")
    page.go("#sae=a&feature=999")
    page.page.wait_for_selector("#feature .empty")
    assert "no feature 999" in page.page.locator("#feature .empty").inner_text()
    page.check()


def test_markup_in_the_data_stays_text(page, built):
    page.open(f"#sae=a&feature={XSS_FEATURE}")
    page.page.wait_for_selector(".top-examples .ex")
    first = page.page.evaluate(SHOWN_EXAMPLES, ".top-examples")[0]
    assert XSS_IMG in first["text"] and XSS_SCRIPT in first["text"]
    page.go(f"#sae=a&feature={XSS_LABEL_FEATURE}")
    page.wait_title(f"Feature {XSS_LABEL_FEATURE}")
    assert page.page.locator("#feature .tfidf-label").inner_text() == XSS_LABEL
    page.page.wait_for_timeout(300)  # time for any injected handler to fire
    injected = page.page.evaluate("""() => ({
        img: document.querySelectorAll('img').length,
        b: document.querySelectorAll('b').length,
        scripts: document.querySelectorAll('script').length,
        blobs: document.querySelectorAll('script[type="application/octet-stream"]').length})""")
    assert injected["img"] == 0 and injected["b"] == 0
    assert injected["scripts"] == injected["blobs"] + 2  # manifest and the page's own script
    assert "<b>bold</b>" in page.page.locator("#feature").inner_text()  # a document label, in detection
    page.check()


def test_filters_sort_and_virtual_list(page, built):
    page.open("#sae=a")
    page.page.wait_for_selector("#list .row")
    assert 0 < page.page.locator("#list .row").count() < 48  # only the rows in view exist
    page.page.select_option("#filter", "dead")
    assert page.list_ids() == [DEAD]
    assert page.page.locator("#list-count").inner_text() == "1 of 48 features"
    page.page.select_option("#filter", "pruned")
    kept = json.loads(built.saes[0].path("unit_map").read_text())["kept_units"]
    assert page.list_ids() == [f for f in range(48) if f not in kept]
    page.page.select_option("#filter", "all")
    page.page.select_option("#sort", "density")
    density = pq.read_table(built.saes[0].path("feature_stats"))["density"].to_numpy()
    assert page.list_ids()[0] == int(np.argmax(density))
    page.page.select_option("#sort", "max")
    page.scroll_to_end()
    page.wait_last_row(DEAD)  # a dead feature has no max: it sorts last
    page.page.select_option("#sort", "id")
    page.scroll_to_end()
    page.wait_last_row(47)  # drawn only once scrolled into view
    page.check()


def test_screenshots(page, built, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    for name, fragment in (("overview", ""), ("feature", f"#sae=a&feature={XSS_FEATURE}")):
        page.open(fragment)
        page.page.wait_for_selector(".top-examples .ex" if fragment else "#overview .metrics")
        shot = tmp_path / f"{name}.png"
        page.page.screenshot(path=shot)
        assert shot.stat().st_size > 10_000
        shutil.copy(shot, ARTIFACTS / shot.name)
    page.check()


def test_minimal_sae_renders(browser, built_minimal):
    page = Watched(browser, built_minimal.html).open("#sae=a&feature=0")
    page.page.wait_for_selector(".top-examples .ex")
    # Statistics, top examples (saying there is no ablation) and steering's empty state.
    assert page.page.locator("#feature .card").count() == 3
    assert page.page.locator("#feature .top-examples .ablation-note").inner_text() == "No ablation for this SAE."
    assert "No steering experiment uses this SAE" in page.page.locator("#feature .steering").inner_text()
    page.go("")
    page.page.wait_for_selector("#overview:not([hidden])")
    assert "No training logs." in page.page.locator("#overview").inner_text()
    page.go("#view=experiments")
    page.page.wait_for_selector("#experiments .empty")
    assert "No steering experiments in this run" in page.page.locator("#experiments").inner_text()
    assert page.page.locator("#nav-concepts").is_hidden()  # no SAE has a concept ranking
    page.go("#view=concepts")
    page.page.wait_for_selector("#concepts .empty")
    assert "No concept ranking in this run" in page.page.locator("#concepts").inner_text()
    page.check()
    page.page.close()


# ---------------------------------------------------------------- issue 11: steering, ablation, labels


def js_fmt(v: float, digits: int = 3) -> str:
    """The page's fmt() for 1e-3 <= |v| < 1e5: `digits` significant digits, no trailing zeros."""
    assert 1e-3 <= abs(v) < 1e5
    return f"{float(v):.{digits}g}"


def steering_rows(built) -> list[dict]:
    return [r for path in built.saes[0].path("steering") for r in pq.read_table(path).to_pylist()]


def test_feature_page_shows_its_steering(page, built):
    """Per experiment and prompt of feature 0: the unsteered text beside the steered text of each
    alpha, with alpha, CE, best alpha and over-margin marks; a steered text of markup as typed."""
    mine = sorted((r for r in steering_rows(built) if r["feature"] == 0),
                  key=lambda r: (r["experiment"], r["prompt_index"], r["alpha"]))
    page.open("#sae=a&feature=0")
    page.page.wait_for_selector(".steering .steer")
    shown = page.page.evaluate("""() => [...document.querySelectorAll('.steering .steer')].map(s => ({
        prompt: s.querySelector('.steer-prompt-text').textContent,
        baseline: s.querySelector('.steer-base .steer-text').textContent,
        base_ce: s.querySelector('.steer-base .ce').textContent,
        rows: [...s.querySelectorAll('.steer-row')].map(r => ({
            alpha: r.querySelector('.steer-alpha').textContent, ce: r.querySelector('.ce').textContent,
            text: r.querySelector('.steer-text').textContent,
            best: r.classList.contains('best'), over: r.classList.contains('over')}))}))""")
    groups = {}
    for r in mine:
        groups.setdefault((r["experiment"], r["prompt_index"]), []).append(r)
    assert len(shown) == len(groups) == 3  # boost: 2 prompts, pin: 1
    for got, rows in zip(shown, groups.values()):
        assert got["prompt"] == rows[0]["prompt"] and got["baseline"] == rows[0]["baseline"]
        assert got["base_ce"] == f"CE {js_fmt(rows[0]['baseline_ce'])}"
        assert [g["text"] for g in got["rows"]] == [r["steered"] for r in rows]
        assert [g["alpha"] for g in got["rows"]] == [f"α {js_fmt(r['alpha'])}" for r in rows]
        assert [g["ce"].split(" (")[0] for g in got["rows"]] == [f"CE {js_fmt(r['steered_ce'])}" for r in rows]
        assert [g["best"] for g in got["rows"]] == [r["alpha"] == r["best_alpha"] for r in rows]
        assert [g["over"] for g in got["rows"]] == [not r["within_margin"] for r in rows]
    assert any(g["text"] == XSS_STEERED for got in shown for g in got["rows"])
    assert_nothing_injected(page)
    page.go("#sae=a&feature=2")  # not steered
    page.wait_title("Feature 2")
    assert "No experiment steers feature 2. This SAE has 3 experiments" in page.page.locator(".steering").inner_text()
    page.check()


def test_hovering_a_token_shows_its_ablation_loss_effect(page, built):
    ablation = pq.read_table(built.saes[0].path("ablation")).to_pylist()
    first = sorted((r for r in ablation if r["feature"] == 0 and r["rank"] == 0), key=lambda r: r["pos"])
    page.open("#sae=a&feature=0")
    page.page.wait_for_selector(".top-examples .ex")
    ablated = {r["rank"] for r in ablation if r["feature"] == 0}
    assert page.page.locator(".top-examples .ex.ablated").count() == len(ablated) == 3
    assert page.page.locator(".top-examples .legend").count() == 1
    assert page.page.locator(".top-examples .tok[tabindex='0']").count() == 3  # one tab stop per ablated example
    tokens = page.page.locator(".top-examples .ex").first.locator(".tok")
    assert tokens.count() == len(first)
    shown = [j for j, r in enumerate(first) if r["loss_effect"] is not None and abs(r["loss_effect"]) >= 1e-3]
    for how, j in (("hover", shown[0]), ("keyboard", shown[1])):
        if how == "hover":
            tokens.nth(j).hover()
        else:  # one tab stop per example, its first token; the arrow keys walk on
            tokens.nth(0).focus()
            for _ in range(j):
                page.page.keyboard.press("ArrowRight")
            assert tokens.nth(j).evaluate("t => t === document.activeElement")
        tip = page.page.locator("#tip")
        tip.wait_for(state="visible")
        effect = float(np.float32(first[j]["loss_effect"]))
        assert f"loss effect {'+' if effect > 0 else ''}{js_fmt(effect, 4)}" in tip.inner_text()
        assert f"loss {js_fmt(float(np.float32(first[j]['loss'])), 4)} " in tip.inner_text()
        underline = tokens.nth(j).locator(".body").evaluate("b => b.style.boxShadow")  # coloured by the effect's sign
        assert ("37, 99, 235" if effect >= 0 else "220, 38, 38") in underline and "inset" in underline
    logits = pq.read_table(built.saes[0].path("ablation_logits")).to_pylist()
    raised = [r["token"] for r in sorted(logits, key=lambda r: r["rank"]) if r["feature"] == 0 and r["sign"] == "+"]
    assert page.page.locator(".ablation .chip.pos .chip-token").all_text_contents() == raised
    page.go(f"#sae=a&feature={NEEDLE}")  # not ablated
    page.wait_title(f"Feature {NEEDLE}")
    assert "Not ablated: the ablation covers 6 features" in page.page.locator(".top-examples .ablation-note").inner_text()
    assert page.page.locator("#feature .ablation").count() == 0
    assert page.page.locator(".top-examples .tok[tabindex]").count() == 0
    page.check()


def test_experiments_view_lists_every_run_and_links_to_features(page, built):
    rows = steering_rows(built)
    runs = {(r["experiment"], r["feature"], r["vector"], r["prompt"]) for r in rows}
    page.open()
    page.page.wait_for_selector("#overview .experiments-table")
    page.page.locator("#overview .experiments-table a").first.click()
    page.page.wait_for_selector("#experiments .exp-run")
    assert page.page.evaluate("location.hash") == "#view=experiments"
    assert page.page.locator("#experiments .experiment").count() == len({r["experiment"] for r in rows}) == 3
    shown = page.page.evaluate("""() => [...document.querySelectorAll('#experiments .experiment')].flatMap(card =>
        [...card.querySelectorAll('.exp-run')].map(tr => ({
            experiment: card.querySelector('h3').textContent,
            target: (tr.querySelector('.exp-feature') ?? tr.querySelector('.target')).textContent,
            prompt: tr.querySelector('.exp-prompt').textContent})))""")
    assert len(shown) == len(runs) == 8
    target = lambda f, v: f"feature {f}" if f is not None else f"vector {v}"  # noqa: E731
    assert {(s["experiment"], s["target"], s["prompt"]) for s in shown} == \
        {(e, target(f, v), p) for e, f, v, p in runs}
    vector = page.page.locator("#experiments .exp-run", has_text=XSS_PROMPT)
    vector.locator(".exp-toggle").click()
    assert page.page.locator("#experiments .exp-detail .steer-row").count() == 2  # the vector's alphas
    assert_nothing_injected(page)
    page.page.locator("#experiments a.exp-feature", has_text=f"feature {XSS_FEATURE}").first.click()
    page.wait_title(f"Feature {XSS_FEATURE}")
    assert page.page.evaluate("location.hash") == f"#sae=a&feature={XSS_FEATURE}"
    page.page.go_back()
    page.page.wait_for_selector("#experiments:not([hidden]) .exp-run")
    page.check()


def test_llm_labels_show_in_the_list_search_and_page(page, built):
    failed = pq.read_table(built.saes[0].path("llm_labels")).filter(pa.compute.is_null(pa.compute.field("label")))
    page.open("#sae=a")
    page.page.wait_for_selector("#list .row")
    page.page.locator("#search").fill(LLM_NEEDLE.upper())
    assert page.list_ids() == [NEEDLE]
    row = page.page.locator("#list .row").first
    assert row.locator(".row-llm").inner_text() == LLM_NEEDLE and row.locator(".row-tfidf").inner_text() == NEEDLE_LABEL
    row.click()
    page.wait_title(f"Feature {NEEDLE}")
    assert page.page.locator("#feature .llm-label").inner_text() == LLM_NEEDLE
    assert page.page.locator("#feature .tfidf-label").inner_text() == NEEDLE_LABEL
    assert page.page.locator("#feature .alignment tr").count() == 1 + 5  # its 5 best labels
    page.go(f"#sae=a&feature={failed['feature'][0].as_py()}")  # its request failed: no LLM label
    page.wait_title(f"Feature {failed['feature'][0].as_py()}")
    assert page.page.locator("#feature .llm-label").count() == 0
    page.check()
