// Examples as strips of text as written: each token's piece of the document (see examples.py) is
// a span coloured by activation, its value in the tooltip.

// Whitespace that would vanish or break a vocabulary token's chip is shown as a visible mark.
const VISIBLE = {"\n": "↵", "\t": "⇥", "\r": "␍"};
function tokenText(token) {
  return token.replace(/[\n\t\r]/g, c => VISIBLE[c]);
}

// A vocabulary token (influences, TF-IDF tokens) as decoded, less WordPiece's "##" on a word-inner
// piece, which the chip marks by its style instead (`inner`).
function vocabToken(token, wordpiece) {
  const inner = wordpiece && /^##./su.test(token);
  return {text: inner ? token.slice(2) : token, inner};
}

// Text as written: spaces and tabs kept (the strip is white-space: pre-wrap), each line break a
// real one after a ↵ drawn by CSS, so a newline token still shows.
function appendText(node, text) {
  text.split("\n").forEach((line, i) => {
    if (i) node.appendChild(el("span", "nl", "\n"));
    if (line) node.appendChild(document.createTextNode(line));
  });
}

// A token's piece (its textContent): the whitespace before its own text, then that text in
// `.body`, which alone takes the activation's colour. A piece of whitespace only is all body.
function pieceSpan(piece, className) {
  const span = el("span", className), body = el("span", "body");
  const lead = piece.trim() ? piece.match(/^\s*/u)[0] : "";
  appendText(span, lead);
  appendText(body, piece.slice(lead.length));
  span.appendChild(body);
  return span;
}

// Activation (relative to the feature's max) as a background: transparent at 0, strong orange at 1.
function heat(fraction) {
  const a = Math.max(0, Math.min(1, fraction));
  return `rgba(249, 115, 22, ${(0.12 + 0.68 * a).toFixed(3)})`;
}

// Loss effect of ablating the feature as an underline: blue where the feature helped predict the
// token (ablating it raises the loss), red where it hurt; stronger for larger |effect| against
// `span`, the largest |effect| of the feature's ablated tokens.
const HELPED = "37, 99, 235", HURT = "220, 38, 38";
function effectUnderline(effect, span) {
  const a = 0.2 + 0.8 * Math.min(1, Math.abs(effect) / span);
  return `inset 0 -3px rgba(${effect >= 0 ? HELPED : HURT}, ${a.toFixed(3)})`;
}

// `effectSpan`: the largest |loss effect| over the feature's ablated examples (colour scale).
function exampleRow(ex, scale, effectSpan) {
  const row = el("div", ex.effect ? "ex ablated" : "ex");
  const value = el("span", "ex-act", fmt(ex.activation));
  value.title = `seq ${ex.seq}, pos ${ex.pos}${ex.effect ? "; ablated: hover or focus a token for its loss effect" : ""}`;
  row.appendChild(value);
  const strip = el("span", "strip");
  ex.tokens.forEach((token, j) => {
    // A special token (BOS, CLS, ...) is no part of the text: its token string, set apart.
    const span = pieceSpan(token, ex.special[j] ? "tok special" : "tok");
    const act = ex.acts[j];
    if (act > 0) span.lastChild.style.backgroundColor = heat(act / scale);
    if (j === ex.maxIndex) span.classList.add("max");
    span.dataset.act = String(act);
    if (ex.effect) {
      // The page's own tooltip (#tip) shows the values on hover and on keyboard focus.
      span.classList.add("ablated");
      span.tabIndex = j ? -1 : 0; // one tab stop per example; arrow keys move between its tokens
      span.setAttribute("aria-describedby", "tip");
      span.dataset.token = token;
      span.dataset.special = ex.special[j] ? "1" : "";
      span.dataset.loss = String(ex.loss[j]);
      span.dataset.effect = String(ex.effect[j]);
      if (Number.isFinite(ex.effect[j]) && effectSpan > 0) span.lastChild.style.boxShadow = effectUnderline(ex.effect[j], effectSpan);
    } else {
      span.title = `${ex.special[j] ? "special token " : ""}${JSON.stringify(token)}  ${fmt(act, 4)}`;
    }
    strip.appendChild(span);
  });
  if (ex.effect) strip.addEventListener("keydown", e => stepFocus(e, strip));
  row.appendChild(strip);
  return row;
}

// ← and → move the keyboard focus (and the tooltip) along an ablated example's tokens.
function stepFocus(e, strip) {
  const step = {ArrowRight: 1, ArrowLeft: -1}[e.key];
  if (!step) return;
  const tokens = [...strip.querySelectorAll(".tok.ablated")];
  const at = tokens.indexOf(document.activeElement), next = tokens[at + step];
  if (at < 0 || !next) return;
  e.preventDefault();
  tokens[at].tabIndex = -1;
  next.tabIndex = 0;
  next.focus();
}

function signed(v, digits = 3) {
  return Number.isFinite(v) && v > 0 ? "+" + fmt(v, digits) : fmt(v, digits);
}

// The tooltip of an ablated token: its text, activation, clean loss and the loss effect.
function tipLines(span) {
  const d = span.dataset, effect = Number(d.effect);
  const lines = [
    [`${d.special ? "special token " : ""}${JSON.stringify(d.token)}`, "tip-token"],
    [`activation ${fmt(Number(d.act), 4)}`],
    [`loss ${fmt(Number(d.loss), 4)} (clean CE of this token)`],
  ];
  if (Number.isFinite(effect)) {
    lines.push([`loss effect ${signed(effect, 4)}`, "tip-effect " + (effect >= 0 ? "helped" : "hurt")]);
    lines.push([effect >= 0 ? "ablating the feature raises this token's loss: it helped predict it"
      : "ablating the feature lowers this token's loss: it hurt the prediction", "muted"]);
  } else {
    lines.push(["loss effect – (nothing predicts the first token)", "tip-effect"]);
  }
  return lines.map(([text, className]) => el("div", className, text));
}

let tipFor = null; // the token the tooltip describes

function showTip(span) {
  const tip = document.getElementById("tip");
  if (tipFor !== span) tip.replaceChildren(...tipLines(span));
  tipFor = span;
  tip.hidden = false;
  const r = span.getBoundingClientRect();
  const below = r.bottom + 6 + tip.offsetHeight < window.innerHeight;
  tip.style.left = `${Math.max(4, Math.min(r.left, window.innerWidth - tip.offsetWidth - 8))}px`;
  tip.style.top = `${below ? r.bottom + 6 : r.top - tip.offsetHeight - 6}px`;
}

function hideTip() {
  tipFor = null;
  document.getElementById("tip").hidden = true;
}

function watchTips() {
  const at = e => e.target instanceof Element ? e.target.closest(".tok.ablated") : null;
  document.addEventListener("mouseover", e => { const span = at(e); if (span) showTip(span); else hideTip(); });
  document.addEventListener("focusin", e => { const span = at(e); if (span) showTip(span); else hideTip(); });
  document.addEventListener("focusout", hideTip);
  // Scrolling (focus scrolls a token into view) moves the token: the tooltip follows it.
  document.addEventListener("scroll", () => { if (tipFor) showTip(tipFor); }, true);
}

// What the underline means, with the scale's ends.
function effectLegend(span, ablated) {
  const legend = el("div", "legend small");
  legend.appendChild(el("span", "muted", `Underline (${ablated} ablated example${ablated === 1 ? "" : "s"}): loss effect of ablating the feature, CE without it − with it.`));
  const helped = el("span", "legend-key");
  helped.appendChild(el("span", "legend-swatch")).style.boxShadow = effectUnderline(span, span);
  helped.appendChild(document.createTextNode(`helped predict the token (up to +${fmt(span)})`));
  const hurt = el("span", "legend-key");
  hurt.appendChild(el("span", "legend-swatch")).style.boxShadow = effectUnderline(-span, span);
  hurt.appendChild(document.createTextNode(`hurt it (down to −${fmt(span)})`));
  legend.append(helped, hurt, el("span", "muted", "Hover a token for its values, or Tab to an example and move with ← →."));
  return legend;
}

function exampleList(examples, scale, className, effectSpan) {
  const list = el("div", "examples " + (className || ""));
  for (const ex of examples) list.appendChild(exampleRow(ex, scale, effectSpan));
  return list;
}

// The largest |loss effect| over the examples' ablated tokens (0 where none).
function largestEffect(examples) {
  let top = 0;
  for (const ex of examples) {
    if (!ex.effect) continue;
    for (const v of ex.effect) if (Number.isFinite(v)) top = Math.max(top, Math.abs(v));
  }
  return top;
}

// Quantile examples grouped by band, strongest band first (the stored order).
function bandedExamples(examples, scale, bands, max) {
  const box = el("div", "bands");
  let i = 0;
  while (i < examples.length) {
    const band = examples[i].band;
    const group = [];
    while (i < examples.length && examples[i].band === band) group.push(examples[i++]);
    const head = el("div", "band-head");
    head.appendChild(el("span", "band-name", bands ? `Band ${band + 1} of ${bands}` : `Band ${band + 1}`));
    if (bands && Number.isFinite(max)) {
      const lo = band / bands * max, hi = (band + 1) / bands * max;
      head.appendChild(el("span", "muted", `activation ${band ? "[" : "("}${fmt(lo)}, ${fmt(hi)}${band === bands - 1 ? "]" : ")"}`));
    }
    head.appendChild(el("span", "muted", `${group.length} example${group.length === 1 ? "" : "s"}`));
    box.appendChild(head);
    box.appendChild(exampleList(group, scale, "band-examples"));
  }
  return box;
}
