"""cmh — cross-modal hashing: methods, one honest evaluation protocol, reproducible leaderboards."""

from cmh.base import HashMethod, sign_codes
from cmh.registry import create_method, get_method_class, list_methods, register_method

__version__ = "0.1.0"

__all__ = [
    "HashMethod",
    "__version__",
    "create_method",
    "get_method_class",
    "list_methods",
    "register_method",
    "sign_codes",
]
