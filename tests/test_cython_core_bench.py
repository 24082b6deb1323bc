"""`python benchmarks/kernels.py` runs, prints what it measured, and refuses bad arguments in one line."""

import json
import math
import subprocess
import sys
import tempfile

import numpy as np
from conftest import BENCHMARKS, benchmark_module

kernels = benchmark_module("kernels")
report, uint16_decode, uint16_encode = kernels.report, kernels.uint16_decode, kernels.uint16_encode

KEYS = ("gather_unpack_vs_float32_gather", "gather_unpack_speedup_vs_uint16_decode", "quantize_pack_row_us")


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / "kernels.py"), *args], capture_output=True, text=True,
                          timeout=120, cwd=tempfile.gettempdir())  # outside the tree: the installed package runs


def test_bench_json_has_the_issue_keys_and_consistent_ratios():
    done = bench("--rows", "3000", "--repeats", "5", "--json")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    for key in KEYS:
        assert math.isfinite(figures[key]) and figures[key] > 0
    fancy, take = figures["float32_fancy_gather_us"], figures["float32_take_us"]
    assert figures["float32_gather_us"] == min(fancy, take)  # the ratios' reference: the faster numpy gather
    assert figures["float32_gather_method"] == ("np.take" if take < fancy else "obs[idx]")
    assert figures["gather_unpack_vs_float32_gather"] == figures["gather_unpack_k15_us"] / figures["float32_gather_us"]
    assert figures["gather_unpack_speedup_vs_uint16_decode"] == (
        figures["uint16_decode_us"] / figures["gather_unpack_k15_us"])
    assert (figures["rows"], figures["dim"], figures["batch"]) == (3000, 348, 256)
    text = report(figures)  # each reference method under its own name, and the ratio's reference named
    assert f"fancy-index obs[idx]  {fancy:8.1f} us" in text and f"np.take into a batch  {take:8.1f} us" in text
    assert f"x the faster float32 gather, {figures['float32_gather_method']} (target" in text


def test_bench_refuses_bad_arguments_in_one_line():
    done = bench("--rows", "0")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--rows" in done.stderr and "Traceback" not in done.stderr


def test_authors_uint16_codec_round_trips_hundredths():
    x = np.array([[0.0, -1.25, 126.99, -127.0, 3.14159, 200.0, -0.004]], dtype=np.float32)
    decoded = uint16_decode(uint16_encode(x), np.array([0]))
    assert decoded.dtype == np.float32
    assert np.allclose(decoded, [[0.0, -1.25, 126.99, -127.0, 3.14, 127.0, 0.0]], atol=1e-5)
