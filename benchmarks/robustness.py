"""Benchmark (not a test): emotion models under the conditions of real cameras.

    python benchmarks/robustness.py DIR [--models edge_fer_emotion mini_xception] [--candidate NAME=PATH]
                                         [--sets clean jpeg@15 ...] [--limit N] [--json OUT.json] [--plot OUT.png]

DIR holds one sub-folder per class (FER2013's public test: ``tar xf public_test.tar``). Every
face goes through each named degradation of `edge_fer.vision.degrade` (the same definitions the
emotion model's training augmentation draws from) at each of its strengths, then through the
classifier's own preprocessing (`EmotionClassifier.classify_crops`). Per model and set: accuracy,
macro-F1, and the **share bias** per class (share of faces predicted as the class minus its true
share: the error a published emotion share makes), without and with the face-quality gate
(`edge_fer.vision.quality`, thresholds from the config's ``[quality]`` section; on FER2013's
48×48 crops a face counts as 48 px wide, or as the `lowres` strength). Prints one JSON object;
``--plot`` draws accuracy against strength, one line per model, one panel per family.

``--candidate NAME=PATH`` evaluates a model file with the contract of the manifest entry
``edge_fer_emotion`` (a freshly exported v3, before it has an entry of its own).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_fer.config import Settings, load_settings
from edge_fer.tools.evaluate import EvalResult, list_images, share_bias
from edge_fer.models import resolve
from edge_fer.runtime import load_manifest_model
from edge_fer.vision.degrade import FAMILIES, apply_set, benchmark_sets, parse_set, reference_sets
from edge_fer.vision.emotion import EmotionClassifier
from edge_fer.vision.quality import QualityGate, measure_crop

NATIVE_PX = 48


def load_faces(root: Path, labels: tuple[str, ...], limit: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey faces ``(n, 48, 48)`` and class indices; with `limit`, a seeded stratified subset."""
    items = list_images(root, labels)
    if limit is not None and limit < len(items):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(items))[:limit]
        items = [items[i] for i in sorted(order)]
    faces, ys = [], []
    for path, label in items:
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            continue
        faces.append(cv2.resize(img, (NATIVE_PX, NATIVE_PX), interpolation=cv2.INTER_AREA) if img.shape != (NATIVE_PX, NATIVE_PX) else img)
        ys.append(label)
    return np.stack(faces), np.array(ys, np.int64)


def classifier_for(name: str, settings: Settings, path: Path | None = None) -> EmotionClassifier:
    entry, resolved = resolve("edge_fer_emotion" if path is not None else name, settings.models.dir, "emotion")
    return EmotionClassifier(load_manifest_model(entry, path or resolved, settings), entry)


def gate_verdicts(gate: QualityGate, images: np.ndarray, face_px: float, input_hw: tuple[int, int]) -> np.ndarray:
    """Per face: passes the gate? Measured on the crop at the classifier's input size."""
    keep = np.empty(len(images), bool)
    for i, img in enumerate(images):
        crop = img if img.shape == input_hw else cv2.resize(img, input_hw[::-1], interpolation=cv2.INTER_AREA)
        keep[i] = gate.assess(measure_crop(crop), face_px).ok
    return keep


def score(labels: tuple[str, ...], y: np.ndarray, pred: np.ndarray, keep: np.ndarray) -> dict[str, Any]:
    record = EvalResult("", labels, y, pred, 0.0, 0).to_dict()
    bias = share_bias(y, pred, labels)
    out: dict[str, Any] = {
        "accuracy": record["accuracy"],
        "macro_f1": record["macro_f1"],
        "share_bias": bias,
        "max_abs_share_bias": max(abs(v) for v in bias.values()),
    }
    # Published shares with the gate: only the faces that pass, against the true shares of all.
    # (None when the gate kept no face: the product would publish no shares at all.)
    gated = share_bias(y, pred[keep], labels) if keep.any() else None
    out["gated"] = {
        "kept": round(float(keep.mean()), 4),
        "accuracy": round(float(np.mean(pred[keep] == y[keep])), 4) if gated else None,
        "share_bias": gated,
        "max_abs_share_bias": max(abs(v) for v in gated.values()) if gated else None,
    }
    return out


def run(
    root: Path,
    models: list[tuple[str, Path | None]],
    sets: list[str],
    limit: int | None = None,
    seed: int = 0,
    settings: Settings | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The benchmark as a JSON-able dict (see the module docstring)."""
    settings = settings or load_settings()
    gate = QualityGate.from_config(settings.quality)
    classifiers = [(name, classifier_for(name, settings, path)) for name, path in models]
    labels = classifiers[0][1].labels
    faces, y = load_faces(root, labels, limit, seed)
    result: dict[str, Any] = {
        "n": len(y),
        "dir": str(root),
        "seed": seed,
        "gate": repr(gate),
        "true_shares": {k: round(float(v), 4) for k, v in zip(labels, np.bincount(y, minlength=len(labels)) / len(y))},
        "families": {name: {"unit": fam.unit, "strengths": list(fam.strengths), "reference": fam.reference} for name, fam in FAMILIES.items()},
        "reference_sets": reference_sets(),
        "models": {},
    }
    degraded = {}
    for name in sets:
        family, strength = parse_set(name)
        degraded[name] = apply_set(faces, name, seed)
    for model_name, clf in classifiers:
        if tuple(clf.labels) != tuple(labels):
            raise SystemExit(f"{model_name}: labels {clf.labels} differ from {labels}")
        per_set: dict[str, Any] = {}
        infer_s, count = 0.0, 0
        for name in sets:
            family, strength = parse_set(name)
            images = degraded[name]
            t = time.perf_counter()
            probs = clf.classify_crops(list(images))
            infer_s += time.perf_counter() - t
            count += len(images)
            keep = gate_verdicts(gate, images, strength if family == "lowres" else NATIVE_PX, clf.input_hw)
            per_set[name] = score(labels, y, probs.argmax(1), keep)
            if progress:
                print(f"{model_name:<20} {name:<16} accuracy {per_set[name]['accuracy']:.4f}", file=sys.stderr, flush=True)
        entry: dict[str, Any] = {"ms_per_face": round(1000 * infer_s / max(count, 1), 4), "sets": per_set}
        if "clean" in per_set:
            clean = per_set["clean"]["accuracy"]
            refs = [per_set[s]["accuracy"] for s in reference_sets() if s in per_set]
            if refs:
                entry["reference"] = {
                    "clean_accuracy": clean,
                    "mean_drop": round(clean - float(np.mean(refs)), 4),
                    "max_drop": round(clean - min(refs), 4),
                    "max_abs_share_bias": max(per_set[s]["max_abs_share_bias"] for s in reference_sets() if s in per_set),
                }
        result["models"][model_name] = entry
    return result


def markdown(result: dict[str, Any]) -> str:
    """The robustness table of the model card: per set, each model's accuracy, macro-F1 and
    largest share bias (in points, signed, with its class), and the first model's share bias
    with the gate and the share of faces the gate kept."""
    models = list(result["models"])
    first = models[0]
    head = ["set"] + [f"{m} acc / F1 / worst share bias" for m in models] + [f"{first} with gate: kept, worst bias"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    refs = set(result["reference_sets"])

    def worst(bias: dict[str, float] | None) -> str:
        if not bias:
            return "—"
        label = max(bias, key=lambda k: abs(bias[k]))
        return f"{100 * bias[label]:+.1f} {label}"

    for name in result["models"][first]["sets"]:
        cells = [f"**{name}**" if name in refs else name]
        for m in models:
            r = result["models"][m]["sets"].get(name)
            cells.append("—" if r is None else f"{r['accuracy']:.3f} / {r['macro_f1']:.3f} / {worst(r['share_bias'])}")
        g = result["models"][first]["sets"][name]["gated"]
        few = f" ({round(g['kept'] * result['n'])} faces)" if g["kept"] < 0.05 else ""
        cells.append(f"{g['kept']:.2f}{few}, {worst(g['share_bias'])}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(result["families"])
    cols = 4
    rows = (len(families) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), dpi=110, squeeze=False)
    for ax, family in zip(axes.flat, families):
        info = result["families"][family]
        for model, entry in result["models"].items():
            xs, ys = [], []
            for s in info["strengths"]:
                key = f"{family}@{s:g}"
                if key in entry["sets"]:
                    xs.append(s)
                    ys.append(entry["sets"][key]["accuracy"])
            line = ax.plot(xs, ys, marker="o", label=model)[0]
            if "clean" in entry["sets"]:
                ax.axhline(entry["sets"]["clean"]["accuracy"], color=line.get_color(), linestyle=":", linewidth=0.8)
        if family in ("lowres", "jpeg", "dark"):
            ax.invert_xaxis()  # mild on the left, severe on the right, as for the others
        ax.set_title(family, fontsize=10)
        ax.set_xlabel(info["unit"], fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.set_ylim(0.2, 0.8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(families) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"FER2013 faces under camera degradations (n={result['n']}; dotted: clean)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def merge(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One record from runs of different models on the same faces with the same seed (the
    degraded pixels are then identical); refuses records of other faces or seeds."""
    base = dict(records[0])
    base["models"] = dict(base["models"])
    for r in records[1:]:
        if (r["n"], r["seed"], r["true_shares"]) != (base["n"], base["seed"], base["true_shares"]):
            raise SystemExit("--from-json: the records are not of the same faces and seed")
        base["models"].update(r["models"])
    return base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, nargs="?", help="folder with one sub-folder per class (FER2013 public_test)")
    parser.add_argument("--from-json", type=Path, nargs="+", help="merge earlier JSON records (same faces and seed) instead of running")
    parser.add_argument("--models", nargs="*", default=["edge_fer_emotion", "mini_xception"], help="manifest names (none: only --candidate)")
    parser.add_argument("--candidate", action="append", default=[], metavar="NAME=PATH", help="a model file with edge_fer_emotion's contract")
    parser.add_argument("--sets", nargs="+", default=None, help=f"default: all ({' '.join(benchmark_sets())})")
    parser.add_argument("--limit", type=int, help="a seeded subset of this many faces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    parser.add_argument("--plot", type=Path, help="accuracy against strength, one line per model (needs matplotlib)")
    parser.add_argument("--markdown", action="store_true", help="print the model card's table instead of the JSON")
    args = parser.parse_args(argv)
    models: list[tuple[str, Path | None]] = [(m, None) for m in args.models]
    for spec in args.candidate:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            parser.error(f"--candidate {spec!r}: expected NAME=PATH to an existing .tflite file")
        models.append((name, Path(path)))
    sets = args.sets or benchmark_sets()
    for s in sets:
        try:
            parse_set(s)
        except ValueError as exc:
            parser.error(str(exc))
    if args.from_json:
        result = merge([json.loads(p.read_text()) for p in args.from_json])
    elif args.dir is None:
        parser.error("give DIR (or --from-json)")
    else:
        result = run(args.dir, models, sets, limit=args.limit, seed=args.seed, progress=True)
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    if args.plot:
        plot(result, args.plot)
    print(markdown(result) if args.markdown else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
