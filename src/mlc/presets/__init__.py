"""Named experiments shipped with MLC, as TOML data files (read by `mlc.work.load_preset`)."""
