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


def test_a_second_run_into_the_same_folder_never_removes_the_first_runs_parts(tmp_path):
    """The parts a killed run left are removed before a product is written again; the parts of a run that is still
    writing are not (it once failed midway with FileNotFoundError when two runs shared a folder)."""
    import sys

    from kappamask_core.io.files import remove_stale_parts, temp_beside

    final = tmp_path / "T_kappamask.tif"
    child = subprocess.Popen([sys.executable, "-c",
                              "import sys, time; from pathlib import Path; from kappamask_core.io.files import "
                              "temp_beside; print(temp_beside(Path(sys.argv[1])), flush=True); time.sleep(60)",
                              str(final)], stdout=subprocess.PIPE, text=True)
    try:
        alive = child.stdout.readline().strip()
        dead = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from kappamask_core.io."
                               "files import temp_beside; print(temp_beside(Path(sys.argv[1])))", str(final)],
                              capture_output=True, text=True, check=True).stdout.strip()
        mine = temp_beside(final)
        legacy = tmp_path / f".{final.name}.k2j4x8.part"  # an earlier version's name: no owner recorded
        legacy.write_bytes(b"")
        removed = remove_stale_parts(final)
        assert sorted(map(str, removed)) == sorted([dead, str(legacy)])
        assert os.path.exists(alive) and os.path.exists(mine)
    finally:
        child.kill()
        child.wait()
    assert remove_stale_parts(final) == [tmp_path / os.path.basename(alive)]
