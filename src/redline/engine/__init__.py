"""The engine: replay the log into the state of the world (pure, deterministic, incremental)."""

from redline.engine.replay import Entry, admit, apply, bound_parties, replay
from redline.engine.state import State

__all__ = ["Entry", "State", "admit", "apply", "bound_parties", "replay"]
