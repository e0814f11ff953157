"""Aggregation: FedAvg weights by tokens; the robust methods bound what one bad site can do."""

from __future__ import annotations

import pytest
import torch

from organfed.server.aggregate import Contribution, Method, aggregate, update_norms
from organfed.shared.errors import ConfigError
from organfed.shared.organ import LayerRange, extract_organ, load_organ, make_organ


@pytest.fixture(scope="module")
def start(tiny_models, tmp_path_factory):
    path = tmp_path_factory.mktemp("agg") / "organ.safetensors"
    extract_organ(tiny_models["llama"], path, LayerRange(2, 5))
    return load_organ(path)


def shifted(start, site, delta, tokens=100):
    tensors = {k: v + delta for k, v in start.tensors.items()}
    return Contribution(site, make_organ(tensors, start.manifest), tokens)


def key(start):
    return next(iter(start.tensors))


def test_fedavg_weights_by_tokens(start):
    out = aggregate(Method.FEDAVG, [shifted(start, "a", 0.0, 300), shifted(start, "b", 1.0, 100)])
    k = key(start)
    assert torch.allclose(out[k], start.tensors[k] + 0.25, atol=1e-6)


def test_median_and_trimmed_mean_ignore_one_outlier(start):
    honest = [shifted(start, s, d) for s, d in (("a", 0.1), ("b", 0.2), ("c", 0.3), ("d", 0.25))]
    evil = shifted(start, "evil", 1000.0)
    k = key(start)
    for method in (Method.MEDIAN, Method.TRIMMED_MEAN):
        out = aggregate(method, [*honest, evil], trim_fraction=0.2)
        assert (out[k] - start.tensors[k]).abs().max() <= 0.3 + 1e-5, method


def test_median_of_even_count_is_the_middle_mean(start):
    out = aggregate(Method.MEDIAN, [shifted(start, s, d) for s, d in (("a", 0.0), ("b", 1.0), ("c", 2.0), ("d", 3.0))])
    k = key(start)
    assert torch.allclose(out[k], start.tensors[k] + 1.5, atol=1e-5)


def test_clipped_mean_bounds_a_scaled_update(start):
    honest = [shifted(start, s, d) for s, d in (("a", 0.01), ("b", 0.02), ("c", 0.015))]
    scaled = shifted(start, "evil", 10.0)
    out = aggregate(Method.CLIPPED_MEAN, [*honest, scaled], start=start)
    norms = update_norms(honest, start)
    delta = sum(float((out[k] - start.tensors[k]).pow(2).sum()) for k in start.tensors) ** 0.5
    assert delta <= max(norms) + 1e-4
    with pytest.raises(ConfigError, match="starting organ"):
        aggregate(Method.CLIPPED_MEAN, honest)


def test_whole_organ_methods_do_not_merge(start):
    with pytest.raises(ConfigError, match="whole organs"):
        aggregate(Method.SELECT_BEST, [shifted(start, "a", 0.0)])


def test_dtype_is_kept(start):
    half = make_organ({k: v.bfloat16() for k, v in start.tensors.items()}, start.manifest)
    out = aggregate(Method.FEDAVG, [Contribution("a", half, 1), Contribution("b", half, 1)])
    assert {t.dtype for t in out.values()} == {torch.bfloat16}


def test_trimmed_mean_trims_at_least_one_of_three():
    from organfed.server.aggregate import trimmed_count

    assert [trimmed_count(n, 0.2) for n in (1, 2, 3, 4, 5, 10)] == [0, 0, 1, 1, 1, 2]
    assert trimmed_count(5, 0.0) == 0


def test_negative_token_counts_are_refused(start):
    with pytest.raises(ConfigError, match="negative"):
        aggregate(Method.FEDAVG, [shifted(start, "a", 0.0, 1000), shifted(start, "b", 1.0, -999)])


def test_every_round_trains_with_its_own_seed():
    from organfed.server.rounds import round_seed

    seeds = [round_seed(0, r) for r in range(1, 6)]
    assert len(set(seeds)) == 5 and all(0 <= s < 2**32 for s in seeds)
    assert round_seed(2**32 - 1, 3) < 2**32
