"""YAML presets shipped with streamrestore (installed as the package streamrestore.configs)."""
