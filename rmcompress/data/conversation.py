"""Conversations (TRL's conversational format) as plain text, by one template.

A conversation is a list of messages ``{"role": ..., "content": ...}`` (a cell of a JSON lines
file, a Parquet list column, a pandas or ``datasets`` column). It is written one message a line,
the role as a prefix::

    System: You are terse.
    User: How long do I boil an egg?
    Assistant: Eight minutes.

Roles: ``system`` -> ``System``, ``user`` -> ``User``, ``assistant`` -> ``Assistant``; any other
role is written with a capital first letter (``tool`` -> ``Tool``). A message's content is kept as
it is (newlines included); ``None`` content is empty. A pair's prompt messages come first, then
the completion's, joined by a newline: ``render(prompt) + "\\n" + render(chosen)`` is
``render(prompt + chosen)``. Pairwise texts keep their end when cut (the character limit of the
loaders and the tokeniser's ``keep="end"``, the pairwise default), so the final assistant turn,
where chosen and rejected differ, is what a long conversation keeps.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rmcompress.errors import DataError

#: the prefix of each known role; other roles are capitalised
ROLE_PREFIXES = {"system": "System", "user": "User", "assistant": "Assistant"}


def is_conversation(value) -> bool:
    """Whether a cell holds a conversation (a list, tuple or array of messages) rather than text."""
    return isinstance(value, (list, tuple, np.ndarray))


def role_prefix(role: str) -> str:
    return ROLE_PREFIXES.get(role.lower(), role[:1].upper() + role[1:])


def render(messages, where: str = "conversation") -> str:
    """The plain text of ``messages`` (module docstring); a message that is not a dict with a string
    ``role`` and string (or ``None``) ``content`` is a :class:`DataError` naming ``where`` and it."""
    lines = []
    for i, message in enumerate(messages, start=1):
        if not isinstance(message, Mapping):
            raise DataError(f"{where}: message {i} is a {type(message).__name__}, expected "
                            "{'role': ..., 'content': ...}")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not role.strip():
            raise DataError(f"{where}: message {i} has no role (a string such as 'user' or 'assistant')")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise DataError(f"{where}: message {i} ({role}) has {type(content).__name__} content; only text "
                            "content (a string) is supported")
        lines.append(f"{role_prefix(role.strip())}: {content}")
    return "\n".join(lines)
