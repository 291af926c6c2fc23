import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from saeflow.chunks import plan_chunks, read_plan, read_token_rows, sequence_lengths, write_plan


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=60), st.integers(1, 100))
def test_plan_partitions_tokens_into_whole_sequences(lengths, budget):
    lengths = np.array(lengths)
    plan = plan_chunks(lengths, budget)
    seq_bounds = np.concatenate([[0], np.cumsum(lengths)])
    assert plan[0].token_start == 0 and plan[-1].token_stop == lengths.sum()
    for i, chunk in enumerate(plan):
        assert chunk.id == f"chunk-{i:04d}"
        if i:
            assert chunk.token_start == plan[i - 1].token_stop
            assert chunk.seq_start == plan[i - 1].seq_start + plan[i - 1].n_seqs
        assert chunk.token_start == seq_bounds[chunk.seq_start]
        assert chunk.token_stop == seq_bounds[chunk.seq_start + chunk.n_seqs]
        assert chunk.n_tokens <= budget or chunk.n_seqs == 1
        if i + 1 < len(plan):  # greedy: the next sequence would not have fitted
            assert chunk.n_tokens + lengths[chunk.seq_start + chunk.n_seqs] > budget


def test_plan_round_trips_and_reads_lengths_across_row_groups(tmp_path):
    seq = np.repeat(np.arange(5), [3, 1, 4, 2, 6]).astype(np.int32)
    path = tmp_path / "tokens.parquet"
    pq.write_table(pa.table({"seq": seq, "token_id": np.arange(len(seq), dtype=np.int32)}), path, row_group_size=4)
    assert sequence_lengths(path).tolist() == [3, 1, 4, 2, 6]
    plan = plan_chunks(sequence_lengths(path), 5)
    write_plan(tmp_path / "plan.json", plan, 5)
    assert read_plan(tmp_path / "plan.json") == plan
    for start, stop in [(0, 16), (3, 9), (5, 6), (12, 16)]:
        rows = read_token_rows(path, start, stop, ["seq", "token_id"])
        assert rows["token_id"].tolist() == list(range(start, stop))
        assert rows["seq"].tolist() == seq[start:stop].tolist()
