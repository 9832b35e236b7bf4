"""Registered, pinned factories: the only code a training-run declaration can make a verifier run.

A declaration (:class:`redline.statements.runs.Declaration`) never names a module or an object. Each of
its factories is a *name* registered as a Python package entry point in the field's group of
``FACTORY_GROUPS`` (``redline.models``, ``redline.optimizers``, ``redline.schedulers``,
``redline.datasets``, ``redline.train_steps``), pinned by a :class:`~redline.statements.runs.FactoryRef`
to the distribution that registers it, its version and :func:`distribution_digest` of its installed
files. A lab registers its own factories in its ``pyproject.toml``::

    [project.entry-points."redline.models"]
    lab-gpt = "lab_models.gpt:make_model"

:func:`pin` fills in the pin on the recording machine. :func:`load` checks it on the verifying machine
from installed metadata and files alone, and imports nothing until every check has passed: a name that
is unknown, registered by two distributions, or registered by another distribution, version or set of
files than pinned is refused with an :class:`~redline.errors.UntrustedCode` error that says how to fix it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import threading
from typing import Any

from pydantic import ValidationError

from redline.crypto.canonical import canonical_json
from redline.errors import (
    AmbiguousFactory,
    FactoryPinMismatch,
    InputTooLarge,
    MalformedInput,
    UnregisteredFactory,
    UntrustedCode,
)
from redline.statements.runs import FACTORY_GROUPS, DataSourceRef, FactoryRef

#: The ``format`` member of the listing :func:`distribution_digest` hashes.
DIGEST_FORMAT = "redline-distribution-files/v1"
#: Most files :func:`distribution_digest` hashes for one distribution.
MAX_FILES = 100_000
#: Largest single file :func:`distribution_digest` hashes (2 GiB).
MAX_FILE_BYTES = 2 << 30

_FACTORY_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_UNKNOWN_DIST = "<unknown distribution>"

_digests: dict[tuple[Any, ...], str] = {}
_digests_lock = threading.Lock()


# --- names ---------------------------------------------------------------------------------


def _normalise(name: str) -> str:
    """A distribution name normalised as PEP 503 does (``Lab_Models`` and ``lab-models`` are one)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _show(value: Any) -> str:
    """``repr`` of a value from a declaration, cut short so that an error message stays readable."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _dist_name(dist: importlib.metadata.Distribution | None) -> str:
    """A distribution's name as its metadata spells it."""
    if dist is None:
        return _UNKNOWN_DIST
    name = dist.metadata["Name"]
    return name if isinstance(name, str) and name else _UNKNOWN_DIST


def _group(field: str, name: Any = None) -> str:
    """The entry-point group of a declaration field (``UntrustedCode`` for a field that has none)."""
    group = FACTORY_GROUPS.get(field) if isinstance(field, str) else None
    if group is None:
        raise UntrustedCode(f"field {_show(field)} of a declaration names no factory group: the factory fields are "
                            f"{', '.join(sorted(FACTORY_GROUPS))}", field=str(field),
                            name=name if isinstance(name, str) else None)
    return group


# --- what is registered --------------------------------------------------------------------


def _path_state() -> tuple[tuple[str, int], ...]:
    """``sys.path`` with each directory's modification time: installing or removing a distribution changes it."""
    import sys

    out = []
    for entry in sys.path:
        try:
            out.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            out.append((entry, -1))
    return tuple(out)


_SCANS: dict[tuple[str, tuple[tuple[str, int], ...]], Any] = {}
_scans_lock = threading.Lock()


def _scan(group: str) -> tuple[dict[str, importlib.metadata.EntryPoint], dict[str, list[str]]]:
    """The names registered once in ``group``, and the names registered more than once (with their distributions).

    Reading every installed distribution's metadata takes about 10 ms, and a verification looks factories up
    a few dozen times: the result is kept while ``sys.path`` and its directories are unchanged.
    """
    key = (group, _path_state())
    with _scans_lock:
        cached = _SCANS.get(key)
    if cached is not None:
        return cached
    result = _scan_uncached(group)
    with _scans_lock:
        if len(_SCANS) > 64:
            _SCANS.clear()
        _SCANS[key] = result
    return result


def _scan_uncached(group: str) -> tuple[dict[str, importlib.metadata.EntryPoint], dict[str, list[str]]]:
    found: dict[str, list[importlib.metadata.EntryPoint]] = {}
    for ep in importlib.metadata.entry_points(group=group):
        same = found.setdefault(ep.name, [])
        key = (_normalise(_dist_name(ep.dist)), ep.value)
        if all((_normalise(_dist_name(o.dist)), o.value) != key for o in same):
            same.append(ep)
    unique = {n: eps[0] for n, eps in sorted(found.items()) if len(eps) == 1}
    ambiguous = {n: sorted(_dist_name(ep.dist) for ep in eps) for n, eps in sorted(found.items()) if len(eps) > 1}
    return unique, ambiguous


def registered(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The entry points registered in ``group`` by installed distributions, by name, read from metadata only.

    Nothing is imported. A name that two distributions register is ambiguous and left out; :func:`pin` and
    :func:`load` refuse it, naming both distributions.
    """
    return _scan(group)[0]


def _register_hint(group: str, name: str) -> str:
    return (f"register one in its pyproject.toml: [project.entry-points.\"{group}\"] "
            f"{name} = \"package.module:function\"")


def _lookup(field: str, name: Any, ref: Any = None) -> tuple[str, importlib.metadata.EntryPoint]:
    """The group of ``field`` and the one entry point registered there as ``name``; refuses anything else."""
    group = _group(field, name)
    if not isinstance(name, str) or not _FACTORY_NAME.match(name):
        raise UnregisteredFactory(
            f"field {field!r}: {_show(name)} is not a factory name: a declaration names a factory registered in "
            f"entry-point group {group!r} (lower-case letters, digits, '.', '_' and '-'), never a module or an "
            f"object; to run other code, install a distribution that registers it, or "
            f"{_register_hint(group, 'my-factory')}", field=field, name=name if isinstance(name, str) else None,
            group=group)
    unique, ambiguous = _scan(group)
    if name in ambiguous:
        dists = ambiguous[name]
        raise AmbiguousFactory(
            f"field {field!r}: factory {name!r} is registered in entry-point group {group!r} by more than one "
            f"distribution ({', '.join(repr(d) for d in dists)}): uninstall all but the one the run was declared "
            f"with", field=field, name=name, group=group, distributions=dists)
    if name not in unique:
        wanted = ""
        dist, version = getattr(ref, "distribution", None), getattr(ref, "version", None)
        if isinstance(dist, str) and isinstance(version, str):
            wanted = f" {_show(f'{dist}=={version}')}"
        here = ", ".join(list(unique)[:20]) or "none"
        raise UnregisteredFactory(
            f"field {field!r}: no factory {name!r} is registered in entry-point group {group!r} on this machine "
            f"(registered here: {here}): install the distribution{wanted} that registers it, or "
            f"{_register_hint(group, name)}", field=field, name=name, group=group)
    return group, unique[name]


# --- the files digest ------------------------------------------------------------------------


def _top_level_names(dist: importlib.metadata.Distribution) -> list[str]:
    """The top-level import names of a distribution: ``top_level.txt``, else the first part of each ``RECORD`` path."""
    text = dist.read_text("top_level.txt")
    names: set[str] = set()
    if text is not None:
        names.update(text.split())
    else:
        for path in dist.files or ():
            parts = path.parts
            if not parts or parts[0] == "..":
                continue
            first = parts[0]
            if len(parts) > 1:
                if first == "__pycache__" or first.endswith((".dist-info", ".egg-info", ".data")):
                    continue
                names.add(first)
            elif first.endswith(".py"):
                names.add(first[:-3])
            elif first.endswith((".so", ".pyd")):
                names.add(first.split(".", 1)[0])
    return sorted(n for n in names if n.isidentifier() and not n.startswith("__editable__"))


def _roots(dist: importlib.metadata.Distribution) -> tuple[tuple[str, str, str], ...]:
    """``(name, kind, path)`` of what each top-level name resolves to, located without importing anything."""
    roots: list[tuple[str, str, str]] = []
    for name in _top_level_names(dist):
        try:
            spec = importlib.util.find_spec(name)  # a top-level name: locates it, runs none of its code
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        if spec.submodule_search_locations is not None:
            roots.extend((name, "package", os.fspath(loc)) for loc in spec.submodule_search_locations)
        elif spec.has_location and spec.origin:
            roots.append((name, "module", os.fspath(spec.origin)))
    return tuple(roots)


def _files(dist_name: str, roots: tuple[tuple[str, str, str], ...]) -> list[tuple[str, str]]:
    """``(relative POSIX path, absolute path)`` of every file under ``roots``, bounded by :data:`MAX_FILES`."""
    out: list[tuple[str, str]] = []

    def add(rel: str, path: str) -> None:
        out.append((rel, path))
        if len(out) > MAX_FILES:
            raise InputTooLarge(f"distribution {dist_name!r} has more than {MAX_FILES} files under its top-level "
                                f"packages: too many to pin")

    for name, kind, root in roots:
        if kind == "module":
            if os.path.isfile(root):
                add(os.path.basename(root), root)
            continue
        seen: set[tuple[int, int]] = set()
        stack = [(root, name)]
        while stack:
            directory, rel = stack.pop()
            try:
                st = os.stat(directory)
                if (st.st_dev, st.st_ino) in seen:  # a symlink loop, or a directory linked twice
                    continue
                seen.add((st.st_dev, st.st_ino))
                with os.scandir(directory) as it:
                    entries = sorted(it, key=lambda e: e.name, reverse=True)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise UntrustedCode(f"distribution {dist_name!r}: cannot read {directory!r}: {exc}") from None
            for entry in entries:
                if entry.is_dir():  # symlinks to directories are followed
                    if entry.name != "__pycache__":
                        stack.append((entry.path, f"{rel}/{entry.name}"))
                elif entry.is_file() and not entry.name.endswith(".pyc"):
                    add(f"{rel}/{entry.name}", entry.path)
    return out


def _file_sha256(dist_name: str, path: str) -> str:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise InputTooLarge(f"distribution {dist_name!r}: file {path!r} is {size} bytes, over the "
                                    f"{MAX_FILE_BYTES}-byte bound of a pinned file")
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise UntrustedCode(f"distribution {dist_name!r}: cannot read {path!r}: {exc}") from None


def distribution_digest(dist: importlib.metadata.Distribution | str) -> str:
    """Hex SHA-256 that pins the installed files of a distribution (a ``Distribution`` or its name).

    Exactly:

    1. The distribution's top-level import names are the whitespace-separated words of its
       ``top_level.txt``; without one, the first component of each path its ``RECORD`` lists (a directory,
       or a ``.py``/``.so``/``.pyd`` file by its module name), leaving out ``..``, ``__pycache__``,
       ``*.dist-info``, ``*.egg-info``, ``*.data`` and ``__editable__*``. Only valid identifiers count.
    2. Each name is located with ``importlib.util.find_spec(name)``, which finds what ``import name``
       would load without running any of it (this also follows setuptools editable installs, whose
       metadata lists no source files). A name that is not found contributes nothing.
    3. A module contributes its file, as its file name. A package contributes every regular file under
       each of its ``__path__`` directories, recursively (symlinks followed, a directory reached twice
       taken once), as ``<name>/<path relative to that directory>`` with ``/`` separators, leaving out
       ``__pycache__`` directories and ``*.pyc`` files. (A namespace package contributes every portion on
       ``sys.path``, other distributions' included.)
    4. The digest is the SHA-256 of the RFC 8785 canonical JSON of
       ``{"format": "redline-distribution-files/v1", "files": [[path, sha256], ...]}``, the pairs of each
       file's path and hex SHA-256 sorted.

    The metadata (``*.dist-info``) is not part of it: ``FactoryRef`` pins name and version separately.
    Refused: no file found (``UntrustedCode``), more than :data:`MAX_FILES` files or one over
    :data:`MAX_FILE_BYTES` (``InputTooLarge``). Results are cached for the life of the process by
    distribution name, version, location and the paths the top-level names resolve to; :func:`clear_cache`
    forgets them (files changed in place while a process runs are not seen until then).
    """
    if isinstance(dist, str):
        try:
            dist = importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            raise UntrustedCode(f"no distribution {dist!r} is installed") from None
    name = _dist_name(dist)
    roots = _roots(dist)
    key = (_normalise(name), dist.version, os.fspath(dist.locate_file("")), roots)
    with _digests_lock:
        cached = _digests.get(key)
    if cached is not None:
        return cached
    files = _files(name, roots)
    if not files:
        raise UntrustedCode(f"distribution {name!r} {dist.version}: none of its top-level modules "
                            f"({', '.join(_top_level_names(dist)) or 'none declared'}) is installed here, "
                            f"so there are no files to pin")
    listing = sorted([rel, _file_sha256(name, path)] for rel, path in files)
    for rel, _ in listing:
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            raise UntrustedCode(f"distribution {name!r}: file name {rel!r} is not UTF-8, so it cannot be pinned") \
                from None
    digest = hashlib.sha256(canonical_json({"format": DIGEST_FORMAT, "files": listing})).hexdigest()
    with _digests_lock:
        _digests[key] = digest
    return digest


def clear_cache() -> None:
    """Forget every digest :func:`distribution_digest` and every registry scan this process has cached."""
    with _digests_lock:
        _digests.clear()
    with _scans_lock:
        _SCANS.clear()


# --- pin, load, look up ----------------------------------------------------------------------


def pin(field: str, name: str, *, seed: int | None = None, **kwargs: Any) -> FactoryRef:
    """A ``FactoryRef`` for the factory ``name`` of ``field``, pinned to the installed distribution registering it.

    For ``field == "data_source"`` it is a ``DataSourceRef`` and ``seed`` is required; for any other field
    a ``seed`` is one of the factory's ``kwargs``. Raises :class:`~redline.errors.UntrustedCode` when the
    name is not registered (once) in the field's group. Nothing is imported.
    """
    if field == "data_source" and seed is None:
        raise TypeError("pin('data_source', ...) needs seed=")
    _, ep = _lookup(field, name)
    if ep.dist is None:
        raise UntrustedCode(f"field {field!r}: factory {name!r} is registered by no distribution that can be "
                            f"pinned", field=field, name=name, group=FACTORY_GROUPS[field])
    fields: dict[str, Any] = {"name": name, "distribution": _dist_name(ep.dist), "version": ep.dist.version,
                              "files_digest": distribution_digest(ep.dist)}
    try:
        if field == "data_source":
            return DataSourceRef(**fields, seed=seed, kwargs=kwargs)
        if seed is not None:
            kwargs["seed"] = seed
        return FactoryRef(**fields, kwargs=kwargs)
    except ValidationError as exc:
        raise MalformedInput(f"field {field!r}: cannot pin factory {name!r}: {exc}") from None


def registration_of(field: str, obj: Any) -> str | None:
    """The name registered in the group of ``field`` whose target is ``obj``, or None.

    An entry point whose ``module:attr`` is ``obj.__module__:obj.__qualname__`` matches without loading
    anything; otherwise entry points whose ``attr`` is ``obj.__qualname__`` (a re-export such as
    ``torch.optim:AdamW``) are loaded and compared by identity. Only code registered in that group is
    loaded; ambiguous names are never matched.
    """
    group = _group(field)
    entries = registered(group)
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    for name, ep in entries.items():
        if ep.attr is not None and f"{ep.module}:{ep.attr}" == f"{module}:{qualname}":
            return name
    for name, ep in entries.items():
        if ep.attr == qualname:
            try:
                target = ep.load()
            except Exception:  # registered but broken here: it is not obj
                continue
            if target is obj:
                return name
    return None


def load(field: str, ref: FactoryRef) -> Any:
    """The factory a declaration pins for ``field``, loaded only once its registration and pin check out.

    Refused with :class:`~redline.errors.UntrustedCode`, before anything is imported, when ``field`` has no
    group; ``ref.name`` is not registered in it, or is registered by more than one distribution
    (``UnregisteredFactory``, ``AmbiguousFactory``); or the distribution that registers it (names compared
    as PEP 503 normalises them), its version (exactly) or :func:`distribution_digest` differ from the pin
    (``FactoryPinMismatch``). Only then is the entry point loaded.
    """
    name = getattr(ref, "name", None)
    group, ep = _lookup(field, name, ref)
    assert isinstance(name, str)
    dist = ep.dist
    got = _dist_name(dist)
    want = getattr(ref, "distribution", None)
    if dist is None or not isinstance(want, str) or _normalise(got) != _normalise(want):
        raise FactoryPinMismatch(
            f"field {field!r}: factory {name!r} is pinned to distribution {_show(want)}, but here entry-point "
            f"group {group!r} has it from {got!r}: install {_show(f'{want}=={ref.version}')} in place of "
            f"{got!r} to re-execute this run", field=field, name=name, group=group, what="distribution",
            want=str(want), got=got)
    assert dist is not None
    if dist.version != ref.version:
        raise FactoryPinMismatch(
            f"field {field!r}: factory {name!r} is pinned to {got} {_show(ref.version)}, but {got} "
            f"{dist.version} is installed: install {_show(f'{got}=={ref.version}')} to re-execute this run",
            field=field, name=name, group=group, what="version", want=str(ref.version), got=dist.version)
    digest = distribution_digest(dist)
    if digest != ref.files_digest:
        raise FactoryPinMismatch(
            f"field {field!r}: factory {name!r} is pinned to {got} {dist.version} with files digest "
            f"{_show(ref.files_digest)}, but the installed files of {got} {dist.version} digest to {digest!r}: "
            f"the code here is not the code the run was declared with; reinstall it "
            f"(pip install --force-reinstall {got}=={dist.version}) or install the lab's exact build",
            field=field, name=name, group=group, what="files_digest", want=str(ref.files_digest), got=digest)
    try:
        return ep.load()
    except (ImportError, AttributeError) as exc:
        raise MalformedInput(f"field {field!r}: factory {name!r} ({ep.value} from {got} {dist.version}) "
                             f"cannot be loaded: {exc}") from None


__all__ = ["DIGEST_FORMAT", "MAX_FILES", "MAX_FILE_BYTES", "clear_cache", "distribution_digest", "load", "pin",
           "registered", "registration_of"]
