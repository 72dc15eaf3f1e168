-- Completion webhooks: an action may name a callback_url; when it reaches a
-- terminal status, the API's deliverer (ingest_api/webhooks.py) POSTs it there,
-- signed with the account's webhook secret.
--
-- The secret is kept in clear: it must sign, so it cannot be a hash like the
-- API keys. It is a secret at rest (README, Threat model).
ALTER TABLE accounts ADD COLUMN webhook_secret text;
ALTER TABLE bulk_actions ADD COLUMN callback_url text;

-- One row per attempt. The trigger below writes attempt 1 (pending, due now);
-- a failed attempt writes the next one, due after the backoff, until 24 h
-- after the first; the last one is then 'given_up'. A pending row is claimed
-- by moving next_attempt_at ahead (a lease): a process that dies mid-send
-- leaves it due again.
CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action_id       uuid NOT NULL REFERENCES bulk_actions (id) ON DELETE CASCADE,
    attempt         integer NOT NULL CHECK (attempt >= 1),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed', 'given_up')),
    next_attempt_at timestamptz DEFAULT now(),  -- while pending
    attempted_at    timestamptz,
    response_status integer,  -- the receiver's HTTP status, if it answered
    error           text,  -- why the attempt failed
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (action_id, attempt)
);
-- An action is delivered at most once.
CREATE UNIQUE INDEX webhook_deliveries_delivered ON webhook_deliveries (action_id)
    WHERE status = 'delivered';
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';

-- Whoever ends the action (the agents' progress, a seal, a cancel, the end of
-- an upload), the first delivery is written in the same transaction.
CREATE FUNCTION bulk_actions_webhook() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.callback_url IS NOT NULL
       AND NEW.status IN ('completed', 'failed', 'cancelled')
       AND (TG_OP = 'INSERT' OR OLD.status NOT IN ('completed', 'failed', 'cancelled')) THEN
        INSERT INTO webhook_deliveries (action_id, attempt) VALUES (NEW.id, 1)
        ON CONFLICT (action_id, attempt) DO NOTHING;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER bulk_actions_webhook
AFTER INSERT OR UPDATE OF status ON bulk_actions
FOR EACH ROW EXECUTE FUNCTION bulk_actions_webhook();
