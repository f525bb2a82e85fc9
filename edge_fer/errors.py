"""The one exception hierarchy of edge-fer, and the CLI exit code each error maps to."""

from __future__ import annotations


class EdgeFerError(Exception):
    """Base of every error edge-fer raises on purpose; the message says what to do."""

    exit_code = 1


class ConfigError(EdgeFerError):
    """Bad configuration, bad CLI usage or a bad value given at run time."""

    exit_code = 2


class SourceError(EdgeFerError):
    """A frame source cannot be opened or read."""

    exit_code = 3


class ModelError(EdgeFerError):
    """A model file is missing, corrupt, or does not fit its manifest contract."""

    exit_code = 4


class PublishError(EdgeFerError):
    """An event cannot be stored or published (the broker being down is *not* this)."""

    exit_code = 5
