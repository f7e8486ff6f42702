"""Files appear whole or not at all: interrupted renames and full disks leave nothing behind."""

from __future__ import annotations

import os
import subprocess

import pytest
from helpers import fail, leftovers

from kappamask_core.faces.cli import main


def test_interrupt_between_renames_leaves_nothing(band_folder, tmp_path, monkeypatch, capsys):
    import kappamask_core.io.files as files

    real_replace = os.replace
    moved = []

    def replace(src, dst):
        real_replace(src, dst)
        moved.append(dst)
        if str(dst).endswith("_kappamask.tif"):  # Ctrl-C right after the product's COG is in place
            raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", replace)
    code = main(["classify", str(band_folder), "-o", str(tmp_path / "out"), "--model", "default", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 130 and "nothing partial was left" in err
    assert any(str(m).endswith("_kappamask.tif") for m in moved)
    assert leftovers(tmp_path / "out") == []


def test_a_full_disk_is_one_line_and_leaves_nothing(band_folder, tmp_path, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()[:80]}); the full-disk case "
                    "needs one")
    try:
        line = fail(capsys, band_folder, "-o", disk, "--model", "default")
        assert "No space left on device" in line
        assert not [p for p in disk.iterdir() if not p.name.startswith(".kappamask-write-test")]
    finally:
        subprocess.run(["umount", str(disk)], check=False)
