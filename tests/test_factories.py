"""Registered, pinned factories: only registered names load, only as pinned, and nothing else is ever imported.

Fake distributions and a sentinel module are written by hand into temporary directories put on ``sys.path``;
the sentinel records its import (a trace file and an environment variable), so a refusal proves that nothing
it names was imported.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
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
from redline.transcript import factories
from redline.transcript.factories import distribution_digest, load, pin, registered, registration_of

SENTINEL = "redline_sentinel_mod"
SENTINEL_ENV = "REDLINE_SENTINEL_IMPORTED"
OURS = {SENTINEL, "fakelab", "otherlab", "fakemod"}

#: redline's own registrations: (field, name, module, attribute).
OWN = [
    ("model_factory", "tinygpt", "redline.transcript.tinygpt", "make_model"),
    ("data_source", "tinygpt-text", "redline.transcript.tinygpt", "text_batches"),
    ("scheduler", "tinygpt-warmup-cosine", "redline.transcript.tinygpt", "make_scheduler"),
    ("train_step", "tinygpt-next-token", "redline.transcript.tinygpt", "train_step"),
    ("optimizer", "adamw", "torch.optim", "AdamW"),
    ("optimizer", "adam", "torch.optim", "Adam"),
    ("optimizer", "sgd", "torch.optim", "SGD"),
]
OWN_HF = [
    ("model_factory", "hf-from-config", "redline.transcript.hf", "model_from_config"),
    ("train_step", "hf-model-loss", "redline.transcript.hf", "model_loss"),
]

# What a hostile or careless transcript might name instead of a registered factory.
ATTACKS = ["os:system", "builtins:eval", "os", f"{SENTINEL}:boom", SENTINEL, f"{SENTINEL}.sub:boom",
           f"{SENTINEL}.boom", "no-such-factory", "", f"../{SENTINEL}", "OS:SYSTEM"]


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def make_site(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Make directories on ``sys.path``; afterwards they, the modules imported from them and every cache are gone."""
    made: list[str] = []
    before = set(sys.modules)

    def make(name: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        sys.path.insert(0, str(path))
        made.append(str(path))
        importlib.invalidate_caches()
        return path

    factories.clear_cache()
    yield make
    for path in made:
        if path in sys.path:
            sys.path.remove(path)
        sys.path_importer_cache.pop(path, None)
    for module in set(sys.modules) - before:
        if module.partition(".")[0] in OURS:
            del sys.modules[module]
    os.environ.pop(SENTINEL_ENV, None)
    importlib.invalidate_caches()
    factories.clear_cache()


@pytest.fixture
def site(make_site: Callable[[str], Path]) -> Path:
    """One directory on ``sys.path`` for fake distributions."""
    return make_site("site")


@pytest.fixture
def sentinel(tmp_path: Path, make_site: Callable[[str], Path]) -> Path:
    """A module ``redline_sentinel_mod`` on ``sys.path`` whose import writes the returned trace file."""
    trace = tmp_path / "sentinel-imported"
    where = make_site("sentinel")
    body = (f"import os, pathlib\npathlib.Path({str(trace)!r}).write_text('imported')\n"
            f"os.environ[{SENTINEL_ENV!r}] = '1'\n\ndef boom(*args, **kwargs):\n    return 'boom'\n")
    (where / f"{SENTINEL}.py").write_text(body)
    (where / SENTINEL).mkdir()  # also a package path 'redline_sentinel_mod.sub' could name
    importlib.invalidate_caches()
    return trace


@contextmanager
def nothing_imported(trace: Path | None = None) -> Iterator[None]:
    """Assert that the block imports no module outside the standard library and never the sentinel."""
    before = set(sys.modules)
    yield
    new = set(sys.modules) - before
    assert not {m for m in new if m.partition(".")[0] not in sys.stdlib_module_names}, new
    assert not new & OURS
    assert not OURS & set(sys.modules)
    assert SENTINEL_ENV not in os.environ
    if trace is not None:
        assert not trace.exists()


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_dist(site: Path, dist: str, version: str, *, package: str, entry_points: dict[str, dict[str, str]],
               body: str, top_level: bool = True, module: bool = False) -> Path:
    """Install a distribution by hand: a package (or single module) and its ``.dist-info``; returns the code path."""
    files: dict[str, bytes] = {}
    if module:
        code = site / f"{package}.py"
        files[f"{package}.py"] = body.encode()
    else:
        code = site / package / "__init__.py"
        code.parent.mkdir()
        files[f"{package}/__init__.py"] = body.encode()
    code.write_text(body)
    info = f"{dist}-{version}.dist-info"
    (site / info).mkdir()
    meta = {"METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
            "entry_points.txt": "".join(f"[{group}]\n" + "".join(f"{n} = {v}\n" for n, v in eps.items()) + "\n"
                                        for group, eps in entry_points.items())}
    if top_level:
        meta["top_level.txt"] = package + "\n"
    for name, text in meta.items():
        (site / info / name).write_text(text)
        files[f"{info}/{name}"] = text.encode()
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    (site / info / "RECORD").write_text(record + f"{info}/RECORD,,\n")
    importlib.invalidate_caches()
    return code


def fakelab_body(trace: Path) -> str:
    return (f"import pathlib\nwith pathlib.Path({str(trace)!r}).open('a') as f:\n    f.write('fakelab\\n')\n\n"
            "def make_model(**kwargs):\n    return ('fakelab-model', kwargs)\n\n"
            "class FakeOptimizer:\n    pass\n")


@pytest.fixture
def fakelab(site: Path, tmp_path: Path) -> Path:
    """``fakelab 1.0`` registering ``fake-model`` (``fakelab:make_model``); returns the trace its import writes."""
    trace = tmp_path / "fakelab-imported"
    write_dist(site, "fakelab", "1.0", package="fakelab", body=fakelab_body(trace),
               entry_points={"redline.models": {"fake-model": "fakelab:make_model"},
                             "redline.optimizers": {"fake-opt": "fakelab:FakeOptimizer"}})
    return trace


# --- attacks: refused before anything is imported -------------------------------------------------


@pytest.mark.parametrize("field", sorted(FACTORY_GROUPS))
@pytest.mark.parametrize("name", ATTACKS)
def test_load_refuses_unregistered_names_before_importing_anything(field: str, name: str, sentinel: Path) -> None:
    ref = FactoryRef.model_construct(name=name, distribution=SENTINEL, version="1.0", files_digest="0" * 64,
                                     kwargs={"command": f"python -c 'import {SENTINEL}'"})
    with nothing_imported(sentinel), pytest.raises(UnregisteredFactory) as info:
        load(field, ref)
    err = info.value
    assert (err.field, err.name, err.group) == (field, name, FACTORY_GROUPS[field])
    message = str(err)
    assert repr(field) in message and repr(name) in message and FACTORY_GROUPS[field] in message
    assert f'[project.entry-points."{FACTORY_GROUPS[field]}"]' in message
    assert isinstance(err, UntrustedCode) and isinstance(err, MalformedInput) and err.exit_code == 65


@pytest.mark.parametrize("name", ATTACKS)
def test_pin_refuses_unregistered_names_before_importing_anything(name: str, sentinel: Path) -> None:
    with nothing_imported(sentinel), pytest.raises(UnregisteredFactory):
        pin("model_factory", name)
    with nothing_imported(sentinel), pytest.raises(UnregisteredFactory):
        pin("data_source", name, seed=1)


@pytest.mark.parametrize("name", [n for n in ATTACKS if ":" in n or "/" in n or not n or n != n.lower()])
def test_a_declaration_cannot_even_spell_a_module_or_object(name: str) -> None:
    with pytest.raises(ValidationError):
        FactoryRef(name=name, distribution="redline", version="0.1.0", files_digest="0" * 64)


def test_the_message_says_how_to_register_and_what_to_install(site: Path) -> None:
    ref = FactoryRef(name="lab-gpt", distribution="lab-models", version="1.2", files_digest="0" * 64)
    with pytest.raises(UnregisteredFactory) as info:
        load("model_factory", ref)
    message = str(info.value)
    assert "no factory 'lab-gpt' is registered in entry-point group 'redline.models' on this machine" in message
    assert "install the distribution 'lab-models==1.2' that registers it" in message
    assert '[project.entry-points."redline.models"] lab-gpt = "package.module:function"' in message
    with pytest.raises(UnregisteredFactory) as info:
        load("model_factory", FactoryRef.model_construct(name="os:system", distribution="x", version="1",
                                                         files_digest="0" * 64, kwargs={}))
    assert "is not a factory name" in str(info.value) and "never a module or an object" in str(info.value)


@pytest.mark.parametrize("field", ["", "model", "os", "__class__", None])
def test_an_unknown_field_is_refused(field: str, sentinel: Path) -> None:
    ref = FactoryRef(name="tinygpt", distribution="redline", version="0.1.0", files_digest="0" * 64)
    with nothing_imported(sentinel):
        with pytest.raises(UntrustedCode, match="names no factory group"):
            load(field, ref)
        with pytest.raises(UntrustedCode, match="names no factory group"):
            pin(field, "tinygpt")
        with pytest.raises(UntrustedCode, match="names no factory group"):
            registration_of(field, object)


# --- a fake distribution: loads as pinned, refused otherwise ----------------------------------------


def test_registered_reads_metadata_only(fakelab: Path) -> None:
    with nothing_imported(fakelab):
        models = registered("redline.models")
    assert models["fake-model"].value == "fakelab:make_model"
    assert models["fake-model"].dist is not None and models["fake-model"].dist.metadata["Name"] == "fakelab"
    assert "fake-model" not in registered("redline.datasets")


def test_a_pinned_factory_loads_when_the_pin_matches(fakelab: Path) -> None:
    with nothing_imported(fakelab):
        ref = pin("model_factory", "fake-model", width=3)
    assert type(ref) is FactoryRef
    assert (ref.name, ref.distribution, ref.version, ref.kwargs) == ("fake-model", "fakelab", "1.0", {"width": 3})
    assert ref.files_digest == distribution_digest("fakelab") == distribution_digest(
        importlib.metadata.distribution("fakelab"))
    make_model = load("model_factory", FactoryRef.model_validate(ref.model_dump(mode="json")))
    assert make_model(**ref.kwargs) == ("fakelab-model", {"width": 3})
    assert fakelab.read_text() == "fakelab\n"


def test_the_distribution_name_is_compared_as_pep_503_normalises_it(fakelab: Path) -> None:
    ref = pin("model_factory", "fake-model")
    for spelling in ("FakeLab", "fakelab", "FAKELAB"):
        assert load("model_factory", ref.model_copy(update={"distribution": spelling}))()[0] == "fakelab-model"


@pytest.mark.parametrize("where", ["in place", "another install"])
def test_one_changed_byte_is_refused_before_import(where: str, fakelab: Path, site: Path,
                                                   make_site: Callable[[str], Path]) -> None:
    ref = pin("model_factory", "fake-model")
    code = site / "fakelab" / "__init__.py"
    changed = bytearray(code.read_bytes())
    changed[-2] ^= 0x01  # 'pass' -> 'pasr': one byte of one file
    if where == "in place":
        code.write_bytes(bytes(changed))
        factories.clear_cache()  # a process sees files changed under it only once its cache is cleared
    else:
        sys.path.remove(str(site))
        other = make_site("site2")
        write_dist(other, "fakelab", "1.0", package="fakelab", body=changed.decode(),
                   entry_points={"redline.models": {"fake-model": "fakelab:make_model"}})
    with nothing_imported(fakelab), pytest.raises(FactoryPinMismatch) as info:
        load("model_factory", ref)
    err = info.value
    assert (err.what, err.want, err.field, err.name, err.group) == (
        "files_digest", ref.files_digest, "model_factory", "fake-model", "redline.models")
    assert err.got == distribution_digest("fakelab") != ref.files_digest
    assert "not the code the run was declared with" in str(err) and "pip install --force-reinstall" in str(err)
    if where == "another install":
        sys.path.insert(0, str(site))  # for make_site's clean-up


def test_the_digest_ignores_bytecode_but_not_other_files(fakelab: Path, site: Path) -> None:
    before = distribution_digest("fakelab")
    (site / "fakelab" / "__pycache__").mkdir()
    (site / "fakelab" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0bytecode")
    (site / "fakelab" / "stale.pyc").write_bytes(b"\0bytecode")
    factories.clear_cache()
    assert distribution_digest("fakelab") == before
    (site / "fakelab" / "data.json").write_text("{}")
    factories.clear_cache()
    assert distribution_digest("fakelab") != before


def test_the_digest_is_the_documented_listing(fakelab: Path, site: Path) -> None:
    (site / "fakelab" / "sub").mkdir()
    (site / "fakelab" / "sub" / "m.py").write_text("X = 1\n")
    factories.clear_cache()
    listing = sorted([f"fakelab/{rel}", hashlib.sha256((site / "fakelab" / rel).read_bytes()).hexdigest()]
                     for rel in ("__init__.py", "sub/m.py"))
    expected = hashlib.sha256(canonical_json({"format": "redline-distribution-files/v1", "files": listing}))
    assert distribution_digest("fakelab") == expected.hexdigest()


def test_a_single_module_distribution_without_top_level_txt(site: Path, tmp_path: Path) -> None:
    trace = tmp_path / "fakemod-imported"
    body = f"import pathlib\npathlib.Path({str(trace)!r}).write_text('x')\n\ndef make():\n    return 7\n"
    code = write_dist(site, "fakemod", "2.0", package="fakemod", body=body, module=True, top_level=False,
                      entry_points={"redline.datasets": {"fake-data": "fakemod:make"}})
    listing = [["fakemod.py", hashlib.sha256(code.read_bytes()).hexdigest()]]
    expected = hashlib.sha256(canonical_json({"format": "redline-distribution-files/v1", "files": listing}))
    with nothing_imported(trace):
        ref = pin("data_source", "fake-data", seed=5, n=2)
    assert isinstance(ref, DataSourceRef) and ref.seed == 5 and ref.kwargs == {"n": 2}
    assert ref.files_digest == expected.hexdigest()
    assert load("data_source", ref)() == 7


def test_pin_of_a_data_source_needs_a_seed(fakelab: Path) -> None:
    with pytest.raises(TypeError, match="seed"):
        pin("data_source", "tinygpt-text")
    assert pin("model_factory", "fake-model", seed=3).kwargs == {"seed": 3}


def test_a_different_version_is_refused_before_import(fakelab: Path, site: Path,
                                                      make_site: Callable[[str], Path]) -> None:
    ref = pin("model_factory", "fake-model")
    with nothing_imported(fakelab), pytest.raises(FactoryPinMismatch) as info:
        load("model_factory", ref.model_copy(update={"version": "1.1"}))
    assert (info.value.what, info.value.want, info.value.got) == ("version", "1.1", "1.0")
    assert "install 'fakelab==1.1'" in str(info.value)
    # the same code installed as another version is not the pinned one either
    sys.path.remove(str(site))
    other = make_site("site2")
    write_dist(other, "fakelab", "1.0.post1", package="fakelab", body=fakelab_body(fakelab),
               entry_points={"redline.models": {"fake-model": "fakelab:make_model"}})
    with nothing_imported(fakelab), pytest.raises(FactoryPinMismatch) as info:
        load("model_factory", ref)
    assert (info.value.what, info.value.want, info.value.got) == ("version", "1.0", "1.0.post1")
    sys.path.insert(0, str(site))


def test_a_different_distribution_is_refused_before_import(fakelab: Path) -> None:
    ref = pin("model_factory", "fake-model")
    with nothing_imported(fakelab), pytest.raises(FactoryPinMismatch) as info:
        load("model_factory", ref.model_copy(update={"distribution": "lab-models"}))
    assert (info.value.what, info.value.want, info.value.got) == ("distribution", "lab-models", "fakelab")


def test_a_name_hijacked_by_another_distribution_is_refused_before_import(
        make_site: Callable[[str], Path], fakelab: Path, site: Path, sentinel: Path) -> None:
    ref = pin("model_factory", "fake-model")
    sys.path.remove(str(site))  # fakelab is gone; otherlab registers the same name, pointing elsewhere
    other = make_site("site2")
    write_dist(other, "otherlab", "1.0", package="otherlab", body=f"import {SENTINEL}\n",
               entry_points={"redline.models": {"fake-model": f"{SENTINEL}:boom"}})
    with nothing_imported(sentinel), pytest.raises(FactoryPinMismatch) as info:
        load("model_factory", ref)
    assert (info.value.what, info.value.want, info.value.got) == ("distribution", "fakelab", "otherlab")
    sys.path.insert(0, str(site))


def test_a_name_two_distributions_register_is_ambiguous(fakelab: Path, site: Path, sentinel: Path) -> None:
    ref = pin("model_factory", "fake-model")
    write_dist(site, "otherlab", "3.0", package="otherlab", body=f"import {SENTINEL}\n",
               entry_points={"redline.models": {"fake-model": f"{SENTINEL}:boom"}})
    assert "fake-model" not in registered("redline.models")
    for attempt in (lambda: load("model_factory", ref), lambda: pin("model_factory", "fake-model")):
        with nothing_imported(sentinel), pytest.raises(AmbiguousFactory) as info:
            attempt()
        assert info.value.distributions == ["fakelab", "otherlab"]
        assert "'fakelab', 'otherlab'" in str(info.value)
    assert not fakelab.exists()
    assert registration_of("model_factory", object) is None


def test_the_digest_is_bounded(fakelab: Path, site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (site / "fakelab" / "more.py").write_text("")
    monkeypatch.setattr(factories, "MAX_FILES", 1)
    with pytest.raises(InputTooLarge, match="more than 1 files"):
        distribution_digest("fakelab")
    monkeypatch.setattr(factories, "MAX_FILES", 100_000)
    monkeypatch.setattr(factories, "MAX_FILE_BYTES", 10)
    with pytest.raises(InputTooLarge, match="over the 10-byte bound"):
        distribution_digest("fakelab")


def test_a_distribution_with_no_files_here_cannot_be_pinned(site: Path) -> None:
    write_dist(site, "fakelab", "1.0", package="fakelab", body="",
               entry_points={"redline.models": {"fake-model": "fakelab:make_model"}})
    (site / "fakelab" / "__init__.py").unlink()
    (site / "fakelab").rmdir()
    importlib.invalidate_caches()
    with pytest.raises(UntrustedCode, match="no files to pin"):
        pin("model_factory", "fake-model")
    with pytest.raises(UntrustedCode, match="no distribution 'no-such-dist'"):
        distribution_digest("no-such-dist")


def test_registration_of_a_fake_factory_needs_no_import(fakelab: Path) -> None:
    class Stand:
        __module__ = "fakelab"
        __qualname__ = "FakeOptimizer"

    with nothing_imported(fakelab):
        assert registration_of("optimizer", Stand) == "fake-opt"
        assert registration_of("model_factory", Stand) is None


# --- redline's own factories ---------------------------------------------------------------------


def test_redline_registers_its_own_factories() -> None:
    for field, name, module, attr in OWN + OWN_HF:
        ep = registered(FACTORY_GROUPS[field])[name]
        assert ep.value == f"{module}:{attr}" and ep.dist is not None and ep.dist.metadata["Name"] == "redline"


@pytest.mark.parametrize(("field", "name", "module", "attr"), OWN)
def test_pin_of_redline_factories_round_trips_through_load(field: str, name: str, module: str, attr: str) -> None:
    pytest.importorskip("torch")
    ref = pin(field, name, seed=7) if field == "data_source" else pin(field, name, lr=0.1)
    assert (ref.distribution, ref.version) == ("redline", importlib.metadata.version("redline"))
    assert ref.files_digest == distribution_digest("redline")
    again = type(ref).model_validate(ref.model_dump(mode="json"))
    assert load(field, again) is getattr(importlib.import_module(module), attr)


def test_registration_of_torch_optimizers() -> None:
    torch = pytest.importorskip("torch")
    from redline.transcript import tinygpt

    assert registration_of("optimizer", torch.optim.AdamW) == "adamw"
    assert registration_of("optimizer", torch.optim.Adam) == "adam"
    assert registration_of("optimizer", torch.optim.SGD) == "sgd"
    assert registration_of("optimizer", torch.optim.RMSprop) is None
    assert registration_of("model_factory", tinygpt.make_model) == "tinygpt"
    assert registration_of("model_factory", torch.optim.AdamW) is None
    assert registration_of("optimizer", 3) is None


def test_distribution_digest_is_cached() -> None:
    first = distribution_digest("redline")
    assert len(first) == 64 and int(first, 16) >= 0
    assert all(distribution_digest("redline") == first for _ in range(100))


def test_factories_imports_no_torch() -> None:
    code = "import sys, redline.transcript.factories; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- transformers: only transformers' own model classes -------------------------------------------


def test_hf_factories_round_trip_and_model_class_is_restricted(sentinel: Path) -> None:
    pytest.importorskip("transformers")
    hf = importlib.import_module("redline.transcript.hf")
    for field, name, _, attr in OWN_HF:
        assert load(field, pin(field, name)) is getattr(hf, attr)
    bad = ["os:system", "builtins:eval", f"{SENTINEL}:boom", f"{SENTINEL}.sub:Model", "os", "",
           "transformers", "transformers:", "transformers:os", "transformers:sys", "transformers:_LazyModule",
           "transformers.models.gpt2.modeling_gpt2:GPT2LMHeadModel", "transformers:GPT2LMHeadModel.x",
           "transformers:pipeline", "transformers:GPT2Config", "transformers:PreTrainedModel",
           "transformers:NoSuchModel", f"transformers:{SENTINEL}"]
    for model_class in bad:
        with pytest.raises(MalformedInput, match="model_class"):
            hf.model_from_config(model_class, {"n_layer": 1})
    assert SENTINEL not in sys.modules and not sentinel.exists() and SENTINEL_ENV not in os.environ
    model = hf.model_from_config("transformers:GPT2LMHeadModel",
                                 {"n_layer": 1, "n_head": 2, "n_embd": 8, "vocab_size": 16, "n_positions": 8})
    assert type(model).__name__ == "GPT2LMHeadModel"
