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
  }

  has(name) { return name in this.arrays; }

  // Rows [lo, hi) of feature f in a table stored by feature (CSR `<prefix>.ptr`).
  rows(prefix, f) {
    const ptr = this.arrays[prefix + ".ptr"];
    return ptr ? [ptr[f], ptr[f + 1]] : [0, 0];
  }

  // Float values [lo, hi) of an f2 or f4 array as a Float32Array.
  floats(name, lo, hi) {
    const array = this.arrays[name];
    if (this.dtypes[name] !== "f2") return array.subarray(lo, hi);
    const table = halfTable();
    const out = new Float32Array(hi - lo);
    for (let i = lo; i < hi; i++) out[i - lo] = table[array[i]];
    return out;
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

// Offsets of consecutive runs of `lengths` (n + 1 entries).
function prefixSums(lengths) {
  const out = new Uint32Array(lengths.length + 1);
  for (let i = 0; i < lengths.length; i++) out[i + 1] = out[i] + lengths[i];
  return out;
}

// One SAE, decoded: its features and examples blobs plus the shared corpus blob.
class Sae {
  constructor(entry, feat, ex, corpus) {
    this.entry = entry;
    this.name = entry.name;
    this.n = entry.d_sae;
    this.feat = feat;
    this.ex = ex;
    this.corpus = corpus;
    this.strings = corpus.json.strings;
    this.labels = feat.json.labels;
    this.actStart = {};
    for (const kind of ["top", "q"]) {
      if (ex.has(kind + ".length")) this.actStart[kind] = prefixSums(ex.arrays[kind + ".length"]);
    }
  }

  label(f) { return this.labels ? this.labels[f] : ""; }
  isDead(f) { return this.feat.arrays.n_active[f] === 0; }
  isKept(f) { return this.feat.has("new_unit") ? this.feat.arrays.new_unit[f] >= 0 : null; }
  isDense(f) { return this.feat.arrays.density[f] >= DENSE_DENSITY; }

  // Examples of feature f: kind "top" or "q" (quantile), in display order.
  examples(kind, f) {
    const A = this.ex.arrays, C = this.corpus.arrays;
    const [lo, hi] = this.ex.rows(kind, f);
    const out = [];
    for (let i = lo; i < hi; i++) {
      const seg = A[kind + ".segment"][i], offset = A[kind + ".offset"][i], length = A[kind + ".length"][i];
      const maxIndex = A[kind + ".max_index"][i];
      const base = C["seg.ptr"][seg] + offset;
      const tokens = new Array(length);
      for (let j = 0; j < length; j++) tokens[j] = this.strings[C.tokens[base + j]];
      const at = this.actStart[kind][i];
      const acts = this.ex.floats(kind + ".acts", at, at + length);
      out.push({
        tokens, acts, maxIndex,
        activation: acts[maxIndex],
        seq: C["seg.seq"][seg],
        pos: C["seg.start"][seg] + offset + maxIndex,
        band: kind === "q" ? A["q.band"][i] : null,
      });
    }
    return out;
  }

  // The tokens where the feature peaks in its top examples, most frequent first.
  topTokens(f) {
    const counts = new Map();
    const A = this.ex.arrays, C = this.corpus.arrays;
    const [lo, hi] = this.ex.rows("top", f);
    for (let i = lo; i < hi; i++) {
      const t = C.tokens[C["seg.ptr"][A["top.segment"][i]] + A["top.offset"][i] + A["top.max_index"][i]];
      counts.set(t, (counts.get(t) || 0) + 1);
    }
    return [...counts].sort((a, b) => b[1] - a[1]).map(([t, n]) => [this.strings[t], n]);
  }
}

// Density at which a feature counts as dense in the browser's filter.
const DENSE_DENSITY = 0.01;

const saeCache = new Map();
function openSae(entry, corpusId) {
  if (!saeCache.has(entry.name)) {
    saeCache.set(entry.name, Promise.all([loadBlob(entry.features), loadBlob(entry.examples), loadBlob(corpusId)])
      .then(([feat, ex, corpus]) => new Sae(entry, feat, ex, corpus)));
  }
  return saeCache.get(entry.name);
}
