"""Every activation analysis of one shard of features, read from the feature-major store.

A shard job reads its features' entries from `by_feature.zarr` and writes one Parquet piece per
table (stats, histograms, top and quantile examples, TF-IDF labels over all tokens; stats and
percentiles over the calibration split's content tokens; detection on both splits);
the gather jobs concatenate the pieces. All computation is vectorised over the shard's features
(see saeflow.analysis); nothing here loops over features or tokens.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from saeflow import storage
from saeflow.concept_items import ConceptCorpus, ScoredItems, load_concept_corpus
from saeflow.analysis.contexts import activations_at, context_windows
from saeflow.analysis.detection import detection_scores, item_maxima
from saeflow.analysis.entries import Entries, csc_entries
from saeflow.analysis.histograms import histogram_counts, histogram_edges
from saeflow.analysis.labels import label_tokens
from saeflow.analysis.percentiles import percentiles
from saeflow.analysis.quantile_examples import sample_bands
from saeflow.analysis.stats import feature_stats
from saeflow.analysis.top_examples import sequence_maxima, top_sequences

log = logging.getLogger(__name__)

LABEL_TOKENS = 3
DETECTION_SCHEMA = pa.schema([("unit", pa.int64()), ("label", pa.string()), ("level", pa.string()),
                              ("split", pa.string()), ("threshold", pa.float64()), ("precision", pa.float64()),
                              ("recall", pa.float64()), ("f1", pa.float64()), ("auroc", pa.float64())])


@dataclass(frozen=True)
class AnalysisParams:
    """The `analysis:` settings that shape the per-feature tables (recorded in params.json)."""

    top_k: int = 20
    context: int = 10
    bins: int = 50
    histogram_scale: str = "linear"
    percentiles: tuple[float, ...] = (50, 90, 99)
    detection_percentile: float = 90
    quantile_bands: int = 10
    per_band: int = 5
    seed: int = 0

    @property
    def all_percentiles(self) -> list[float]:
        return sorted(set(self.percentiles) | {self.detection_percentile})


def percentile_column(q: float) -> str:
    """`p99` for 99, `p99_5` for 99.5 (the contract's names)."""
    return "p" + f"{q:g}".replace(".", "_")


@dataclass(frozen=True)
class CorpusIndex:
    """Per-token sequence, document and token id, plus the strings of every token id that occurs."""

    token_seq: np.ndarray
    token_doc: np.ndarray
    token_id: np.ndarray
    vocab_id: np.ndarray  # sorted token ids (corpus/idf.parquet)
    vocab_token: np.ndarray  # their strings
    vocab_idf: np.ndarray
    concepts: ConceptCorpus  # splits, labels and spans

    def token_strings(self, token_id: np.ndarray) -> np.ndarray:
        return self.vocab_token[np.searchsorted(self.vocab_id, token_id)]


def load_corpus_index(tokens_path, idf_path, documents_path) -> CorpusIndex:
    tokens = storage.read_parquet_columns(tokens_path, ["seq", "doc", "token_id"])
    idf = storage.read_parquet_columns(idf_path, ["token_id", "token", "idf"])
    order = np.argsort(idf["token_id"])
    return CorpusIndex(tokens["seq"], tokens["doc"], tokens["token_id"], idf["token_id"][order],
                       idf["token"][order], idf["idf"][order], load_concept_corpus(tokens_path, documents_path))


def shard_range(n_features: int, n_shards: int, shard: int) -> range:
    """Features of shard `shard` when n_features are cut into n_shards near-equal ranges."""
    bounds = np.linspace(0, n_features, n_shards + 1).round().astype(int)
    return range(int(bounds[shard]), int(bounds[shard + 1]))


def open_by_feature(path):
    """by_feature.zarr's group, checked to hold the contract's attrs and arrays of matching sizes."""
    group = storage.open_zarr_group(path, attrs=("n_features", "n_tokens"), arrays=("indptr", "token", "value"))
    n_features, nnz = group.attrs["n_features"], group["token"].shape[0]
    if group["indptr"].shape != (n_features + 1,) or group["value"].shape != (nnz,):
        raise storage.damaged(path, f"indptr {group['indptr'].shape}, token {group['token'].shape} and value "
                              f"{group['value'].shape} do not fit n_features {n_features}")
    return group


def read_feature_indptr(path, features: range | None = None, group=None) -> np.ndarray:
    """by_feature's indptr (of `features`, all by default), checked to rise within its entries."""
    group = group if group is not None else open_by_feature(path)
    n_features, nnz = group.attrs["n_features"], group["token"].shape[0]
    features = range(n_features) if features is None else features
    if features.stop > n_features:
        raise storage.damaged(path, f"{n_features} features, fewer than the shard's {features}")
    indptr = storage.read_zarr_array(group, "indptr", slice(features.start, features.stop + 1))
    if indptr[0] < 0 or (np.diff(indptr) < 0).any() or indptr[-1] > nnz:
        raise storage.damaged(path, f"indptr of features {features.start}..{features.stop - 1} does not rise "
                              f"within the {nnz} entries")
    return indptr


def read_shard(by_feature_path, features: range) -> tuple[Entries, int]:
    group = open_by_feature(by_feature_path)
    indptr = read_feature_indptr(by_feature_path, features, group)
    n_tokens, entries = group.attrs["n_tokens"], slice(int(indptr[0]), int(indptr[-1]))
    token = storage.read_zarr_array(group, "token", entries)
    value = storage.read_zarr_array(group, "value", entries)
    if len(token) and (token.min() < 0 or token.max() >= n_tokens) or not np.isfinite(value).all():
        raise storage.damaged(by_feature_path, f"entries of features {features} hold a token outside "
                              f"0..{n_tokens - 1} or a NaN or inf value")
    return csc_entries(indptr, token, value, first_feature=features.start), n_tokens


def _lists(flat: np.ndarray, offsets: np.ndarray, value_type: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(flat, value_type))


def stats_table(entries: Entries, n_tokens: int):
    stats = feature_stats(entries, n_tokens)
    table = pa.table({
        "feature": pa.array(stats.feature, pa.int64()), "n_active": pa.array(stats.n_active, pa.int64()),
        "density": pa.array(stats.density, pa.float64()), "min": storage.nullable_floats(stats.min), "max": storage.nullable_floats(stats.max),
        "mean": storage.nullable_floats(stats.mean), "std": storage.nullable_floats(stats.std), "sum": pa.array(stats.sum, pa.float64()),
    })
    return stats, table


def histogram_table(entries: Entries, stats, bins: int, scale: str) -> pa.Table:
    edges = np.nan_to_num(histogram_edges(stats.min, stats.max, bins, scale), nan=0.0)  # dead: all-zero edges
    counts = histogram_counts(entries, edges)
    n = len(stats.feature)
    return pa.table({
        "feature": pa.array(stats.feature, pa.int64()),
        "edges": _lists(edges.ravel(), np.arange(n + 1) * (bins + 1), pa.float64()),
        "counts": _lists(counts.ravel(), np.arange(n + 1) * bins, pa.int64()),
    })


def example_table(entries: Entries, corpus: CorpusIndex, examples, context: int, extra: dict | None = None):
    """Rows of examples (feature, rank, activation, seq, token of the max) with their contexts;
    also returns the context windows (global token indices)."""
    windows = context_windows(examples.token, corpus.token_seq, context)
    window_feature = np.repeat(examples.feature, np.diff(windows.offsets))
    acts = activations_at(entries, window_feature, windows.token)
    strings = corpus.token_strings(corpus.token_id[windows.token])
    table = pa.table({
        "feature": pa.array(examples.feature, pa.int64()),
        **(extra or {}),
        "rank": pa.array(examples.rank, pa.int32()),
        "activation": pa.array(examples.activation, pa.float32()),
        "seq": pa.array(examples.seq, pa.int32()),
        "pos": pa.array(windows.pos, pa.int32()),
        "tokens": _lists(strings, windows.offsets, pa.string()),
        "acts": _lists(acts, windows.offsets, pa.float32()),
    })
    return table, window_feature, windows.token


def label_table(corpus: CorpusIndex, feature: np.ndarray, token_ids: np.ndarray) -> pa.Table:
    """Top TF-IDF tokens of each feature's top-example contexts (one row per context token given);
    the label is the top 3 joined."""
    if not len(feature):
        return pa.table({"feature": pa.array([], pa.int64()), "label": pa.array([], pa.string()),
                         "tokens": pa.array([], pa.list_(pa.string())), "scores": pa.array([], pa.list_(pa.float64()))})
    ranked = label_tokens(feature, token_ids, corpus.vocab_id, corpus.vocab_idf, n=LABEL_TOKENS)
    features, starts = np.unique(ranked.feature, return_index=True)
    offsets = np.append(starts, len(ranked.feature))
    strings = corpus.token_strings(ranked.token_id)
    return pa.table({
        "feature": pa.array(features, pa.int64()), "label": joined_labels(strings, offsets),
        "tokens": _lists(strings, offsets, pa.string()), "scores": _lists(ranked.score, offsets, pa.float64()),
    })


def joined_labels(strings: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """Each feature's tokens strings[offsets[i]:offsets[i+1]] joined by ", ", each stripped of
    surrounding whitespace, or shown as its repr where nothing but whitespace is left."""
    names = pa.array(strings, pa.string())
    shown = pc.utf8_trim_whitespace(names).to_numpy(zero_copy_only=False)
    blank = np.flatnonzero(shown == "")  # the few whitespace-only tokens: a Python repr each
    shown[blank] = [repr(name) for name in np.asarray(strings, dtype=object)[blank]]
    return pc.binary_join(_lists(shown, offsets, pa.string()), ", ")


def detection_table(entries: Entries, scored: list[ScoredItems], thresholds: np.ndarray) -> pa.Table:
    """Precision/recall/F1/AUROC of each feature against each label, per level and split."""
    # Detection indexes units from 0: use the shard's local ids, and shift back on output.
    local = dataclasses.replace(entries, feature=entries.local, first_feature=0)
    parts = []
    for items in scored:
        maxima = item_maxima(local, items.item_of_token)
        scores = detection_scores(maxima, thresholds, items.member_item, items.member_label, items.n_items,
                                  len(items.names))
        n_rows = scores.unit.size
        parts.append(pa.table({
            "unit": pa.array(scores.unit + entries.first_feature, pa.int64()),
            "label": pa.array(np.asarray(items.names, dtype=object)[scores.label] if n_rows else [], pa.string()),
            "level": pa.array([items.level] * n_rows, pa.string()),
            "split": pa.array([items.split] * n_rows, pa.string()),
            "threshold": storage.nullable_floats(thresholds[scores.unit]),
            "precision": storage.nullable_floats(scores.precision), "recall": storage.nullable_floats(scores.recall),
            "f1": storage.nullable_floats(scores.f1), "auroc": storage.nullable_floats(scores.auroc),
        }, schema=DETECTION_SCHEMA))
    if not parts:  # no labels nor spans: the workflow then builds no detection table
        return DETECTION_SCHEMA.empty_table()
    return pa.concat_tables(parts).sort_by([("unit", "ascending"), ("label", "ascending"), ("level", "ascending"),
                                            ("split", "ascending")])


def calibration_entries(entries: Entries, corpus: CorpusIndex) -> tuple[Entries, int]:
    """The entries on content tokens of calibration documents, and how many such tokens there are."""
    calibration = corpus.concepts.calibration_tokens()
    keep = calibration[entries.token]
    return (dataclasses.replace(entries, token=entries.token[keep], feature=entries.feature[keep],
                                value=entries.value[keep]), int(calibration.sum()))


def analyse_shard(by_feature_path, features: range, corpus: CorpusIndex, params: AnalysisParams) -> dict[str, pa.Table]:
    """Every activation table for the features of one shard, keyed by table name."""
    entries, n_tokens = read_shard(by_feature_path, features)
    tables = {}
    stats, tables["feature_stats"] = stats_table(entries, n_tokens)
    tables["histograms"] = histogram_table(entries, stats, params.bins, params.histogram_scale)

    maxima = sequence_maxima(entries, corpus.token_seq)
    top = top_sequences(maxima, params.top_k)
    tables["top_examples"], window_feature, window_token = example_table(entries, corpus, top, params.context)
    tables["labels"] = label_table(corpus, window_feature, corpus.token_id[window_token])
    bands = sample_bands(maxima, params.quantile_bands, params.per_band, params.seed)
    tables["quantile_examples"], _, _ = example_table(entries, corpus, bands, params.context,
                                                      {"band": pa.array(bands.band, pa.int32())})

    # Pruning and thresholds are fitted on calibration documents; detection is then scored on both splits.
    calibration, n_calibration = calibration_entries(entries, corpus)
    _, tables["calibration_stats"] = stats_table(calibration, n_calibration)
    qs = params.all_percentiles
    values = percentiles(calibration, qs)
    tables["percentiles"] = pa.table({"feature": pa.array(stats.feature, pa.int64()),
                                      **{percentile_column(q): storage.nullable_floats(values[:, i]) for i, q in enumerate(qs)}})
    tables["detection"] = detection_table(entries, corpus.concepts.scored_items(),
                                          values[:, qs.index(params.detection_percentile)])
    log.info("features %d..%d: %d entries over %d tokens", features.start, features.stop - 1, len(entries.token), n_tokens)
    return tables
