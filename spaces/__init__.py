"""Search spaces, one YAML file per KD method plus the shared part (``shared.yaml``)."""
