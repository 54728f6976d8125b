"""benchmarks/bench_gpu.py, the prepared GPU measurement, runs end to end on CPU (--smoke)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_bench_gpu_smoke_runs_and_checks_equality(tmp_path):
    script = Path(__file__).parents[1] / "benchmarks" / "bench_gpu.py"
    out = subprocess.run([sys.executable, str(script), "--smoke", "--json", str(tmp_path / "gpu.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert result["smoke"] and result["equality_ok"] and result["device"] == "cpu"
    assert [r["cells"] for r in result["timings"]] == [1000, 3000]
    for row in result["timings"]:
        assert row["transform_matches"] < 1e-5 and row["fit_float32_s"] > 0 and row["rank_s"] > 0
