"""Allows `python -m edge_fer`."""

from __future__ import annotations

from edge_fer.cli import main

raise SystemExit(main())
