"""Reading a built dashboard back in Python, as the page's data.js does, to check the packing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from saeflow.dashboard import blob

MANIFEST = re.compile(r'<script type="application/json" id="manifest">(.*?)</script>', re.S)
TEXT_COLUMNS = ("experiment", "mode", "prompt", "vector", "baseline", "steered")  # steering_rows.py TEXTS
BLOB = re.compile(r'<script type="application/octet-stream" id="(blob-\d+)">([A-Za-z0-9+/=]*)</script>')


class Dashboard:
    def __init__(self, path: Path):
        html = Path(path).read_text(encoding="utf-8")
        self.manifest = json.loads(MANIFEST.search(html).group(1))
        self.blobs = {key: blob.unpack(blob.from_text(text)) for key, text in BLOB.findall(html)}
        self.strings, self.corpus = self.blobs[self.manifest["corpus"]]
        self.strings = self.strings["strings"]

    def sae(self, name: str) -> dict:
        return next(s for s in self.manifest["saes"] if s["name"] == name)

    def index(self, name: str) -> tuple[dict, dict]:
        return self.blobs[self.sae(name)["index"]]

    def chunk(self, name: str, f: int) -> tuple[dict, dict]:
        size = self.index(name)[0]["chunk_features"]
        return self.blobs[self.sae(name)["chunks"][f // size]]

    def rows(self, name: str, prefix: str, f: int) -> range:
        """Feature f's rows of a table in its chunk (empty where the table is absent)."""
        payload, arrays = self.chunk(name, f)
        ptr = arrays.get(f"{prefix}.ptr")
        return range(0) if ptr is None else range(ptr[f - payload["first"]], ptr[f - payload["first"] + 1])

    def steering(self, name: str) -> list[dict] | None:
        """The SAE's steering rows as the table's rows (texts looked up), or None where it has none."""
        entry = self.sae(name)["steering"]
        if entry is None:
            return None
        payload, _ = self.blobs[entry["blob"]]
        texts, columns = payload["texts"], payload["rows"]
        n = len(columns["experiment"])
        return [{c: (texts[v[i]] if v[i] is not None and c in TEXT_COLUMNS else v[i]) for c, v in columns.items()}
                for i in range(n)]

    def concepts(self, name: str) -> list[dict] | None:
        """The SAE's concept ranking as the table's rows in the blob's order (names looked up, sign
        ±1, floats NaN where null), or None where it has none."""
        entry = self.sae(name)["concepts"]
        if entry is None:
            return None
        payload, arrays = self.blobs[entry["blob"]]
        names = {"label": payload["labels"], "level": payload["levels"], "source": payload["sources"],
                 "criterion": payload["criteria"]}
        out = []
        for i in range(arrays["rank"].size):
            row = {c: names[c][arrays[c][i]] for c in names}
            row.update(rank=int(arrays["rank"][i]), unit=int(arrays["unit"][i]), sign=-1 if arrays["negated"][i] else 1)
            row.update({c: float(v[i]) for c, v in arrays.items() if v.dtype.kind == "f"})
            out.append(row)
        return out

    def examples(self, name: str, kind: str, f: int) -> list[dict]:
        """Feature f's examples of kind "top" or "q", in display order, like Sae.examples(): each
        token's piece of the text (the first token's from its own start) and whether it is special;
        an ablated top example also its tokens' `loss` and `effect` (NaN where null)."""
        _, ex = self.chunk(name, f)
        acts = self.rows(name, f"{kind}_acts", f)
        at = acts.start if acts else 0
        out = []
        for i in self.rows(name, kind, f):
            seg, offset, length = (int(ex[f"{kind}.{c}"][i]) for c in ("segment", "offset", "length"))
            base = int(self.corpus["seg.ptr"][seg]) + offset
            max_index = int(ex[f"{kind}.max_index"][i])
            activation = np.float32(ex[f"{kind}.activation"][i])
            pieces = [int(ex[f"{kind}.first_piece"][i]), *self.corpus["tokens"][base + 1 : base + length]]
            out.append({
                "tokens": [self.strings[t] for t in pieces],
                "special": self.corpus["special"][base : base + length].astype(bool).tolist(),
                "acts": ex[f"{kind}.acts"][at : at + length] / np.float32(255) * activation,
                "activation": activation,
                "seq": int(self.corpus["seg.seq"][seg]),
                "start": int(self.corpus["seg.start"][seg]) + offset,
                "pos": int(self.corpus["seg.start"][seg]) + offset + max_index,
                "band": int(ex["q.band"][i]) if kind == "q" else None,
                "ablation": None,
            })
            at += length
        if kind == "top" and "abl.ptr" in ex:
            tok = self.rows(name, "abl_tok", f).start
            for i in self.rows(name, "abl", f):
                e = out[int(ex["abl.example"][i])]
                n = len(e["tokens"])
                e["ablation"] = {"loss": ex["abl.loss"][tok : tok + n], "effect": ex["abl.effect"][tok : tok + n]}
                tok += n
        return out


def assert_shown_acts(shown, acts, activation) -> None:
    """Token activations within their quantisation (1/255 of the example's max, which is float16),
    exactly zero where the feature is off, and the max itself to float16."""
    shown, acts = np.asarray(shown), np.asarray(acts)
    np.testing.assert_allclose(shown, acts, atol=activation / 255, rtol=1e-3)
    np.testing.assert_array_equal(shown > 0, acts > 0)
    assert shown.max() == pytest.approx(activation, rel=1e-3)
