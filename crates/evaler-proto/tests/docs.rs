//! Keeps docs/PROTOCOL.md honest: every JSON example must decode, and every
//! error example must be exactly what the decoder produces.

use std::collections::BTreeSet;

use evaler_proto::*;

const DOC: &str = include_str!("../../../docs/PROTOCOL.md");

struct Block {
    section: String,
    info: String,
    body: String,
}

/// Fenced code blocks, with the `## ` section each appears in.
fn blocks() -> Vec<Block> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut open: Option<(String, String)> = None;
    for line in DOC.lines() {
        if let Some((info, body)) = &mut open {
            if line.trim_start().starts_with("```") {
                out.push(Block {
                    section: section.clone(),
                    info: std::mem::take(info),
                    body: std::mem::take(body),
                });
                open = None;
            } else {
                body.push_str(line);
                body.push('\n');
            }
        } else if let Some(info) = line.trim_start().strip_prefix("```") {
            open = Some((info.trim().to_owned(), String::new()));
        } else if let Some(title) = line.strip_prefix("## ") {
            section = title.trim().to_owned();
        }
    }
    assert!(open.is_none(), "unterminated code block in PROTOCOL.md");
    out
}

fn encode_text<P: Packet>(p: &P) -> String {
    let line = encode_line(p, DEFAULT_MAX_PACKET).unwrap();
    String::from_utf8(line).unwrap().trim_end().to_owned()
}

/// Decodes a line as whichever protocol direction accepts it, returning the
/// type name.
fn decode_any(line: &str) -> Option<&'static str> {
    let b = line.as_bytes();
    None.or_else(|| decode::<SessionRequest>(b).ok().map(|p| p.type_name()))
        .or_else(|| decode::<SessionReply>(b).ok().map(|p| p.type_name()))
        .or_else(|| decode::<JudgeRequest>(b).ok().map(|p| p.type_name()))
        .or_else(|| decode::<JudgeReply>(b).ok().map(|p| p.type_name()))
}

#[test]
fn every_json_example_decodes_and_every_packet_type_has_one() {
    let mut seen = BTreeSet::new();
    let mut count = 0;
    for block in blocks().iter().filter(|b| b.info == "json") {
        for line in block.body.lines().filter(|l| !l.trim().is_empty()) {
            let name = decode_any(line)
                .unwrap_or_else(|| panic!("example does not decode as any packet: {line}"));
            seen.insert(name);
            count += 1;
            if line.contains("\"TRemove\"") {
                seen.insert("TRemove");
            }
        }
    }
    assert!(count >= 30, "only {count} JSON examples");
    for name in SessionRequest::TYPES
        .iter()
        .chain(SessionReply::TYPES)
        .chain(JudgeRequest::TYPES)
        .chain(JudgeReply::TYPES)
    {
        assert!(seen.contains(name), "no JSON example of {name}");
    }
}

#[test]
fn every_error_example_is_the_real_error() {
    let blocks = blocks();
    let mut checked = 0;
    for (i, block) in blocks.iter().enumerate() {
        if block.section != "Errors" || block.info != "text" {
            continue;
        }
        let input = block.body.trim_end_matches('\n');
        let answer = blocks
            .get(i + 1)
            .filter(|b| b.info == "json")
            .unwrap_or_else(|| panic!("no json answer after {input}"));
        let err = decode::<JudgeRequest>(input.as_bytes())
            .expect_err(&format!("example input decodes fine: {input}"));
        assert_eq!(
            encode_text(&JudgeReply::from(&err)),
            answer.body.trim(),
            "for {input}"
        );
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} error examples");
}

#[test]
fn invalid_utf8_example_is_the_real_error() {
    let line = b"{\"type\":\"Test\",\"id\":12,\"tid\":3,\"input\":\"\xff\",\"filename\":\"input\",\"timelimit\":1,\"memorylimit\":0,\"stacklimit\":0}";
    let err = decode::<JudgeRequest>(line).unwrap_err();
    let expected = encode_text(&JudgeReply::from(&err));
    let found = blocks()
        .into_iter()
        .any(|b| b.info == "json" && b.body.trim() == expected);
    assert!(found, "PROTOCOL.md lacks {expected}");
}

#[test]
fn too_large_example_has_the_real_shape() {
    let doc_example = blocks()
        .into_iter()
        .find(|b| b.body.contains("packet too large"))
        .expect("too-large example");
    let err = DecodeError {
        kind: DecodeErrorKind::TooLarge {
            size: DEFAULT_MAX_PACKET + 4096,
            limit: DEFAULT_MAX_PACKET,
        },
        id: None,
        tid: None,
    };
    assert_eq!(
        encode_text(&JudgeReply::from(&err)),
        doc_example.body.trim()
    );
}

#[test]
fn invalid_limits_example_is_the_real_error() {
    let blocks = blocks();
    let i = blocks
        .iter()
        .position(|b| b.info == "json" && b.body.contains("\"timelimit\":-1"))
        .expect("invalid-limits example");
    let JudgeRequest::Test(test) =
        decode::<JudgeRequest>(blocks[i].body.trim().as_bytes()).unwrap()
    else {
        panic!("not a Test")
    };
    let err = test.validate().unwrap_err();
    let reply = JudgeReply::Error(ErrorPacket {
        value: err.to_string(),
        id: Some(test.id),
        tid: Some(test.tid),
    });
    assert_eq!(encode_text(&reply), blocks[i + 1].body.trim());
}

#[test]
fn required_sections_exist() {
    let headings: Vec<&str> = DOC.lines().filter(|l| l.starts_with("## ")).collect();
    for wanted in [
        "## Framing",
        "## Interactive sessions protocol",
        "## Session semantics",
        "## Judge protocol",
        "## Judge semantics",
        "## Errors",
    ] {
        assert!(headings.contains(&wanted), "missing {wanted}");
    }
    assert!(DOC.contains(&format!("{DEFAULT_MAX_PACKET} bytes")));
    assert!(DOC.contains("cargo +nightly fuzz run decode"));
}
