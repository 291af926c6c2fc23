import re

import numpy as np
import pytest
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from saeflow.chunk_count import chunk_id, planned_chunk_count
from saeflow.chunks import plan_chunks, read_plan, read_token_rows, sequence_lengths, write_plan
from saeflow.errors import SaeflowError


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=60), st.data())
def test_plan_cuts_whole_sequences_into_the_planned_number_of_balanced_chunks(lengths, data):
    lengths = np.array(lengths)
    n_chunks = data.draw(st.integers(1, len(lengths)))
    plan = plan_chunks(lengths, n_chunks)
    seq_bounds = np.concatenate([[0], np.cumsum(lengths)])
    assert len(plan) == n_chunks
    assert plan[0].token_start == 0 and plan[-1].token_stop == lengths.sum()
    for i, chunk in enumerate(plan):
        assert chunk.id == f"chunk-{i:04d}" and chunk.n_seqs >= 1
        if i:
            assert chunk.token_start == plan[i - 1].token_stop
            assert chunk.seq_start == plan[i - 1].seq_start + plan[i - 1].n_seqs
        assert chunk.token_start == seq_bounds[chunk.seq_start]
        assert chunk.token_stop == seq_bounds[chunk.seq_start + chunk.n_seqs]


def test_equal_sequences_split_evenly_and_too_few_sequences_is_a_clear_error():
    assert [c.n_tokens for c in plan_chunks(np.full(100, 10), 4)] == [250] * 4
    assert [c.n_seqs for c in plan_chunks(np.full(9, 7), 3)] == [3, 3, 3]
    with pytest.raises(SaeflowError, match=r"2 sequences, fewer than the 3 chunks.*tokens_per_chunk"):
        plan_chunks(np.array([5, 5]), 3)


def test_chunk_count_comes_from_the_corpus_bytes_and_keeps_a_holdout_chunk():
    assert planned_chunk_count(466_117, 32768, None) == 4  # 116,529 estimated tokens
    assert planned_chunk_count(466_117, 32768, 40_000) == 2
    assert planned_chunk_count(100, 32768, None) == 2  # never fewer than training + held-out
    assert planned_chunk_count(4 * 1000 * 128, 128, None) == 1000


def test_chunk_ids_keep_their_order_past_ten_thousand():
    ids = [chunk_id(i) for i in (9998, 9999, 10000, 10001)]
    assert ids == ["chunk-9998", "chunk-9999", "chunk-10000", "chunk-10001"]
    assert all(re.fullmatch(r"chunk-\d\d\d\d+", chunk) for chunk in ids)  # the Snakefile's constraint


def test_plan_round_trips_and_reads_lengths_across_row_groups(tmp_path):
    seq = np.repeat(np.arange(5), [3, 1, 4, 2, 6]).astype(np.int32)
    path = tmp_path / "tokens.parquet"
    pq.write_table(pa.table({"seq": seq, "token_id": np.arange(len(seq), dtype=np.int32)}), path, row_group_size=4)
    assert sequence_lengths(path).tolist() == [3, 1, 4, 2, 6]
    plan = plan_chunks(sequence_lengths(path), 3)
    write_plan(tmp_path / "plan.json", plan)
    assert read_plan(tmp_path / "plan.json") == plan
    for start, stop in [(0, 16), (3, 9), (5, 6), (12, 16)]:
        rows = read_token_rows(path, start, stop, ["seq", "token_id"])
        assert rows["token_id"].tolist() == list(range(start, stop))
        assert rows["seq"].tolist() == seq[start:stop].tolist()
