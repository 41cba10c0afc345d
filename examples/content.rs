//! Content checks in the host: Sacred relays payloads as they are and never
//! rewrites them; a host that must keep script injection and oversized
//! fields out refuses such publications in its publish hook, with a code
//! and a message the publisher sees. Subscribers never receive them.
//!
//! Run with: cargo run --example content

use std::collections::BTreeMap;

use sacred_client::Client;
use sacred_examples::serve_locally;
use sacred_proto::{Codec, Value};
use sacred_server::{Hub, Refusal};
use serde_json::json;

/// Application code: the payload carries markup or a script.
const UNSAFE_CONTENT: u32 = 422;
/// Application code: a field is longer than the application allows.
const FIELD_TOO_LONG: u32 = 413;

/// The longest `text` field, in characters; other string fields get 200.
const MAX_TEXT_CHARS: usize = 2000;
const MAX_OTHER_CHARS: usize = 200;

/// Refuses a payload with a script in any string, or a field over its size.
fn check(data: &Value) -> Result<(), Refusal> {
    check_value("data", data)
}

fn check_value(path: &str, value: &Value) -> Result<(), Refusal> {
    match value {
        Value::String(text) => check_text(path, text),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(n, item)| check_value(&format!("{path}[{n}]"), item)),
        Value::Object(fields) => check_fields(path, fields),
        _ => Ok(()),
    }
}

fn check_fields(path: &str, fields: &BTreeMap<String, Value>) -> Result<(), Refusal> {
    for (name, value) in fields {
        let field = format!("{path}.{name}");
        if let Value::String(text) = value {
            let max = if name == "text" {
                MAX_TEXT_CHARS
            } else {
                MAX_OTHER_CHARS
            };
            let chars = text.chars().count();
            if chars > max {
                return Err(Refusal::new(
                    FIELD_TOO_LONG,
                    format!("{field} has {chars} characters; at most {max}"),
                ));
            }
        }
        check_value(&field, value)?;
    }
    Ok(())
}

/// Markup that runs in a browser that renders the text as HTML: a script
/// element, a `javascript:` URL, an inline event handler inside a tag
/// (`<img onerror=...>`; "online = true" in prose is fine).
fn check_text(path: &str, text: &str) -> Result<(), Refusal> {
    let lower = text.to_lowercase();
    let in_tags = lower
        .split('<')
        .skip(1)
        .map(|tag| tag.split('>').next().unwrap_or(""));
    let handler = in_tags.into_iter().any(|tag| {
        tag.match_indices("on").any(|(at, _)| {
            let rest = &tag[at + 2..];
            let name = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let starts_word = at == 0 || !tag.as_bytes()[at - 1].is_ascii_alphanumeric();
            name > 0 && starts_word && rest[name..].trim_start().starts_with('=')
        })
    });
    if lower.contains("<script") || lower.contains("javascript:") || handler {
        return Err(Refusal::new(
            UNSAFE_CONTENT,
            format!("{path} carries markup that runs in a browser"),
        ));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::builder().authorize_publish(|ctx| async move { check(&ctx.data) });
    let (url, _hub) = serve_locally(hub).await?;
    let cases = [
        (
            "a clean message",
            json!({ "text": "see you at noon", "author": "ada" }),
            None,
        ),
        (
            "a script element",
            json!({ "text": "hi <SCRIPT>steal()</script>" }),
            Some(UNSAFE_CONTENT),
        ),
        (
            "a javascript: URL",
            json!({ "text": "ok", "link": "JavaScript:alert(1)" }),
            Some(UNSAFE_CONTENT),
        ),
        (
            "an event handler",
            json!({ "text": "<img src=x onerror = alert(1)>" }),
            Some(UNSAFE_CONTENT),
        ),
        (
            "a script nested in a list",
            json!({ "items": ["fine", { "title": "<script>" }] }),
            Some(UNSAFE_CONTENT),
        ),
        (
            "text over 2,000 characters",
            json!({ "text": "a".repeat(2001) }),
            Some(FIELD_TOO_LONG),
        ),
        (
            "a title over 200 characters",
            json!({ "text": "ok", "title": "t".repeat(201) }),
            Some(FIELD_TOO_LONG),
        ),
        (
            "words that only look alike",
            json!({ "text": "online = true; a script-free reply" }),
            None,
        ),
    ];
    for codec in [Codec::Json, Codec::MsgPack] {
        let reader = Client::builder(&url).codec(codec).connect().await?;
        let mut room = reader.subscribe("room").await?;
        let writer = Client::builder(&url).codec(codec).connect().await?;
        for (what, data, refused_with) in &cases {
            let outcome = writer.publish("room", data).await;
            match (outcome, refused_with) {
                (Ok(_), None) => {
                    let publication = room
                        .next_publication()
                        .await
                        .ok_or("the subscription ended")?;
                    println!("{codec:?}: {what}: published, and received as sent");
                    if serde_json::to_value(&publication.data)? != *data {
                        return Err(format!("{what}: the payload changed on the way").into());
                    }
                }
                (Err(err), Some(code)) if err.code() == Some(*code) => {
                    println!("{codec:?}: {what}: refused, {err}");
                }
                (outcome, _) => {
                    return Err(format!("{codec:?}: {what}: unexpected {outcome:?}").into());
                }
            }
        }
    }
    Ok(())
}
