-- Accounts and their API keys. Only a SHA-256 of each key is stored: keys are
-- 256-bit random tokens, so a fast hash is enough and lookups stay one index probe.

CREATE TABLE accounts (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    -- Row allowance override for the consumer-side rate limit; NULL = default.
    rows_per_minute integer CHECK (rows_per_minute > 0),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_hash   bytea PRIMARY KEY,
    account_id text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    prefix     text NOT NULL,  -- the key's first characters, to tell keys apart
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- A retried POST with the same Idempotency-Key returns the original action.
CREATE TABLE idempotency_keys (
    account_id   text NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    action_id    uuid NOT NULL REFERENCES bulk_actions (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, key)
);

-- The columns of the input (CSV header, or the union of JSON keys), so that
-- failed rows can be downloaded with their original header.
ALTER TABLE bulk_actions ADD COLUMN columns text[] NOT NULL DEFAULT '{}';
