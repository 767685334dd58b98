-- Sign-in sessions with rotating refresh tokens, one-time email tokens and the
-- email outbox.
--
-- A session is one sign-in (one refresh-token family). Each refresh returns a
-- new token and marks the old one used; presenting a used token again means it
-- was stolen or replayed, so the whole session is revoked. Tokens are stored
-- only as SHA-256 digests: a database leak gives no usable token.

CREATE TABLE sessions (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text CHECK (revoked_reason IN ('logout', 'password_changed', 'refresh_token_reused'))
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    token_sha256 bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
    session_id   uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    used_at      timestamptz
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

CREATE TABLE email_tokens (
    token_sha256 bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose      text NOT NULL CHECK (purpose IN ('verify_email')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz
);
CREATE INDEX email_tokens_user_id_idx ON email_tokens (user_id);

-- Mail to send, written in the same transaction as what caused it. Without
-- SMTP configured this table is where mail stays, and where tests and
-- operators read it; with SMTP, a sender delivers due rows and records
-- sent_at, or the error and when to try again.
CREATE TABLE email_outbox (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    recipient       text NOT NULL,
    subject         text NOT NULL,
    body            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text
);
CREATE INDEX email_outbox_recipient_idx ON email_outbox (recipient, created_at DESC);
CREATE INDEX email_outbox_due_idx ON email_outbox (next_attempt_at) WHERE sent_at IS NULL;

-- MAX_PREDICTIONS_PER_USER counts a user's predictions; lists filter by company.
CREATE INDEX annual_predictions_created_by_idx ON annual_predictions (created_by);
CREATE INDEX quarterly_predictions_created_by_idx ON quarterly_predictions (created_by);
CREATE INDEX annual_predictions_company_idx ON annual_predictions (company_id);
CREATE INDEX quarterly_predictions_company_idx ON quarterly_predictions (company_id);
CREATE INDEX companies_scope_idx ON companies (scope_key, created_at DESC);
