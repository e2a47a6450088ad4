"""The README's results block: rendered from handwritten metrics files, spliced between markers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pneumocam import paths
from pneumocam.readme_results import (
    END_MARKER,
    START_MARKER,
    ReadmeMarkersError,
    render_results,
    replace_block,
    write_readme_results,
)

REPO = Path(__file__).resolve().parents[1]
DEMO = {"kind": "demo", "is_demo": True, "path": "data/demo"}


def _est(v, lo, hi):
    return {"value": v, "ci95": [lo, hi]}


def _eval(auc, thr):
    return {"data_source": DEMO, "synthetic_demo": True, "roc_auc": _est(auc, auc - 0.03, auc + 0.02),
            "average_precision": _est(0.9, 0.85, 0.95), "operating_threshold": thr,
            "at_operating_threshold": {"sensitivity": _est(0.75, 0.6, 0.9),
                                       "specificity": _est(0.96, 0.9, 0.99)},
            "by_view": {"AP": {"roc_auc": _est(0.94, 0.9, 0.97)},
                        "PA": {"roc_auc": _est(0.97, 0.95, 0.99)}},
            "baselines": {"view_position": {"roc_auc": 0.739}},
            "counts": {"test": {"n": 200, "n_pos": 42}}}


def _paired(d, lo, hi, p):
    return {"difference": d, "ci95": [lo, hi], "p_value": p, "n": 42, "test": "t"}


def _localization():
    base = {m: _est(v, v - 0.1, v + 0.1) for m, v in
            (("pointing_game", 0.31), ("mass_in_boxes", 0.05), ("iou", 0.224))}
    paired = {k: {"pointing_game": _paired(0.262, 0.095, 0.405, 0.00123),
                  "mass_in_boxes": _paired(0.05, 0.01, 0.09, 0.02),
                  "iou": _paired(0.031, -0.01, 0.07, 0.2)}
              for k in ("fixed_point", "mean_box_prior", "uniform_random")}
    return {"pointing_game": _est(0.571, 0.41, 0.71), "mass_in_boxes": _est(0.109, 0.09, 0.13),
            "iou": _est(0.255, 0.22, 0.29), "n_images": 42,
            "baselines": {"fixed_point": base, "mean_box_prior": base, "uniform_random": base},
            "paired": paired, "sanity_check": {"passed": True, "mean_abs_rho": 0.18},
            "detection": {"rsna_metric": 0.058}, "data_source": DEMO, "synthetic_demo": True}


def _config(commit, device="cpu"):
    return {"arguments": {"device": device}, "data_source": DEMO,
            "provenance": {"git": {"commit": commit, "dirty": False},
                           "host": {"platform": "Linux-x86_64", "cpu_count": 2},
                           "created_utc": "2026-11-27T10:00:00+00:00"}}


@pytest.fixture
def study(tmp_path):
    """metrics/ and weights/ with two evaluated runs, a comparison, one run interpreted."""
    metrics, weights = tmp_path / "metrics", tmp_path / "weights"
    metrics.mkdir()
    for run, auc, thr in (("original", 0.961, 0.22), ("balanced", 0.972, 0.56)):
        (metrics / f"{run}_eval.json").write_text(json.dumps(_eval(auc, thr)))
        (weights / run).mkdir(parents=True)
        (weights / run / "config.json").write_text(json.dumps(_config("abcdef0123456789")))
    (metrics / "comparison.json").write_text(json.dumps({
        "reference_run": "original", "runs": ["original", "balanced"],
        "paired_differences": [{"run": "balanced", "reference": "original", "metric": "roc_auc",
                                "value": 0.011, "ci95": [-0.005, 0.032]}]}))
    # both runs interpreted on the same 42 positives (listed in another order by one of them)
    ids = [f"p{i:02d}" for i in range(42)]
    hits = {"original": [1] * 20 + [0] * 22, "balanced": [1] * 24 + [0] * 18}  # 4 discordant
    for run in ("original", "balanced"):
        (metrics / f"{run}_localization.json").write_text(json.dumps(_localization()))
        order = range(42) if run == "original" else range(41, -1, -1)
        rows = [f"{ids[i]},{hits[run][i]},{0.1 + i / 100:.6f},{0.2:.6f}" for i in order]
        (metrics / f"{run}_localization.csv").write_text(
            "patientId,pointing_hit,mass_in_boxes,iou\n" + "\n".join(rows) + "\n")
    return tmp_path


def test_render_results_tables_stamp_and_paired_lines(study):
    text = render_results(study / "metrics", study / "weights")
    lines = text.splitlines()
    assert "**Synthetic demo data: these numbers say nothing about pneumonia**" in text
    assert "Test split: 200 images, 42 positive." in text
    assert "`balanced`: trained with `--device cpu` on Linux-x86_64, 2 CPUs; commit `abcdef0123`" in text
    assert "| test split (synthetic demo) | original | balanced |" in lines
    assert "| ROC AUC (95% bootstrap CI) | 0.961 (0.931-0.981) | 0.972 (0.942-0.992) |" in lines
    assert "| AUC within AP / within PA | 0.940 / 0.970 | 0.940 / 0.970 |" in lines
    assert "| operating threshold (chosen on validation) | 0.22 | 0.56 |" in lines
    assert "| paired bootstrap AUC difference, run - original | – | +0.011 (-0.005 to +0.032) |" in lines
    # localization: the map, the baselines, and map minus baseline, paired, with McNemar's p
    assert "| CAM pointing game (42 positive images) | 0.571 (0.410-0.710) | 0.571 (0.410-0.710) |" in lines
    paired_pg = "+0.262 (+0.095 to +0.405), McNemar p = 0.00123"
    assert f"| paired pointing game, map - fixed point | {paired_pg} | {paired_pg} |" in lines
    assert ("| paired IoU, map - mean-box prior | +0.031 (-0.010 to +0.070) | "
            "+0.031 (-0.010 to +0.070) |") in lines
    assert not any("IoU, map - fixed point" in line for line in lines)  # a point has no extent
    assert "| randomised-weights sanity check, mean abs. Spearman | 0.18 (passed) | 0.18 (passed) |" in lines
    # run vs run, paired by patientId from the per-image CSVs, worded by the interval
    # 4 discordant pairs, all one way: McNemar p = 2/2^4; the percentile bootstrap rarely
    # draws none of the 4, so its interval lies above 0 (the verdict reads the interval)
    assert ("- pointing game: balanced beats original, paired difference +0.095 (+0.024 to "
            "+0.190) on 42 images, McNemar p = 0.125.") in lines
    assert ("- mass in boxes: balanced cannot be told apart from original, paired difference "
            "+0.000 (+0.000 to +0.000) on 42 images.") in lines
    assert "Not yet made" not in text
    assert render_results(study / "metrics", study / "weights") == text  # no clock inside


def test_render_results_without_files_names_the_commands(tmp_path):
    text = render_results(tmp_path / "metrics", tmp_path / "weights")
    assert "No results yet" in text and "python scripts/run_pipeline.py" in text
    assert START_MARKER not in text and END_MARKER not in text
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "balanced_eval.json").write_text(json.dumps(_eval(0.9, 0.5)))
    text = render_results(tmp_path / "metrics", tmp_path / "weights")
    assert "no `weights/balanced/config.json` (run `python scripts/train_balanced.py`)" in text
    assert "`metrics/balanced_localization.json`" in text
    real = {**_eval(0.9, 0.5), "data_source": {"kind": "rsna"}, "synthetic_demo": False}
    (tmp_path / "metrics" / "balanced_eval.json").write_text(json.dumps(real))
    text = render_results(tmp_path / "metrics", tmp_path / "weights")
    assert "Synthetic" not in text and "Data: rsna (not the synthetic demo)." in text
    assert "| test split (real data) | balanced |" in text


def test_write_readme_results_touches_only_the_block(study, monkeypatch):
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(study))
    before = "# Title\r\n\nintro text\n\n## Results\n"
    after = "\nRead honestly: hand-written prose stays.\n\n## Next\n"
    readme = study / "README.md"
    readme.write_bytes(f"{before}{START_MARKER}\nold table 0.999\n{END_MARKER}{after}".encode())
    write_readme_results(readme)
    text = readme.read_bytes().decode()
    assert text.startswith(before + START_MARKER + "\n") and text.endswith(END_MARKER + after)
    assert "0.999" not in text and "0.961 (0.931-0.981)" in text
    block = text[text.index(START_MARKER) + len(START_MARKER):text.index(END_MARKER)]
    assert block == "\n" + render_results()
    once = readme.read_bytes()
    write_readme_results(readme)
    assert readme.read_bytes() == once  # idempotent

    readme.write_text("# no markers\n")
    with pytest.raises(ReadmeMarkersError, match="README.md: expected one"):
        write_readme_results(readme)
    assert readme.read_text() == "# no markers\n"
    with pytest.raises(ReadmeMarkersError, match="wrong order"):
        replace_block(f"{END_MARKER}\n{START_MARKER}\n", "x")


def test_report_script(study):
    readme = study / "README.md"
    readme.write_text(f"top\n{START_MARKER}\n{END_MARKER}\nbottom\n")
    env = {"PNEUMOCAM_ROOT": str(study), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "src")}
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "report.py"), "--readme"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "| ROC AUC (95% bootstrap CI) |" in readme.read_text()
    assert readme.read_text().startswith("top\n") and readme.read_text().endswith("bottom\n")
    assert not (study / "images" / "index.html").exists()  # --readme alone writes no page
    before = readme.read_text()
    bare = subprocess.run([sys.executable, str(REPO / "scripts" / "report.py")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert bare.returncode == 0, bare.stderr  # the plain command writes the HTML report
    assert (study / "images" / "index.html").is_file() and readme.read_text() == before
    assert str(study / "images" / "index.html") in bare.stdout.splitlines()[-1]
    other = study / "other.md"
    other.write_text("nothing\n")
    bad = subprocess.run([sys.executable, str(REPO / "scripts" / "report.py"), "--readme",
                          "--readme-path", str(other)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert bad.returncode == 1 and "other.md" in bad.stderr and bad.stderr.count("\n") == 1


def test_render_results_names_what_is_missing(study):
    (study / "metrics" / "original_localization.json").unlink()
    (study / "metrics" / "comparison.json").unlink()
    text = render_results(study / "metrics", study / "weights")
    lines = text.splitlines()
    assert "Not yet made:" in lines
    assert ("- `metrics/original_localization.json`: "
            "`python scripts/interpret.py --weights weights/original/best.pth`") in lines
    assert "- `metrics/comparison.json` (paired AUC differences): `python scripts/compare.py`" in lines
    assert "| CAM pointing game (42 positive images) | – | 0.571 (0.410-0.710) |" in lines
    assert "paired bootstrap AUC difference" not in text and "Run vs run" not in text


def test_the_repository_readme_has_one_results_block():
    text = (REPO / "README.md").read_text()
    spliced = replace_block(text, "generated", REPO / "README.md")
    start, end = spliced.index(START_MARKER), spliced.index(END_MARKER)
    assert spliced[start:end] == f"{START_MARKER}\ngenerated\n"
    assert spliced[:start] == text[:text.index(START_MARKER)]
    assert spliced[end:] == text[text.index(END_MARKER):]
