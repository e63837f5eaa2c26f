"""docs/benchmarks.md from the results: one table of every target's current figure, then a section per benchmark.

Each ``benchmarks/results/<benchmark>.json`` (written by the benchmark scripts through ``bench_common.Run``, or
converted from the old run log) gives the figures, the targets and where they were measured; each
``benchmarks/notes/<benchmark>.md`` holds that benchmark's short prose (no figures: the tables carry them).

    .venv/bin/python benchmarks/report.py            # rewrite docs/benchmarks.md
    .venv/bin/python benchmarks/report.py --check    # exit 1 if docs/benchmarks.md differs from the results
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_common import REPO, RESULTS, validate

NOTES = REPO / "benchmarks" / "notes"
DOC = REPO / "docs" / "benchmarks.md"
ORDER = ("cost_matrix", "css_scaling", "text_embedding", "clipseg_encode_once", "s2c2seg_overhead",
         "corrclip_overhead", "sweep_cost", "released_sources", "large_vocab", "released_downstream",
         "released_overhead", "sweep_cost_released", "efficiency_suite")
"""Section order; a result not listed here comes after these, by name."""
OP_TEXT = {"<=": "≤", ">=": "≥", "==": "="}
RUN = "HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python"
"""How the doc spells a benchmark's command (repository root, project environment)."""


def load_results(directory: Path = RESULTS) -> list[dict]:
    """Every ``*.json`` result in ``directory`` (not its subfolders), validated, in :data:`ORDER`."""
    results = []
    for path in sorted(Path(directory).glob("*.json")):
        result = json.loads(path.read_text())
        validate(result, str(path))
        results.append(result)
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(results, key=lambda r: (rank.get(r["benchmark"], len(ORDER)), r["benchmark"]))


def _value(fig: dict) -> str:
    return "—" if fig is None or fig["value"] is None else f"{fig['value']}{(' ' + fig['unit']) if fig['unit'] else ''}"


def _revision(r: dict) -> str:
    rev = r["revision"]
    if rev.get("commit") is None:
        return "not recorded"
    return f"`{rev['commit'][:7]}`" + (" (dirty tree)" if rev.get("dirty") else "")


def _machine(r: dict) -> str:
    m = r["machine"]
    if m.get("cpu") is None:
        return m.get("stated") or "not recorded"
    parts = [m["cpu"], f"{m['cores']} cores" if m.get("cores") else None,
             f"{m['ram_gb']} GiB" if m.get("ram_gb") else None, f"torch {m['torch']}" if m.get("torch") else None,
             m.get("device"), f"{m['torch_threads']} threads" if m.get("torch_threads") else None]
    return ", ".join(p for p in parts if p)


def _load(r: dict) -> str:
    load = r["load"]
    if load.get("before") is not None and load.get("after") is not None:
        return f"{load['before'][0]} → {load['after'][0]}"
    return load.get("stated") or "not recorded"


def _date(r: dict) -> str:
    if r.get("date"):
        return r["date"]
    rec = r.get("recorded_in") or {}
    return f"not stated (written into the doc {rec['date']})" if rec.get("date") else "not recorded"


def _command(r: dict) -> str:
    return f"`{r['command']}`" if r.get("command") else "—"


def target_rows(results: list[dict]) -> list[str]:
    rows = ["A verdict marked _(old log)_ comes from a run converted from the old run log, at an older revision: "
            "rerun its command to measure the code as it is.", "",
            "| benchmark | target | figure | pass | revision | machine | load (1 min) | date | command |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for t in r["targets"]:
            fig = r["figures"].get(t["figure"])
            unit = fig["unit"] if fig else ""
            issue = f" (issue {t['issue']})" if t.get("issue") else ""
            verdict = {True: "**pass**", False: "**FAIL**", None: "—"}[t["pass"]] + (" (old log)" if r.get("source")
                                                                                else "")
            rows.append(f"| [{r['benchmark']}](#{r['benchmark']}) | {t['figure']} "
                        f"{OP_TEXT[t['op']]} {t['threshold']}{(' ' + unit) if unit else ''}{issue} | {_value(fig)} | "
                        f"{verdict} | {_revision(r)} | {_machine(r)} | {_load(r)} | {_date(r)} | {_command(r)} |")
    return rows


def section(r: dict) -> list[str]:
    out = [f"## {r['benchmark']}", "", f"**{r['title']}** — {r['label']}.", ""]
    if r.get("source"):
        rec = r.get("recorded_in") or {}
        out += [f"_Converted from {r['source']}_ (the run's figures were written into it by commit "
                f"`{rec.get('commit')}`, {rec.get('date')}); what the old doc did not state is null in "
                f"`benchmarks/results/{r['benchmark']}.json`." + (f" {r['note']}" if r.get("note") else ""), ""]
    elif r.get("note"):
        out += [r["note"], ""]
    out += ["Reproduce (repository root):", "", "```", f"{RUN} {r['command']}", "```", "",
            f"Run: revision {_revision(r)}; {_machine(r)}; load {_load(r)}; {_date(r)}; mode {r['mode']}.", ""]
    tables = (r.get("data") or {}).get("tables")
    if tables:  # a result that states its own tables (every figure is in them)
        for title, table in tables.items():
            out += [f"{title}:", "", "| " + " | ".join(table["columns"]) + " |",
                    "|" + "---|" * len(table["columns"])]
            out += ["| " + " | ".join(str(v) for v in row) + " |" for row in table["rows"]] + [""]
    else:
        out += ["| figure | value |", "|---|---|"]
        out += [f"| {name} | {_value(fig)} |" for name, fig in r["figures"].items()] + [""]
    return out + _notes(r["benchmark"])


def _notes(name: str) -> list[str]:
    notes = NOTES / f"{name}.md"
    return [notes.read_text().strip(), ""] if notes.exists() else []


def pending(name: str) -> list[str]:
    """The section of a benchmark with notes but no committed result yet."""
    return [f"## {name}", "", f"_No result committed yet._ Run `{RUN} benchmarks/{name}.py` (it writes "
            f"`benchmarks/results/{name}.json`), then `python benchmarks/report.py`.", "", *_notes(name)]


def render(results: list[dict]) -> str:
    """The whole of docs/benchmarks.md for ``results``."""
    intro = (NOTES / "_intro.md").read_text().strip()
    lines = ["# Benchmarks", "",
             "<!-- Generated by `python benchmarks/report.py` from benchmarks/results/*.json and "
             "benchmarks/notes/*.md: edit those, then rerun it (tests/test_benchmark_report.py checks). -->", "",
             intro, "", "## Targets", "", *target_rows(results), ""]
    done = {r["benchmark"] for r in results}
    for name in ORDER:
        if name not in done and (NOTES / f"{name}.md").exists():
            lines += pending(name)
        lines += [line for r in results if r["benchmark"] == name for line in section(r)]
    for r in results:
        if r["benchmark"] not in ORDER:
            lines += section(r)
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSON results")
    ap.add_argument("--out", type=Path, default=DOC, help="the Markdown file to write (or --check)")
    ap.add_argument("--check", action="store_true", help="only compare: exit 1 if --out differs")
    args = ap.parse_args(argv)
    text = render(load_results(args.results))
    if args.check:
        same = args.out.exists() and args.out.read_text() == text
        if not same:
            print(f"report: error: {args.out} differs from {args.results}; run `python benchmarks/report.py`",
                  file=sys.stderr)
        return 0 if same else 1
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
