"""Rates: log loss on log n with bootstrap intervals (moebench.sweep.rates)."""

import numpy as np
import pandas as pd
import pytest

from moebench.sweep.views import get_view, views

views("table")  # the built-in views first, in their order (tests/test_views.py lists them)
from moebench.sweep.rates import ols_slope, rate_fits, rates_table  # noqa: E402


def _summary(slope=-0.5, reps=30, seed=0, outliers=False):
    rng = np.random.default_rng(seed)
    rows = []
    for n in np.geomspace(100, 1e5, 10).round().astype(int):
        for rep in range(reps):
            loss = 3.0 * n**slope * np.exp(0.3 * rng.standard_normal())
            if outliers and rep == 0 and n < 1000:
                loss *= 1e4  # one huge loss at small n: carries the mean, not the median
            rows.append(dict(label="em", k=2, k_fit=3, n=n, repetition=rep, status="ok",
                             voronoi_loss=loss, voronoi_loss_translated=loss / 2))
    rows.append(dict(label="em", k=2, k_fit=3, n=100, repetition=99, status="error",
                     voronoi_loss=np.nan, voronoi_loss_translated=np.nan))
    return pd.DataFrame(rows)


def test_ols_slope_exact_power_law():
    n = np.array([10.0, 100.0, 1000.0])
    assert ols_slope(n, 2.0 * n**-0.7) == pytest.approx((-0.7, np.log(2.0)))
    assert np.isnan(ols_slope(n, np.array([1.0, -1.0, 0.0]))[0])


def test_slopes_and_intervals_recover_the_rate():
    fits = rate_fits(_summary(), n_boot=200)
    assert set(fits["statistic"]) == {"mean", "median"}
    assert sorted(fits["n_start"].unique()) == [100, 1000, 10000]  # every 3rd n, >= 4 left
    first = fits[(fits["n_start"] == 100) & (fits["loss"] == "voronoi_loss")]
    for row in first.itertuples():
        assert row.low < row.slope < row.high and row.high - row.low < 0.1
        assert row.slope == pytest.approx(-0.5, abs=0.05)
        assert row.points == 10 and row.runs == 300
    translated = fits[(fits["n_start"] == 100) & (fits["loss"] == "voronoi_loss_translated")]
    assert np.allclose(translated["slope"].to_numpy(), first["slope"].to_numpy())
    again = rate_fits(_summary(), n_boot=200)
    pd.testing.assert_frame_equal(fits, again)  # seeded


def test_outliers_move_the_mean_slope_not_the_median():
    fits = rate_fits(_summary(outliers=True), n_boot=200)
    first = fits[(fits["n_start"] == 100) & (fits["loss"] == "voronoi_loss")]
    mean = first[first["statistic"] == "mean"]["slope"].item()
    median = first[first["statistic"] == "median"]["slope"].item()
    assert mean < -1.0 and median == pytest.approx(-0.5, abs=0.05)


def test_views_are_registered():
    text = rates_table(_summary(reps=5))
    assert text.startswith("| variant | k fitted |") and "| em | 3 | voronoi_loss | mean |" in text
    assert get_view("table", "rates").func is rates_table
    fig = get_view("figure", "rates").func(_summary(reps=5))
    assert len(fig.axes) == 2
    assert "No rates" in rates_table(_summary().drop(columns=["voronoi_loss"]))


def test_rates_figure_with_losses_near_the_float_limit():
    """A diverged gating bias gives a loss near 1e307: the panel marks it instead of
    failing, and its y range stops at Y_MAX."""
    from moebench.sweep.rates import Y_MAX, plot_rates

    summary = _summary(outliers=True)
    summary.loc[summary.index[0], "voronoi_loss"] = 2.8e307
    fig = plot_rates(summary)
    ax = fig.axes[0]
    assert ax.get_ylim()[1] <= Y_MAX
    assert any("off the scale" in t.get_text() for t in ax.texts)
    fig.canvas.draw()  # the log ticks of that range render


def test_rates_without_a_translated_loss():
    """A regression truth stores no translated loss (None in every run): the table and the
    figure show the plain loss alone."""
    from moebench.sweep.rates import plot_rates

    summary = _summary()
    summary["voronoi_loss_translated"] = None
    fig = plot_rates(summary)
    assert len(fig.axes) == 1 and "voronoi loss" in fig.axes[0].get_title()
    fig.canvas.draw()
    text = rates_table(summary)
    assert "| em | 3 | voronoi_loss |" in text and "voronoi_loss_translated" not in text
