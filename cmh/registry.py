"""Name -> class registries (timm's ``register_model`` meets mmengine's ``Registry``).

Methods register with a decorator in their own file::

    @register_method("cvh")
    class CVH(HashMethod): ...

and are built by name: ``create_method("cvh", bits=32, seed=0, **config)``. Duplicate names are an error;
unknown names raise with a did-you-mean. Third-party packages add methods without touching cmh by
declaring an entry point in the ``cmh.methods`` group (``name = "pkg.module:Class"``); the module is
imported on first lookup and its decorator (or the entry-point target itself) registers the method.
A plugin that fails to import is skipped with a :class:`PluginWarning` naming it and the error, so one
broken package never breaks cmh; asking for that method by name is a one-line error saying why.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from cmh.errors import CMHError, did_you_mean

T = TypeVar("T")

ENTRY_POINT_GROUP = "cmh.methods"
_BUILTIN_MODULES = ("cmh.baselines", "cmh.methods")


class Registry(Generic[T]):
    """A named collection of classes; ``build({"type": name, **kwargs})`` creates one from a config dict."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, type[T]] = {}

    def register(self, name: str, obj: type[T] | None = None, *, force: bool = False) -> Any:
        """Register ``obj`` under ``name``; usable as ``@registry.register("name")``."""

        def _add(cls: type[T]) -> type[T]:
            key = name.lower()
            if key in self._items and self._items[key] is not cls and not force:
                other = self._items[key]
                raise CMHError(
                    f"{self.kind} '{key}' is already registered by {other.__module__}.{other.__qualname__}; "
                    "choose another name"
                )
            self._items[key] = cls
            try:
                cls.name = key  # type: ignore[attr-defined]
            except (AttributeError, TypeError):  # pragma: no cover - frozen classes
                pass
            return cls

        return _add(obj) if obj is not None else _add

    def get(self, name: str) -> type[T]:
        key = str(name).lower()
        if key not in self._items:
            raise CMHError(
                f"unknown {self.kind} '{name}'{did_you_mean(key, self._items)}; "
                f"run `cmh list {self.kind}s` to see the {len(self._items)} available"
            )
        return self._items[key]

    def build(self, cfg: dict[str, Any]) -> T:
        """Create an instance from ``{"type": name, **kwargs}`` (mmengine style)."""
        cfg = dict(cfg)
        try:
            name = cfg.pop("type")
        except KeyError:
            raise CMHError(f"{self.kind} config needs a 'type' key naming the {self.kind}") from None
        return self.get(name)(**cfg)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return str(name).lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


METHODS: Registry[Any] = Registry("method")
_loaded = False
#: entry-point name -> why its plugin was skipped (``"pkg.mod:Cls: ImportError: ..."``)
FAILED_PLUGINS: dict[str, str] = {}


class PluginWarning(UserWarning):
    """A third-party ``cmh.methods`` plugin could not be loaded and was skipped."""


def register_method(name: str, *, force: bool = False) -> Callable[[type[T]], type[T]]:
    """Class decorator registering a :class:`cmh.base.HashMethod` subclass under ``name``."""
    return METHODS.register(name, force=force)


def _load_plugins() -> None:
    """Import cmh's own method packages and every ``cmh.methods`` entry point (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, type) and ep.name.lower() not in METHODS:
                METHODS.register(ep.name, obj)
        except Exception as exc:  # any error inside a third-party import: skip that plugin only
            reason = (
                f"{exc.__class__.__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            )
            FAILED_PLUGINS[ep.name.lower()] = f"{ep.value}: {reason.rstrip(': ')}"
            warnings.warn(
                f"method plugin '{ep.name}' ({ep.value}) failed to load and is skipped ({reason.rstrip(': ')}); "
                "fix or uninstall the package that provides it",
                PluginWarning,
                stacklevel=2,
            )


def get_method_class(name: str) -> type[Any]:
    """The registered class for ``name`` (did-you-mean on a typo)."""
    _load_plugins()
    key = str(name).lower()
    if key not in METHODS and key in FAILED_PLUGINS:
        raise CMHError(
            f"method '{name}' comes from a plugin that failed to load ({FAILED_PLUGINS[key]}); "
            "fix or uninstall the package that provides it"
        )
    return METHODS.get(name)


def create_method(name: str, bits: int, seed: int = 0, device: str = "cpu", **config: Any) -> Any:
    """Build method ``name`` for ``bits``-bit codes; ``config`` overrides its defaults (validated)."""
    return get_method_class(name)(bits=bits, seed=seed, device=device, **config)


def list_methods(pattern: str | None = None, kind: str | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by fnmatch ``pattern`` and ``kind`` (shallow/deep)."""
    import fnmatch

    _load_plugins()
    names = METHODS.names()
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    if kind:
        names = [n for n in names if getattr(METHODS.get(n), "kind", None) == kind]
    return names
