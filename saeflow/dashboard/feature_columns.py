"""One SAE's per-feature tables as arrays: one value per feature, or rows grouped by feature.

Missing floats (Parquet nulls) become NaN, which the page shows as "–". Scores only shown to
three digits are stored as float16 where they fit.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from saeflow.analysis.groups import rank_in_runs, run_starts
from saeflow.concept_items import LEVELS
from saeflow.dashboard.blob import compact_floats, smallest_uint
from saeflow.dashboard.tables import ByFeature, Strings, check_ids, codes, require_columns
from saeflow.feature_shard import DETECTION_SCHEMA
from saeflow.splits import SPLITS

# Detection has a row per (unit, label, level, split); the page shows each unit's best few on test.
DETECTION_PER_UNIT = 10
# Label alignment has a row per (feature, label); the page shows each feature's best by cosine.
ALIGNMENT_PER_FEATURE = 5
NEIGHBOUR_KINDS = ("cosine", "coactivation")


def floats(table: pa.Table, column: str) -> np.ndarray:
    return table[column].cast(pa.float32()).to_numpy()


def ints(table: pa.Table, column: str) -> np.ndarray:
    return table[column].to_numpy().astype(np.int64)


def per_feature(table: pa.Table, key: str, n_features: int, source: str) -> np.ndarray:
    """The row of each feature (−1 where it has none)."""
    feature = check_ids(ints(table, key), n_features, source)
    row = np.full(n_features, -1, dtype=np.int64)
    row[feature] = np.arange(feature.size)
    return row


def spread(values: np.ndarray, row: np.ndarray, fill) -> np.ndarray:
    """values[row] with `fill` where row is −1."""
    out = np.full(row.size, fill, dtype=values.dtype)
    out[row >= 0] = values[row[row >= 0]]
    return out


def stats_arrays(stats: pa.Table, n_features: int, source: str) -> dict[str, np.ndarray]:
    row = per_feature(stats, "feature", n_features, source)
    arrays = {"n_active": smallest_uint(spread(ints(stats, "n_active"), row, 0))}
    for column in ("density", "max", "mean", "std", "min"):
        arrays[column] = spread(floats(stats, column), row, np.float32("nan"))
    return arrays


def unit_arrays(unit_map: dict, thresholds: pa.Table | None, n_features: int, source: str) -> tuple[dict, list[str]]:
    """new_unit (−1 = pruned) and the thresholds p<q> of kept units (NaN elsewhere)."""
    kept = check_ids(np.asarray(unit_map["kept_units"], dtype=np.int64), n_features, source)
    new_unit = np.full(n_features, -1, dtype=np.int32)
    new_unit[kept] = np.arange(kept.size, dtype=np.int32)
    arrays, names = {"new_unit": new_unit}, []
    if thresholds is not None:
        row = per_feature(thresholds, "unit", n_features, source)
        names = [c for c in thresholds.column_names if c.startswith("p") and c[1:].replace("_", "").isdigit()]
        for name in names:
            arrays[f"thr.{name}"] = spread(floats(thresholds, name), row, np.float32("nan"))
    return arrays, names


def label_list(table: pa.Table, n_features: int, source: str) -> list[str]:
    row = per_feature(table, "feature", n_features, source)
    labels = table["label"].to_pylist()
    return [(labels[r] or "") if r >= 0 else "" for r in row]


def label_token_columns(table: pa.Table, n_features: int, source: str, strings: Strings) -> ByFeature | None:
    """The labeler's scored tokens (labels.parquet `tokens` and `scores`, the default labeler's
    top TF-IDF tokens), where the table has them."""
    if not {"tokens", "scores"} <= set(table.column_names):
        return None
    table = table.sort_by("feature")
    feature = check_ids(ints(table, "feature"), n_features, source)
    lengths = pc.fill_null(pc.list_value_length(table["tokens"]), 0).to_numpy()
    return ByFeature.from_lengths("tfidf", feature, lengths, n_features, {
        "tfidf.token": smallest_uint(strings.ids(pc.list_flatten(table["tokens"]))),
        "tfidf.score": compact_floats(pc.list_flatten(table["scores"]).cast(pa.float32()).to_numpy()),
    })


def llm_label_list(table: pa.Table, n_features: int, source: str) -> tuple[list[str], list[str]]:
    """Each feature's LLM label ("" where it has none: not sent, or its request failed) and the
    models that wrote them."""
    table = table.filter(pc.is_valid(table["label"]))
    models = sorted(set(table["model"].drop_null().to_pylist())) if "model" in table.column_names else []
    return label_list(table, n_features, source), models


def histogram_columns(hist: pa.Table, n_features: int, source: str) -> list[ByFeature]:
    hist = hist.sort_by("feature")
    feature = check_ids(ints(hist, "feature"), n_features, source)
    out = []
    for column in ("counts", "edges"):
        lengths = pc.fill_null(pc.list_value_length(hist[column]), 0).to_numpy()
        values = pc.list_flatten(hist[column])
        values = smallest_uint(values.to_numpy()) if column == "counts" else values.cast(pa.float32()).to_numpy()
        out.append(ByFeature.from_lengths(f"hist_{column}", feature, lengths, n_features, {f"hist.{column}": values}))
    return out


def influence_columns(table: pa.Table, n_features: int, source: str, strings: Strings) -> ByFeature:
    """influences.parquet: the tokens a feature's decoder row promotes (+) and suppresses (−)."""
    return signed_token_columns("inf", "score", table, n_features, source, strings)


def ablation_logit_columns(table: pa.Table, n_features: int, source: str, strings: Strings) -> ByFeature:
    """ablation_logits.parquet: the tokens whose log-prob a feature raises (+) and lowers (−) most (clean
    minus ablated)."""
    return signed_token_columns("ablg", "effect", table, n_features, source, strings)


def signed_token_columns(prefix: str, value: str, table: pa.Table, n_features: int, source: str,
                         strings: Strings) -> ByFeature:
    """A table of (feature, sign, rank, token, <value>): per feature its "+" then "−" tokens by rank."""
    table = table.sort_by([("feature", "ascending"), ("sign", "ascending"), ("rank", "ascending")])
    return ByFeature.from_sorted(prefix, ints(table, "feature"), n_features, source, {
        f"{prefix}.positive": pc.equal(table["sign"], "+").to_numpy(zero_copy_only=False).astype(np.uint8),
        f"{prefix}.token": smallest_uint(strings.ids(table["token"])),
        f"{prefix}.{value}": compact_floats(floats(table, value)),
    })


def neighbour_columns(table: pa.Table, n_features: int, source: str) -> ByFeature:
    table = table.sort_by([("feature", "ascending"), ("kind", "ascending"), ("rank", "ascending")])
    return ByFeature.from_sorted("nb", ints(table, "feature"), n_features, source, {
        "nb.kind": codes(table, "kind", NEIGHBOUR_KINDS, source),
        "nb.other": smallest_uint(ints(table, "other")),
        "nb.score": compact_floats(floats(table, "score")),
    })


def detection_columns(table: pa.Table, n_features: int, source: str) -> tuple[ByFeature, list[str]]:
    """Each unit's DETECTION_PER_UNIT (label, level) pairs of highest test F1 (undefined F1 last),
    with their test scores: the split its threshold was not calibrated on. Levels are indices
    into LEVELS."""
    require_columns(table, tuple(DETECTION_SCHEMA.names), source)
    table = table.filter(pc.equal(table["split"], SPLITS[1]))
    table = table.sort_by([("unit", "ascending"), ("f1", "descending")])
    keep = rank_in_runs(run_starts(ints(table, "unit"))) < DETECTION_PER_UNIT
    table = table.filter(pa.array(keep))
    encoded = table["label"].combine_chunks().dictionary_encode()
    columns = {"det.label": smallest_uint(encoded.indices.to_numpy()), "det.level": codes(table, "level", LEVELS, source)}
    for column in ("threshold", "precision", "recall", "f1", "auroc"):
        columns[f"det.{column}"] = compact_floats(floats(table, column))
    rows = ByFeature.from_sorted("det", ints(table, "unit"), n_features, source, columns)
    return rows, encoded.dictionary.to_pylist()


def alignment_columns(table: pa.Table, n_features: int, source: str) -> tuple[ByFeature, list[str]]:
    """Each feature's ALIGNMENT_PER_FEATURE labels of highest decoder-row cosine with the label's
    vector (undefined last), with the feature's rank among all features for that label."""
    table = table.sort_by([("feature", "ascending"), ("cosine", "descending")])
    keep = rank_in_runs(run_starts(ints(table, "feature"))) < ALIGNMENT_PER_FEATURE
    table = table.filter(pa.array(keep))
    encoded = table["label"].combine_chunks().dictionary_encode()
    rows = ByFeature.from_sorted("align", ints(table, "feature"), n_features, source, {
        "align.label": smallest_uint(encoded.indices.to_numpy()),
        "align.cosine": compact_floats(floats(table, "cosine")),
        "align.rank": smallest_uint(ints(table, "rank")),
    })
    return rows, encoded.dictionary.to_pylist()
