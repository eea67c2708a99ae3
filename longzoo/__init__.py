"""longzoo: turn short-context encoders into stock transformers long models (Longformer or full attention)."""

from importlib.metadata import PackageNotFoundError, version

from longzoo.errors import LongzooError

try:
    __version__ = version("longzoo")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "LongformerZh",
    "LongzooError",
    "__version__",
    "convert",
    "load",
    "use_fast_attention",
    "use_reference_attention",
]

_LAZY = {
    "convert": "longzoo.converters",
    "LongformerZh": "longzoo.zoo",
    "load": "longzoo.zoo",
    "use_fast_attention": "longzoo.models.attention",
    "use_reference_attention": "longzoo.models.attention",
}


def __getattr__(name):
    # Imported lazily: `import longzoo` must stay cheap for the CLI's --help and
    # for tools that only read manifests; these pull in torch and transformers.
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(name)
