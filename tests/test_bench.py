"The benchmark's pieces: fair timing, the step's FLOPs, recall intervals, reference rows, the best-model rule."
import pandas as pd
import pytest
import torch
from scipy.stats import binomtest

import deepgen.bench as bench
from deepgen.bench import (NOISE_ROW, REAL_ROW, REFERENCE_TABLE, best_model, gather_trilemma, sampling_time,
                           step_flops, step_timing, trilemma_scatter, trilemma_summary, wilson_interval)


@pytest.fixture
def fake_clock(monkeypatch):
    "A clock that advances only by the durations a timed function spends."
    now = [0.0]
    monkeypatch.setattr(bench.time, "perf_counter", lambda: now[0])
    return lambda seconds: now.__setitem__(0, now[0] + seconds)


def test_sampling_time_warms_up_then_takes_the_median_of_the_repeats(fake_clock):
    durations, calls = iter([100.0, 1.0, 5.0, 2.0]), []
    t = sampling_time(lambda n: (calls.append(n), fake_clock(next(durations))), n=40)
    assert calls == [40] * 4  # one warm-up (100 s, not counted), three timed calls
    assert (t.median_s, t.min_s, t.max_s, t.repeats, t.n) == (2.0, 1.0, 5.0, 3, 40)
    assert t.per(100) == 5.0 and t.per(100, "min_s") == 2.5


def test_sampling_time_scales_a_part_of_a_chain(fake_clock):
    "50 of 1000 steps timed at 0.5 s a call: the chain takes 10 s, and the timing says it was scaled."
    t = sampling_time(lambda n: fake_clock(0.5), n=100, scale=1000 / 50)
    assert t.median_s == 10.0 and t.scale == 20 and "× 20" in str(t)


def test_sampling_time_refuses_fewer_than_three_repeats():
    with pytest.raises(ValueError, match="at least 3 repeats"):
        sampling_time(lambda n: None, repeats=2)


def test_step_timing_skips_the_first_half_and_needs_three_intervals():
    history = [{"step": s, "time_s": t} for s, t in enumerate([5.0, 5.1, 5.2, 5.3, 5.4, 5.6, 5.7, 5.8], start=1)]
    t = step_timing(history, batch=32)
    assert t.repeats == 4 and abs(t.median_s - 0.1) < 1e-9 and abs(t.max_s - 0.2) < 1e-9 and t.n == 32
    with pytest.raises(ValueError, match="3 logged intervals"):
        step_timing(history[:4], batch=32)


def test_step_flops_counts_forward_and_backward():
    "A linear layer with its input requiring grad: forward, weight gradient and input gradient, 2·N·a·b each."
    x = torch.randn(16, 8, requires_grad=True)
    assert step_flops(torch.nn.Linear(8, 4, bias=False), lambda m, x: m(x).sum(), x) == 3 * 2 * 16 * 8 * 4


@pytest.mark.parametrize("k, n", [(0, 10), (39, 500), (250, 500), (500, 500), (7, 24)])
def test_wilson_interval_matches_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(method="wilson")
    assert wilson_interval(k / n, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def _results(tmp_path, floor):
    for stage, model, fid in [("vae", "VAE", 70.0), ("gan", "DCGAN (NS, EMA)", 90.0)]:
        folder = tmp_path / "tables" / "foundations" / stage
        folder.mkdir(parents=True)
        pd.DataFrame([{"model": model, "family": stage.upper(), "dataset": "mnist", "inception_fid": fid,
                       "recall": 0.5, "sample_s_per_100": 0.1, "n_samples": 500}]).to_csv(folder / "trilemma.csv",
                                                                                          index=False)
    (tmp_path / REFERENCE_TABLE).parent.mkdir(parents=True)
    pd.DataFrame([{"model": REAL_ROW, "family": "reference", "dataset": "mnist", "inception_fid": floor, "n_samples": 500},
                  {"model": NOISE_ROW, "family": "reference", "dataset": "mnist", "inception_fid": 400.0,
                   "n_samples": 500}]).to_csv(tmp_path / REFERENCE_TABLE, index=False)
    return tmp_path


def test_gather_trilemma_adds_the_reference_rows_only_when_asked(tmp_path):
    results = _results(tmp_path, floor=30.0)
    assert sorted(gather_trilemma(results)["stage"]) == ["gan", "vae"]
    rows = gather_trilemma(results, references=True)
    refs = rows[rows["stage"] == "metrics"]
    assert sorted(refs["model"]) == sorted([REAL_ROW, NOISE_ROW]) and set(refs["family"]) == {"reference"}


def test_best_model_is_named_only_near_the_real_data_floor(tmp_path):
    near = gather_trilemma(_results(tmp_path / "near", floor=30.0), references=True)
    assert best_model(near, "mnist")[0] == "VAE"  # 70 ≤ 3 × 30
    far = gather_trilemma(_results(tmp_path / "far", floor=20.0), references=True)
    model, why = best_model(far, "mnist")  # 70 > 3 × 20
    assert model is None and "real-data floor" in why
    assert best_model(gather_trilemma(tmp_path / "far"), "mnist")[0] is None  # no floor, no winner


def test_trilemma_summary_is_nested_short_keys_and_numbers(tmp_path):
    summary = trilemma_summary(gather_trilemma(_results(tmp_path, floor=30.0), references=True))
    assert set(summary["mnist"]) == {"vae", "dcgan_ns_ema", "real_test_images", "uniform_noise"}
    assert summary["mnist"]["vae"] == {"fid": 70.0, "recall": 0.5}
    for values in summary["mnist"].values():
        assert all(key.isidentifier() and isinstance(v, float) for key, v in values.items())


def test_scatter_draws_references_as_star_and_cross_with_the_floor_line(tmp_path):
    import matplotlib.pyplot as plt
    fig = trilemma_scatter(gather_trilemma(_results(tmp_path, floor=30.0), references=True))
    ax = fig.axes[0]
    markers = [c.get_paths()[0].vertices.shape[0] for c in ax.collections]  # a star has more vertices than an x
    assert [len(c.get_offsets()) for c in ax.collections] == [2, 1, 1] and markers[1] != markers[2]
    assert [line.get_ydata()[0] for line in ax.get_lines()] == [30.0]
    plt.close(fig)
