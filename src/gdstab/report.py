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

__all__ = ["write_report", "check_folder", "machine_info", "ReportError"]


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


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return html.escape(str(v))
    if isinstance(v, float):
        return f"{v:.10g}"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, dict):
        inner = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(x)}</td></tr>" for k, x in v.items())
        return f"<table class='inner'>{inner}</table>"
    return html.escape(str(v))


def _verdict(entry: dict) -> str:
    paper = entry.get("paper")
    if "note" in entry:
        return html.escape(entry["note"])
    if paper is None:
        return "no value in the paper"
    v = entry.get("value")
    if isinstance(paper, (int, float)) and isinstance(v, (int, float)):
        if abs(v - paper) <= 1e-6 * max(1.0, abs(paper)):
            return "reproduced"
        return f"not reproduced: measured {v:.6g} vs paper {paper:g}"
    return ""


def write_report(out: str | Path) -> Path:
    """Write ``out/report.html`` from ``out/summary.json`` and the stored figures/data."""
    from .experiments import registry
    from .figures import draw

    out = Path(out)
    summary = check_folder(out)
    scale = summary.get("scale", "small")
    captions = _captions(summary)
    parts = []
    for target, info in summary.get("experiments", {}).items():
        if target not in registry.TARGETS:
            continue
        stem = registry.get(target).figure
        png = out / "figures" / (stem + ".png")
        if not png.is_file() or png.stat().st_size == 0:
            draw(target, out, scale)  # from the stored data
        data = base64.b64encode(png.read_bytes()).decode()
        wall = info.get("wall_time_s")
        parts.append(
            f"<figure id='{target}'><img alt='{target}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(captions.get(target, target))} "
            f"<span class='files'>Files: <a href='figures/{stem}.pdf'>PDF</a>, <a href='figures/{stem}.svg'>SVG</a>, "
            f"data <code>{html.escape(info.get('data', ''))}</code>"
            + (f"; compute time {wall:.1f} s" if isinstance(wall, (int, float)) else "")
            + "</span></figcaption></figure>"
        )
    rows = []
    for name, entry in summary.get("key_numbers", {}).items():
        if not isinstance(entry, dict):
            continue
        extra = {k: entry[k] for k in ("closed_form", "stderr") if k in entry}
        value = _fmt(entry.get("value"))
        if extra:
            value += "<br><small>" + ", ".join(f"{k}: {_fmt(v)}" for k, v in extra.items()) + "</small>"
        rows.append(
            f"<tr><td><code>{html.escape(name)}</code></td><td>{value}</td>"
            f"<td>{_fmt(entry.get('paper', '—'))}</td><td>{_verdict(entry)}</td>"
            f"<td class='def'>{html.escape(str(entry.get('definition', '')))}</td></tr>"
        )
    prov = summary.get("provenance", {})
    prov_rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>" for k, v in prov.items())
    wall = summary.get("wall_time_s_last_run")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>gdstab report ({html.escape(scale)} scale)</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
figure {{ margin: 2em 0; }} figure img {{ max-width: 100%; border: 1px solid #ddd; }}
figcaption {{ font-size: 0.9em; color: #333; }} .files {{ color: #666; }}
table {{ border-collapse: collapse; font-size: 0.85em; }} td, th {{ border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; }}
table.inner td {{ border: none; padding: 0 6px 0 0; }} td.def {{ max-width: 420px; }}
</style></head>
<body>
<h1>gdstab: reproduction of "On the Convergence of Gradient Descent for Large Learning Rates"</h1>
<p>Scale <b>{html.escape(scale)}</b>; generated by gdstab {html.escape(str(prov.get('gdstab', '')))} from
<code>summary.json</code> and the data under <code>data/</code>.
{f'Wall time of the last run: {wall:.1f} s.' if isinstance(wall, (int, float)) else ''}</p>
<h2>Key numbers</h2>
<table id="key-numbers"><thead><tr><th>quantity</th><th>measured</th><th>paper</th><th>comparison</th><th>definition</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<h2>Figures</h2>
{''.join(parts)}
<h2>Provenance</h2>
<table id="provenance">{prov_rows}</table>
</body></html>
"""
    from .sweep.folders import atomic_write

    path = out / "report.html"
    atomic_write(path, page)
    return path
