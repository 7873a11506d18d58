"""Progress on every long command (#17 item 4): a line in place on a terminal, plain periodic
lines elsewhere, nothing for short work, a clean end, and messages that never run into it."""

import io
import time

import pytest

from gdstab import progress
from gdstab.cli import main
from gdstab.progress import Progress, say


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_in_a_log_then_a_last_line():
    out = io.StringIO()
    with Progress("gdstab test", 10, "chunks", stream=out, delay=0.0, every=0.05) as bar:
        for k in range(1, 11):
            bar.set(k, 10)
            time.sleep(0.02)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3 and all(line.startswith("gdstab test: ") for line in lines)
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()  # no terminal control in a log
    assert lines[-1].startswith("gdstab test: 10 of 10 chunks (100%)")
    assert any("left" in line for line in lines[:-1])  # an estimate while running


def test_short_work_prints_nothing_and_quiet_prints_nothing():
    out = io.StringIO()
    with Progress("gdstab test", 3, "chunks", stream=out, delay=5.0) as bar:
        bar.set(3, 3)
    assert out.getvalue() == ""
    with Progress("gdstab test", 3, stream=out, delay=0.0, every=0.0, quiet=True):
        time.sleep(0.1)
    assert out.getvalue() == ""


def test_a_terminal_line_is_updated_in_place_and_ends_with_a_newline():
    term = _Terminal()
    with Progress("gdstab test", 4, "chunks", stream=term, delay=0.0) as bar:
        for k in range(1, 5):
            bar.set(k)
            time.sleep(progress.REFRESH * 1.5)
    text = term.getvalue()
    assert text.count("\r") >= 2 and text.endswith("\n") and text.count("\n") == 1
    assert "4 of 4 chunks (100%)" in text.split("\r")[-1]


def test_a_message_during_a_terminal_line_clears_it_first():
    term = _Terminal()
    with Progress("gdstab test", 4, "chunks", stream=term, delay=0.0):
        time.sleep(progress.REFRESH * 1.5)
        say("gdstab test: a warning", stream=term)
        time.sleep(progress.REFRESH * 1.5)
    text = term.getvalue()
    before, after = text.split("gdstab test: a warning\n")
    assert before.endswith("\r\x1b[K")  # the bar's line was cleared, the message has its own line
    assert after.startswith("\r") and after.endswith("\n")  # the bar came back below it and ended


def test_unknown_size_is_a_heartbeat_with_the_elapsed_time():
    out = io.StringIO()
    with Progress("gdstab test", stream=out, delay=0.0, every=0.05):
        time.sleep(0.15)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("gdstab test: running, ") and lines[-1].startswith("gdstab test: finished in ")


@pytest.mark.parametrize("argv", [
    ["trajectories", "--problem", "hyperbola", "--eta", "0.5,1.5", "--inits", "200", "--steps", "500",
     "--backend", "jax"],
    ["orbit", "--problem", "hyperbola", "--eta", "1.1:1.3:5", "--init", "1.2,0.9", "--transient", "2000",
     "--record", "128", "--max-period", "8"],
    ["lyapunov", "--problem", "hyperbola", "--eta", "1.5", "--init", "1.2,0.9", "--steps", "2000"],
    ["basin", "--problem", "hyperbola", "--eta", "0.9", "--resolution", "16", "--steps", "300"],
    ["sharpness", "--problem", "zhu", "--init", "4,0.1", "--eta", "0.1", "--steps", "100", "--every", "10"],
])
def test_every_long_command_shows_progress_on_stderr(argv, capsys, monkeypatch):
    """With the delay set to 0 every command prints progress lines to stderr (not a terminal
    here) that end with its total; --quiet prints none; stdout holds only the result."""
    monkeypatch.setattr(progress, "DELAY", 0.0)
    monkeypatch.setattr(progress, "EVERY", 0.0)
    assert main(argv) == 0
    cap = capsys.readouterr()
    lines = [line for line in cap.err.splitlines() if line.startswith(f"gdstab {argv[0]}")]
    assert lines, cap.err
    assert "%" in lines[-1] or "finished in" in lines[-1]
    assert not any(line.startswith(f"gdstab {argv[0]}: ") and ("of" in line and "%" in line)
                   for line in cap.out.splitlines())
    assert main(argv + ["--quiet"]) == 0
    assert not [line for line in capsys.readouterr().err.splitlines() if "%" in line or "running" in line]
