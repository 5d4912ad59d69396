"""Byte streams under the readers: decompression that keeps everything decoded before damage, and
text encodings that are not ASCII-compatible (UTF-16, UTF-32) transcoded to UTF-8.

Decompression reads the streams of a file one after another (gzip members, bz2 and xz streams,
zstd frames), as ``gzip -dc`` and ``zstd -dc`` do. Damage (a corrupt block, garbage after the last
stream, a file that stops inside one) does not raise where it is found: the bytes decoded before it
are delivered first, then the stream ends and ``damage`` says what happened, so the records before
the damage are all read. The library readers (``GzipFile``, ``BZ2File``, ...) raise instead and
lose whatever they had decoded in the same call, and ``BZ2File``/``LZMAFile`` silently ignore
trailing garbage.

The readers split lines on ``b"\\n"``, which is wrong for UTF-16 and UTF-32; those files are
transcoded to UTF-8 as they are read, and undecodable bytes end the stream the same way.
"""

from __future__ import annotations

import bz2
import codecs
import io
import lzma
import zlib
from typing import BinaryIO

_CHUNK = 1 << 17

# Byte-order marks, longest first (the UTF-32 LE mark begins with the UTF-16 LE one).
BOMS = [(codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")]


def _new_decoder(kind: str):
    if kind == "gzip":
        return zlib.decompressobj(zlib.MAX_WBITS | 16)   # one gzip member, header and CRC checked
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    if kind == "xz":
        return lzma.LZMADecompressor()
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


class DecompressedStream(io.RawIOBase):
    """The decompressed bytes of a ``kind`` ('gzip', 'bz2', 'xz', 'zstd') file, ending at the first
    damage; ``damage`` then describes it and ``decoded`` is the number of bytes delivered."""

    def __init__(self, raw: BinaryIO, kind: str):
        self._raw, self.kind = raw, kind
        self._errors: tuple[type[BaseException], ...] = (OSError, EOFError, lzma.LZMAError, zlib.error)
        if kind == "zstd":
            import zstandard

            self._errors += (zstandard.ZstdError,)
        self._decoder = None              # the decoder of the stream being read; None between streams
        self._out, self._pos = b"", 0
        self._pending: str | None = None  # damage found, reported once the bytes before it are read
        self._eof = False
        self.damage: str | None = None
        self.decoded = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while self._pos == len(self._out):
            if self._pending is not None:
                self.damage, self._pending, self._eof = self._pending, None, True
            if self._eof:
                return 0
            self._fill()
        n = min(len(buffer), len(self._out) - self._pos)
        buffer[:n] = self._out[self._pos:self._pos + n]
        self._pos += n
        self.decoded += n
        return n

    def _fill(self) -> None:
        data = self._raw.read(_CHUNK)
        out: list[bytes] = []
        if not data:
            if self._decoder is not None:
                self._pending = f"the file ends inside a {self.kind} stream: it is truncated"
            self._eof = self._pending is None
        try:
            while data:
                if self._decoder is None:
                    if self.kind == "xz":
                        data = data.lstrip(b"\x00")   # stream padding, allowed between xz streams
                        if not data:
                            break
                    self._decoder = _new_decoder(self.kind)
                out.append(self._decoder.decompress(data))
                if not self._decoder.eof:
                    break
                data, self._decoder = self._decoder.unused_data, None
        except self._errors as exc:
            self._pending = f"{type(exc).__name__}: {exc}"
        self._out, self._pos = b"".join(out), 0

    def close(self) -> None:
        self._raw.close()
        super().close()


class TranscodedStream(io.RawIOBase):
    """A stream in ``encoding`` read as UTF-8, ending at the first undecodable bytes (``damage``)."""

    def __init__(self, raw: BinaryIO, encoding: str):
        self._raw, self.encoding = raw, encoding
        self._decoder = codecs.getincrementaldecoder(encoding)("strict")
        self._out, self._pos = b"", 0
        self._offset = 0                  # input bytes consumed before the current chunk
        self._pending: str | None = None
        self._eof = False
        self.damage: str | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while self._pos == len(self._out):
            if self._pending is not None:
                self.damage, self._pending, self._eof = self._pending, None, True
            if self._eof:
                return 0
            self._fill()
        n = min(len(buffer), len(self._out) - self._pos)
        buffer[:n] = self._out[self._pos:self._pos + n]
        self._pos += n
        return n

    def _fill(self) -> None:
        data = self._raw.read(_CHUNK)
        held = len(self._decoder.getstate()[0])   # bytes of a character split across chunks
        try:
            text = self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            valid = exc.object[:exc.start]
            text = valid.decode(self.encoding, errors="ignore") if valid else ""
            bad = exc.object[exc.start:exc.start + 4]
            self._pending = (f"bytes {bad!r} at offset {self._offset - held + exc.start} are not valid "
                             f"{self.encoding} ({exc.reason})")
        self._eof = not data and self._pending is None
        self._offset += len(data)
        self._out, self._pos = text.encode("utf-8"), 0

    def close(self) -> None:
        self._raw.close()
        super().close()


def detect_bom(head: bytes) -> tuple[str, int] | None:
    """(encoding, length of the mark) when ``head`` starts with a byte-order mark."""
    for bom, encoding in BOMS:
        if head.startswith(bom):
            return encoding, len(bom)
    return None


def needs_transcoding(encoding: str) -> bool:
    """Encodings in which b'\\n' is not a newline (the readers split lines on it)."""
    return codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))


def guess_wide_encoding(head: bytes) -> str | None:
    """'utf-16-le', 'utf-16-be', 'utf-32-le' or 'utf-32-be' when the NUL bytes of ``head`` fall in the
    pattern that text in that encoding gives (mostly ASCII: NUL every other byte, or three in four)."""
    sample = head[: 8192 - 8192 % 4]
    if len(sample) < 8:
        return None

    def nul_share(offset: int, step: int) -> float:
        column = sample[offset::step]
        return column.count(0) / len(column)

    if min(nul_share(1, 4), nul_share(2, 4), nul_share(3, 4)) > 0.9 and nul_share(0, 4) < 0.1:
        return "utf-32-le"
    if min(nul_share(0, 4), nul_share(1, 4), nul_share(2, 4)) > 0.9 and nul_share(3, 4) < 0.1:
        return "utf-32-be"
    if nul_share(1, 2) > 0.3 and nul_share(0, 2) < 0.05:
        return "utf-16-le"
    if nul_share(0, 2) > 0.3 and nul_share(1, 2) < 0.05:
        return "utf-16-be"
    return None
