import pandas as pd
import pytest

from nextrl.jobs.artifacts import atomic_path, write_parquet


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out") as staging:
            staging.mkdir()
            (staging / "half.txt").write_text("partial")
            raise RuntimeError("stage failed")
    assert list(tmp_path.iterdir()) == []


def test_success_moves_into_place_and_cleans_stale_temporaries(tmp_path):
    (tmp_path / ".out.parquet.dead.tmp").mkdir()  # left by a SIGKILLed writer
    write_parquet(pd.DataFrame({"a": [1, 2]}), tmp_path / "out.parquet")
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]
    assert pd.read_parquet(tmp_path / "out.parquet")["a"].tolist() == [1, 2]
