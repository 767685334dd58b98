-- Lists whose cost does not grow with the tenant.
--
-- Every list walks one scope's rows in its sort order from a keyset cursor
-- (see core::domain::listing), so each documented filter and sort has an
-- index that starts with `scope_key`, then the filter's column, then the sort
-- key and `id` (the tie-breaker of every order). The former single-column
-- indexes on risk level and sector served no list within a scope.
--
-- A prediction's company sector is copied into the prediction, lower-cased
-- (`company_sector`), so the sector filter walks an index of the predictions
-- alone. The insert paths write it from the company row they have just
-- upserted (which holds that row's lock until they commit); a change of a
-- company's sector rewrites its predictions' copy (trigger below).

ALTER TABLE annual_predictions ADD COLUMN company_sector text;
ALTER TABLE quarterly_predictions ADD COLUMN company_sector text;

-- The copy is not a change of the predictions: their updated_at stays.
ALTER TABLE annual_predictions DISABLE TRIGGER annual_predictions_updated_at;
UPDATE annual_predictions p SET company_sector = lower(c.sector)
    FROM companies c WHERE c.id = p.company_id AND c.sector IS NOT NULL;
ALTER TABLE annual_predictions ENABLE TRIGGER annual_predictions_updated_at;
ALTER TABLE quarterly_predictions DISABLE TRIGGER quarterly_predictions_updated_at;
UPDATE quarterly_predictions p SET company_sector = lower(c.sector)
    FROM companies c WHERE c.id = p.company_id AND c.sector IS NOT NULL;
ALTER TABLE quarterly_predictions ENABLE TRIGGER quarterly_predictions_updated_at;

CREATE FUNCTION copy_company_sector_to_predictions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE annual_predictions SET company_sector = lower(NEW.sector) WHERE company_id = NEW.id;
    UPDATE quarterly_predictions SET company_sector = lower(NEW.sector) WHERE company_id = NEW.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER companies_sector_to_predictions AFTER UPDATE OF sector ON companies
    FOR EACH ROW WHEN (lower(OLD.sector) IS DISTINCT FROM lower(NEW.sector))
    EXECUTE FUNCTION copy_company_sector_to_predictions();

-- Predictions: newest first, alone or within one filter's value.
DROP INDEX annual_predictions_scope_idx;
DROP INDEX annual_predictions_risk_idx;
CREATE INDEX annual_predictions_scope_idx
    ON annual_predictions (scope_key, created_at DESC, id DESC);
CREATE INDEX annual_predictions_year_idx
    ON annual_predictions (scope_key, reporting_year, created_at DESC, id DESC);
CREATE INDEX annual_predictions_quarter_idx
    ON annual_predictions (scope_key, reporting_quarter, created_at DESC, id DESC);
CREATE INDEX annual_predictions_risk_idx
    ON annual_predictions (scope_key, risk_level, created_at DESC, id DESC);
CREATE INDEX annual_predictions_sector_idx
    ON annual_predictions (scope_key, company_sector, created_at DESC, id DESC);

DROP INDEX quarterly_predictions_scope_idx;
DROP INDEX quarterly_predictions_risk_idx;
CREATE INDEX quarterly_predictions_scope_idx
    ON quarterly_predictions (scope_key, created_at DESC, id DESC);
CREATE INDEX quarterly_predictions_year_idx
    ON quarterly_predictions (scope_key, reporting_year, created_at DESC, id DESC);
CREATE INDEX quarterly_predictions_quarter_idx
    ON quarterly_predictions (scope_key, reporting_quarter, created_at DESC, id DESC);
CREATE INDEX quarterly_predictions_risk_idx
    ON quarterly_predictions (scope_key, risk_level, created_at DESC, id DESC);
CREATE INDEX quarterly_predictions_sector_idx
    ON quarterly_predictions (scope_key, company_sector, created_at DESC, id DESC);

-- The unique indexes lead with company_id and serve the company's predictions
-- (the symbol filter, a company's deletion): these repeated them.
DROP INDEX annual_predictions_company_idx;
DROP INDEX quarterly_predictions_company_idx;

-- Companies: each sort within a scope (symbol's is the unique index on
-- (scope_key, symbol)); market cap sorts with missing caps last either way.
DROP INDEX companies_scope_idx;
DROP INDEX companies_sector_idx;
CREATE INDEX companies_scope_idx ON companies (scope_key, created_at DESC, id DESC);
CREATE INDEX companies_name_idx ON companies (scope_key, name, id);
CREATE INDEX companies_market_cap_asc_idx
    ON companies (scope_key, coalesce(market_cap, 'Infinity'::float8), id);
CREATE INDEX companies_market_cap_desc_idx
    ON companies (scope_key, coalesce(market_cap, '-Infinity'::float8) DESC, id DESC);
CREATE INDEX companies_sector_idx
    ON companies (scope_key, lower(sector), created_at DESC, id DESC);
