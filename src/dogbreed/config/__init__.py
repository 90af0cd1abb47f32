"""the configuration: schema, allowed choices, the override codec, errors, secret masking."""
