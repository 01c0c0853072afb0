"""Registry, configs and the plugin path (including a third-party entry point)."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from typing import Literal

import pytest

import cmh.registry as registry
from cmh import HashMethod, create_method, list_methods, register_method
from cmh.config import build_config, parse_set
from cmh.errors import CMHError, ConfigError


@dataclasses.dataclass(frozen=True)
class _Cfg:
    lr: float = 0.1
    epochs: int = 3
    variant: Literal["paper", "official"] = "paper"
    widths: tuple[int, ...] = (1, 2)
    verbose: bool = False


class _Dummy(HashMethod):
    Config = _Cfg
    supervised = False

    def fit(self, train):
        return self

    def encode_image(self, image):
        raise NotImplementedError

    def encode_text(self, text):
        raise NotImplementedError


@pytest.fixture
def dummy_registered():
    registry.METHODS.register("test-dummy", _Dummy)
    yield "test-dummy"
    registry.METHODS._items.pop("test-dummy", None)


def test_register_create_and_list(dummy_registered):
    assert dummy_registered in list_methods()
    m = create_method(dummy_registered, bits=16, seed=3, lr="0.5", epochs="7", variant="official")
    assert (m.bits, m.seed, m.cfg.lr, m.cfg.epochs, m.cfg.variant) == (16, 3, 0.5, 7, "official")
    assert m.name == "test-dummy"
    assert registry.METHODS.build({"type": "test-dummy", "bits": 8}).bits == 8


def test_duplicate_name_is_an_error(dummy_registered):
    class Other(_Dummy):
        pass

    with pytest.raises(CMHError, match="already registered"):
        register_method(dummy_registered)(Other)


def test_unknown_method_did_you_mean(dummy_registered):
    with pytest.raises(CMHError, match="did you mean 'test-dummy'"):
        create_method("test-dumy", bits=16)


@pytest.mark.parametrize("bits", [4, 7, 257, 1000, 16.5, "32"])
def test_bits_out_of_range(dummy_registered, bits):
    with pytest.raises(CMHError, match="bits must be an integer from 8 to 256"):
        create_method(dummy_registered, bits=bits)


def test_unknown_option_and_bad_values():
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        build_config(_Cfg, {"epoch": 3})
    with pytest.raises(ConfigError, match="did you mean 'paper'"):
        build_config(_Cfg, {"variant": "papr"})
    with pytest.raises(ConfigError, match="expected float"):
        build_config(_Cfg, {"lr": "fast"})
    with pytest.raises(ConfigError, match="expected int"):
        build_config(_Cfg, {"epochs": 2.5})
    assert build_config(_Cfg, {"widths": "3,4,5", "verbose": "yes"}).widths == (3, 4, 5)


def test_parse_set():
    assert parse_set(["lr=1e-4", "epochs=5", "name=abc"]) == {"lr": 1e-4, "epochs": 5, "name": "abc"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["lr"])


def test_third_party_entry_point(tmp_path, monkeypatch):
    """A method from a separate installed package registers through the cmh.methods entry point group."""
    pkg = tmp_path / "cmh_plugin_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
        from cmh import HashMethod

        class Demo(HashMethod):
            supervised = False
            def fit(self, train):
                return self
            def encode_image(self, x):
                return x
            def encode_text(self, t):
                return t
        """
        )
    )
    dist = tmp_path / "cmh_plugin_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cmh-plugin-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[cmh.methods]\nplugin-demo = cmh_plugin_demo:Demo\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded", False)
    try:
        assert "plugin-demo" in list_methods()
        assert create_method("plugin-demo", bits=8).name == "plugin-demo"
    finally:
        registry.METHODS._items.pop("plugin-demo", None)
        sys.modules.pop("cmh_plugin_demo", None)


def test_every_registered_method_declares_itself():
    """Loop over everything registered (timm style): metadata and config defaults are sane."""
    for name in list_methods():
        cls = registry.get_method_class(name)
        assert cls.kind in ("shallow", "deep"), name
        assert isinstance(cls.supervised, bool), name
        assert cls.__doc__ and len(cls.__doc__) > 40, f"{name} needs a docstring citing its paper"
        assert dataclasses.is_dataclass(cls.Config), name
        create_method(name, bits=16)  # defaults must validate
