"""Packaged run configurations (TOML): ``demo.toml`` (``corredit demo``) and
``demo-quick.toml`` (``corredit demo --quick``). Read them with
``corredit.config.load_config``; ``corredit.demo.CONFIG_DIR`` is this folder."""
