-- Buying tokens with Stripe, webhook bookkeeping and creator payouts.
CREATE TABLE token_packages (
    id          text PRIMARY KEY,
    tokens      integer NOT NULL CHECK (tokens > 0),
    price_cents integer NOT NULL CHECK (price_cents > 0),
    currency    text NOT NULL DEFAULT 'usd',
    active      boolean NOT NULL DEFAULT true,
    sort        integer NOT NULL DEFAULT 0
);
INSERT INTO token_packages (id, tokens, price_cents, currency, sort) VALUES
    ('tokens_100', 100, 999, 'usd', 1),
    ('tokens_500', 500, 4499, 'usd', 2),
    ('tokens_1000', 1000, 8499, 'usd', 3),
    ('tokens_5000', 5000, 39999, 'usd', 4);

CREATE TABLE purchases (
    id                 text PRIMARY KEY,
    user_id            integer NOT NULL REFERENCES users (id),
    package_id         text NOT NULL REFERENCES token_packages (id),
    tokens             integer NOT NULL CHECK (tokens > 0),
    amount_cents       integer NOT NULL CHECK (amount_cents > 0),
    currency           text NOT NULL,
    payment_intent_id  text UNIQUE,
    charge_id          text,
    status             text NOT NULL DEFAULT 'pending' CHECK (status IN (
                           'pending', 'succeeded', 'failed', 'refunded', 'partially_refunded',
                           'disputed', 'dispute_won', 'dispute_lost')),
    refunded_cents     integer NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0),
    tokens_clawed      bigint NOT NULL DEFAULT 0,
    debt_tokens        bigint NOT NULL DEFAULT 0,
    frozen_tokens      bigint NOT NULL DEFAULT 0,
    failure_message    text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX purchases_user ON purchases (user_id, created_at DESC);
CREATE INDEX purchases_charge ON purchases (charge_id) WHERE charge_id IS NOT NULL;

-- Each Stripe event id is recorded once, in the same transaction as its effect.
CREATE TABLE stripe_events (
    id           text PRIMARY KEY,
    type         text NOT NULL,
    object_id    text,
    outcome      text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payouts (
    id                 text PRIMARY KEY,
    user_id            integer NOT NULL REFERENCES users (id),
    tokens             bigint NOT NULL CHECK (tokens > 0),
    amount_cents       integer NOT NULL CHECK (amount_cents > 0),
    currency           text NOT NULL,
    status             text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid', 'failed')),
    stripe_transfer_id text,
    failure_message    text,
    automatic          boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payouts_user ON payouts (user_id, created_at DESC);
CREATE INDEX payouts_pending ON payouts (created_at) WHERE status = 'pending';
