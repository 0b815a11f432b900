"""The index page of a reproduction, ``index.html``, read top to bottom: a banner naming the
profile (and, unless the test sets are the paper's, that the numbers check the pipeline and are
not comparable to the paper's), a table of contents, then per notebook its executed copy
(HTML and ``.ipynb``), its notices (substitutions: weights used, replaced or skipped), its
tables with their "about these numbers" notes and its figures; settings and library versions
last.

:func:`write_index` (the end of ``ufd reproduce``) records the run's title, settings and
versions in ``index.json`` and renders the executed notebooks to HTML; :func:`refresh_index`
(called whenever an artefact is saved) rebuilds the page from ``artifacts.jsonl`` and
``index.json`` alone, in milliseconds.
"""
from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from itertools import groupby
from pathlib import Path

import pandas as pd

from ufd_lib.atomic_files import atomic_write_text
from ufd_lib.report.artifact_log import read_artifacts
from ufd_lib.report.table_format import display_table

INDEX_SETTINGS = "index.json"
# The encoder the notebooks loaded (name, sha256, path, papers_encoder), for the banner.
ENCODER_RECORD = "encoder.json"
SAMPLING_WORDS = {"official": "official: the released evaluation's selection (seed 0, at most 1000 images a class, "
                              "100 when a class has fewer), as behind the paper's Tables 2–3",
                  "all": "all: every image of each test set (not the released evaluation's capped selection)"}
STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}"
    "table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;border-bottom:1px solid #ddd;"
    "text-align:right}th{background:#f4f4f4}figure{margin:1.5em 0}figcaption{color:#444;font-size:14px}"
    ".banner{padding:.8em 1em;border-radius:4px;margin:1em 0}.pipeline{background:#fff3cd;border:1px solid #e0c060}"
    ".paper{background:#e7f3ea;border:1px solid #8cc39a}.failed{background:#f8d7da;border:1px solid #d9828b}"
    ".unknown{background:#eee;border:1px solid #bbb}"
    ".notices{background:#f3f0fa;border-left:4px solid #8a6fc1;padding:.4em 1em}"
    ".note{color:#333;font-size:14px;background:#f7f7f7;padding:.4em .8em}.keys th,.keys td{text-align:left}"
)


def write_index(output_dir: Path, title: str, settings: dict, versions: dict, run: dict | None = None) -> Path:
    """Record the run (title, settings, versions) for later refreshes, render each executed
    notebook in ``notebooks/`` to HTML beside it (when the HTML is missing or older), and write
    ``index.html``. settings: ``profile`` and ``description`` feed the banner;
    ``compare_with_paper`` (default: profile ``paper``) says whether the numbers are comparable.
    run: how the run went (:func:`record_run`)."""
    output_dir = Path(output_dir)
    record_run(output_dir, title, settings, versions, run)
    _render_notebooks(output_dir / "notebooks")
    return refresh_index(output_dir)


def record_run(output_dir: Path, title: str, settings: dict, versions: dict, run: dict | None = None) -> None:
    """Write ``index.json``, what every refresh of the page reads. run (optional): ``status``
    (``running``, ``finished`` or ``failed``), ``started`` and ``finished`` (ISO 8601 UTC),
    ``planned`` (the notebooks, in order), ``seconds`` ({notebook: its duration}), when it
    failed, ``failure`` ({``notebook``, ``cell``, ``error``}), and ``rerun_on_its_own``
    ({notebook: when}) for notebooks run by hand after it."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / INDEX_SETTINGS, json.dumps(
        {"title": title, "settings": settings, "versions": versions, "run": run or {}}, indent=2, default=str) + "\n")


def recorded_run(output_dir: Path) -> dict:
    """What ``index.json`` records (title, settings, versions, run); empty when there is none."""
    recorded = Path(output_dir) / INDEX_SETTINGS
    return json.loads(recorded.read_text()) if recorded.exists() else {}


def record_encoder(output_dir: Path, record: dict) -> None:
    """Write ``encoder.json`` (``name``, ``sha256``, ``path``, ``papers_encoder``: whether it is
    OpenAI's ViT-L/14 file) for the banner of the index page."""
    atomic_write_text(Path(output_dir) / ENCODER_RECORD, json.dumps(record, indent=2) + "\n")


def refresh_index(output_dir: Path) -> Path:
    """Rewrite ``index.html`` from ``artifacts.jsonl`` and ``index.json`` (reads no notebook)."""
    output_dir = Path(output_dir)
    recorded = recorded_run(output_dir)
    title = recorded.get("title", f"UnivFD replication — {output_dir.name}")
    settings, versions = recorded.get("settings", {}), recorded.get("versions", {})
    run = recorded.get("run", {})
    by_notebook = [(name, list(entries)) for name, entries in
                   groupby(sorted(read_artifacts(output_dir), key=lambda e: e["notebook"]),
                           key=lambda e: e["notebook"])]
    encoder_file = output_dir / ENCODER_RECORD
    encoder = json.loads(encoder_file.read_text()) if encoder_file.exists() else None
    parts = [f"<h1>{html.escape(title)}</h1>", _banner(settings, encoder), run_status(run),
             f"<p>Page written {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}.</p>",
             _contents(by_notebook)]
    for notebook, entries in by_notebook:
        parts.append(_notebook_section(output_dir, notebook, entries, run.get("seconds", {}).get(notebook)))
    parts += ['<h2 id="settings">Settings</h2>', _key_values(settings),
              '<h2 id="versions">Versions</h2>', _key_values(versions)]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    path = output_dir / "index.html"
    atomic_write_text(path, page)
    return path


def _render_notebooks(folder: Path) -> None:
    if not folder.is_dir():
        return
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    for notebook in sorted(folder.glob("*.ipynb")):
        target = notebook.with_suffix(".html")
        if target.exists() and target.stat().st_mtime >= notebook.stat().st_mtime:
            continue
        body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
        atomic_write_text(target, body)


def _encoder_words(encoder: dict | None) -> str:
    """The banner's sentence on the encoder the notebooks actually loaded."""
    if encoder is None:
        return "Encoder: not recorded (no notebook loaded one). "
    which = ("OpenAI's published CLIP ViT-L/14 file, the paper's backbone" if encoder.get("papers_encoder")
             else "NOT OpenAI's CLIP ViT-L/14 file")
    name, identity = html.escape(str(encoder.get("name"))), html.escape(str(encoder.get("sha256")))
    if not encoder.get("path"):
        return (f"Encoder used: <code>{name}</code>: RANDOM weights, no weights file (id <code>{identity}</code>), "
                f"{which}. ")
    return (f"Encoder used: <code>{name}</code> (SHA-256 <code>{identity}</code>, file "
            f"{html.escape(str(encoder['path']))}): {which}. ")


def _banner(settings: dict, encoder: dict | None = None) -> str:
    profile = settings.get("profile")
    if profile is None:
        return ('<div class="banner unknown"><strong>Profile not recorded.</strong> This page was refreshed by a '
                "notebook run on its own; <code>ufd reproduce</code> records the profile and its settings.</div>")
    description = html.escape(str(settings.get("description", "")))
    sampling = settings.get("sampling")
    facts = _encoder_words(encoder) + (
        f"Sampling of the test sets: {html.escape(SAMPLING_WORDS.get(sampling, str(sampling)))}. " if sampling else "")
    if settings.get("compare_with_paper", profile == "paper"):
        if encoder is not None and encoder.get("papers_encoder"):
            return (f'<div class="banner paper"><strong>Profile {html.escape(str(profile))}.</strong> {description} '
                    f"{facts}The tables set these numbers beside the paper's where the paper reports them.</div>")
        return (f'<div class="banner pipeline"><strong>Profile {html.escape(str(profile))}: not comparable with the '
                f"paper.</strong> {description} {facts}The paper's numbers come from OpenAI's CLIP ViT-L/14; with "
                "another (or an unrecorded) encoder the comparison tables show ours beside the paper's without a "
                "difference.</div>")
    return (f'<div class="banner pipeline"><strong>Profile {html.escape(str(profile))}: a pipeline check.</strong> '
            f"Its numbers are not comparable to the paper's. {description} {facts}For numbers to set beside the "
            "paper's, run <code>ufd reproduce --profile paper</code> on the real data.</div>")


def run_status(run: dict) -> str:
    """How the run went, as a block under the banner: still running, finished (when, how long) or
    failed (which notebook stopped, in which cell and why, a link to its executed copy, and which
    notebooks finished before it or never ran), then the notebooks run again on their own since;
    empty when nothing is recorded."""
    if run.get("status") is None:
        return ""
    reruns = run.get("rerun_on_its_own", {})
    rerun = (f"<p><strong>Run again on its own after this run:</strong> "
             f"{html.escape(', '.join(f'{name} ({when})' for name, when in reruns.items()))}; the tables, figures "
             "and notices of those notebooks come from that later run.</p>") if reruns else ""
    return _run_outcome(run) + rerun


def _run_outcome(run: dict) -> str:
    status = run.get("status")
    planned, seconds = run.get("planned", []), run.get("seconds", {})
    when = f"started {html.escape(str(run.get('started', '?')))}"
    if status == "running":
        return (f'<div class="banner unknown"><strong>This run is in progress</strong> ({when}): '
                f"{len(seconds)} of {len(planned)} notebooks finished so far.</div>")
    if status == "finished":
        each = ", ".join(f"{name} {duration:.0f} s" for name, duration in seconds.items())
        return (f"<p>Run {when}, finished {html.escape(str(run.get('finished', '?')))}: {len(seconds)} "
                f"notebook(s) in {sum(seconds.values()):.0f} s ({html.escape(each)}).</p>")
    failure = run.get("failure", {})
    stopped = failure.get("notebook")
    error = html.escape(str(failure.get("error", "")))
    if stopped is None:
        what = f"It stopped before its first notebook: {error}."
    else:
        link = html.escape(stopped, quote=True)
        cell = f" in cell {html.escape(str(failure['cell']))}" if failure.get("cell") is not None else ""
        what = (f"Notebook {html.escape(stopped)} stopped{cell}: {error} "
                f'(<a href="notebooks/{link}.html">executed notebook</a>, '
                f'<a href="notebooks/{link}.ipynb">.ipynb</a>).')
    finished = [name for name in planned if name in seconds]
    never = [name for name in planned if name not in seconds and name != stopped]
    return (f'<div class="banner failed"><strong>This run failed.</strong> {what} '
            f"Finished before it: {html.escape(', '.join(finished) or 'none')}; their tables and figures are below. "
            f"Not run: {html.escape(', '.join(never) or 'none')}. Run {when}, stopped "
            f"{html.escape(str(run.get('finished', '?')))}.</div>")


def _anchor(*parts: str) -> str:
    return html.escape("-".join(parts).replace(" ", "-"), quote=True)


def _contents(by_notebook: list[tuple[str, list[dict]]]) -> str:
    items = []
    for notebook, entries in by_notebook:
        shown = "".join(f'<li><a href="#{_anchor(notebook, e["name"])}">{html.escape(e["caption"])}</a></li>'
                        for e in entries if e["kind"] in ("table", "figure"))
        items.append(f'<li><a href="#{_anchor(notebook)}">{html.escape(notebook)}</a>'
                     + (f"<ul>{shown}</ul>" if shown else "") + "</li>")
    items += ['<li><a href="#settings">Settings</a></li>', '<li><a href="#versions">Versions</a></li>']
    return f"<nav><h2>Contents</h2><ol>{''.join(items)}</ol></nav>"


def _notebook_section(output_dir: Path, notebook: str, entries: list[dict], seconds: float | None = None) -> str:
    name = html.escape(notebook)
    links = [f'<a href="notebooks/{name}.{suffix}">{label}</a>'
             for suffix, label in (("html", "executed notebook"), ("ipynb", ".ipynb"))
             if (output_dir / "notebooks" / f"{notebook}.{suffix}").exists()]
    if links and seconds is not None:
        links.append(f"ran in {seconds:.0f} s")
    parts = [f'<h2 id="{_anchor(notebook)}">{name}</h2>',
             f"<p>{' · '.join(links)}</p>" if links else "<p><em>No executed copy of this notebook here.</em></p>"]
    notices = [e["text"] for e in entries if e["kind"] == "notice"]
    if notices:
        parts.append('<div class="notices"><strong>Notices</strong><ul>'
                     + "".join(f"<li>{html.escape(text)}</li>" for text in notices) + "</ul></div>")
    for entry in entries:
        if entry["kind"] in ("table", "figure"):
            parts.append(_artifact(output_dir, notebook, entry))
    return "".join(parts)


def _artifact(output_dir: Path, notebook: str, entry: dict) -> str:
    caption, name = html.escape(entry["caption"]), html.escape(entry["name"])
    anchor = _anchor(notebook, entry["name"])
    folder, suffix = ("figures", ".png") if entry["kind"] == "figure" else ("tables", ".csv")
    if not (output_dir / folder / f"{entry['name']}{suffix}").exists():
        return (f'<p id="{anchor}"><em>{caption}: {folder}/{name}{suffix} is missing; rerun '
                f"<code>ufd reproduce --only {html.escape(notebook)}</code>.</em></p>")
    if entry["kind"] == "figure":
        return (f'<figure id="{anchor}"><img src="figures/{name}.png" alt="{caption}" style="max-width:100%">'
                f'<figcaption>{caption} (<a href="figures/{name}.pdf">PDF</a>)</figcaption></figure>')
    index = entry.get("index", True)
    table = pd.read_csv(output_dir / "tables" / f"{entry['name']}.csv", index_col=0 if index else None,
                        keep_default_na=False, na_values=[""])
    note = f'<p class="note"><strong>About these numbers:</strong> {html.escape(entry["note"])}</p>' \
        if entry.get("note") else ""
    return (f'<h3 id="{anchor}">{caption}</h3>'
            + display_table(table).to_html(border=0, index=index, na_rep="")
            + note + f'<p><a href="tables/{name}.csv">CSV</a> · <a href="tables/{name}.md">Markdown</a></p>')


def _key_values(values: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in values.items())
    return f'<table class="keys">{rows}</table>'
