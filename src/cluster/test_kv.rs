//! A small key-value map as the state an [`Apply`] changes: what the tests
//! replicate, standing where the broker's metadata will.

use super::Apply;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    pub map: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    Set { key: String, value: String },
    Delete { key: String },
}

impl KvCommand {
    pub fn set(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self::Set { key: key.into(), value: value.into() }
    }
}

impl Apply for Kv {
    type Command = KvCommand;
    /// The value the key had before.
    type Response = Option<String>;

    fn apply(&mut self, command: &KvCommand) -> Option<String> {
        match command {
            KvCommand::Set { key, value } => self.map.insert(key.clone(), value.clone()),
            KvCommand::Delete { key } => self.map.remove(key),
        }
    }
}
