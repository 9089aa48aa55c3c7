"""The text bridge: a teacher that works in text (another tokenizer, or a server) at step boundaries."""
