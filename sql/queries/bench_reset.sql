-- Between the bench's phases: each starts from an empty table with the same indexes.
TRUNCATE contacts
