import numpy as np
import pytest

from moebench.activations import ACTIVATIONS, get_activation, numerical_derivative


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_builtin_derivative_matches_finite_difference(name):
    act = get_activation(name)
    t = np.linspace(-3, 3, 61)
    t = t[np.abs(t) > 1e-3]  # away from kinks
    num = numerical_derivative(act.func)(t)
    assert np.allclose(act.derivative(t), num, atol=1e-6)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_torch_version_matches_numpy(name):
    torch = pytest.importorskip("torch")
    act = get_activation(name)
    t = np.linspace(-3, 3, 13)
    out = act.torch_func(torch.tensor(t)).numpy()
    assert np.allclose(out, act.func(t), atol=1e-12)


def test_sigmoid_is_stable_for_large_inputs():
    s = get_activation("sigmoid").func(np.array([-1000.0, 0.0, 1000.0]))
    assert np.all(np.isfinite(s)) and np.allclose(s, [0.0, 0.5, 1.0])


def test_callable_gets_numerical_derivative():
    act = get_activation(np.sin)
    t = np.linspace(-2, 2, 9)
    assert act.name == "custom:sin"
    assert np.allclose(act.derivative(t), np.cos(t), atol=1e-7)
    given = get_activation(np.sin, derivative=np.cos)
    assert np.array_equal(given.derivative(t), np.cos(t))


def test_unknown_activation_lists_choices():
    with pytest.raises(ValueError, match="valid choices are linear, sigmoid, relu"):
        get_activation("swish")


def test_non_vectorised_callable_is_rejected():
    with pytest.raises(ValueError, match="vectorised"):
        get_activation(lambda t: 1.0)
    with pytest.raises(ValueError, match="name .* Activation or a callable"):
        get_activation(3)
