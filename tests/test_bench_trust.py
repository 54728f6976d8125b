"""benchmarks/bench_trust.py's pooled record of the stability warning."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import bench_trust  # noqa: E402


def test_warning_record_counts_warned_groups_by_measured_agreement(tmp_path, capsys):
    # (config, data, group, reported, measured, direction agreement), as --json writes them
    calibration = [
        ["default", "a", "g0", 0.30, 0.20, 0.9], ["default", "a", "g1", 0.70, 0.40, 0.9],
        ["default", "b", "g0", 0.50, 0.55, 0.9], ["default", "b", "g1", 0.90, 0.95, 0.9],
        ["default", "b", "g2", 0.40, 0.80, 0.9], ["other", "b", "g0", 0.10, 0.90, 0.9],
    ]
    files = []
    for i, rows in enumerate((calibration[:2], calibration[2:])):
        files.append(tmp_path / f"run{i}.json")
        files[-1].write_text(json.dumps({"rows": [], "calibration": rows}))
    bench_trust.warning_record(files, "default")
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert cells[1][:3] == ["default", "2", "5"] and abs(float(cells[1][3]) - 0.9 / 5) < 1e-3  # mean |reported - measured|
    assert cells[3:] == [["[0.0, 0.5)", "2", "1"], ["[0.5, 0.6)", "1", "1"], ["[0.6, 1.0]", "2", "1"]]  # (measured, groups, warned)


def test_configs_parse_switches_as_booleans():
    assert bench_trust.parse_config("center=False") == {"center": False}
    assert bench_trust.parse_config("n_models=3,hidden=64-64,learning_rate=0.005") == {
        "n_models": 3, "hidden": (64, 64), "learning_rate": 0.005}
    assert bench_trust.parse_config("default") == {}
