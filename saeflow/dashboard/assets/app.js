// Routing: the hash is the state. `#sae=<name>&feature=<id>` opens a feature, `#sae=<name>` a
// SAE's list, `#view=experiments` every steering run, `#view=concepts` every concept ranking,
// anything else the overview; back/forward work because every view is a hash.

const manifest = JSON.parse(document.getElementById("manifest").textContent);
const views = {
  overview: document.getElementById("overview"),
  features: document.getElementById("features"),
  experiments: document.getElementById("experiments"),
  concepts: document.getElementById("concepts"),
};
// The views of every SAE at once: title and renderer.
const WHOLE_RUN = {experiments: ["Experiments", renderExperiments], concepts: ["Concepts", renderConcepts]};
const browser = new Browser();
const picker = document.getElementById("sae-select");
let routeCount = 0;

function show(view) {
  for (const [name, node] of Object.entries(views)) node.hidden = name !== view;
  for (const name of Object.keys(views)) document.getElementById(`nav-${name}`).classList.toggle("active", view === name);
  hideTip();
}

function setLoading(on) {
  document.getElementById("loading").hidden = !on;
}

async function route() {
  const current = ++routeCount; // a later hash change wins over a slower earlier one
  const params = new URLSearchParams(location.hash.slice(1));
  const view = params.get("view");
  if (Object.hasOwn(WHOLE_RUN, view)) {
    const [title, render] = WHOLE_RUN[view];
    show(view);
    document.title = `${title} · saeflow`;
    setLoading(true);
    try {
      await render(views[view], manifest, () => current !== routeCount);
    } finally {
      if (current === routeCount) setLoading(false);
    }
    return;
  }
  const entry = manifest.saes.find(s => s.name === params.get("sae"));
  if (!entry) {
    show("overview");
    document.title = "saeflow dashboard";
    return;
  }
  picker.value = entry.name;
  document.getElementById("nav-features").href = `#sae=${encodeURIComponent(entry.name)}`;
  show("features");
  setLoading(true);
  try {
    await showFeature(entry, params.get("feature"), current);
  } finally {
    if (current === routeCount) setLoading(false);
  }
}

async function showFeature(entry, raw, current) {
  const sae = await openSae(entry, manifest.corpus);
  if (current !== routeCount) return;
  browser.setSae(sae);
  const page = document.getElementById("feature");
  if (raw === null) {
    page.replaceChildren(el("p", "empty", "Pick a feature from the list, or search by id, label or token."));
    browser.select(null);
    return;
  }
  const f = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (f < sae.n) {
    const [chunk, steering, concepts] = await Promise.all([sae.chunk(f), sae.steering(), sae.concepts()]);
    if (current !== routeCount) return;
    renderFeature(page, sae, chunk, f, steering, concepts);
  } else {
    renderMissing(page, sae, raw);
  }
  document.title = `Feature ${raw} · ${entry.name} · saeflow`;
  browser.select(f);
  page.scrollTop = 0;
}

function start() {
  document.getElementById("run-model").textContent = manifest.run.model;
  document.getElementById("run-model").title = manifest.run.model;
  for (const s of manifest.saes) picker.appendChild(el("option", null, s.name)).value = s.name;
  picker.addEventListener("change", () => { location.hash = `#sae=${encodeURIComponent(picker.value)}`; });
  document.getElementById("nav-features").href = `#sae=${encodeURIComponent(manifest.saes[0].name)}`;
  document.getElementById("nav-concepts").hidden = !manifest.saes.some(s => s.concepts);
  renderOverview(views.overview, manifest);
  watchTips();
  window.addEventListener("hashchange", route);
  route();
}

start();
