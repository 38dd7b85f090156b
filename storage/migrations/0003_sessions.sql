-- Live sessions: 1-on-1 calls ("sessions") and streams.
--
-- A call's metered usage is checkpointed here by the flusher (one statement
-- for all live calls per flush interval). After a crash, the server settles
-- an active call from its last checkpoint: it never charges beyond it.
CREATE TABLE sessions (
    id               text PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('video', 'voice')),
    fan_id           integer NOT NULL REFERENCES users (id),
    creator_id       integer NOT NULL REFERENCES users (id),
    rate_per_minute  integer NOT NULL CHECK (rate_per_minute >= 0),
    fee_bps          integer NOT NULL CHECK (fee_bps BETWEEN 0 AND 9999),
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended')),
    node_id          text NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT now(),
    ended_at         timestamptz,
    billed_seconds   integer NOT NULL DEFAULT 0 CHECK (billed_seconds >= 0),
    tokens_charged   bigint NOT NULL DEFAULT 0 CHECK (tokens_charged >= 0),
    platform_fee     bigint NOT NULL DEFAULT 0 CHECK (platform_fee >= 0),
    creator_earned   bigint NOT NULL DEFAULT 0 CHECK (creator_earned >= 0),
    end_reason       text,
    checkpoint_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (fan_id <> creator_id)
);
CREATE INDEX sessions_fan ON sessions (fan_id, started_at DESC);
CREATE INDEX sessions_creator ON sessions (creator_id, started_at DESC);
CREATE INDEX sessions_active ON sessions (checkpoint_at) WHERE status = 'active';

CREATE TABLE streams (
    id              text PRIMARY KEY,
    creator_id      integer NOT NULL REFERENCES users (id),
    title           text NOT NULL,
    category        text NOT NULL,
    status          text NOT NULL DEFAULT 'live' CHECK (status IN ('live', 'ended')),
    node_id         text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    peak_viewers    integer NOT NULL DEFAULT 0,
    unique_viewers  integer NOT NULL DEFAULT 0,
    chat_messages   integer NOT NULL DEFAULT 0,
    tips_total      bigint NOT NULL DEFAULT 0,
    gifts_total     bigint NOT NULL DEFAULT 0,
    end_reason      text,
    checkpoint_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX streams_one_live_per_creator ON streams (creator_id) WHERE status = 'live';
CREATE INDEX streams_live ON streams (started_at DESC) WHERE status = 'live';

CREATE TABLE stream_viewers (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id  text NOT NULL REFERENCES streams (id),
    user_id    integer NOT NULL REFERENCES users (id),
    joined_at  timestamptz NOT NULL,
    left_at    timestamptz
);
CREATE INDEX stream_viewers_stream ON stream_viewers (stream_id);

CREATE TABLE chat_messages (
    stream_id  text NOT NULL REFERENCES streams (id),
    id         integer NOT NULL,
    user_id    integer NOT NULL REFERENCES users (id),
    body       text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (stream_id, id)
);

CREATE TABLE gifts (
    id     text PRIMARY KEY,
    name   text NOT NULL,
    tokens integer NOT NULL CHECK (tokens > 0),
    sort   integer NOT NULL DEFAULT 0
);
INSERT INTO gifts (id, name, tokens, sort) VALUES
    ('rose', 'Rose', 10, 1),
    ('heart', 'Heart', 25, 2),
    ('diamond', 'Diamond', 100, 3),
    ('rocket', 'Rocket', 500, 4),
    ('crown', 'Crown', 1000, 5);
