"""Data safety (#13): gdstab never deletes what it did not write, never discards finished work,
and resumes to identical data after an interruption at any moment.

Interruptions are real: subprocesses of the ``gdstab`` command killed with SIGKILL or
interrupted with SIGINT at random instants (seeded, so a failure can be replayed), and a child
process that exits abruptly (``os._exit``) right after each single write of a folder's creation.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import xarray as xr

from gdstab import sweep
from gdstab.cli import main as cli_main
from gdstab.sweep import folders, load_config
from gdstab.sweep.folders import FolderBusyError, ForeignFolderError

GD = Path(sys.executable).parent / "gdstab"

# ~0.3 s of compute once compiled (the command needs ~1.5 s to start and ~1.5 s to compile)
KILL = """
[problem]
name = "zhu"

[grid]
eta = "0.05:0.45:6"
inits = 1200

[run]
steps = 3000
seed = 11
cell_inits = 100
backend = "jax"
"""

SMALL = """
[problem]
name = "hyperbola"

[grid]
eta = "0.3:1.2:4"
inits = 600

[run]
steps = 400
seed = 3
cell_inits = 100
"""


def listing(path: Path) -> list[tuple[str, str]]:
    """Every file and folder under ``path`` with a digest of its bytes."""
    out = []
    for p in sorted(Path(path).rglob("*")):
        rel = str(p.relative_to(path))
        out.append((rel, "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()))
    return out


def markers(out: Path) -> int:
    d = Path(out) / "cells"
    return len(list(d.glob("*.json"))) if d.exists() else 0


@pytest.fixture(scope="module")
def kill_reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("killref")
    (d / "kill.toml").write_text(KILL)
    return d / "kill.toml", sweep.run(load_config(KILL), d / "ref", quiet=True)


@pytest.fixture(scope="module")
def small_reference(tmp_path_factory):
    return sweep.run(load_config(SMALL), tmp_path_factory.mktemp("smallref") / "ref", quiet=True)


# ------------------------------------------------------------------------------- ownership


def _cli(*argv) -> int:
    return cli_main([str(a) for a in argv])


def test_overwrite_refuses_the_current_directory_even_a_gdstab_folder(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL)
    out = tmp_path / "res"
    assert _cli("sweep", cfg, "--out", out, "--quiet", "--json") == 0
    before = listing(out)
    monkeypatch.chdir(out)
    capsys.readouterr()
    assert _cli("sweep", cfg, "--out", ".", "--overwrite", "--quiet") == 2
    err = capsys.readouterr().err
    assert "current directory" in err and "never deletes" in err and err.count("\n") == 1
    assert listing(out) == before
    # a folder that contains the current directory is refused likewise
    (out / "sub").mkdir()
    monkeypatch.chdir(out / "sub")
    assert _cli("sweep", cfg, "--out", "..", "--overwrite", "--quiet") == 2
    assert "contains the current directory" in capsys.readouterr().err


def test_overwrite_refuses_home_and_root(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("keep me")
    monkeypatch.setenv("HOME", str(home))
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL)
    assert _cli("sweep", cfg, "--out", home, "--overwrite", "--quiet") == 2
    assert "home directory" in capsys.readouterr().err
    assert listing(home) == [(".bashrc", hashlib.sha256(b"keep me").hexdigest())]
    with pytest.raises(ForeignFolderError, match="filesystem root"):
        folders.refuse_dangerous_overwrite(Path("/"))
    with pytest.raises(ForeignFolderError, match="filesystem root"):
        sweep.run(load_config(SMALL), "/", overwrite=True, quiet=True)


@pytest.mark.parametrize("kind", ["foreign folder", "one foreign file"])
def test_overwrite_refuses_folders_with_files_gdstab_did_not_write(tmp_path, capsys, kind):
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL)
    out = tmp_path / "res"
    if kind == "foreign folder":
        out.mkdir()
        (out / "thesis.tex").write_text("chapter 1")
        (out / "figs").mkdir()
        (out / "figs" / "a.png").write_bytes(b"\x89PNG")
    else:  # a finished sweep plus one file the user put there
        assert _cli("sweep", cfg, "--out", out, "--quiet", "--json") == 0
        (out / "notes.txt").write_text("my notes")
    before = listing(out)
    capsys.readouterr()
    assert _cli("sweep", cfg, "--out", out, "--overwrite", "--quiet") == 2
    err = capsys.readouterr().err
    assert "did not write" in err and ("'thesis.tex'" in err or "'notes.txt'" in err)
    assert "--overwrite" not in err.split("did not write")[1]  # never suggests a destructive flag
    assert listing(out) == before


def test_overwrite_deletes_only_gdstab_files_and_restarts(tmp_path, small_reference):
    out = tmp_path / "res"
    sweep.run(load_config(SMALL.replace("seed = 3", "seed = 4")), out, quiet=True)
    ds = sweep.run(load_config(SMALL), out, quiet=True, overwrite=True)
    xr.testing.assert_identical(small_reference, ds)
    # an empty folder, and the current directory when it is empty, are fine without --overwrite
    empty = tmp_path / "empty"
    empty.mkdir()
    xr.testing.assert_identical(small_reference, sweep.run(load_config(SMALL), empty, quiet=True))


def test_reproduce_claims_its_folder_like_a_sweep(tmp_path, monkeypatch, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "summary.json").write_text('{"my": "own summary"}')
    before = listing(foreign)
    assert _cli("reproduce", "fig1", "--out", foreign, "--quiet") == 2
    assert _cli("reproduce", "fig1", "--out", foreign, "--quiet", "--overwrite") == 2
    assert "did not write" in capsys.readouterr().err
    assert listing(foreign) == before
    monkeypatch.chdir(foreign)
    assert _cli("reproduce", "fig1", "--out", ".", "--overwrite", "--quiet") == 2
    assert "current directory" in capsys.readouterr().err
    assert listing(foreign) == before
    # a sweep's folder is not a reproduce folder
    sw = tmp_path / "sw"
    sweep.run(load_config(SMALL), sw, quiet=True)
    before = listing(sw)
    assert _cli("reproduce", "fig1", "--out", sw, "--quiet", "--overwrite") == 2
    assert "sweep folder" in capsys.readouterr().err
    assert listing(sw) == before


def test_a_folder_of_an_older_gdstab_is_adopted_and_resumed(tmp_path, small_reference):
    out = tmp_path / "old"
    sweep.run(load_config(SMALL), out, quiet=True, max_cells=10)
    (out / folders.MARKER).unlink()  # what gdstab wrote before markers existed
    (out / folders.LOCK).unlink()
    ds = sweep.run(load_config(SMALL), out, quiet=True)
    xr.testing.assert_identical(small_reference, ds)
    assert folders.read_marker(out)["kind"] == "sweep"
    assert sum(r["cells_computed"] for r in sweep.ResultsFolder(out).runs()) == 24  # the 10 were kept


# ---------------------------------------------------------------------- damaged metadata


def _documents(out: Path) -> list[str]:
    """Every metadata document of a sweep folder: the manifest, the marker itself."""
    return sorted(folders.read_marker(out)["manifest"]) + [folders.MARKER]


@pytest.mark.parametrize("finished", [True, False], ids=["finished", "half-finished"])
def test_each_damaged_metadata_document_is_rebuilt_and_no_cell_is_lost(tmp_path, small_reference, finished):
    base = tmp_path / "base"
    sweep.run(load_config(SMALL), base, quiet=True, max_cells=None if finished else 12)
    n_done = markers(base)
    docs = _documents(base)
    assert len(docs) >= 12  # group, 7 variables, 3 coordinates (+ chunks), config.toml, marker
    for doc in docs:
        for damage in ("truncate", "delete", "garbage"):
            out = tmp_path / f"{damage}-{doc.replace('/', '_')}"
            shutil.copytree(base, out)
            target = out / doc
            if damage == "truncate":
                target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2])
            elif damage == "delete":
                target.unlink()
            else:
                target.write_bytes(b"\x00\xff" * 7)
            ds = sweep.run(load_config(SMALL), out, quiet=True)
            runs = sweep.ResultsFolder(out).runs()
            assert runs[-1]["cells_computed"] == 24 - n_done, (doc, damage)  # every completed cell kept
            xr.testing.assert_identical(small_reference, ds)
            assert sweep.ResultsFolder(out).verify_metadata() == []
            checked = sweep.open_results(out, verify=True)
            assert json.loads(checked.attrs.pop("verification"))["cells_verified"] == 24
            xr.testing.assert_identical(small_reference, checked)


def test_show_names_damaged_metadata_and_verify_reports_corrupt_cells(tmp_path, capsys):
    out = tmp_path / "res"
    sweep.run(load_config(SMALL), out, quiet=True)
    (out / "data.zarr" / "final_loss" / "zarr.json").write_text("{")
    assert _cli("show", out, "--verify") == 2
    assert "damaged metadata" in capsys.readouterr().err
    sweep.run(load_config(SMALL), out, quiet=True)  # repairs
    chunk = out / "data.zarr" / "status" / "c" / "0" / "0"
    chunk.write_bytes(bytes(len(chunk.read_bytes())))  # every status of cell 0 reads "not computed"
    assert _cli("show", out) == 0
    assert "not verified" in capsys.readouterr().out
    assert _cli("show", out, "--verify") == 0
    text = capsys.readouterr().out
    assert "23 of 24 cells match" in text and "1 failed" in text


def test_a_truncated_runs_line_does_not_swallow_the_next_record(tmp_path):
    out = tmp_path / "res"
    sweep.run(load_config(SMALL), out, quiet=True, max_cells=3)
    p = out / "runs.jsonl"
    p.write_bytes(p.read_bytes()[:-9])  # a line cut by a crash
    sweep.run(load_config(SMALL), out, quiet=True)
    runs = sweep.ResultsFolder(out).runs()
    assert len(runs) == 1 and runs[0]["cells_computed"] == 21


# ------------------------------------------------------------------ crashes during creation

_CHILD = textwrap.dedent("""
    import json, os, sys
    from gdstab.sweep import folders, store, load_config
    from gdstab.sweep.driver import _provenance
    cfg = load_config(sys.argv[1])
    layout = store.Layout.for_config(cfg)
    attrs = json.loads(sys.argv[4])
    k = int(sys.argv[3])
    real = folders.atomic_write
    calls = [0]
    def dying(*a, **kw):
        if calls[0] == k:
            os._exit(9)  # no cleanup at all, as with SIGKILL
        calls[0] += 1
        return real(*a, **kw)
    folders.atomic_write = dying
    store.folders.atomic_write = dying
    lock = store.ResultsFolder(sys.argv[2]).prepare(cfg, layout, attrs)
    print(calls[0])
""")


@pytest.mark.parametrize("existing", [False, True], ids=["new folder", "empty folder"])
def test_death_after_each_write_of_the_creation_resumes(tmp_path, small_reference, existing):
    """The child dies (os._exit, no cleanup) just before the k-th write of the folder's
    creation, for every k; the next run must clear what it left and end identical."""
    from gdstab.sweep.driver import _provenance

    cfg_path = tmp_path / "small.toml"
    cfg_path.write_text(SMALL)
    cfg = load_config(SMALL)
    attrs = json.dumps(_provenance(cfg, sweep.Layout.for_config(cfg)))
    probe = subprocess.run([sys.executable, "-c", _CHILD, str(cfg_path), str(tmp_path / "probe"), "999", attrs],
                           capture_output=True, text=True, check=True)
    writes = int(probe.stdout.split()[-1])
    assert writes >= 13

    def one(k):
        out = tmp_path / f"k{k}"
        if existing:
            out.mkdir()
        r = subprocess.run([sys.executable, "-c", _CHILD, str(cfg_path), str(out), str(k), attrs],
                           capture_output=True, text=True)
        return k, out, r.returncode

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(writes)))
    for k, out, rc in results:
        assert rc == 9, (k, rc)
        ds = sweep.run(load_config(SMALL), out, quiet=True)
        xr.testing.assert_identical(small_reference, ds)
        assert not list(tmp_path.glob(f".k{k}.gdstab-new-*")), "the temporary skeleton was not cleared"


# ------------------------------------------------------------------------- real SIGKILL


def _start(cfg_path: Path, out: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen([str(GD), "sweep", str(cfg_path), "--out", str(out), "--quiet", *map(str, extra)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_creation(proc: subprocess.Popen, out: Path, timeout: float = 60.0) -> bool:
    """Poll (0.5 ms) until the folder or its temporary skeleton appears."""
    parent, name = out.parent, out.name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() or any(n.startswith(f".{name}.gdstab-new-") for n in os.listdir(parent)):
            return True
        time.sleep(0.0005)
    return False


@pytest.mark.slow
def test_sigkill_at_random_instants_of_a_fresh_sweep_then_resume_is_identical(tmp_path, kill_reference):
    cfg_path, ref = kill_reference
    rng = random.Random(1301)
    # 30 kills in the first 200 ms after the folder's creation began (half of them in the first
    # 10 ms, where the creation itself is), each in a fresh folder
    delays = [rng.uniform(0, 0.01) for _ in range(15)] + [rng.uniform(0, 0.2) for _ in range(15)]

    def one(i):
        out = tmp_path / f"fresh{i}"
        proc = _start(cfg_path, out)
        seen = _wait_for_creation(proc, out)
        time.sleep(delays[i])
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        return out, seen, proc.returncode

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(len(delays))))
    killed = sum(rc == -signal.SIGKILL for _, _, rc in results)
    assert all(seen for _, seen, _ in results)
    assert killed >= 28, f"only {killed} of {len(delays)} runs were still alive to be killed"
    states = {"no folder": 0, "creating": 0, "partial": 0}
    for out, _, _ in results:
        if not out.exists():
            states["no folder"] += 1
        elif markers(out) == 0:
            states["creating"] += 1
        else:
            states["partial"] += 1
        xr.testing.assert_identical(ref, sweep.run(load_config(KILL), out, quiet=True))
    assert states["no folder"] + states["creating"] >= 5, states  # the creation itself was hit


@pytest.mark.slow
def test_sigkill_at_random_later_instants_then_resume_is_identical(tmp_path, kill_reference):
    cfg_path, ref = kill_reference
    rng = random.Random(1302)
    out = tmp_path / "later"
    kills = 0
    for i in range(40):  # until 20 kills landed: a run that finishes before its kill instant does not count
        if kills >= 20:
            break
        proc = _start(cfg_path, out)
        _wait_for_creation(proc, out)
        time.sleep(rng.uniform(0.2, 2.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if markers(out) == 72:  # finished before the kill: start again from scratch
            shutil.rmtree(out)
            continue
        copy = tmp_path / f"copy{i}"  # every killed state resumes to the identical Dataset
        shutil.copytree(out, copy)
        xr.testing.assert_identical(ref, sweep.run(load_config(KILL), copy, quiet=True))
        shutil.rmtree(copy)
    assert kills >= 20


# ------------------------------------------------------------------------------ SIGINT


def _interrupt_and_check(cfg_path: Path, out: Path, delay: float, sig=signal.SIGINT):
    proc = _start(cfg_path, out)
    time.sleep(delay)
    sent = proc.poll() is None
    if sent:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the sweep ignored the signal for 60 s (delay {delay:.3f} s)")
    return sent, proc.returncode, err


@pytest.mark.slow
def test_sigint_at_random_instants_stops_cleanly_and_resumes_identically(tmp_path, kill_reference):
    cfg_path, ref = kill_reference
    rng = random.Random(1303)
    # from 50 ms after the start (before that Python itself is starting, see docs/sweeps.md) to 4 s;
    # a run that finishes before its signal does not count (how many do depends on the machine's
    # speed), so pairs of runs go on until 25 signals landed, at most 60 runs
    interrupted, attempts = 0, 0

    def one(i, delay):
        out = tmp_path / f"int{i}"
        return (out,) + _interrupt_and_check(cfg_path, out, delay)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        while interrupted < 25 and attempts < 60:
            delays = [rng.uniform(0.05, 4.0) for _ in range(2)]
            results = list(pool.map(one, range(attempts, attempts + 2), delays))
            attempts += 2
            for (out, sent, rc, err), delay in zip(results, delays):
                if not sent or rc == 0:  # finished before the signal: nothing to check
                    continue
                interrupted += 1
                assert rc == 130, (delay, rc, err)
                lines = err.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("gdstab"), (delay, err)
                assert "Traceback" not in err and "Exception ignored" not in err
                if out.exists():
                    xr.testing.assert_identical(ref, sweep.run(load_config(KILL), out, quiet=True))
    assert interrupted >= 25, f"only {interrupted} of {attempts} runs were interrupted"


@pytest.mark.slow
def test_sigterm_and_a_long_native_segment_are_honoured_within_a_second(tmp_path):
    cfg_path = tmp_path / "long.toml"
    for backend in ("native", "jax"):
        cfg_path.write_text(textwrap.dedent(f"""
            [problem]
            name = "hyperbola"
            [grid]
            eta = "1.5"
            inits = 512
            [run]
            steps = 1000000000
            backend = "{backend}"
            """))
        out = tmp_path / backend
        proc = _start(cfg_path, out)
        assert _wait_for_creation(proc, out)
        time.sleep(3.0)  # compiled and deep inside the cell (chaos: nothing settles)
        assert proc.poll() is None
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert time.monotonic() - t0 < 2.0, backend
        assert proc.returncode == 130 and "interrupted after 0 of 1 cells" in err, err


@pytest.mark.slow
def test_sigterm_is_honoured_within_a_second_in_the_sequential_lanes_of_a_network(tmp_path):
    """Networks run their lanes one after the other inside a compiled call (issue #21): the
    call still returns to the host within about CALL_SECONDS, where the signal is seen."""
    cfg_path = tmp_path / "net.toml"
    cfg_path.write_text(textwrap.dedent("""
        [problem]
        name = "mlp"
        [problem.options]
        samples = 50
        depth = 1
        [grid]
        eta = "0.01"
        inits = 8
        [run]
        steps = 1000000000
        dtype = "float32"
        store_theta = false
        [criteria]
        tol = 1e-30
        """))
    from gdstab import dynamics

    assert dynamics._sequential_lanes(load_config(cfg_path).problem_at(0), 0, 4, "cpu")
    out = tmp_path / "net"
    proc = _start(cfg_path, out)
    assert _wait_for_creation(proc, out)
    time.sleep(4.0)  # compiled and deep inside the cell (tol 1e-30: nothing settles)
    assert proc.poll() is None
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 2.0
    assert proc.returncode == 130 and "interrupted after 0 of 1 cells" in err, err


# -------------------------------------------------------------------------- concurrency


@pytest.mark.slow
def test_two_sweeps_into_one_folder_never_both_compute(tmp_path, kill_reference):
    cfg_path, ref = kill_reference
    for rnd in range(3):
        out = tmp_path / f"both{rnd}"
        a, b = _start(cfg_path, out), _start(cfg_path, out)
        ea, eb = a.communicate(timeout=120)[1], b.communicate(timeout=120)[1]
        codes = sorted([a.returncode, b.returncode])
        assert codes in ([0, 0], [0, 2]), (codes, ea, eb)
        if codes == [0, 2]:
            busy = ea if a.returncode == 2 else eb
            assert "is in use by gdstab (pid" in busy and busy.count("\n") == 1
        assert "Traceback" not in ea + eb
        runs = sweep.ResultsFolder(out).runs()
        assert sum(r["cells_computed"] for r in runs) == 72  # every cell computed once
        xr.testing.assert_identical(ref, sweep.open_results(out))
    # with --wait the second waits and then finds everything done
    out = tmp_path / "waiting"
    a, b = _start(cfg_path, out, "--wait"), _start(cfg_path, out, "--wait")
    assert a.wait(timeout=120) == 0 and b.wait(timeout=120) == 0
    assert sum(r["cells_computed"] for r in sweep.ResultsFolder(out).runs()) == 72
    xr.testing.assert_identical(ref, sweep.open_results(out))


def test_a_held_lock_is_named_and_waited_for(tmp_path):
    out = tmp_path / "res"
    sweep.run(load_config(SMALL), out, quiet=True, max_cells=2)
    lock = folders.FolderLock(out).acquire()
    try:
        with pytest.raises(FolderBusyError, match=rf"in use by gdstab \(pid {os.getpid()}"):
            sweep.run(load_config(SMALL), out, quiet=True)
        assert markers(out) == 2
    finally:
        lock.release()
    sweep.run(load_config(SMALL), out, quiet=True, wait=True)
    assert markers(out) == 24


# ---------------------------------------------------------------------------- OS errors


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return r.returncode == 0


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_read_only_folder_with_a_finished_sweep_shows_it_and_an_unfinished_one_says_why(tmp_path, capsys):
    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, "64m"):
        pytest.skip("cannot mount a tmpfs here (needs root); the read-only test needs a read-only mount")
    try:
        cfg = tmp_path / "small.toml"
        cfg.write_text(SMALL)
        assert _cli("sweep", cfg, "--out", mnt / "done", "--quiet", "--json") == 0
        sweep.run(load_config(SMALL), mnt / "half", quiet=True, max_cells=5)
        before = listing(mnt)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        capsys.readouterr()
        assert _cli("sweep", cfg, "--out", mnt / "done", "--quiet") == 0
        assert "24 of 24 cells done" in capsys.readouterr().out
        assert _cli("sweep", cfg, "--out", mnt / "half", "--quiet") == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Read-only file system" in err and "5 of 24 cells are complete" in err
        assert _cli("sweep", cfg, "--out", mnt / "new", "--quiet") == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Read-only file system" in err and str(mnt) in err
        assert _cli("show", mnt / "half", "--verify") == 0
        assert listing(mnt) == before
    finally:
        _umount(mnt)


def test_a_full_disk_is_one_line_and_loses_nothing(tmp_path, capsys):
    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, "400k"):
        pytest.skip("cannot mount a small tmpfs here (needs root); the disk-full test needs one")
    try:
        cfg = tmp_path / "big.toml"
        text = SMALL.replace("inits = 600", "inits = 6000").replace("cell_inits = 100", "cell_inits = 500")
        cfg.write_text(text)
        # a new folder on a disk too small for the results is refused before anything is written
        assert _cli("sweep", cfg, "--out", mnt / "new", "--quiet") == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "GiB free" in err and not (mnt / "new").exists()
        # an existing (empty) folder is used as it is: the disk fills up during the run
        (mnt / "res").mkdir()
        assert _cli("sweep", cfg, "--out", mnt / "res", "--quiet") == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "No space left on device" in err and "completed results are kept" in err
        kept = markers(mnt / "res")
        assert 0 < kept < 48
        assert not [p for p in (mnt / "res").rglob("*.tmp")], "temporary files were left on the full disk"
        shutil.copytree(mnt / "res", tmp_path / "moved")  # the same folder on a disk with room
        ds = sweep.run(load_config(text), tmp_path / "moved", quiet=True)
        runs = sweep.ResultsFolder(tmp_path / "moved").runs()
        assert runs[-1]["cells_computed"] == 48 - kept
        xr.testing.assert_identical(sweep.run(load_config(text), tmp_path / "ref", quiet=True), ds)
    finally:
        _umount(mnt)


@pytest.mark.parametrize("case", ["file as out", "name too long", "file in the path"])
def test_path_errors_are_one_line(tmp_path, capsys, case):
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL)
    (tmp_path / "afile").write_text("x")
    out = {"file as out": tmp_path / "afile", "name too long": tmp_path / ("n" * 300),
           "file in the path": tmp_path / "afile" / "res"}[case]
    code = _cli("sweep", cfg, "--out", out, "--quiet")
    err = capsys.readouterr().err
    assert code in (1, 2) and err.count("\n") == 1 and "Traceback" not in err
    assert (tmp_path / "afile").read_text() == "x"
