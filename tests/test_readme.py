"""The README's two commands stay true: CI runs the README's test command verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text):
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    blocks = _bash_blocks(readme)
    assert len(blocks) == 2, "the README states exactly two set-up commands"
    test_cmd = blocks[1]
    ci_lines = [l for l in (ROOT / ".ci" / "run").read_text().splitlines() if l and not l.startswith("#")]
    assert test_cmd in ci_lines


def test_main_command_uses_existing_cli():
    readme = (ROOT / "README.md").read_text()
    main_cmd = _bash_blocks(readme)[0]
    gd = main_cmd.split("&&")[-1].split()
    assert gd[0].endswith("gdstab")
    from gdstab.cli import build_parser

    args = build_parser().parse_args(gd[1:])  # parses: every flag exists
    assert args.command
