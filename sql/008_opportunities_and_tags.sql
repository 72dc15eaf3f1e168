-- Opportunities (identified by the caller's external id, optionally naming a
-- contact of the account), and tags on contacts (add_tags / remove_tags).

CREATE TABLE opportunities (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id     text NOT NULL,
    external_id    text NOT NULL,
    name           text,
    amount         numeric(14, 2) CHECK (amount >= 0),
    stage          text CHECK (stage IN ('prospecting', 'qualification', 'proposal',
                                         'negotiation', 'closed_won', 'closed_lost')),
    close_date     date,
    -- Given as the contact's email (schemas.opportunity.OpportunityRow.contact_email).
    contact_id     bigint REFERENCES contacts (id) ON DELETE SET NULL,
    custom_fields  jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    last_action_id uuid,  -- see contacts.last_action_id
    last_row_no    integer
);

CREATE UNIQUE INDEX opportunities_account_external_id ON opportunities (account_id, external_id);
-- A deleted contact sets its opportunities' contact_id to null: found by this index.
CREATE INDEX opportunities_contact ON opportunities (contact_id) WHERE contact_id IS NOT NULL;

-- A contact's tags, a set compared without case, each as first given; null: none
-- (no bytes in the rows of contacts that never had a tag).
ALTER TABLE contacts ADD COLUMN tags text[];

-- An action's name is one of schemas.action.ACTIONS, checked where requests
-- come in; a list here would be a second registry to keep in step by hand.
ALTER TABLE bulk_actions DROP CONSTRAINT bulk_actions_action_check;
