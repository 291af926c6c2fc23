// The overview: the run, one row of metrics per SAE, training curves and feature densities.
// Everything here comes from the manifest, so it shows without decoding any blob.

const CURVES = [["loss", "Loss"], ["fvu", "FVU"], ["l0", "L0"], ["dead_fraction", "Dead fraction"]];

function runCard(run, saes) {
  const box = card("Run");
  box.appendChild(keyValues([
    ["Model", run.model],
    ["Hooks", run.hooks.join(", ")],
    ["Corpus", `${fmtInt(run.documents)} documents, ${fmtInt(run.tokens)} tokens${run.labelled ? ", labelled" : ""}`],
    ["SAEs", fmtInt(saes.length)],
  ]));
  return box;
}

function metricsCard(saes) {
  const box = card("SAEs");
  const table = el("table", "grid-table metrics");
  const columns = [
    ["SAE", s => link(`#sae=${encodeURIComponent(s.name)}`, s.name)],
    ["hook", s => s.hook],
    ["features", s => fmtInt(s.d_sae)],
    ["k", s => fmtInt(s.k)],
    ["kept units", s => s.n_kept === null ? "–" : fmtInt(s.n_kept)],
    ["FVU", s => fmt(s.eval.fvu)],
    ["L0", s => fmt(s.eval.l0)],
    ["dead", s => fmtPct(s.eval.dead_fraction)],
  ];
  if (saes.some(s => s.eval.ce_recovered !== undefined)) columns.push(["CE recovered", s => fmtPct(s.eval.ce_recovered)]);
  if (saes.some(s => s.eval.holdout_tokens !== undefined)) columns.push(["held-out tokens", s => fmtInt(s.eval.holdout_tokens)]);
  const head = el("tr");
  for (const [name] of columns) head.appendChild(el("th", null, name));
  table.appendChild(head);
  saes.forEach((s, i) => {
    const tr = el("tr");
    columns.forEach(([, cell], j) => {
      const td = el("td", j ? "num" : "name");
      const value = cell(s);
      if (j === 0) td.appendChild(el("span", "swatch")).style.backgroundColor = SERIES_COLORS[i % SERIES_COLORS.length];
      td.append(value);
      tr.appendChild(td);
    });
    table.appendChild(tr);
  });
  box.appendChild(table);
  return box;
}

function trainingCard(saes) {
  const box = card("Training", "wide");
  const grid = el("div", "plots");
  for (const [key, title] of CURVES) {
    const series = saes.map((s, i) => ({
      name: s.name, color: SERIES_COLORS[i % SERIES_COLORS.length],
      x: s.training && s.training[key] ? s.training.tokens_seen : [],
      y: s.training && s.training[key] ? s.training[key] : [],
    })).filter(s => s.x.length);
    if (!series.length) continue;
    const fig = el("figure", "plot-box");
    fig.appendChild(el("figcaption", null, title));
    fig.appendChild(linePlot(series, {xLabel: "tokens seen", title}));
    grid.appendChild(fig);
  }
  if (!grid.childElementCount) {
    box.appendChild(el("p", "muted", "No training logs."));
  } else {
    box.appendChild(el("p", "muted small", "One line per SAE, coloured as in the table above."));
    box.appendChild(grid);
  }
  return box;
}

function densityCard(saes) {
  const box = card("Feature density", "wide");
  const grid = el("div", "plots");
  saes.forEach((s, i) => {
    const fig = el("figure", "plot-box");
    fig.appendChild(el("figcaption", null, `${s.name}: log10 density (${fmtInt(s.density.dead)} dead not shown)`));
    fig.appendChild(histogramPlot(s.density.edges, s.density.counts,
      {xLabel: "log10 density", color: SERIES_COLORS[i % SERIES_COLORS.length], title: `Feature density of ${s.name}`}));
    grid.appendChild(fig);
  });
  box.appendChild(grid);
  return box;
}

// Every steering experiment, from the manifest; the experiments view has their rows.
function experimentsCard(saes) {
  const box = card("Steering experiments", "wide");
  const rows = saes.flatMap(s => (s.steering ? s.steering.experiments : []).map(e => [s, e]));
  if (!rows.length) {
    box.appendChild(el("p", "muted", "None in this run (config.yaml `steering:`)."));
    return box;
  }
  const table = el("table", "grid-table experiments-table text-table");
  const head = el("tr");
  for (const h of ["experiment", "SAE", "mode", "targets", "prompts", "α grid"]) head.appendChild(el("th", null, h));
  table.appendChild(head);
  for (const [s, e] of rows) {
    const tr = el("tr");
    const name = el("td", "name");
    name.appendChild(link("#view=experiments", e.name));
    tr.appendChild(name);
    tr.appendChild(el("td", null)).appendChild(link(`#sae=${encodeURIComponent(s.name)}`, s.name));
    tr.appendChild(el("td", null, e.mode));
    const targets = tr.appendChild(el("td", "targets"));
    for (const f of e.features) targets.appendChild(link(featureHash(s.name, f), `#${f}`));
    for (const v of e.vectors) targets.appendChild(el("span", null, `vector ${v}`));
    tr.appendChild(el("td", null, fmtInt(e.prompts)));
    tr.appendChild(el("td", null, e.alphas.map(a => fmt(a)).join(", ")));
    table.appendChild(tr);
  }
  box.appendChild(table);
  return box;
}

// Per SAE with a concept ranking: how often its best unit beats the best single dimension on
// test (the manifest's summary); the concepts view has the rows.
function conceptsOverviewCard(saes) {
  const box = card("Concepts: SAE units vs single dimensions", "wide");
  const table = el("table", "grid-table text-table concepts-summary");
  const head = el("tr");
  for (const h of ["SAE", "labels", "levels", "(label, level) pairs where the best SAE unit beats the best dimension on test"]) head.appendChild(el("th", null, h)).scope = "col";
  table.appendChild(head);
  for (const s of saes.filter(s => s.concepts)) {
    const tr = el("tr");
    tr.appendChild(el("td", "name")).appendChild(link("#view=concepts", s.name));
    tr.appendChild(el("td", null, fmtInt(s.concepts.labels)));
    tr.appendChild(el("td", null, s.concepts.levels.join(", ")));
    tr.appendChild(el("td", null, aheadText(s.concepts)));
    table.appendChild(tr);
  }
  box.appendChild(table);
  return box;
}

function renderOverview(container, manifest) {
  const saes = manifest.saes;
  container.replaceChildren(
    runCard(manifest.run, saes),
    metricsCard(saes),
    experimentsCard(saes),
    ...(saes.some(s => s.concepts) ? [conceptsOverviewCard(saes)] : []),
    trainingCard(saes),
    densityCard(saes),
  );
}
