"""The HTML report of a run: one self-contained file (inline CSS and SVG, no scripts, nothing
fetched), written next to the run's logs.

It shows the validation score per step (a plot), every step accepted or rolled back and why, and
for each step that changed the agent: the diff of every changed prompt field, tool text and
demonstration set, the workflow graph before and after (drawn), the gradients that led to it, and
the scores before and after.
"""

from __future__ import annotations

import difflib
import html
import json
from importlib import resources
from pathlib import Path

from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from localsym.agent.spec import PipelineSpec
from localsym.agent.weights import PROMPT_FIELDS
from localsym.errors import ConfigError, LocalsymError
from localsym.files import atomic_write_text
from localsym.learn.checkpoint import RunDirectory
from localsym.learn.edits import edit_text, glued
from localsym.learn.edits.tools import source_text
from localsym.learn.search import FrontPoint
from localsym.learn.events import StartEvent, StepEvent, StoppedEvent


def word_diff(old: str, new: str) -> Markup:
    """old -> new as HTML with <del> and <ins>, word by word."""
    a, b = old.split(" "), new.split(" ")
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(html.escape(" ".join(a[i1:i2])))
        if op in ("delete", "replace"):
            out.append(f"<del>{html.escape(' '.join(a[i1:i2]))}</del>")
        if op in ("insert", "replace"):
            out.append(f"<ins>{html.escape(' '.join(b[j1:j2]))}</ins>")
    return Markup(" ".join(out))


def spec_diffs(before: PipelineSpec, after: PipelineSpec) -> list[dict]:
    """Every changed trainable text between two specs: {target, diff}."""
    rows = []
    old_nodes = {n.name: n for n in before.nodes}
    for node in after.nodes:
        old = old_nodes.get(node.name)
        if old is None:
            rows.append({"target": f"node {node.name} (new)",
                         "diff": word_diff("", node.prompt.task or "(no task text)")})
            continue
        for f in PROMPT_FIELDS:
            a, b = getattr(old.prompt, f), getattr(node.prompt, f)
            if a != b:
                rows.append({"target": f"{node.name}.prompt.{f}", "diff": word_diff(a, b)})
        if old.tools != node.tools:
            rows.append({"target": f"{node.name}.tools",
                         "diff": word_diff(", ".join(old.tools), ", ".join(node.tools))})
        structure = {"tool_choice": lambda n: n.tool_choice,
                     "bind": lambda n: "; ".join(f"{o} = {source_text(n.bind[o])}"
                                                 for o in sorted(n.bind)),
                     "arg_from": lambda n: "; ".join(
                         f"{k} = {glued(*v)}" for k, v in sorted(n.wiring().items())),
                     "output patterns": lambda n: json.dumps(
                         {f.name: f.pattern for f in n.outputs if f.pattern}, sort_keys=True),
                     "test-time compute": lambda n: json.dumps(n.model_dump(
                         mode="json", include={"reasoning", "vote", "check"}), sort_keys=True)}
        for what, value in structure.items():
            if value(old) != value(node):
                rows.append({"target": f"{node.name}.{what}",
                             "diff": word_diff(value(old), value(node))})
        if old.program != node.program:
            rows.append({"target": f"{node.name}.program", "diff": program_diff(old, node)})
        if old.demonstrations != node.demonstrations:
            fmt = lambda demos: " | ".join(json.dumps(d.model_dump()) for d in demos)  # noqa: E731
            rows.append({"target": f"{node.name}.demonstrations",
                         "diff": word_diff(fmt(old.demonstrations), fmt(node.demonstrations))})
    for name in old_nodes.keys() - {n.name for n in after.nodes}:
        rows.append({"target": f"node {name} (removed)", "diff": word_diff(name, "")})
    old_tools = {t.name: t for t in before.tools}
    for tool in after.tools:
        was = old_tools.get(tool.name)
        for f in ("description", "usage_notes"):
            if was is not None and getattr(was, f) != getattr(tool, f):
                rows.append({"target": f"tool {tool.name}.{f}",
                             "diff": word_diff(getattr(was, f), getattr(tool, f))})
        if was is not None and was.patterns != tool.patterns:
            rows.append({"target": f"tool {tool.name}.patterns",
                         "diff": word_diff(json.dumps(was.patterns, sort_keys=True),
                                           json.dumps(tool.patterns, sort_keys=True))})
    return rows


def program_diff(old, new) -> Markup:
    """A node's program before and after, a line an output (as it is written: ``answer =
    tool(argument=input | glue)``), then its guard."""
    def lines(node) -> list[str]:
        return node.program.lines() if node.program is not None else []
    before, after = lines(old), lines(new)
    out = [f"<del>{html.escape(x)}</del>" for x in before if x not in after] + \
        [f"<ins>{html.escape(x)}</ins>" if x not in before else html.escape(x) for x in after]
    return Markup('<span class="program">' + "<br>".join(out) + "</span>")


def graph_svg(spec: PipelineSpec) -> Markup:
    """The workflow drawn left to right: nodes in breadth-first order from the start, edges as
    arrows (a back edge arcs above)."""
    order, seen = [], set()
    queue = [spec.start_node]
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        order.append(name)
        queue += [e.target for e in spec.successors(name)]
    order += [n.name for n in spec.nodes if n.name not in seen]
    w, h, gap = 130, 40, 50
    x = {name: 10 + i * (w + gap) for i, name in enumerate(order)}
    width = 20 + len(order) * (w + gap)
    back = any(x[e.target] <= x[e.source] for e in spec.effective_edges())
    y = 70 if back else 10  # room above for the arcs of back edges
    height = y + h + 10
    parts = [f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}"><defs><marker id="arrow" '
             'markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
             '<path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>']
    for e in spec.effective_edges():
        x1, x2 = x[e.source], x[e.target]
        if x2 > x1:
            parts.append(f'<line x1="{x1 + w}" y1="{y + h / 2}" x2="{x2 - 2}" y2="{y + h / 2}" '
                         'stroke="#555" marker-end="url(#arrow)"/>')
        else:
            mid = (x1 + x2 + w) / 2
            parts.append(f'<path d="M{x1 + w / 2},{y} Q{mid},{y - 70} {x2 + w / 2},{y - 2}" '
                         'fill="none" stroke="#a55" marker-end="url(#arrow)"/>')
    for name in order:
        node = spec.node(name)
        label = html.escape(name if len(name) <= 16 else name[:15] + "…")
        plural = "s" if len(node.tools) != 1 else ""
        tools = f" [{len(node.tools)} tool{plural}]" if node.tools else ""
        parts.append(f'<g><title>{html.escape(name)}: {html.escape(node.prompt.task)}</title>'
                     f'<rect x="{x[name]}" y="{y}" width="{w}" height="{h}" rx="6" fill="#eef3ff" '
                     f'stroke="#447"/><text x="{x[name] + w / 2}" y="{y + 25}" '
                     f'text-anchor="middle" font-size="13">{label}{html.escape(tools)}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def score_plot(points: list[dict]) -> Markup:
    """Validation score per step: the kept score as a line, each candidate as a dot (green
    accepted, red rolled back, grey no change)."""
    w, h, pad = 640, 240, 40
    n = max(len(points) - 1, 1)
    sx = lambda i: pad + i * (w - 2 * pad) / n  # noqa: E731
    sy = lambda v: h - pad - v * (h - 2 * pad)  # noqa: E731
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    points = [{**p, "kept": p["kept"] if num(p["kept"]) else None,
               "candidate": p["candidate"] if num(p["candidate"]) else None,
               "decision": str(p["decision"])} for p in points]
    kept = " ".join(f"{sx(i):.1f},{sy(p['kept']):.1f}" for i, p in enumerate(points)
                    if p["kept"] is not None)
    parts = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'viewBox="0 0 {w} {h}">',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#999"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#999"/>']
    for v in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{pad - 6}" y="{sy(v) + 4:.1f}" text-anchor="end" '
                     f'font-size="11">{v:.1f}</text>')
    for i, p in enumerate(points):
        parts.append(f'<text x="{sx(i):.1f}" y="{h - pad + 16}" text-anchor="middle" '
                     f'font-size="11">{html.escape(str(p["step"]))}</text>')
    parts.append(f'<polyline class="kept" points="{kept}" fill="none" stroke="#336" '
                 'stroke-width="2"/>')
    colors = {"accepted": "#2a2", "rolled back": "#c33", "no change": "#999", "start": "#336"}
    for i, p in enumerate(points):
        if p["candidate"] is None:
            continue
        decision = html.escape(p["decision"], quote=True)
        parts.append(f'<circle class="candidate {decision.replace(" ", "-")}" '
                     f'cx="{sx(i):.1f}" cy="{sy(p["candidate"]):.1f}" r="5" '
                     f'fill="{colors.get(p["decision"], "#999")}"><title>step '
                     f'{html.escape(str(p["step"]))}: {decision}, {p["candidate"]:.3f}'
                     '</title></circle>')
    parts.append(f'<text x="{w / 2}" y="{h - 6}" text-anchor="middle" font-size="12">step</text>'
                 '</svg>')
    return Markup("".join(parts))


def cost_plot(steps: list[StepEvent], start: float, start_calls: float | None) -> Markup:
    """Validation score against cost (model calls per example) of every validated candidate,
    by step (the label) and decision (the colour); the untrained agent as the square."""
    dots: list[tuple[float, float, int, str]] = [
        (c.calls, c.val, e.step, c.decision) for e in steps for c in e.candidates
        if isinstance(c.calls, (int, float)) and isinstance(c.val, (int, float))]
    if start_calls is not None:
        dots.insert(0, (start_calls, start, 0, "start"))
    if not dots:
        return Markup("")
    w, h, pad = 640, 240, 40
    top = max(max(d[0] for d in dots), 1.0)
    sx = lambda v: pad + v / top * (w - 2 * pad)  # noqa: E731
    sy = lambda v: h - pad - v * (h - 2 * pad)  # noqa: E731
    colors = {"accepted": "#2a2", "rejected": "#c33", "start": "#336"}
    parts = [f'<svg class="plot cost" xmlns="http://www.w3.org/2000/svg" width="{w}" '
             f'height="{h}" viewBox="0 0 {w} {h}">',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#999"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#999"/>',
             f'<text x="{w / 2}" y="{h - 6}" text-anchor="middle" font-size="12">model calls '
             f'per example (0 to {top:g})</text>']
    for calls, val, step, decision in dots:
        shape = "rect" if decision == "start" else "circle"
        at = (f'x="{sx(calls) - 4:.1f}" y="{sy(val) - 4:.1f}" width="8" height="8"'
              if shape == "rect" else f'cx="{sx(calls):.1f}" cy="{sy(val):.1f}" r="5"')
        parts.append(f'<{shape} {at} fill="{colors.get(decision, "#999")}"><title>step {step}: '
                     f'{html.escape(decision)}, {val:.3f} at {calls:g} calls</title></{shape}>')
    return Markup("".join(parts) + "</svg>")


def _front(raw) -> list:
    """The summary's (score, cost) front as the page shows it; a damaged one is left out."""
    try:
        return [FrontPoint.model_validate(p) for p in raw] if isinstance(raw, list) else []
    except ValueError:
        return []


def _shape(spec: PipelineSpec) -> tuple:
    """What the workflow drawing shows: nodes, edges, tools per node."""
    return ([(n.name, n.tools) for n in spec.nodes],
            [(e.source, e.target) for e in spec.effective_edges()])


def _spec_at(run: RunDirectory, step: int) -> PipelineSpec | None:
    path = run.spec_path(step)
    try:
        return PipelineSpec.load(path) if path.is_file() else None
    except LocalsymError:  # a damaged checkpoint: shown as missing
        return None


def _spec_or_none(data) -> PipelineSpec | None:
    try:
        return PipelineSpec.from_data(data) if data else None
    except LocalsymError:
        return None


def build_context(run_dir: Path) -> dict:
    run = RunDirectory(run_dir)
    if not run.events_path.is_file():
        raise ConfigError(f"{run_dir} has no events.jsonl", "pass the directory of a training run")
    events, unread = run.read()
    start = next((e for e in events if isinstance(e, StartEvent)), None)
    if start is None:
        raise ConfigError(f"{run.events_path} has no start event",
                          "the run never started; train it first")
    # a run can be left in any state (stopped by its budget, killed, a torn or hand-edited log):
    # the directory reads only the records that are events, and a missing number shows as a dash
    steps = [e for e in events if isinstance(e, StepEvent)]
    kept = start.val_score
    points = [{"step": 0, "kept": kept, "candidate": kept, "decision": "start"}]
    rows = []
    for e in steps:
        if e.decision == "accepted" and e.val_after is not None:
            kept = e.val_after
        points.append({"step": e.step, "kept": kept, "candidate": e.val_after,
                       "decision": e.decision})
        before = _spec_at(run, e.step - 1)
        after = _spec_or_none(e.proposed_spec)
        changed = before is not None and after is not None and _shape(before) != _shape(after)
        rows.append({**e.model_dump(mode="json"),
                     "diffs": spec_diffs(before, after) if before and after else [],
                     "graph_before": graph_svg(before) if changed and before else None,
                     "graph_after": graph_svg(after) if changed and after else None})
    summary_path = run.summary_path
    try:
        summary = json.loads(summary_path.read_text("utf-8")) if summary_path.is_file() else {}
    except (ValueError, OSError, RecursionError):
        summary = {}  # torn or unreadable: the page says so instead of failing
    summary = _summary(summary)
    first = _spec_at(run, 0)
    last = _spec_at(run, steps[-1].step) if steps else None
    best = run.best_spec_path
    return {"run_dir": str(run_dir), "summary": summary, "front": _front(summary.get("front")),
            "plot": score_plot(points),
            "cost_plot": cost_plot(steps, start.val_score, summary.get("start_calls")),
            "steps": rows, "start_score": start.val_score,
            "unread": unread,
            "stopped": events[-1] if isinstance(events[-1], StoppedEvent) else None,
            "graph_start": graph_svg(first) if first else None,
            "graph_final": graph_svg(last) if last else None,
            "graph_best": _graph_or_none(best)}


SUMMARY_KEYS = ("name", "steps", "accepted", "rolled_back", "val_after", "llm_calls",
                "wall_seconds")


def _summary(raw) -> dict:
    """summary.json as the page shows it; {} (the page then says there is none) where it is
    not one (edited, or written by something else)."""
    if not isinstance(raw, dict) or any(k not in raw for k in SUMMARY_KEYS):
        return {}
    calls = raw["llm_calls"]
    if not isinstance(calls, dict) or not all(
            isinstance(c, dict) and all(isinstance(c.get(k), int) for k in ("misses", "hits"))
            for c in calls.values()):
        return {}
    return raw


def _graph_or_none(path: Path) -> str | None:
    """The workflow graph of the spec in ``path``, or None where it is missing or not a spec."""
    spec = _spec_or_none(json.loads(path.read_text("utf-8"))) \
        if path.is_file() and _readable_json(path) else None
    return graph_svg(spec) if spec is not None else None


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text("utf-8"))
        return True
    except (ValueError, OSError, RecursionError):
        return False


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    env = Environment(autoescape=select_autoescape(default=True), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["score"] = lambda x: f"{x:.3f}" if isinstance(x, (int, float)) else "–"
    env.filters["edits"] = lambda edits: "; ".join(edit_text(e) for e in edits)
    template = env.from_string(
        resources.files("localsym").joinpath("report.html.j2").read_text("utf-8"))
    out = RunDirectory(run_dir).report_path
    atomic_write_text(out, template.render(**build_context(run_dir)))
    return out
