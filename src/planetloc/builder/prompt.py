"""The LVLM prompt template: the shipped one or the user's, word bounds filled in.

Its own module because both the describe stage and the settings record (which keeps the
prompt's digest, not its path) read it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from planetloc.errors import PlanetlocError


@dataclass
class Prompt:
    system: str
    user: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.system}\x00{self.user}".encode()).hexdigest()


def load_prompt(cfg: Any) -> Prompt:
    """The prompt template (``system`` / ``---`` / ``user``) with word bounds filled in.

    ``cfg`` is the describe section (its ``prompt_file``, ``min_words``, ``max_words``).
    """
    if cfg.prompt_file:
        path = Path(cfg.prompt_file)
        if not path.is_file():
            raise PlanetlocError(f"{path}: describe.prompt_file not found")
        text = path.read_text(encoding="utf-8")
    else:
        text = resources.files("planetloc.builder").joinpath("prompts/describe.txt").read_text()
    system, sep, user = text.partition("\n---\n")
    if not sep:
        system, user = "", text
    fill = {"{min_words}": str(cfg.min_words), "{max_words}": str(cfg.max_words)}
    for key, value in fill.items():
        system, user = system.replace(key, value), user.replace(key, value)
    if not user.strip():
        raise PlanetlocError("the describe prompt has no user part")
    return Prompt(system.strip(), user.strip())
