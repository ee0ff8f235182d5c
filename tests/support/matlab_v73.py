"""Write MATLAB v7.3 MAT-files the way MATLAB does, for tests of refine's readers (no MATLAB needed).

The conventions (as MATLAB's `save -v7.3` writes them and h5py shows them):
- a 512-byte user block with MATLAB's text header ("MATLAB 7.3 MAT-file, ... HDF5 schema 1.00 .",
  version 0x0200 and the endian mark 'IM' at bytes 124..127), then the HDF5 file;
- every variable has a `MATLAB_class` attribute; arrays are column-major, so h5py sees the
  dimensions reversed (a MATLAB 3x3x256x512 single is a (512, 256, 3, 3) float32 dataset);
- `char` is uint16 with MATLAB_int_decode = 2, `logical` uint8 with MATLAB_int_decode = 1, an empty
  array is its dimensions (uint64) with MATLAB_empty = 1;
- a scalar struct is a group whose fields are its members, listed in the `MATLAB_fields` attribute
  (variable-length arrays of single characters); a struct array holds one dataset of object
  references per field; a cell is a dataset of references; everything referenced lives in `#refs#`;
- a classdef object (MCOS) is a uint32 id with MATLAB_object_decode = 3; its property values are
  referenced from `#subsystem#/MCOS` (class FileWrapper__), whose first cell is an opaque uint8 blob.

Values: `np.ndarray` (float32 -> single, float64 -> double, uint8/uint32 ..., bool -> logical), `str`
(char), `dict` (scalar struct), `StructArray`, `Cell`, `MatObject`, `None` (empty double).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Mar 16 10:20:30 2017 HDF5 schema 1.00 ."
_CLASSES = {
    np.dtype(np.float32): "single",
    np.dtype(np.float64): "double",
    np.dtype(np.uint8): "uint8",
    np.dtype(np.uint16): "uint16",
    np.dtype(np.uint32): "uint32",
    np.dtype(np.int32): "int32",
    np.dtype(np.int64): "int64",
}
_REF_NAMES = string.ascii_lowercase + string.ascii_uppercase


@dataclass
class Cell:
    """A 1xN MATLAB cell array."""

    items: list[Any]


@dataclass
class StructArray:
    """A 1xN MATLAB struct array (every element has the same fields)."""

    elements: list[dict[str, Any]]


@dataclass
class MatObject:
    """An instance of a classdef (handle) class, e.g. RefineNet's `ref_obj` with its one property `ref`."""

    class_name: str
    properties: dict[str, Any] = field(default_factory=dict)


def _class_attr(node: Any, name: str) -> None:
    node.attrs.create("MATLAB_class", np.bytes_(name))


def _fields_attr(group: h5py.Group, names: list[str]) -> None:
    chars = np.empty(len(names), dtype=object)
    for index, name in enumerate(names):
        chars[index] = np.frombuffer(name.encode(), dtype="S1")
    group.attrs.create("MATLAB_fields", chars, dtype=h5py.vlen_dtype(np.dtype("S1")))


class MatWriter:
    """One v7.3 file being written: `write(name, value)` per variable, then `close()`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.file = h5py.File(self.path, "w", userblock_size=512, libver="earliest")
        self.refs = self.file.create_group("#refs#")
        self._count = 0
        self._objects: list[MatObject] = []
        canonical_empty = self.refs.create_dataset("a", data=np.zeros(2, np.uint64))
        _class_attr(canonical_empty, "canonical empty")
        canonical_empty.attrs.create("MATLAB_empty", np.uint8(1))

    def _ref_name(self) -> str:
        self._count += 1
        number, name = self._count, ""
        while True:
            name = _REF_NAMES[number % len(_REF_NAMES)] + name
            number //= len(_REF_NAMES)
            if number == 0:
                return name

    def _referenced(self, value: Any) -> Any:
        """Write `value` under a fresh name in #refs# and return an HDF5 object reference to it."""
        return self._put(self.refs, self._ref_name(), value).ref

    def _put(self, parent: h5py.Group, name: str, value: Any) -> Any:
        if value is None:
            node = parent.create_dataset(name, data=np.zeros(2, np.uint64))
            _class_attr(node, "double")
            node.attrs.create("MATLAB_empty", np.uint8(1))
            return node
        if isinstance(value, str):
            codes = np.frombuffer(value.encode("utf-16-le"), np.uint16).reshape(-1, 1)  # 1xN -> (N, 1)
            node = parent.create_dataset(name, data=codes if value else np.zeros(2, np.uint64))
            _class_attr(node, "char")
            node.attrs.create("MATLAB_int_decode", np.int32(2))
            if not value:
                node.attrs.create("MATLAB_empty", np.uint8(1))
            return node
        if isinstance(value, (bool, int, float)):
            value = np.array([[value]], dtype=bool if isinstance(value, bool) else np.float64)
        if isinstance(value, np.ndarray):
            return self._array(parent, name, value)
        if isinstance(value, dict):
            group = parent.create_group(name)
            _class_attr(group, "struct")
            _fields_attr(group, list(value))
            for key, item in value.items():
                self._put(group, key, item)
            return group
        if isinstance(value, StructArray):
            group = parent.create_group(name)
            _class_attr(group, "struct")
            names = list(value.elements[0])
            _fields_attr(group, names)
            for key in names:
                refs = [self._referenced(element[key]) for element in value.elements]
                group.create_dataset(key, data=np.array(refs, dtype=h5py.ref_dtype).reshape(-1, 1))
            return group
        if isinstance(value, Cell):
            refs = [self._referenced(item) for item in value.items] or [self.refs["a"].ref]
            node = parent.create_dataset(name, data=np.array(refs, dtype=h5py.ref_dtype).reshape(-1, 1))
            _class_attr(node, "cell")
            return node
        if isinstance(value, MatObject):
            self._objects.append(value)
            object_id = len(self._objects)
            node = parent.create_dataset(name, data=np.array([[0xDD000000, 2, 1, 1, object_id, 1]], np.uint32).T)
            _class_attr(node, value.class_name)
            node.attrs.create("MATLAB_object_decode", np.int32(3))
            return node
        raise TypeError(f"cannot write {type(value).__name__} to a MAT-file")

    def _array(self, parent: h5py.Group, name: str, value: np.ndarray) -> Any:
        if value.dtype == bool:
            node = parent.create_dataset(name, data=np.atleast_2d(value.astype(np.uint8)).T)
            _class_attr(node, "logical")
            node.attrs.create("MATLAB_int_decode", np.int32(1))
            return node
        if value.size == 0:
            node = parent.create_dataset(name, data=np.array(value.shape or (0, 0), np.uint64))
            node.attrs.create("MATLAB_empty", np.uint8(1))
        else:
            shaped = value.reshape(1, -1) if value.ndim == 1 else value  # MATLAB arrays have at least 2 dims
            node = parent.create_dataset(name, data=np.ascontiguousarray(shaped.T))
        _class_attr(node, _CLASSES[value.dtype])
        return node

    def write(self, name: str, value: Any) -> None:
        """One top-level variable."""
        self._put(self.file, name, value)

    def _subsystem(self) -> None:
        """#subsystem#/MCOS: an opaque metadata blob, then every object's property values (FileWrapper__)."""
        names = sorted({p for obj in self._objects for p in obj.properties} | {o.class_name for o in self._objects})
        blob = np.frombuffer(b"\x04\x00\x00\x00" + b"\x00".join(n.encode() for n in names) + b"\x00", np.uint8)
        cells = [self._referenced(blob.reshape(-1, 1))]
        for obj in self._objects:
            cells += [self._referenced(value) for value in obj.properties.values()]
        group = self.file.create_group("#subsystem#")
        node = group.create_dataset("MCOS", data=np.array(cells, dtype=h5py.ref_dtype).reshape(1, -1))
        _class_attr(node, "FileWrapper__")
        node.attrs.create("MATLAB_object_decode", np.int32(3))

    def close(self) -> None:
        """Write the subsystem, close the HDF5 file and put MATLAB's text header into the user block."""
        if self._objects:
            self._subsystem()
        self.file.close()
        header = HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
        with open(self.path, "r+b") as handle:
            handle.write(header.ljust(512, b"\x00"))

    def __enter__(self) -> MatWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.file.close()


def write_mat73(path: str | Path, variables: dict[str, Any]) -> Path:
    """A v7.3 MAT-file with these top-level variables."""
    with MatWriter(path) as writer:
        for name, value in variables.items():
            writer.write(name, value)
    return Path(path)
