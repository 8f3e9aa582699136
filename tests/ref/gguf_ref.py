"""A small GGUF reader (v2/v3) for reference computations in tests.

Independent of core/gguf.c: reads metadata into a dict and F32/F16/Q8_0
tensors into numpy arrays (shape reversed from GGUF's ne, so a weight with
ne = {k, n} becomes an (n, k) array).

Format: "GGUF" u32 version, u64 n_tensors, u64 n_kv; n_kv x (str key,
u32 type, value); n_tensors x (str name, u32 n_dims, u64 ne[n_dims],
u32 type, u64 offset); data at the next multiple of general.alignment.
"""
import struct

import numpy as np

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}


class GGUF:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        self.pos = 0
        if self.buf[:4] != b"GGUF":
            raise ValueError("not a GGUF file")
        self.pos = 4
        version, n_tensors, n_kv = self._u("<I"), self._u("<Q"), self._u("<Q")
        if version not in (2, 3):
            raise ValueError("GGUF version %d" % version)
        self.meta = {}
        for _ in range(n_kv):
            key = self._str()
            self.meta[key] = self._value(self._u("<I"))
        infos = []
        for _ in range(n_tensors):
            name = self._str()
            nd = self._u("<I")
            ne = [self._u("<Q") for _ in range(nd)]
            infos.append((name, ne, self._u("<I"), self._u("<Q")))
        align = self.meta.get("general.alignment", 32)
        start = (self.pos + align - 1) // align * align
        self.tensors = {name: (ne, t, start + off) for name, ne, t, off in infos}

    def _u(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def _str(self):
        n = self._u("<Q")
        s = self.buf[self.pos:self.pos + n].decode("utf-8", "replace")
        self.pos += n
        return s

    def _value(self, t):
        if t in _SCALARS:
            return self._u(_SCALARS[t])
        if t == 8:
            return self._str()
        if t == 9:
            et, n = self._u("<I"), self._u("<Q")
            return [self._value(et) for _ in range(n)]
        raise ValueError("value type %d" % t)

    def tensor(self, name):
        """The tensor as float32, shape reversed from ne."""
        ne, t, off = self.tensors[name]
        n = int(np.prod(ne))
        shape = tuple(reversed(ne))
        if t == 0:
            return np.frombuffer(self.buf, np.float32, n, off).reshape(shape).copy()
        if t == 1:
            return np.frombuffer(self.buf, np.float16, n, off).astype(np.float32).reshape(shape)
        if t == 8:  # Q8_0: blocks of f16 scale + 32 int8
            blk = np.frombuffer(self.buf, np.dtype([("d", "<f2"), ("q", "i1", 32)]), n // 32, off)
            x = blk["d"].astype(np.float32)[:, None] * blk["q"].astype(np.float32)
            return x.reshape(shape)
        raise ValueError("tensor %s: type %d not supported here" % (name, t))
