// Steering results: per target and prompt, the unsteered continuation beside the steered one at
// each α, with fluency (mean CE of the continuation's tokens under the unsteered model) and the
// target's activation on it. Shared by the feature page and the experiments view.

const MODES = {
  add: "adds α × scale × the direction (decoder row or unit vector) at every position",
  clamp: "sets the feature to α × scale at every position, the SAE's error kept",
};
const CE_TITLE = "fluency: mean next-token CE of the continuation's tokens under the unsteered model (nats)";
const ACT_TITLE = "mean activation of the feature on the continuation's tokens (for a vector: mean projection on it)";

function metaSpan(text, title, className) {
  const span = el("span", "steer-meta " + (className || ""), text);
  span.title = title;
  return span;
}

// The rows of one target and prompt, α ascending.
function steeringComparison(st, rows) {
  const first = rows[0], best = st.value("best_alpha", first);
  const baseCe = st.value("baseline_ce", first);
  const box = el("div", "steer");
  const prompt = el("div", "steer-prompt");
  prompt.appendChild(el("span", "muted", "Prompt "));
  prompt.appendChild(el("span", "steer-prompt-text", st.text("prompt", first)));
  if (best === null) prompt.appendChild(el("span", "badge warn", "no α within the CE margin"));
  box.appendChild(prompt);
  const grid = el("div", "steer-grid");
  const base = el("div", "steer-base");
  const head = el("div", "steer-head");
  head.appendChild(el("span", "steer-alpha", "unsteered"));
  head.appendChild(metaSpan(`CE ${fmt(baseCe)}`, CE_TITLE, "ce"));
  head.appendChild(metaSpan(`activation ${fmt(st.value("baseline_activation", first))}`, ACT_TITLE, "act"));
  base.append(head, el("div", "steer-text", st.text("baseline", first)));
  const list = el("div", "steer-alphas");
  for (const i of rows) {
    const alpha = st.value("alpha", i), scale = st.value("scale", i), within = st.value("within_margin", i);
    const ce = st.value("steered_ce", i);
    const row = el("div", "steer-row");
    const h = el("div", "steer-head");
    const a = el("span", "steer-alpha", `α ${fmt(alpha)}`);
    const mode = st.text("mode", i);
    a.title = `${mode}: ${MODES[mode] || mode}; α × scale = ${fmt(alpha * scale)} (scale ${fmt(scale)}${st.value("feature", i) === null ? "" : ", the feature's max activation"})`;
    h.appendChild(a);
    h.appendChild(metaSpan(`CE ${fmt(ce)} (${signed(ce - baseCe)})`, CE_TITLE + "; in brackets: minus the unsteered text's", "ce"));
    h.appendChild(metaSpan(`activation ${fmt(st.value("steered_activation", i))}`, ACT_TITLE, "act"));
    if (best !== null && alpha === best) {
      row.classList.add("best");
      h.appendChild(el("span", "badge ok", "best α"));
    }
    if (within === false) {
      row.classList.add("over");
      h.appendChild(el("span", "badge warn", "over CE margin"));
    }
    row.append(h, el("div", "steer-text", st.text("steered", i)));
    list.appendChild(row);
  }
  grid.append(base, list);
  box.appendChild(grid);
  return box;
}

function experimentsLink(text) {
  return link("#view=experiments", text);
}

// The feature page's section: every experiment that steered feature f, prompt by prompt.
function steeringCard(sae, st, f) {
  const box = card("Steering", "steering");
  if (!st) {
    box.appendChild(el("p", "muted", "No steering experiment uses this SAE (config.yaml `steering:`)."));
    return box;
  }
  const rows = st.rowsOf(f);
  if (!rows.length) {
    const p = el("p", "muted", `No experiment steers feature ${f}. This SAE has ${st.experiments.length} experiment${st.experiments.length === 1 ? "" : "s"}: `);
    p.appendChild(experimentsLink("see Experiments"));
    box.appendChild(p);
    return box;
  }
  for (const [name, mine] of runsBy(rows, i => st.text("experiment", i))) {
    const section = el("div", "steer-exp");
    const head = el("h4", "steer-exp-head");
    head.appendChild(el("span", "steer-exp-name", name));
    const mode = st.text("mode", mine[0]);
    const badge = el("span", "badge", mode);
    badge.title = MODES[mode] || mode;
    head.appendChild(badge);
    head.appendChild(el("span", "muted", `α ${[...new Set(mine.map(i => st.value("alpha", i)))].map(a => fmt(a)).join(", ")}`));
    head.appendChild(experimentsLink("all runs"));
    section.appendChild(head);
    for (const [, prompt] of runsBy(mine, i => st.value("prompt_index", i))) section.appendChild(steeringComparison(st, prompt));
    box.appendChild(section);
  }
  return box;
}
