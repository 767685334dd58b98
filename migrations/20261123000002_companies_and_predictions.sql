-- Companies and their annual and quarterly default predictions, each owned by a scope.
--
-- A row's scope is where it is visible: `personal` (its creator), `organization`
-- (members of organization_id) or `system` (everyone whose organisation enabled
-- global data). `scope_key` folds the scope into one comparable value so that
-- uniqueness "within a scope" is a plain unique constraint.

CREATE FUNCTION scope_key(access_level text, organization_id uuid, created_by uuid) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE access_level
        WHEN 'system' THEN 'system'
        WHEN 'organization' THEN 'org:' || organization_id::text
        ELSE 'user:' || created_by::text
    END
$$;

CREATE TABLE companies (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    symbol          text NOT NULL CHECK (length(symbol) BETWEEN 1 AND 20 AND symbol = upper(symbol)),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    market_cap      double precision CHECK (market_cap > 0),
    sector          text CHECK (length(sector) <= 100),
    access_level    text NOT NULL CHECK (access_level IN ('personal', 'organization', 'system')),
    organization_id uuid REFERENCES organizations (id) ON DELETE CASCADE,
    created_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    scope_key       text NOT NULL GENERATED ALWAYS AS (scope_key(access_level, organization_id, created_by)) STORED,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (access_level <> 'organization' OR organization_id IS NOT NULL),
    CHECK (access_level <> 'personal' OR created_by IS NOT NULL),
    UNIQUE (scope_key, symbol)
);
CREATE INDEX companies_organization_id_idx ON companies (organization_id);
CREATE INDEX companies_created_by_idx ON companies (created_by);
CREATE INDEX companies_sector_idx ON companies (sector);

CREATE TABLE annual_predictions (
    id                              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id                      uuid NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    reporting_year                  integer NOT NULL CHECK (reporting_year BETWEEN 1900 AND 2200),
    reporting_quarter               text CHECK (reporting_quarter IN ('Q1', 'Q2', 'Q3', 'Q4')),
    -- Ratios in percent or multiples as the original takes them; NULL is scored as Missing.
    long_term_debt_to_total_capital double precision,
    total_debt_to_ebitda            double precision,
    net_income_margin               double precision,
    ebit_to_interest_expense        double precision,
    return_on_assets                double precision,
    probability                     double precision NOT NULL CHECK (probability BETWEEN 0 AND 1),
    risk_level                      text NOT NULL CHECK (risk_level IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
    confidence                      double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    -- Each ensemble component's probability, by component name.
    component_probabilities         jsonb NOT NULL DEFAULT '{}'::jsonb,
    model_id                        text NOT NULL,
    model_version                   text NOT NULL,
    access_level                    text NOT NULL CHECK (access_level IN ('personal', 'organization', 'system')),
    organization_id                 uuid REFERENCES organizations (id) ON DELETE CASCADE,
    created_by                      uuid REFERENCES users (id) ON DELETE SET NULL,
    scope_key                       text NOT NULL GENERATED ALWAYS AS (scope_key(access_level, organization_id, created_by)) STORED,
    created_at                      timestamptz NOT NULL DEFAULT now(),
    updated_at                      timestamptz NOT NULL DEFAULT now(),
    CHECK (access_level <> 'organization' OR organization_id IS NOT NULL),
    CHECK (access_level <> 'personal' OR created_by IS NOT NULL)
);
-- One annual prediction per company, year, quarter (or none) and scope.
CREATE UNIQUE INDEX annual_predictions_unique_per_scope
    ON annual_predictions (company_id, reporting_year, coalesce(reporting_quarter, ''), scope_key);
CREATE INDEX annual_predictions_scope_idx ON annual_predictions (scope_key, created_at DESC);
CREATE INDEX annual_predictions_risk_idx ON annual_predictions (risk_level);

CREATE TABLE quarterly_predictions (
    id                              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id                      uuid NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    reporting_year                  integer NOT NULL CHECK (reporting_year BETWEEN 1900 AND 2200),
    reporting_quarter               text NOT NULL CHECK (reporting_quarter IN ('Q1', 'Q2', 'Q3', 'Q4')),
    total_debt_to_ebitda            double precision,
    sga_margin                      double precision,
    long_term_debt_to_total_capital double precision,
    return_on_capital               double precision,
    probability                     double precision NOT NULL CHECK (probability BETWEEN 0 AND 1),
    risk_level                      text NOT NULL CHECK (risk_level IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
    confidence                      double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    component_probabilities         jsonb NOT NULL DEFAULT '{}'::jsonb,
    model_id                        text NOT NULL,
    model_version                   text NOT NULL,
    access_level                    text NOT NULL CHECK (access_level IN ('personal', 'organization', 'system')),
    organization_id                 uuid REFERENCES organizations (id) ON DELETE CASCADE,
    created_by                      uuid REFERENCES users (id) ON DELETE SET NULL,
    scope_key                       text NOT NULL GENERATED ALWAYS AS (scope_key(access_level, organization_id, created_by)) STORED,
    created_at                      timestamptz NOT NULL DEFAULT now(),
    updated_at                      timestamptz NOT NULL DEFAULT now(),
    CHECK (access_level <> 'organization' OR organization_id IS NOT NULL),
    CHECK (access_level <> 'personal' OR created_by IS NOT NULL),
    UNIQUE (company_id, reporting_year, reporting_quarter, scope_key)
);
CREATE INDEX quarterly_predictions_scope_idx ON quarterly_predictions (scope_key, created_at DESC);
CREATE INDEX quarterly_predictions_risk_idx ON quarterly_predictions (risk_level);

CREATE TRIGGER companies_updated_at BEFORE UPDATE ON companies
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER annual_predictions_updated_at BEFORE UPDATE ON annual_predictions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER quarterly_predictions_updated_at BEFORE UPDATE ON quarterly_predictions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
