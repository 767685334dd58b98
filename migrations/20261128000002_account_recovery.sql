-- Password reset tokens, and mail whose one-time token is removed once sent.
--
-- A reset token is an email_tokens row like a verification token: 256 random
-- bits minted by the API, stored only as its SHA-256 digest, used once.
-- Mail that carries a token is marked carries_token; when the sender records
-- it sent, its body is replaced, so the outbox keeps no usable token of a
-- delivered mail (undelivered mail stays readable: without SMTP_URL the outbox
-- is where operators and tests read it).

ALTER TABLE email_tokens DROP CONSTRAINT email_tokens_purpose_check;
ALTER TABLE email_tokens ADD CONSTRAINT email_tokens_purpose_check
    CHECK (purpose IN ('verify_email', 'reset_password'));

ALTER TABLE email_outbox ADD COLUMN carries_token boolean NOT NULL DEFAULT false;

-- Verification mail written before this migration carries a token too.
UPDATE email_outbox SET carries_token = true
 WHERE subject = 'Verify your AccuNode email address';
UPDATE email_outbox
   SET body = 'This message carried a one-time token; its text was removed once it was sent.'
 WHERE carries_token AND sent_at IS NOT NULL;
