// Examples as token strips: each token a span coloured by activation, its value in the tooltip.

// Whitespace that would vanish or break the strip is shown as a visible mark.
const VISIBLE = {"\n": "↵", "\t": "⇥", "\r": "␍"};
function tokenText(token) {
  return token.replace(/[\n\t\r]/g, c => VISIBLE[c]);
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
    const span = el("span", "tok", tokenText(token));
    const act = ex.acts[j];
    if (act > 0) span.style.backgroundColor = heat(act / scale);
    if (j === ex.maxIndex) span.classList.add("max");
    span.dataset.act = String(act);
    span.title = `${JSON.stringify(token)}  ${fmt(act, 4)}`;
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
