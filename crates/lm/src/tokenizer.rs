//! Text to tokens and back: Hugging Face's `tokenizer.json`, or the byte-level BPE that a GGUF file
//! embeds (`tokenizer.ggml.*`), rebuilt with the pre-tokenizer its `tokenizer.ggml.pre` names.
//! Also the chat template, recognized from the model's Jinja source and applied here in Rust.

use crate::error::{LmError, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use serde::{Deserialize, Serialize};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::prepend::Prepend;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::normalizers::utils::Sequence as NormalizerSequence;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// The chat formats this crate applies. Templates are recognized by their markers; a model whose
/// template is none of these has no chat format here (an error when one is asked for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatTemplate {
    /// `<|im_start|>role\ncontent<|im_end|>\n`, with the system message the template inserts when
    /// the conversation has none (SmolLM2: "You are a helpful AI assistant named SmolLM, ...").
    ChatMl { default_system: Option<String> },
    /// Llama 3: `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`.
    Llama3,
    /// Llama 2: `<s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] answer </s>`, each user
    /// turn opened with `<s>`, the system message inside the first one.
    Llama2,
    /// Mistral (Instruct v0.1/v0.2): `<s>[INST] user [/INST]answer</s>`. The template has no system
    /// role; a system message is put before the first user message, separated by a blank line.
    Mistral,
}

impl ChatTemplate {
    /// Recognizes a Jinja chat template by its markers.
    pub fn recognize(jinja: &str) -> Option<ChatTemplate> {
        if jinja.contains("<|im_start|>") {
            // The default system message is the literal that follows `<|im_start|>system` and a
            // newline (a real one, or `\n` escaped in the Jinja string) in the template.
            let default_system = ["<|im_start|>system\n", "<|im_start|>system\\n"]
                .iter()
                .find_map(|marker| {
                    let at = jinja.find(marker)?;
                    let rest = &jinja[at + marker.len()..];
                    let text = &rest[..rest.find("<|im_end|>")?];
                    (!text.contains('{') && !text.contains('\'')).then(|| text.to_string())
                });
            Some(ChatTemplate::ChatMl { default_system })
        } else if jinja.contains("<|start_header_id|>") {
            Some(ChatTemplate::Llama3)
        } else if jinja.contains("[INST]") && jinja.contains("<<SYS>>") {
            Some(ChatTemplate::Llama2)
        } else if jinja.contains("[INST]") {
            Some(ChatTemplate::Mistral)
        } else {
            None
        }
    }

    /// The prompt text for `messages`, ending with the assistant's turn opened.
    pub fn apply(&self, messages: &[Message]) -> String {
        let mut out = String::new();
        match self {
            ChatTemplate::ChatMl { default_system } => {
                if let (Some(system), Some(first)) = (default_system, messages.first()) {
                    if first.role != "system" {
                        out.push_str(&format!("<|im_start|>system\n{system}<|im_end|>\n"));
                    }
                }
                for m in messages {
                    out.push_str(&format!(
                        "<|im_start|>{}\n{}<|im_end|>\n",
                        m.role, m.content
                    ));
                }
                out.push_str("<|im_start|>assistant\n");
            }
            ChatTemplate::Llama3 => {
                out.push_str("<|begin_of_text|>");
                for m in messages {
                    out.push_str(&format!(
                        "<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>",
                        m.role,
                        m.content.trim()
                    ));
                }
                out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
            }
            ChatTemplate::Llama2 => {
                let (system, turns) = split_system(messages);
                for (i, m) in turns.iter().enumerate() {
                    match m.role.as_str() {
                        "assistant" => out.push_str(&format!(" {} </s>", m.content.trim())),
                        _ => {
                            let content = match (i, system) {
                                (0, Some(system)) => {
                                    format!("<<SYS>>\n{system}\n<</SYS>>\n\n{}", m.content)
                                }
                                _ => m.content.clone(),
                            };
                            out.push_str(&format!("<s>[INST] {} [/INST]", content.trim()));
                        }
                    }
                }
            }
            ChatTemplate::Mistral => {
                let (system, turns) = split_system(messages);
                out.push_str("<s>");
                for (i, m) in turns.iter().enumerate() {
                    match m.role.as_str() {
                        "assistant" => out.push_str(&format!("{}</s>", m.content)),
                        _ => match (i, system) {
                            (0, Some(system)) => {
                                out.push_str(&format!("[INST] {system}\n\n{} [/INST]", m.content))
                            }
                            _ => out.push_str(&format!("[INST] {} [/INST]", m.content)),
                        },
                    }
                }
            }
        }
        out
    }

    /// The template's name, as `mesascope lm info` prints it.
    pub fn name(&self) -> &'static str {
        match self {
            ChatTemplate::ChatMl { .. } => "ChatML",
            ChatTemplate::Llama3 => "Llama 3",
            ChatTemplate::Llama2 => "Llama 2",
            ChatTemplate::Mistral => "Mistral",
        }
    }

    /// The token that ends an assistant turn.
    pub fn end_of_turn(&self) -> &'static str {
        match self {
            ChatTemplate::ChatMl { .. } => "<|im_end|>",
            ChatTemplate::Llama3 => "<|eot_id|>",
            ChatTemplate::Llama2 | ChatTemplate::Mistral => "</s>",
        }
    }
}

/// A leading system message's text, and the conversation after it.
fn split_system(messages: &[Message]) -> (Option<&str>, &[Message]) {
    match messages.split_first() {
        Some((first, rest)) if first.role == "system" => (Some(first.content.as_str()), rest),
        _ => (None, messages),
    }
}

/// A model's tokenizer with its special tokens and chat format.
pub struct Tokenizer {
    pub(crate) inner: tokenizers::Tokenizer,
    /// Prepended to plain prompts (Llama 2/3); none for SmolLM2.
    pub bos: Option<u32>,
    /// Tokens that end generation.
    pub eos: Vec<u32>,
    pub chat: Option<ChatTemplate>,
    /// The beginning-of-sequence token the checkpoint names, whether or not it is prepended.
    pub(crate) declared_bos: Option<u32>,
    /// The chat template's Jinja source as the checkpoint holds it (written back on export).
    pub(crate) chat_source: Option<String>,
}

fn tokenizer_error(e: impl std::fmt::Display) -> LmError {
    LmError::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Encodes `text`; special tokens written in it (`<|im_start|>`) become their ids.
    /// `add_bos` prepends the beginning-of-sequence token where the model uses one.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(tokenizer_error)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if let (true, Some(bos)) = (add_bos, self.bos) {
            ids.push(bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(tokenizer_error)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The chat template's Jinja source, as the checkpoint holds it (also when mesascope does not
    /// recognize it).
    pub fn chat_template_source(&self) -> Option<&str> {
        self.chat_source.as_deref()
    }

    /// The beginning-of-sequence token the checkpoint names (prepended to plain prompts only
    /// where [`Tokenizer::bos`] is set).
    pub fn bos_token(&self) -> Option<u32> {
        self.declared_bos
    }

    /// The token ids of a chat, templated, ready to generate the assistant's answer.
    pub fn encode_chat(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let template = self.chat.as_ref().ok_or_else(|| {
            LmError::InvalidArgument(
                "the model has no chat template that mesascope recognizes (ChatML, Llama 3, Llama 2, Mistral)".into(),
            )
        })?;
        self.encode(&template.apply(messages), false)
    }

    /// Builds the tokenizer from a `tokenizer.json`, with the special tokens that the folder's
    /// `config.json` and `tokenizer_config.json` name.
    pub(crate) fn from_hf_files(
        tokenizer_json: &[u8],
        tokenizer_config: Option<&serde_json::Value>,
        model_config: &serde_json::Value,
    ) -> Result<Tokenizer> {
        let inner = tokenizers::Tokenizer::from_bytes(tokenizer_json).map_err(tokenizer_error)?;
        let token_id = |key: &str| -> Option<u32> {
            let v = tokenizer_config?.get(key)?;
            let text = v.as_str().or_else(|| v.get("content")?.as_str())?;
            inner.token_to_id(text)
        };
        let ids_of = |v: Option<&serde_json::Value>| -> Vec<u32> {
            match v {
                Some(serde_json::Value::Number(n)) => {
                    n.as_u64().map(|x| x as u32).into_iter().collect()
                }
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .filter_map(|x| x.as_u64())
                    .map(|x| x as u32)
                    .collect(),
                _ => vec![],
            }
        };
        let add_bos = tokenizer_config
            .and_then(|c| c.get("add_bos_token"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let declared_bos = token_id("bos_token")
            .or_else(|| ids_of(model_config.get("bos_token_id")).first().copied());
        let bos = if add_bos { declared_bos } else { None };
        let mut eos = ids_of(model_config.get("eos_token_id"));
        eos.extend(token_id("eos_token"));
        let chat_source = tokenizer_config
            .and_then(|c| c.get("chat_template"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        Ok(Tokenizer::finish(
            inner,
            bos,
            declared_bos,
            eos,
            chat_source,
        ))
    }

    fn finish(
        inner: tokenizers::Tokenizer,
        bos: Option<u32>,
        declared_bos: Option<u32>,
        mut eos: Vec<u32>,
        chat_source: Option<String>,
    ) -> Tokenizer {
        let chat = chat_source.as_deref().and_then(ChatTemplate::recognize);
        if let Some(end) = chat
            .as_ref()
            .and_then(|c| inner.token_to_id(c.end_of_turn()))
        {
            eos.push(end);
        }
        eos.sort_unstable();
        eos.dedup();
        Tokenizer {
            inner,
            bos,
            eos,
            chat,
            declared_bos,
            chat_source,
        }
    }

    /// Rebuilds the tokenizer embedded in a GGUF file: byte-level BPE (`tokenizer.ggml.model` =
    /// `gpt2`: the vocabulary and its merges) or SentencePiece BPE (`llama`: the vocabulary and its
    /// scores, as Llama 2 and Mistral files hold it).
    pub(crate) fn from_gguf(content: &Content) -> Result<Tokenizer> {
        let get = |key: &str| content.metadata.get(key);
        let missing = |reason: String| LmError::MissingTokenizer { reason };
        let model = get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| missing("the GGUF file has no tokenizer.ggml.model".into()))?;
        let strings = |key: &str| -> Result<Vec<String>> {
            let v = get(key).ok_or_else(|| missing(format!("the GGUF file has no {key}")))?;
            let items = v
                .to_vec()
                .map_err(|_| missing(format!("{key} is not an array")))?;
            items
                .iter()
                .map(|x| {
                    x.to_string()
                        .cloned()
                        .map_err(|_| missing(format!("{key} holds a non-string")))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let types: Vec<i64> = match get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|_| missing("tokenizer.ggml.token_type is not an array".into()))?
                .iter()
                .map(value_as_i64)
                .collect(),
            None => vec![TOKEN_NORMAL; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(missing(format!(
                "tokenizer.ggml.token_type has {} entries for {} tokens",
                types.len(),
                tokens.len()
            )));
        }
        let id = |key: &str| {
            get(key)
                .map(value_as_i64)
                .filter(|&i| i >= 0 && (i as usize) < tokens.len())
                .map(|i| i as u32)
        };
        let flag = |key: &str| get(key).and_then(|v| v.to_bool().ok());
        let (mut inner, add_bos_default) = match model.as_str() {
            "gpt2" => {
                let merges = strings("tokenizer.ggml.merges")?
                    .into_iter()
                    .map(|m| {
                        m.split_once(' ')
                            .map(|(a, b)| (a.to_string(), b.to_string()))
                            .ok_or_else(|| missing(format!("malformed merge `{m}`")))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let pre = get("tokenizer.ggml.pre")
                    .and_then(|v| v.to_string().ok())
                    .map(|s| s.as_str())
                    .unwrap_or("default");
                (byte_level_bpe(&tokens, merges, pre)?, false)
            }
            "llama" => {
                let scores: Vec<f32> = get("tokenizer.ggml.scores")
                    .ok_or_else(|| missing("the GGUF file has no tokenizer.ggml.scores".into()))?
                    .to_vec()
                    .map_err(|_| missing("tokenizer.ggml.scores is not an array".into()))?
                    .iter()
                    .map(|v| match v {
                        Value::F32(x) => Ok(*x),
                        Value::F64(x) => Ok(*x as f32),
                        _ => Err(missing("tokenizer.ggml.scores holds a non-number".into())),
                    })
                    .collect::<Result<_>>()?;
                if scores.len() != tokens.len() {
                    return Err(missing(format!(
                        "tokenizer.ggml.scores has {} entries for {} tokens",
                        scores.len(),
                        tokens.len()
                    )));
                }
                let unknown = id("tokenizer.ggml.unknown_token_id")
                    .or_else(|| types.iter().position(|&t| t == TOKEN_UNKNOWN).map(|i| i as u32))
                    .map(|i| tokens[i as usize].clone());
                let space_prefix = flag("tokenizer.ggml.add_space_prefix").unwrap_or(true);
                (
                    sentencepiece_bpe(&tokens, &scores, unknown, space_prefix)?,
                    true,
                )
            }
            other => {
                return Err(missing(format!(
                    "the GGUF file's tokenizer is `{other}`; mesascope rebuilds byte-level BPE (`gpt2`) and SentencePiece (`llama`) vocabularies: load the model's Hugging Face folder (tokenizer.json) instead"
                )))
            }
        };
        // Unknown (2), control (3) and user-defined (4) tokens are matched whole in the text, never split.
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == TOKEN_UNKNOWN || t == TOKEN_CONTROL || t == TOKEN_USER_DEFINED)
            .map(|(text, _)| AddedToken::from(text.clone(), true))
            .collect();
        inner.add_special_tokens(special).map_err(tokenizer_error)?;

        let declared_bos = id("tokenizer.ggml.bos_token_id");
        let bos = if flag("tokenizer.ggml.add_bos_token").unwrap_or(add_bos_default) {
            declared_bos
        } else {
            None
        };
        let eos = id("tokenizer.ggml.eos_token_id")
            .into_iter()
            .chain(id("tokenizer.ggml.eot_token_id"))
            .collect();
        let chat_source = get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned();
        Ok(Tokenizer::finish(
            inner,
            bos,
            declared_bos,
            eos,
            chat_source,
        ))
    }
}

/// GGUF's token types (`tokenizer.ggml.token_type`), as llama.cpp numbers them.
const TOKEN_NORMAL: i64 = 1;
const TOKEN_UNKNOWN: i64 = 2;
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// GPT-2's byte-level BPE over `tokens` and `merges`, with the pre-tokenizer `pre` names.
fn byte_level_bpe(
    tokens: &[String],
    merges: Vec<(String, String)>,
    pre: &str,
) -> Result<tokenizers::Tokenizer> {
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(tokenizer_error)?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    let (pretokenizer, nfc) = byte_level_pretokenizer(pre)?;
    inner.with_pre_tokenizer(Some(pretokenizer));
    if nfc {
        inner.with_normalizer(Some(NFC)).map_err(tokenizer_error)?;
    }
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(inner)
}

/// SentencePiece's word-boundary mark, which stands for a space.
const SPACE_MARK: &str = "\u{2581}";

/// The merges of a SentencePiece BPE vocabulary, which stores scores instead: every way of
/// splitting a piece into two pieces of the vocabulary is a merge, ranked by the merged piece's
/// score (highest first; ties in vocabulary order, then by the halves' ids). This is the ranking
/// Hugging Face's converter gives Llama's `tokenizer.json`, so both tokenize alike.
pub(crate) fn sentencepiece_merges(tokens: &[String], scores: &[f32]) -> Vec<(String, String)> {
    let ids: std::collections::HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut ranked: Vec<(f32, usize, usize)> = Vec::new();
    for (piece, &score) in tokens.iter().zip(scores) {
        let mut local: Vec<(usize, usize)> = piece
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| Some((*ids.get(&piece[..at])?, *ids.get(&piece[at..])?)))
            .collect();
        local.sort_unstable();
        ranked.extend(local.into_iter().map(|(l, r)| (score, l, r)));
    }
    // A stable sort keeps vocabulary order among equal scores.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked
        .into_iter()
        .map(|(_, l, r)| (tokens[l].clone(), tokens[r].clone()))
        .collect()
}

/// SentencePiece BPE as Hugging Face's Llama `tokenizer.json` writes it: spaces become `▁` (and
/// one is prepended), pieces merge by score, and characters outside the vocabulary fall back to
/// the `<0xXX>` byte tokens.
fn sentencepiece_bpe(
    tokens: &[String],
    scores: &[f32],
    unknown: Option<String>,
    space_prefix: bool,
) -> Result<tokenizers::Tokenizer> {
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, sentencepiece_merges(tokens, scores))
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unknown {
        builder = builder.unk_token(unk);
    }
    let bpe = builder.build().map_err(tokenizer_error)?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if space_prefix {
        normalizers.push(Prepend::new(SPACE_MARK.into()).into());
    }
    normalizers.push(
        Replace::new(" ", SPACE_MARK)
            .map_err(tokenizer_error)?
            .into(),
    );
    inner
        .with_normalizer(Some(NormalizerSequence::new(normalizers)))
        .map_err(tokenizer_error)?;
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new(SPACE_MARK, " ")
            .map_err(tokenizer_error)?
            .into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    inner.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(inner)
}

fn value_as_i64(v: &Value) -> i64 {
    match v {
        Value::U8(x) => *x as i64,
        Value::I8(x) => *x as i64,
        Value::U16(x) => *x as i64,
        Value::I16(x) => *x as i64,
        Value::U32(x) => *x as i64,
        Value::I32(x) => *x as i64,
        Value::U64(x) => *x as i64,
        Value::I64(x) => *x,
        _ => -1,
    }
}

/// The pre-tokenizer llama.cpp pairs with each `tokenizer.ggml.pre` value (and whether the text is
/// NFC-normalized first). The regexes are the published splitting patterns of those model families.
fn byte_level_pretokenizer(pre: &str) -> Result<(PreTokenizerWrapper, bool)> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    let split = |pattern: &str| -> Result<PreTokenizerWrapper> {
        Ok(Split::new(
            SplitPattern::Regex(pattern.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(tokenizer_error)?
        .into())
    };
    Ok(match pre {
        // GPT-2's own split, inside ByteLevel.
        "default" | "gpt2" => (ByteLevel::new(false, true, true).into(), false),
        // SmolLM: every digit alone, then GPT-2's split.
        "smollm" => (
            Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into(),
            false,
        ),
        "llama3" | "llama-bpe" | "smaug-bpe" => (
            Sequence::new(vec![split(LLAMA3)?, ByteLevel::new(false, true, false).into()]).into(),
            false,
        ),
        "qwen2" => (
            Sequence::new(vec![split(QWEN2)?, ByteLevel::new(false, true, false).into()]).into(),
            true,
        ),
        other => {
            return Err(LmError::MissingTokenizer {
                reason: format!(
                    "the GGUF file's pre-tokenizer `{other}` is not one mesascope rebuilds (default, gpt2, smollm, llama3, llama-bpe, smaug-bpe, qwen2): load the model's Hugging Face folder (tokenizer.json) instead"
                ),
            })
        }
    })
}
