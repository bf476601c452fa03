"""The end-of-unit markers that close each checkpoint unit's rows on their way through the index job.

A checkpoint unit is a bounded range of one file's records: 1-based record numbers `(u * unit_rows,
(u + 1) * unit_rows]` form unit `u` (`run.checkpoint_rows`). A read task emits one marker row after each unit's
last record (`_read_error = END_OF_FILE`, `_line` = records read so far, `_record` = the marker's JSON);
the prep stage turns it into a row with `reject_stage = EOF_STAGE` and the JSON in `reject_detail`;
the writer passes it through; the driver checkpoints the unit once the acknowledged rows of that unit
equal the marker's `expected` count, in whatever order they arrive. The file's last unit carries
`units`, the file's unit count, so the driver knows when a whole file is done.

Defined here once because the reader (connectors/), the prep stage (pipeline/), the writer
(connectors/) and the driver (jobs/) all recognise it."""

from __future__ import annotations

import json
from dataclasses import dataclass

END_OF_FILE = "__end_of_file__"  # `_read_error` of the reader's marker row; not an error
EOF_STAGE = "eof"  # `reject_stage` of the marker row after prep
STATS_STAGE = "stats"  # `reject_stage` of the one per-batch statistics row a writer emits


@dataclass(frozen=True)
class UnitEnd:
    """What a unit's end marker says: the unit, how many rows of it travel on (records of the unit that
    the run processes: all of them, or those its plan keeps), and on the file's last unit, `units`."""

    unit: int
    expected: int
    units: int | None = None  # set on the file's last unit only

    def to_json(self) -> str:
        return json.dumps({"unit": self.unit, "expected": self.expected, "units": self.units}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "UnitEnd":
        data = json.loads(text)
        return cls(int(data["unit"]), int(data["expected"]), None if data.get("units") is None else int(data["units"]))


def unit_of(line: int, unit_rows: int) -> int:
    """The checkpoint unit of the 1-based record (or line) number `line`."""
    return max(0, int(line) - 1) // int(unit_rows)
