//! Ratios as people and files write them: how text becomes a value or Missing.
//!
//! Blank, `NaN`, `NM` (not meaningful) and `N/A` are Missing in every model and
//! every path (the original disagreed between its paths). Any other text that is
//! not a number is an error, not silently Missing.

/// Texts that mean "no value", compared ignoring case and surrounding spaces.
pub const MISSING_TOKENS: &[&str] = &["", "nan", "nm", "n/a", "na", "null"];

/// Parses one ratio: `Ok(NaN)` for Missing, `Ok(value)` for a number.
pub fn parse_ratio(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    if MISSING_TOKENS
        .iter()
        .any(|token| trimmed.eq_ignore_ascii_case(token))
    {
        return Ok(f64::NAN);
    }
    trimmed
        .parse::<f64>()
        .map_err(|_| format!("{trimmed:?} is not a number (leave it blank, or write NaN, NM or N/A, when there is no value)"))
}

#[cfg(test)]
mod tests {
    use super::parse_ratio;

    #[test]
    fn missing_tokens_and_numbers() {
        for missing in ["", "  ", "NaN", "nan", "NM", "N/A", "n/a", "NA", "null"] {
            assert!(parse_ratio(missing).unwrap().is_nan(), "{missing:?}");
        }
        assert_eq!(parse_ratio(" 12.5 ").unwrap(), 12.5);
        assert_eq!(parse_ratio("-0.47").unwrap(), -0.47);
        assert_eq!(parse_ratio("1e8").unwrap(), 1e8);
        let error = parse_ratio("twelve").unwrap_err();
        assert!(error.starts_with("\"twelve\" is not a number"), "{error}");
    }
}
