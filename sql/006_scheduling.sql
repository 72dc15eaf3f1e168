-- Scheduled actions keep their chunks here, durably, until they are due; the
-- scheduler (in every agents process, one firing per action) then publishes
-- them to Kafka like any other action's.
CREATE TABLE scheduled_chunks (
    action_id uuid NOT NULL REFERENCES bulk_actions (id) ON DELETE CASCADE,
    chunk_no  integer NOT NULL,
    chunk     bytea NOT NULL,
    PRIMARY KEY (action_id, chunk_no)
);

CREATE INDEX bulk_actions_scheduled ON bulk_actions (scheduled_for) WHERE status = 'scheduled';
