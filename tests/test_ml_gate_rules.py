"""The promotion gate's rule (ml.registry.decide), case by case."""

from __future__ import annotations

import pytest

from ml.params import Evaluate
from ml.registry import decide

RULES = Evaluate(primary_metric="pr_auc", min_improvement=0.005, min_lift_over_baseline=0.05)


def test_no_champion_promotes_a_model_that_beats_the_constant_predictor():
    decision = decide(0.8, None, 0.1, RULES)
    assert decision.promote and "no champion yet" in decision.reason


def test_a_model_no_better_than_a_constant_predictor_is_kept_even_on_newer_data():
    decision = decide(0.12, 0.11, 0.1, RULES, newer_data=True)
    assert not decision.promote and "constant predictor" in decision.reason


def test_a_margin_above_the_champion_promotes():
    decision = decide(0.9, 0.89, 0.1, RULES)
    assert decision.promote and "by at least 0.005" in decision.reason


@pytest.mark.parametrize(("challenger", "champion"), [(1.0, 1.0), (0.9, 0.9), (0.902, 0.9)])
def test_on_the_same_data_an_equal_or_slightly_better_score_keeps_the_champion(challenger, champion):
    decision = decide(challenger, champion, 0.1, RULES)
    assert not decision.promote and "does not beat" in decision.reason


def test_a_perfect_champion_gives_way_to_an_equal_model_of_newer_data():
    decision = decide(1.0, 1.0, 0.1, RULES, newer_data=True)
    assert decision.promote
    assert decision.reason == ("trained on newer data, and its test pr_auc 1.0000 is at least the "
                               "champion's 1.0000 on the same test set")


def test_newer_data_does_not_promote_a_worse_model():
    decision = decide(0.95, 0.96, 0.1, RULES, newer_data=True)
    assert not decision.promote
