//! Every model card in models/ is complete, and a card whose weights ship with the repository
//! (the test fixture) lists the sha256 those files really have.

use crate::common::*;
use sha2::{Digest, Sha256};

#[test]
fn model_cards_are_complete_and_their_checksums_match() {
    let mut cards = 0;
    for entry in std::fs::read_dir(root().join("models")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        cards += 1;
        let card: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        let name = path.display();
        for key in [
            "id",
            "architecture",
            "licence",
            "source",
            "files",
            "preprocessing",
        ] {
            assert!(card.contains_key(key), "{name} has no `{key}`");
        }
        let source = card["source"].as_table().unwrap();
        let files = card["files"].as_array().unwrap();
        assert!(!files.is_empty(), "{name} lists no files");
        for file in files {
            let sha = file["sha256"].as_str().unwrap();
            assert_eq!(sha.len(), 64, "{name}: {sha}");
            if source["kind"].as_str() == Some("fixture") {
                let dir = root().join(source["path"].as_str().unwrap());
                let bytes = read(dir.join(file["name"].as_str().unwrap()));
                assert_eq!(
                    hex::encode(Sha256::digest(&bytes)),
                    sha,
                    "{name}: {}",
                    file["name"]
                );
            }
        }
    }
    assert!(cards >= 1, "models/ holds no card");
}

/// A checkpoint is recognised by the sha256 of its weights: the fixture's weights match the
/// fixture's card and no other.
#[test]
fn weights_are_matched_to_their_card() {
    use mmcurate::models::card::{load_cards, match_weights};
    let cards = load_cards(&root().join("models")).unwrap();
    assert!(cards.len() >= 3, "{} cards", cards.len());
    let weights = read(root().join("tests/fixtures/clip-tiny/model.safetensors"));
    let sha = hex::encode(Sha256::digest(&weights));
    let card = match_weights(&cards, &sha).expect("the fixture's card");
    assert_eq!(card.id, "mmcurate/clip-tiny-random");
    assert!(match_weights(&cards, &"0".repeat(64)).is_none());
    let ids: Vec<&str> = cards.iter().map(|c| c.id.as_str()).collect();
    assert!(ids.contains(&"openai/clip-vit-base-patch32"), "{ids:?}");
    assert!(ids.contains(&"openai/clip-vit-large-patch14"), "{ids:?}");
}

/// The binary carries the cards: the bundled set is exactly the repository's `models/`.
#[test]
fn bundled_cards_are_the_repository_cards() {
    use mmcurate::models::card::{bundled_cards, card_for_repo, load_cards};
    let on_disk = load_cards(&root().join("models")).unwrap();
    let bundled = bundled_cards();
    let ids = |cards: &[mmcurate::models::card::Card]| -> Vec<String> {
        cards.iter().map(|c| c.id.clone()).collect()
    };
    assert_eq!(ids(&bundled), ids(&on_disk));
    for (a, b) in bundled.iter().zip(&on_disk) {
        assert_eq!(
            a.sha256_of("model.safetensors"),
            b.sha256_of("model.safetensors")
        );
    }
    let b32 = card_for_repo(&bundled, "openai/clip-vit-base-patch32").unwrap();
    assert_eq!(
        b32.source.revision.as_deref(),
        Some("b33cedfd0df4e43b8238760678fcc89e1a0d38b3")
    );
}
