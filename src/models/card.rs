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
    pub source: CardSource,
    pub files: Vec<CardFile>,
}

/// Where the checkpoint comes from.
#[derive(Debug, Clone, Deserialize)]
pub struct CardSource {
    /// `huggingface` or `fixture`.
    pub kind: String,
    /// The hub repository, for `huggingface`.
    pub repo: Option<String>,
    /// The pinned revision.
    pub revision: Option<String>,
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

/// The cards built into the binary: the repository's `models/*.toml` (a test checks that the
/// two agree), so that an installed binary verifies checkpoints without the source tree.
const BUNDLED: [&str; 3] = [
    include_str!("../../models/clip-tiny-random.toml"),
    include_str!("../../models/clip-vit-base-patch32.toml"),
    include_str!("../../models/clip-vit-large-patch14.toml"),
];

/// The cards built into the binary, sorted by id.
pub fn bundled_cards() -> Vec<Card> {
    let mut cards: Vec<Card> = BUNDLED
        .iter()
        .map(|text| toml::from_str(text).expect("bundled model cards parse (tested)"))
        .collect();
    cards.sort_by(|a, b| a.id.cmp(&b.id));
    cards
}

/// The card of a hub repository.
pub fn card_for_repo<'a>(cards: &'a [Card], repo: &str) -> Option<&'a Card> {
    cards
        .iter()
        .find(|c| c.source.repo.as_deref() == Some(repo))
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
