"""The one error type commands report as a line, `recog: <message>`, and exit code 1.

Kept apart from the modules that raise it so the entry point can catch it without importing
them: `recog config` loads neither httpx nor redis.
"""

from __future__ import annotations


class CommandFailed(Exception):
    """A command could not do its job for a reason its user can act on; the message says which."""
