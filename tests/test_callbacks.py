"""nutpie's compiled model with cacheable C callbacks (socialgradient.sampling._nutpie): the fast
path, its public fallback, its switch and the bounded cache on disk."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import nutpie
import nutpie.compile_pymc as cp
import pytensor
import pytest

from socialgradient.sampling import _nutpie as callbacks

DRAWS = dict(draws=80, tune=80, chains=2, seed=3, progress_bar=False)

#: Builds the small model and compiles it; shared by the tests and the subprocess.
BUILD = textwrap.dedent("""
    from socialgradient.data.synthetic.england import simulate
    from socialgradient.model.data import NeighbourhoodData
    from socialgradient.model.build import build_model
    from socialgradient.spec import Spec

    def small_model(seed=5, las=slice(0, 6)):
        t = simulate(seed=seed, scale=0.2).table
        t = t[t["la"].isin(t["la"].unique()[las])].reset_index(drop=True)
        data = NeighbourhoodData.from_table(t, "referrals")
        return build_model(data, Spec("referrals", la_effects="centred"))
""")
namespace: dict = {}
exec(BUILD, namespace)
small_model = namespace["small_model"]
OTHER_LAS = slice(6, 12)  # six other LAs: other coordinates, the same code


def key(model):
    from socialgradient.sampling.compiled import code_key

    return code_key(model)


def b_w(compiled) -> np.ndarray:
    return nutpie.sample(compiled, **DRAWS)["posterior"]["b_w"].values


def test_the_same_draws_as_nutpies_own_compilation():
    ours = callbacks.compile_model(small_model(), key(small_model()))
    with pytensor.config.change_flags(**callbacks.NUMERICS):  # the flags ours compiles under
        theirs = nutpie.compile_pymc_model(small_model())
    np.testing.assert_array_equal(b_w(ours), b_w(theirs))


def test_the_trace_stores_only_what_the_posterior_reports():
    """The sampler-side forms (the LKJ factor's, here) are computed but never stored: every
    variable the posterior reports has the public compilation's draws, and nothing else is
    kept. (For England's BYM2 model this is two thirds of every draw.)"""
    from socialgradient.sampling.fit import derived, reported

    model = small_model()
    leave = callbacks.unstored(model)
    assert leave  # the LKJ factor's forms
    assert all(derived(n) or n.endswith("__") for n in leave)  # or their value variables
    ours = callbacks.compile_model(model, key(model))
    with pytensor.config.change_flags(**callbacks.NUMERICS):
        theirs = nutpie.compile_pymc_model(small_model())
    assert not set(leave) & set(ours.shape_info[0])
    assert ours.n_expanded < theirs.n_expanded
    assert ours.shapes.keys() >= {v.name for v in model.value_vars}  # with_data's starts
    mine = nutpie.sample(ours, **DRAWS)["posterior"].to_dataset()
    public = reported(nutpie.sample(theirs, **DRAWS)["posterior"].to_dataset())
    assert set(mine.data_vars) == set(public.data_vars)
    for v in public.data_vars:
        np.testing.assert_array_equal(mine[v].values, public[v].values)


def test_a_new_process_loads_the_callbacks_from_disk_and_samples_the_same_draws():
    model = small_model()
    here = b_w(callbacks.compile_model(model, key(model)))  # compiles (or loads) and caches
    script = BUILD + textwrap.dedent(f"""
        import json, nutpie
        from socialgradient.sampling import _nutpie as callbacks
        from socialgradient.sampling.compiled import code_key
        model = small_model()
        c = callbacks.compile_model(model, code_key(model))
        draws = nutpie.sample(c, **{DRAWS!r})["posterior"]["b_w"].values
        print(json.dumps({{"built": c.logp_func is not None,
                          "hits": [c.compiled_logp_func.cache_hits,
                                    c.compiled_expand_func.cache_hits],
                          "draws": draws.tolist()}}))
    """)
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    there = json.loads(run.stdout.strip().splitlines()[-1])
    assert there["hits"] == [1, 1]  # both callbacks loaded, not compiled
    assert not there["built"]  # nor PyTensor's functions built: the layout file sufficed
    np.testing.assert_array_equal(np.asarray(there["draws"]), here)


def test_with_data_samples_what_a_compilation_for_that_data_does():
    first, other = small_model(), small_model(seed=6)
    assert key(first) == key(other)  # the same geography, other counts: same structure
    compiled = callbacks.compile_model(first, key(first))
    reused = callbacks.with_data(compiled, other)
    assert not np.array_equal(reused.shared_data["rows_y"], compiled.shared_data["rows_y"])
    # LA effects start at their means, which depend on the data (m_c)
    assert not np.array_equal(reused.initial_point_func(1), compiled.initial_point_func(1))
    np.testing.assert_array_equal(b_w(reused), b_w(callbacks.compile_model(other, key(other))))


def test_with_data_and_user_data_refuse_missing_data_and_wrong_ranks():
    model = small_model()
    compiled = callbacks.compile_model(model, key(model))
    needs_more = dataclasses.replace(
        compiled, shared_data={**compiled.shared_data, "gone": np.zeros(2)}
    )
    gone = type("Shared", (), {"name": "gone"})()
    needs_more = dataclasses.replace(
        needs_more, shared_var_keys={**compiled.shared_var_keys, gone: "gone"}
    )
    with pytest.raises(KeyError, match="model lacks the shared variables \\['gone'\\]"):
        callbacks.with_data(needs_more, model)
    values = {var: compiled.shared_data[name] for var, name in compiled.shared_var_keys.items()}
    rows_y = next(v for v in values if v.name == "rows_y")
    values[rows_y] = np.zeros((2, 2), dtype=np.int32)
    with pytest.raises(ValueError, match="'rows_y': expected 1-d int32, got 2-d int32"):
        callbacks.user_data(list(values), values)


def test_the_entry_is_named_by_code_and_versions_and_runs_the_bytes_given(tmp_path):
    assert callbacks._name("code a") == callbacks._name("code a") != callbacks._name("code b")
    assert callbacks._name("code a").startswith(callbacks.PREFIX)
    path = tmp_path / "callbacks_x" / "callbacks_x.py"
    path.parent.mkdir()
    path.write_text("N = 2\n")  # the file differs: the bytes given are executed, not it
    module = callbacks._exec(b"N = 1\n", path)
    assert (module.N, module.__file__, module.__name__) == (
        1,
        str(path),
        "socialgradient_callbacks_x",
    )


def _fake_entry(where, name, used: float, size: int = 1000):
    """A cache entry as the fast path leaves it (source, layout, numba's cache, marker),
    last used at ``used``."""
    entry = where / name
    (entry / "__pycache__").mkdir(parents=True)
    (entry / f"{name}.py").write_text("N = 1\n")
    (entry / callbacks.LAYOUT).write_text("{}")
    (entry / "__pycache__" / f"{name}.logp-20.py312.nbc").write_bytes(b"x" * size)
    (entry / callbacks.MARKER).touch()
    os.utime(entry / callbacks.MARKER, (used, used))
    return entry


def test_without_numbas_cache_the_layout_alone_is_not_trusted(tmp_path, monkeypatch):
    """The layout file without numba's cached callbacks (cleared, another machine): the
    callbacks are built and compiled again, not loaded half-way. Building prunes the cache
    to its bound (least recently used first); loading marks the entry used."""
    import shutil

    monkeypatch.setattr(callbacks, "folder", lambda: tmp_path)
    monkeypatch.setenv(callbacks.ENV_ENTRIES, "2")
    now = time.time()
    for k in range(3):  # older entries, the last one the most recently used
        _fake_entry(tmp_path, f"callbacks_old{k}", used=now - 1000 + k)
    k = key(small_model())
    first = callbacks.compile_model(small_model(), k)
    assert first.logp_func is not None
    entry = tmp_path / callbacks._name(k)
    assert (entry / callbacks.LAYOUT).is_file()
    # pruned to 2 entries: the new one and the most recently used old one
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([entry.name, "callbacks_old2"])
    os.utime(entry / callbacks.MARKER, (now - 5000, now - 5000))
    loaded = callbacks.compile_model(small_model(), k)
    assert loaded.logp_func is None  # from the cache
    assert (entry / callbacks.MARKER).stat().st_mtime > now - 60  # marked used on load
    shutil.rmtree(entry / "__pycache__")
    rebuilt = callbacks.compile_model(small_model(), k)
    assert rebuilt.logp_func is not None
    np.testing.assert_array_equal(b_w(rebuilt), b_w(loaded))


# --- the fallback to nutpie's public compilation ----------------------------------------


@pytest.fixture(scope="module")
def made():
    """What nutpie's ``_make_functions`` gives for the small model (built once)."""
    model = small_model(las=OTHER_LAS)
    return cp._make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=callbacks._pymc_initial_point(model),
    )


@pytest.fixture(scope="module")
def fallback(made, tmp_path_factory):
    """The small model (other LAs) compiled while ``_make_functions`` gives a 6-tuple: the
    warnings, the compilation, and the models nutpie's public compile was asked for."""
    asked = []
    public, real = nutpie.compile_pymc_model, cp._make_functions

    def spy(model, **kwargs):  # nutpie's public compilation, with nutpie's own functions
        asked.append(model)
        with pytest.MonkeyPatch.context() as inside:
            inside.setattr(cp, "_make_functions", real)
            return public(model, **kwargs)

    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mp.setattr(callbacks, "folder", lambda: tmp_path_factory.mktemp("fallback"))
        mp.setattr(cp, "_make_functions", lambda *a, **k: made[:6])
        mp.setattr(nutpie, "compile_pymc_model", spy)
        model = small_model(las=OTHER_LAS)
        compiled = callbacks.compile_model(model, key(model))
    return caught, compiled, asked, model


def test_a_broken_fast_path_warns_once_and_samples_nutpies_public_compilation(fallback):
    caught, compiled, asked, model = fallback
    ours = [w for w in caught if issubclass(w.category, callbacks.FastPathWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert "gave tuple (6), not the 7-tuple" in str(ours[0].message)
    assert asked == [model]  # nutpie's public compile_pymc_model, for this model
    assert not callbacks._is_ours(compiled)
    # the fast path's draws (from the cache, or built) equal the fallback's, to the bit
    other_las = small_model(las=OTHER_LAS)
    fast = callbacks.compile_model(other_las, key(other_las))
    np.testing.assert_array_equal(b_w(compiled), b_w(fast))


def test_with_data_serves_nutpies_public_compilation_too(fallback):
    """compiled.py reuses whatever compile_model gave, the fallback's included: nutpie's own
    with_data and this model's starting points, the draws of a compilation for it."""
    _, compiled, _, _ = fallback
    other = small_model(seed=6, las=OTHER_LAS)
    reused = callbacks.with_data(compiled, other)
    assert not callbacks._is_ours(reused)
    assert not np.array_equal(reused.initial_point_func(1), compiled.initial_point_func(1))
    np.testing.assert_array_equal(b_w(reused), b_w(callbacks.compile_model(other, key(other))))


def _ok_make_functions(made):
    return lambda *a, **k: made


def _without(name):
    return lambda mp, made: mp.delattr(cp, name)


def _changed_signature(mp, made):
    def _make_functions(model, *, mode, compute_grad, pymc_initial_point_fn):  # no join_expanded
        return made

    mp.setattr(cp, "_make_functions", _make_functions)


def _raising(mp, made):
    def _make_functions(*args, **kwargs):
        raise RuntimeError("PyTensor could not compile")

    mp.setattr(cp, "_make_functions", _make_functions)


def _bad_layout(mp, made):
    mp.setattr(cp, "_make_functions", lambda *a, **k: (made[0] + 1, *made[1:]))


def _failing_numba(mp, made):
    mp.setattr(cp, "_make_functions", _ok_make_functions(made))

    def _cfuncs(module):
        raise TypeError("numba failed in nopython mode")

    mp.setattr(callbacks, "_cfuncs", _cfuncs)


def _other_abi(mp, made):
    def _make_model(self, init_mean):  # hands the callbacks something else as user data
        return self.user_data_pointer

    mp.setattr(cp.CompiledPyMCModel, "_make_model", _make_model)


def _missing_field(mp, made):
    @dataclasses.dataclass(frozen=True)
    class Renamed:
        n_dim: int

    mp.setattr(cp, "CompiledPyMCModel", Renamed)


@pytest.mark.parametrize(
    ("breaks", "says"),
    [
        (_without("_make_functions"), "nutpie.compile_pymc._make_functions is missing"),
        (_without("_prepare_dims_and_coords"), "_prepare_dims_and_coords is missing"),
        (_changed_signature, "_make_functions does not take"),
        (_other_abi, "no longer passes"),
        (_missing_field, "CompiledPyMCModel lacks the fields"),
        (_raising, "RuntimeError: PyTensor could not compile"),
        (_bad_layout, "the layout does not add up"),
        (_failing_numba, "TypeError: numba failed in nopython mode"),
    ],
    ids=[
        "no-_make_functions",
        "no-_prepare_dims_and_coords",
        "signature",
        "user-data-abi",
        "fields",
        "raises",
        "layout",
        "numba",
    ],
)
def test_every_failure_falls_back_with_one_warning(breaks, says, made, tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks, "folder", lambda: tmp_path)
    public = []
    monkeypatch.setattr(callbacks, "_public", lambda model: public.append(model) or "public")
    breaks(monkeypatch, made)
    model = small_model(las=OTHER_LAS)
    with pytest.warns(callbacks.FastPathWarning) as caught:
        assert callbacks.compile_model(model, key(model)) == "public"
    ours = [str(w.message) for w in caught if w.category is callbacks.FastPathWarning]
    assert len(ours) == 1, ours
    assert says in ours[0]
    assert public == [model]


def test_the_probe_passes_on_the_installed_versions():
    assert callbacks.probe() is None


def test_the_switch_turns_the_fast_path_off_without_a_warning(monkeypatch):
    monkeypatch.setenv(callbacks.ENV_SWITCH, "0")
    monkeypatch.delattr(cp, "_make_functions")  # would warn if the fast path were tried
    public = []
    monkeypatch.setattr(callbacks, "_public", lambda model: public.append(model) or "public")
    model = small_model()
    assert callbacks.compile_model(model, key(model)) == "public"  # pytest: any warning is an error
    assert public == [model]
    for off in ("false", "OFF", " no "):
        monkeypatch.setenv(callbacks.ENV_SWITCH, off)
        assert not callbacks.enabled()
    monkeypatch.setenv(callbacks.ENV_SWITCH, "1")
    assert callbacks.enabled()


# --- the cache on disk: one entry per code, bounded ---------------------------------------


def test_tables_of_other_las_share_one_cache_entry(fallback):
    """Six other LAs: other coordinates, the same machine code. The second model loads the
    first one's entry (no PyTensor function built, numba's cached callbacks), labels its
    draws with its own LAs, and draws what nutpie's public compilation of it draws."""
    _, public, _, _ = fallback
    first, second = small_model(), small_model(las=OTHER_LAS)
    assert set(first.coords["la"]).isdisjoint(second.coords["la"])
    assert key(first) == key(second)
    callbacks.compile_model(first, key(first))
    compiled = callbacks.compile_model(second, key(second))
    # loaded from the first one's entry (the cache is shared with other processes, so the
    # test asks where the callbacks came from rather than counting the folder's entries)
    entry = callbacks.private_folder() / callbacks._name(key(first))
    source = compiled.compiled_logp_func._pyfunc.__code__.co_filename
    assert os.path.dirname(source) == str(entry)
    assert compiled.logp_func is None
    assert [compiled.compiled_logp_func.cache_hits, compiled.compiled_expand_func.cache_hits] == [
        1,
        1,
    ]
    tree = nutpie.sample(compiled, **DRAWS)
    assert list(tree["posterior"]["la_effect"].coords["la"].values) == list(second.coords["la"])
    np.testing.assert_array_equal(tree["posterior"]["b_w"].values, b_w(public))


def test_the_cache_never_exceeds_its_bounds(tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks, "folder", lambda: tmp_path)
    monkeypatch.setenv(callbacks.ENV_ENTRIES, "4")
    monkeypatch.setenv(callbacks.ENV_MB, str(3500 / 2**20))  # three 1000-byte entries
    now = time.time()
    for k in range(40):
        name = f"callbacks_{k:02d}"
        _fake_entry(tmp_path, name, used=now - 100 + k)
        callbacks.prune(keep=name)
        found = callbacks.entries()
        assert len(found) <= 3
        assert sum(size for _, size, _ in found) <= 3500
        assert name in [p.name for _, _, p in found]  # the entry just written stays
    # the most recently used stay
    assert [p.name for _, _, p in callbacks.entries()] == [
        "callbacks_39",
        "callbacks_38",
        "callbacks_37",
    ]
    monkeypatch.setenv(callbacks.ENV_MB, "256")
    callbacks.prune()
    assert len(callbacks.entries()) == 3
    monkeypatch.setenv(callbacks.ENV_ENTRIES, "1")
    assert callbacks.prune() == ["callbacks_38", "callbacks_37"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(callbacks.TOMBSTONE)]


def test_pruning_removes_tombstones_stale_builds_and_the_old_location(tmp_path, monkeypatch):
    root, old_location = tmp_path / "cache", tmp_path / "pytensor" / "nutpie_callbacks"
    monkeypatch.setattr(callbacks, "folder", lambda: root)
    monkeypatch.setattr(callbacks, "_old_folder", lambda: old_location)
    (old_location / "callbacks_a").mkdir(parents=True)
    (old_location / "callbacks_a.py").write_text("x")
    root.mkdir()
    stale = time.time() - 2 * callbacks.STALE_S
    for name in (f"{callbacks.STAGING}callbacks_a-1", f"{callbacks.STAGING}callbacks_b-2"):
        (root / name / "__pycache__").mkdir(parents=True)
    os.utime(root / f"{callbacks.STAGING}callbacks_a-1", (stale, stale))
    (root / f"{callbacks.TOMBSTONE}callbacks_c-1" / "__pycache__").mkdir(parents=True)
    callbacks.prune()
    # a build under way (recent) is kept; the earlier location is gone with its parent kept
    assert sorted(p.name for p in root.iterdir()) == [f"{callbacks.STAGING}callbacks_b-2"]
    assert not old_location.exists()
    assert old_location.parent.is_dir()
    monkeypatch.setattr(callbacks, "_old_folder", lambda: root)  # the cache is there now
    callbacks.prune()
    assert root.is_dir()


def test_an_entry_removed_while_loading_is_generated_again(tmp_path, monkeypatch):
    """Another process prunes the entry between this one reading its layout and loading
    numba's callbacks: this one builds it again, without a warning; an entry removed while
    building makes it try again."""
    monkeypatch.setattr(callbacks, "folder", lambda: tmp_path)
    name = callbacks._name("some code")
    entry = tmp_path / name
    entry.mkdir()
    model = small_model()
    (entry / f"{name}.py").write_text("def logp(): pass\ndef expand(): pass\n")
    (entry / callbacks.LAYOUT).write_text(
        json.dumps(
            {
                "n_dim": 1,
                "n_expanded": 1,
                "names": ["a"],
                "slices": [[0, 1]],
                "shapes": [[]],
                "free_names": ["a"],
                "free_shapes": [[]],
                "shared": [],
                "reparameterized": [],
            }
        )
    )
    callbacks._seal(entry, name)  # a whole entry, as published

    def pruned_meanwhile(module):
        callbacks._remove(entry)
        raise FileNotFoundError(entry)

    monkeypatch.setattr(callbacks, "_cfuncs", pruned_meanwhile)
    builds = []

    def build(model_, name_):
        builds.append(name_)
        if len(builds) == 1:  # removed while building, the first time
            raise FileNotFoundError(entry)
        return "built"

    monkeypatch.setattr(callbacks, "_build", build)
    assert callbacks._fast(model, "some code") == "built"
    assert builds == [name, name]
    assert list(tmp_path.iterdir()) == []  # removed whole: no tombstone left


def test_layouts_that_do_not_add_up_are_refused():
    good = {
        "n_dim": 3,
        "n_expanded": 5,
        "names": ["a", "b", "c"],
        "slices": [[0, 1], [1, 3], [3, 5]],
        "shapes": [[], [2], [2]],
        "free_names": ["a", "b"],
        "free_shapes": [[], [2]],
        "shared": [],
        "reparameterized": [],
    }
    callbacks._check_layout(good)
    for bad in (
        {"n_dim": 4},
        {"n_expanded": 6},
        {"slices": [[0, 1], [1, 3], [4, 6]]},
        {"shapes": [[], [3], [2]]},
        {"free_names": ["b", "a"]},
        {"names": ["a"]},
    ):
        with pytest.raises(callbacks._Mismatch):
            callbacks._check_layout({**good, **bad})
    with pytest.raises(callbacks._Mismatch):
        callbacks._check_layout({k: v for k, v in good.items() if k != "shapes"})


def test_bounds_come_from_the_environment(monkeypatch, caplog):
    monkeypatch.delenv(callbacks.ENV_ENTRIES, raising=False)
    monkeypatch.delenv(callbacks.ENV_MB, raising=False)
    assert callbacks.limits() == (32, 256 * 2**20)
    monkeypatch.setenv(callbacks.ENV_ENTRIES, "8")
    monkeypatch.setenv(callbacks.ENV_MB, "0.5")
    assert callbacks.limits() == (8, 2**19)
    monkeypatch.setenv(callbacks.ENV_ENTRIES, "many")
    assert callbacks.limits() == (32, 2**19)
    assert "SOCIALGRADIENT_NUTPIE_CACHE_ENTRIES='many'" in caplog.text


# --- a private cache, checked before anything in it runs ----------------------------------

POSIX = os.name == "posix"
posix_only = pytest.mark.skipif(not POSIX, reason="owners and modes: POSIX")


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """An entry for the small model as the fast path publishes it (built once, in a folder
    of its own), and the draws of the compilation that built it."""
    root = tmp_path_factory.mktemp("sealed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(callbacks, "folder", lambda: root)
        model = small_model()
        k = key(model)  # (before compiling: nutpie's compilation adds to the model)
        compiled = callbacks.compile_model(model, k)
    assert compiled.logp_func is not None  # built here
    return root / callbacks._name(k), b_w(compiled)


@pytest.fixture
def entry(sealed, tmp_path, monkeypatch):
    """A copy of the sealed entry (modes kept) in this test's own cache folder."""
    import shutil

    monkeypatch.setattr(callbacks, "folder", lambda: tmp_path)
    copy = tmp_path / sealed[0].name
    shutil.copytree(sealed[0], copy)  # copy2: modes and times kept
    return copy


def _numba_files(entry):
    return sorted((entry / "__pycache__").iterdir())


def test_an_entry_is_private_and_its_manifest_names_every_file_it_loads(sealed):
    entry = sealed[0]
    manifest = json.loads((entry / callbacks.MANIFEST).read_text())
    name = entry.name
    assert manifest["name"] == name
    numba_files = [f"__pycache__/{p.name}" for p in _numba_files(entry)]
    assert sorted(p.rsplit(".", 1)[-1] for p in numba_files) == ["nbc", "nbc", "nbi", "nbi"]
    assert sorted(manifest["files"]) == sorted([f"{name}.py", callbacks.LAYOUT, *numba_files])
    for rel, digest in manifest["files"].items():
        assert callbacks._digest((entry / rel).read_bytes()) == digest
    if POSIX:
        modes = {
            p.relative_to(entry).as_posix(): stat.S_IMODE(p.stat().st_mode)
            for p in [entry, *entry.rglob("*")]
        }
        assert modes.pop(".") == modes.pop("__pycache__") == 0o700
        assert set(modes.values()) == {0o600}, modes
    assert callbacks.verify(entry).keys() == {f"{name}.py", callbacks.LAYOUT}
    # nothing but the entry and no staging folder left
    assert [p.name for p in entry.parent.iterdir()] == [name]


def test_an_unchanged_copy_loads_from_the_cache(entry, sealed):
    loaded = callbacks.compile_model(small_model(), key(small_model()))
    assert loaded.logp_func is None  # loaded, not built
    assert os.path.dirname(loaded.compiled_logp_func._pyfunc.__code__.co_filename) == str(entry)


def test_a_changed_line_in_the_generated_source_is_never_executed(entry, sealed, tmp_path, caplog):
    """The red team's attack: a line added to the generated module. It is refused before
    it runs (the line would write a marker), the entry is discarded and generated again, and
    the fit draws what it drew before."""
    marker = tmp_path.parent / f"{tmp_path.name}-ran"
    source = entry / f"{entry.name}.py"
    planted = f"__import__('pathlib').Path({str(marker)!r}).write_text('ran')\n"
    tampered = source.read_text().replace("import numba\n", "import numba\n" + planted, 1)
    assert tampered != source.read_text()
    source.write_text(tampered)
    model = small_model()
    compiled = callbacks.compile_model(model, key(model))
    assert not marker.exists()  # never executed
    assert "refused, removed and generated again" in caplog.text
    assert "does not match the SHA-256" in caplog.text
    assert compiled.logp_func is not None  # built again
    assert source.read_text() != tampered  # the entry generated again, whole
    callbacks.verify(entry)  # published whole, with its new manifest
    np.testing.assert_array_equal(b_w(compiled), sealed[1])
    # the proof works: that source, executed, writes the marker
    callbacks._exec(tampered, source)
    assert marker.read_text() == "ran"
    marker.unlink()


class _Evil:
    """Unpickling it writes a marker: what a planted numba cache file could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (_write_marker, (self.path,))


def _write_marker(path):
    with open(path, "w") as f:
        f.write("ran")
    return path


@pytest.mark.parametrize("suffix", [".nbi", ".nbc"])
def test_a_planted_numba_cache_file_is_never_unpickled(entry, tmp_path, caplog, suffix):
    """numba's index is a pickle and its data file pickled machine code: one replaced by a
    pickle that writes a marker when loaded is refused before numba reads it."""
    import pickle

    marker = tmp_path.parent / f"{tmp_path.name}-ran"
    target = next(p for p in _numba_files(entry) if p.suffix == suffix)
    evil = pickle.dumps(_Evil(marker))
    target.write_bytes(evil)
    model = small_model()
    assert callbacks._cached(model, entry.name) is None
    assert not marker.exists()
    assert not entry.exists()  # discarded
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(callbacks.TOMBSTONE)]
    assert f"{target.name} does not match the SHA-256" in caplog.text
    pickle.loads(evil)  # the proof works
    assert marker.read_text() == "ran"
    marker.unlink()


def test_an_entry_without_its_manifest_or_with_files_it_does_not_name_is_refused(entry, caplog):
    extra = entry / "__pycache__" / f"{entry.name}.logp-99.py312.nbi"
    extra.write_bytes(b"planted")
    extra.chmod(0o600)
    with pytest.raises(callbacks.Tampered, match="are not in its manifest"):
        callbacks.verify(entry)
    extra.unlink()
    callbacks.verify(entry)
    (entry / callbacks.MANIFEST).unlink()
    with pytest.raises(callbacks.Tampered, match="has no manifest"):
        callbacks.verify(entry)
    assert callbacks._cached(small_model(), entry.name) is None
    assert not entry.exists()
    assert "has no manifest" in caplog.text


@posix_only
@pytest.mark.parametrize("where", ["source", "numba index", "numba folder", "entry", "manifest"])
@pytest.mark.parametrize("bits", [0o020, 0o002], ids=["group", "world"])
def test_a_file_or_folder_writable_by_others_is_refused(entry, caplog, where, bits):
    path = {
        "source": entry / f"{entry.name}.py",
        "numba index": next(p for p in _numba_files(entry) if p.suffix == ".nbi"),
        "numba folder": entry / "__pycache__",
        "entry": entry,
        "manifest": entry / callbacks.MANIFEST,
    }[where]
    path.chmod(stat.S_IMODE(path.stat().st_mode) | bits)
    with pytest.raises(callbacks.Tampered, match="is writable by others"):
        callbacks.verify(entry)
    assert callbacks._cached(small_model(), entry.name) is None
    assert not entry.exists()
    assert "writable by others" in caplog.text


@posix_only
def test_a_link_in_an_entry_is_refused(entry, tmp_path):
    source = entry / f"{entry.name}.py"
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere.py"
    elsewhere.write_bytes(source.read_bytes())
    source.unlink()
    source.symlink_to(elsewhere)  # same bytes, but anyone who can write there controls it
    with pytest.raises(callbacks.Tampered, match="is a link"):
        callbacks.verify(entry)
    elsewhere.unlink()


def _as_root():
    if not POSIX or os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")


@posix_only
@pytest.mark.parametrize("where", ["numba data", "entry"])
def test_an_entry_owned_by_another_user_is_refused(entry, caplog, where):
    _as_root()
    path = entry if where == "entry" else next(p for p in _numba_files(entry) if p.suffix == ".nbc")
    os.chown(path, 12345, 12345)
    with pytest.raises(callbacks.Tampered, match="owned by uid 12345"):
        callbacks.verify(entry)
    assert callbacks._cached(small_model(), entry.name) is None
    assert not entry.exists()
    assert "owned by uid 12345" in caplog.text


@posix_only
def test_the_cache_folder_is_created_private_and_made_private_again(tmp_path, monkeypatch, caplog):
    root = tmp_path / "cache" / "socialgradient" / "nutpie_callbacks"
    monkeypatch.setenv(callbacks.ENV_DIR, str(root))
    assert callbacks.folder() == root
    assert callbacks.private_folder() == root.resolve()
    for path in (root, root.parent, root.parent.parent):  # every folder it created
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    root.chmod(0o755)
    assert callbacks.private_folder() == root.resolve()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert "was open to others (mode 755): made private" in caplog.text


def test_the_default_cache_folder_is_the_users_own(monkeypatch):
    import platformdirs

    monkeypatch.delenv(callbacks.ENV_DIR, raising=False)
    assert callbacks.folder() == Path(
        platformdirs.user_cache_dir("socialgradient", appauthor=False), "nutpie_callbacks"
    )


@posix_only
def test_a_cache_folder_others_control_refuses_the_fast_path(tmp_path, monkeypatch):
    """Another user's cache folder, or one under a folder others can write (not sticky):
    nutpie's public compilation, with one FastPathWarning naming the folder."""
    public = []
    monkeypatch.setattr(callbacks, "_public", lambda model: public.append(model) or "public")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone may rename our folder away and put theirs in its place
    monkeypatch.setenv(callbacks.ENV_DIR, str(shared / "nutpie_callbacks"))
    model = small_model()
    with pytest.warns(callbacks.FastPathWarning, match="is writable by others"):
        assert callbacks.compile_model(model, "some code") == "public"
    shared.chmod(0o777 | stat.S_ISVTX)  # sticky, as /tmp: only owners rename their files
    assert callbacks.private_folder() == (shared / "nutpie_callbacks").resolve()
    if os.geteuid() == 0:
        os.chown(shared / "nutpie_callbacks", 12345, 12345)
        with pytest.warns(callbacks.FastPathWarning, match="owned by uid 12345"):
            assert callbacks.compile_model(model, "some code") == "public"
    assert public == [model] * (2 if os.geteuid() == 0 else 1)


def test_numbas_cache_of_the_callbacks_stays_beside_them(tmp_path, monkeypatch):
    """NUMBA_CACHE_DIR (numba's own cache elsewhere, e.g. a read-only home) does not move the
    callbacks' cache out of the private entry; a NUMBA_CACHE_LOCATOR_CLASSES that would is
    refused before numba compiles or loads anything."""
    import numba.core.config

    path = tmp_path / "callbacks_x" / "callbacks_x.py"
    path.parent.mkdir()
    source = (
        "def logp(dim, x, out, lp, user):\n    return 0\n\n\n"
        "def expand(dim, expanded, x, out, user):\n    return 0\n"
    )
    path.write_text(source)
    monkeypatch.setattr(numba.core.config, "CACHE_DIR", str(tmp_path / "numba"))
    first = callbacks._cfuncs(callbacks._exec(source, path))
    again = callbacks._cfuncs(callbacks._exec(source, path))
    assert [f.cache_hits for f in first] == [0, 0]
    assert [f.cache_hits for f in again] == [1, 1]  # from the entry's __pycache__
    assert sorted(p.suffix for p in (path.parent / "__pycache__").iterdir()) == [
        ".nbc",
        ".nbc",
        ".nbi",
        ".nbi",
    ]
    assert not (tmp_path / "numba").exists() or not any((tmp_path / "numba").rglob("*.nb*"))
    monkeypatch.setattr(
        numba.core.config, "CACHE_LOCATOR_CLASSES", "UserWideCacheLocator", raising=False
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(callbacks.UnsafeCache, match="NUMBA_CACHE_LOCATOR_CLASSES"):
        callbacks._cfuncs(callbacks._exec(source, path))
