"""Indicators of recursive self-improvement, measured and signed.

- :mod:`redline.indicators.codeshare` (a package, one module per concern): the share of a repository's code
  authored by AI, from git history (line-level git-ai notes and Agent Trace records, commit-level trailers and
  AI authors), with counting profiles (``default``; ``aider``, which reproduces aider's published method).
- :mod:`redline.indicators.horizon` (a package: fit, bootstrap, analysis, trend, report, plotting): METR-style
  time horizons from evaluation logs read by :mod:`redline.indicators.evallogs`.
- :mod:`redline.indicators.signing`: the shared helper that turns a measured value into a signed
  ``Indicator`` statement and submits it to a log or writes the envelope to a file.

Submodules are imported on demand; importing this package loads nothing heavy.
"""
