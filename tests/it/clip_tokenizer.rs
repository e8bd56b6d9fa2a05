//! CLIP tokenisation against the reference implementation: the `input_ids` that Hugging Face
//! transformers produced for the fixture's texts (tests/fixtures/clip-tiny/reference.json),
//! including Unicode, an empty caption and one longer than the context.

use mmcurate::models::ClipTokenizer;
use serde_json::Value;
use std::path::PathBuf;

#[test]
fn input_ids_match_the_reference_exactly() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip-tiny");
    let reference: Value =
        serde_json::from_slice(&std::fs::read(fixture.join("reference.json")).unwrap()).unwrap();
    let tokenizer =
        ClipTokenizer::from_file(&fixture.join("tokenizer.json"), 77, 49407, 49407).unwrap();
    let texts = reference["texts"].as_array().unwrap();
    let expected = reference["input_ids"].as_array().unwrap();
    assert_eq!(texts.len(), 8);
    for (text, ids) in texts.iter().zip(expected) {
        let text = text.as_str().unwrap();
        let want: Vec<u32> = ids
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let tokens = tokenizer.encode(text).unwrap();
        assert_eq!(tokens.ids, want, "{text:?}");
        assert_eq!(
            tokens.truncated,
            text.split_whitespace().count() > 75,
            "{text:?}"
        );
    }
    let empty = tokenizer.encode("").unwrap();
    assert_eq!(&empty.ids[..2], &[49406, 49407]);
    assert_eq!(empty.length, 2);
}
