"""dispatcher.storage.cursor: the gap rule of every reader of an event log by id (webhook
fan-out, the configuration watch): rows in order while ids follow each other, a missing id
waited for until the row after it is SETTLE_SECONDS old. PostgreSQL's late commits:
tests/dispatcher/storage/test_configuration.py and test_webhooks.py."""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.storage.cursor import SETTLE_SECONDS, readable

T0 = 1_700_000_000.0


@dataclass
class Row:
    id: int
    at: float


ROWS = [Row(4, T0), Row(5, T0), Row(7, T0 + 3), Row(8, T0 + 3)]


def test_rows_are_taken_while_their_ids_follow_each_other() -> None:
    taken, cursor = readable(ROWS, 3, T0 + 4)
    assert [x.id for x in taken] == [4, 5] and cursor == 5  # 6 may still commit


def test_a_missing_id_is_given_up_once_the_row_after_it_is_settled() -> None:
    taken, cursor = readable(ROWS, 3, T0 + 3 + SETTLE_SECONDS + 0.1)
    assert [x.id for x in taken] == [4, 5, 7, 8] and cursor == 8  # 6 was rolled back


def test_a_gap_right_after_the_cursor_holds_it_and_nothing_is_taken() -> None:
    assert readable(ROWS, 1, T0 + 4) == ([], 1)
    assert readable([], 9, T0) == ([], 9)
    assert readable(ROWS, 3, T0 + 4, settle=0.5)[1] == 8  # the caller's own settle time
