"use strict";
// Decoding the page's blobs: base64 -> gzip -> header + byte-shuffled typed arrays.
// The layout is written by saeflow/dashboard/blob.py, whose unpack() mirrors this one.

const DTYPES = {u1: Uint8Array, u2: Uint16Array, u4: Uint32Array, i4: Int32Array, f2: Uint16Array, f4: Float32Array};

function base64Bytes(text) {
  if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

async function gunzip(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// Byte plane b holds byte b of every element; interleave the planes back into elements.
function unshuffle(bytes, Type, length) {
  const size = Type.BYTES_PER_ELEMENT;
  if (size === 1) return new Type(bytes.buffer, bytes.byteOffset, length);
  const out = new Uint8Array(length * size);
  for (let b = 0; b < size; b++) {
    const plane = bytes.subarray(b * length, (b + 1) * length);
    for (let i = 0, j = b; i < length; i++, j += size) out[j] = plane[i];
  }
  return new Type(out.buffer);
}

class Unpacked {
  constructor(json, arrays, dtypes) {
    this.json = json;
    this.arrays = arrays;
    this.dtypes = dtypes;
    this.first = json && json.first ? json.first : 0; // a chunk's first feature
  }

  has(name) { return name in this.arrays; }

  // Rows [lo, hi) of feature f in a table grouped by feature (`<prefix>.ptr`, see tables.py).
  rows(prefix, f) {
    const ptr = this.arrays[prefix + ".ptr"];
    return ptr ? [ptr[f - this.first], ptr[f - this.first + 1]] : [0, 0];
  }

  // Element i of a float array, f2 or f4.
  float(name, i) {
    const value = this.arrays[name][i];
    return this.dtypes[name] === "f2" ? halfTable()[value] : value;
  }
}

let HALF = null;
// All 65,536 float16 bit patterns as float32, built once on first use.
function halfTable() {
  if (HALF) return HALF;
  HALF = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 31, man = h & 1023;
    HALF[h] = exp === 0 ? sign * man * 2 ** -24
      : exp === 31 ? (man ? NaN : sign * Infinity)
      : sign * (1 + man / 1024) * 2 ** (exp - 15);
  }
  return HALF;
}

async function unpackBlob(id) {
  const raw = await gunzip(base64Bytes(document.getElementById(id).textContent));
  const size = new DataView(raw.buffer, raw.byteOffset).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(raw.subarray(4, 4 + size)));
  const data = raw.subarray(4 + size);
  const arrays = {}, dtypes = {};
  for (const a of header.arrays) {
    const Type = DTYPES[a.dtype];
    arrays[a.name] = unshuffle(data.subarray(a.offset, a.offset + a.length * Type.BYTES_PER_ELEMENT), Type, a.length);
    dtypes[a.name] = a.dtype;
  }
  return new Unpacked(header.json, arrays, dtypes);
}

const blobCache = new Map();
function loadBlob(id) {
  if (!blobCache.has(id)) blobCache.set(id, unpackBlob(id));
  return blobCache.get(id);
}

// What a list shows for feature f of an SAE's decoded index: the LLM's label where it gave one,
// else the TF-IDF label ("" where neither).
function shownLabels(index) {
  const llm = index.json.llm_labels, tfidf = index.json.labels;
  return f => (llm && llm[f]) || (tfidf && tfidf[f]) || "";
}

// One SAE: its index blob (every feature's stats and labels) and the shared corpus blob, decoded
// when the SAE is opened; the chunk holding a feature's details is decoded when it is shown.
class Sae {
  constructor(entry, index, corpus) {
    this.entry = entry;
    this.name = entry.name;
    this.n = entry.d_sae;
    this.index = index;
    this.corpus = corpus;
    this.strings = corpus.json.strings;
    this.wordpiece = corpus.json.wordpiece;
    this.labels = index.json.labels;
    this.llmLabels = index.json.llm_labels;
    this.shownLabel = shownLabels(index);
  }

  label(f) { return this.labels ? this.labels[f] : ""; }
  llmLabel(f) { return this.llmLabels ? this.llmLabels[f] : ""; }
  isDead(f) { return this.index.arrays.n_active[f] === 0; }
  isKept(f) { return this.index.has("new_unit") ? this.index.arrays.new_unit[f] >= 0 : null; }
  isDense(f) { return this.index.arrays.density[f] >= DENSE_DENSITY; }

  chunk(f) {
    return loadBlob(this.entry.chunks[Math.floor(f / this.index.json.chunk_features)]);
  }

  // The SAE's steering rows (null where it has no experiment).
  steering() { return loadSteering(this.entry); }
  // The SAE's concept ranking (null where it has none).
  concepts() { return loadConcepts(this.entry); }

  // Strings of an index table of token ids ("peak", "tfidf"), with its scores where it has them.
  tokenList(prefix, f) {
    if (!this.index.has(prefix + ".token")) return [];
    const [lo, hi] = this.index.rows(prefix, f);
    const out = [];
    for (let i = lo; i < hi; i++) {
      const score = this.index.has(prefix + ".score") ? this.index.float(prefix + ".score", i) : undefined;
      out.push([this.strings[this.index.arrays[prefix + ".token"][i]], score]);
    }
    return out;
  }

  // Examples of feature f from its chunk: kind "top" or "q" (quantile), in display order. Each
  // token is its piece of the document's text; a window's first token shows the text from its own
  // start (its `first_piece`), the segment's piece of it carries the whitespace before it.
  // Token activations come stored as 0..255 parts of the example's max (see examples.py).
  examples(chunk, kind, f) {
    const A = chunk.arrays, C = this.corpus.arrays;
    const [lo, hi] = chunk.rows(kind, f);
    let at = chunk.rows(kind + "_acts", f)[0];
    const out = [];
    for (let i = lo; i < hi; i++) {
      const seg = A[kind + ".segment"][i], offset = A[kind + ".offset"][i], length = A[kind + ".length"][i];
      const maxIndex = A[kind + ".max_index"][i], activation = chunk.float(kind + ".activation", i);
      const base = C["seg.ptr"][seg] + offset;
      const tokens = new Array(length), special = new Array(length), acts = new Float32Array(length);
      for (let j = 0; j < length; j++) {
        tokens[j] = this.strings[j ? C.tokens[base + j] : A[kind + ".first_piece"][i]];
        special[j] = C.special[base + j] === 1;
        acts[j] = A[kind + ".acts"][at + j] / 255 * activation;
      }
      at += length;
      out.push({
        tokens, special, acts, maxIndex, activation,
        seq: C["seg.seq"][seg],
        pos: C["seg.start"][seg] + offset + maxIndex,
        band: kind === "q" ? A["q.band"][i] : null,
        loss: null, effect: null,
      });
    }
    if (kind === "top") this.attachAblation(chunk, f, out);
    return out;
  }

  // Ablated top examples get their tokens' clean loss and loss effect (NaN: none), in window order.
  attachAblation(chunk, f, examples) {
    if (!chunk.has("abl.example")) return;
    const A = chunk.arrays;
    const [lo, hi] = chunk.rows("abl", f);
    let at = chunk.rows("abl_tok", f)[0];
    for (let i = lo; i < hi; i++) {
      const ex = examples[A["abl.example"][i]], n = ex.tokens.length;
      ex.loss = A["abl.loss"].subarray(at, at + n);
      ex.effect = A["abl.effect"].subarray(at, at + n);
      at += n;
    }
  }
}

// Rows grouped by consecutive equal keys, in stored order: [[key, [rows]], ...].
function runsBy(rows, key) {
  const out = [];
  for (const i of rows) {
    const k = key(i);
    if (out.length && out[out.length - 1][0] === k) out[out.length - 1][1].push(i);
    else out.push([k, [i]]);
  }
  return out;
}

// One SAE's steering experiments (steering_rows.py): rows as columns, texts as ids into `texts`;
// rows of a feature sorted by experiment, prompt and alpha.
class Steering {
  constructor(entry, unpacked) {
    this.experiments = entry.steering.experiments;
    this.texts = unpacked.json.texts;
    this.columns = unpacked.json.rows;
    this.n = this.columns.experiment.length;
    this.byFeature = new Map();
    for (let i = 0; i < this.n; i++) {
      const f = this.columns.feature[i];
      if (f === null) continue; // a vector's rows: the experiments view only
      if (!this.byFeature.has(f)) this.byFeature.set(f, []);
      this.byFeature.get(f).push(i);
    }
  }

  text(column, i) {
    const id = this.columns[column][i];
    return id === null ? null : this.texts[id];
  }

  value(column, i) { return this.columns[column][i]; }

  rowsOf(f) { return this.byFeature.get(f) || []; }

  // A target's name: "feature 12" or "vector <label>", as a grouping key.
  target(i) {
    const f = this.columns.feature[i];
    return f === null ? `vector ${this.text("vector", i)}` : `feature ${f}`;
  }
}

const steeringCache = new Map();
function loadSteering(entry) {
  if (!entry.steering) return Promise.resolve(null);
  if (!steeringCache.has(entry.name)) {
    steeringCache.set(entry.name, loadBlob(entry.steering.blob).then(unpacked => new Steering(entry, unpacked)));
  }
  return steeringCache.get(entry.name);
}

// One SAE's concept ranking (concept_rows.py): rows sorted by label, level, criterion, source
// and rank; label, level, source and criterion as indices into the payload's lists.
class Concepts {
  constructor(unpacked) {
    this.data = unpacked;
    const J = unpacked.json;
    this.names = {label: J.labels, level: J.levels, source: J.sources, criterion: J.criteria};
    this.n = unpacked.arrays.rank.length;
    this.bySaeUnit = new Map();
    this.leaders = new Map(); // group and source -> its rank-1 row
    for (let i = 0; i < this.n; i++) {
      if (this.value("rank", i) === 1) this.leaders.set(`${this.group(i)}\u0000${this.name("source", i)}`, i);
      if (this.name("source", i) !== "sae") continue;
      const f = this.value("unit", i);
      if (!this.bySaeUnit.has(f)) this.bySaeUnit.set(f, []);
      this.bySaeUnit.get(f).push(i);
    }
  }

  name(column, i) { return this.names[column][this.data.arrays[column][i]]; }
  value(column, i) { return this.data.arrays[column][i]; }
  score(column, i) { return this.data.float(column, i); }
  // The score row i is ranked by, on a split ("calibration" or "test").
  ranked(split, i) { return this.score(`${split}_${this.name("criterion", i)}`, i); }
  // A (label, level, criterion) as a grouping key.
  group(i) { return ["label", "level", "criterion"].map(c => this.value(c, i)).join(","); }
  rowsOf(f) { return this.bySaeUnit.get(f) || []; }
  // The rank-1 row of `source` in row i's group, or undefined.
  leader(i, source) { return this.leaders.get(`${this.group(i)}\u0000${source}`); }
}

const conceptsCache = new Map();
function loadConcepts(entry) {
  if (!entry.concepts) return Promise.resolve(null);
  if (!conceptsCache.has(entry.name)) {
    conceptsCache.set(entry.name, loadBlob(entry.concepts.blob).then(unpacked => new Concepts(unpacked)));
  }
  return conceptsCache.get(entry.name);
}

// Density at which a feature counts as dense in the browser's filter.
const DENSE_DENSITY = 0.01;

const saeCache = new Map();
function openSae(entry, corpusId) {
  if (!saeCache.has(entry.name)) {
    saeCache.set(entry.name, Promise.all([loadBlob(entry.index), loadBlob(corpusId)])
      .then(([index, corpus]) => new Sae(entry, index, corpus)));
  }
  return saeCache.get(entry.name);
}
