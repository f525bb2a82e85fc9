"""Fill in and render the deployment notice (EU AI Act Art. 50(3)) to Markdown, PDF and PNG.

    python firmware_config/notice/render.py --out DIR --controller "Shop Ltd, privacy@shop.example" \
        [--purpose "..."] [--retention-days 30] [--min-faces 1] [--window-s 10] [--config edge-fer.toml]

With --config, the values come from the device's own settings (deployment.* and aggregate.*),
so the notice says what the device really does. Needs matplotlib (`pip install 'edge-fer[eval]'`).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_PURPOSE = "To learn, in aggregate, how visitors react to what is shown on this screen."


def fill(template: str, values: dict[str, str]) -> str:
    return template.format(**values)


def render(markdown: str, pdf: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(8.27, 11.69))  # A4 portrait
    # Markdown blocks: a heading, a bullet, or a paragraph whose lines are joined.
    blocks: list[tuple[str, str]] = []
    for raw in markdown.splitlines():
        line = raw.strip().replace("**", "")
        if line.startswith(("# ", "## ")):
            blocks.append(("h1" if line.startswith("# ") else "h2", line.split(" ", 1)[1]))
        elif line.startswith("- "):
            blocks.append(("li", line[2:]))
        elif not line:
            blocks.append(("gap", ""))
        elif blocks and blocks[-1][0] in ("p", "li"):
            blocks[-1] = (blocks[-1][0], blocks[-1][1] + " " + line)
        else:
            blocks.append(("p", line))
    y = 0.95
    for kind, text in blocks:
        if kind == "h1":
            fig.text(0.08, y, text, fontsize=20, weight="bold", va="top")
            y -= 0.05
        elif kind == "h2":
            y -= 0.012
            fig.text(0.08, y, text, fontsize=13, weight="bold", va="top", color="#1f3b73")
            y -= 0.03
        elif kind == "gap":
            y -= 0.008
        else:
            for k, part in enumerate(textwrap.wrap(text, 84 if kind == "li" else 90)):
                prefix = ("•  " if k == 0 else "    ") if kind == "li" else ""
                fig.text(0.08, y, prefix + part, fontsize=10.5, va="top")
                y -= 0.021
    fig.savefig(pdf)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for notice.md, notice.pdf, notice.png")
    parser.add_argument("--config", type=Path, help="take the values from this edge-fer.toml")
    parser.add_argument("--controller", default="[Name of the organisation, address, contact e-mail]")
    parser.add_argument("--purpose", default=DEFAULT_PURPOSE)
    parser.add_argument("--retention-days", type=int, default=30)
    parser.add_argument("--min-faces", type=int, default=1)
    parser.add_argument("--window-s", type=float, default=10.0)
    args = parser.parse_args(argv)
    values = {
        "controller": args.controller,
        "purpose": args.purpose,
        "retention_days": str(args.retention_days),
        "min_faces": str(args.min_faces),
        "window_s": f"{args.window_s:g}",
    }
    if args.config:
        sys.path.insert(0, str(HERE.parents[1]))
        from edge_fer.config import load_settings

        s = load_settings(args.config)
        values.update(
            controller=s.deployment.controller or values["controller"],
            purpose=s.deployment.purpose or values["purpose"],
            retention_days=str(s.deployment.retention_days),
            min_faces=str(s.aggregate.min_faces),
            window_s=f"{s.aggregate.window_s:g}",
        )
    text = fill((HERE / "notice.md").read_text(encoding="utf-8"), values)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "notice.md").write_text(text, encoding="utf-8")
    render(text, args.out / "notice.pdf", args.out / "notice.png")
    print(f"notice written to {args.out}/notice.md, notice.pdf, notice.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
