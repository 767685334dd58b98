-- Organisations (tenants) and users, with the roles and the join whitelist of the seeds.

CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TABLE organizations (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                     text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    description              text,
    -- Shared with people who may join; regenerating it invalidates the old one.
    join_token               text NOT NULL UNIQUE,
    join_enabled             boolean NOT NULL DEFAULT true,
    -- Whether members see system (global) companies and predictions.
    allow_global_data_access boolean NOT NULL DEFAULT false,
    created_by               uuid,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email             text NOT NULL CHECK (email = lower(email) AND position('@' IN email) > 1),
    password_hash     text NOT NULL,
    first_name        text CHECK (length(first_name) <= 100),
    last_name         text CHECK (length(last_name) <= 100),
    role              text NOT NULL DEFAULT 'user'
                      CHECK (role IN ('user', 'org_member', 'org_admin', 'tenant_admin', 'super_admin')),
    organization_id   uuid REFERENCES organizations (id) ON DELETE SET NULL,
    is_active         boolean NOT NULL DEFAULT true,
    email_verified_at timestamptz,
    last_login_at     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- Organisation roles only make sense inside an organisation.
    CHECK (role NOT IN ('org_member', 'org_admin') OR organization_id IS NOT NULL)
);
CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE INDEX users_organization_id_idx ON users (organization_id);

ALTER TABLE organizations
    ADD CONSTRAINT organizations_created_by_fkey
    FOREIGN KEY (created_by) REFERENCES users (id) ON DELETE SET NULL;

-- Emails allowed to join an organisation with its join token.
CREATE TABLE organization_whitelist (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email           text NOT NULL CHECK (email = lower(email)),
    added_by        uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, email)
);

CREATE TRIGGER organizations_updated_at BEFORE UPDATE ON organizations
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER users_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
