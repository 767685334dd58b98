//! Receiving a bulk upload: the multipart form streamed to a temporary file
//! (never held whole in memory, refused as soon as it passes the size limit),
//! then read once to check the header, count the rows, find where each chunk
//! starts and which valid rows repeat an earlier one's company and period. A CSV upload is stored as it is; an XLSX upload's first sheet
//! is converted to CSV first. Nothing is stored or queued for a file that
//! fails any check.

use std::io::{BufReader, Read, Seek, Write};
use std::path::PathBuf;

use accunode_core::domain::bulk::rows::{Columns, HeaderError};
use accunode_core::scoring::ModelKind;
use poem::web::Multipart;
use poem::{FromRequest, Request, RequestBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the file is larger than the limit of {limit_mb} MB")]
    TooLarge { limit_mb: u64 },
    #[error("{0}")]
    UnsupportedType(String),
    #[error("the form has no `{0}` part")]
    MissingPart(&'static str),
    #[error("{field}: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
    #[error("the file is empty")]
    Empty,
    #[error("the file has a header row but no data rows")]
    NoRows,
    #[error("the file has more than {limit} data rows (BULK_MAX_ROWS)")]
    TooManyRows { limit: u32 },
    #[error("header row: {0}")]
    Header(#[from] HeaderError),
    #[error("{0}")]
    Malformed(String),
    #[error("the upload could not be received: {0}")]
    Io(#[from] std::io::Error),
}

/// The form as received: the file on disk and the other fields.
pub struct ReceivedForm {
    pub file: tempfile::NamedTempFile,
    pub file_name: String,
    pub content_type: Option<String>,
    pub prediction_type: ModelKind,
}

/// Reads the multipart form, streaming the `file` part to a temporary file
/// and stopping at `max_bytes`.
pub async fn receive(
    request: &Request,
    body: &mut RequestBody,
    max_bytes: u64,
) -> Result<ReceivedForm, UploadError> {
    let too_large = UploadError::TooLarge {
        limit_mb: max_bytes >> 20,
    };
    // A declared length past the limit (plus room for the form's own parts)
    // is refused before a byte is read.
    if let Some(length) = request
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        && length > max_bytes + 64 * 1024
    {
        return Err(too_large);
    }
    let mut multipart = Multipart::from_request(request, body)
        .await
        .map_err(|error| {
            UploadError::UnsupportedType(format!("the body must be multipart/form-data: {error}"))
        })?;
    let mut file = None;
    let mut prediction_type = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|error| UploadError::Malformed(format!("the form cannot be read: {error}")))?
    {
        match field.name() {
            Some("file") if file.is_some() => {
                return Err(UploadError::Field {
                    field: "file",
                    problem: "send one file per upload".into(),
                });
            }
            Some("file") => {
                let file_name = field.file_name().unwrap_or("upload").to_owned();
                let content_type = field.content_type().map(str::to_owned);
                let temp = tempfile::NamedTempFile::new()?;
                let mut out = tokio::fs::File::from_std(temp.reopen()?);
                let mut reader = std::pin::pin!(field.into_async_read());
                let mut buffer = vec![0u8; 64 * 1024];
                let mut written: u64 = 0;
                loop {
                    let read = reader.read(&mut buffer).await.map_err(|error| {
                        UploadError::Malformed(format!("the file part cannot be read: {error}"))
                    })?;
                    if read == 0 {
                        break;
                    }
                    written += read as u64;
                    if written > max_bytes {
                        return Err(too_large);
                    }
                    out.write_all(&buffer[..read]).await?;
                }
                out.flush().await?;
                file = Some((temp, file_name, content_type));
            }
            Some("prediction_type") => {
                let text = read_small_field(field, "prediction_type").await?;
                prediction_type = Some(match text.trim() {
                    "annual" => ModelKind::Annual,
                    "quarterly" => ModelKind::Quarterly,
                    other => {
                        return Err(UploadError::Field {
                            field: "prediction_type",
                            problem: format!(
                                "must be annual or quarterly, got {:?}",
                                other.chars().take(40).collect::<String>()
                            ),
                        });
                    }
                });
            }
            Some(other) => {
                return Err(UploadError::Field {
                    field: "form",
                    problem: format!(
                        "unknown part {:?}; the form takes `file` and `prediction_type`",
                        other
                            .chars()
                            .filter(|c| !c.is_control())
                            .take(40)
                            .collect::<String>()
                    ),
                });
            }
            None => {
                return Err(UploadError::Field {
                    field: "form",
                    problem: "a part has no name".into(),
                });
            }
        }
    }
    let (file, file_name, content_type) = file.ok_or(UploadError::MissingPart("file"))?;
    let prediction_type = prediction_type.ok_or(UploadError::MissingPart("prediction_type"))?;
    Ok(ReceivedForm {
        file,
        file_name: sanitise_file_name(&file_name),
        content_type,
        prediction_type,
    })
}

/// A short text part, refused past 64 bytes rather than read whole.
async fn read_small_field(
    field: poem::web::Field,
    name: &'static str,
) -> Result<String, UploadError> {
    let mut reader = std::pin::pin!(field.into_async_read().take(65));
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).await?;
    if bytes.len() > 64 {
        return Err(UploadError::Field {
            field: name,
            problem: "must be at most 64 bytes".into(),
        });
    }
    String::from_utf8(bytes).map_err(|_| UploadError::Field {
        field: name,
        problem: "must be UTF-8 text".into(),
    })
}

/// A file name safe to store and echo: no path, no control characters, bounded.
fn sanitise_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    if cleaned.trim().is_empty() {
        "upload".to_owned()
    } else {
        cleaned
    }
}

/// A checked upload, ready to store.
pub struct ScannedUpload {
    /// The CSV to store: the upload itself, or the XLSX's first sheet as CSV.
    pub csv_path: PathBuf,
    /// Keeps a converted file alive until it is stored.
    _converted: Option<tempfile::NamedTempFile>,
    /// The header as stored with the job.
    pub columns: Vec<String>,
    pub total_rows: u32,
    /// Byte offset of each chunk's first row, then the end of the file.
    pub chunk_offsets: Vec<i64>,
    /// Valid rows that repeat an earlier valid row's company and period:
    /// (row, the earlier row).
    pub repeats: Vec<(i32, i32)>,
}

/// What the limits and the split are.
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    pub max_rows: u32,
    pub chunk_rows: u32,
}

const XLSX_MAGIC: &[u8] = b"PK\x03\x04";

/// Checks the received file (blocking: run it off the async threads).
pub fn scan(form: &ReceivedForm, limits: ScanLimits) -> Result<ScannedUpload, UploadError> {
    let mut file = form.file.reopen()?;
    let mut start = [0u8; 4];
    let read = read_prefix(&mut file, &mut start)?;
    if read == 0 {
        return Err(UploadError::Empty);
    }
    file.rewind()?;
    if start[..read] == XLSX_MAGIC[..read.min(4)] && read == 4 {
        let converted = tempfile::NamedTempFile::new()?;
        xlsx_to_csv(form.file.path(), converted.reopen()?)?;
        let mut scanned = scan_csv(converted.path(), form.prediction_type, limits)?;
        scanned._converted = Some(converted);
        return Ok(scanned);
    }
    let declared = form.content_type.as_deref().unwrap_or("");
    if is_clearly_not_a_table(declared) {
        return Err(UploadError::UnsupportedType(format!(
            "the file must be CSV or XLSX, got {declared}"
        )));
    }
    scan_csv(form.file.path(), form.prediction_type, limits)
}

fn read_prefix(file: &mut std::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Content types no CSV is sent as (images, PDFs, archives, …).
fn is_clearly_not_a_table(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("image/")
        || essence.starts_with("audio/")
        || essence.starts_with("video/")
        || matches!(
            essence.as_str(),
            "application/pdf"
                | "application/zip"
                | "application/gzip"
                | "application/x-tar"
                | "application/json"
        )
}

/// Reads the CSV at `path` once: header, UTF-8, row count and chunk offsets.
fn scan_csv(
    path: &std::path::Path,
    kind: ModelKind,
    limits: ScanLimits,
) -> Result<ScannedUpload, UploadError> {
    let mut file = std::fs::File::open(path)?;
    let mut bom = [0u8; 3];
    let read = read_prefix(&mut file, &mut bom)?;
    let start = if read == 3 && bom == [0xEF, 0xBB, 0xBF] {
        3
    } else {
        0
    };
    file.seek(std::io::SeekFrom::Start(start))?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(BufReader::with_capacity(256 * 1024, file));
    let not_csv = |error: csv::Error| match error.kind() {
        csv::ErrorKind::Utf8 { pos, .. } => UploadError::UnsupportedType(format!(
            "the file must be CSV or XLSX: it is not a workbook, and line {} is not UTF-8 text",
            pos.as_ref().map_or(0, |p| p.line())
        )),
        _ => UploadError::Malformed(format!("the file is not valid CSV: {error}")),
    };
    let mut record = csv::StringRecord::new();
    if !reader.read_record(&mut record).map_err(not_csv)? {
        return Err(UploadError::Empty);
    }
    let header: Vec<&str> = record.iter().collect();
    let (layout, columns) = Columns::from_header(kind, &header)?;
    let mut offsets = Vec::new();
    let mut rows: u32 = 0;
    let mut periods = Periods::default();
    let mut repeats = Vec::new();
    loop {
        let position = reader.position().byte() + start;
        if !reader.read_record(&mut record).map_err(not_csv)? {
            offsets.push(position as i64);
            break;
        }
        // A blank line is not a row.
        if record.len() == 1 && record[0].trim().is_empty() {
            continue;
        }
        if rows.is_multiple_of(limits.chunk_rows) {
            offsets.push(position as i64);
        }
        rows += 1;
        if rows > limits.max_rows {
            return Err(UploadError::TooManyRows {
                limit: limits.max_rows,
            });
        }
        // Invalid rows are the worker's to report; only a valid row can be repeated.
        if let Ok(input) = layout.parse_row(&record)
            && let Some(first) = periods.first_of(&input, rows)
        {
            repeats.push((rows as i32, first as i32));
        }
    }
    if rows == 0 {
        return Err(UploadError::NoRows);
    }
    Ok(ScannedUpload {
        csv_path: path.to_owned(),
        _converted: None,
        columns,
        total_rows: rows,
        chunk_offsets: offsets,
        repeats,
    })
}

/// The company and period of each valid row seen so far, as 128-bit hashes
/// (two independent 64-bit ones: a false match is as good as impossible at a
/// million rows), with the row that first had it: 24 bytes a period (about
/// 30 MB at a million), instead of the rows' text.
#[derive(Default)]
struct Periods {
    first_rows: std::collections::HashMap<[u64; 2], u32>,
    hashers: (std::hash::RandomState, std::hash::RandomState),
}

impl Periods {
    /// The earlier row with `input`'s company and period, or `None` (and `row`
    /// is now the first with it).
    fn first_of(
        &mut self,
        input: &accunode_core::domain::predictions::NewPredictionInput,
        row: u32,
    ) -> Option<u32> {
        use std::hash::BuildHasher;
        let key = (
            input.company.symbol.as_str(),
            input.reporting_year,
            input.reporting_quarter.map(|quarter| quarter.as_str()),
        );
        let hash = [self.hashers.0.hash_one(key), self.hashers.1.hash_one(key)];
        match self.first_rows.entry(hash) {
            std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(row);
                None
            }
        }
    }
}

/// Writes the first sheet of the XLSX at `path` to `out` as CSV, cell by cell.
fn xlsx_to_csv(path: &std::path::Path, out: std::fs::File) -> Result<(), UploadError> {
    use calamine::{DataRef, Reader, Xlsx};
    let unreadable = |error: calamine::XlsxError| {
        UploadError::Malformed(format!("the XLSX file cannot be read: {error}"))
    };
    let mut workbook: Xlsx<_> =
        Xlsx::new(BufReader::new(std::fs::File::open(path)?)).map_err(|error| {
            UploadError::UnsupportedType(format!(
                "the file is neither CSV nor a readable XLSX workbook: {error}"
            ))
        })?;
    let sheet = workbook
        .sheet_names()
        .first()
        .cloned()
        .ok_or_else(|| UploadError::Malformed("the XLSX workbook has no sheet".into()))?;
    let mut cells = workbook
        .worksheet_cells_reader(&sheet)
        .map_err(unreadable)?;
    let mut writer = csv::Writer::from_writer(std::io::BufWriter::new(out));
    let mut row: Vec<String> = Vec::new();
    let mut current: Option<u32> = None;
    let mut width = 0usize;
    let flush = |row: &mut Vec<String>,
                 writer: &mut csv::Writer<_>,
                 width: &mut usize|
     -> Result<(), UploadError> {
        if *width == 0 {
            *width = row.len();
        }
        row.resize((*width).max(row.len()), String::new());
        writer
            .write_record(row.iter())
            .map_err(|error| UploadError::Malformed(error.to_string()))?;
        row.clear();
        Ok(())
    };
    while let Some(cell) = cells.next_cell().map_err(unreadable)? {
        let (r, c) = cell.get_position();
        // Rows without cells never appear here: skipped, like blank CSV lines.
        if current != Some(r) {
            if current.is_some() {
                flush(&mut row, &mut writer, &mut width)?;
            }
            current = Some(r);
        }
        let c = c as usize;
        if row.len() <= c {
            row.resize(c + 1, String::new());
        }
        row[c] = match cell.get_value() {
            DataRef::Empty => String::new(),
            DataRef::String(text) => text.clone(),
            DataRef::SharedString(text) => (*text).to_owned(),
            DataRef::Float(value) => format_number(*value),
            DataRef::Int(value) => value.to_string(),
            DataRef::Bool(value) => value.to_string(),
            DataRef::DateTime(value) => format_number(value.as_f64()),
            DataRef::DateTimeIso(text) | DataRef::DurationIso(text) => text.clone(),
            DataRef::Error(error) => format!("#{error:?}"),
        };
    }
    if current.is_some() {
        flush(&mut row, &mut writer, &mut width)?;
    }
    writer
        .into_inner()
        .map_err(|error| UploadError::Io(error.into_error()))?
        .flush()?;
    Ok(())
}

/// A spreadsheet number as a person would type it: `2021`, not `2021.0`.
fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_and_control_characters() {
        assert_eq!(sanitise_file_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitise_file_name("C:\\data\\a\u{0}b.csv"), "ab.csv");
        assert_eq!(sanitise_file_name("\u{7}"), "upload");
    }

    #[test]
    fn spreadsheet_numbers_read_as_typed() {
        assert_eq!(format_number(2021.0), "2021");
        assert_eq!(format_number(-0.5), "-0.5");
        assert_eq!(format_number(1e20), "100000000000000000000");
    }
}
