-- A company's sector copied into its predictions (the trigger of
-- 20261128000001_keyset_lists.sql) is not a change of the predictions: their
-- updated_at stays. Every other update of a prediction still sets it.
DROP TRIGGER annual_predictions_updated_at ON annual_predictions;
CREATE TRIGGER annual_predictions_updated_at BEFORE UPDATE ON annual_predictions
    FOR EACH ROW WHEN (OLD.company_sector IS NOT DISTINCT FROM NEW.company_sector)
    EXECUTE FUNCTION set_updated_at();
DROP TRIGGER quarterly_predictions_updated_at ON quarterly_predictions;
CREATE TRIGGER quarterly_predictions_updated_at BEFORE UPDATE ON quarterly_predictions
    FOR EACH ROW WHEN (OLD.company_sector IS NOT DISTINCT FROM NEW.company_sector)
    EXECUTE FUNCTION set_updated_at();
