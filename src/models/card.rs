//! Model cards: `models/*.toml`, one per supported checkpoint, naming its source, its files with
//! their sha256, its architecture and preprocessing. A loaded checkpoint is matched to a card by
//! the sha256 of its weights, which is how a run proves which model produced its scores.

use serde::Deserialize;
use std::path::Path;

use super::ModelError;

/// The parts of a card that loading needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Card {
    pub id: String,
    pub architecture: String,
    pub files: Vec<CardFile>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardFile {
    pub name: String,
    pub sha256: String,
}

impl Card {
    /// The sha256 this card lists for `name`.
    pub fn sha256_of(&self, name: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.sha256.as_str())
    }
}

/// Every card in `dir` (the repository's `models/`), sorted by id.
pub fn load_cards(dir: &Path) -> Result<Vec<Card>, ModelError> {
    let io = |e: std::io::Error| ModelError::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    };
    let mut cards = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(io)?;
        let card: Card = toml::from_str(&text).map_err(|e| ModelError::Config {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        cards.push(card);
    }
    cards.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(cards)
}

/// The card whose `model.safetensors` has this sha256.
pub fn match_weights<'a>(cards: &'a [Card], weights_sha256: &str) -> Option<&'a Card> {
    cards
        .iter()
        .find(|c| c.sha256_of("model.safetensors") == Some(weights_sha256))
}
