"""The checked records between the two passes of an import, on disk and encrypted.

An import checks every row before it writes anything, and then writes batch by batch;
holding all the rows in between would make its memory grow with the intake. So the
first pass writes each chunk of checked records here, and the second reads them back:
the source (a CSV, a directory) is read once, and every row the import writes is the
row that was checked.

The rows hold dates of birth and ID numbers, which are never stored in clear: each chunk
is sealed with AES-GCM under a key that exists only in this process's memory, in a file
that has no name (unlinked as it is created) and vanishes when it is closed or the
process ends. The chunk's number is its nonce and is authenticated, so chunks cannot be
swapped or replayed.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Iterator, Sequence
from datetime import date

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from provider.intake.records import IntakeRecord

_LENGTH = struct.Struct(">I")


class Spool:
    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="umpass-intake-")  # noqa: SIM115 - closed by close()
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self._end = 0
        self._chunks = 0

    def write(self, rows: Sequence[tuple[int, IntakeRecord]]) -> None:
        """One chunk: each record with its position in the source (0, 1, ...)."""
        plain = json.dumps([[n, *_fields(r)] for n, r in rows], ensure_ascii=False).encode()
        sealed = self._aead.encrypt(self._nonce(self._chunks), plain, None)
        os.pwrite(self._file.fileno(), _LENGTH.pack(len(sealed)) + sealed, self._end)
        self._end += _LENGTH.size + len(sealed)
        self._chunks += 1

    def chunks(self) -> Iterator[list[tuple[int, IntakeRecord]]]:
        """The chunks in the order written; each call reads from the start."""
        offset = 0
        for number in range(self._chunks):
            (length,) = _LENGTH.unpack(os.pread(self._file.fileno(), _LENGTH.size, offset))
            sealed = os.pread(self._file.fileno(), length, offset + _LENGTH.size)
            offset += _LENGTH.size + length
            plain = self._aead.decrypt(self._nonce(number), sealed, None)
            yield [(row[0], _record(row[1:])) for row in json.loads(plain)]

    def close(self) -> None:
        self._file.close()

    @staticmethod
    def _nonce(number: int) -> bytes:
        return number.to_bytes(12, "big")


def _fields(r: IntakeRecord) -> list[str]:
    return [
        r.where,
        r.user_id,
        r.first_name,
        r.last_name,
        r.email,
        r.phone,
        r.date_of_birth.isoformat(),
        r.id_number,
        r.programme,
        r.language,
    ]


def _record(f: list[str]) -> IntakeRecord:
    return IntakeRecord(
        where=f[0],
        user_id=f[1],
        first_name=f[2],
        last_name=f[3],
        email=f[4],
        phone=f[5],
        date_of_birth=date.fromisoformat(f[6]),
        id_number=f[7],
        programme=f[8],
        language=f[9],
    )
