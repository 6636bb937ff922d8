"""Old import paths, kept working for one release with a DeprecationWarning naming the new one.

The package was re-housed by concern (issue 28): ``socialgradient.fit`` is now
``socialgradient.sampling.fit``, and so on (:data:`MOVED`). No file is left at an old path:
:func:`install` (called by ``socialgradient/__init__.py``) puts a finder first on
``sys.meta_path`` that answers an old name by importing the new module, warning, and
aliasing it in ``sys.modules``, so ``import socialgradient.fit``,
``from socialgradient.fit import sample`` and ``socialgradient.fit is
socialgradient.sampling.fit`` all hold. Two old modules are now packages of the same name
(``socialgradient.model``, ``socialgradient.panel``): their old names are served by the
package's module ``__getattr__`` (:func:`old_names`). ``socialgradient.joint`` was split by
layer: its names are looked up in the modules of :data:`SPLIT`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

_OLD = "socialgradient."
_NEW = {
    "files": "util.files",
    "outputs": "util.outputs",
    "progress": "util.progress",
    "deprivation": "data.deprivation",
    "data.synthetic.records_model": "data.records",
    "families": "model.families",
    "parameterisation": "model.parameterisation",
    "moderators": "model.moderators",
    "la_outcome": "model.la_outcome",
    "forward": "model.forward",
    "fit": "sampling.fit",
    "compiled": "sampling.compiled",
    "callbacks": "sampling._nutpie",
    "predict": "sampling.predict",
    "gradients": "results.gradients",
    "summaries": "results.summaries",
    "checks": "results.checks",
    "testing": "results.testing",
    "plots": "results.plots",
    "maps": "results.maps",
    "disclosure": "release.disclosure",
    "audit": "release.audit",
    "ledger": "release.ledger",
    "perturbation": "release.perturbation",
    "table_sets": "release.table_sets",
    "report": "release.report",
    "suppression": "release.suppression",
    "suite": "study.suite",
    "findings": "study.findings",
    "calibrate": "study.calibrate",
    "aggregates": "study.aggregates",
    "clusters": "study.clusters",
    "panel_data": "panel.data",
}
#: Old module -> the module that replaces it.
MOVED = {_OLD + old: _OLD + new for old, new in _NEW.items()}
#: Old module -> the modules its names went to (looked up in this order).
SPLIT = {
    "socialgradient.joint": (
        "socialgradient.model.joint",
        "socialgradient.sampling.joint",
        "socialgradient.release.joint",
        "socialgradient.results.summaries",
    )
}
#: Old modules that are packages now: the modules their old names went to.
PACKAGES = {
    "socialgradient.model": (
        "socialgradient.model.build",
        "socialgradient.model.data",
        "socialgradient.model.encode",
    ),
    "socialgradient.panel": ("socialgradient.panel.model",),
}


def _importer() -> tuple[int, types.FrameType | None]:
    """Return the importer's stack level and the last importlib frame passed on the way.

    The level of the first frame outside this module and the import machinery (the
    importer's), as ``warnings.warn`` counts it (it skips importlib's frames itself); the
    frame is None if none was passed.
    """
    frame: types.FrameType | None = sys._getframe(2)
    level, machinery = 2, None
    while frame is not None:
        name = frame.f_code.co_filename
        if "importlib" in name and "_bootstrap" in name:
            machinery = machinery or frame
        elif name != __file__:
            break
        else:
            level += 1
        frame = frame.f_back
    return level, machinery


def _warn(old: str, new: str, attribute: bool = False) -> None:
    level, machinery = _importer()
    if attribute and machinery is not None and machinery.f_code.co_name == "_handle_fromlist":
        return  # ``from old import name`` asks twice: warn at the statement's own lookup
    warnings.warn(
        f"{old} moved to {new}; the old path goes in the next release",
        DeprecationWarning,
        stacklevel=level,
    )


def _lookup(old: str, name: str, modules: tuple[str, ...]):
    """Return ``name`` of old module ``old`` from the first of ``modules`` defining it.

    Modules imported there (e.g. ``families`` in ``model.build``) are not old names.
    """
    for new in modules:
        value = getattr(importlib.import_module(new), name, _MISSING)
        if value is not _MISSING and not isinstance(value, types.ModuleType):
            home = getattr(value, "__module__", None)  # where a class or function is defined
            home = home if home in modules else new
            _warn(f"{old}.{name}", f"{home}.{name}", attribute=True)
            return value
    raise AttributeError(f"module {old!r} has no attribute {name!r}")


_MISSING = object()


def old_names(package: str):
    """Return the module ``__getattr__`` of ``package`` (an old module, now a package).

    An old name is looked up in :data:`PACKAGES`' modules, with a DeprecationWarning.
    """

    def __getattr__(name: str):
        # a dunder, or a submodule not yet imported (``from package import build``: the
        # import system asks for the attribute first, then imports the submodule)
        if name.startswith("__") or importlib.util.find_spec(f"{package}.{name}"):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return _lookup(package, name, PACKAGES[package])

    return __getattr__


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers the old module names of :data:`MOVED` and :data:`SPLIT`, nothing else."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED or fullname in SPLIT:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None  # a placeholder module; exec_module puts the real one in its place

    def exec_module(self, module) -> None:
        old = module.__name__
        if old in MOVED:
            new = importlib.import_module(MOVED[old])
            _warn(old, MOVED[old])
            sys.modules[old] = new  # the import statement returns what sys.modules holds
            return
        modules = SPLIT[old]
        _warn(old, " and ".join(modules))
        module.__doc__ = f"Moved: the names of {old} are in {', '.join(modules)}."
        module.__getattr__ = _split_getattr(old, modules)


def _split_getattr(old: str, modules: tuple[str, ...]):
    """Return the module ``__getattr__`` of split module ``old``: its names, with a warning.

    No dunder (tools that scan ``sys.modules``, e.g. for ``__file__``, must not warn).
    """

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        return _lookup(old, name, modules)

    return __getattr__


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once).

    An old name must not be found by another finder first (e.g. an editable install's, which
    looks in another checkout).
    """
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
