-- Users, refresh tokens and creator settings.
CREATE TABLE users (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    username      text NOT NULL CHECK (username ~ '^[A-Za-z0-9_]{3,32}$'),
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('fan', 'creator', 'admin')),
    display_name  text NOT NULL DEFAULT '',
    bio           text NOT NULL DEFAULT '',
    avatar_url    text NOT NULL DEFAULT '',
    status        text NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'disabled', 'banned', 'deleted')),
    payment_flag  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

-- Rotating refresh tokens, stored as SHA-256 hashes. A token is used once;
-- presenting a used token revokes its whole family (theft detection).
CREATE TABLE refresh_tokens (
    token_hash  bytea PRIMARY KEY,
    user_id     integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family      uuid NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE creator_settings (
    user_id      integer PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    video_rate   integer NOT NULL DEFAULT 60 CHECK (video_rate BETWEEN 0 AND 100000),
    voice_rate   integer NOT NULL DEFAULT 30 CHECK (voice_rate BETWEEN 0 AND 100000),
    availability text NOT NULL DEFAULT 'online' CHECK (availability IN ('online', 'busy', 'away')),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
