"""Searchers without Ray's event loop: constraints reach Optuna, stopped trials are pruned, repeats average."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from greentune.search.config import parse_search
from greentune.search.costs import COST_ATTR, CostAwareSampler, predicted_log_costs
from greentune.search.searchers import GreenOptunaSearch, SeedRepeater, make_searcher

SPACE = {"approaches": {"b": {}, "s": {"techniques": ["data_selection"]}}, "searcher": {"name": "nsga2", "population_size": 2}}


def test_constraints_reach_the_constrained_sampler():
    searcher = make_searcher(parse_search({**SPACE, "constraints": ["energy_j <= 10"]}))
    searcher.set_search_properties(None, None, {})
    for index, energy in enumerate([5.0, 20.0]):
        searcher.suggest(str(index))
        searcher.on_trial_complete(str(index), {"quality": 0.1, "energy_j": energy, "complete": True})
    trials = searcher._ot_study.get_trials()
    violations = [[value for key, value in trial.system_attrs.items() if "energy_j <= 10" in key] for trial in trials]
    assert violations == [[-5.0], [10.0]]  # <= 0 is feasible


def test_a_trial_stopped_early_is_pruned_not_complete():
    searcher = make_searcher(parse_search(SPACE))
    assert isinstance(searcher, GreenOptunaSearch)
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"quality": 0.5, "energy_j": 1.0, "complete": False})
    assert searcher._ot_study.get_trials()[0].state == optuna.trial.TrialState.PRUNED


def test_repeats_share_a_configuration_over_seeds_and_report_the_mean():
    searcher = make_searcher(parse_search({**SPACE, "repeats": 3, "seed": 7}))
    assert isinstance(searcher, SeedRepeater)
    configs = [searcher.suggest(f"t{index}") for index in range(3)]
    assert [config["seed"] for config in configs] == [7, 8, 9]
    assert all(config["approach"] == configs[0]["approach"] for config in configs)
    for index, quality in enumerate([0.1, 0.2, 0.6]):
        searcher.on_trial_complete(f"t{index}", {"quality": quality, "energy_j": 3.0, "complete": True})
    [trial] = searcher.searcher._ot_study.get_trials()
    assert trial.values == pytest.approx([0.3, 3.0])


def test_a_configuration_already_tried_is_not_trained_again():
    # Two approaches without parameters: after each has run once there is nothing left to learn.
    searcher = make_searcher(parse_search({"approaches": {"b": {}, "c": {"model": "small"}}, "searcher": "random"}))
    searcher.set_search_properties(None, None, {})
    first = searcher.suggest("0")
    searcher.on_trial_complete("0", {"quality": 0.1, "energy_j": 5.0, "complete": True})
    second = searcher.suggest("1")
    assert second["approach"] != first["approach"]
    # Still running: a third draw of either approach is a duplicate too.
    assert searcher.suggest("2") == "FINISHED"
    trials = searcher._ot_study.get_trials()
    assert len(trials) > 3  # the duplicate draws were told to the study, so the sampler moves on
    repeats_of_first = [t for t in trials[2:] if t.params == {"approach": first["approach"]}]
    assert repeats_of_first and all(t.values == [0.1, 5.0] for t in repeats_of_first)
    repeats_of_running = [t for t in trials[2:] if t.params == {"approach": second["approach"]}]
    assert all(t.state == optuna.trial.TrialState.PRUNED for t in repeats_of_running)


def test_a_failed_configuration_may_be_tried_again():
    searcher = make_searcher(parse_search({"approaches": {"b": {}}, "searcher": "random", "retries": 0}))
    searcher.set_search_properties(None, None, {})
    assert searcher.suggest("0")["approach"] == "b"
    searcher.on_trial_complete("0", None, error=True)
    assert searcher.suggest("1")["approach"] == "b"


def study_with_costs(rows):
    """A study whose trials took ``params`` and were projected to cost ``joules``."""
    study = optuna.create_study(directions=["minimize", "minimize"])
    distributions = {"approach": optuna.distributions.CategoricalDistribution(["cheap", "dear", "new"]),
                     "rate": optuna.distributions.FloatDistribution(0.1, 1.0, log=True)}
    for params, joules in rows:
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={name: distributions[name] for name in params},
            values=[0.1, joules], user_attrs={COST_ATTR: joules}))
    return study, distributions


class Scripted(optuna.samplers.RandomSampler):
    """Hands out the given values in order, whatever the parameter."""

    def __init__(self, values):
        super().__init__(seed=0)
        self.values = list(values)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.values.pop(0)


def current(params, distributions):
    """The trial being sampled, with the choices it has made so far."""
    return optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params=params,
                                     distributions={name: distributions[name] for name in params})


def test_the_cost_of_a_value_is_learnt_from_the_trials_that_took_it():
    study, distributions = study_with_costs([
        ({"approach": "cheap", "rate": 0.1}, 1.0), ({"approach": "cheap", "rate": 0.4}, 4.0),
        ({"approach": "dear", "rate": 0.2}, 50.0), ({"approach": "dear", "rate": 0.8}, 50.0),
    ])
    costs = predicted_log_costs(study, current({}, distributions), "approach", distributions["approach"], ["dear", "cheap", "new"])
    assert costs[0] == pytest.approx(math.log(50.0))
    assert costs[1] == pytest.approx((math.log(1.0) + math.log(4.0)) / 2)
    assert costs[2] == pytest.approx((math.log(1.0) + math.log(4.0) + 2 * math.log(50.0)) / 4)  # never tried: average

    def rate_costs(approach):  # only the trials of the approach already chosen count
        trial = current({"approach": approach}, distributions)
        return predicted_log_costs(study, trial, "rate", distributions["rate"], [0.2, 0.8])

    # Cost proportional to the rate: log cost is linear in log rate (a log-scaled parameter), slope 1.
    assert rate_costs("cheap") == pytest.approx([math.log(2.0), math.log(8.0)])
    assert rate_costs("dear") == pytest.approx([math.log(50.0)] * 2)
    assert rate_costs("new") is None  # nothing known for an approach never tried


def test_of_its_inner_samplers_draws_the_cost_aware_sampler_keeps_the_cheapest():
    study, distributions = study_with_costs([({"approach": "cheap"}, 1.0), ({"approach": "dear"}, 50.0)])
    sampler = CostAwareSampler(Scripted(["dear", "new", "cheap", "dear", "new"]), candidates=3)
    trial = current({}, distributions)
    assert sampler.sample_independent(study, trial, "approach", distributions["approach"]) == "cheap"
    # "new" was never tried, so its cost counts as the average of the trials: below "dear".
    sampler = CostAwareSampler(Scripted(["dear", "new"]), candidates=2)
    assert sampler.sample_independent(study, trial, "approach", distributions["approach"]) == "new"
    # With nothing known, the inner sampler's first draw stands.
    empty, _ = study_with_costs([])
    sampler = CostAwareSampler(Scripted(["dear", "cheap"]), candidates=2)
    assert sampler.sample_independent(empty, trial, "approach", distributions["approach"]) == "dear"


def test_every_finished_or_stopped_trial_records_what_it_would_have_cost_to_the_end():
    searcher = make_searcher(parse_search({**SPACE, "searcher": {**SPACE["searcher"], "cheapest_of": 3}}))
    assert isinstance(searcher._sampler, CostAwareSampler)
    searcher.set_search_properties(None, None, {})
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"quality": 0.5, "energy_j": 1.5, "eval_energy_j": 0.5, "trained_fraction": 0.25,
                                     "complete": False})
    searcher.suggest("b")
    searcher.on_trial_complete("b", {"quality": 0.5, "energy_j": 3.0, "trained_fraction": 1.0, "complete": True})
    assert [trial.user_attrs[COST_ATTR] for trial in searcher._ot_study.get_trials()] == [8.0, 3.0]


def test_tpe_samples_at_random_for_its_startup_trials():
    searcher = make_searcher(parse_search({**SPACE, "searcher": {"name": "tpe", "startup_trials": 3}}))
    assert searcher._sampler._n_startup_trials == 3


def test_the_cost_model_kept_up_to_date_answers_as_one_that_reads_every_trial():
    """``CostModel`` reads each trial once as the study grows; its answers are those of a fresh reading."""
    from greentune.search.costs import CostModel

    rng = np.random.default_rng(0)
    study, distributions = study_with_costs([])
    model = CostModel()
    for number in range(40):
        approach, rate = ["cheap", "dear"][number % 2], float(rng.uniform(0.1, 1.0))
        study.add_trial(optuna.trial.create_trial(
            params={"approach": approach, "rate": rate}, distributions=distributions,
            values=[0.1, 1.0], user_attrs={COST_ATTR: (1 + 9 * (approach == "dear")) * rate * rng.uniform(0.5, 2)}))
        for params, name in (({}, "approach"), ({"approach": "cheap"}, "rate"), ({"approach": "dear"}, "rate")):
            asking = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params=params,
                                               distributions={key: distributions[key] for key in params})
            asking.number = 100 + number  # a new trial asks after each one finishes
            values = ["dear", "new", "cheap"] if name == "approach" else [0.2, 0.9]
            expected = brute_force_log_costs(study, asking, name, distributions[name], values)
            got = model.predict(study, asking, name, distributions[name], values)
            assert (got is None) == (expected is None)
            if expected is not None:
                assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def brute_force_log_costs(study, trial, name, distribution, values):
    """``predicted_log_costs`` as it was first written: every trial read for every question."""
    choices = {key: value for key, value in trial.params.items()
               if isinstance(trial.distributions[key], optuna.distributions.CategoricalDistribution)}
    seen = [(past.params[name], math.log(past.user_attrs[COST_ATTR])) for past in study.get_trials()
            if name in past.params and all(past.params.get(key) == value for key, value in choices.items())]
    if not seen:
        return None
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        average = float(np.mean([cost for _, cost in seen]))
        return [float(np.mean([cost for value_, cost in seen if value_ == value])) if any(v == value for v, _ in seen)
                else average for value in values]
    x = np.log([value for value, _ in seen])
    if len(np.unique(x)) < 2:
        return None
    slope, intercept = np.polyfit(x, [cost for _, cost in seen], 1)
    return [float(slope * point + intercept) for point in np.log(values)]


def drive(searcher, trials, *, concurrent=1):
    """Suggest and tell ``trials`` trials, ``concurrent`` running at a time; the configurations suggested."""
    rng = np.random.default_rng(1)
    configs, running = [], []
    for index in range(trials):
        config = searcher.suggest(str(index))
        if not isinstance(config, dict):
            break
        configs.append(config)
        running.append(str(index))
        if len(running) >= concurrent:
            done = running.pop(int(rng.integers(len(running))))
            searcher.on_trial_complete(done, {"quality": float(rng.uniform()), "energy_j": float(rng.uniform(1, 9)),
                                              "complete": bool(rng.uniform() > 0.2)})
    return configs


TPE_SPACE = {"approaches": {"b": {}, "s": {"techniques": ["data_selection"]}, "p": {"techniques": ["random_pruning"]}},
             "searcher": {"name": "tpe", "startup_trials": 5, "cheapest_of": 3}}


@pytest.mark.parametrize("concurrent", [1, 3])
def test_bounded_tpe_draws_as_optunas_tpe_within_its_history(monkeypatch, concurrent):
    """Fitting once per trial changes no draw: the same configurations as Optuna's TPE, running trials included."""
    from greentune.search import searchers

    ours = drive(make_searcher(parse_search(TPE_SPACE)), 60, concurrent=concurrent)
    assert isinstance(make_searcher(parse_search(TPE_SPACE))._sampler.sampler, searchers.BoundedTPESampler)
    monkeypatch.setattr(searchers, "BoundedTPESampler", optuna.samplers.TPESampler)
    assert drive(make_searcher(parse_search(TPE_SPACE)), 60, concurrent=concurrent) == ours


def test_past_its_history_tpe_fits_on_the_recent_trials_and_the_older_front():
    from greentune.search.tpe import BoundedTPESampler

    study = optuna.create_study(directions=["maximize", "minimize"])
    distribution = optuna.distributions.FloatDistribution(0.0, 1.0)
    # Trial 0 is on the front (best quality), trial 1 too (least energy), trials 2-5 are dominated by trial 0.
    rows = [(0.9, 5.0), (0.1, 0.5), (0.5, 6.0), (0.4, 7.0), (0.3, 8.0), (0.2, 9.0)]
    for quality, energy in rows:
        study.add_trial(optuna.trial.create_trial(params={"x": quality}, distributions={"x": distribution},
                                                  values=[quality, energy]))
    sampler = BoundedTPESampler(history=2)
    assert [trial.number for trial in sampler.fitted_on(study)] == [0, 1, 4, 5]
    study.add_trial(optuna.trial.create_trial(params={"x": 0.95}, distributions={"x": distribution}, values=[0.95, 1.0]))
    assert [trial.number for trial in sampler.fitted_on(study)] == [0, 1, 5, 6]  # trial 4, now old, is dominated
    assert [trial.number for trial in BoundedTPESampler(history=10).fitted_on(study)] == list(range(7))


@pytest.mark.parametrize("concurrent", [1, 3])
def test_tpe_draws_the_same_from_values_kept_between_fits(monkeypatch, concurrent):
    """Finished trials' values kept from earlier fits change no draw, past the history too (its older front)."""
    from optuna.samplers import TPESampler

    from greentune.search import tpe

    monkeypatch.setattr(tpe.BoundedTPESampler.__init__, "__kwdefaults__", {"history": 20})
    kept = drive(make_searcher(parse_search(TPE_SPACE)), 60, concurrent=concurrent)
    monkeypatch.setattr(tpe.BoundedTPESampler, "_get_internal_repr", TPESampler._get_internal_repr)
    assert drive(make_searcher(parse_search(TPE_SPACE)), 60, concurrent=concurrent) == kept
