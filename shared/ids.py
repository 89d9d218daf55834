"""Object ids: what they look like and how they are made, for every module that checks or makes one."""

from __future__ import annotations

import re
import secrets
import uuid

# Collections, items and images are named by 32 lowercase hex characters (a uuid4 without dashes).
ID_PATTERN = r"[0-9a-f]{32}"
ID_RE = re.compile(ID_PATTERN)


# Search tokens are 16 lowercase hex characters.
TOKEN_PATTERN = r"[0-9a-f]{16}"
TOKEN_RE = re.compile(TOKEN_PATTERN)


def new_id() -> str:
    """32 lowercase hex characters (uuid4)."""
    return uuid.uuid4().hex


def is_id(text: str) -> bool:
    return ID_RE.fullmatch(text) is not None


def new_token() -> str:
    """16 lowercase hex characters from the system's CSPRNG."""
    return secrets.token_hex(8)
