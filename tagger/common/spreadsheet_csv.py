"""CSV files as spreadsheets write and read them.

Coming in: Excel saves "CSV" in the computer's legacy code page (Windows-1252 in Western
Europe and the Americas), "CSV UTF-8" with a byte-order mark, and "Unicode Text" as UTF-16
separated by tabs; where the decimal mark is a comma it separates with semicolons.
`decode_csv` reads the encoding from a byte-order mark, else recognises UTF-16 by its zero
bytes, else takes UTF-8 when the bytes are valid UTF-8, else Windows-1252 (Latin-1 for the
five bytes that leaves undefined), which reads any file. `csv_rows` reports a line the csv
module cannot read (a cell over its 128 KB limit) by number, and carries on with the next.

Going out: a cell starting with "=", "+", "-" or "@" is a formula to a spreadsheet, which may
run it (`=HYPERLINK(...)`, `=cmd|...` via DDE). `spreadsheet_safe` puts a single quote before
such a cell, and before one starting with a tab or carriage return (OWASP's rule against CSV
injection), so that it opens as text; `without_spreadsheet_escape` takes the quote off again
when Tagger reads its own files back.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tagger.common.safe_files import read_regular

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A million rows of long paths; anything bigger is not a list of labels.
MAX_CSV_BYTES = 256 * 2**20

# UTF-32's little-endian mark begins with UTF-16's, so it is looked for first.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Enough of a file to tell UTF-16 without a byte-order mark by where its zero bytes fall.
_SAMPLE_BYTES = 4096
_SEPARATORS_BESIDE_COMMA = (";", "\t")


@dataclass(frozen=True)
class CsvText:
    text: str
    encoding: str  # the codec it was read with: "utf-8", "utf-8-sig", "utf-16", "cp1252"...

    @property
    def guessed(self) -> bool:
        """True when the bytes said nothing about their encoding and a legacy one was assumed."""
        return self.encoding in ("cp1252", "latin-1")


@dataclass(frozen=True)
class CsvLine:
    number: int  # the line of the file the row ends on
    cells: list[str] = field(default_factory=list)
    problem: str = ""  # why the line could not be read; its cells are then empty


def read_csv_file(path: str | Path) -> CsvText:
    """The decoded text of the file; OSError (UnsafeFileError) for a pipe, a device or a file
    over MAX_CSV_BYTES, which reading would hang on or fill memory with."""
    return decode_csv(read_regular(path, max_bytes=MAX_CSV_BYTES))


def decode_csv(data: bytes) -> CsvText:
    """The text of a CSV file, whichever encoding a spreadsheet saved it in."""
    for mark, codec in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            # The mark settles the encoding; a damaged character only spoils its own row.
            return CsvText(data.decode(codec, errors="replace"), codec)
    byte_order = _utf16_without_mark(data)
    if byte_order is not None:
        return CsvText(data.decode(byte_order, errors="replace"), byte_order)
    for codec in ("utf-8", "cp1252"):
        try:
            return CsvText(data.decode(codec), codec)
        except UnicodeDecodeError:
            continue
    return CsvText(data.decode("latin-1"), "latin-1")


def _utf16_without_mark(data: bytes) -> str | None:
    # Text that is mostly ASCII has a zero in every other byte in UTF-16, and no zero at all
    # in UTF-8 or a legacy code page.
    sample = data[:_SAMPLE_BYTES]
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    even_zeros, odd_zeros = sample[0::2].count(0), sample[1::2].count(0)
    if odd_zeros >= pairs * 0.4 and even_zeros == 0:
        return "utf-16-le"
    if even_zeros >= pairs * 0.4 and odd_zeros == 0:
        return "utf-16-be"
    return None


def guess_delimiter(text: str) -> str:
    """ "," unless the first line has none and has semicolons or tabs instead."""
    first = next((line for line in io.StringIO(text) if line.strip()), "")
    if "," in first:
        return ","
    counts = {separator: first.count(separator) for separator in _SEPARATORS_BESIDE_COMMA}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def csv_rows(stream: IO[str], delimiter: str = ",") -> Iterator[CsvLine]:
    """Every row with the line it ends on; a line that cannot be read comes with a problem."""
    reader = csv.reader(stream, delimiter=delimiter)
    while True:
        lines_before = reader.line_num
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            if reader.line_num == lines_before:
                return  # nothing was consumed: reading on would report the same error for ever
            yield CsvLine(reader.line_num, problem=f"cannot be read as CSV: {_describe(error)}")
            continue
        yield CsvLine(reader.line_num, cells)


def _describe(error: csv.Error) -> str:
    message = str(error)
    if message.startswith("field larger than field limit"):
        return f"a cell is longer than {csv.field_size_limit() // 1024} KB"
    return message


def looks_like_formula(text: str) -> bool:
    return text.startswith(FORMULA_STARTS)


def spreadsheet_safe(cell: str) -> str:
    """`cell` as a spreadsheet will show it, never run it."""
    return "'" + cell if looks_like_formula(cell) else cell


def without_spreadsheet_escape(cell: str) -> str:
    """A cell `spreadsheet_safe` wrote, back as it was."""
    return cell[1:] if cell.startswith("'") and looks_like_formula(cell[1:]) else cell


__all__ = [
    "CsvLine",
    "CsvText",
    "FORMULA_STARTS",
    "MAX_CSV_BYTES",
    "csv_rows",
    "decode_csv",
    "guess_delimiter",
    "looks_like_formula",
    "read_csv_file",
    "spreadsheet_safe",
    "without_spreadsheet_escape",
]
