"""A self-contained HTML report of a results folder (``gdstab report DIR``).

The page embeds every figure as a PNG data URI (it needs no network and no files beside it;
the PDF and SVG versions are linked relative to it), the caption of each figure (what was run:
sizes, seeds, tolerances), the key numbers with their definitions next to the paper's values
(and an honest "not reproduced" with the reason where they differ), and provenance (versions,
machine, wall time).  It is rebuilt from ``summary.json`` and the stored data alone; a missing
figure is redrawn from its store, never recomputed.
"""

from __future__ import annotations

import base64
import html
import json
import os
import platform
from pathlib import Path
from typing import Any

from ._validation import InvalidParameterError

__all__ = ["write_report", "check_folder", "machine_info", "ReportError", "pretty"]


class ReportError(InvalidParameterError):
    """A results folder that cannot be reported: says which file and what to do."""


def machine_info() -> dict[str, Any]:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import jax

        info["jax_backend"] = jax.default_backend()
        info["devices"] = [str(d) for d in jax.devices()]
    except Exception:  # noqa: BLE001 - provenance only
        pass
    return info


def _captions(summary: dict) -> dict[str, str]:
    from .experiments import registry

    scale = summary.get("scale", "small")
    return {name: t.caption(scale) for name, t in registry.TARGETS.items()}


def check_folder(out: str | Path) -> dict:
    """Validate a results folder: returns its summary or raises :class:`ReportError` naming the
    missing or corrupt file and what to do."""
    from .experiments import registry
    from .results import open_store

    out = Path(out)
    spath = out / "summary.json"
    if not spath.is_file():
        raise ReportError(
            f"The results folder {str(out)!r} has no summary.json. Run 'gdstab reproduce --out {out}' first."
        )
    try:
        summary = json.loads(spath.read_text())
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
    except (ValueError, OSError) as exc:
        raise ReportError(
            f"The file {str(spath)!r} is corrupt ({exc}). Delete it and rerun 'gdstab reproduce --out {out}' "
            f"(stored sweeps are resumed, not recomputed)."
        ) from None
    for target, info in summary.get("experiments", {}).items():
        if target not in registry.TARGETS:
            continue
        store = out / "data" / registry.get(target).store
        if not store.exists():
            raise ReportError(
                f"The data store {str(store)!r} of {target} is missing. Rerun 'gdstab reproduce {target} --out {out}' "
                f"to recompute it."
            )
        try:
            open_store(store)
        except Exception as exc:  # noqa: BLE001 - any failure to read is reported with the file
            raise ReportError(
                f"The data store {str(store)!r} of {target} is corrupt ({type(exc).__name__}: {exc}). Delete it and "
                f"rerun 'gdstab reproduce {target} --out {out}'."
            ) from None
    return summary


#: ASCII maths of definitions and captions (kept ASCII in summary.json for scripts) -> Unicode
_PRETTY = [
    (r"1/2 \(1 - xy\)\^2", "½(1 − xy)²"), (r"1/4 \(x\^2 y\^2 - 1\)\^2", "¼(x²y² − 1)²"),
    (r"\binf over M of\b", "inf_M"), (r"\blambda_max\b", "λ_max"), (r"\blambda\b", "λ"),
    (r"\beta\*", "η*"), (r"\beta\b", "η"), (r"\bbeta\b", "β"), (r"\btheta\b", "θ"), (r"\beps\b", "ε"),
    (r"η\*\|grad L\|", "η‖∇L‖"), (r"η\*\|grad\|", "η‖∇L‖"), (r"η\*\|minibatch grad\|", "η‖minibatch ∇L‖"),
    (r"<=", "≤"), (r">=", "≥"), (r"\+-", "±"), (r" -> ", " → "), (r" -- ", " — "), (r"(?<=\s)-(?=\s)", "−"),
    (r"\bsqrt\((\d+)\)", r"√\1"), (r"\bsqrt\b", "√"), (r"\^-1/2", "⁻¹ᐟ²"), (r"\^-1", "⁻¹"),
    (r"\^2\b", "²"), (r"\^12\b", "¹²"), (r"\bv_hat\b", "v̂"),
]


def pretty(text: str) -> str:
    """ASCII maths as a reader expects it: ``eta`` → η, ``<=`` → ≤, ``x^2`` → x², ``1/2 (1 - xy)^2``
    → ½(1 − xy)² (plain text in, plain text out)."""
    import re

    for pattern, repl in _PRETTY:
        text = re.sub(pattern, repl, text)
    return text


#: names of the fields inside key numbers' values, as a reader reads them
_FIELDS = {
    "fraction": "fraction", "low": "95% low", "high": "95% high",
    "largest_eta_converged": "largest η that converged", "smallest_eta_all_diverged": "smallest η where all diverged",
    "largest_eta_none_diverged": "largest η where none diverged", "mean_final_loss_there": "mean final loss there",
    "eta_star": "η*", "largest_eta_with_convergence": "largest η that converged",
    "converged_above_eta_star": "runs converged above η*", "consistent": "consistent with the theory",
    "threshold_2_over_eta": "2/η", "max_along_run": "largest λ_max along the run",
    "gradient_flow_sharpness": "λ_max where gradient flow ends", "median_ratio": "median", "max_ratio": "max",
    "min_ratio": "min", "records": "records", "reached": "reached", "window": "steps",
}
#: the fields of a key-number entry that are not extra quantities
_META = ("value", "label", "definition", "paper", "note", "closed_form", "stderr", "interval", "target", "reproduced",
         "check")
#: a value whose inline text is longer goes into a collapsible table below its section's table
_INLINE_CHARS = 120


def _field(name: str) -> str:
    return _FIELDS.get(name, pretty(name.replace("_", " ")))


def _num(v: Any) -> str:
    """A value at the precision a reader wants: 6 significant digits, — for none."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_num(x) for x in v) + "]"
    return pretty(str(v))


def _flatten(v: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(v, dict):
        out = []
        for k, x in v.items():
            out += _flatten(x, f"{prefix}, {_field(str(k))}" if prefix else _field(str(k)))
        return out
    return [(prefix, v)]


def _series_table(v: dict) -> str:
    """A dict value as a table: a matrix when every entry is a dict with the same keys
    (rows = outer keys), else one row per flattened entry."""
    e = html.escape
    inner = list(v.values())
    if inner and all(isinstance(x, dict) for x in inner) and all(set(x) == set(inner[0]) for x in inner):
        cols = list(inner[0])
        head = "<tr><th></th>" + "".join(f"<th>{e(_field(c))}</th>" for c in cols) + "</tr>"
        body = "".join("<tr><th>" + e(_field(str(k))) + "</th>" + "".join(f"<td>{e(_num(x[c]))}</td>" for c in cols)
                       + "</tr>" for k, x in v.items())
        return f"<table class='series'>{head}{body}</table>"
    body = "".join(f"<tr><th>{e(k)}</th><td>{e(_num(x))}</td></tr>" for k, x in _flatten(v))
    return f"<table class='series'>{body}</table>"


def _measured(name: str, entry: dict) -> tuple[str, str]:
    """(the 'measured' cell's text, a collapsible table of the whole value or '')."""
    v = entry.get("value")
    extras = {k: x for k, x in entry.items() if k not in _META}
    if isinstance(v, dict) or extras:
        whole = dict(v) if isinstance(v, dict) else {"value": v}
        whole.update(extras)
        inline = "; ".join(f"{k}: {_num(x)}" for k, x in _flatten(whole))
        if len(inline) <= _INLINE_CHARS:
            return inline, ""
        head = _num(v) + " (" if not isinstance(v, dict) else ""
        text = head + f"{len(whole)} rows in the table below" + (")" if head else "")
        label = html.escape(entry.get("label", pretty(name.replace("_", " "))))
        return text, f"<details class='values'><summary>{label}: all values</summary>{_series_table(whole)}</details>"
    text = _num(v)
    if "stderr" in entry:
        text += f" ± {_num(entry['stderr'])} (std. error)"
    if "interval" in entry:
        text += f", interval {_num(entry['interval'])}"
    return text, ""


def _reference(entry: dict) -> str:
    refs = []
    if "paper" in entry:
        refs.append(f"paper: {_num(entry['paper'])}")
    if "closed_form" in entry:
        refs.append(f"closed form: {_num(entry['closed_form'])}")
    if "check" in entry:
        refs.append(str(entry["check"]))
    return "; ".join(refs) or "—"


def _verdict(entry: dict) -> str:
    """One short phrase; the explanation of a note goes under the table."""
    if "note" in entry:
        return pretty(entry["note"].split(":")[0])
    if isinstance(entry.get("reproduced"), bool):  # a result of the field checked by its stated criterion
        return "reproduced" if entry["reproduced"] else "not reproduced"
    v = entry.get("value")
    for ref, what in (("closed_form", "closed form"), ("paper", "paper")):
        r = entry.get(ref)
        if isinstance(r, (int, float)) and isinstance(v, (int, float)) and not isinstance(v, bool):
            if "interval" in entry:
                lo, hi = entry["interval"]
                return f"{what} inside the interval" if lo <= r <= hi else f"{what} outside the interval"
            rel = abs(v - r) / max(1.0, abs(r))
            return f"agrees with the {what} (rel. diff. {rel:.1g})" if rel <= 1e-6 else \
                f"differs from the {what} by {rel:.2g} (relative)"
    if isinstance(v, dict):
        flags = [x for k, x in _flatten(v) if k.endswith(_FIELDS["consistent"])]
        if flags:
            return "consistent with the theory" if all(flags) else "inconsistent with the theory"
    return "no value to compare with" if "paper" not in entry else ""


def _key_table(names: list[str], key_numbers: dict) -> str:
    """A section's key numbers: a short table, the long values collapsible below it, then the
    notes and the definitions."""
    e = html.escape
    rows, details, notes, defs = [], [], [], []
    for name in names:
        entry = key_numbers[name]
        if not isinstance(entry, dict):
            entry = {"value": entry}
        label = entry.get("label", pretty(name.replace("_", " ")))
        measured, detail = _measured(name, entry)
        rows.append(f"<tr><td>{e(label)}<br><code>{e(name)}</code></td><td>{e(measured)}</td>"
                    f"<td>{e(_reference(entry))}</td><td>{e(_verdict(entry))}</td></tr>")
        details.append(detail)
        if "note" in entry:
            notes.append(f"<li><b>{e(label)}</b>: {e(pretty(entry['note']))}</li>")
        if "definition" in entry:
            defs.append(f"<dt>{e(label)}</dt><dd>{e(pretty(str(entry['definition'])))}</dd>")
    if not rows:
        return ""
    return ("<table class='key-numbers'><thead><tr><th>quantity</th><th>measured</th><th>reference</th>"
            f"<th>verdict</th></tr></thead><tbody>{''.join(rows)}</tbody></table>" + "".join(details)
            + (f"<ul class='notes'>{''.join(notes)}</ul>" if notes else "")
            + (f"<details class='definitions'><summary>Definitions</summary><dl>{''.join(defs)}</dl></details>"
               if defs else ""))


def _section(target: str, info: dict, out: Path, scale: str, caption: str, table: str) -> str:
    from .experiments import registry
    from .figures import draw

    t = registry.get(target)
    png = out / "figures" / (t.figure + ".png")
    if not png.is_file() or png.stat().st_size == 0:
        draw(target, out, scale)  # from the stored data
    data = base64.b64encode(png.read_bytes()).decode()
    wall = info.get("wall_time_s")
    e = html.escape
    files = (f"Files: <a href='figures/{t.figure}.pdf'>PDF</a>, <a href='figures/{t.figure}.svg'>SVG</a>, "
             f"data <code>{e(info.get('data', ''))}</code>"
             + (f"; compute time {wall:.1f} s" if isinstance(wall, (int, float)) else ""))
    return (f"<section class='target' id='{e(target)}'><h2>{e(t.title or target)}</h2>"
            f"<figure><img alt='{e(t.title or target)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{e(pretty(caption))} <span class='files'>{files}</span></figcaption></figure>"
            f"{table}</section>")


_CSS = """
body { font-family: Georgia, serif; max-width: 60rem; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2.2em; }
nav ol { columns: 2; font-size: 0.95em; } figure { margin: 1em 0; }
figure img { width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #333; } .files { color: #666; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.8em 0; max-width: 100%; }
td, th { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; overflow-wrap: anywhere; }
table.key-numbers { width: 100%; } table.key-numbers code { color: #777; font-size: 0.85em; }
details { font-size: 0.88em; margin: 0.4em 0; } ul.notes { font-size: 0.88em; } dd { margin: 0 0 0.5em 1.5em; }
"""


def write_report(out: str | Path) -> Path:
    """Write ``out/report.html`` from ``out/summary.json`` and the stored figures/data: a table of
    contents, one section per target (its figure, caption and key numbers), then any key number
    of no reported target, then provenance."""
    from .experiments import registry

    out = Path(out)
    summary = check_folder(out)
    scale = summary.get("scale", "small")
    captions = _captions(summary)
    key_numbers = {k: v for k, v in summary.get("key_numbers", {}).items()}
    owner = summary.get("key_number_targets", {})
    shown = [t for t in summary.get("experiments", {}) if t in registry.TARGETS]
    e = html.escape
    sections, toc = [], []
    for target in shown:
        names = [n for n in key_numbers if owner.get(n) == target]
        table = _key_table(names, key_numbers)
        sections.append(_section(target, summary["experiments"][target], out, scale, captions.get(target, target), table))
        toc.append(f"<li><a href='#{e(target)}'>{e(registry.get(target).title or target)}</a></li>")
    rest = [n for n in key_numbers if owner.get(n) not in shown]
    if rest:
        sections.append(f"<section id='other'><h2>Other key numbers</h2>{_key_table(rest, key_numbers)}</section>")
        toc.append("<li><a href='#other'>Other key numbers</a></li>")
    toc.append("<li><a href='#provenance'>Provenance</a></li>")
    prov = summary.get("provenance", {})
    prov_rows = "".join(f"<tr><th>{e(str(k))}</th><td>{e(_num(v))}</td></tr>" for k, v in prov.items())
    wall = summary.get("wall_time_s_last_run")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>gdstab report ({e(scale)} scale)</title>
<style>{_CSS}</style></head>
<body>
<h1>gdstab: reproduction of “On the Convergence of Gradient Descent for Large Learning Rates”</h1>
<p>Crăciun &amp; Ghoshdastidar, arXiv 2402.13108. Scale <b>{e(scale)}</b>; generated by gdstab
{e(str(prov.get('gdstab', '')))} from <code>summary.json</code> and the data under <code>data/</code>.
{f'Wall time of the last run: {wall:.1f} s.' if isinstance(wall, (int, float)) else ''}
Each section shows a figure, its caption and its key numbers next to the paper's value or a closed form.</p>
<nav id="toc"><h2>Contents</h2><ol>{''.join(toc)}</ol></nav>
{''.join(sections)}
<section id="provenance"><h2>Provenance</h2><table>{prov_rows}</table></section>
</body></html>
"""
    from .sweep.folders import atomic_write

    path = out / "report.html"
    atomic_write(path, page)
    return path
