import pandas as pd
import pytest

from nextrl.stages import figure


def test_an_empty_table_gives_a_figure_that_says_so(tmp_path):
    pd.DataFrame(columns=["arm", "seed", "round"]).to_parquet(tmp_path / "alpha.parquet")
    figure.run({}, name="alpha", summary=tmp_path, output=tmp_path / "figures" / "alpha")
    assert (tmp_path / "figures" / "alpha.png").stat().st_size > 1000
    assert (tmp_path / "figures" / "alpha.pdf").exists()
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["alpha.pdf", "alpha.png"]  # no staging left


def test_unknown_figure_or_missing_table_is_named(tmp_path):
    with pytest.raises(ValueError, match="figure 'nope': unknown"):
        figure.run({}, name="nope", summary=tmp_path, output=tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="energy.parquet does not exist"):
        figure.run({}, name="energy", summary=tmp_path, output=tmp_path / "energy")
    assert not any(tmp_path.iterdir())
