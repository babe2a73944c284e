import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

import moebench
from moebench import registry
from moebench.base import MoEEstimator


def test_required_algorithms_are_registered():
    names = moebench.available_algorithms()
    assert {"tensor_em", "joint_em", "sgd", "alt_min"} <= set(names)
    assert names == sorted(names)
    for name in names:
        est = moebench.get_algorithm(name, n_experts=3, activation="linear", sigma=None,
                                     random_state=0)
        assert isinstance(est, MoEEstimator) and est.n_experts == 3
        assert not hasattr(est, "experts_"), "get_algorithm must return an unfitted estimator"


def test_unknown_algorithm_lists_known_ones():
    with pytest.raises(ValueError, match="unknown algorithm 'nope'; valid choices are .*tensor_em"):
        moebench.get_algorithm("nope")


def test_unknown_parameter_is_named():
    with pytest.raises(ValueError, match="unknown parameter.*bogus.*valid: n_experts"):
        moebench.get_algorithm("joint_em", bogus=1)


def test_register_rejects_non_estimators_and_name_clashes():
    with pytest.raises(ValueError, match="must subclass"):
        registry.register("not_an_estimator")(object)
    with pytest.raises(ValueError, match="already registered"):

        @registry.register("joint_em")
        class Other(MoEEstimator):
            pass


def test_entry_point_plugins_are_loaded(tmp_path, monkeypatch):
    (tmp_path / "moebench_plugin_demo.py").write_text(textwrap.dedent("""
        from moebench.base import MoEEstimator

        class PluginEstimator(MoEEstimator):
            description = "a third-party plugin"
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint("plugin_demo", "moebench_plugin_demo:PluginEstimator",
                    registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [ep] if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    assert "plugin_demo" in registry.available_algorithms()
    assert registry.algorithm_descriptions()["plugin_demo"] == "a third-party plugin"
    sys.modules.pop("moebench_plugin_demo", None)


def test_broken_plugin_warns_instead_of_breaking(monkeypatch):
    ep = EntryPoint("broken", "no_such_module_xyz:Thing", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep])
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    with pytest.warns(UserWarning, match="could not load algorithm plugin 'broken'"):
        names = registry.available_algorithms()
    assert "broken" not in names and "tensor_em" in names


@pytest.mark.parametrize("name", moebench.available_algorithms())
def test_every_registered_algorithm_declares_its_parameters_and_budgets(name):
    cls = registry.algorithm_class(name)
    assert cls.undeclared_parameters() == []
    params = cls._get_param_names()
    assert set(cls.budget_parameters) <= {"max_iter", "max_time"}
    assert set(cls.budget_parameters.values()) <= set(params)
    cls.check_params(cls().get_params())  # the defaults satisfy the declaration
    with pytest.raises(ValueError, match="n_experts must be an integer >= 2; got 1"):
        cls.check_params({"n_experts": 1})


@pytest.mark.parametrize("name", moebench.available_algorithms(references=True))
def test_every_registered_algorithm_declares_what_it_assumes(name):
    """A non-empty tuple of short tags (issue 15); `moebench list --assumes` prints them."""
    cls = registry.algorithm_class(name)
    assert "assumes" in vars(cls), f"{name} inherits `assumes` instead of declaring it"
    assert isinstance(cls.assumes, tuple) and cls.assumes
    assert all(isinstance(tag, str) and 0 < len(tag) <= 60 for tag in cls.assumes)
    if cls.requires_k_le_d:
        assert "k <= d" in cls.assumes
    if cls.supported_activations == ("linear",):
        assert any("linear g" in tag or "k = 1" in tag for tag in cls.assumes)


def test_list_assumes_prints_every_algorithms_tags(capsys):
    from moebench.cli import main

    assert main(["list", "--assumes"]) == 0
    out = capsys.readouterr().out
    for name in moebench.available_algorithms():
        tags = registry.algorithm_class(name).assumes
        assert f"assumes: {'; '.join(tags)}" in out
