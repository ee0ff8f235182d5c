"""Reading MATLAB v7.3 files (HDF5) with h5py, without decoding MATLAB objects.

A v7.3 MAT-file is an HDF5 file behind a 512-byte text header. Every variable carries a `MATLAB_class`
attribute; arrays are stored column-major, so h5py shows their dimensions reversed; `char` is uint16;
a struct is a group (a scalar struct holds its fields directly, a struct array holds one dataset of
object references per field); a cell is a dataset of references; the referenced values live in the
`#refs#` group. Objects of classdef classes (MCOS, e.g. RefineNet's `ref_obj`) are only an id whose
property values sit in `#subsystem#/MCOS` and `#refs#`: their layout is undocumented and readers that
decode them fail on nested handle objects. So the structs inside are found by walking the file for
groups with the wanted field names, and nothing here depends on the object encoding.

Everything a file says is data: sizes are checked before an array is read, and a file that is not
HDF5, is an older (v5/v7) MAT-file, or is cut off, is refused with one line saying what it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.errors import RefineError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
USERBLOCK = 512  # MATLAB writes its text header into the HDF5 user block
MAX_ARRAY_ELEMENTS = 1 << 26  # 64 M values (256 MB of singles) per array: far above any real layer
NUMERIC_CLASSES = ("single", "double")


def _header(path: Path) -> tuple[bytes, bool]:
    """The file's first 116 bytes (MATLAB's descriptive text) and whether an HDF5 superblock follows."""
    with open(path, "rb") as handle:
        head = handle.read(USERBLOCK + len(HDF5_SIGNATURE))
    offsets = (0, USERBLOCK)
    is_hdf5 = any(head[o : o + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE for o in offsets)
    return head[:116], is_hdf5


def describe_header(text: bytes) -> str:
    """MATLAB's header line ('MATLAB 5.0 MAT-file, Platform: ...'), printable and short."""
    line = text.split(b"\x00")[0].decode("ascii", "replace").strip()
    return " ".join(line.split())[:100]


def is_mat73(path: str | Path) -> bool:
    """True when the file is HDF5 (MATLAB v7.3), False for anything else (older MAT-files included)."""
    return _header(Path(path))[1]


def open_mat73(path: str | Path, what: str, hint: str = "download it again") -> Any:
    """Open a MATLAB v7.3 file read-only as an h5py.File; RefineError for anything else.

    `what` names the file in messages; `hint` says what to do about an older (v5/v7) MAT-file.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise RefineError(f"{what} {path} does not exist", hint="check the path")
    if path.is_dir():
        raise RefineError(f"{what} {path} is a folder", hint="give the .mat file inside it")
    text, is_hdf5 = _header(path)
    if not is_hdf5:
        if text.startswith(b"MATLAB"):
            raise RefineError(
                f"{what} {path} is an older MAT-file ({describe_header(text)}), not MATLAB v7.3 (HDF5)", hint=hint
            )
        raise RefineError(f"{what} {path} is not a MATLAB v7.3 file (it starts with {text[:16]!r})", hint=hint)
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise RefineError(
            f"{what} {path} is a damaged or truncated HDF5 file ({' '.join(str(error).split())[:120]})",
            hint="download it again and compare its sha256 with the one you expect",
        ) from None


def matlab_class(node: Any) -> str:
    """The `MATLAB_class` attribute of a dataset or group ('' when absent)."""
    value = node.attrs.get("MATLAB_class", b"")
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def field_names(group: Any) -> list[str]:
    """A struct group's field names, from `MATLAB_fields` (MATLAB's order) or else its members."""
    fields = group.attrs.get("MATLAB_fields")
    if fields is None:
        return list(group.keys())
    names = []
    for entry in fields:
        chars = np.asarray(entry).ravel()
        names.append(b"".join(bytes(c) if isinstance(c, bytes) else bytes([int(c)]) for c in chars).decode())
    return names


def is_reference_array(node: Any) -> bool:
    import h5py

    return isinstance(node, h5py.Dataset) and node.dtype == h5py.ref_dtype


def is_empty(node: Any) -> bool:
    """MATLAB stores an empty array as its dimensions with MATLAB_empty = 1."""
    return bool(node.attrs.get("MATLAB_empty", 0))


def read_string(node: Any, where: str) -> str:
    """A `char` array as text; RefineError when `node` is not one."""
    import h5py

    if not isinstance(node, h5py.Dataset) or matlab_class(node) != "char":
        raise RefineError(f"{where} is not text (MATLAB class {matlab_class(node) or 'none'})")
    if is_empty(node):
        return ""
    if node.size > 4096:
        raise RefineError(f"{where} is a text of {node.size} characters; names are short")
    codes = np.asarray(node[()]).ravel()
    return "".join(chr(int(c)) for c in codes)


def read_numeric(node: Any, where: str) -> np.ndarray:
    """A single/double array in MATLAB's dimension order (h5py's reversed back), size-checked before reading."""
    import h5py

    if not isinstance(node, h5py.Dataset) or matlab_class(node) not in NUMERIC_CLASSES:
        raise RefineError(f"{where} is not a numeric array (MATLAB class {matlab_class(node) or 'none'})")
    if is_empty(node):
        return np.zeros((0,), np.float32)
    if node.size > MAX_ARRAY_ELEMENTS:
        raise RefineError(
            f"{where} claims {node.size:,} values; no RefineNet layer has more than {MAX_ARRAY_ELEMENTS:,}"
        )
    try:
        data = np.asarray(node[()])
    except (OSError, ValueError, KeyError) as error:
        raise RefineError(
            f"{where} cannot be read: the file is damaged or truncated ({' '.join(str(error).split())[:100]})",
            hint="download it again",
        ) from None
    return np.ascontiguousarray(data.T)


def elements(file: Any, node: Any, where: str) -> list[Any]:
    """The values behind one struct field: each element of a struct array (references), or the value itself."""
    if not is_reference_array(node):
        return [node]
    if node.size > 1_000_000:
        raise RefineError(f"{where} claims {node.size:,} elements")
    values = []
    for ref in np.asarray(node[()]).ravel():
        if not ref:
            raise RefineError(f"{where} holds a null reference: the file is damaged")
        try:
            values.append(file[ref])
        except (KeyError, ValueError, OSError):
            raise RefineError(f"{where} holds a reference to nothing: the file is damaged or truncated") from None
    return values


def struct_groups(file: Any) -> list[tuple[str, Any, set[str]]]:
    """Every struct group of the file (anywhere, `#refs#` included) as (path, group, field names), in one walk."""
    import h5py

    found: list[tuple[str, Any, set[str]]] = []

    def visit(name: str, node: Any) -> None:
        if isinstance(node, h5py.Group) and matlab_class(node) == "struct":
            found.append((name, node, set(node.keys())))

    try:
        file.visititems(visit)
    except (OSError, RuntimeError, KeyError) as error:
        raise RefineError(
            f"{file.filename} cannot be read: it is damaged or truncated ({' '.join(str(error).split())[:100]})",
            hint="download it again",
        ) from None
    return found


def summary(file: Any, limit: int = 6) -> str:
    """What a MAT-file holds at its top level, for a refusal message: 'net_config (ref_obj), ...'."""
    names = [f"{key} ({matlab_class(file[key]) or 'no MATLAB class'})" for key in file if not key.startswith("#")]
    more = f", ... (+{len(names) - limit})" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "no variables"


__all__ = [
    "describe_header",
    "is_mat73",
    "elements",
    "field_names",
    "is_reference_array",
    "matlab_class",
    "open_mat73",
    "read_numeric",
    "read_string",
    "struct_groups",
    "summary",
]
