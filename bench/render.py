"""``python -m bench.render docs/bench/results.json``: redo the Markdown, plots and verdicts.

Why: a full run takes many minutes; how its figures are judged and shown should be fixable
without measuring again. Reads the JSON, recomputes ratios and aims, rewrites the JSON's
verdicts, the Markdown next to it and (for several N) the plots.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import report
from .analysis import terminal_count
from .verdicts import aims

TITLES = {
    "quick": "Benchmark (quick: N=100)",
    "full": "Benchmark: four ways to wait for an OpenAI run",
    "webhooks": "Webhooks vs polling: 200 runs each (issue 5)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path)
    args = parser.parse_args(argv)
    from .__main__ import cap_for, ratios  # the same ratios and caps the run uses

    results = json.loads(args.results.read_text())
    for s in results["scenarios"]:  # recount with the current definition of "terminal"
        s["terminal"] = terminal_count(s["statuses"])
        s.setdefault("cap_s", cap_for(s["n"], s["longest_run_s"], None))
        s["finished"] = s["finished"] and s["terminal"] == s["n"]
    results["ratios"] = ratios(results["scenarios"])
    results["aims"] = aims(results)
    plots: list[str] = []
    if len({s["n"] for s in results["scenarios"]}) > 1:
        from . import plots as plotting

        plots = plotting.write(args.results.parent, results["scenarios"])
    report.write_json(args.results, results)
    report.write_markdown(
        args.results.with_suffix(".md"), results, TITLES.get(results["mode"], "Benchmark"), plots
    )
    print(f"rewrote {args.results} and {args.results.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
