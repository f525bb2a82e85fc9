"""Profile (not a test): where the time of `edge-fer bench` goes, besides the model invokes.

    python benchmarks/profile_pipeline.py [--source demo|five-faces|SPEC] [--frames 2000] [--html PATH] [--text]

Runs `edge_fer.tools.bench.bench` (the pipeline, footage and frame loop of `edge-fer bench`,
``--realtime off``) under pyinstrument, which is never an edge-fer dependency:

    pip install pyinstrument

Only the frame loop (`Runner.run`) on the main thread is counted: decoding runs on the capture
thread. Each sample goes to one bucket: a model invoke (the runtime's own invoke call, e.g.
LiteRT's ``Invoke``, by calling module), the wait for a decoded frame, or else the innermost
edge_fer function on the stack (its own lines plus the library calls it makes: OpenCV, numpy).

Prints one JSON object: ``ms_per_frame`` (loop total, capture wait, `Pipeline.process`, its
invokes as profiled and as counted by the runtime, and the rest), ``steps`` (the rest and the
invokes by what `Pipeline.process` called: `Pipeline._mesh`, `FaceDetector.preprocess`...),
``functions`` (the top edge_fer functions by ms per frame, with the step they ran in and the
library calls that take most of it) and ``bench_under_profiler``. ``--html PATH`` writes
pyinstrument's interactive report, ``--text`` prints its text report on stderr.

The profiler costs time: samples are charged without the profiler's own sampling work (see
`exclude_sampling_cost`), so totals and invokes stay within a few % of an unprofiled run, but
the call hooks still inflate code made of many small Python calls. Read the split against the
stage means of a plain `edge-fer bench` run. Run it on an idle machine or device (nothing else
busy): the figures are wall-clock times.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import edge_fer
from edge_fer.config import load_settings
from edge_fer.pipeline import Pipeline
from edge_fer.runner import Runner
from edge_fer.tools.bench import bench, bench_settings, footage

K = TypeVar("K")
HOW = "pip install pyinstrument   (a profiling tool, never an edge-fer dependency)"
PACKAGE = str(Path(edge_fer.__file__).parent) + "/"
#: The calls, made from edge_fer's runtime back-ends, that are the inference itself.
INVOKE_NAMES = {"Invoke", "invoke", "run", "run_with_iobinding"}
LOOP = (Runner.run.__code__.co_filename, Runner.run.__code__.co_firstlineno)
PROCESS = (Pipeline.process.__code__.co_filename, Pipeline.process.__code__.co_firstlineno)


def parse_frame(identifier: str) -> tuple[str, str, int, str]:
    """pyinstrument's frame identifier → (function, file, first line, class name or "")."""
    head, *attributes = identifier.split("\x01")
    function, path, line = (head.split("\x00") + ["", "0"])[:3]
    cls = next((a[1:] for a in attributes if a.startswith("c")), "")
    return function, path, int(line or 0), cls


def module_name(path: str) -> str:
    return "edge_fer." + Path(path).relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")


def edge_fer_name(function: str, path: str, line: int, cls: str) -> str:
    """``module:Class.function``; comprehensions (``<listcomp>``...) get their line."""
    where = f"@{line}" if function.startswith("<") else ""
    return f"{module_name(path)}:{cls + '.' if cls else ''}{function}{where}"


def largest(totals: Mapping[K, float], n: int | None = None) -> list[tuple[K, float]]:
    return sorted(totals.items(), key=lambda item: -item[1])[:n]


def breakdown(records: list[tuple[list[str], float]], frames: int, top: int) -> dict[str, Any]:
    """Split the frame loop's samples: capture wait, the runner's own work, and in
    `Pipeline.process` the invokes and the rest by step (what `process` called) and by function."""
    total = wait = 0.0
    invokes: defaultdict[str, float] = defaultdict(float)
    steps: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    own: defaultdict[tuple[str, str], float] = defaultdict(float)
    calls: defaultdict[tuple[str, str], defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    for stack, seconds in records:
        stack_ = [parse_frame(f) for f in stack]
        loop = next((i for i, f in enumerate(stack_) if f[1:3] == LOOP), None)
        if loop is None:
            continue
        total += seconds
        process = next((i for i, f in enumerate(stack_) if f[1:3] == PROCESS), None)
        step = "(runner)" if process is None else "Pipeline.process"
        if process is not None and process + 1 < len(stack_) and stack_[process + 1][1].startswith(PACKAGE):
            step = edge_fer_name(*stack_[process + 1]).split(":")[1]
        owner, caller, callee, kind = "edge_fer.runner:Runner.run", "", "", "own"
        for i in range(loop, len(stack_)):
            function, path = stack_[i][:2]
            if not path.startswith(PACKAGE):
                callee = callee or function
                continue
            owner, callee = edge_fer_name(*stack_[i]), ""
            if "/capture/" in path and function == "get":
                kind = "wait"
                break
            if "/runtime/" not in path:
                caller = module_name(path)
                continue
            below = stack_[i + 1] if i + 1 < len(stack_) else None
            if below and below[0].rsplit(".", 1)[-1] in INVOKE_NAMES and not below[1].startswith(PACKAGE):
                kind = "invoke"
                invokes[caller] += seconds
                break
        if kind == "wait":
            wait += seconds
            continue
        steps[step][kind] += seconds
        if kind == "own" and process is not None:
            own[owner, step] += seconds
            calls[owner, step][callee or "(self)"] += seconds

    def ms(seconds: float) -> float:
        return round(1000.0 * seconds / frames, 4)

    runner: Mapping[str, float] = steps.pop("(runner)", {})
    outside = sum(c["own"] for c in steps.values())
    return {
        "ms_per_frame": {
            "loop_total": ms(total),
            "capture_wait": ms(wait),
            "runner_besides_process": ms(sum(runner.values())),
            "process": ms(sum(sum(c.values()) for c in steps.values())),
            "invokes_profiled": ms(sum(invokes.values())),
            "invokes_by_caller": {k: ms(v) for k, v in largest(invokes)},
            "outside_invokes": ms(outside),
        },
        "steps": {
            step: {"outside_invokes": ms(c["own"]), "invokes": ms(c["invoke"])}
            for step, c in sorted(steps.items(), key=lambda item: -item[1]["own"])
            if ms(sum(c.values())) >= 0.001
        },
        "functions": [
            {
                "function": name,
                "step": step,
                "ms_per_frame": ms(seconds),
                "share_of_outside": round(seconds / outside, 3) if outside else None,
                "calls": {k: ms(v) for k, v in largest(calls[name, step], 3)},
            }
            for (name, step), seconds in largest(own, top)
        ],
    }


def exclude_sampling_cost() -> bool:
    """Charge each sample with the time since the end of the previous one, not its start.

    pyinstrument charges the time since the previous sample's start, which includes building
    and storing that sample (~20 µs here): at the fine interval needed to tell apart calls of a
    few tens of µs, that cost would be charged to whatever runs next, and the profiled frame
    would be about a fifth longer than a real one. Returns False (the figures then include that cost)
    if pyinstrument's sampler is not the one this was written against (pyinstrument 5)."""
    from pyinstrument import stack_sampler

    sampler = getattr(stack_sampler, "StackSampler", None)
    original = getattr(sampler, "_sample", None)
    if sampler is None or original is None or not hasattr(sampler, "_timer"):
        return False

    def sample(self: Any, frame: Any, event: str, arg: Any) -> None:
        original(self, frame, event, arg)
        if event != "context_changed":
            self.last_profile_time = self._timer()

    sampler._sample = sample
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="demo", help="footage: demo (default), five-faces, or a source spec")
    parser.add_argument("--detector", help="detector manifest name (default: as `edge-fer bench`)")
    parser.add_argument("--frames", type=int, default=2000, help="frames to process (default 2000)")
    parser.add_argument(
        "--interval",
        type=float,
        default=0.00005,
        help="sampling interval in seconds (default 0.00005: coarser ones charge the code just before a long call to that call)",
    )
    parser.add_argument("--pyinstrument-timing", action="store_true", help="charge samples as pyinstrument does (its own cost included)")
    parser.add_argument("--top", type=int, default=15, help="edge_fer functions listed (default 15)")
    parser.add_argument("--html", type=Path, metavar="PATH", help="also write pyinstrument's HTML report here")
    parser.add_argument("--text", action="store_true", help="also print pyinstrument's text report on stderr")
    args = parser.parse_args()
    try:
        from pyinstrument import Profiler
    except ImportError:
        print(f"pyinstrument is not installed: {HOW}", file=sys.stderr)
        return 1
    settings = bench_settings(load_settings(overrides={"source": {"spec": args.source}}), detector=args.detector)
    corrected = not args.pyinstrument_timing and exclude_sampling_cost()
    profiler = Profiler(interval=args.interval)
    with footage(settings) as (bench_with, name, _):
        profiler.start()
        record = bench(bench_with, args.frames, footage_name=name)
        session = profiler.stop()
    split = breakdown(session.frame_records, max(record["frames"], 1), args.top)
    split["ms_per_frame"]["invokes_counted"] = round(sum(record["raw_invoke_ms_per_frame"].values()), 4)
    keys = ("fps", "pipeline_ms_per_frame", "raw_invoke_ms_per_frame", "invokes", "overhead_ratio")
    summary = {
        "source": record["source"],
        "frames": record["frames"],
        "faces_per_frame": record["faces_per_frame"],
        "samples": session.sample_count,
        "interval_ms": args.interval * 1000,
        "sampling_cost_excluded": corrected,
        "bench_under_profiler": {**{k: record[k] for k in keys}, "stage_means_ms": {k: v["mean"] for k, v in record["stages_ms"].items()}},
        **split,
    }
    print(json.dumps(summary, indent=1))
    if args.html:
        args.html.write_text(profiler.output_html(), encoding="utf-8")
    if args.text:
        print(profiler.output_text(unicode=True, color=False), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
