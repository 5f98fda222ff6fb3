//! The built-in `llama_inference` handler: a stand-in for a model call that does real, cheap
//! work on `payload.text` (characters, words, sentences, top keywords) after a configurable
//! simulated latency, so the whole loop (enqueue, worker, result over WebSocket) can be seen
//! on the demo page.

use std::{collections::HashMap, time::Duration};

use serde_json::{json, Value};

use super::{worker::HandlerFuture, Job, JobError};

/// The job type the demo handler serves.
pub const LLAMA_INFERENCE: &str = "llama_inference";

/// Keywords reported.
const TOP_KEYWORDS: usize = 5;

/// Common English words that are never keywords.
const STOPWORDS: &[&str] = &[
    "about", "after", "again", "all", "also", "and", "any", "are", "because", "been", "before",
    "being", "but", "can", "could", "did", "does", "doing", "down", "each", "for", "from", "had",
    "has", "have", "her", "here", "him", "his", "how", "into", "its", "just", "more", "most",
    "not", "now", "off", "once", "only", "other", "our", "out", "over", "own", "same", "she",
    "should", "some", "such", "than", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "those", "through", "too", "under", "until", "very", "was", "were", "what",
    "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you",
    "your",
];

/// Text statistics of `text`: `{characters, words, sentences, keywords}`. Words are runs of
/// letters and digits (inner apostrophes kept); a sentence ends at `.`, `!`, `?` or `…` after
/// at least one word (a `.` between digits does not end one); keywords are the most frequent
/// words of three letters or more that are not stop words or numbers, ties in alphabetical
/// order.
pub fn analyze(text: &str) -> Value {
    let chars: Vec<char> = text.chars().collect();
    let mut words: Vec<String> = Vec::new();
    let mut sentences = 0u64;
    let mut word = String::new();
    let mut sentence_has_word = false;
    for (i, &c) in chars.iter().enumerate() {
        let inner_apostrophe = (c == '\'' || c == '’')
            && !word.is_empty()
            && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
        if c.is_alphanumeric() || inner_apostrophe {
            word.extend(c.to_lowercase());
            continue;
        }
        if !word.is_empty() {
            words.push(std::mem::take(&mut word));
            sentence_has_word = true;
        }
        let decimal_point = c == '.'
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        if matches!(c, '.' | '!' | '?' | '…') && !decimal_point && sentence_has_word {
            sentences += 1;
            sentence_has_word = false;
        }
    }
    if !word.is_empty() {
        words.push(word);
        sentence_has_word = true;
    }
    if sentence_has_word {
        sentences += 1;
    }
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for w in &words {
        let candidate = w.chars().count() >= 3
            && !w.chars().all(|c| c.is_ascii_digit())
            && !STOPWORDS.contains(&w.as_str());
        if candidate {
            *counts.entry(w.as_str()).or_default() += 1;
        }
    }
    let mut ranked: Vec<(&str, u64)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let keywords: Vec<&str> = ranked.iter().take(TOP_KEYWORDS).map(|(w, _)| *w).collect();
    json!({
        "characters": chars.len(),
        "words": words.len(),
        "sentences": sentences,
        "keywords": keywords,
    })
}

/// The answer the demo streams for an analysis, as tokens (words with their leading space).
pub fn answer_tokens(analysis: &Value) -> Vec<String> {
    let keywords: Vec<&str> = analysis["keywords"]
        .as_array()
        .map(|k| k.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let keywords = if keywords.is_empty() {
        "none".to_string()
    } else {
        keywords.join(", ")
    };
    let text = format!(
        "Your text has {} characters, {} words and {} sentences. Its keywords: {keywords}.",
        analysis["characters"], analysis["words"], analysis["sentences"]
    );
    text.split(' ')
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

/// The `llama_inference` handler: waits `latency` (the simulated model time), then returns
/// [`analyze`] of `payload.text`, with the model name. With `"stream": true` in the payload
/// it streams [`answer_tokens`] instead, spread evenly over `latency`, and adds the streamed
/// `text` to the result. A payload without a string `text` is a permanent error.
pub fn llama_inference(latency: Duration) -> impl Fn(Job) -> HandlerFuture + Send + Sync {
    move |job: Job| {
        Box::pin(async move {
            let Some(text) = job.payload.get("text").and_then(Value::as_str) else {
                return Err(JobError::permanent(
                    "llama_inference needs `payload.text` (a string)",
                ));
            };
            let mut result = analyze(text);
            if job.payload.get("stream") == Some(&Value::Bool(true)) {
                let tokens = answer_tokens(&result);
                let pause = latency / tokens.len().max(1) as u32;
                for token in &tokens {
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    job.stream.emit(token).await?;
                }
                result["text"] = json!(tokens.concat());
            } else if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            result["model"] = json!("demo-llama (text statistics)");
            Ok(result)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_sentences_and_keywords() {
        let r = analyze(
            "Redis streams keep jobs. Workers claim jobs from Redis! Don't lose jobs? Pi is 3.14",
        );
        assert_eq!(r["words"], 16);
        assert_eq!(r["sentences"], 4);
        assert_eq!(
            r["keywords"],
            json!(["jobs", "redis", "claim", "don't", "keep"])
        );
    }

    #[test]
    fn the_streamed_answer_is_deterministic_words() {
        let tokens = answer_tokens(&analyze("Redis keeps jobs. Jobs stream."));
        assert_eq!(
            tokens.concat(),
            "Your text has 30 characters, 5 words and 2 sentences. Its keywords: jobs, keeps, redis, stream."
        );
        assert!(tokens[1..].iter().all(|t| t.starts_with(' ')));
    }

    #[test]
    fn edge_cases() {
        assert_eq!(
            analyze(""),
            json!({"characters": 0, "words": 0, "sentences": 0, "keywords": []})
        );
        assert_eq!(
            analyze("...!!"),
            json!({"characters": 5, "words": 0, "sentences": 0, "keywords": []})
        );
        let r = analyze("Ünïcode wörds… count too");
        assert_eq!(
            (r["words"].clone(), r["sentences"].clone()),
            (json!(4), json!(2))
        );
        assert_eq!(r["characters"], 24);
        assert_eq!(r["keywords"], json!(["count", "wörds", "ünïcode"]));
    }
}
