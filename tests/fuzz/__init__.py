"""Fuzz harnesses: one Hypothesis property per parser of untrusted input (see ``common``)."""
