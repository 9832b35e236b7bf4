"""Indicators of recursive self-improvement, measured and signed.

- :mod:`redline.indicators.codeshare`: the share of a repository's code authored by AI, from git history
  (line-level git-ai notes and Agent Trace records, commit-level trailers and bot identities).
- :mod:`redline.indicators.signing`: the shared helper that turns a measured value into a signed
  ``Indicator`` statement and submits it to a log or writes the envelope to a file.

Submodules are imported on demand; importing this package loads nothing heavy.
"""
