//! A tiny `--key value` argument parser: every scenario takes a handful of numeric options,
//! which does not justify a CLI framework.

use std::{collections::BTreeMap, fmt::Display, str::FromStr};

/// Options of one invocation, consumed as they are read; leftovers are an error.
pub struct Args {
    values: BTreeMap<String, String>,
}

impl Args {
    /// Parses `--key value` pairs (`--flag` alone means `true`).
    pub fn parse(raw: &[String]) -> Result<Args, String> {
        let mut values = BTreeMap::new();
        let mut it = raw.iter().peekable();
        while let Some(arg) = it.next() {
            let key = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("expected an option like --key, got `{arg}`"))?;
            let value = match it.peek() {
                Some(v) if !v.starts_with("--") => it.next().cloned().unwrap_or_default(),
                _ => "true".to_string(),
            };
            values.insert(key.to_string(), value);
        }
        Ok(Args { values })
    }

    /// A required option.
    pub fn req<T: FromStr>(&mut self, key: &str) -> Result<T, String>
    where
        T::Err: Display,
    {
        self.opt(key)?
            .ok_or_else(|| format!("missing option --{key}"))
    }

    /// An option with a default.
    pub fn get<T: FromStr>(&mut self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: Display,
    {
        Ok(self.opt(key)?.unwrap_or(default))
    }

    /// An optional option.
    pub fn opt<T: FromStr>(&mut self, key: &str) -> Result<Option<T>, String>
    where
        T::Err: Display,
    {
        match self.values.remove(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|e| format!("--{key} {v}: {e}")),
        }
    }

    /// A comma-separated list.
    pub fn list<T: FromStr>(&mut self, key: &str) -> Result<Vec<T>, String>
    where
        T::Err: Display,
    {
        match self.values.remove(key) {
            None => Ok(Vec::new()),
            Some(v) => v
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().map_err(|e| format!("--{key} {s}: {e}")))
                .collect(),
        }
    }

    /// Fails on options nobody asked for (typos must not silently change a run).
    pub fn finish(self) -> Result<(), String> {
        match self.values.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!("unknown option --{k}")),
        }
    }
}
