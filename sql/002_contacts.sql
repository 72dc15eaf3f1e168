-- Contacts, unique per account by case-insensitive email.

CREATE TABLE contacts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id     text NOT NULL,
    email          text NOT NULL,
    first_name     text,
    last_name      text,
    phone          text,
    company        text,
    job_title      text,
    status         text,
    lead_score     integer,
    custom_fields  jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- The bulk action and row that last wrote this contact: a later row of the
    -- same action with the same email is an in-file duplicate, across batches
    -- and restarts, without a separate per-action key table.
    last_action_id uuid,
    last_row_no    integer
);

CREATE UNIQUE INDEX contacts_account_email ON contacts (account_id, lower(email));
