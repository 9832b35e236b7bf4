"""Counting profiles: which rules, which files, which lines and which ``git blame`` flags a measurement uses.

``default``
    redline's own method: the ``ai-authorship-v3`` rules with line-level evidence (git-ai notes,
    Agent Trace), the rule file's ignore list, blank lines not counted, ``git blame -M -C -C``
    at git's default thresholds.

``aider``
    The method of aider's ``scripts/blame.py``, which computes the figures aider publishes per
    release (``aider/website/_data/blame.yml``), reimplemented from its description:

    * population: the commits of ``git rev-list START..END``; a commit is aider's when its
      author name (``%an``, no mailmap) contains ``(aider)`` in any case, or its subject starts
      with ``aider:`` in any case; nothing else is read (no committer, trailer, note or trace);
    * files: the paths of END's tree whose name ends in ``.js``, ``.py``, ``.scm``, ``.sh``,
      ``Dockerfile`` or ``Gemfile``, the ``.yml`` files under ``.github/workflows/`` and
      ``aider/resources/``, five named website pages and the ``test.*`` language fixtures under
      ``tests/fixtures/languages/``; less paths ending in ``prompts.py``, paths starting
      ``tests/fixtures/watch`` and the two install scripts of the website;
    * lines: each file blamed with ``git blame -M100 -C100 -C -C START..END`` (moves and copies
      need 100 alphanumeric characters, against git's defaults of 20 and 40; ``-C`` three times
      in all: copies from any file of any commit); every non-boundary line counts, blank ones
      too;
    * figure: aider's lines / all counted lines.

    redline blames only the files some commit in the range touched (the others are all
    boundary lines, so they add nothing), in parallel, from an uncompressed copy of the range's
    objects (:mod:`redline.indicators.codeshare.objcache`), and reads every header in one process:
    the counts are identical (``tests/test_codeshare_aider.py`` checks them line for line
    against an independent per-file loop).

How the default differs from ``aider``, and why: the default counts what any AI tool wrote (trailers,
bots, notes, traces), not aider alone; it reads aider's *author* marker only with its documented
suffix (``... (aider)``), where aider's script also accepts ``(aider)`` anywhere in the name; it
skips blank lines (they carry no authorship and inflate whichever side adds more vertical space);
it counts every text file that is not generated, vendored or a lock file (aider's list is tailored
to aider's own repository); and it blames with git's default move and copy thresholds (20 and 40
alphanumeric characters, ``-C`` twice), so that a moved function of a few short lines keeps its
author, where ``-M100 -C100`` gives it to whoever moved it.
"""

from __future__ import annotations

from dataclasses import dataclass

from redline.errors import CodeShareError

#: aider's website pages that its script counts (exact paths).
_AIDER_WEBSITE = ("aider/website/index.html", "aider/website/share/index.md",
                  "aider/website/_includes/head_custom.html", "aider/website/_includes/home.css",
                  "aider/website/docs/leaderboards/index.md")

#: aider's file selection as globs (each equivalent to one of the script's string tests; see the module doc).
AIDER_INCLUDE = (
    "*.js", "*.py", "*.scm", "*.sh", "*Dockerfile", "*Gemfile",
    "/.github/workflows/**/*.yml", "/aider/resources/**/*.yml",
    *(f"/{p}" for p in _AIDER_WEBSITE),
    "/tests/fixtures/languages/**/test.*", "/tests/fixtures/languages/**/test.*/**",
)
AIDER_EXCLUDE = (
    "*prompts.py", "/tests/fixtures/watch*", "/tests/fixtures/watch*/**",
    "/aider/website/install.ps1", "/aider/website/install.sh",
)


@dataclass(frozen=True)
class Profile:
    """How a measurement counts: the rule file, the default file filters, blank lines and ``git blame`` flags."""

    name: str
    rules: str  # a built-in rule file name
    count_blank: bool
    blame_flags: tuple[str, ...]
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    default_ignore: bool = True

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "count_blank": self.count_blank, "blame_flags": list(self.blame_flags)}


PROFILES: dict[str, Profile] = {
    "default": Profile("default", "ai-authorship-v3.yaml", count_blank=False, blame_flags=("-M", "-C", "-C")),
    "aider": Profile("aider", "aider-blame-v1.yaml", count_blank=True, blame_flags=("-M100", "-C100", "-C", "-C"),
                     include=AIDER_INCLUDE, exclude=AIDER_EXCLUDE, default_ignore=False),
}


def get_profile(profile: str | Profile | None) -> Profile:
    """The profile named ``profile`` (``default`` or ``aider``)."""
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile or "default"]
    except KeyError:
        raise CodeShareError(f"unknown counting profile {profile!r} (known: {', '.join(PROFILES)})") from None
