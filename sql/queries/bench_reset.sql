-- Between the bench's phases: each starts from an empty table with the same indexes.
-- (Opportunities too: their contact_id references contacts, so contacts is
-- truncated only along with them; the bench writes none.)
TRUNCATE contacts, opportunities
