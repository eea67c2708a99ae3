"""longzoo: turn short-context encoders into stock transformers Longformer models."""

from importlib.metadata import PackageNotFoundError, version

from longzoo.errors import LongzooError

try:
    __version__ = version("longzoo")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["LongzooError", "__version__", "convert"]


def __getattr__(name):
    # Imported lazily: `import longzoo` must stay cheap for the CLI's --help and
    # for tools that only read manifests; the converter pulls in torch.
    if name == "convert":
        from longzoo.converters import convert

        return convert
    raise AttributeError(name)
