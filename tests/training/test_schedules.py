import pytest

from tfdepth.registries import SCHEDULES
from tfdepth.training.schedules import build_schedule


def test_constant_and_cosine():
    assert build_schedule("constant", 1e-4, 100, {})(57) == 1e-4
    cos = build_schedule("cosine", 1e-3, 110, {"warmup_steps": 10, "lr_min": 1e-5})
    assert cos(0) == pytest.approx(1e-4)  # warmup: lr * 1/10
    assert cos(9) == pytest.approx(1e-3)
    assert cos(10) == pytest.approx(1e-3)
    assert cos(60) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))  # half way through the cosine
    assert cos(110) == pytest.approx(1e-5)


def test_cyclic_triangular():
    cyc = build_schedule("cyclic", 1e-2, 1000, {"lr_min": 1e-4, "step_size": 10})
    assert cyc(0) == pytest.approx(1e-4)
    assert cyc(5) == pytest.approx(1e-4 + 0.5 * (1e-2 - 1e-4))
    assert cyc(10) == pytest.approx(1e-2)
    assert cyc(20) == pytest.approx(1e-4)
    assert cyc(30) == pytest.approx(1e-2)


def test_polynomial_and_exponential_staircase():
    poly = build_schedule("polynomial", 1e-2, 100, {"power": 0.9})
    assert poly(50) == pytest.approx(1e-2 * 0.5 ** 0.9)
    assert poly(100) == pytest.approx(0.0)
    exp = build_schedule("exponential", 1e-4, 10 ** 6, {"decay_rate": 0.9, "decay_steps": 10000})
    assert exp(9999) == pytest.approx(1e-4)
    assert exp(10000) == pytest.approx(0.9e-4)
    assert exp(25000) == pytest.approx(1e-4 * 0.81)


def test_bad_names_and_args():
    with pytest.raises(KeyError, match="unknown schedule 'cosin'; allowed: constant, cosine, cyclic"):
        SCHEDULES.get("cosin")
    with pytest.raises(ValueError, match="schedule 'cosine': bad args"):
        build_schedule("cosine", 1e-3, 10, {"warmup": 3})
