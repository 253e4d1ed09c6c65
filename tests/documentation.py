"""The shell commands our documentation shows: every fenced ```bash block of README.md, docs/*.md and
examples/*.md.

A command is one logical shell line (backslash continuations and multi-line quotes joined); its key is its
words as the shell splits them, comments dropped, joined by single spaces, so re-wrapping a line in the
documentation keeps its key and any other change makes a new one.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", *sorted(str(p.relative_to(ROOT)) for folder in ("docs", "examples")
                            for p in (ROOT / folder).glob("*.md")))
_FENCE = re.compile(r"^([ \t]*)```bash[ \t]*\n(.*?)^\1```", re.S | re.M)


@dataclasses.dataclass(frozen=True)
class Command:
    doc: str  # path relative to the repository
    text: str  # as written (continuations kept)
    key: str  # the normalised command

    @property
    def words(self) -> list[str]:
        return words(self.text)


def words(text: str) -> list[str]:
    """The words the shell reads in `text` (comments dropped, continuations joined)."""
    return shlex.split(text.replace("\\\n", " "), comments=True)


def commands(doc: str) -> list[Command]:
    """The commands of `doc`'s ```bash blocks, in order."""
    found = []
    for match in _FENCE.finditer((ROOT / doc).read_text()):
        pending = ""
        for line in textwrap.dedent(match.group(2)).splitlines():
            pending += line + "\n"
            if pending.rstrip().endswith("\\"):
                continue
            try:
                found_words = words(pending)
            except ValueError:  # a quote spans lines
                continue
            if found_words:
                found.append(Command(doc, pending.strip(), " ".join(found_words)))
            pending = ""
        assert not pending.strip(), f"{doc}: unterminated command {pending!r}"
    return found


def documented(doc: str, *needles: str) -> Command:
    """The one command of `doc` whose key contains every needle (tests that run a documented command read it
    here, so they run exactly what the documentation shows)."""
    found = [c for c in commands(doc) if all(n in c.key for n in needles)]
    assert len(found) == 1, f"{doc}: {len(found)} commands contain {needles}: {[c.key for c in found]}"
    return found[0]


def dora_args(command: Command) -> list[str]:
    """The arguments after `dora -P mmd_audiocraft` of a documented Dora command."""
    words = command.words
    assert words[:3] == ["dora", "-P", "mmd_audiocraft"], command.key
    return words[3:]
