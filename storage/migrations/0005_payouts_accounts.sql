-- Stripe facts a purchase settles against, and where creator payouts go.
--
-- A purchase's ledger position is reconciled from what Stripe told us
-- (paid, cumulative refunded cents, dispute state), whatever order the
-- webhooks arrive in: `paid` and the dispute columns are those facts;
-- tokens_clawed / debt_tokens / frozen_tokens (migration 0004) are the
-- position already booked.
ALTER TABLE purchases
    ADD COLUMN paid           boolean NOT NULL DEFAULT false,
    ADD COLUMN dispute_id     text,
    ADD COLUMN dispute_status text CHECK (dispute_status IN ('open', 'won', 'lost')),
    ADD COLUMN dispute_cents  integer NOT NULL DEFAULT 0 CHECK (dispute_cents >= 0);

-- A creator's Stripe connected account (set by the Connect onboarding flow).
CREATE TABLE payout_accounts (
    user_id           integer PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    stripe_account_id text NOT NULL CHECK (stripe_account_id ~ '^acct_[A-Za-z0-9]+$'),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- The destination a payout's transfer was (or will be) sent to: a retry after
-- a crash must repeat exactly the same Stripe request under the same key.
ALTER TABLE payouts ADD COLUMN destination text;
