"""ml.generate: the AI4I 2020 generation process (rates, failure-mode rules, IDs, drift, CLI)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml import generate as generate_module
from ml.generate import Shift, generate

ROWS = 10_000
SEED = 2020
MODES = ["twf", "hdf", "pwf", "osf", "rnf"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(ROWS, SEED)


def test_same_seed_gives_the_same_frame_and_another_seed_differs():
    first = generate(500, 11)
    pd.testing.assert_frame_equal(first, generate(500, 11))
    other = generate(500, 12)
    assert not first.equals(other)
    assert not np.allclose(first["torque_nm"], other["torque_nm"])


def test_failure_rate_and_type_mix_follow_the_published_data_set(frame):
    assert 0.025 <= frame["machine_failure"].mean() <= 0.05
    shares = frame["type"].value_counts(normalize=True)
    assert set(shares.index) == {"L", "M", "H"}
    for kind, expected in {"L": 0.5, "M": 0.3, "H": 0.2}.items():
        assert shares[kind] == pytest.approx(expected, abs=0.03), kind


def test_heat_dissipation_failure_rule_holds_on_every_row(frame):
    expected = ((frame["process_temperature_k"] - frame["air_temperature_k"]) < 8.6) & (
        frame["rotational_speed_rpm"] < 1380)
    assert (frame["hdf"] == expected.astype(int)).all()


def test_power_failure_rule_holds_on_every_row(frame):
    power = frame["torque_nm"] * frame["rotational_speed_rpm"] * 2 * np.pi / 60
    expected = (power < 3500) | (power > 9000)
    assert (frame["pwf"] == expected.astype(int)).all()


def test_overstrain_failure_rule_holds_on_every_row(frame):
    limit = frame["type"].map({"L": 11_000, "M": 12_000, "H": 13_000})
    assert limit.notna().all()
    expected = frame["tool_wear_min"] * frame["torque_nm"] > limit
    assert (frame["osf"] == expected.astype(int)).all()


def test_machine_failure_is_any_failure_mode(frame):
    expected = frame[MODES].astype(bool).any(axis=1)
    assert (frame["machine_failure"] == expected.astype(int)).all()


def test_tool_wear_failures_happen_at_200_to_245_minutes(frame):
    worn = frame.loc[frame["twf"] == 1, "tool_wear_min"]
    assert len(worn) > 0
    assert worn.between(200, 245).all()
    assert frame["tool_wear_min"].max() <= 245


def test_random_failures_are_rare_and_every_mode_fires(frame):
    assert frame["rnf"].mean() < 0.005
    for mode in MODES:
        assert frame[mode].sum() >= 1, mode
        assert set(frame[mode].unique()) <= {0, 1}, mode


def test_ids_are_unique(frame):
    assert frame["udi"].is_unique
    assert frame["product_id"].is_unique
    assert frame["udi"].tolist() == list(range(1, ROWS + 1))
    assert (frame["product_id"].str[0] == frame["type"]).all()


def test_batches_with_different_first_ids_do_not_share_ids(frame):
    later = generate(ROWS, SEED + 1, first_id=10_001)
    assert later["udi"].min() == 10_001
    assert set(frame["udi"]).isdisjoint(later["udi"])
    assert set(frame["product_id"]).isdisjoint(later["product_id"])


def test_air_shift_raises_both_temperatures_and_leaves_torque_alone():
    base = generate(2000, 5)
    hot = generate(2000, 5, Shift(air_temperature_k=5))
    assert hot["air_temperature_k"].mean() - base["air_temperature_k"].mean() == pytest.approx(5, abs=0.05)
    assert hot["process_temperature_k"].mean() - base["process_temperature_k"].mean() == pytest.approx(
        5, abs=0.05)
    pd.testing.assert_series_equal(hot["torque_nm"], base["torque_nm"])


def test_torque_shift_raises_mean_torque():
    base = generate(2000, 5)
    shifted = generate(2000, 5, Shift(torque_nm=10))
    assert shifted["torque_nm"].mean() - base["torque_nm"].mean() == pytest.approx(10, abs=0.1)
    assert shifted["air_temperature_k"].mean() == pytest.approx(base["air_temperature_k"].mean())


def test_type_mix_shift_changes_type_shares():
    shares = generate(5000, 5, Shift(type_mix=(0.2, 0.3, 0.5)))["type"].value_counts(normalize=True)
    assert shares["H"] == pytest.approx(0.5, abs=0.03)
    assert shares["L"] == pytest.approx(0.2, abs=0.03)


def test_tool_life_factor_lengthens_tool_life():
    assert generate(5000, 5)["tool_wear_min"].max() <= 245
    assert generate(5000, 5, Shift(tool_life_factor=1.5))["tool_wear_min"].max() > 300 * 0.9


def test_cli_writes_the_same_frame_as_the_function(tmp_path, capsys):
    out = tmp_path / "x.csv"
    code = generate_module.main(["--rows", "100", "--seed", "3", "--air-shift", "2", "--out", str(out)])
    assert code == 0
    assert "100 rows" in capsys.readouterr().out
    written = pd.read_csv(out)
    assert len(written) == 100
    pd.testing.assert_frame_equal(written, generate(100, 3, Shift(air_temperature_k=2)),
                                  check_dtype=False, rtol=1e-9)


@pytest.mark.parametrize("rows", [0, -5])
def test_no_rows_is_an_error(rows):
    with pytest.raises(ValueError, match="rows must be positive"):
        generate(rows, 1)
