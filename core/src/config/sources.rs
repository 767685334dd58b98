//! Where values come from: the TOML file, the `.env` file and the environment,
//! merged over the declared defaults into [`Layers`], from which the loader
//! reads each key through its typed declaration.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::formats::Format;
use super::keys::{self, Declared, Key};
use super::{AppEnv, ConfigError, Origin};

/// The inputs of [`Settings::load`](super::Settings::load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// A TOML file of `key = value` lines, or `None`.
    pub file: Option<PathBuf>,
    /// A `.env` file of `KEY=VALUE` lines, or `None`.
    pub dotenv: Option<PathBuf>,
    /// The environment variables, highest precedence.
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// The sources of a running process: `ACCUNODE_CONFIG` (which must exist when
    /// set) or `./accunode.toml`, `./.env`, and the process environment.
    pub fn from_process() -> Self {
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let file = match env.iter().find(|(k, _)| k == "ACCUNODE_CONFIG") {
            Some((_, path)) => Some(PathBuf::from(path)),
            None => Some(PathBuf::from("accunode.toml")).filter(|p| p.is_file()),
        };
        let dotenv = Some(PathBuf::from(".env")).filter(|p| p.is_file());
        Self { file, dotenv, env }
    }
}

/// The merged raw values of the declared keys, before they are typed.
pub(super) struct Layers {
    values: HashMap<&'static str, (String, Origin)>,
    app_env: AppEnv,
}

impl Layers {
    /// Merges the sources in precedence order, then fills in the defaults of
    /// the deployment that `APP_ENV` names.
    pub(super) fn gather(sources: &Sources) -> Result<Self, ConfigError> {
        let mut values = HashMap::new();
        if let Some(path) = &sources.file {
            for (key, value) in read_toml(path)? {
                values.insert(key, (value, Origin::File(path.clone())));
            }
        }
        if let Some(path) = &sources.dotenv {
            for (key, value) in read_dotenv(path)? {
                if let Some(known) = keys::known_key(&key) {
                    values.insert(known, (value, Origin::Dotenv(path.clone())));
                }
            }
        }
        for (key, value) in &sources.env {
            if let Some(known) = keys::known_key(key) {
                values.insert(known, (value.clone(), Origin::Environment));
            }
        }
        let mut layers = Self {
            values,
            // Stands in until APP_ENV is read: its own default is the same in every deployment.
            app_env: AppEnv::Development,
        };
        layers.fill_in_default(&keys::APP_ENV);
        layers.app_env = layers.get(&keys::APP_ENV)?;
        for key in keys::ALL {
            layers.fill_in_default(*key);
        }
        Ok(layers)
    }

    fn fill_in_default(&mut self, key: &dyn Declared) {
        if let Some(default) = key.default_value().for_deployment(self.app_env) {
            self.values
                .entry(key.name())
                .or_insert_with(|| (default.to_owned(), Origin::Default));
        }
    }

    pub(super) fn app_env(&self) -> AppEnv {
        self.app_env
    }

    /// The key's value, or the error naming it when it is unset or invalid.
    pub(super) fn get<F: Format>(&self, key: &Key<F>) -> Result<F::Value, ConfigError> {
        self.get_optional(key)?.ok_or_else(|| ConfigError::Missing {
            key: key.name,
            context: if self.app_env == AppEnv::Production {
                " in production".into()
            } else {
                String::new()
            },
        })
    }

    /// The key's value, `None` when it is unset and has no default.
    pub(super) fn get_optional<F: Format>(
        &self,
        key: &Key<F>,
    ) -> Result<Option<F::Value>, ConfigError> {
        let Some((value, origin)) = self.raw(key) else {
            return Ok(None);
        };
        F::parse(value, key.range.as_ref())
            .map(Some)
            .map_err(|problem| ConfigError::Invalid {
                key: key.name,
                origin: origin.clone(),
                problem,
            })
    }

    /// The key's text as written and where it came from; `None` when unset.
    pub(super) fn raw(&self, key: &dyn Declared) -> Option<&(String, Origin)> {
        self.values.get(key.name())
    }

    pub(super) fn origin(&self, key: &dyn Declared) -> Origin {
        self.raw(key)
            .map_or(Origin::Default, |(_, origin)| origin.clone())
    }
}

fn read_toml(path: &Path) -> Result<Vec<(&'static str, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table =
        text.parse()
            .map_err(|error: toml::de::Error| ConfigError::Malformed {
                path: path.to_owned(),
                format: "TOML",
                message: error.message().to_owned(),
            })?;
    let mut pairs = Vec::with_capacity(table.len());
    for (key, value) in table {
        let Some(known) = keys::known_key(&key) else {
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                key,
                known: keys::ALL
                    .iter()
                    .map(|k| k.name().to_ascii_lowercase())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let text = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Float(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            other => {
                return Err(ConfigError::Malformed {
                    path: path.to_owned(),
                    format: "TOML",
                    message: format!(
                        "`{key}` must be a string, number or boolean, not a {}",
                        other.type_str()
                    ),
                });
            }
        };
        pairs.push((known, text));
    }
    Ok(pairs)
}

/// Reads `KEY=VALUE` lines: `#` comments, optional `export `, optional quotes.
fn read_dotenv(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let mut pairs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfigError::Malformed {
                path: path.to_owned(),
                format: ".env",
                message: format!("line {} is not KEY=VALUE", index + 1),
            });
        };
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|quote| {
                value
                    .strip_prefix(*quote)
                    .and_then(|rest| rest.strip_suffix(*quote))
            })
            .unwrap_or(value);
        pairs.push((key.trim().to_owned(), unquoted.to_owned()));
    }
    Ok(pairs)
}
