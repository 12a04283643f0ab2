"""The model registry (registry.toml) and the default place for user GGUF files; data only."""
