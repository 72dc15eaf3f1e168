-- Live progress: every change of an action's status or counts, by whichever
-- writer (the agents' progress, a seal, a cancel, the end of an upload), is
-- numbered and published on the channel 'bulkflow_actions' by this trigger,
-- so no writer needs code of its own. API processes LISTEN on one connection
-- each and fan the events out to their WebSocket and SSE subscribers.
--
-- event_seq numbers an action's changes (1, 2, ...): the SSE event id, which
-- a client resuming with Last-Event-ID compares. A NOTIFY is sent at commit,
-- and only if the transaction commits; the agents update an action once per
-- batch, so this is one small message per batch and action.

ALTER TABLE bulk_actions ADD COLUMN event_seq bigint NOT NULL DEFAULT 0;

CREATE FUNCTION bulk_actions_publish() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND NEW.status IS NOT DISTINCT FROM OLD.status
       AND NEW.processed_rows = OLD.processed_rows
       AND NEW.total_rows IS NOT DISTINCT FROM OLD.total_rows
       AND NEW.succeeded = OLD.succeeded
       AND NEW.failed = OLD.failed
       AND NEW.skipped = OLD.skipped THEN
        RETURN NEW;  -- a lease renewal, a reschedule: nothing a subscriber shows
    END IF;
    NEW.event_seq := CASE WHEN TG_OP = 'UPDATE' THEN OLD.event_seq + 1 ELSE 1 END;
    PERFORM pg_notify('bulkflow_actions', json_build_object(
        'id', NEW.id,
        'account_id', NEW.account_id,
        'seq', NEW.event_seq,
        'status', NEW.status,
        'processed', NEW.processed_rows,
        'total', NEW.total_rows,
        'succeeded', NEW.succeeded,
        'failed', NEW.failed,
        'skipped', NEW.skipped
    )::text);
    RETURN NEW;
END;
$$;

CREATE TRIGGER bulk_actions_publish
BEFORE INSERT OR UPDATE ON bulk_actions
FOR EACH ROW EXECUTE FUNCTION bulk_actions_publish();
