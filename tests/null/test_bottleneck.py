"""1×1 bottleneck analysis on a hand-computed Inception(3a)-like block (28×28×192 input, Szegedy et al. 2014)."""

from __future__ import annotations

import json

import pytest

import engine.functional as F
import engine.nn as nn
from graph.bottleneck import BottleneckReport, analyze_bottlenecks, bottleneck
from graph.summary import trace_shapes
from zoo import models

HW = 28 * 28


class Inception3a(nn.Module):
    """1x1 64 | 1x1 96 -> BN -> ReLU -> 3x3 128 | 1x1 16 -> ReLU -> 5x5 32 | 3x3 max pool -> 1x1 32 (no biases)."""

    def __init__(self):
        super().__init__()
        self.b1 = nn.Conv2d(192, 64, 1, bias=False)
        self.b2_reduce = nn.Conv2d(192, 96, 1, bias=False)
        self.b2_bn = nn.BatchNorm2d(96)
        self.b2 = nn.Conv2d(96, 128, 3, padding=1, bias=False)
        self.b3_reduce = nn.Conv2d(192, 16, 1, bias=False)
        self.b3 = nn.Conv2d(16, 32, 5, padding=2, bias=False)
        self.b4_pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.b4 = nn.Conv2d(192, 32, 1, bias=False)

    def forward(self, x):
        y2 = self.b2(F.relu(self.b2_bn(self.b2_reduce(x))))
        y3 = self.b3(F.relu(self.b3_reduce(x)))
        return F.concat([self.b1(x), y2, y3, self.b4(self.b4_pool(x))], 1)


@pytest.fixture(scope="module")
def report() -> BottleneckReport:
    return bottleneck(Inception3a(), (1, 192, 28, 28))


def test_every_conv_listed(report):
    convs = {c.name: c for c in report.convs}
    assert set(convs) == {"b1", "b2_reduce", "b2", "b3_reduce", "b3", "b4"}
    assert (convs["b2"].params, convs["b2"].macs) == (3 * 3 * 96 * 128, HW * 128 * 96 * 9)
    assert convs["b2"].output_bytes == 128 * HW * 4
    assert (convs["b3"].kernel, convs["b3"].c_in, convs["b3"].c_out) == ((5, 5), 16, 32)


def test_reduce_pairs_vs_naive_inception(report):
    pairs = {(p.reduce, p.conv): p for p in report.reductions}
    assert set(pairs) == {("b2_reduce", "b2"), ("b3_reduce", "b3")}  # b1 and b4 feed no k×k conv

    p3 = pairs["b2_reduce", "b2"]  # found through BN and ReLU
    assert (p3.c_in, p3.c_reduced, p3.c_out, p3.reduction_ratio) == (192, 96, 128, 2.0)
    assert p3.macs_with == HW * 192 * 96 + HW * 96 * 128 * 9 == 101_154_816
    assert p3.macs_without == HW * 192 * 128 * 9 == 173_408_256
    assert p3.params_with == 192 * 96 + 96 * 128 * 9 == 129_024
    assert p3.params_without == 192 * 128 * 9 == 221_184
    assert p3.mac_saving == pytest.approx(1 - 101_154_816 / 173_408_256)  # 41.7 %

    p5 = pairs["b3_reduce", "b3"]
    assert (p5.c_in, p5.c_reduced, p5.reduction_ratio) == (192, 16, 12.0)
    assert (p5.macs_with, p5.macs_without) == (HW * (192 * 16 + 16 * 32 * 25), HW * 192 * 32 * 25)
    assert (p5.params_with, p5.params_without) == (192 * 16 + 16 * 32 * 25, 192 * 32 * 25)
    assert p5.mac_saving == pytest.approx(1 - 12_443_648 / 120_422_400)  # 89.7 %
    assert p5.param_saving == pytest.approx(1 - 15_872 / 153_600)
    assert not report.suggestions  # the k×k convs here all have a reduce in front


class Wide(nn.Module):
    """A 3x3 conv on 256 channels with no reduce (suggested), one on 64 channels (too narrow) and a strided 3x3 to 16
    channels where a full-resolution reduce would cost more than it saves (not suggested)."""

    def __init__(self):
        super().__init__()
        self.wide = nn.Conv2d(256, 256, 3, padding=1)
        self.narrow = nn.Conv2d(64, 64, 3, padding=1)
        self.thin = nn.Conv2d(256, 16, 3, stride=2, padding=1)

    def forward(self, x):
        return self.thin(x), self.wide(x), self.narrow(x[:, :64])


def test_suggestions():
    rep = bottleneck(Wide(), (1, 256, 14, 14), min_channels=128)
    assert [s.conv for s in rep.suggestions] == ["wide"]
    s = rep.suggestions[0]
    # 1x1 256 -> 64, then 3x3 64 -> 256, both at 14x14 (biases kept, as the original conv has one)
    assert s.c_reduced == 64
    assert s.macs == 196 * 256 * 256 * 9
    assert s.macs_with_reduce == 196 * 256 * 64 + 196 * 64 * 256 * 9
    assert s.params_with_reduce == (256 * 64 + 64) + (64 * 256 * 9 + 256)
    assert s.mac_saving == pytest.approx(1 - (256 * 64 + 64 * 256 * 9) / (256 * 256 * 9)) and s.mac_saving > 0.5
    assert not rep.reductions


def test_json_and_tables(report):
    data = json.loads(report.to_json())
    assert {r["reduce"] for r in data["reductions"]} == {"b2_reduce", "b3_reduce"}
    assert data["units"]["macs"].startswith("multiply-accumulates")
    assert len(data["convs"]) == 6
    text = str(report)
    assert "b3_reduce" in text and "89.7%" in text and "41.7%" in text


def test_googlenet_has_two_reduces_per_inception():
    g = trace_shapes(models.get("googlenet", aux_logits=False), (1, 3, 64, 64))
    rep = analyze_bottlenecks(g)
    assert len(rep.reductions) == 18
    assert all(r.mac_saving > 0 for r in rep.reductions if r.reduction_ratio > 1.5)


def test_cli_json(capsys):
    from zoo.cli import main

    assert main(["bottleneck", "convnetjs_cifar10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["params"] for c in data["convs"]] == [1216, 8020, 10020]
