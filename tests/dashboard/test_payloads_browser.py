"""Hostile text (payloads.py) in a real Chromium: nothing it says runs, loads or becomes an element
or a link, and every view shows it exactly as typed, right-to-left override and zero-width
characters included, the override kept inside its own element and the 10,000-character token
clipped, never widening the page. One page, every view reached by its hash."""

from __future__ import annotations

import json

import pytest

from .chromium import Watched, needs_chromium
from .payloads import FEATURE, LONG, MODEL, PAYLOADS, RTL, SAE, VECTOR, build_payload_run

pytestmark = needs_chromium()

TEXTS = "sel => [...document.querySelectorAll(sel)].map(node => node.textContent)"

# What a payload would leave behind had it been parsed as markup or followed as a link.
INJECTED = """() => ({
  pwned: typeof window.pwned,
  elements: [...document.querySelectorAll('img, iframe, svg:not(.plot), object, embed')].map(n => n.outerHTML),
  scripts: document.querySelectorAll('script:not([type])').length,
  handlers: [...document.querySelectorAll('*')].flatMap(n => n.getAttributeNames()
    .filter(a => a.startsWith('on') || a === 'autofocus').map(a => `${n.tagName} ${a}`)),
  links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')).filter(h => !h.startsWith('#')),
})"""

# Neither the page nor the feature pane scrolls sideways: a long text is wrapped or clipped
# inside its own box.
FITS = """() => [document.documentElement, document.getElementById('feature')]
  .every(node => node.scrollWidth <= node.clientWidth)"""

# Per match holding the override: whether the element after it starts right of it. Were the
# match not isolated, the unterminated override would reorder what follows it on the line.
STAYS_LEFT = """([sel, rtl]) => [...document.querySelectorAll(sel)].filter(n => n.textContent === rtl).map(node => {
  const next = node.nextElementSibling;
  return !next || next.getBoundingClientRect().left >= node.getBoundingClientRect().right - 1;
})"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return build_payload_run(tmp_path_factory.mktemp("dashboard-payloads"))


def texts(page: Watched, selector: str) -> list[str]:
    return page.page.evaluate(TEXTS, selector)


def assert_every_payload(shown: list[str], where: str, payloads=PAYLOADS) -> None:
    missing = [p[:40] for p in payloads if p not in shown]
    assert missing == [], f"{where}: not shown as typed"


def check_feature_page(page: Watched) -> None:
    page.go(f"#sae={SAE}&feature={FEATURE}")
    page.wait_title(f"Feature {FEATURE}")
    page.page.wait_for_selector(".top-examples .ex")
    example = page.page.locator(".top-examples .ex").first
    assert_every_payload(example.locator(".tok").evaluate_all("ts => ts.map(t => t.textContent)"), "example strip")
    assert_every_payload(example.locator(".tok").evaluate_all("ts => ts.map(t => t.dataset.token)"), "data-token")
    assert_every_payload(texts(page, "#feature .chip.pos .chip-token"), "influence chips")
    assert_every_payload(texts(page, ".steering .steer-prompt-text"), "steering prompts")
    assert_every_payload(texts(page, ".steering .steer-row .steer-text"), "steered texts")
    check_tooltips(page)
    detection = page.page.locator("#feature").inner_text()
    assert all(p in detection for p in PAYLOADS if p != LONG), "corpus labels (detection, alignment)"
    assert page.page.evaluate(FITS)


def check_tooltips(page: Watched) -> None:
    """The ablated example's tooltip, walked by keyboard: each token as JSON, never taller than
    half the window."""
    tokens = page.page.locator(".top-examples .ex").first.locator(".tok")
    tokens.first.focus()
    shown = []
    for _ in range(tokens.count()):
        shown.append(page.page.locator("#tip .tip-token").text_content())
        assert page.page.evaluate("() => document.getElementById('tip').offsetHeight < innerHeight / 2")
        page.page.keyboard.press("ArrowRight")
    assert_every_payload(shown, "tooltips", [json.dumps(p, ensure_ascii=False) for p in PAYLOADS])


def check_labels(page: Watched) -> None:
    """Feature i's labels, on its page and in the list (payload i, both kinds)."""
    assert_every_payload(texts(page, "#list .row-llm"), "list, LLM labels")
    assert_every_payload(texts(page, "#list .row-tfidf"), "list, TF-IDF labels")
    for f, payload in enumerate(PAYLOADS):
        page.go(f"#sae={SAE}&feature={f}")
        page.wait_title(f"Feature {f}")
        assert texts(page, "#feature .llm-label") == texts(page, "#feature .tfidf-label") == [payload]
        assert page.page.evaluate(FITS)
    f = PAYLOADS.index(RTL)
    page.go(f"#sae={SAE}&feature={f}")
    page.wait_title(f"Feature {f}")
    assert page.page.evaluate(STAYS_LEFT, [".llm-label, .row-llm", RTL]) == [True, True]


def check_experiments(page: Watched) -> None:
    page.go("#view=experiments")
    page.page.wait_for_selector("#experiments .exp-run")
    assert_every_payload(texts(page, "#experiments .exp-prompt"), "experiments, prompts")
    assert_every_payload(texts(page, "#experiments td.steer-text"), "experiments, steered texts")
    assert f"vector {VECTOR}" in page.page.locator("#experiments").inner_text()
    assert page.page.evaluate(FITS)


def check_concepts(page: Watched) -> None:
    page.go("#view=concepts")
    page.page.wait_for_selector("#concepts .concept-table")
    assert_every_payload(texts(page, "#concepts .concept-label"), "concept labels")
    assert page.page.evaluate(FITS)


def test_hostile_text_shows_as_typed_and_nothing_runs(browser, hostile):
    page = Watched(browser, hostile).open()
    page.page.wait_for_selector("#overview .metrics")
    assert texts(page, "#run-model") == [MODEL]
    check_feature_page(page)
    check_labels(page)
    check_experiments(page)
    check_concepts(page)
    page.page.mouse.move(400, 300)  # over whatever lies there, for any onmouseover that got in
    page.page.keyboard.press("Tab")
    page.page.wait_for_timeout(200)  # time for any injected handler to fire
    assert page.page.evaluate(INJECTED) == {"pwned": "undefined", "elements": [], "scripts": 1, "handlers": [],
                                             "links": []}
    page.go(f"#sae={SAE}")  # still usable: search finds text as typed, the list navigates
    search = page.page.locator("#search")
    for payload in (PAYLOADS[3], PAYLOADS[9]):  # markup; zero-width characters
        search.fill(payload)
        assert PAYLOADS.index(payload) in page.list_ids()
    search.fill("")
    page.page.locator("#list .row").nth(2).click()
    page.wait_title("Feature 2")
    page.check()
    page.page.close()
