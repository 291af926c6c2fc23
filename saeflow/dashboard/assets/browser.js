// The feature list: search, sort and filter over every feature, drawing only the rows in view
// (a few dozen DOM nodes whatever the SAE's width).

const ROW_HEIGHT = 30;
const OVERSCAN = 8; // rows drawn beyond each edge of the view, so fast scrolling shows no gaps

class Browser {
  constructor() {
    this.list = document.getElementById("list");
    this.spacer = this.list.querySelector(".list-spacer");
    this.count = document.getElementById("list-count");
    this.search = document.getElementById("search");
    this.sort = document.getElementById("sort");
    this.filter = document.getElementById("filter");
    this.sae = null;
    this.selected = null;
    this.shown = new Uint32Array(0);
    this.drawn = "";
    this.haystack = null;
    this.search.addEventListener("input", () => this.refresh());
    this.sort.addEventListener("change", () => this.refresh());
    this.filter.addEventListener("change", () => this.refresh());
    this.list.addEventListener("scroll", () => requestAnimationFrame(() => this.draw()));
    window.addEventListener("resize", () => this.draw(true));
    this.list.addEventListener("keydown", e => this.key(e));
  }

  setSae(sae) {
    if (this.sae === sae) return;
    this.sae = sae;
    this.haystack = null;
    this.selected = null;
    const units = sae.index.has("new_unit");
    for (const value of ["kept", "pruned"]) this.filter.querySelector(`option[value=${value}]`).disabled = !units;
    if (!units && (this.filter.value === "kept" || this.filter.value === "pruned")) this.filter.value = "all";
    this.list.scrollTop = 0;
    this.refresh();
  }

  // Lower-cased labels (TF-IDF, LLM), peak tokens and TF-IDF tokens of every feature, built on the first search.
  searchText(f) {
    if (!this.haystack) {
      const sae = this.sae;
      this.haystack = new Array(sae.n);
      for (let g = 0; g < sae.n; g++) {
        const tokens = [...sae.tokenList("peak", g), ...sae.tokenList("tfidf", g)].map(([t]) => t);
        this.haystack[g] = [sae.label(g), sae.llmLabel(g), ...tokens].join("\n").toLowerCase();
      }
    }
    return this.haystack[f];
  }

  matches() {
    const sae = this.sae, A = sae.index.arrays;
    const keep = {
      all: () => true,
      alive: f => A.n_active[f] > 0,
      dead: f => A.n_active[f] === 0,
      dense: f => sae.isDense(f),
      kept: f => sae.isKept(f),
      pruned: f => sae.isKept(f) === false,
    }[this.filter.value];
    const query = this.search.value.trim().toLowerCase();
    const id = /^\d+$/.test(query) ? Number(query) : -1;
    const out = [];
    for (let f = 0; f < sae.n; f++) {
      if (!keep(f)) continue;
      if (query && f !== id && !this.searchText(f).includes(query)) continue;
      out.push(f);
    }
    return {out, id};
  }

  refresh() {
    if (!this.sae) return;
    const sae = this.sae, A = sae.index.arrays;
    const {out, id} = this.matches();
    // NaN (no value) sorts last; ties keep id order.
    const desc = v => (Number.isNaN(v) ? Infinity : -v);
    const key = {
      id: null,
      density: f => desc(A.density[f]),
      max: f => desc(A.max[f]),
    }[this.sort.value];
    if (this.sort.value === "label") {
      out.sort((a, b) => (sae.shownLabel(a) || "\uffff").localeCompare(sae.shownLabel(b) || "\uffff") || a - b);
    } else if (key) {
      out.sort((a, b) => key(a) - key(b) || a - b);
    }
    const exact = out.indexOf(id);
    if (exact > 0) out.unshift(...out.splice(exact, 1)); // an exact id match comes first
    this.shown = Uint32Array.from(out);
    this.count.textContent = `${fmtInt(out.length)} of ${fmtInt(sae.n)} features`;
    this.spacer.style.height = `${out.length * ROW_HEIGHT}px`;
    this.draw(true);
  }

  draw(force) {
    if (!this.sae) return;
    const first = Math.max(0, Math.floor(this.list.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.shown.length, Math.ceil((this.list.scrollTop + this.list.clientHeight) / ROW_HEIGHT) + OVERSCAN);
    const range = `${first}:${last}:${this.selected}`;
    if (!force && range === this.drawn) return;
    this.drawn = range;
    const rows = [];
    for (let i = first; i < last; i++) rows.push(this.row(this.shown[i], i));
    this.spacer.replaceChildren(...rows);
  }

  row(f, i) {
    const sae = this.sae, A = sae.index.arrays;
    const row = link(featureHash(sae.name, f), undefined, "row");
    row.style.top = `${i * ROW_HEIGHT}px`;
    if (f === this.selected) row.classList.add("selected");
    if (sae.isDead(f)) row.classList.add("dead");
    row.appendChild(el("span", "row-id", f));
    const llm = sae.llmLabel(f);
    if (llm) {
      // The LLM's label first, the TF-IDF label after it, dimmed.
      const label = row.appendChild(el("span", "row-label"));
      label.appendChild(el("span", "row-llm", llm));
      if (sae.label(f)) label.appendChild(el("span", "row-tfidf", sae.label(f)));
    } else {
      row.appendChild(el("span", "row-label", sae.label(f) || (sae.isDead(f) ? "dead" : "")));
    }
    row.appendChild(el("span", "row-density", fmtDensity(A.density[f])));
    row.title = `feature ${f}: density ${fmtDensity(A.density[f])}, max ${fmt(A.max[f])}` +
      (llm ? `\nLLM label: ${llm}\nTF-IDF label: ${sae.label(f)}` : "");
    return row;
  }

  select(f) {
    this.selected = f;
    const i = this.shown.indexOf(f);
    if (i >= 0) {
      const top = i * ROW_HEIGHT;
      if (top < this.list.scrollTop || top + ROW_HEIGHT > this.list.scrollTop + this.list.clientHeight) {
        this.list.scrollTop = top - this.list.clientHeight / 2;
      }
    }
    this.draw(true);
  }

  // Up/down move through the list as shown.
  key(e) {
    if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
    e.preventDefault();
    const i = this.shown.indexOf(this.selected) + (e.key === "ArrowDown" ? 1 : -1);
    if (i >= 0 && i < this.shown.length) location.hash = featureHash(this.sae.name, this.shown[i]);
  }
}
