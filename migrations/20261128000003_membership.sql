-- Leaving an organisation, being removed from one and being deactivated end
-- every session of the user (their cached callers must not outlive the
-- change); the sessions record why.

ALTER TABLE sessions DROP CONSTRAINT sessions_revoked_reason_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_revoked_reason_check
    CHECK (revoked_reason IN ('logout', 'password_changed', 'refresh_token_reused',
                              'left_organization', 'removed_from_organization',
                              'deactivated'));
