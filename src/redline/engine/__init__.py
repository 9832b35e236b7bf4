"""The engine: replay the log into the state of the world (pure, deterministic, incremental)."""

from redline.engine.effects import bound_parties, release_obstacles
from redline.engine.replay import Entry, admit, apply, replay
from redline.engine.rules import RULES, rule
from redline.engine.state import State

__all__ = ["RULES", "Entry", "State", "admit", "apply", "bound_parties", "release_obstacles", "replay", "rule"]
