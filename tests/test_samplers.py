"""Every sampler the CLI offers models the whole fixed-dimension space."""

from __future__ import annotations

import optuna
import pytest

from search.optuna_bridge import suggest
from search.samplers import SAMPLERS, make_sampler
from search.trial import NUMBER_KEY
from space import DEFAULT_SPACE, param_names, params_to_config


@pytest.mark.parametrize(
    "name",
    # GP fits a model per suggestion: about 2 s on an idle 2-core machine, minutes when
    # the cores are shared, so it runs with the slow tests.
    [pytest.param(name, marks=pytest.mark.slow) if name == "gp" else name for name in SAMPLERS],
)
def test_sampler_suggests_every_parameter_after_its_startup_phase(
    name: str, recwarn: pytest.WarningsRecorder
) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=make_sampler(name, seed=1)
    )
    seen = set()
    for number in range(14):  # past TPE's and GP's 10 start-up trials
        trial = study.ask()
        constants = suggest(trial, DEFAULT_SPACE)
        assert constants == {NUMBER_KEY: number}
        assert list(trial.params) == param_names(DEFAULT_SPACE)
        config = params_to_config(trial.params, DEFAULT_SPACE)
        config.validate(input_size=32)
        seen.add(config)
        study.tell(trial, [config.depth / 100, sum(s.transition for s in config.stages) / 1e3])
    assert len(seen) >= 12  # not stuck on one point
    independent = [w for w in recwarn if "independent" in str(w.message).lower()]
    assert independent == []  # every parameter is modelled jointly, none sampled apart


def test_unknown_sampler() -> None:
    with pytest.raises(ValueError, match="unknown sampler 'cmaes'"):
        make_sampler("cmaes", seed=0)
