"""A chunk's rows as columns, made rows again for the outcomes: pure logic."""

from __future__ import annotations

from schemas.cells import Cells


def test_rows_of_many_cells_are_the_rows_each_gives() -> None:
    text = [
        Cells.from_records(["email", "name"], [[f"u{c}{i}@x.io", f"Ada {i}"] for i in range(6)])
        for c in range(3)
    ]
    other_columns = Cells.from_records(["email"], [["b@x.io"], [None]])
    json_rows = Cells.from_rows([{"email": "j@x.io", "score": 7}, {"tags": ["a", None]}])
    picks = [
        (text[0], [1, 4]),
        (text[1], []),
        (text[2], [0]),
        (other_columns, [0, 1]),  # a run of its own: other columns
        (json_rows, [1, 0]),  # and of another kind
        (text[0], [5]),
    ]
    rows = Cells.rows_of(picks)
    assert rows == [row for cells, indexes in picks for row in cells.rows_at(indexes)]
    assert rows == [
        {"email": "u01@x.io", "name": "Ada 1"},
        {"email": "u04@x.io", "name": "Ada 4"},
        {"email": "u20@x.io", "name": "Ada 0"},
        {"email": "b@x.io"},
        {},  # a row that gives no value
        {"tags": ["a", None]},  # JSON values as they were given
        {"email": "j@x.io", "score": 7},
        {"email": "u05@x.io", "name": "Ada 5"},
    ]
    assert Cells.rows_of([]) == []
