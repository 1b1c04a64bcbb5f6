"""bench/e2e.py --variant: the configurations measured in the same rounds, their command lines and the
paired figures. The measurement itself is `make bench-e2e`'s (docs/benchmarks.md); these are the
rules that decide what each round runs and what a variant's vs_base.* figures mean."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def e2e() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kairos_bench_e2e", REPO / "bench" / "e2e.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and typing look the module up by name
    spec.loader.exec_module(module)
    return module


def configurations(e2e: ModuleType, *argv: str) -> dict[str, list[str]]:
    ap = e2e.parser()
    return dict(e2e.parse_variants(ap, ap.parse_args(list(argv))))


@pytest.mark.parametrize(
    ("base", "variant", "expected"),
    [
        # An option the variant names replaces the base's; the others stay.
        (
            ["--keep-warm", "0"],
            "--keep-warm 5ms",
            {"keep_warm": "5ms", "idle_spin": False, "cpu_affinity": []},
        ),
        # Every --cpu-affinity item of the base goes when the variant gives its own.
        (
            ["--cpu-affinity", "none"],
            "--cpu-affinity inference=1 --cpu-affinity *=0",
            {"cpu_affinity": ["inference=1", "*=0"]},
        ),
        (
            ["--cpu-affinity", "inference=1", "--cpu-affinity", "*=0"],
            "--idle-spin",
            {"cpu_affinity": ["inference=1", "*=0"], "idle_spin": True},
        ),
        # --no-idle-spin is the same option as --idle-spin: a variant can turn the base's off.
        (["--idle-spin"], "--no-idle-spin", {"idle_spin": False}),
        (["--laps", "2", "--rate", "500"], "--keep-warm=0", {"laps": 2, "rate": 500.0, "keep_warm": "0"}),
    ],
)
def test_a_variant_replaces_the_options_it_names_and_keeps_the_rest(
    e2e: ModuleType, base: list[str], variant: str, expected: dict[str, object]
) -> None:
    argv = configurations(e2e, *base, "--out", "/tmp/e2e.json", "--variant", f"v={variant}")["v"]
    ns = e2e.parser().parse_args(argv)
    assert {k: getattr(ns, k) for k in expected} == expected


def test_a_variant_without_options_is_a_control_that_runs_the_base_again(e2e: ModuleType) -> None:
    got = configurations(
        e2e, "--keep-warm", "0", "--idle-spin", "--out", "/x/e2e.json", "--variant", "e2e-control="
    )
    assert list(got) == ["e2e", "e2e-control"]
    assert got["e2e-control"] == got["e2e"]


def test_the_base_is_named_by_its_result_file_and_runs_its_own_options(e2e: ModuleType) -> None:
    got = configurations(
        e2e, "--keep-warm", "0", "--out", "/x/e2e-held.json", "--variant", "e2e-tuned=--keep-warm 5ms"
    )
    assert list(got) == ["e2e-held", "e2e-tuned"]
    base = e2e.parser().parse_args(got["e2e-held"])
    assert base.keep_warm == "0" and base.runs == 3 and base.variant == []


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("no-options", "expected NAME=OPTIONS"),
        ("bad/name=--keep-warm 0", "expected NAME=OPTIONS"),
        ("e2e=--keep-warm 0", "e2e is measured twice"),
        ("v=--runs 5", "--runs belongs to the whole command"),
        ("v=--out=/tmp/x.json", "--out belongs to the whole command"),
        ("v=--keep-warm soon", "--variant v (--keep-warm soon)"),
        ("v=--cpu-affinity nosuchservice=0", "--variant v (--cpu-affinity nosuchservice=0)"),
        ("v=--no-such-option", "--variant v (--no-such-option)"),
    ],
)
def test_a_bad_variant_is_refused_before_anything_runs_naming_it(
    e2e: ModuleType, variant: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        configurations(e2e, "--out", "/tmp/e2e.json", "--variant", variant)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("n", [1, 2, 4])
def test_every_round_runs_each_configuration_once_and_each_leads_once_in_n_rounds(
    e2e: ModuleType, n: int
) -> None:
    orders = [e2e.round_order(n, r) for r in range(n)]
    assert all(sorted(o) == list(range(n)) for o in orders)
    assert sorted(o[0] for o in orders) == list(range(n))
    assert e2e.round_order(n, n) == orders[0]


def test_paired_figures_are_differences_within_the_same_round(e2e: ModuleType) -> None:
    # The base drifts from round to round more than the variant differs from it.
    base = [
        {"python_hop_us_p50": 400.0, "hop_us_p50.a_to_b": 100.0},
        {"python_hop_us_p50": 800.0, "hop_us_p50.a_to_b": 300.0},
        {"python_hop_us_p50": 600.0},
    ]
    variant = [
        {"python_hop_us_p50": 350.0, "hop_us_p50.a_to_b": 90.0},
        {"python_hop_us_p50": 700.0, "hop_us_p50.a_to_b": 320.0},
        {"python_hop_us_p50": 580.0, "hop_us_p50.a_to_b": 10.0},
    ]
    got = e2e.paired(base, variant)
    assert got["vs_base.python_hop_us_p50"] == -50.0
    assert (got["vs_base.python_hop_us_p50.min"], got["vs_base.python_hop_us_p50.max"]) == (-100.0, -20.0)
    # A round without the metric on both sides is left out, not paired with another round's.
    assert got["vs_base.hop_us_p50.a_to_b"] == 5.0
    assert (got["vs_base.hop_us_p50.a_to_b.min"], got["vs_base.hop_us_p50.a_to_b.max"]) == (-10.0, 20.0)
    assert got["vs_base_rounds"] == 3.0
    assert "vs_base.tick_to_order_ack_us_p50" not in got
    table = e2e.paired_table("e2e", {"e2e-x": got})
    assert "python_hop_us_p50" in table and "-50 (-100 to -20)" in table


def test_hops_out_is_refused_with_variants(
    e2e: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["e2e.py", "--hops-out", "/tmp/h.jsonl", "--variant", "v=--keep-warm 0"])
    before = os.environ.get("KAIROS_COLLECTOR_INFERENCE_WARMUP_BARS")
    with pytest.raises(SystemExit):
        e2e.main()
    assert "--hops-out is for one configuration" in capsys.readouterr().err
    # Refused before it set anything for its stacks: the collector's warm-up setting of this process
    # (which every later stack of the test run inherits) is untouched.
    assert os.environ.get("KAIROS_COLLECTOR_INFERENCE_WARMUP_BARS") == before
