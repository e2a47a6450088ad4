"""The offline report (images/index.html) and the CAM gallery, in headless Chromium.

One tiny real study (two runs trained for an epoch on 32x32 arrays, interpreted with their maps
saved, compared) is made once for the module; the browser tests read it. The numbers each filter
must show are computed here from the CSVs, not from the report's own code.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import make_processed, run_script
from report_browser import broken_images, browser, browser_available, open_page

from pneumocam import report_gallery, report_site
from pneumocam.report_site import esc, json_for_script, write_site
from pneumocam.thumbnails import encode_jpeg, feature_peaks, normalize_maps, render_overlays

WHY_NOT = browser_available()
if WHY_NOT and os.environ.get("PNEUMOCAM_REQUIRE_BROWSER"):
    raise RuntimeError(f"PNEUMOCAM_REQUIRE_BROWSER is set but {WHY_NOT}")
needs_browser = pytest.mark.skipif(WHY_NOT is not None, reason=f"browser tests: {WHY_NOT}")
RUNS = ("original", "balanced")
NASTY = 'x<b id="inj">&amp;"</b>'  # a string that must stay text wherever it is shown


def _ok(res) -> None:
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A project root after: train original and balanced (1 epoch), compare, interpret both
    with --save-maps (the second interpret.py call writes the report, as a person's would)."""
    root = tmp_path_factory.mktemp("report_study")
    make_processed(root)
    for run in RUNS:
        _ok(run_script(f"train_{run}.py", "--epochs", "1", "--device", "cpu", "--n-boot", "20",
                       "--no-progress", root=root))
    _ok(run_script("compare.py", "--n-boot", "20", root=root))
    for run in RUNS:
        res = run_script("interpret.py", "--weights", str(root / "weights" / run / "best.pth"),
                         "--save-maps", "--n", "2", "--n-grid", "2", "--n-boot", "20",
                         "--device", "cpu",
                         *(["--no-report"] if run == RUNS[0] else []), root=root)
        _ok(res)
    assert str(root / "images" / "index.html") in res.stdout.splitlines()[-1]
    return root


def expected_counts(root: Path, run: str) -> dict[str, int]:
    """What each gallery filter must show for ``run``, from the files the page is made of."""
    index = pd.read_csv(root / "metrics" / f"{run}_maps_index.csv", dtype={"patientId": str})
    report = json.loads((root / "metrics" / f"{run}_localization.json").read_text())
    threshold = report["classification"]["operating_threshold"]
    manifest = pd.read_csv(root / "data" / "Processed" / "manifest.csv", dtype={"patientId": str})
    view = manifest.set_index("patientId").loc[index["patientId"], "view_position"].to_numpy()
    loc = pd.read_csv(root / "metrics" / f"{run}_localization.csv", dtype={"patientId": str})
    pos, pred = index["label"].to_numpy() == 1, index["probability"].to_numpy() >= threshold
    return {"all": len(index), "tp": int((pos & pred).sum()), "fp": int((~pos & pred).sum()),
            "fn": int((pos & ~pred).sum()), "tn": int((~pos & ~pred).sum()),
            "label=1": int(pos.sum()), "label=0": int((~pos).sum()),
            "AP": int((view == "AP").sum()), "PA": int((view == "PA").sum()),
            "hit": int((loc["pointing_hit"] == 1).sum()), "miss": int((loc["pointing_hit"] == 0).sum())}


# --------------------------------------------------------------------------- without a browser


def test_thumbnails_draw_map_boxes_and_peak_in_batch() -> None:
    images = np.full((3, 64, 64), 100, np.uint8)
    maps = np.zeros((3, 64, 64), np.float32)
    out = render_overlays(images, maps, [[[8, 8, 16, 16]], [], []], np.array(
        [[40.0, 40.0], [np.nan, np.nan], [10.0, 50.0]]), 128)
    assert out.shape == (3, 128, 128, 3) and out.dtype == np.uint8
    b, g, r = out[0, 16 + 16, 16].astype(int)  # the box's left edge, at 2x: cyan (b, g high, r low)
    assert b > 150 and g > 150 and r < 120
    assert (out[1] == out[1, 0, 0]).all()  # nothing drawn where there is nothing to draw
    assert out[0, 79, 79, 1] > 200 and out[0, 79, 79, 0] < 150  # the green + at the peak


def test_feature_peaks_find_the_strongest_cell_of_an_upsampled_map() -> None:
    import torch

    from pneumocam.cam import upsample_maps

    low = torch.zeros(2, 7, 7)
    low[0, 0, 6] = 5.0
    low[1, 3, 2], low[1, 3, 3] = 2.0, 1.9  # a near tie between neighbours
    raw = upsample_maps(low, (224, 224)).numpy()
    assert feature_peaks(raw).tolist() == [[16.0, 208.0], [112.0, 80.0]]
    norm = normalize_maps(raw)
    assert norm.min() == 0 and norm.max() == 1


def test_thumbnail_jpegs_average_under_15_kb() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 224, 224), dtype=np.uint8)  # noise: the worst case
    maps = rng.random((8, 224, 224), dtype=np.float32)
    thumbs = render_overlays(images, maps, [[]] * 8, None, report_gallery.THUMB_SIZE)
    sizes = [len(encode_jpeg(t, report_gallery.THUMB_QUALITY)) for t in thumbs]
    assert np.mean(sizes) <= 15_000, sizes


def test_strings_are_escaped_for_html_and_script() -> None:
    assert esc(NASTY) == "x&lt;b id=&quot;inj&quot;&gt;&amp;amp;&quot;&lt;/b&gt;"
    text = json_for_script({"id": "</script><script>alert(1)</script>", "v": float("nan")})
    assert "<" not in text and ">" not in text and json.loads(text)["v"] is None


def test_a_killed_build_leaves_the_previous_site(study, tmp_path, monkeypatch) -> None:
    root = tmp_path / "copy"
    shutil.copytree(study, root)
    monkeypatch.setenv("PNEUMOCAM_ROOT", str(root))
    before = (root / "images" / "index.html").read_bytes()
    gallery = (root / "images" / "report" / "gallery.html").read_bytes()

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_site, "render_gallery", killed)
    with pytest.raises(KeyboardInterrupt):
        write_site()
    assert (root / "images" / "index.html").read_bytes() == before
    assert (root / "images" / "report" / "gallery.html").read_bytes() == gallery
    assert not list((root / "images").glob(".report-*"))


def test_the_page_names_the_command_for_what_is_missing(study, tmp_path, monkeypatch) -> None:
    empty = tmp_path / "empty"
    monkeypatch.setenv("PNEUMOCAM_ROOT", str(empty))
    page = write_site().read_text()  # nothing at all: every section says what to run
    assert "python scripts/preprocess.py" in page and "python scripts/run_pipeline.py" in page
    root = tmp_path / "copy"
    shutil.copytree(study, root)
    for suffix in ("_localization.json", "_localization.csv", "_maps.npy", "_maps_index.csv"):
        (root / "metrics" / f"balanced{suffix}").unlink()
    monkeypatch.setenv("PNEUMOCAM_ROOT", str(root))
    page = write_site().read_text()  # balanced trained, not interpreted: its section says so
    assert "balanced is not interpreted yet" in page
    assert "python scripts/interpret.py --weights weights/balanced/best.pth --save-maps" in page
    assert 'id="run-balanced"' in page and "balanced/roc.png" in page
    data = (root / "images" / "report" / "gallery.html").read_text()
    assert '"run":"balanced"' not in data and '"run":"original"' in data


# --------------------------------------------------------------------------- in the browser


@needs_browser
def test_study_page_loads_clean_with_every_link_and_image(study) -> None:
    index = study / "images" / "index.html"
    with browser() as b, open_page(b, index) as (page, log):
        assert "synthetic demo data" in page.inner_text("#demo-banner").lower()
        for section in ("data", "runs", "comparison", "interpretability", "gallery", "provenance"):
            assert page.locator(f"section#{section}").count() == 1
        assert page.locator("text=Not yet made").count() == 0
        assert broken_images(page) == []
        assert page.evaluate("[...document.images].every(i => i.alt.trim().length > 0)")
        links = page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)")
        assert any(h.endswith("gallery.html#run=balanced&method=cam") for h in links)
        for href in links:
            assert href.startswith("file://"), href  # nothing leaves the machine
            target, _, anchor = href[len("file://"):].partition("#")
            assert Path(target).is_file(), href
            if anchor and Path(target) == index:
                assert page.locator(f"[id='{anchor}']").count() == 1, href
        assert log.problems == []


@needs_browser
def test_gallery_filters_show_what_the_csvs_imply(study) -> None:
    with browser() as b, open_page(b, study / "images" / "report" / "gallery.html") as (page, log):
        def shown() -> int:
            return int(page.get_attribute("#count", "data-shown"))

        for run in RUNS:
            want = expected_counts(study, run)
            page.select_option("#f-run", run)
            assert shown() == want["all"] == page.locator(".card").count() == 16
            for select, value, key in (
                    [("#f-cell", c, c) for c in ("tp", "fp", "fn", "tn")]
                    + [("#f-label", "1", "label=1"), ("#f-label", "0", "label=0"),
                       ("#f-view", "AP", "AP"), ("#f-view", "PA", "PA"),
                       ("#f-hit", "hit", "hit"), ("#f-hit", "miss", "miss")]):
                page.select_option(select, value)
                assert shown() == want[key], (run, select, value)
                page.select_option(select, "*")
            page.fill("#f-search", "test-0003")
            assert shown() == 1 and page.inner_text(".card .pid") == "test-0003"
            page.fill("#f-search", "")
        page.select_option("#f-run", "*")
        assert shown() == 32
        page.select_option("#f-sort", "p:asc")
        probs = page.evaluate("[...document.querySelectorAll('.card .meta')].map(m => m.textContent)")
        assert len(probs) == 32
        assert broken_images(page) == [] and log.problems == []


@needs_browser
def test_detail_view_opens_and_the_arrow_keys_move(study) -> None:
    with browser() as b, open_page(b, study / "images" / "report" / "gallery.html") as (page, log):
        page.select_option("#f-run", "balanced")
        pids = page.evaluate("[...document.querySelectorAll('.card .pid')].map(p => p.textContent)")
        page.locator(".card").nth(2).click()
        assert page.is_visible("#detail") and page.inner_text("#d-title") == pids[2]
        assert page.locator("#d-others figure").count() == 1  # original's map of the same image
        assert "original" in page.inner_text("#d-others")
        page.keyboard.press("ArrowRight")
        assert page.inner_text("#d-title") == pids[3]
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        assert page.inner_text("#d-title") == pids[1]
        assert broken_images(page) == []
        page.keyboard.press("Escape")
        assert not page.is_visible("#detail")
        assert log.problems == []


@needs_browser
def test_special_characters_render_as_text(study, tmp_path, monkeypatch) -> None:
    """A patientId and a run label holding <, " and & (written straight into the files; run
    names themselves are restricted to letters, digits, '.', '_' and '-') stay text; a run
    without saved maps names the command that adds them."""
    root = tmp_path / "copy"
    shutil.copytree(study, root)
    metrics, processed = root / "metrics", root / "data" / "Processed"
    manifest = pd.read_csv(processed / "manifest.csv", dtype={"patientId": str})
    manifest.loc[manifest["patientId"] == "test-0000", "patientId"] = NASTY
    manifest.to_csv(processed / "manifest.csv", index=False)
    for name in [f"{r}_maps_index.csv" for r in RUNS] + [f"{r}_localization.csv" for r in RUNS]:
        frame = pd.read_csv(metrics / name, dtype={"patientId": str})
        frame.loc[frame["patientId"] == "test-0000", "patientId"] = NASTY
        frame.to_csv(metrics / name, index=False)
    for run in RUNS:  # the copies read the copied data
        path = metrics / f"{run}_localization.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "data_dir": str(processed)}))
    report = json.loads((metrics / "original_localization.json").read_text())
    (metrics / "weird_localization.json").write_text(json.dumps({**report, "run": NASTY}))
    for suffix in ("_maps.npy", "_maps_index.csv", "_localization.csv"):
        shutil.copy(metrics / f"original{suffix}", metrics / f"weird{suffix}")
    monkeypatch.setenv("PNEUMOCAM_ROOT", str(root))
    (metrics / "balanced_maps.npy").unlink()
    write_site()
    with browser() as b:
        with open_page(b, root / "images" / "index.html") as (page, log):
            assert page.locator("#inj").count() == 0
            assert NASTY in page.inner_text("#gallery")
            assert "interpret.py --weights weights/balanced/best.pth --method cam --save-maps" \
                in page.inner_text("#gallery")
            assert log.problems == []
        with open_page(b, root / "images" / "report" / "gallery.html") as (page, log):
            page.select_option("#f-run", NASTY)
            assert page.locator("#inj").count() == 0
            page.fill("#f-search", "inj")
            assert page.inner_text(".card .pid") == NASTY
            page.locator(".card").first.click()
            assert page.inner_text("#d-title") == NASTY and page.locator("#inj").count() == 0
            page.keyboard.press("Escape")
            page.fill("#f-search", "")
            page.select_option("#f-run", "balanced")
            assert "--save-maps" in page.inner_text("#note") and page.locator(".card").count() == 0
            assert log.problems == []


@needs_browser
def test_pages_fit_a_narrow_window(study) -> None:
    """Nothing wider than a 390-px phone screen, but for tables, which scroll in their box."""
    with browser() as b:
        for page_path in (study / "images" / "index.html",
                          study / "images" / "report" / "gallery.html"):
            with open_page(b, page_path, 390, 800) as (page, log):
                assert page.evaluate("document.documentElement.scrollWidth") <= 390, page_path
                assert log.problems == []


@needs_browser
def test_the_browser_helper_sees_network_requests_errors_and_broken_images(tmp_path) -> None:
    """The checks above can fail: a CDN script, a console error and a missing image are caught."""
    page_path = tmp_path / "bad.html"
    page_path.write_text('<!DOCTYPE html><html><head><script src="https://cdn.example.org/x.js">'
                         '</script></head><body><img src="missing.png" alt="x">'
                         '<script>console.error("boom")</script></body></html>')
    with browser() as b, open_page(b, page_path) as (page, log):
        assert broken_images(page) == [(tmp_path / "missing.png").as_uri()]
        assert any("cdn.example.org" in p for p in log.failed_requests)
        assert "boom" in log.console_errors
