"""Parameters declared once: in the constructor's signature, read back as defaults and search space; variants inherit."""

from __future__ import annotations

import inspect
from typing import Annotated

import pytest

from greentune import techniques
from greentune.techniques import Choice, Float, Int, Technique
from greentune.techniques.registry import parameter_defaults
from greentune.techniques.space import declared


class Shrink(Technique):
    def __init__(self, rate: Annotated[float, Float(0.1, 0.9)] = 0.5, mode: Annotated[str, Choice(("a", "b"))] = "a",
                 verbose: bool = False):
        self.rate, self.mode, self.verbose = rate, mode, verbose


class FixedMode(Shrink):
    pinned = {"mode": "b"}

    def __init__(self, rounds: Annotated[int, Int(1, 4)] = 2, **settings):
        super().__init__(**settings, **self.pinned)
        self.rounds = rounds


def test_the_signature_gives_names_defaults_and_searched_domains():
    assert parameter_defaults(Shrink) == {"rate": 0.5, "mode": "a", "verbose": False}
    assert Shrink.space == {"rate": Float(0.1, 0.9), "mode": Choice(("a", "b"))}  # verbose is not searched


def test_a_variant_takes_its_parents_parameters_without_the_pinned_ones():
    assert parameter_defaults(FixedMode) == {"rate": 0.5, "verbose": False, "rounds": 2}
    assert FixedMode.space == {"rate": Float(0.1, 0.9), "rounds": Int(1, 4)}
    built = FixedMode(rate=0.3)
    assert (built.rate, built.mode, built.rounds) == (0.3, "b", 2)


def test_a_class_may_still_state_its_space_itself():
    class Stated(Shrink):
        space = {"rate": Float(0.2, 0.4)}

    assert Stated.space == {"rate": Float(0.2, 0.4)} and "mode" in parameter_defaults(Stated)


@pytest.mark.parametrize(
    "variant, parent",
    [("gmp", "granet"), ("redr_woodfisher", "redr_random"), ("redr_woodtaylor", "redr_woodfisher"),
     ("filter_pruning", "gradmax")],
)
def test_built_in_variants_share_their_parents_declarations(variant, parent):
    child, base = techniques.technique_class(variant), techniques.technique_class(parent)
    shared = set(declared(child)) & set(declared(base)) - {"width_ratio"}  # growing and pruning differ in direction only
    assert len(shared) >= 3
    assert {name: declared(child)[name] for name in shared} == {name: declared(base)[name] for name in shared}


def test_gmp_is_granet_without_regeneration():
    gmp = techniques.create(["gmp"], {"gmp": {"final_sparsity": 0.8}})
    assert set(declared(type(gmp))) == set(declared(techniques.technique_class("granet"))) - {"regrow_fraction", "regenerate"}
    assert gmp.regenerate is False and gmp.current_regrow_fraction(10) == 0.0 and gmp.final_sparsity == 0.8
    with pytest.raises(ValueError, match="has no parameter 'regenerate'"):
        techniques.create(["gmp"], {"gmp": {"regenerate": True}})


@pytest.mark.parametrize("name", sorted(techniques.available()))
def test_every_default_lies_in_its_declared_domain(name):
    for parameter, (default, domain) in declared(techniques.technique_class(name)).items():
        if domain is not None and default not in (None, inspect.Parameter.empty):
            assert domain.contains(default), f"{name}.{parameter} = {default!r} is outside {domain}"
