-- Contacts can be matched by an external id; companies arrive as a second entity.

ALTER TABLE contacts ADD COLUMN external_id text;
CREATE UNIQUE INDEX contacts_account_external_id ON contacts (account_id, external_id)
    WHERE external_id IS NOT NULL;

-- Companies, unique per account by normalised domain (lower case, no scheme,
-- no "www.", no path: see schemas.company).
CREATE TABLE companies (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id     text NOT NULL,
    domain         text NOT NULL,
    external_id    text,
    name           text,
    industry       text,
    employee_count integer,
    custom_fields  jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    last_action_id uuid,  -- see contacts.last_action_id
    last_row_no    integer
);

CREATE UNIQUE INDEX companies_account_domain ON companies (account_id, domain);
CREATE UNIQUE INDEX companies_account_external_id ON companies (account_id, external_id)
    WHERE external_id IS NOT NULL;
