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

function exampleRow(ex, scale) {
  const row = el("div", "ex");
  const value = el("span", "ex-act", fmt(ex.activation));
  value.title = `seq ${ex.seq}, pos ${ex.pos}`;
  row.appendChild(value);
  const strip = el("span", "strip");
  ex.tokens.forEach((token, j) => {
    // A special token (BOS, CLS, ...) is no part of the text: its token string, set apart.
    const span = pieceSpan(token, ex.special[j] ? "tok special" : "tok");
    const act = ex.acts[j];
    if (act > 0) span.lastChild.style.backgroundColor = heat(act / scale);
    if (j === ex.maxIndex) span.classList.add("max");
    span.dataset.act = String(act);
    span.title = `${ex.special[j] ? "special token " : ""}${JSON.stringify(token)}  ${fmt(act, 4)}`;
    strip.appendChild(span);
  });
  row.appendChild(strip);
  return row;
}

function exampleList(examples, scale, className) {
  const list = el("div", "examples " + (className || ""));
  for (const ex of examples) list.appendChild(exampleRow(ex, scale));
  return list;
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
