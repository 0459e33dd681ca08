"""The split follows each row's identity: adding rows never moves a row, and every class is in
every split."""

from __future__ import annotations

import pandas as pd

from ml import params as params_module
from ml.config import REPO_ROOT
from ml.generate import generate
from ml.splits import split

PARAMS = params_module.load(REPO_ROOT)


def places(parts: dict[str, pd.DataFrame]) -> dict[int, str]:
    return {udi: name for name, part in parts.items() for udi in part["udi"]}


def test_adding_rows_moves_no_row_to_another_split():
    first = generate(2000, 1)
    grown = pd.concat([first, generate(500, 2, first_id=2001)], ignore_index=True)
    before, after = places(split(first, PARAMS.schema, PARAMS.split)), places(
        split(grown, PARAMS.schema, PARAMS.split))
    assert all(after[udi] == name for udi, name in before.items())
    assert len(after) == len(grown)


def test_the_shares_are_close_to_the_configured_ones_and_every_class_is_everywhere():
    frame = generate(2000, 1)
    parts = split(frame, PARAMS.schema, PARAMS.split)
    assert sum(len(p) for p in parts.values()) == len(frame)
    assert abs(len(parts["test"]) / len(frame) - PARAMS.split.test_size) < 0.04
    assert abs(len(parts["validation"]) / len(frame) - PARAMS.split.validation_size) < 0.04
    target = PARAMS.schema.target.name
    for part in parts.values():
        assert set(part[target]) == set(frame[target])


def test_a_rare_class_the_hash_missed_still_reaches_test_and_validation():
    frame = generate(300, 1)
    target = PARAMS.schema.target.name
    rare = frame[frame[target] == 1].head(3)
    frame = pd.concat([frame[frame[target] == 0], rare], ignore_index=True)
    parts = split(frame, PARAMS.schema, PARAMS.split)
    assert [int((p[target] == 1).sum()) for p in parts.values()] == [1, 1, 1]


def test_another_seed_gives_another_split():
    frame = generate(500, 1)
    other = PARAMS.split.model_copy(update={"seed": 7})
    assert places(split(frame, PARAMS.schema, PARAMS.split)) != places(split(frame, PARAMS.schema, other))


def test_three_rows_of_a_class_land_one_in_each_split_wherever_the_hash_puts_them():
    target = PARAMS.schema.target.name
    for seed in range(20):
        frame = generate(400, seed)
        rare = frame[frame[target] == 1].head(3)
        assert len(rare) == 3
        frame = pd.concat([frame[frame[target] == 0], rare], ignore_index=True)
        parts = split(frame, PARAMS.schema, PARAMS.split)
        assert [int((p[target] == 1).sum()) for p in parts.values()] == [1, 1, 1], seed
