"""Read the metadata of a GGUF file without loading its weights (or importing llama.cpp).

Only the key-value header is parsed; arrays (the tokenizer's vocabulary) are skipped, not decoded.
This is what lets localsym know a model's chat template and context length, and reject a file that
is not GGUF, before paying for a model load.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

_MAGIC = b"GGUF"
# value type -> struct of a scalar; 8 = string, 9 = array
_SCALARS = {t: struct.Struct(f) for t, f in {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
    12: "<d"}.items()}
_STRING, _ARRAY = 8, 9
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")


class GGUFFormatError(ValueError):
    """The bytes are not a GGUF header this reader understands."""


def _take(f: BinaryIO, st: struct.Struct):
    data = f.read(st.size)
    if len(data) != st.size:
        raise GGUFFormatError("file ends inside the GGUF header")
    return st.unpack(data)[0]


def _left(f: BinaryIO) -> int:
    """Bytes from here to the end of the file."""
    here = f.tell()
    end = f.seek(0, 2)
    f.seek(here)
    return end - here


def _string(f: BinaryIO) -> str:
    n = _take(f, _U64)
    if n > _left(f):  # a crafted length: never allocate what the file does not hold
        raise GGUFFormatError("a GGUF string runs past the end of the file")
    data = f.read(n)
    if len(data) != n:
        raise GGUFFormatError("file ends inside the GGUF header")
    return data.decode("utf-8", errors="replace")


def _value(f: BinaryIO, vtype: int, depth: int = 0):
    if vtype in _SCALARS:
        return _take(f, _SCALARS[vtype])
    if vtype == _STRING:
        return _string(f)
    if vtype == _ARRAY:
        etype, count = _take(f, _U32), _take(f, _U64)
        if depth > 2:
            raise GGUFFormatError("GGUF arrays nested too deep")
        if etype in _SCALARS:  # fixed-size elements: one seek
            if _SCALARS[etype].size * count > _left(f):
                raise GGUFFormatError("a GGUF array runs past the end of the file")
            f.seek(_SCALARS[etype].size * count, 1)
        elif etype == _STRING:  # skip each string by its length, without decoding it
            if count * 8 > _left(f):
                raise GGUFFormatError("a GGUF array runs past the end of the file")
            for _ in range(count):
                n = _take(f, _U64)
                if n > _left(f):
                    raise GGUFFormatError("a GGUF string runs past the end of the file")
                f.seek(n, 1)
        else:
            if count > _left(f):
                raise GGUFFormatError("a GGUF array runs past the end of the file")
            for _ in range(count):
                _value(f, etype, depth + 1)
        return f"<array of {count}>"
    raise GGUFFormatError(f"unknown GGUF value type {vtype}")


def read_metadata(path: str | Path) -> dict:
    """Return the GGUF key-value metadata of ``path`` (arrays replaced by a short description)."""
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        if f.read(4) != _MAGIC:
            raise GGUFFormatError("not a GGUF file (bad magic bytes)")
        version = _take(f, _U32)
        if version < 2:
            raise GGUFFormatError(f"GGUF version {version} is too old (need 2 or later)")
        _take(f, _U64)  # tensor count
        n_kv = _take(f, _U64)
        if n_kv > _left(f):
            raise GGUFFormatError("the GGUF header claims more keys than the file holds")
        meta: dict = {"GGUF.version": version}
        for _ in range(n_kv):
            key = _string(f)
            meta[key] = _value(f, _take(f, _U32))
            if f.tell() > size:  # a seek past the end: the header is cut off
                raise GGUFFormatError("file ends inside the GGUF header")
        return meta


def context_length(meta: dict) -> int | None:
    """The context length the model was trained with, if the header says."""
    arch = meta.get("general.architecture")
    value = meta.get(f"{arch}.context_length")
    return int(value) if isinstance(value, int) else None
