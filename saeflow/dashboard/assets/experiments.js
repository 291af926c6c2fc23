// The experiments view (#view=experiments): every steering run of every SAE, one row per target
// and prompt (its best α, fluency and text there), each expanding to the full α comparison.

function targetCell(entry, st, i, labels) {
  const td = el("td", "target");
  const f = st.value("feature", i);
  if (f === null) {
    td.appendChild(el("span", "muted", "vector "));
    td.appendChild(el("span", "vector-name", st.text("vector", i)));
    return td;
  }
  td.appendChild(link(featureHash(entry.name, f), `feature ${f}`, "exp-feature"));
  const label = labels(f);
  if (label) td.appendChild(el("div", "muted small exp-label", label));
  return td;
}

function experimentCard(entry, st, e, rows, labels) {
  const box = card(e.name, "experiment");
  box.firstChild.className = "exp-name";
  const badges = el("div", "badges");
  badges.appendChild(link(`#sae=${encodeURIComponent(entry.name)}`, `${entry.name} · ${entry.hook}`, "badge"));
  const mode = el("span", "badge", e.mode);
  mode.title = MODES[e.mode] || e.mode;
  badges.appendChild(mode);
  box.appendChild(badges);
  const targets = [...e.features.map(f => `feature ${f}`), ...e.vectors.map(v => `vector ${v}`)];
  box.appendChild(keyValues([
    ["Targets", targets.join(", ")],
    ["Prompts", fmtInt(e.prompts)],
    ["α grid", e.alphas.map(a => fmt(a)).join(", ")],
    ["Rows", fmtInt(e.rows)],
  ]));
  const table = el("table", "grid-table text-table exp-runs");
  const head = el("tr");
  for (const h of ["target", "prompt", "best α", "CE unsteered → best α", "activation unsteered → best α", "steered text at best α", ""]) {
    head.appendChild(el("th", null, h));
  }
  table.appendChild(head);
  for (const [, run] of runsBy(rows, i => `${st.target(i)}\u0000${st.value("prompt_index", i)}`)) {
    const first = run[0], best = st.value("best_alpha", first);
    const at = run.find(i => st.value("alpha", i) === best);
    const tr = el("tr", "exp-run");
    tr.appendChild(targetCell(entry, st, first, labels));
    tr.appendChild(el("td", "exp-prompt", st.text("prompt", first)));
    tr.appendChild(el("td", "num", best === null ? "none within margin" : fmt(best)));
    const ce = at === undefined ? "" : ` → ${fmt(st.value("steered_ce", at))}`;
    tr.appendChild(el("td", "num", `${fmt(st.value("baseline_ce", first))}${ce}`));
    const act = at === undefined ? "" : ` → ${fmt(st.value("steered_activation", at))}`;
    tr.appendChild(el("td", "num", `${fmt(st.value("baseline_activation", first))}${act}`));
    tr.appendChild(el("td", "steer-text", at === undefined ? "–" : st.text("steered", at)));
    const toggle = el("button", "exp-toggle", `all α (${run.length})`);
    toggle.type = "button";
    toggle.setAttribute("aria-expanded", "false");
    const cell = el("td");
    cell.appendChild(toggle);
    tr.appendChild(cell);
    table.appendChild(tr);
    let detail = null; // built on first open
    toggle.addEventListener("click", () => {
      if (!detail) {
        detail = el("tr", "exp-detail");
        const td = el("td");
        td.colSpan = 7;
        td.appendChild(steeringComparison(st, run));
        detail.appendChild(td);
        tr.after(detail);
      } else {
        detail.hidden = !detail.hidden;
      }
      toggle.setAttribute("aria-expanded", String(!detail.hidden));
    });
  }
  box.appendChild(table);
  return box;
}

// `stale()` says a later route has replaced this one.
async function renderExperiments(container, manifest, stale) {
  const saes = manifest.saes.filter(s => s.steering && s.steering.experiments.length);
  const title = el("h2", null, "Steering experiments");
  if (!saes.length) {
    container.replaceChildren(title, el("p", "empty", "No steering experiments in this run (config.yaml `steering:`)."));
    return;
  }
  const cards = [];
  for (const entry of saes) {
    const [st, index] = await Promise.all([loadSteering(entry), loadBlob(entry.index)]);
    if (stale()) return;
    const labels = shownLabels(index);
    const all = Array.from({length: st.n}, (_, i) => i);
    for (const [name, rows] of runsBy(all, i => st.text("experiment", i))) {
      cards.push(experimentCard(entry, st, st.experiments.find(e => e.name === name), rows, labels));
    }
  }
  const runs = saes.reduce((n, s) => n + s.steering.experiments.length, 0);
  container.replaceChildren(title, el("p", "muted", `${runs} experiment${runs === 1 ? "" : "s"} over ${saes.length} SAE${saes.length === 1 ? "" : "s"}. Per target and prompt: the largest α whose text stays within the CE margin of the unsteered one (best α), and the text there; open "all α" for every α beside the unsteered text.`), ...cards);
}
