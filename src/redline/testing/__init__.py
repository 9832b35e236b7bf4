"""Test support that ships with redline: attacks to mount against it and the scaffolding to mount them.

Nothing in redline's product code imports this package: the recorder, the verifier, the engine and the
command line never depend on it. It is shipped so that redline's own tests, its benchmarks
(``bench/verify_cost.py``) and anyone who runs redline can exercise the same attacks against the same
public API:

- :mod:`redline.testing.attacks` — known attacks on training transcripts and on the log's bindings,
  registered with the :func:`~redline.testing.attacks.attack` decorator (``ATTACKS``: name → attack);
- :mod:`redline.testing.scenario` — a small real log (``Log`` on SQLite, ``Registry.genesis``), its parties'
  keys, and the lab's and the auditor's side of declaring and verifying a run (``redline run start``,
  ``redline run declare``, ``verify_transcript`` with the log's declarations and seed).

The attacks need ``redline[torch]``.
"""
